//! Clients of the GPU model services over HTTP: `orpheus.*` (MIDI), `musicgen.generate`
//! (audio) and `deepseek.chat` (an OpenAI-compatible LLM). The contracts are in
//! `docs/models.md`.
//!
//! Calls are async inside the VM: a script waiting on a model yields its thread's runtime,
//! and the wait is cut short by the run's cancel and time limit ([`RunHandle::guard`]).
//! Results that are files (MIDI, WAV) go into the CAS and the call returns their hashes.
//! Each call is a span under the run's span and sends `traceparent`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use mlua::{Lua, Table};

use super::{Registrar, fail};
use crate::sandbox::RunHandle;

/// One model service.
#[derive(Clone)]
pub struct Backend {
    /// Base URL, e.g. `http://gpu-box:8000` (None: calls fail saying which flag sets it).
    pub url: Option<String>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Extra attempts after a connection failure or a 429/502/503/504.
    pub retries: u32,
}

impl Default for Backend {
    fn default() -> Self {
        Self {
            url: None,
            timeout: Duration::from_secs(120),
            retries: 2,
        }
    }
}

/// The model services a Luanette talks to.
#[derive(Clone)]
pub struct Models {
    pub orpheus: Backend,
    pub musicgen: Backend,
    pub deepseek: Backend,
    /// Bearer token for DeepSeek (from `DEEPSEEK_API_KEY`; never logged).
    pub deepseek_key: Option<String>,
    /// Largest response body read from any backend.
    pub max_response: usize,
}

impl Default for Models {
    fn default() -> Self {
        Self {
            orpheus: Backend::default(),
            musicgen: Backend::default(),
            deepseek: Backend {
                url: Some("https://api.deepseek.com".into()),
                ..Backend::default()
            },
            deepseek_key: None,
            max_response: 64 << 20,
        }
    }
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("orpheus", &self.orpheus.url)
            .field("musicgen", &self.musicgen.url)
            .field("deepseek", &self.deepseek.url)
            .field("deepseek_key", &self.deepseek_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Orpheus model variants.
const ORPHEUS_MODELS: &[&str] = &["base", "children", "mono_melodies", "bridge", "loops", "classifier"];

/// Everything one call needs, shared by the Lua functions.
#[derive(Clone)]
struct Caller {
    http: Option<Arc<std::sync::OnceLock<Option<reqwest::Client>>>>,
    models: Arc<Models>,
    cas: Option<::cas::Cas>,
    run: RunHandle,
}

/// Which backend a call goes to, and its bearer token if it needs one.
struct Target<'a> {
    name: &'static str,
    backend: &'a Backend,
    bearer: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn new(name: &'static str, backend: &'a Backend) -> Self {
        Self {
            name,
            backend,
            bearer: None,
        }
    }
}

/// Per-call overrides from the options table. The endpoint is not one of them: model
/// URLs (and the keys that go with them) are the operator's, never the script's.
struct Overrides {
    timeout: Option<Duration>,
    retries: Option<u32>,
}

fn overrides(options: &Table) -> mlua::Result<Overrides> {
    if options.contains_key("url")? {
        return Err(mlua::Error::runtime(
            "`url` is not a per-call option: model endpoints are configured by the operator \
             (--orpheus-url, --musicgen-url, --deepseek-url)",
        ));
    }
    let timeout: Option<f64> = options.get("timeout")?;
    if timeout.is_some_and(|t| !(t > 0.0 && t <= 3600.0)) {
        return Err(mlua::Error::runtime("timeout must be between 0 and 3600 seconds"));
    }
    let retries: Option<u32> = options.get("retries")?;
    Ok(Overrides {
        timeout: timeout.map(Duration::from_secs_f64),
        retries: retries.map(|r| r.min(10)),
    })
}

/// The first characters of a body, for error messages: short, on one line, printable.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT * 4)]);
    let text: String = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .take(EXCERPT)
        .collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters of a failed call's body kept in its error.
const EXCERPT: usize = 200;

impl Caller {
    /// POSTs JSON and returns the JSON answer, with retries, limits, tracing and clear errors.
    async fn post(
        &self,
        lua: &Lua,
        target: Target<'_>,
        path: &str,
        body: serde_json::Value,
        overrides: &Overrides,
    ) -> mlua::Result<serde_json::Value> {
        let Target {
            name: backend_name,
            backend,
            bearer,
        } = target;
        let http = self
            .http
            .as_deref()
            .and_then(super::http_client)
            .ok_or_else(|| fail(backend_name, "HTTP is not available here"))?;
        let base = backend.url.clone().ok_or_else(|| {
            fail(
                backend_name,
                format!(
                    "no URL configured: start luanette with --{backend_name}-url or {}_URL",
                    backend_name.to_uppercase()
                ),
            )
        })?;
        let url = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
        let timeout = overrides.timeout.unwrap_or(backend.timeout);
        let retries = overrides.retries.unwrap_or(backend.retries);
        let max = self.models.max_response;
        let span = tracing::info_span!("model.call", otel.name = %format!("{backend_name} {path}"), backend = backend_name, url = %url);
        hooteproto::trace::set_remote_parent(&span, &self.run.traceparent());
        let traceparent = {
            let current = span.in_scope(hooteproto::trace::current_traceparent);
            if current.is_empty() {
                self.run.traceparent()
            } else {
                current
            }
        };
        let attempt = |http: reqwest::Client, url: String, body: serde_json::Value, traceparent: String| async move {
            let mut request = http.post(&url).timeout(timeout).json(&body);
            if !traceparent.is_empty() {
                request = request.header("traceparent", traceparent);
            }
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let mut response = match request.send().await {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    return Err((false, format!("no answer from {url} within {timeout:?}")));
                }
                Err(e) => return Err((true, format!("cannot reach {url}: {e}"))),
            };
            let status = response.status();
            if response.content_length().is_some_and(|n| n > max as u64) {
                return Err((
                    false,
                    format!("the response from {url} is larger than {} MiB", max >> 20),
                ));
            }
            let mut bytes = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if bytes.len() + chunk.len() > max {
                            return Err((
                                false,
                                format!("the response from {url} is larger than {} MiB", max >> 20),
                            ));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => {
                        return Err((false, format!("no answer from {url} within {timeout:?}")));
                    }
                    Err(e) => return Err((true, format!("reading the answer from {url}: {e}"))),
                }
            }
            if !status.is_success() {
                let retry = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                return Err((
                    retry,
                    format!("HTTP {} from {url}: {}", status.as_u16(), excerpt(&bytes)),
                ));
            }
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| (false, format!("malformed JSON from {url}: {e}: {}", excerpt(&bytes))))
        };
        let calls = async {
            let mut tries = 0;
            loop {
                match attempt(http.clone(), url.clone(), body.clone(), traceparent.clone()).await {
                    Ok(json) => return Ok(json),
                    Err((true, _)) if tries < retries => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(tries.min(5))).await;
                    }
                    Err((_, message)) => return Err(message),
                }
            }
        };
        use tracing::Instrument as _;
        match self.run.guard(lua, calls.instrument(span.clone())).await? {
            Ok(json) => Ok(json),
            Err(message) => {
                span.in_scope(|| tracing::warn!(backend = backend_name, %message, "model call failed"));
                Err(fail(backend_name, message))
            }
        }
    }

    /// One Orpheus request: builds the body, posts it.
    async fn orpheus(
        &self,
        lua: &Lua,
        function: &str,
        (task, model): (&str, &str),
        options: &Table,
    ) -> mlua::Result<serde_json::Value> {
        let body = orpheus_body(self, function, task, model, options)?;
        let target = Target::new("orpheus", &self.models.orpheus);
        self.post(lua, target, "/predict", body, &overrides(options)?).await
    }

    fn cas(&self, function: &str) -> mlua::Result<&::cas::Cas> {
        self.cas
            .as_ref()
            .ok_or_else(|| fail(function, "no CAS is available here"))
    }

    /// A CAS object as base64 (for a model input).
    fn base64_of(&self, function: &str, hash: &str) -> mlua::Result<String> {
        let cas = self.cas(function)?;
        let resolved = cas.resolve(hash).map_err(|e| fail(function, format!("{hash}: {e}")))?;
        let bytes = cas
            .read(&resolved, self.models.max_response as u64, true)
            .map_err(|e| fail(function, e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Decodes base64 from a model's answer, checks it, stores it, returns the hash.
    fn store_base64(
        &self,
        function: &str,
        encoded: &str,
        mime: &str,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> mlua::Result<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| fail(function, format!("the answer holds invalid base64: {e}")))?;
        check(&bytes).map_err(|e| fail(function, e))?;
        let stored = self.cas(function)?.store(&bytes, mime).map_err(|e| fail(function, e))?;
        Ok(stored.info.hash.to_string())
    }
}

fn number(
    options: &Table,
    key: &str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
    function: &str,
) -> mlua::Result<f64> {
    let value: f64 = options.get::<Option<f64>>(key)?.unwrap_or(default);
    if !range.contains(&value) {
        return Err(fail(
            function,
            format!("{key} = {value} must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// The Orpheus request body for `task`, from the options table.
fn orpheus_body(
    caller: &Caller,
    function: &str,
    task: &str,
    default_model: &str,
    options: &Table,
) -> mlua::Result<serde_json::Value> {
    let model: String = options
        .get::<Option<String>>("model")?
        .unwrap_or_else(|| default_model.to_string());
    if !ORPHEUS_MODELS.contains(&model.as_str()) {
        return Err(fail(
            function,
            format!("model {model:?} is not one of {}", ORPHEUS_MODELS.join(", ")),
        ));
    }
    let mut body = serde_json::json!({
        "task": task,
        "model": model,
        "temperature": number(options, "temperature", 1.0, 0.0..=2.0, function)?,
        "top_p": number(options, "top_p", 0.95, 0.0..=1.0, function)?,
        "max_tokens": number(options, "max_tokens", 1024.0, 1.0..=16384.0, function)? as u64,
        "num_variations": number(options, "variations", 1.0, 1.0..=16.0, function)? as u64,
    });
    for (option, field) in [
        ("midi", "midi_input"),
        ("seed", "midi_input"),
        ("a", "midi_a"),
        ("b", "midi_b"),
    ] {
        if let Some(hash) = options.get::<Option<String>>(option)? {
            body[field] = caller.base64_of(function, &hash)?.into();
        }
    }
    Ok(body)
}

fn is_midi(bytes: &[u8]) -> Result<(), String> {
    midly::Smf::parse(bytes)
        .map(|_| ())
        .map_err(|e| format!("a returned variation is not MIDI: {e}"))
}

fn is_wav(bytes: &[u8]) -> Result<(), String> {
    hound::WavReader::new(std::io::Cursor::new(bytes))
        .map(|_| ())
        .map_err(|e| format!("the returned audio is not WAV: {e}"))
}

pub(super) fn install(
    api: &mut Registrar<'_>,
    http: Option<Arc<std::sync::OnceLock<Option<reqwest::Client>>>>,
    models: Arc<Models>,
    cas: Option<::cas::Cas>,
    run: &RunHandle,
) -> mlua::Result<()> {
    let caller = Caller {
        http,
        models,
        cas,
        run: run.clone(),
    };
    api.module(
        "orpheus",
        "Orpheus MIDI models (see docs/models.md). Options common to every call: temperature (0-2, default 1.0), \
         top_p (0-1, 0.95), max_tokens (1024), variations (1-16, default 1), model (base, children, mono_melodies, \
         bridge, loops, classifier), and per call timeout (seconds) and retries (the endpoints are the operator's). Generated MIDI is stored in the \
         CAS; calls return a list of hashes.",
    );
    for (name, task, model, signature, doc) in [
        (
            "generate",
            "generate",
            "base",
            "orpheus.generate{...} -> {hash, ...}",
            "New music from nothing. Example: `local hashes = orpheus.generate{variations = 4, temperature = 1.1}`.",
        ),
        (
            "generate_seeded",
            "generate",
            "base",
            "orpheus.generate_seeded{seed = hash, ...} -> {hash, ...}",
            "New music in the style of a seed MIDI file.",
        ),
        (
            "continue",
            "continue",
            "base",
            "orpheus.continue{midi = hash, ...} -> {hash, ...}",
            "Continues a MIDI file.",
        ),
        (
            "bridge",
            "bridge",
            "bridge",
            "orpheus.bridge{a = hash, b = hash?, ...} -> {hash, ...}",
            "A bridge from section a (towards b). Example: `orpheus.bridge{a = params.current_section, b = params.next_section}`.",
        ),
        (
            "loops",
            "loops",
            "loops",
            "orpheus.loops{seed = hash?, ...} -> {hash, ...}",
            "Loopable patterns.",
        ),
    ] {
        let caller = caller.clone();
        let function = api.lua().create_async_function(move |lua, options: Option<Table>| {
            let caller = caller.clone();
            async move {
                let full = format!("orpheus.{name}");
                let options = match options {
                    Some(options) => options,
                    None => lua.create_table()?,
                };
                let answer = caller.orpheus(&lua, &full, (task, model), &options).await?;
                let variations = answer["variations"]
                    .as_array()
                    .ok_or_else(|| fail(&full, "the answer has no `variations` list"))?;
                let mut hashes = Vec::with_capacity(variations.len());
                for variation in variations {
                    let encoded = variation["midi"]
                        .as_str()
                        .or_else(|| variation.as_str())
                        .ok_or_else(|| fail(&full, "a variation has no base64 `midi`"))?;
                    hashes.push(caller.store_base64(&full, encoded, "audio/midi", is_midi)?);
                }
                Ok(hashes)
            }
        })?;
        api.function("orpheus", name, signature, doc, function)?;
    }
    let classify = {
        let caller = caller.clone();
        api.lua().create_async_function(move |lua, options: Table| {
            let caller = caller.clone();
            async move {
                if options.get::<Option<String>>("midi")?.is_none() {
                    return Err(fail("orpheus.classify", "needs `midi` (a CAS hash)"));
                }
                let answer = caller
                    .orpheus(&lua, "orpheus.classify", ("classify", "classifier"), &options)
                    .await?;
                let labels = answer["labels"]
                    .as_array()
                    .ok_or_else(|| fail("orpheus.classify", "the answer has no `labels` list"))?;
                let out = lua.create_table()?;
                let mut sorted: Vec<(String, f64)> = labels
                    .iter()
                    .filter_map(|l| Some((l["label"].as_str()?.to_string(), l["confidence"].as_f64()?)))
                    .collect();
                sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
                for (i, (label, confidence)) in sorted.into_iter().enumerate() {
                    let item = lua.create_table()?;
                    item.raw_set("label", label)?;
                    item.raw_set("confidence", confidence)?;
                    out.raw_set(i + 1, item)?;
                }
                Ok(out)
            }
        })?
    };
    api.function(
        "orpheus",
        "classify",
        "orpheus.classify{midi = hash} -> {{label, confidence}, ...}",
        "Labels for a MIDI file (e.g. human vs machine), most confident first.",
        classify,
    )?;

    api.module("musicgen", "MusicGen text-to-audio (see docs/models.md).");
    let generate = {
        let caller = caller.clone();
        api.lua().create_async_function(move |lua, options: Table| {
            let caller = caller.clone();
            async move {
                let function = "musicgen.generate";
                let prompt: String = options
                    .get::<Option<String>>("prompt")?
                    .ok_or_else(|| fail(function, "needs `prompt`"))?;
                let body = serde_json::json!({
                    "prompt": prompt,
                    "duration": number(&options, "duration", 10.0, 0.5..=300.0, function)?,
                    "temperature": number(&options, "temperature", 1.0, 0.0..=2.0, function)?,
                    "top_k": number(&options, "top_k", 250.0, 0.0..=10000.0, function)? as u64,
                    "top_p": number(&options, "top_p", 0.0, 0.0..=1.0, function)?,
                });
                let answer = caller
                    .post(
                        &lua,
                        Target::new("musicgen", &caller.models.musicgen),
                        "/generate",
                        body,
                        &overrides(&options)?,
                    )
                    .await?;
                let audio = answer["audio"]
                    .as_str()
                    .ok_or_else(|| fail(function, "the answer has no base64 `audio`"))?;
                caller.store_base64(function, audio, "audio/wav", is_wav)
            }
        })?
    };
    api.function(
        "musicgen",
        "generate",
        "musicgen.generate{prompt, duration = 10, temperature = 1, top_k = 250, top_p = 0} -> hash",
        "Audio from a text prompt, stored in the CAS as WAV. Example: `musicgen.generate{prompt = \"lofi piano\", \
         duration = 8}`.",
        generate,
    )?;

    api.module(
        "deepseek",
        "An OpenAI-compatible chat model (DeepSeek by default; see docs/models.md).",
    );
    let chat = {
        let caller = caller.clone();
        api.lua().create_async_function(move |lua, options: Table| {
            let caller = caller.clone();
            async move {
                let function = "deepseek.chat";
                let messages: Table = options.get::<Option<Table>>("messages")?.ok_or_else(|| {
                    fail(
                        function,
                        "needs `messages` ({{role = \"user\", content = \"...\"}, ...})",
                    )
                })?;
                let mut list = Vec::new();
                for message in messages.sequence_values::<Table>() {
                    let message = message?;
                    let role: String = message.get::<Option<String>>("role")?.unwrap_or_else(|| "user".into());
                    let content: String = message
                        .get::<Option<String>>("content")?
                        .ok_or_else(|| fail(function, "a message needs `content`"))?;
                    list.push(serde_json::json!({"role": role, "content": content}));
                }
                let body = serde_json::json!({
                    "model": options.get::<Option<String>>("model")?.unwrap_or_else(|| "deepseek-chat".into()),
                    "messages": list,
                    "temperature": number(&options, "temperature", 1.0, 0.0..=2.0, function)?,
                    "max_tokens": number(&options, "max_tokens", 1024.0, 1.0..=65536.0, function)? as u64,
                });
                let key = caller.models.deepseek_key.clone();
                let answer = caller
                    .post(
                        &lua,
                        Target {
                            bearer: key.as_deref(),
                            ..Target::new("deepseek", &caller.models.deepseek)
                        },
                        "/chat/completions",
                        body,
                        &overrides(&options)?,
                    )
                    .await?;
                let text = answer["choices"][0]["message"]["content"]
                    .as_str()
                    .ok_or_else(|| fail(function, "the answer has no choices[1].message.content"))?;
                let out = lua.create_table()?;
                out.raw_set("text", text)?;
                if let Some(model) = answer["model"].as_str() {
                    out.raw_set("model", model)?;
                }
                let usage = lua.create_table()?;
                for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
                    if let Some(n) = answer["usage"][key].as_u64() {
                        usage.raw_set(key, n)?;
                    }
                }
                out.raw_set("usage", usage)?;
                Ok(out)
            }
        })?
    };
    api.function(
        "deepseek",
        "chat",
        "deepseek.chat{messages, model = \"deepseek-chat\", temperature = 1, max_tokens = 1024} -> {text, usage, model}",
        "One chat completion. The API key comes from DEEPSEEK_API_KEY and is never logged. Example: \
         `deepseek.chat{messages = {{role = \"user\", content = \"Name a chord after Dm7\"}}}.text`.",
        chat,
    )
}
