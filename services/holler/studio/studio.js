// The studio page: plain JavaScript, no build step, no dependencies. It talks only to this
// gateway: POST /api/tools/{name} (the tools agents call over MCP), GET /api/events (SSE),
// GET /api/cas/{hash} (bytes, with ranges).

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

/** Calls one tool; resolves to its result as agents see it, or throws ApiError. */
async function call(tool, args = {}) {
  const response = await fetch(`/api/tools/${tool}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(args),
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    showLogin();
    throw new ApiError("UNAUTHENTICATED", body.message || "sign in first");
  }
  if (!response.ok) throw new ApiError(body.code || response.status, body.message || response.statusText);
  return body;
}

function say(message) {
  $("connection").textContent = message;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// ---- Session -------------------------------------------------------------------------

function showLogin() {
  $("login").hidden = false;
  $("studio").hidden = true;
  $("token").focus();
}

async function startSession(token) {
  const response = await fetch("/api/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || response.statusText);
  }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await startSession($("token").value);
    location.reload();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

// ---- Transport -----------------------------------------------------------------------

/** The last state heard, and when (the playhead is interpolated from it). */
let transport = null;
let heardAt = 0;

function currentBeats() {
  if (!transport) return 0;
  let beats = transport.position_beats || 0;
  if (transport.playback === "playing") {
    beats += ((performance.now() - heardAt) / 60000) * (transport.tempo_bpm || 120);
    const loop = transport.loop_range;
    if (loop && loop.enabled && loop.to_beats > loop.from_beats && beats >= loop.to_beats) {
      const span = loop.to_beats - loop.from_beats;
      beats = loop.from_beats + ((beats - loop.from_beats) % span);
    }
  }
  return beats;
}

function formatPosition(beats) {
  const perBar = transport?.time_signature?.numerator || 4;
  const bar = Math.floor(beats / perBar) + 1;
  const beat = Math.floor(beats % perBar) + 1;
  const seconds = (beats * 60) / (transport?.tempo_bpm || 120);
  const minutes = Math.floor(seconds / 60);
  const rest = (seconds - minutes * 60).toFixed(1).padStart(4, "0");
  return `${bar}:${beat} · ${beats.toFixed(2)} beats · ${minutes}:${rest}`;
}

function onTransport(reply) {
  transport = reply.state || reply.transport || reply;
  heardAt = performance.now();
  const playing = transport.playback === "playing";
  $("play").setAttribute("aria-pressed", String(playing));
  if (document.activeElement !== $("tempo")) $("tempo").value = transport.tempo_bpm;
  const loop = transport.loop_range;
  if (loop && document.activeElement?.closest?.(".loop") == null) {
    $("loop").checked = !!loop.enabled;
    $("loop-from").value = loop.from_beats;
    $("loop-to").value = loop.to_beats;
  }
}

function animate() {
  const beats = currentBeats();
  $("position").textContent = formatPosition(beats);
  $("playhead").style.left = `${beats * pixelsPerBeat}px`;
  requestAnimationFrame(animate);
}

async function transportCall(tool, args) {
  try {
    onTransport(await call(tool, args));
  } catch (error) {
    say(error.message);
  }
}

const play = () => transportCall("transport_play");
const stop = () => transportCall("transport_stop");
$("play").addEventListener("click", play);
$("stop").addEventListener("click", stop);

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select, button, a");
  if (event.key === " " && !typing) {
    event.preventDefault();
    if (transport?.playback === "playing") stop();
    else play();
  }
});

$("tempo").addEventListener("change", async () => {
  const tempo = Number($("tempo").value);
  if (!(tempo > 0)) return;
  try {
    await call("timeline_set_tempo", { change: { position_beats: 0, tempo_bpm: tempo } });
    await refreshTimeline();
  } catch (error) {
    say(error.message);
  }
});

async function setLoop() {
  const loop_range = {
    enabled: $("loop").checked,
    from_beats: Number($("loop-from").value),
    to_beats: Number($("loop-to").value),
  };
  await transportCall("transport_loop", { loop_range });
}
for (const id of ["loop", "loop-from", "loop-to"]) $(id).addEventListener("change", setLoop);

// ---- Timeline ------------------------------------------------------------------------

let pixelsPerBeat = 24;
let timeline = { regions: [], markers: [] };
/** Artifacts by CAS hash, for naming regions. */
const artifactsByHash = new Map();

function timelineEnd() {
  let end = 16;
  for (const region of timeline.regions) end = Math.max(end, region.position_beats + region.duration_beats);
  for (const marker of timeline.markers) end = Math.max(end, marker.position_beats + 1);
  return end;
}

function drawRuler() {
  const canvas = $("ruler");
  const width = Math.ceil((timelineEnd() + 8) * pixelsPerBeat);
  canvas.width = width;
  canvas.style.width = `${width}px`;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, canvas.height);
  context.fillStyle = getComputedStyle(document.body).color;
  context.font = "11px system-ui, sans-serif";
  const perBar = transport?.time_signature?.numerator || 4;
  for (let beat = 0; beat * pixelsPerBeat < width; beat++) {
    const x = beat * pixelsPerBeat + 0.5;
    const bar = beat % perBar === 0;
    context.fillRect(x, bar ? 0 : 14, 1, bar ? 24 : 10);
    if (bar && pixelsPerBeat * perBar > 24) context.fillText(String(beat / perBar + 1), x + 3, 11);
  }
}

/** Puts each region in the first lane where it overlaps nothing. */
function lanesOf(regions) {
  const lanes = [];
  for (const region of [...regions].sort((a, b) => a.position_beats - b.position_beats)) {
    const lane = lanes.find((l) => l.end <= region.position_beats);
    if (lane) {
      lane.regions.push(region);
      lane.end = region.position_beats + region.duration_beats;
    } else {
      lanes.push({ regions: [region], end: region.position_beats + region.duration_beats });
    }
  }
  return lanes;
}

function regionLabel(region) {
  const artifact = artifactsByHash.get(region.cas_hash);
  const name = artifact ? artifact.name || artifact.artifact_id : region.cas_hash.slice(0, 12);
  return `${region.kind} region ${name} at beat ${region.position_beats}`;
}

function drawTimeline() {
  drawRuler();
  const list = $("timeline");
  list.replaceChildren();
  const width = `${(timelineEnd() + 8) * pixelsPerBeat}px`;
  list.style.width = width;
  const markerLane = element("li", { class: "lane markers", "aria-label": "Markers" });
  const markers = [...timeline.markers].sort((a, b) => a.position_beats - b.position_beats);
  for (const [index, marker] of markers.entries()) {
    const label = `${marker.event_type} marker at beat ${marker.position_beats}`;
    // A generate_transition marker's job is tagged marker:<id> by Chaosgarden.
    const job = jobOfMarker(marker.marker_id);
    const flag = element("span", {
      class: `marker ${marker.event_type}`,
      title: label + (marker.metadata ? ` ${JSON.stringify(marker.metadata)}` : "") + (job ? `\njob ${job.job_id}` : ""),
      "aria-label": label + (job ? `, job ${job.state}` : ""),
      text: marker.event_type.replace(/_/g, " ") + (job ? ` · ${job.state}` : ""),
    });
    if (job) flag.dataset.job = job.job_id;
    // A flag ends where the next marker begins (its full text is in the tooltip).
    const next = markers[index + 1];
    flag.style.maxWidth = next ? `${Math.max((next.position_beats - marker.position_beats) * pixelsPerBeat - 2, 6)}px` : "16em";
    flag.style.left = `${marker.position_beats * pixelsPerBeat}px`;
    markerLane.append(flag);
  }
  list.append(markerLane);
  for (const [index, lane] of lanesOf(timeline.regions).entries()) {
    const row = element("li", { class: "lane", "aria-label": `Lane ${index + 1}` });
    for (const region of lane.regions) {
      const artifact = artifactsByHash.get(region.cas_hash);
      const title = [
        regionLabel(region),
        artifact ? `artifact ${artifact.artifact_id}` : "no artifact names this content",
        region.source_job_id ? `made by job ${region.source_job_id}` : null,
      ]
        .filter(Boolean)
        .join("\n");
      const block = element("span", {
        class: `region ${region.kind}`,
        title,
        "aria-label": regionLabel(region),
      }, element("span", { class: "name", text: artifact?.name || region.cas_hash.slice(0, 8) }));
      block.style.left = `${region.position_beats * pixelsPerBeat}px`;
      block.style.width = `${Math.max(region.duration_beats * pixelsPerBeat, 4)}px`;
      row.append(block);
      drawInside(block, region);
    }
    list.append(row);
  }
}

/** Notes and peaks by URL, fetched once (the content under a hash never changes). */
const drawings = new Map();

function drawing(url) {
  if (!drawings.has(url)) {
    drawings.set(
      url,
      fetch(url, { credentials: "same-origin" })
        .then(async (response) => {
          const body = await response.json();
          if (!response.ok) throw new ApiError(body.code, body.message);
          return body;
        })
        .catch((error) => {
          // Not kept: a busy renderer or a backend away may answer next time.
          drawings.delete(url);
          throw error;
        }),
    );
  }
  return drawings.get(url);
}

/** A MIDI region's piano roll, or an audio region's waveform, drawn inside its block. */
async function drawInside(block, region) {
  const width = Math.max(Math.round(region.duration_beats * pixelsPerBeat), 4);
  const canvas = element("canvas", { width: String(width), height: "28", "aria-hidden": "true" });
  block.prepend(canvas);
  const context = canvas.getContext("2d");
  context.fillStyle = "rgba(255,255,255,0.85)";
  try {
    if (region.kind === "midi") {
      const { notes } = await drawing(`/api/notes/${region.cas_hash}`);
      const pitches = notes.map((note) => note.pitch);
      const low = Math.min(...pitches) - 1;
      const span = Math.max(Math.max(...pitches) + 1 - low, 12);
      for (const note of notes) {
        const y = canvas.height - ((note.pitch - low) / span) * canvas.height;
        context.fillRect(note.start_beats * pixelsPerBeat, y - 1.5, Math.max(note.duration_beats * pixelsPerBeat - 1, 1), 3);
      }
      block.dataset.notes = String(notes.length);
    } else {
      const buckets = Math.min(Math.max(width, 1), 8192);
      const { peaks } = await drawing(`/api/peaks/${region.cas_hash}?buckets=${buckets}`);
      const middle = canvas.height / 2;
      // Scaled to the loudest peak, so a quiet take still shows its shape.
      const loudest = Math.max(1e-6, ...peaks.map(([low, high]) => Math.max(-low, high)));
      const scale = middle / loudest;
      peaks.forEach(([low, high], x) => {
        context.fillRect((x * width) / peaks.length, middle - high * scale, 1, Math.max((high - low) * scale, 1));
      });
      block.dataset.peaks = String(peaks.length);
    }
  } catch (error) {
    block.title += `\n(cannot draw it: ${error.message})`;
  }
}

async function refreshTimeline() {
  try {
    const reply = await call("timeline_query", {});
    timeline = { regions: reply.regions || [], markers: reply.markers || [], tempo_map: reply.tempo_map || [] };
    if (reply.transport) onTransport(reply.transport);
    drawTimeline();
  } catch (error) {
    say(error.message);
  }
}

$("ruler").addEventListener("click", (event) => {
  const box = $("ruler").getBoundingClientRect();
  const beats = Math.max(0, (event.clientX - box.left) / pixelsPerBeat);
  transportCall("transport_seek", { position_beats: Math.round(beats * 4) / 4 });
});
$("zoom-in").addEventListener("click", () => {
  pixelsPerBeat = Math.min(pixelsPerBeat * 1.5, 400);
  drawTimeline();
});
$("zoom-out").addEventListener("click", () => {
  pixelsPerBeat = Math.max(pixelsPerBeat / 1.5, 2);
  drawTimeline();
});

/** Renders by arrangement (regions, tempo map, range): the same one is not rendered twice. */
const renders = new Map();
const MAX_RENDERS = 16;

$("render").addEventListener("click", async () => {
  const button = $("render");
  button.disabled = true;
  // The loop range when Loop is on (a selection), else the whole timeline.
  const range = $("loop").checked
    ? { from_beats: Number($("loop-from").value), to_beats: Number($("loop-to").value) }
    : { from_beats: 0, to_beats: timelineEnd() };
  const arrangement = JSON.stringify([timeline.regions, timeline.tempo_map, range]);
  try {
    let hash = renders.get(arrangement);
    if (!hash) {
      say("rendering…");
      hash = (await call("timeline_render", range)).cas_hash;
      renders.set(arrangement, hash);
      if (renders.size > MAX_RENDERS) renders.delete(renders.keys().next().value);
    }
    const audio = $("render-audio");
    const source = `/api/cas/${hash}`;
    if (!audio.src.endsWith(source)) audio.src = source;
    audio.currentTime = 0;
    await audio.play();
    say(`rendered beats ${range.from_beats} to ${range.to_beats}`);
  } catch (error) {
    if (!$("render-audio").error) say(error.message);
  } finally {
    button.disabled = false;
  }
});

// ---- Artifacts -----------------------------------------------------------------------

const extensions = { "audio/midi": "mid", "audio/wav": "wav", "audio/x-wav": "wav", "text/vnd.abc": "abc" };

/** Artifacts the list holds at most. */
const MAX_ARTIFACTS = 2000;

let artifactsAsked = 0;

async function refreshArtifacts() {
  const asked = ++artifactsAsked;
  const query = $("search").value.trim();
  const args = { page_size: 500 };
  const words = [];
  for (const part of query.split(/\s+/).filter(Boolean)) {
    if (part.startsWith("tag:")) args.tag = part.slice(4);
    else if (part.startsWith("creator:")) args.creator = part.slice(8);
    else words.push(part.toLowerCase());
  }
  try {
    // Page by page (the server gives at most 500 at a time), up to what a list can show.
    const artifacts = [];
    let more = false;
    for (let token = ""; ; ) {
      const reply = await call("artifact_list", { ...args, page_token: token });
      artifacts.push(...(reply.artifacts || []));
      token = reply.next_page_token;
      if (!token) break;
      if (artifacts.length >= MAX_ARTIFACTS) {
        more = true;
        break;
      }
    }
    if (asked !== artifactsAsked) return;
    if (!query) {
      artifactsByHash.clear();
      for (const artifact of artifacts) artifactsByHash.set(artifact.cas_hash, artifact);
    }
    const shown = artifacts.filter((artifact) => {
      const text = [artifact.name, artifact.artifact_id, artifact.creator, ...(artifact.tags || [])]
        .join(" ")
        .toLowerCase();
      return words.every((word) => text.includes(word));
    });
    const items = shown.map(artifactItem);
    if (more) items.push(element("li", { class: "dim", text: `the first ${artifacts.length} only: search to narrow` }));
    $("artifacts").replaceChildren(...items);
  } catch (error) {
    say(error.message);
  }
}

function artifactItem(artifact) {
  const name = artifact.name || artifact.artifact_id;
  const tags = (artifact.tags || []).map((tag) => element("span", { class: "tag", text: tag }));
  return element(
    "li",
    { "aria-label": name },
    element("button", { type: "button", class: "link", onclick: () => showArtifact(artifact.artifact_id), text: name }),
    " ",
    ...tags,
    element("span", { class: "dim", text: ` ${artifact.creator || ""}` }),
    " ",
    element("button", { type: "button", "aria-label": `Listen to ${name}`, onclick: () => listen(artifact), text: "Listen" }),
    element("button", { type: "button", "aria-label": `Compare ${name} as A`, onclick: () => compare("a", artifact), text: "A" }),
    element("button", { type: "button", "aria-label": `Compare ${name} as B`, onclick: () => compare("b", artifact), text: "B" }),
  );
}

// ---- A/B comparison: two takes playing in step, each scaled to the same loudness ----------

/** RMS both takes are scaled to (−20 dBFS), and the most a quiet take is raised. */
const TARGET_RMS = 0.1;
const MAX_GAIN = 8;
const sides = { a: null, b: null };
let audioContext = null;
let hearing = "a";

function gainNode(side) {
  if (!sides[side].gain) {
    audioContext ||= new AudioContext();
    const source = audioContext.createMediaElementSource($(`audio-${side}`));
    sides[side].gain = audioContext.createGain();
    source.connect(sides[side].gain).connect(audioContext.destination);
  }
  return sides[side].gain;
}

function applyGains() {
  const panel = $("compare");
  for (const side of ["a", "b"]) {
    if (!sides[side]) continue;
    const value = side === hearing ? sides[side].level : 0;
    gainNode(side).gain.value = value;
    panel.dataset[`gain${side.toUpperCase()}`] = value.toFixed(4);
  }
  const other = hearing === "a" ? "B" : "A";
  $("compare-switch").textContent = `Hear ${other}`;
  $("compare-switch").setAttribute("aria-pressed", String(hearing === "b"));
}

async function compare(side, artifact) {
  const name = artifact.name || artifact.artifact_id;
  try {
    const { object } = await call("cas_inspect", { hash: artifact.cas_hash });
    const mime = object?.mime_type || "";
    const midi = mime === "audio/midi";
    if (!midi && !/^audio\/(x-)?wav/.test(mime)) {
      say(`${name} is ${mime || "not audio"}: A/B compares WAV and MIDI takes`);
      return;
    }
    // A MIDI take is heard, and levelled, as the gateway renders it.
    const audio = midi ? `/api/render/${artifact.cas_hash}` : `/api/cas/${artifact.cas_hash}`;
    const { rms } = await drawing(
      midi ? `/api/render/${artifact.cas_hash}/peaks?buckets=1` : `/api/peaks/${artifact.cas_hash}?buckets=1`,
    );
    const previous = sides[side];
    sides[side] = { name, level: Math.min(TARGET_RMS / Math.max(rms, 1e-6), MAX_GAIN), gain: previous?.gain };
    $(`audio-${side}`).src = audio;
    $(`compare-${side}`).textContent = `${name} (×${sides[side].level.toFixed(2)})`;
    const ready = sides.a && sides.b;
    $("compare-play").disabled = !ready;
    $("compare-switch").disabled = !ready;
  } catch (error) {
    say(error.message);
  }
}

$("compare-play").addEventListener("click", async () => {
  const a = $("audio-a");
  const b = $("audio-b");
  if (!a.paused) {
    a.pause();
    b.pause();
    $("compare-play").textContent = "Play A/B";
    return;
  }
  try {
    applyGains();
    // A browser with no audio output may never start an AudioContext: say so rather than
    // wait for ever.
    const started = await Promise.race([
      audioContext.resume().then(() => true),
      new Promise((resolve) => setTimeout(() => resolve(false), 3000)),
    ]);
    if (!started) {
      say("this browser could not start its audio output (Web Audio), which A/B plays through");
      return;
    }
    b.currentTime = a.currentTime;
    await Promise.all([a.play(), b.play()]);
    $("compare-play").textContent = "Pause A/B";
  } catch (error) {
    say(error.message);
  }
});

// A take that cannot play says why (the gateway's reason when it gave one).
for (const id of ["render-audio", "artifact-audio", "audio-a", "audio-b"]) {
  const audio = $(id);
  audio.addEventListener("error", async () => {
    if (!audio.currentSrc) return;
    const why = await whyNot(audio.currentSrc);
    say(`${audio.getAttribute("aria-label") || "audio"} could not play: ${why || audio.error?.message || "the browser refused it"}`);
  });
}

$("compare-switch").addEventListener("click", () => {
  hearing = hearing === "a" ? "b" : "a";
  applyGains();
});

async function listen(artifact) {
  try {
    const { object } = await call("cas_inspect", { hash: artifact.cas_hash });
    const mime = object?.mime_type || "";
    if (!mime.startsWith("audio/")) {
      say(`${artifact.name || artifact.artifact_id} is ${mime || "not audio"}, nothing to hear`);
      return;
    }
    const audio = $("artifact-audio");
    // MIDI is rendered on the gateway, with Chaosgarden's synthesizer at the timeline's tempo.
    audio.src = mime === "audio/midi" ? `/api/render/${artifact.cas_hash}` : `/api/cas/${artifact.cas_hash}`;
    try {
      await audio.play();
    } catch (error) {
      // A media error is reported by the element's error listener (below); anything else
      // (e.g. the browser's autoplay policy) here.
      if (!audio.error) say(error.message);
    }
  } catch (error) {
    say(error.message);
  }
}

/** The gateway's reason a media URL failed, if it gives one. */
async function whyNot(url) {
  try {
    const reply = await fetch(url, { headers: { Range: "bytes=0-0" } });
    if (reply.ok) return null;
    const body = await reply.json();
    return `${body.code}: ${body.message}`;
  } catch {
    return null;
  }
}

async function showArtifact(id) {
  const detail = $("artifact-detail");
  try {
    const reply = await call("graph_query", {
      query:
        "query($id: ID!) { artifact(id: $id) { id name casHash creator tags createdAt metadata " +
        "object { mimeType size } parents { id name } children(first: 50) { id name } } }",
      variables: { id },
    });
    const artifact = reply.data?.artifact;
    if (!artifact) {
      detail.textContent = `${id}: not found`;
      return;
    }
    const link = (node) =>
      element("button", { type: "button", class: "link", onclick: () => showArtifact(node.id), text: node.name || node.id });
    const mime = artifact.object?.mimeType || "";
    const extension = extensions[mime] || "bin";
    const job = artifact.metadata?.job_id || artifact.metadata?.source_job_id;
    // hoot.artifact records the script that made it beside the job.
    const script = artifact.metadata?.script_name || (artifact.metadata?.script_hash || "").slice(0, 12);
    detail.replaceChildren(
      element("h3", { text: artifact.name || artifact.id }),
      element("p", { text: `${artifact.id} · ${mime} · ${artifact.object?.size ?? "?"} bytes · by ${artifact.creator || "?"}` }),
      job
        ? element(
            "p",
            { text: "Made by job " },
            element("button", { type: "button", class: "link", onclick: () => showJob(job), text: job }),
            script ? ` running script ${script}` : "",
          )
        : null,
      element("p", { text: "Parents: " }, ...(artifact.parents.length ? artifact.parents.map(link) : ["none"])),
      element("p", { text: "Children: " }, ...(artifact.children.length ? artifact.children.map(link) : ["none"])),
      element("a", { href: `/api/cas/${artifact.casHash}`, download: `${artifact.name || artifact.id}.${extension}`, text: `Download .${extension}` }),
    );
  } catch (error) {
    detail.textContent = error.message;
  }
}

let searchTimer;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refreshArtifacts, 200);
});

// ---- Jobs ----------------------------------------------------------------------------

const jobs = new Map();
const finished = new Set(["succeeded", "failed", "cancelled"]);

function jobItem(job) {
  const item = element("li", { "data-job": job.job_id, "aria-label": `Job ${job.job_id}` });
  fillJob(item, job);
  return item;
}

function fillJob(item, job) {
  const progress = element("progress", { max: "1", value: String(job.progress || 0), "aria-label": "Progress" });
  const cancel = finished.has(job.state)
    ? null
    : element("button", { type: "button", onclick: () => cancelJob(job.job_id), text: "Cancel" });
  item.replaceChildren(
    ...[
    element("button", { type: "button", class: "link", onclick: () => showJob(job.job_id), text: job.job_id }),
    " ",
    element("span", { class: `state ${job.state}`, text: job.state }),
    " ",
    progress,
    element("span", { class: "dim", text: ` ${job.progress_message || ""} ${job.script_name || ""}` }),
    " ",
    cancel,
    job.last_line && !finished.has(job.state) ? element("span", { class: "last-line", text: job.last_line }) : null,
    ].filter((child) => child != null),
  );
}

/** The newest job a marker started, if the jobs list holds one. */
function jobOfMarker(markerId) {
  let newest = null;
  for (const job of jobs.values()) {
    if ((job.tags || []).includes(`marker:${markerId}`) && (!newest || job.created_at > newest.created_at)) newest = job;
  }
  return newest;
}

function drawJobs() {
  const sorted = [...jobs.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  $("jobs").replaceChildren(...sorted.slice(0, 100).map(jobItem));
}

/** Which refresh is the latest: an older one's reply, arriving late, must not win. */
let jobsAsked = 0;

async function refreshJobs() {
  const asked = ++jobsAsked;
  try {
    const reply = await call("job_list", { page_size: 100 });
    if (asked !== jobsAsked) return;
    jobs.clear();
    for (const job of reply.jobs || []) jobs.set(job.job_id, job);
    drawJobs();
    drawTimeline();
  } catch (error) {
    say(error.message);
  }
}

function updateJob(id, change) {
  const job = jobs.get(id);
  if (!job) {
    refreshJobs();
    return;
  }
  Object.assign(job, change);
  if (change.state && (job.tags || []).some((tag) => tag.startsWith("marker:"))) drawTimeline();
  const item = document.querySelector(`#jobs [data-job="${CSS.escape(id)}"]`);
  if (item) fillJob(item, job);
  else drawJobs();
  if (finished.has(job.state) && shownJob === id) showJob(id);
}

async function cancelJob(id) {
  try {
    await call("job_cancel", { job_id: id });
  } catch (error) {
    say(error.message);
  }
}

/** Output lines of running jobs as they stream in (`log` events), by job id. */
const liveLogs = new Map();
/** The most lines kept per job here; the job's record keeps them all. */
const LIVE_LINES = 2000;

function onLog({ job_id, first_line, lines }) {
  const live = liveLogs.get(job_id) || { lines: [], seen: 0 };
  if (first_line > live.seen) {
    live.lines.push({ level: "…", message: `(${first_line - live.seen} lines missed; the finished job shows them all)` });
  }
  for (const line of lines) live.lines.push(line);
  live.seen = first_line + lines.length;
  if (live.lines.length > LIVE_LINES) live.lines.splice(0, live.lines.length - LIVE_LINES);
  liveLogs.set(job_id, live);
  if (lines.length) updateJob(job_id, { last_line: lines[lines.length - 1].message });
  if (shownJob === job_id) drawJobDetail();
}

let shownJob = null;
let shownRecord = null;

function drawJobDetail() {
  const job = shownRecord;
  if (!job) return;
  const state = jobs.get(job.job_id)?.state || job.state;
  const lines = [`${job.job_id}: ${state}`];
  if (job.result !== undefined) lines.push(`result: ${JSON.stringify(job.result, null, 2)}`);
  if (job.error) lines.push(`error: ${job.error.code || ""} ${job.error.message || JSON.stringify(job.error)}`);
  // A finished job's record has every line; a running one's come as they are written.
  const logs = finished.has(job.state) ? job.logs || [] : liveLogs.get(job.job_id)?.lines || [];
  for (const log of logs) lines.push(`[${log.level}] ${log.message}`);
  $("job-detail").textContent = lines.join("\n");
}

async function showJob(id) {
  shownJob = id;
  try {
    const job = (await call("job_status", { job_id: id })).job || {};
    if (shownJob !== id) return;
    shownRecord = job;
    if (finished.has(job.state)) liveLogs.delete(id);
    drawJobDetail();
  } catch (error) {
    $("job-detail").textContent = error.message;
  }
}

// ---- Scratchpad ----------------------------------------------------------------------

function showResult(lines) {
  $("result").textContent = lines.join("\n");
}

$("run").addEventListener("click", async () => {
  try {
    const reply = await call("lua_eval", { code: $("code").value });
    const lines = (reply.output || []).map((line) => `[${line.level}] ${line.message}`);
    lines.push(`→ ${JSON.stringify(reply.result ?? null, null, 2)}`);
    showResult(lines);
  } catch (error) {
    showResult([error.message]);
  }
});

$("run-job").addEventListener("click", async () => {
  try {
    const stored = await call("script_store", { content: $("code").value });
    const hash = stored.script?.script_hash;
    const job = await call("job_execute", { script_hash: hash });
    jobs.set(job.job_id, { job_id: job.job_id, state: job.state, created_at: new Date().toISOString() });
    drawJobs();
    showResult([`job ${job.job_id}: ${job.state} (a job runs main(params); follow it under Jobs)`]);
  } catch (error) {
    showResult([error.message]);
  }
});

// ---- Live events ---------------------------------------------------------------------

function listenForEvents() {
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => say("live"));
  events.addEventListener("error", () => say("reconnecting…"));
  events.addEventListener("transport", (event) => onTransport(JSON.parse(event.data)));
  events.addEventListener("timeline", (event) => {
    const reply = JSON.parse(event.data);
    timeline = { regions: reply.regions || [], markers: reply.markers || [], tempo_map: reply.tempo_map || [] };
    drawTimeline();
  });
  events.addEventListener("job", (event) => {
    const { job_id, state } = JSON.parse(event.data);
    updateJob(job_id, { state });
    if (state === "succeeded") {
      // A finished job may have placed regions or made artifacts.
      refreshTimeline();
      refreshArtifacts();
    }
  });
  events.addEventListener("progress", (event) => {
    const { job_id, fraction, message } = JSON.parse(event.data);
    updateJob(job_id, { progress: fraction, progress_message: message });
  });
  events.addEventListener("log", (event) => onLog(JSON.parse(event.data)));
  events.addEventListener("resync", () => {
    refreshJobs();
    refreshTimeline();
  });
}

// ---- Start ---------------------------------------------------------------------------

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) {
    // The URL `holler up` prints carries the token once; the cookie keeps it from here on.
    history.replaceState(null, "", location.pathname);
    try {
      await startSession(fragment.get("token"));
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  }
  try {
    onTransport(await call("transport_status"));
  } catch (error) {
    if (error.code === "UNAUTHENTICATED") return;
    say(error.message);
  }
  await refreshArtifacts();
  await Promise.all([refreshTimeline(), refreshJobs()]);
  listenForEvents();
  requestAnimationFrame(animate);
}

start();
