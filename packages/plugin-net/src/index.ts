export { netPlugin } from './internal/plugin.js';
export type { NetPluginOptions } from './types.js';
