// The studio in a real browser: Debian's chromium, driven by playwright-core, against
// `holler up` on free ports with a token and a seeded timeline. Run by scripts/test
// (`npm test` here, after `cargo build -p holler`). Screenshots land in
// target/studio-screenshots/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startStack, launchChromium, seedStudio, until, watchPage } from "./stack.mjs";

const SHOTS = join(ROOT, "target/studio-screenshots");
const TOKEN = "studio-test-token";

let stack, base, browser, page;
/** Console errors and uncaught exceptions in the page. */
const problems = [];
/** Requests the page made that failed ("METHOD path STATUS"); Chromium also logs each to the console. */
const failed = [];
const tool = (name, args) => stack.tool(name, args);

before(async () => {
  stack = await startStack(TOKEN);
  base = stack.base;

  await seedStudio(stack);
  const start = await tool("timeline_render", { from_beats: 0, to_beats: 4 });
  await tool("artifact_create", { cas_hash: start.cas_hash, name: "verse start", tags: ["wav"], creator: "seed" });

  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // Chromium logs each failed request to the console too; `failed` has those.
  watchPage(page, problems, failed, (text) => text.startsWith("Failed to load resource"));
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

test("a request without the token is refused", async () => {
  const call = await fetch(`${base}/api/tools/transport_status`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(call.status, 401);
  assert.equal((await call.json()).code, "UNAUTHENTICATED");
  assert.equal((await fetch(`${base}/api/events`)).status, 401);
  const wrong = await fetch(`${base}/api/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: "guess" }),
  });
  assert.equal(wrong.status, 401);
  // Another site's page cannot call the API even with the token.
  const foreign = await fetch(`${base}/api/tools/transport_status`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}`, origin: "http://evil.example" },
    body: "{}",
  });
  assert.equal(foreign.status, 403);
});

test("the printed link signs in, and the page shows the seeded timeline and artifacts", async () => {
  await page.goto(`${base}/#token=${TOKEN}`);
  const artifacts = page.getByRole("list", { name: "Artifacts" });
  await artifacts.getByRole("listitem", { name: "verse render" }).waitFor();
  await artifacts.getByRole("listitem", { name: "verse", exact: true }).waitFor();
  assert.ok(!page.url().includes(TOKEN), "the token leaves the address bar");
  const timeline = page.getByRole("list", { name: "Timeline" });
  await timeline.getByLabel("midi region verse at beat 0").waitFor();
  await timeline.getByLabel("section_change marker at beat 4").waitFor();
  // The MIDI region is drawn from its notes (12 in the tune), the WAV from its peaks.
  await timeline.locator('[aria-label="midi region verse at beat 0"][data-notes="12"]').waitFor();
  await timeline.locator('[aria-label="audio region verse render at beat 8"][data-peaks]').waitFor();
  await page.getByText("live").waitFor();
  await page.screenshot({ path: join(SHOTS, "studio.png"), fullPage: true });
  assert.deepEqual(problems, []);
  assert.deepEqual(failed, []);
});

test("pressing Play moves the Position readout, Stop holds it", async () => {
  const position = page.getByLabel("Position");
  const before = await position.textContent();
  await page.getByRole("button", { name: "Play", exact: true }).click();
  const beats = async () => parseFloat((await position.textContent()).split("·")[1]);
  await until("the playhead to move", async () => (await beats()) > 0.5);
  assert.notEqual(await position.textContent(), before);
  await page.getByRole("button", { name: "Stop", exact: true }).click();
  // Stopped: the readout settles on the transport's position and stays there.
  const stopped = await until("the transport to stop", async () => {
    const { state } = await tool("transport_status");
    return state.playback === "stopped" && state;
  });
  // The readout settles on where the transport stopped, and stays there.
  const where = `${stopped.position_beats.toFixed(2)} beats`;
  await page.waitForFunction((text) => document.getElementById("position").textContent.includes(text), where);
  await page.waitForTimeout(300);
  assert.match(await position.textContent(), new RegExp(where));
  assert.deepEqual(problems, []);
});

test("a generate_transition marker shows the job it started, live", async () => {
  const lift = 'function main(p) return midi.save(abc.to_midi("X:1\\nL:1/4\\nK:C\\ncg")) end';
  await tool("script_store", { content: lift, name: "lift" });
  await tool("timeline_add_marker", { event_type: "generate_transition", position_beats: 1, metadata: { script: "lift" } });
  await tool("transport_seek", { position_beats: 0 });
  const timeline = page.getByRole("list", { name: "Timeline" });
  await timeline.getByLabel("generate_transition marker at beat 1").waitFor();
  await page.getByRole("button", { name: "Play", exact: true }).click();
  await timeline
    .getByLabel("generate_transition marker at beat 1, job succeeded")
    .waitFor({ timeout: 20000 })
    .catch(async (error) => {
      const jobs = (await tool("job_list", {})).jobs.map((j) => `${j.job_id} ${j.state} ${j.tags} ${j.error?.message ?? ""}`);
      const labels = await timeline.locator(".marker").evaluateAll((m) => m.map((e) => e.getAttribute("aria-label")));
      throw new Error(`${error.message}\njobs: ${jobs.join("; ")}\nmarkers: ${labels.join("; ")}`);
    });
  await page.getByRole("button", { name: "Stop", exact: true }).click();
  const jobId = await timeline.getByLabel("generate_transition marker at beat 1, job succeeded").getAttribute("data-job");
  const { job } = await tool("job_status", { job_id: jobId });
  assert.equal(job.state, "succeeded");
  assert.ok(job.tags.some((tag) => tag.startsWith("marker:")), JSON.stringify(job.tags));
  assert.deepEqual(problems, []);
});

/** Waits until a player (the artifact's by default) has advanced with non-silent samples (an AnalyserNode on it). */
function heard(id = "artifact-audio") {
  return page.evaluate(async (id) => {
    const audio = document.getElementById(id);
    window.analysers ||= {};
    if (!window.analysers[id]) {
      const context = new AudioContext();
      const source = context.createMediaElementSource(audio);
      window.analysers[id] = context.createAnalyser();
      source.connect(window.analysers[id]);
      window.analysers[id].connect(context.destination);
    }
    const analyser = window.analysers[id];
    const samples = new Float32Array(analyser.fftSize);
    const deadline = performance.now() + 10000;
    let rms = 0;
    while (performance.now() < deadline) {
      analyser.getFloatTimeDomainData(samples);
      rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
      if (audio.currentTime > 0 && rms > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { currentTime: audio.currentTime, rms, error: audio.error?.message ?? null, src: audio.src };
  }, id);
}

test("an artifact plays in the browser with sound in it: a WAV as stored, a MIDI file rendered", async () => {
  for (const name of ["verse render", "verse"]) {
    await page.getByRole("button", { name: `Listen to ${name}`, exact: true }).click();
    const route = name === "verse" ? "/api/render/" : "/api/cas/";
    await page.waitForFunction((route) => document.getElementById("artifact-audio").src.includes(route), route);
    const result = await heard();
    assert.equal(result.error, null, name);
    assert.ok(result.currentTime > 0, `${name}: the audio advanced: ${JSON.stringify(result)}`);
    assert.ok(result.rms > 0, `${name}: the samples are not silent: ${JSON.stringify(result)}`);
    await page.evaluate(() => document.getElementById("artifact-audio").pause());
  }
});


test("Render and listen plays the timeline, or the loop range, rendered once per arrangement", async () => {
  const renders = [];
  const count = (request) => request.url().endsWith("/api/tools/timeline_render") && renders.push(request.postData());
  page.on("request", count);
  const render = page.getByRole("button", { name: "Render and listen" });
  const player = () => page.evaluate(() => {
    const audio = document.getElementById("render-audio");
    return { src: audio.src, duration: audio.duration };
  });
  await render.click();
  await until("the whole timeline rendered", async () => (await player()).src.includes("/api/cas/"));
  const whole = await heard("render-audio");
  assert.equal(whole.error, null);
  assert.ok(whole.currentTime > 0 && whole.rms > 0, `the render is heard: ${JSON.stringify(whole)}`);
  const wholeSrc = (await player()).src;
  // Again, with nothing changed: the same render, not a new one.
  await page.evaluate(() => document.getElementById("render-audio").pause());
  await render.click();
  await page.getByRole("status").filter({ hasText: "rendered beats 0 to" }).waitFor();
  assert.equal(renders.length, 1, `rendered once: ${renders}`);
  assert.equal((await player()).src, wholeSrc);
  // A selection: Loop on, beats 0 to 4 (2 s at 120 bpm, and the synthesizer's tail).
  await page.evaluate(() => document.getElementById("render-audio").pause());
  await page.getByLabel("Loop", { exact: true }).check();
  await page.getByLabel("from", { exact: true }).fill("0");
  await page.getByLabel("to", { exact: true }).fill("4");
  await render.click();
  await page.getByRole("status").filter({ hasText: "rendered beats 0 to 4" }).waitFor();
  assert.equal(renders.length, 2);
  assert.deepEqual(JSON.parse(renders[1]), { from_beats: 0, to_beats: 4 });
  await until("the selection's render loaded", async () => {
    const now = await player();
    return now.src !== wholeSrc && now.duration > 0;
  });
  const { duration } = await player();
  assert.ok(duration >= 2 && duration < 4, `a 4-beat render lasts 2 s and a tail: ${duration}`);
  await page.evaluate(() => document.getElementById("render-audio").pause());
  await page.getByLabel("Loop", { exact: true }).uncheck();
  page.off("request", count);
  assert.deepEqual(problems, []);
});

test("a take that cannot be played says why instead of staying silent", async () => {
  // WAV by its type, noise by its bytes.
  const stored = await tool("cas_store", { data: Buffer.from("RIFF but not really a WAV").toString("base64"), mime_type: "audio/wav" });
  await tool("artifact_create", { cas_hash: stored.hash, name: "broken take", tags: ["broken"], creator: "test" });
  await page.getByLabel("Search").fill("tag:broken");
  await page.getByRole("button", { name: "Listen to broken take", exact: true }).click();
  const status = page.getByRole("status");
  await status.filter({ hasText: "Artifact audio could not play" }).waitFor({ timeout: 15000 });
  await page.getByLabel("Search").fill("");
  await page.getByRole("button", { name: "Listen to verse render", exact: true }).waitFor();
  assert.deepEqual(problems, [], "handled, not an error in the console");
});

test("A/B plays two takes in step at the same loudness, and switching swaps which is heard", async () => {
  await page.getByRole("button", { name: "Compare verse render as A" }).click();
  await page.getByRole("button", { name: "Compare verse start as B" }).click();
  const play = page.getByRole("button", { name: "Play A/B" });
  await until("both takes chosen", () => play.isEnabled());
  await play.click();
  const panel = page.getByRole("group", { name: "A/B comparison" });
  const state = () =>
    page.evaluate(() => ({
      a: document.getElementById("audio-a").currentTime,
      b: document.getElementById("audio-b").currentTime,
      gainA: Number(document.getElementById("compare").dataset.gainA),
      gainB: Number(document.getElementById("compare").dataset.gainB),
    }));
  const playing = await until("both takes to play", async () => {
    const now = await state();
    return now.a > 0.2 && now.b > 0.2 && now;
  });
  assert.ok(Math.abs(playing.a - playing.b) < 0.25, `in step: ${JSON.stringify(playing)}`);
  assert.ok(playing.gainA > 0 && playing.gainB === 0, `A is heard: ${JSON.stringify(playing)}`);
  // Each take is scaled by the target over its own RMS, as the gateway measured it.
  const hashOf = async (name) => (await tool("artifact_list", { tag: "wav" })).artifacts.find((a) => a.name === name).cas_hash;
  const rms = async (name) =>
    (await (await fetch(`${base}/api/peaks/${await hashOf(name)}?buckets=1`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()).rms;
  assert.ok(Math.abs(playing.gainA - 0.1 / (await rms("verse render"))) < 1e-3, JSON.stringify(playing));
  await panel.getByRole("button", { name: "Hear B" }).click();
  const switched = await state();
  assert.ok(switched.gainA === 0 && switched.gainB > 0, `B is heard: ${JSON.stringify(switched)}`);
  assert.ok(Math.abs(switched.gainB - 0.1 / (await rms("verse start"))) < 1e-3, JSON.stringify(switched));
  assert.equal(await panel.getByRole("button", { name: "Hear A" }).getAttribute("aria-pressed"), "true");
  await page.getByRole("button", { name: "Pause A/B" }).click();
  // A MIDI take as B: heard as the gateway renders it, levelled by the render's RMS.
  await page.getByRole("button", { name: "Compare verse as B" }).click();
  await until("the MIDI take chosen", async () => (await panel.locator("#compare-b").textContent()).startsWith("verse (×"));
  assert.match(await page.evaluate(() => document.getElementById("audio-b").src), /\/api\/render\/[0-9a-f]{64}$/);
  const verse = (await tool("artifact_list", { tag: "midi" })).artifacts.find((a) => a.name === "verse").cas_hash;
  const renderRms = (
    await (await fetch(`${base}/api/render/${verse}/peaks?buckets=1`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()
  ).rms;
  assert.ok(renderRms > 0, `the render is not silent: ${renderRms}`);
  const before = await state();
  await page.getByRole("button", { name: "Play A/B" }).click();
  const midi = await until("the MIDI take to play", async () => {
    const now = await state();
    return now.b > Math.max(before.a, before.b) + 0.3 && now;
  });
  assert.ok(Math.abs(midi.gainB - Math.min(0.1 / renderRms, 8)) < 1e-3, JSON.stringify(midi));
  await page.getByRole("button", { name: "Pause A/B" }).click();
  assert.deepEqual(problems, []);
});

/** Presses "Run as job" on the scratchpad's code; resolves to the new job's id. */
async function runAsJob() {
  // An earlier job is still named in the result until this one's reply comes.
  await page.evaluate(() => (document.getElementById("result").textContent = ""));
  await page.getByRole("button", { name: "Run as job" }).click();
  const started = await page.getByLabel("Result").getByText(/^job \S+: /).textContent();
  return started.split(" ")[1].replace(/:$/, "");
}

test("a job from the scratchpad goes pending, running, succeeded on screen with its progress", async () => {
  const code =
    'function main() for i = 1, 10 do local t = os.clock() while os.clock() - t < 0.1 do end ' +
    'job.progress(i / 10, "step " .. i) end return 7 end';
  await page.getByLabel("Lua code").fill(code);
  // Every state the job's row shows, in order (recorded by the page as it changes).
  await page.evaluate(() => {
    window.statesSeen = {};
    new MutationObserver(() => {
      for (const row of document.querySelectorAll("#jobs li[data-job]")) {
        const state = row.querySelector(".state")?.textContent;
        const seen = (window.statesSeen[row.dataset.job] ||= []);
        if (state && seen.at(-1) !== state) seen.push(state);
      }
    }).observe(document.getElementById("jobs"), { subtree: true, childList: true, characterData: true });
  });
  const id = await runAsJob();
  const row = page.getByRole("list", { name: "Jobs" }).locator(`li[data-job="${id}"]`);
  await row.locator(".state", { hasText: "succeeded" }).waitFor({ timeout: 30000 });
  const states = await page.evaluate((id) => window.statesSeen[id], id);
  assert.ok(states.includes("running"), `states seen: ${states}`);
  assert.equal(states.at(-1), "succeeded", `states seen: ${states}`);
  assert.equal(await row.getByRole("progressbar").evaluate((bar) => bar.value), 1);
  assert.match(await row.textContent(), /step 10/);
  await page.screenshot({ path: join(SHOTS, "jobs.png"), fullPage: true });
});

test("a running job's output streams into the page while it runs", async () => {
  // Prints a line every 50 ms for far longer than the test waits: the lines can only have
  // come while it runs.
  await page.getByLabel("Lua code").fill(
    'function main() for i = 1, 2000 do print("tick " .. i) local t = os.clock() ' +
      "while os.clock() - t < 0.05 do end end end",
  );
  const id = await runAsJob();
  const row = page.getByRole("list", { name: "Jobs" }).locator(`li[data-job="${id}"]`);
  await row.locator(".last-line", { hasText: /^tick \d+$/ }).waitFor({ timeout: 30000 });
  await row.getByRole("button", { name: id }).click();
  await page.locator("#job-detail", { hasText: "tick 5\n" }).waitFor({ timeout: 30000 });
  const detail = await page.locator("#job-detail").textContent();
  assert.match(detail, new RegExp(`^${id}: running`), detail.slice(0, 200));
  assert.match(detail, /\[LOG_LEVEL_INFO\] tick 1\n\[LOG_LEVEL_INFO\] tick 2\n/, "in order, none missing");
  assert.equal((await tool("job_status", { job_id: id })).job.state, "running");
  await page.screenshot({ path: join(SHOTS, "job-log.png"), fullPage: true });
  await row.getByRole("button", { name: "Cancel" }).click();
  await row.locator(".state", { hasText: "cancelled" }).waitFor({ timeout: 15000 });
});

test("an artifact a job made names the job and its script, and opens the job", async () => {
  await page.getByLabel("Lua code").fill(
    'function main() local h = cas.store("a riff", "text/plain") ' +
      'return hoot.artifact{hash = h, name = "job-made riff", tags = {"jobmade"}}.artifact_id end',
  );
  const id = await runAsJob();
  await page.locator(`#jobs li[data-job="${id}"] .state`, { hasText: "succeeded" }).waitFor({ timeout: 30000 });
  await page.getByLabel("Search").fill("tag:jobmade");
  await page.getByRole("list", { name: "Artifacts" }).getByRole("button", { name: "job-made riff", exact: true }).click();
  const made = page.locator("#artifact-detail p", { hasText: "Made by job" });
  await made.waitFor();
  assert.match(await made.textContent(), new RegExp(`^Made by job ${id} running script [0-9a-f]{12}$`));
  await made.getByRole("button", { name: id }).click();
  await page.locator("#job-detail", { hasText: `${id}: succeeded` }).waitFor();
  await page.getByLabel("Search").fill("");
});

test("Cancel stops a running job", async () => {
  await page.getByLabel("Lua code").fill("function main() while true do end end");
  await page.getByRole("button", { name: "Run as job" }).click();
  const first = page.getByRole("list", { name: "Jobs" }).getByRole("listitem").first();
  await first.locator(".state", { hasText: "running" }).waitFor({ timeout: 30000 });
  const id = await first.getAttribute("data-job");
  await first.getByRole("button", { name: "Cancel" }).click();
  await page.locator(`#jobs li[data-job="${id}"] .state`, { hasText: "cancelled" }).waitFor({ timeout: 15000 });
  assert.equal((await tool("job_status", { job_id: id })).job.state, "cancelled");
});

test("the scratchpad shows a result, and an error with its line", async () => {
  await page.getByLabel("Lua code").fill('print("hello")\nreturn 6 * 7');
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.getByLabel("Result").getByText("→ 42").waitFor();
  assert.match(await page.getByLabel("Result").textContent(), /hello/);
  await page.getByLabel("Lua code").fill("local x = 1\nerror('no such chord')");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.getByLabel("Result").getByText(/:2: no such chord/).waitFor();
  await page.screenshot({ path: join(SHOTS, "scratchpad.png"), fullPage: true });
  assert.deepEqual(problems, []);
  // The one failure the page met is the script's error (a tool error: 400 INVALID_ARGUMENT).
  assert.deepEqual(failed, ["POST /api/tools/lua_eval 400"]);
});

/** One MCP request over Streamable HTTP (the reply may come as JSON or as one SSE event). */
async function mcp(session, method, params, id) {
  const response = await fetch(`${base}/mcp`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer ${TOKEN}`,
      ...(session.id ? { "mcp-session-id": session.id } : {}),
    },
    body: JSON.stringify(id === undefined ? { jsonrpc: "2.0", method, params } : { jsonrpc: "2.0", id, method, params }),
  });
  session.id ||= response.headers.get("mcp-session-id");
  const text = await response.text();
  if (id === undefined) return null;
  const data = text.startsWith("{") ? text : text.split("\n").filter((l) => l.startsWith("data: ") && l.length > 6).pop().slice(6);
  return JSON.parse(data);
}

test("an MCP host that renders apps shows the timeline view from timeline_query's result", async () => {
  const session = {};
  await mcp(session, "initialize", {
    protocolVersion: "2025-06-18",
    capabilities: { extensions: { "io.modelcontextprotocol/ui": { mimeTypes: ["text/html;profile=mcp-app"] } } },
    clientInfo: { name: "studio-test-host", version: "1" },
  }, 1);
  await mcp(session, "notifications/initialized", {});
  const tools = await mcp(session, "tools/list", {}, 2);
  const uri = tools.result.tools.find((t) => t.name === "timeline_query")._meta.ui.resourceUri;
  const html = (await mcp(session, "resources/read", { uri }, 3)).result.contents[0].text;
  const called = await mcp(session, "tools/call", { name: "timeline_query", arguments: {} }, 4);

  // A minimal host: the app in a sandboxed frame, answering ui/initialize and tools/call.
  const host = await browser.newPage();
  await host.setContent("<iframe sandbox='allow-scripts' style='width:900px;height:300px'></iframe>");
  await host.evaluate(([html, result]) => {
    window.toolCalls = [];
    const frame = document.querySelector("iframe");
    window.addEventListener("message", (event) => {
      const message = event.data;
      const reply = (result) => frame.contentWindow.postMessage({ jsonrpc: "2.0", id: message.id, result }, "*");
      if (message.method === "ui/initialize") {
        reply({ protocolVersion: "2026-01-26", hostInfo: { name: "test", version: "1" }, hostCapabilities: {}, hostContext: {} });
      } else if (message.method === "ui/notifications/initialized") {
        frame.contentWindow.postMessage({ jsonrpc: "2.0", method: "ui/notifications/tool-result", params: result }, "*");
      } else if (message.method === "tools/call") {
        window.toolCalls.push(message.params.name);
        reply({ content: [], structuredContent: result.structuredContent });
      }
    });
    frame.srcdoc = html;
  }, [html, called.result]);
  const app = host.frameLocator("iframe");
  await app.getByLabel("midi region at beat 0").waitFor();
  await app.getByLabel("audio region at beat 8").waitFor();
  await app.getByLabel("section_change marker at beat 4").waitFor();
  await app.getByRole("button", { name: "Play" }).click();
  await host.waitForFunction(() => window.toolCalls.includes("transport_play"));
  await host.screenshot({ path: join(SHOTS, "mcp-app.png") });
  await host.close();
  await tool("transport_stop");
});
