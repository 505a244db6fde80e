// Starts real services for the live tests: `holler up` (Luanette, Hootenanny and Chaosgarden
// in one process) and the SDK's echo-server example, both built from the workspace
// (`cargo build -p holler --examples`), on free loopback ports.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, openSync, readdirSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const TARGET = join(ROOT, "target", "debug");

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitUntil(ready: () => Promise<boolean>, what: string, log: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (await ready().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up; see ${log}`);
}

function stopped(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}

export type Service = "luanette" | "hootenanny" | "chaosgarden";

/** `holler up` on free ports in a temporary data directory; `restart()` brings it back on the same ones. */
export class Stack {
  readonly dir = mkdtempSync(join(tmpdir(), "hooteproto-ts-"));
  endpoints = {} as Record<Service, string>;
  private port = 0;
  private broadcasts = "";
  private child: ChildProcess | undefined;

  /** The stack's data directory, where `holler up` creates `hoot.key`. */
  get dataDir(): string {
    return join(this.dir, "data");
  }

  static async start(): Promise<Stack> {
    const stack = new Stack();
    for (const name of ["luanette", "hootenanny", "chaosgarden"] as const) {
      stack.endpoints[name] = `tcp://127.0.0.1:${await freePort()}`;
    }
    stack.port = await freePort();
    stack.broadcasts = `tcp://127.0.0.1:${await freePort()}`;
    await stack.restart();
    return stack;
  }

  async restart(): Promise<void> {
    const log = join(this.dir, "holler.log");
    const out = openSync(log, "a");
    const e = this.endpoints;
    this.child = spawn(
      join(TARGET, "holler"),
      ["--luanette", e.luanette, "--hootenanny", e.hootenanny, "--chaosgarden", e.chaosgarden, "up"].concat(
        ["--data-dir", this.dataDir, "--port", String(this.port), "--audio-device", "none"],
        ["--broadcasts", this.broadcasts, "--no-health"],
      ),
      { stdio: ["ignore", out, out] },
    );
    const health = `http://127.0.0.1:${this.port}/health`;
    await waitUntil(async () => (await (await fetch(health)).text()).includes('"serving"'), "holler up", log);
  }

  /** SIGSTOP: the stack takes in requests (the kernel buffers them) and answers none. Resolves
   *  once every thread of the process has stopped (a signal takes effect asynchronously). */
  async freeze(): Promise<void> {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    this.child?.kill("SIGSTOP");
    await waitUntil(async () => allThreadsStopped(pid), "SIGSTOP", "/proc");
  }

  /** SIGKILL: whatever it had taken in is lost. */
  kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    });
  }

  /** SIGTERM; resolves to the exit code. */
  stop(): Promise<number | null> {
    return this.child === undefined ? Promise.resolve(null) : stopped(this.child);
  }
}

/** The SDK's echo-server example, which answers ping; with `key`, it drops unsigned messages. */
export class EchoServer {
  private constructor(
    readonly endpoint: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(key?: string): Promise<EchoServer> {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const dir = mkdtempSync(join(tmpdir(), "hooteproto-echo-"));
    const log = join(dir, "echo.log");
    const out = openSync(log, "a");
    const env = { ...process.env };
    delete env.HOOT_KEY_FILE;
    delete env.HOOT_KEY;
    // An empty data dir: no <data dir>/hoot.key can give it a key behind the test's back.
    env.HOOT_DATA_DIR = dir;
    if (key !== undefined) env.HOOT_KEY = key;
    const child = spawn(join(TARGET, "examples", "echo-server"), ["--bind", endpoint], { stdio: ["ignore", out, out], env });
    const port = Number(endpoint.split(":").pop());
    await waitUntil(() => isListening(port), "echo-server", log);
    return new EchoServer(endpoint, child);
  }

  stop(): Promise<number | null> {
    return stopped(this.child);
  }
}

/** Whether every thread of `pid` is stopped (state T in /proc/<pid>/task/<tid>/stat). */
function allThreadsStopped(pid: number): boolean {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  });
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
