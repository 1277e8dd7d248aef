/** Options of `netPlugin()`. */
export interface NetPluginOptions {
  /**
   * Local and peer address and port of sockets: on a socket's lifetime span when that span
   * records (read when the socket connects or is accepted: one getsockname and one getpeername),
   * and in reports and snapshots (read when they are taken). Default true.
   */
  addresses?: boolean;
}
