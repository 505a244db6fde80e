// `holler up` on free ports in a temporary directory, and Debian's chromium, for the studio's
// browser tests and benchmark.

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const HOLLER = process.env.HOLLER || join(ROOT, "target/debug/holler");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** Polls `condition` every 50 ms until it returns something truthy. */
export async function until(what, condition, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts `holler up` with `token`; resolves once its gateway answers. */
export async function startStack(token) {
  const dir = mkdtempSync(join(tmpdir(), "hoot-studio-"));
  writeFileSync(join(dir, "token"), `${token}\n`);
  const port = await freePort();
  const endpoint = async () => `tcp://127.0.0.1:${await freePort()}`;
  const global = ["--luanette", await endpoint(), "--hootenanny", await endpoint(), "--chaosgarden", await endpoint()];
  const data = join(dir, "data");
  const args = [
    ...global,
    "up",
    "--data-dir", data,
    "--port", String(port),
    "--audio-device", "none",
    "--broadcasts", await endpoint(),
    "--no-health",
    "--token-file", join(dir, "token"),
  ];
  const log = openSync(join(dir, "holler.log"), "a");
  const env = { ...process.env };
  delete env.HOOT_KEY;
  delete env.HOOT_KEY_FILE;
  const child = spawn(HOLLER, args, { stdio: ["ignore", log, log], env });
  const base = `http://127.0.0.1:${port}`;
  const auth = { authorization: `Bearer ${token}` };
  await until("holler up", async () => {
    try {
      return (await fetch(`${base}/health`, { headers: auth })).ok;
    } catch {
      return false;
    }
  }, 60000).catch((error) => {
    child.kill("SIGKILL");
    throw new Error(`${error.message}; log:\n${readFileSync(join(dir, "holler.log"), "utf8")}`);
  });
  return {
    base,
    dir,
    pid: child.pid,
    /** A tool call as a script would make it: bearer token, no browser Origin. */
    async tool(name, args = {}) {
      const response = await fetch(`${base}/api/tools/${name}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...auth },
        body: JSON.stringify(args),
      });
      const body = await response.json();
      assert.ok(response.ok, `${name}: ${JSON.stringify(body)}`);
      return body;
    },
    /** The `holler` CLI against this stack, as a user on its host runs it. */
    cli(...args) {
      return execFileSync(HOLLER, [...global, "--data-dir", data, ...args], { encoding: "utf8" });
    },
    async stop() {
      child.kill("SIGTERM");
      if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Headless chromium as this machine needs it (no background networking, autoplay allowed). */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
}

/** A 12-note tune as a Standard MIDI File in the CAS; resolves to its hash. */
/**
 * Records a page's console errors and uncaught exceptions in `problems` and its failed
 * requests ("METHOD path STATUS") in `failed`: playwright's and puppeteer's pages report them
 * alike. `expected(text)` names console errors that are not problems.
 */
export function watchPage(page, problems, failed, expected = () => false) {
  page.on("console", (message) => {
    if (message.type() === "error" && !expected(message.text())) problems.push(`console: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) {
      failed.push(`${response.request().method()} ${new URL(response.url()).pathname} ${response.status()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page: ${error.message}`));
}

/**
 * The timeline both browsers' tests start from: a MIDI phrase as an artifact ("verse") and a
 * region, a section_change marker at beat 4, and the render of it as a WAV artifact
 * ("verse render") and a region at beat 8.
 */
export async function seedStudio(stack) {
  const tool = (name, args) => stack.tool(name, args);
  const midi = await seedTune(stack);
  await tool("artifact_create", { cas_hash: midi, name: "verse", tags: ["midi"], creator: "seed" });
  await tool("timeline_add_region", { cas_hash: midi, position_beats: 0 });
  await tool("timeline_add_marker", { event_type: "section_change", position_beats: 4 });
  const render = await tool("timeline_render", { from_beats: 0, to_beats: 8 });
  await tool("artifact_create", { cas_hash: render.cas_hash, name: "verse render", tags: ["wav"], creator: "seed" });
  await tool("timeline_add_region", { cas_hash: render.cas_hash, position_beats: 8 });
}

export async function seedTune(stack) {
  const abc = "X:1\\nT:verse\\nM:4/4\\nL:1/8\\nQ:1/4=120\\nK:C\\nCDEF GABc|c2B2 A2G2|";
  return (await stack.tool("lua_eval", { code: `return midi.save(abc.to_midi("${abc}"))` })).result;
}
