// Typed helpers for the common calls. Each builds its request and hands it to `call`, which
// resolves to the generated reply type; every other request is one `call(case, message)` away.

import { type JsonObject, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";

import type { CallOptions, RequestInit } from "./client.js";
import { type JobPriority, PollMode } from "./gen/hooteproto/v1/job_pb.js";
import type { TimelineEventType } from "./gen/hooteproto/v1/timeline_event_pb.js";
import type { ReplyOf, RequestCase } from "./protocol.js";

/** A `google.protobuf.Value` (a script's result, say) as plain JSON; absent is `null`. */
export function plain(value: Value | undefined): JsonValue {
  return value === undefined ? null : toJson(ValueSchema, value);
}

export abstract class Calls {
  abstract call<C extends RequestCase>(c: C, message: RequestInit<C>, options?: CallOptions): Promise<ReplyOf<C>>;

  // workers

  /** Liveness: the service's name and version. */
  ping(options?: CallOptions) {
    return this.call("ping", {}, options);
  }

  // Lua (luanette)

  /** Runs Lua now; `params` is the global table `params`. */
  luaEval(code: string, params?: JsonObject, options?: CallOptions) {
    return this.call("luaEval", { code, params }, options);
  }

  /** Stores a script by its hash (its `describe()` is checked first). */
  scriptStore(content: string, more: { tags?: string[]; creator?: string; name?: string } = {}, options?: CallOptions) {
    return this.call("scriptStore", { content, ...more }, options);
  }

  // jobs (luanette)

  /**
   * Starts a stored script as a background job; the reply has its id. `script` is a hash, a
   * unique prefix, a script name (its newest version) or `name@<hash prefix>`.
   */
  jobExecute(script: string, params?: JsonObject, tags: string[] = [], options?: CallOptions, priority?: JobPriority) {
    return this.call("jobExecute", { scriptHash: script, params, tags, priority }, options);
  }

  /** A job's state, result, logs and progress. */
  jobStatus(jobId: string, options?: CallOptions) {
    return this.call("jobStatus", { jobId }, options);
  }

  /** Waits up to `waitMs` for any (or all) of the jobs to finish. */
  jobPoll(jobIds: string[], waitMs = 10_000, all = false, options: CallOptions = {}) {
    const mode = all ? PollMode.ALL : PollMode.ANY;
    // The server holds the request for up to waitMs: the attempt and the whole call wait longer.
    const patient = { timeoutMs: waitMs + 5_000, attemptTimeoutMs: waitMs + 2_000, ...options };
    return this.call("jobPoll", { jobIds, timeoutMs: waitMs, mode }, patient);
  }

  /** Cancels a job; the reply has its final state. */
  jobCancel(jobId: string, options?: CallOptions) {
    return this.call("jobCancel", { jobId }, options);
  }

  // CAS (hootenanny)

  /** Stores bytes; the reply has their BLAKE3 hash. */
  casStore(data: Uint8Array, mimeType = "application/octet-stream", options?: CallOptions) {
    return this.call("casStore", { data, mimeType }, options);
  }

  /** An object's bytes (or a range of them), by hash or unique prefix. */
  casGet(hash: string, range: { offset?: bigint; length?: bigint } = {}, options?: CallOptions) {
    return this.call("casGet", { hash, ...range }, options);
  }

  /** An object's size and type, without its bytes. */
  casInspect(hash: string, options?: CallOptions) {
    return this.call("casInspect", { hash }, options);
  }

  // artifacts (hootenanny)

  /** Records a CAS object as an artifact, with lineage (`parentIds`). */
  artifactCreate(artifact: RequestInit<"artifactCreate">, options?: CallOptions) {
    return this.call("artifactCreate", artifact, options);
  }

  /** One artifact by id. */
  artifactGet(artifactId: string, options?: CallOptions) {
    return this.call("artifactGet", { artifactId }, options);
  }

  /** Artifacts, newest first, filtered and paged. */
  artifactList(filter: RequestInit<"artifactList"> = {}, options?: CallOptions) {
    return this.call("artifactList", filter, options);
  }

  // transport and timeline (chaosgarden)

  /** Starts playback. */
  transportPlay(options?: CallOptions) {
    return this.call("transportPlay", {}, options);
  }

  /** Stops playback where it is. */
  transportStop(options?: CallOptions) {
    return this.call("transportStop", {}, options);
  }

  /** Moves the playhead. */
  transportSeek(positionBeats: number, options?: CallOptions) {
    return this.call("transportSeek", { positionBeats }, options);
  }

  /** Where the playhead is, the tempo, and whether it plays. */
  transportStatus(options?: CallOptions) {
    return this.call("transportStatus", {}, options);
  }

  /** Markers and regions between two positions (`toBeats` 0: everything). */
  timelineQuery(fromBeats = 0, toBeats = 0, options?: CallOptions) {
    return this.call("timelineQuery", { fromBeats, toBeats }, options);
  }

  /** Adds a marker; a GENERATE_TRANSITION marker with `metadata.script_hash` runs that script. */
  timelineAddMarker(eventType: TimelineEventType, positionBeats: number, metadata?: JsonObject, options?: CallOptions) {
    return this.call("timelineAddMarker", { eventType, positionBeats, metadata }, options);
  }
}
