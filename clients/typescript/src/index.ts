// hooteproto for TypeScript: a HOOT/1 client (schema/PROTOCOL.md) and every message of
// schema/ as @bufbuild/protobuf types, generated at build time (`npm run build`).
//
// - `Client`: one endpoint, promise-based calls, typed replies, retries for idempotent requests.
// - `plain`: a `google.protobuf.Value` (a script's result) as plain JSON.
// - `HootError`: the canonical error code, message and details of a failed call.
// - `toCanonicalBinary` / `canonicalize`: deterministic encoding (maps sorted by key).
// - everything generated from schema/: `EnvelopeSchema`, `PingRequest`, `ErrorCode`, …

export { Calls, plain } from "./calls.js";
export { type CallOptions, Client, type ClientOptions, type RequestInit } from "./client.js";
export { HootError } from "./errors.js";
export * from "./gen/hooteproto/v1/index.js";
export {
  dataDir,
  Framer,
  isIdempotent,
  KEY_FILE_NAME,
  loadKey,
  MAX_MESSAGE_SIZE,
  PROTOCOL,
  type MessageOf,
  type Payload,
  type ReplyOf,
  type RequestCase,
} from "./protocol.js";
export { canonicalize, toCanonicalBinary } from "./wire.js";
