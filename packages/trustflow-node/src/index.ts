export { ConfigError, loadConfigFile, loadOffersFile, validateConfig } from './internal/config.js';
export {
  decodeHeader,
  encodeChunkLength,
  encodeHeader,
  HEADER_SIZE,
  LOOKUP_TOPIC,
  MAX_CHUNK_BYTES,
  MAX_STREAM_BYTES,
  MessageType,
  PROTOCOL,
  ProtocolError,
  READY,
} from './internal/protocol.js';

import { createTrustflowNode as create } from './internal/node.js';
import type { TrustflowNode, TrustflowNodeOptions } from './types.js';

/** Creates and starts a node. Bad options throw a ConfigError naming the field. */
export function createTrustflowNode(options?: TrustflowNodeOptions): Promise<TrustflowNode> {
  return create(options);
}

export type {
  Deadlines,
  FoundOffer,
  Header,
  IncomingMessage,
  Logger,
  LogLevel,
  LookupOptions,
  MessageHandler,
  NodeConfig,
  NodeHealth,
  NodeStats,
  SendFileOptions,
  SendFileResult,
  ServiceOffer,
  StopResult,
  StreamEndReason,
  Target,
  TransferProgress,
  TrustflowNode,
  TrustflowNodeOptions,
} from './types.js';
