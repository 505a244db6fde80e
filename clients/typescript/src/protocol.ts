// HOOT/1 framing (schema/PROTOCOL.md §2–§6): envelope ids, signing, the size limit and
// reply decoding, shared by every request a client sends.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import { create, fromBinary, getOption, type MessageInitShape } from "@bufbuild/protobuf";

import { type Envelope, EnvelopeSchema } from "./gen/hooteproto/v1/envelope_pb.js";
import { ErrorCode } from "./gen/hooteproto/v1/error_pb.js";
import { idempotent } from "./gen/hooteproto/v1/options_pb.js";
import { HootError } from "./errors.js";
import { toCanonicalBinary } from "./wire.js";

/** Frame 1 of every HOOT/1 message. */
export const PROTOCOL = Buffer.from("HOOT/1");
/** The default maximum envelope size (§6). */
export const MAX_MESSAGE_SIZE = 64 << 20;

/** A request's payload: the `Envelope.payload` case and its message. */
export type Payload = Envelope["payload"];
/** The request cases: every payload case that has a `…Reply` beside it. */
export type RequestCase = {
  [P in NonNullable<Payload["case"]>]: `${P}Reply` extends Payload["case"] ? P : never;
}[NonNullable<Payload["case"]>];
/** The message of payload case `C`. */
export type MessageOf<C extends Payload["case"]> = Extract<Payload, { case: C }>["value"];
/** What a request of case `C` is answered with. */
export type ReplyOf<C extends RequestCase> = MessageOf<`${C}Reply`>;

/** The key file's name in the data directory: what `holler up` creates, and where clients look last. */
export const KEY_FILE_NAME = "hoot.key";

/**
 * The data directory, as every Hootenanny program finds it: `$HOOT_DATA_DIR`, else
 * `$XDG_DATA_HOME/hootenanny`, else `~/.local/share/hootenanny`.
 */
export function dataDir(): string {
  if (process.env.HOOT_DATA_DIR) return process.env.HOOT_DATA_DIR;
  return join(process.env.XDG_DATA_HOME || join(homedir(), ".local", "share"), "hootenanny");
}

/** A key file's contents; trailing whitespace (a final newline) is not part of the key. */
function readKeyFile(path: string): Buffer {
  return Buffer.from(readFileSync(path).toString("latin1").trimEnd(), "latin1");
}

/**
 * The shared key, found as every Hootenanny program finds it: `key`, else the file `keyFile`,
 * else the file `$HOOT_KEY_FILE`, else `$HOOT_KEY`, else `<data dir>/hoot.key` if it exists (the
 * key `holler up` creates); none means unsigned (§5). A key shorter than 16 bytes is refused.
 */
export function loadKey(key?: string | Uint8Array, keyFile?: string): Buffer | undefined {
  let found: Buffer | undefined;
  const inDataDir = join(dataDir(), KEY_FILE_NAME);
  if (key !== undefined) {
    found = Buffer.from(key);
  } else if (keyFile !== undefined) {
    found = readKeyFile(keyFile);
  } else if (process.env.HOOT_KEY_FILE) {
    found = readKeyFile(process.env.HOOT_KEY_FILE);
  } else if (process.env.HOOT_KEY) {
    found = Buffer.from(process.env.HOOT_KEY);
  } else if (existsSync(inDataDir)) {
    found = readKeyFile(inDataDir);
  }
  if (found !== undefined && found.length < 16) {
    throw new RangeError("a HOOT/1 key must be at least 16 bytes (PROTOCOL.md §5)");
  }
  return found;
}

/** Whether the schema marks request case `c` safe to resend: `(hooteproto.v1.idempotent)` (§9). */
export function isIdempotent(c: RequestCase): boolean {
  const message = EnvelopeSchema.field[c].message;
  return message !== undefined && getOption(message, idempotent);
}

/** Envelope ids, signing, size checks and reply decoding for one client instance. */
export class Framer {
  private readonly prefix: string;
  private counter = 0;

  constructor(
    private readonly key: Buffer | undefined,
    name: string,
    private readonly maxMessageSize = MAX_MESSAGE_SIZE,
  ) {
    this.prefix = `${name}-${randomBytes(6).toString("hex")}`;
  }

  /** A new id, unique among this client's requests. */
  nextId(): string {
    this.counter += 1;
    return `${this.prefix}-${this.counter}`;
  }

  /** The three frames of a request (§2), or a RESOURCE_EXHAUSTED error if it is too large (§6). */
  frames(id: string, payload: Payload, timeoutMs: number, traceparent: string): Buffer[] {
    const envelope = create(EnvelopeSchema, {
      id,
      timeoutMs: Math.max(0, Math.min(Math.round(timeoutMs), 0xffffffff)),
      traceparent,
      payload: payload as MessageInitShape<typeof EnvelopeSchema>["payload"],
    });
    const body = Buffer.from(toCanonicalBinary(EnvelopeSchema, envelope));
    if (body.length > this.maxMessageSize) {
      throw new HootError(
        ErrorCode.RESOURCE_EXHAUSTED,
        `the request is ${body.length} bytes; the limit is ${this.maxMessageSize} (put bulk data in the CAS)`,
      );
    }
    return [PROTOCOL, this.sign(body), body];
  }

  /** The reply envelope, or undefined for frames to drop: malformed, or unsigned with a key (§5, §7). */
  decode(frames: Buffer[]): Envelope | undefined {
    if (frames.length !== 3 || !frames[0].equals(PROTOCOL)) return undefined;
    if (this.key !== undefined) {
      const expected = this.sign(frames[2]);
      if (frames[1].length !== expected.length || !timingSafeEqual(frames[1], expected)) return undefined;
    }
    try {
      return fromBinary(EnvelopeSchema, frames[2]);
    } catch {
      return undefined; // a malformed reply is dropped, never thrown into the caller
    }
  }

  private sign(body: Buffer): Buffer {
    return this.key === undefined ? Buffer.alloc(0) : createHmac("sha256", this.key).update(body).digest();
  }
}

/** The typed reply for request case `c`, or the peer's error thrown as a HootError. */
export function unwrap<C extends RequestCase>(reply: Envelope, c: C): ReplyOf<C> {
  const payload = reply.payload;
  if (payload.case === "error") throw HootError.fromReply(payload.value);
  if (payload.case === `${c}Reply` || payload.case === "success") return payload.value as ReplyOf<C>;
  throw new HootError(ErrorCode.INTERNAL, `${c} was answered with ${payload.case ?? "nothing"}`);
}
