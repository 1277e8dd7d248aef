/** Options of `netPlugin()`. */
export interface NetPluginOptions {
  /**
   * Read each socket's local and peer address and port for its span and for reports (one
   * getsockname and one getpeername per socket, when it connects or is accepted). Default true.
   */
  addresses?: boolean;
}
