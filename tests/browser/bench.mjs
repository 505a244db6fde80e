// The studio's benchmark (`npm run bench` here, after `cargo build --release -p holler`; set
// HOLLER to another binary to measure it). Peers are measured in the same run:
//
// 1. First paint and the page fully drawn with 200 regions and 1,000 artifacts, against the
//    same page on the same stack before they were added.
// 2. Transport updates on /api/events while playing (goal ≥ 20 Hz), and the gateway's CPU
//    with one page open against the same stack playing with none open (goal < 2% of a core).
// 3. Peaks of a 10-minute WAV, uncached and cached (goal ≤ 0.5 s), against downloading the
//    same bytes through /api/cas.

import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startStack, launchChromium, seedTune } from "./stack.mjs";

const TOKEN = "bench-token";
const auth = { authorization: `Bearer ${TOKEN}` };
const stack = await startStack(TOKEN);
const browser = await launchChromium();

const seconds = (ms) => `${(ms / 1000).toFixed(3)} s`;

/** Loads the studio; resolves to {fcp, drawn} in ms from navigation start. */
async function load(regions, artifacts) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${stack.base}/#token=${TOKEN}`);
  await page.waitForFunction(
    ([regions, artifacts]) =>
      document.querySelectorAll("#timeline .region").length === regions &&
      document.querySelectorAll("#artifacts li").length === artifacts,
    [regions, artifacts],
    { timeout: 30000 },
  );
  const timing = await page.evaluate(() => ({
    drawn: performance.now(),
    fcp: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN,
  }));
  await context.close();
  return timing;
}

// ---- 1. First paint ----
const empty = await load(0, 0);
const tune = await seedTune(stack);
for (let i = 0; i < 200; i++) await stack.tool("timeline_add_region", { cas_hash: tune, position_beats: i * 8 });
for (let i = 0; i < 1000; i++) {
  await stack.tool("artifact_create", { cas_hash: tune, name: `take ${i}`, tags: ["bench"], creator: "bench" });
}
const full = [];
for (let i = 0; i < 3; i++) full.push(await load(200, 1000));
full.sort((a, b) => a.drawn - b.drawn);
const median = full[1];
console.log("1. the studio page, headless chromium (median of 3 loads)");
console.log(`   empty stack:                    first paint ${seconds(empty.fcp)}, drawn ${seconds(empty.drawn)}`);
console.log(`   200 regions, 1,000 artifacts:   first paint ${seconds(median.fcp)}, drawn ${seconds(median.drawn)}`);
console.log(`   ratio drawn full/empty: ${(median.drawn / empty.drawn).toFixed(2)}x (goal: first paint <= 1 s)`);

// ---- 2. Transport updates and the gateway's CPU ----
const ticks = () => {
  const [utime, stime] = readFileSync(`/proc/${stack.pid}/stat`, "utf8").split(") ")[1].split(" ").slice(11, 13);
  return Number(utime) + Number(stime);
};
const HZ = 100; // USER_HZ on Linux
// Long windows, and the page's window between two without it, so the host's drift cancels.
const WINDOW = 10000;
async function cpuOver(ms) {
  const start = ticks();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ((ticks() - start) / HZ / (ms / 1000)) * 100;
}
await stack.tool("transport_play");
const without = await cpuOver(WINDOW);
const controller = new AbortController();
const events = await fetch(`${stack.base}/api/events`, { headers: auth, signal: controller.signal });
let transports = 0;
const counting = (async () => {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of events.body) {
      transports += (decoder.decode(chunk).match(/^event: transport$/gm) || []).length;
    }
  } catch {
    // aborted
  }
})();
await new Promise((resolve) => setTimeout(resolve, 500));
const counted = transports;
const withPage = await cpuOver(WINDOW);
const rate = (transports - counted) / (WINDOW / 1000);
controller.abort();
await counting;
const withoutAfter = await cpuOver(WINDOW);
await stack.tool("transport_stop");
console.log("2. /api/events while playing");
console.log(`   transport updates: ${rate.toFixed(1)} Hz (goal >= 20)`);
const baseline = (without + withoutAfter) / 2;
console.log(`   holler up CPU playing, no page open (before, after): ${without.toFixed(2)}%, ${withoutAfter.toFixed(2)}% of a core`);
console.log(`   holler up CPU playing, one page open:                ${withPage.toFixed(2)}% of a core`);
console.log(`   the stream's cost: ${(withPage - baseline).toFixed(2)}% of a core (goal < 2%)`);

// ---- 3. Peaks of a 10-minute WAV ----
const RATE = 48000;
const frames = RATE * 600;
const wav = Buffer.alloc(44 + frames * 4);
wav.write("RIFF", 0);
wav.writeUInt32LE(36 + frames * 4, 4);
wav.write("WAVEfmt ", 8);
wav.writeUInt32LE(16, 16);
wav.writeUInt16LE(1, 20);
wav.writeUInt16LE(2, 22);
wav.writeUInt32LE(RATE, 24);
wav.writeUInt32LE(RATE * 4, 28);
wav.writeUInt16LE(4, 32);
wav.writeUInt16LE(16, 34);
wav.write("data", 36);
wav.writeUInt32LE(frames * 4, 40);
for (let i = 0; i < frames; i++) {
  const sample = Math.round(Math.sin((2 * Math.PI * 220 * i) / RATE) * 12000 * ((i % RATE) / RATE));
  wav.writeInt16LE(sample, 44 + i * 4);
  wav.writeInt16LE(sample, 46 + i * 4);
}
const file = join(stack.dir, "ten-minutes.wav");
writeFileSync(file, wav);
const hash = JSON.parse(stack.cli("--json", "cas", "put", file)).hash;
async function timed(path) {
  const start = performance.now();
  const response = await fetch(`${stack.base}${path}`, { headers: auth });
  const body = Buffer.from(await response.arrayBuffer());
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body}`);
  return [performance.now() - start, body.length];
}
const [download, bytes] = await timed(`/api/cas/${hash}`);
const [uncached] = await timed(`/api/peaks/${hash}?buckets=2048`);
const [cached] = await timed(`/api/peaks/${hash}?buckets=2048`);
console.log(`3. peaks of a 10-minute 16-bit stereo WAV (${(bytes / 2 ** 20).toFixed(0)} MiB), 2,048 buckets`);
console.log(`   download through /api/cas (peer): ${seconds(download)}`);
console.log(`   peaks, first time:                ${seconds(uncached)} (${(uncached / download).toFixed(2)}x the download; goal <= 0.5 s)`);
console.log(`   peaks, cached:                    ${seconds(cached)}`);

await browser.close();
await stack.stop();
