export { fsPlugin } from './internal/plugin.js';
export type { FdInventory, FdType, FsPluginOptions } from './types.js';
