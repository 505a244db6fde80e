// The client against real services built from the workspace: typed calls to all three
// services, typed errors, concurrency on one socket, signing, local limits, trace context,
// and a restart of the whole stack in the middle of a request that the client rides out.

import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  Client,
  ErrorCode,
  HootError,
  JobPriority,
  JobState,
  KEY_FILE_NAME,
  loadKey,
  PlaybackState,
  plain,
  TimelineEventType,
} from "../src/index.js";
import { EchoServer, freePort, Stack } from "./stack.js";

/** The HootError a promise rejects with (fails the test if it resolves). */
async function failure(promise: Promise<unknown>): Promise<HootError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof HootError, `a HootError, not ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

describe("against holler up", () => {
  let stack: Stack;
  const ambient = process.env.HOOT_DATA_DIR;
  before(async () => {
    stack = await Stack.start();
    // As a user on the stack's host: clients find <data dir>/hoot.key, the key holler up
    // created, by themselves.
    process.env.HOOT_DATA_DIR = stack.dataDir;
  });
  after(async () => {
    if (ambient === undefined) delete process.env.HOOT_DATA_DIR;
    else process.env.HOOT_DATA_DIR = ambient;
    assert.equal(await stack.stop(), 0, "holler up exits cleanly on SIGTERM");
  });

  test("holler up requires a key, and clients find it in the data dir", async () => {
    const found = loadKey();
    assert.ok(found !== undefined && found.length === 64, "holler up created a 64-hex-character key");
    assert.equal(statSync(join(stack.dataDir, KEY_FILE_NAME)).mode & 0o777, 0o600, "hoot.key is 0600");
    assert.equal(statSync(stack.dataDir).mode & 0o777, 0o700, "the data dir is 0700");
    const signed = new Client(stack.endpoints.luanette);
    const forged = new Client(stack.endpoints.luanette, {
      key: "not the key this stack holds!",
      timeoutMs: 700,
      attemptTimeoutMs: 300,
    });
    try {
      assert.equal((await signed.luaEval("return 6 * 7")).result?.kind.value, 42);
      assert.equal((await failure(forged.luaEval("return 1"))).code, ErrorCode.DEADLINE_EXCEEDED);
    } finally {
      signed.close();
      forged.close();
    }
  });

  test("typed calls reach every service", async () => {
    const lua = new Client(stack.endpoints.luanette);
    const hoot = new Client(stack.endpoints.hootenanny);
    const garden = new Client(stack.endpoints.chaosgarden);
    try {
      assert.equal((await lua.ping()).service, "luanette");
      assert.equal((await hoot.ping()).service, "hootenanny");
      const evaluated = await lua.luaEval("return {n = params.n * 2}", { n: 21 });
      assert.deepEqual(plain(evaluated.result), { n: 42 });

      const bytes = new TextEncoder().encode("hello, typescript");
      const stored = await hoot.casStore(bytes, "text/plain");
      assert.match(stored.hash, /^[0-9a-f]{64}$/);
      const fetched = await hoot.casGet(stored.hash.slice(0, 10));
      assert.equal(Buffer.from(fetched.data).toString(), "hello, typescript", "a prefix resolves");
      assert.equal((await hoot.casInspect(stored.hash)).object?.size, BigInt(bytes.length));
      const created = await hoot.artifactCreate({ casHash: stored.hash, name: "greeting", tags: ["ts"] });
      const artifactId = created.artifact?.artifactId ?? "";
      assert.equal((await hoot.artifactGet(artifactId)).artifact?.name, "greeting");
      const listed = await hoot.artifactList({ tag: "ts" });
      assert.deepEqual(listed.artifacts.map((a) => a.artifactId), [artifactId]);

      const script = await lua.scriptStore("function main(p) return p.a + p.b end", { tags: ["ts"] });
      const job = await lua.jobExecute(script.script?.scriptHash ?? "", { a: 2, b: 3 });
      const [done] = (await lua.jobPoll([job.jobId], 5_000)).completed;
      assert.equal(done.state, JobState.SUCCEEDED);
      assert.equal(plain(done.result), 5);
      const named = (await lua.scriptStore("function main(p) return 7 end", { name: "ts-seven" })).script;
      assert.deepEqual([named?.name, named?.version], ["ts-seven", 1]);
      const byName = await lua.jobExecute("ts-seven", undefined, [], undefined, JobPriority.HIGH);
      const [ran] = (await lua.jobPoll([byName.jobId], 5_000)).completed;
      assert.deepEqual(
        [ran.scriptHash, ran.scriptName, ran.priority],
        [named?.scriptHash, "ts-seven", JobPriority.HIGH],
      );
      assert.equal(plain(ran.result), 7);

      const marker = await garden.timelineAddMarker(TimelineEventType.CUE_POINT, 4, { name: "drop" });
      const markers = (await garden.timelineQuery()).markers.map((m) => m.markerId);
      assert.ok(markers.includes(marker.marker?.markerId ?? "missing"));
      assert.equal((await garden.transportPlay()).state?.playback, PlaybackState.PLAYING);
      assert.equal((await garden.transportStop()).state?.playback, PlaybackState.STOPPED);
    } finally {
      for (const client of [lua, hoot, garden]) client.close();
    }
  });

  test("errors carry the canonical code and details", async () => {
    const lua = new Client(stack.endpoints.luanette);
    const hoot = new Client(stack.endpoints.hootenanny);
    try {
      const boom = await failure(lua.luaEval("error('boom')"));
      assert.equal(boom.code, ErrorCode.INVALID_ARGUMENT);
      assert.match(boom.message, /boom/);
      assert.equal(boom.details.kind, "runtime");
      assert.equal((await failure(lua.jobStatus("no-such-job"))).codeName, "NOT_FOUND");
      assert.equal((await failure(hoot.transportPlay())).code, ErrorCode.UNIMPLEMENTED);
      // Any request the schema has is one `call` away, typed by its case.
      const missing = await failure(hoot.call("casGet", { hash: "f".repeat(64) }));
      assert.equal(missing.code, ErrorCode.NOT_FOUND);
    } finally {
      lua.close();
      hoot.close();
    }
  });

  test("fifty concurrent calls share one socket", async () => {
    const lua = new Client(stack.endpoints.luanette);
    try {
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => lua.luaEval(`return ${i} * 2`)));
      assert.deepEqual(
        replies.map((r) => plain(r.result)),
        Array.from({ length: 50 }, (_, i) => i * 2),
      );
    } finally {
      lua.close();
    }
  });

  test("the caller's trace context reaches the script", async () => {
    const lua = new Client(stack.endpoints.luanette);
    try {
      const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
      const traceparent = `00-${trace}-00f067aa0ba902b7-01`;
      const seen = await lua.luaEval("return otel.traceparent()", undefined, { traceparent });
      assert.equal(String(plain(seen.result)).split("-")[1], trace);
    } finally {
      lua.close();
    }
  });

  test("requests lost with a killed server: idempotent ones are resent, the rest fail at once", async () => {
    const lua = new Client(stack.endpoints.luanette, { timeoutMs: 20_000 });
    try {
      assert.equal((await lua.ping()).service, "luanette");
      await stack.freeze();
      const answer = lua.ping(); // taken in by a process that will never answer it
      const evaluated = failure(lua.luaEval("return 1")); // the same, but not safe to resend
      await new Promise((r) => setTimeout(r, 300));
      const killed = Date.now();
      await stack.kill();
      // The dropped connection ends the eval's wait at once: it may or may not have run.
      const lost = await evaluated;
      assert.equal(lost.code, ErrorCode.UNAVAILABLE, lost.message);
      assert.ok(Date.now() - killed < 2000, `the eval waited ${Date.now() - killed} ms after the kill`);
      await stack.restart();
      // Ping is idempotent: the client sends it again.
      assert.equal((await answer).service, "luanette");
    } finally {
      lua.close();
    }
  });

  test("a request sent while the stack restarts is delivered when it is back", async () => {
    const lua = new Client(stack.endpoints.luanette, { timeoutMs: 30_000 });
    try {
      assert.equal((await lua.ping()).service, "luanette");
      assert.equal(await stack.stop(), 0);
      const restarted = new Promise((r) => setTimeout(r, 1500)).then(() => stack.restart());
      // Sent while nothing listens: the socket holds it until the service is back.
      const started = Date.now();
      assert.equal((await lua.ping()).service, "luanette");
      assert.ok(Date.now() - started >= 1000, "the answer came from the restarted stack");
      await restarted;
      assert.equal(plain((await lua.luaEval("return 'back'")).result), "back");
    } finally {
      lua.close();
    }
  });
});

describe("without a server", () => {
  test("a request that is not idempotent is never resent: it fails at its deadline", async () => {
    const lua = new Client(`tcp://127.0.0.1:${await freePort()}`, { attemptTimeoutMs: 100 });
    try {
      const started = Date.now();
      const error = await failure(lua.luaEval("return 1", undefined, { timeoutMs: 600 }));
      assert.equal(error.code, ErrorCode.DEADLINE_EXCEEDED);
      assert.ok(Date.now() - started >= 550, "it waited for its whole deadline, not one attempt");
    } finally {
      lua.close();
    }
  });

  test("an oversize request fails before it is sent", async () => {
    const client = new Client(`tcp://127.0.0.1:${await freePort()}`, { maxMessageSize: 1024 });
    try {
      const error = await failure(client.casStore(new Uint8Array(2048)));
      assert.equal(error.code, ErrorCode.RESOURCE_EXHAUSTED);
      assert.match(error.message, /limit is 1024/);
    } finally {
      client.close();
    }
  });

  test("an aborted call fails at once with CANCELLED, and close() fails the rest", async () => {
    const client = new Client(`tcp://127.0.0.1:${await freePort()}`);
    const controller = new AbortController();
    const aborted = client.ping({ signal: controller.signal });
    const pending = client.ping();
    controller.abort();
    assert.equal((await failure(aborted)).code, ErrorCode.CANCELLED);
    client.close();
    assert.equal((await failure(pending)).code, ErrorCode.CANCELLED);
    assert.equal((await failure(client.ping())).code, ErrorCode.CANCELLED);
  });

  test("a key shorter than 16 bytes is refused", () => {
    assert.throws(() => new Client("tcp://127.0.0.1:1", { key: "short" }), /at least 16 bytes/);
  });
});

describe("signing (PROTOCOL.md §5)", () => {
  const key = "a shared secret of 32 characters";
  let echo: EchoServer;
  before(async () => {
    echo = await EchoServer.start(key);
  });
  after(async () => {
    await echo.stop();
  });

  test("a signed ping is answered", async () => {
    const client = new Client(echo.endpoint, { key });
    try {
      assert.ok((await client.ping()).service.length > 0);
    } finally {
      client.close();
    }
  });

  test("unsigned and wrongly signed requests are dropped, not answered", async () => {
    for (const options of [{ key: "another secret of 32 characters!" }, {}]) {
      const client = new Client(echo.endpoint, { ...options, timeoutMs: 700, attemptTimeoutMs: 300 });
      try {
        assert.equal((await failure(client.ping())).code, ErrorCode.DEADLINE_EXCEEDED);
      } finally {
        client.close();
      }
    }
  });
});
