// The studio in Firefox: Debian's firefox-esr, driven by puppeteer-core over WebDriver BiDi
// (puppeteer-core never downloads a browser), against `holler up` on free ports with a token
// and a seeded timeline, as studio.test.mjs does in chromium. Run by `npm test` here, after
// `cargo build -p holler`. Screenshots land in target/studio-screenshots/firefox-*.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";
import { ROOT, startStack, seedStudio, until, watchPage } from "./stack.mjs";

const SHOTS = join(ROOT, "target/studio-screenshots");
const TOKEN = "studio-firefox-token";
/** Debian's firefox-esr as found on PATH (FIREFOX overrides). */
const FIREFOX =
  process.env.FIREFOX ||
  (process.env.PATH || "").split(":").map((dir) => join(dir, "firefox-esr")).find((path) => path.startsWith("/") && existsSync(path)) ||
  "/usr/bin/firefox-esr";

let stack, base, browser, page, scratch;
/** Console errors and uncaught exceptions in the page. */
const problems = [];
/** Requests the page made that failed ("METHOD path STATUS"). */
const failed = [];
const tool = (name, args) => stack.tool(name, args);

/**
 * Headless Firefox in a throwaway profile under `dir`: autoplay allowed, no background networking.
 *
 * Firefox needs an audio output it can open: on a machine with no sound card its <audio> fires
 * MEDIA_ERR_DECODE "OnMediaSinkAudioError" (Chromium quietly plays into a fake device instead).
 * So ALSA's `default` is its `null` device here, for this Firefox only (alsa-lib reads
 * $XDG_CONFIG_HOME/alsa/asoundrc). It takes samples as fast as they come, so a take plays through
 * faster than real time. An AudioContext still never starts on it (Firefox sees 0 output
 * channels), which is why nothing here goes through Web Audio.
 */
function launchFirefox(dir) {
  const config = join(dir, "config");
  mkdirSync(join(config, "alsa"), { recursive: true });
  writeFileSync(join(config, "alsa/asoundrc"), "pcm.!default { type null }\n");
  const userDataDir = join(dir, "profile");
  mkdirSync(userDataDir);
  return puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    userDataDir,
    // MOZ_REMOTE_SETTINGS_DEVTOOLS lets the services.settings.server pref below take effect;
    // without it Firefox still looks up firefox.settings.services.mozilla.com.
    env: { ...process.env, XDG_CONFIG_HOME: config, MOZ_REMOTE_SETTINGS_DEVTOOLS: "1" },
    defaultViewport: { width: 1280, height: 900 },
    // puppeteer's own profile defaults already switch off updates, safe browsing, telemetry
    // uploads and add-on checks; these close the rest of what would reach for the network.
    extraPrefsFirefox: {
      "media.autoplay.default": 0,
      "media.autoplay.blocking_policy": 0,
      "network.captive-portal-service.enabled": false,
      "network.connectivity-service.enabled": false,
      "network.dns.disablePrefetch": true,
      "network.prefetch-next": false,
      "network.trr.mode": 5,
      "dom.push.connection.enabled": false,
      "browser.region.update.enabled": false,
      "browser.region.network.url": "",
      "browser.safebrowsing.provider.mozilla.updateURL": "",
      "extensions.blocklist.enabled": false,
      "media.gmp-gmpopenh264.enabled": false,
      "toolkit.telemetry.enabled": false,
      "toolkit.telemetry.server": "",
      // Remote settings from nowhere (puppeteer's own default names a host, http://dummy.test).
      "services.settings.server": "data:,#remote-settings-dummy/v1",
    },
  });
}

/** Waits for `selector` to hold an element whose text matches `pattern`; resolves to that text. */
async function textOf(selector, pattern, timeout = 15000) {
  const handle = await page.waitForFunction(
    (selector, source, flags) => {
      const pattern = new RegExp(source, flags);
      for (const node of document.querySelectorAll(selector)) {
        if (pattern.test(node.textContent)) return node.textContent;
      }
      return false;
    },
    { timeout },
    selector,
    pattern.source,
    pattern.flags,
  );
  return handle.jsonValue();
}

const position = () => page.$eval("#position", (node) => node.textContent);
const beatsShown = async () => parseFloat((await position()).split("·")[1]);

before(async () => {
  stack = await startStack(TOKEN);
  base = stack.base;

  await seedStudio(stack);

  scratch = mkdtempSync(join(tmpdir(), "hoot-firefox-"));
  browser = await launchFirefox(scratch);
  page = await browser.newPage();
  page.setDefaultTimeout(15000);
  watchPage(page, problems, failed);
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test("firefox: the printed link signs in, and the page shows the seeded artifacts and timeline", async () => {
  await page.goto(`${base}/#token=${TOKEN}`);
  await page.waitForSelector('#artifacts li[aria-label="verse render"]');
  await page.waitForSelector('#artifacts li[aria-label="verse"]');
  assert.ok(!page.url().includes(TOKEN), `the token leaves the address bar: ${page.url()}`);
  const names = await page.$$eval("#artifacts li > button.link", (buttons) => buttons.map((b) => b.textContent).sort());
  assert.deepEqual(names, ["verse", "verse render"]);
  await page.waitForSelector('#timeline [aria-label="midi region verse at beat 0"]');
  await page.waitForSelector('#timeline [aria-label="audio region verse render at beat 8"]');
  await page.waitForSelector('#timeline [aria-label="section_change marker at beat 4"]');
  // The MIDI region is drawn from its notes (12 in the tune), the WAV from its peaks.
  await page.waitForSelector('#timeline [aria-label="midi region verse at beat 0"][data-notes="12"]');
  await page.waitForSelector('#timeline [aria-label="audio region verse render at beat 8"][data-peaks]');
  // The regions show on screen with the artifacts' names, not just in the DOM.
  const regions = await page.$$eval("#timeline .region", (blocks) =>
    blocks.map((block) => {
      const box = block.getBoundingClientRect();
      return { name: block.querySelector(".name").textContent, width: box.width, height: box.height };
    }),
  );
  assert.deepEqual(regions.map((r) => r.name).sort(), ["verse", "verse render"]);
  for (const region of regions) assert.ok(region.width > 10 && region.height > 10, JSON.stringify(region));
  await textOf("#connection", /^live$/);
  assert.equal(await page.$eval("#login", (form) => form.hidden), true, "no sign-in form");
  await page.screenshot({ path: join(SHOTS, "firefox-studio.png"), fullPage: true });
  assert.deepEqual(problems, []);
  assert.deepEqual(failed, []);
});

test("firefox: pressing Play moves the Position readout, Stop holds it", async () => {
  const before = await position();
  await page.locator("#play").click();
  await until("the playhead to move", async () => (await beatsShown()) > 0.5);
  assert.notEqual(await position(), before);
  await page.locator("#stop").click();
  const stopped = await until("the transport to stop", async () => {
    const { state } = await tool("transport_status");
    return state.playback === "stopped" && state;
  });
  // The readout settles on where the transport stopped ...
  const where = `${stopped.position_beats.toFixed(2)} beats`;
  await page.waitForFunction((text) => document.getElementById("position").textContent.includes(text), {}, where);
  // ... and stays there over the next twenty frames the page draws.
  const frames = await page.evaluate(async () => {
    const seen = [];
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => requestAnimationFrame(resolve));
      seen.push(document.getElementById("position").textContent);
    }
    return seen;
  });
  assert.ok(frames.every((text) => text.includes(where)), `held at ${where}: ${JSON.stringify(frames)}`);
  assert.equal(await page.$eval("#play", (button) => button.getAttribute("aria-pressed")), "false");
  assert.deepEqual(problems, []);
});

test("firefox: Listen on a WAV artifact plays it in the page's audio element", async () => {
  await page.locator('button[aria-label="Listen to verse render"]').click();
  await page.waitForFunction(() => document.getElementById("artifact-audio").src.includes("/api/cas/"));
  const played = await page.waitForFunction(
    () => {
      const audio = document.getElementById("artifact-audio");
      const state = {
        currentTime: audio.currentTime,
        duration: audio.duration,
        error: audio.error && `${audio.error.code} ${audio.error.message}`,
        src: audio.src,
      };
      return (audio.error || audio.currentTime > 0) && state;
    },
    { timeout: 10000 },
  );
  const result = await played.jsonValue();
  assert.equal(result.error, null, `the WAV plays: ${JSON.stringify(result)}`);
  assert.ok(result.currentTime > 0, `the audio advanced: ${JSON.stringify(result)}`);
  // The render is 8 beats at 120 bpm: the whole of it loaded.
  assert.ok(Math.abs(result.duration - 4) < 0.1, `the whole render loaded: ${JSON.stringify(result)}`);
  await page.evaluate(() => document.getElementById("artifact-audio").pause());
  assert.deepEqual(problems, []);
});

test("firefox: a job from the scratchpad reaches succeeded in its Jobs row", async () => {
  const code =
    'function main() for i = 1, 4 do local t = os.clock() while os.clock() - t < 0.05 do end ' +
    'job.progress(i / 4, "step " .. i) end return 7 end';
  await page.locator("#code").fill(code);
  await page.evaluate(() => (document.getElementById("result").textContent = ""));
  await page.locator("#run-job").click();
  const started = await textOf("#result", /^job \S+: /);
  const id = started.split(" ")[1].replace(/:$/, "");
  const row = `#jobs li[data-job="${id}"]`;
  await page.waitForSelector(row);
  await page.waitForFunction(
    (row) => document.querySelector(`${row} .state`)?.textContent === "succeeded",
    { timeout: 30000 },
    row,
  );
  assert.equal(await page.$eval(`${row} progress`, (bar) => bar.value), 1);
  assert.match(await page.$eval(row, (item) => item.textContent), /step 4/);
  assert.equal(await page.$(`${row} button:not(.link)`), null, "a finished job has no Cancel button");
  assert.equal((await tool("job_status", { job_id: id })).job.state, "succeeded");
  await page.screenshot({ path: join(SHOTS, "firefox-jobs.png"), fullPage: true });
  assert.deepEqual(problems, []);
  assert.deepEqual(failed, []);
});
