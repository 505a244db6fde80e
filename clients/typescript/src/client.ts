// The client: one DEALER shared by any number of concurrent requests; a reader loop hands
// each reply to the request with its id. Idempotent requests are resent with the same id
// after each attempt timeout (PROTOCOL.md §9, "Lazy Pirate"); after two attempts in a row go
// unanswered the socket is replaced, so a restarted server is reached again. When the
// connection drops with requests in flight (libzmq's disconnect event), they stop waiting:
// idempotent ones are resent at once, the rest fail with UNAVAILABLE.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { Dealer } from "zeromq";

import { Calls } from "./calls.js";
import { HootError } from "./errors.js";
import { type Envelope, EnvelopeSchema } from "./gen/hooteproto/v1/envelope_pb.js";
import { ErrorCode } from "./gen/hooteproto/v1/error_pb.js";
import {
  Framer,
  isIdempotent,
  loadKey,
  MAX_MESSAGE_SIZE,
  type Payload,
  type ReplyOf,
  type RequestCase,
  unwrap,
} from "./protocol.js";

/** How a client behaves unless a call says otherwise. */
export interface ClientOptions {
  /**
   * The shared HMAC key (default: the file `keyFile`, else the file `$HOOT_KEY_FILE`, else
   * `$HOOT_KEY`, else `<data dir>/hoot.key` if it exists; none: unsigned).
   */
  key?: string | Uint8Array;
  /** A file holding the shared HMAC key (trailing whitespace dropped), when `key` is not given. */
  keyFile?: string;
  /** Milliseconds for a whole request, retries included; sent as `Envelope.timeout_ms`. Default 10 000. */
  timeoutMs?: number;
  /** Milliseconds one attempt of an idempotent request waits before it is resent. Default 1 000. */
  attemptTimeoutMs?: number;
  /** The first part of every envelope id, for the server's logs. Default "ts". */
  name?: string;
  /** The largest envelope this client sends or accepts, in bytes. Default 64 MiB (§6). */
  maxMessageSize?: number;
}

/** Per-call overrides. */
export interface CallOptions {
  /** Milliseconds for the whole request (see {@link ClientOptions.timeoutMs}). */
  timeoutMs?: number;
  /** Milliseconds per attempt of an idempotent request. */
  attemptTimeoutMs?: number;
  /** Resend after an attempt timeout; default: what the schema says (`(hooteproto.v1.idempotent)`). */
  idempotent?: boolean;
  /** W3C traceparent of the caller's span, passed on in the envelope. */
  traceparent?: string;
  /** Aborting it fails the call at once with CANCELLED (the server may still do the work). */
  signal?: AbortSignal;
}

/** The request message of case `C`, as an object literal or a message made with `create`. */
export type RequestInit<C extends RequestCase> = Extract<
  NonNullable<MessageInitShape<typeof EnvelopeSchema>["payload"]>,
  { case: C }
>["value"];

/** What an attempt gets when its connection dropped before the reply came. */
const LOST = Symbol("connection lost");

interface Waiter {
  resolve: (reply: Envelope | typeof LOST) => void;
  reject: (error: HootError) => void;
  /** The socket the attempt went out on. */
  socket: Dealer;
}

/** A HOOT/1 client for one service endpoint, e.g. `new Client("tcp://127.0.0.1:5570")`. Call `close()` when done. */
export class Client extends Calls {
  private readonly framer: Framer;
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly maxMessageSize: number;
  private readonly waiters = new Map<string, Waiter>();
  private socket: Dealer | undefined;
  private sending: Promise<unknown> = Promise.resolve();
  private unanswered = 0;
  private closed = false;

  constructor(
    readonly endpoint: string,
    options: ClientOptions = {},
  ) {
    super();
    this.maxMessageSize = options.maxMessageSize ?? MAX_MESSAGE_SIZE;
    this.framer = new Framer(loadKey(options.key, options.keyFile), options.name ?? "ts", this.maxMessageSize);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 1_000;
  }

  /** Sends request `c` (e.g. "luaEval") and resolves to its typed reply, or rejects with a {@link HootError}. */
  async call<C extends RequestCase>(c: C, message: RequestInit<C>, options: CallOptions = {}): Promise<ReplyOf<C>> {
    if (this.closed) throw new HootError(ErrorCode.CANCELLED, "the client is closed");
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const attemptMs = options.attemptTimeoutMs ?? this.attemptTimeoutMs;
    const retry = options.idempotent ?? isIdempotent(c);
    const id = this.framer.nextId();
    const deadline = Date.now() + timeoutMs;
    let backoffMs = 50;
    try {
      for (let remaining = timeoutMs; remaining > 0; remaining = deadline - Date.now()) {
        const frames = this.framer.frames(id, { case: c, value: message } as Payload, remaining, options.traceparent ?? "");
        const socket = this.socket ?? this.connect();
        // Each attempt waits on its own promise; a reply to an earlier one (same id) settles it too.
        const reply = new Promise<Envelope | typeof LOST>((resolve, reject) =>
          this.waiters.set(id, { resolve, reject, socket }),
        );
        this.send(socket, frames);
        const answer = await waitFor(reply, retry ? Math.min(remaining, attemptMs) : remaining, options.signal);
        if (answer === LOST) {
          if (!retry) {
            throw new HootError(
              ErrorCode.UNAVAILABLE,
              `the connection to ${this.endpoint} was lost with ${c} in flight; it may or may not have been done`,
            );
          }
          await new Promise((r) => setTimeout(r, Math.min(backoffMs, Math.max(0, deadline - Date.now()))));
          backoffMs = Math.min(backoffMs * 2, 1000);
          continue;
        }
        if (answer !== undefined) return unwrap(answer, c);
        if (!retry) break;
        this.attemptUnanswered();
      }
    } finally {
      this.waiters.delete(id);
    }
    throw new HootError(ErrorCode.DEADLINE_EXCEEDED, `no reply to ${c} from ${this.endpoint} within ${timeoutMs} ms`);
  }

  /** Closes the socket; calls still waiting fail with CANCELLED. */
  close(): void {
    this.closed = true;
    this.socket?.close();
    this.socket = undefined;
    for (const waiter of this.waiters.values()) waiter.reject(new HootError(ErrorCode.CANCELLED, "the client was closed"));
    this.waiters.clear();
  }

  private connect(): Dealer {
    this.socket?.close();
    const socket = new Dealer({
      linger: 0,
      reconnectInterval: 100,
      reconnectMaxInterval: 500,
      maxMessageSize: this.maxMessageSize,
      heartbeatInterval: 1000,
      heartbeatTimeout: 3000,
      heartbeatTimeToLive: 3000,
    });
    socket.events.on("disconnect", () => this.connectionLost(socket));
    socket.connect(this.endpoint);
    this.socket = socket;
    this.sending = Promise.resolve();
    void this.read(socket);
    return socket;
  }

  /** Attempts sent on `socket` will get no reply over it: they stop waiting. */
  private connectionLost(socket: Dealer): void {
    for (const waiter of this.waiters.values()) {
      if (waiter.socket === socket) waiter.resolve(LOST);
    }
  }

  /** Queues frames on the socket: zeromq allows one send in progress at a time. */
  private send(socket: Dealer, frames: Buffer[]): void {
    // A send that fails (the socket was replaced or closed under it) is an unanswered attempt.
    this.sending = this.sending.then(() => socket.send(frames)).catch(() => undefined);
  }

  private async read(socket: Dealer): Promise<void> {
    try {
      for await (const frames of socket) {
        const reply = this.framer.decode(frames);
        if (reply === undefined) continue;
        this.unanswered = 0;
        this.waiters.get(reply.id)?.resolve(reply);
      }
    } catch {
      // The socket was closed: a new one has its own reader.
    }
  }

  /** Two unanswered attempts in a row: replace the socket (and its routing id), per §9. */
  private attemptUnanswered(): void {
    this.unanswered += 1;
    if (this.unanswered >= 2) {
      this.unanswered = 0;
      this.connect();
    }
  }
}

/** The reply if it comes within `ms`, else undefined; rejects at once if `signal` aborts. */
function waitFor<T>(reply: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const cancelled = () => {
      clearTimeout(timer);
      reject(new HootError(ErrorCode.CANCELLED, "the call was aborted"));
    };
    if (signal?.aborted) return cancelled();
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", cancelled);
      resolve(undefined);
    }, ms);
    signal?.addEventListener("abort", cancelled, { once: true });
    reply.then(
      (value) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", cancelled);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", cancelled);
        reject(error);
      },
    );
  });
}
