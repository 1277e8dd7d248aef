/** Options of `fsPlugin()`. */
export interface FsPluginOptions {
  /**
   * Compare tracked descriptors with /proc/self/fd (Linux) when metrics are collected and when a
   * report or snapshot is taken: untracked descriptors become the `trustflow.fd.untracked` metric
   * and the `fdInventory` report section, and tracked descriptors that were closed by an
   * untracked path are settled. Default: true where /proc/self/fd exists.
   */
  inventory?: boolean;
  /** Most untracked descriptors listed one by one in the report section. Default 50. */
  inventoryLimit?: number;
}

/** Kind of an open descriptor, from the target of its /proc/self/fd link. */
export type FdType = 'file' | 'socket' | 'pipe' | 'anon_inode' | 'other';

/** The `fdInventory` report section. */
export interface FdInventory {
  /** Open descriptors seen in /proc/self/fd, without stdio (0-2) and the listing's own. */
  open: number;
  /** Of those, descriptors owned by a resource a Trustflow plugin tracks. */
  tracked: number;
  /** Untracked descriptors by type. */
  untracked: Record<FdType, number>;
  /** Untracked descriptors one by one (those opened after the plugin was enabled first). */
  descriptors: { fd: number; type: FdType; target: string; openAtEnable: boolean }[];
  /** Untracked descriptors left out of `descriptors` by `inventoryLimit`. */
  omitted: number;
}
