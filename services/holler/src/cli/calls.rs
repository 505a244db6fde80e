//! The commands that call one backend and show its reply: each builds its `pb::*` request
//! and reads the typed reply (`Context::send`); only `call` and `send` take JSON.

use std::time::{Duration, Instant};

use holler::backends::Backend;
use hooteproto::v1::{self as pb, envelope::Payload};
use serde_json::{Value, json};

use super::args::{Command, ResourceCommand, TransportCommand};
use super::output::{self, Table, enum_name, number};
use super::{Context, Failure, backend, params, parse_json, usage};

/// Runs a command that calls the backends (everything but up, serve and completions).
pub async fn run(command: Command, context: &Context) -> Result<(), Failure> {
    match command {
        Command::Status => status(context).await,
        Command::Ping { backend: which } => ping(context, which).await,
        Command::Tools { backend: which, schema } => match schema {
            Some(tool) => tool_schema(&tool),
            None => tools(context, which).await,
        },
        Command::Call { tool, arguments } => {
            let arguments = if arguments == "-" {
                params::read_text(std::path::Path::new("-"))?
            } else {
                arguments
            };
            let arguments = parse_json("the arguments", &arguments)?;
            let reply = context.backends.call(&tool, &arguments, context.timeout).await?;
            if context.json {
                outln!("{}", holler::backends::payload_to_json(reply));
            } else {
                let result = hooteproto::json::tool_result(reply).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
                outln!("{}", output::value(result));
            }
            Ok(())
        }
        Command::Send {
            backend: which,
            payload,
        } => {
            let which = backend(&which)?;
            let envelope = hooteproto::json::envelope_from_json(&payload).map_err(|e| usage(e.to_string()))?;
            let payload = envelope
                .payload
                .ok_or_else(|| usage("the JSON names no payload, e.g. {\"ping\": {}}"))?;
            let options = hooteproto::RequestOptions {
                timeout: Some(context.timeout),
                ..Default::default()
            };
            let reply = context.backends.request(which, payload, options).await?;
            outln!("{}", holler::backends::payload_to_json(reply));
            Ok(())
        }
        Command::Lua { code, file, params } => {
            let code = match (code, file) {
                (Some(code), None) => code,
                (None, Some(file)) => params::read_text(&file)?,
                _ => return Err(usage("give the code, or -f FILE (- for stdin)")),
            };
            let params = params::collect(params)?;
            let answer = context
                .send(pb::LuaEvalRequest {
                    code: call_main(&code),
                    params: params.map(hooteproto::wkt::Struct::from_json),
                })
                .await?;
            // What the script printed is not the result: it goes to stderr, the result to stdout.
            output::logs(&answer.reply.output);
            context.show(&answer, |reply| {
                outln!("{}", output::proto_value(reply.result.clone()));
            });
            Ok(())
        }
        Command::Resource(command) => resource(context, command).await,
        Command::Prompt { name, arguments } => prompt(context, name, arguments).await,
        Command::Script(command) => super::jobs::script(context, command).await,
        Command::Job(command) => super::jobs::job(context, command).await,
        Command::Cas(command) => super::cas::run(context, command).await,
        Command::Artifact(command) => super::artifacts::artifact(context, command).await,
        Command::Graph(command) => super::artifacts::graph(context, command).await,
        Command::Transport(command) => {
            let state = match command {
                TransportCommand::Play => context.send(pb::TransportPlayRequest {}).await?.map(|r| r.state),
                TransportCommand::Stop => context.send(pb::TransportStopRequest {}).await?.map(|r| r.state),
                TransportCommand::Seek { beats } => context
                    .send(pb::TransportSeekRequest { position_beats: beats })
                    .await?
                    .map(|r| r.state),
                TransportCommand::Status => context.send(pb::TransportStatusRequest {}).await?.map(|r| r.state),
            };
            context.show(&state, |state| outln!("{}", transport(state.as_ref())));
            Ok(())
        }
        Command::Timeline(command) => super::timeline::timeline(context, command).await,
        Command::Up { .. }
        | Command::Serve { .. }
        | Command::Mcp { .. }
        | Command::Open { .. }
        | Command::Completions { .. } => Err(Failure::new(1, "internal: this command is not a call")),
    }
}

impl<T> super::Answer<T> {
    /// The same answer with its reply mapped (the JSON stays the whole reply's).
    fn map<U>(self, f: impl FnOnce(T) -> U) -> super::Answer<U> {
        super::Answer {
            reply: f(self.reply),
            json: self.json,
        }
    }
}

/// Code that defines `main(params)` and returns nothing has `main(params)` called, as a job
/// would: the chunk runs inside a function (on the same line, so line numbers hold), then
/// `main(params)` when the chunk returned no value and `main` is a function.
fn call_main(code: &str) -> String {
    let defines_main = code.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("function main(") || line.starts_with("function main (") || line.starts_with("main = function")
    });
    if !defines_main {
        return code.to_string();
    }
    format!(
        "local __holler = table.pack((function(...) {code}\nend)(...))\n\
         if __holler.n == 0 and type(main) == \"function\" then return main(params) end\n\
         return __holler[1]\n"
    )
}

/// A transport state in one line.
pub(super) fn transport(state: Option<&pb::TransportState>) -> String {
    let Some(s) = state else {
        return "no transport state".into();
    };
    let mut text = format!(
        "{} at beat {} ({:.3} s), {} bpm, {} Hz on {}",
        enum_name("hooteproto.v1.PlaybackState", s.playback),
        number(s.position_beats),
        s.position_seconds,
        number(s.tempo_bpm),
        s.sample_rate,
        s.backend,
    );
    if let Some(ts) = &s.time_signature {
        text.push_str(&format!(", {}/{}", ts.numerator, ts.denominator));
    }
    if let Some(range) = s.loop_range.as_ref().filter(|r| r.enabled) {
        text.push_str(&format!(
            ", looping {}..{}",
            number(range.from_beats),
            number(range.to_beats)
        ));
    }
    text
}

/// Pings a backend; `(latency, reply)`.
async fn ping_one(context: &Context, target: Backend) -> (Duration, Result<pb::PingReply, Failure>) {
    let started = Instant::now();
    let reply = context
        .send_to::<pb::PingRequest>(
            target,
            Payload::Ping(pb::PingRequest {}),
            context.timeout.min(Duration::from_secs(3)),
        )
        .await
        .map(|answer| answer.reply);
    (started.elapsed(), reply)
}

async fn ping(context: &Context, which: Option<String>) -> Result<(), Failure> {
    let targets = match which {
        Some(name) => vec![backend(&name)?],
        None => Backend::ALL.to_vec(),
    };
    let mut results = serde_json::Map::new();
    let mut table = Table::new(&["SERVICE", "STATE", "ID", "VERSION", "LATENCY", "UPTIME"]);
    let mut down = None;
    for target in targets {
        let (latency, reply) = ping_one(context, target).await;
        match reply {
            Ok(pong) => {
                results.insert(
                    target.name().into(),
                    json!({"workerId": pong.worker_id, "service": pong.service, "version": pong.version,
                           "uptimeSecs": pong.uptime_secs, "latency_ms": latency.as_secs_f64() * 1e3}),
                );
                table.row(vec![
                    target.name().into(),
                    "up".into(),
                    pong.worker_id,
                    pong.version,
                    format!("{:.2} ms", latency.as_secs_f64() * 1e3),
                    output::duration(Duration::from_secs(pong.uptime_secs)),
                ]);
            }
            Err(failure) => {
                results.insert(target.name().into(), json!({"error": failure.message}));
                table.row(vec![target.name().into(), "down".into(), failure.message.clone()]);
                down = Some(failure);
            }
        }
    }
    if context.json {
        outln!("{}", Value::Object(results));
    } else {
        table.print("");
    }
    match down {
        Some(failure) => Err(Failure::new(failure.code, "a backend is down")),
        None => Ok(()),
    }
}

/// `holler status`: each service at its configured endpoint, and this CLI's data dir and key.
async fn status(context: &Context) -> Result<(), Failure> {
    // Asked at once, so the ones that are down cost one timeout, not one each.
    let (luanette, hootenanny, chaosgarden) = tokio::join!(
        ping_one(context, Backend::Luanette),
        ping_one(context, Backend::Hootenanny),
        ping_one(context, Backend::Chaosgarden),
    );
    let key = context
        .key_source
        .clone()
        .unwrap_or_else(|| "none (unsigned requests)".into());
    let mut table = Table::new(&["SERVICE", "ENDPOINT", "STATE", "VERSION", "UPTIME"]);
    let mut services = serde_json::Map::new();
    let mut up = 0;
    for (target, (_, reply)) in Backend::ALL.into_iter().zip([luanette, hootenanny, chaosgarden]) {
        let endpoint = context.backends.endpoint(target).to_string();
        match reply {
            Ok(pong) => {
                up += 1;
                services.insert(
                    target.name().into(),
                    json!({"endpoint": endpoint, "up": true, "version": pong.version, "uptime_secs": pong.uptime_secs}),
                );
                table.row(vec![
                    target.name().into(),
                    endpoint,
                    "up".into(),
                    pong.version,
                    output::duration(Duration::from_secs(pong.uptime_secs)),
                ]);
            }
            Err(failure) => {
                let reason = if failure.code == 7 {
                    "refused (check the key)"
                } else {
                    "not answering"
                };
                services.insert(
                    target.name().into(),
                    json!({"endpoint": endpoint, "up": false, "error": failure.message}),
                );
                table.row(vec![target.name().into(), endpoint, reason.into()]);
            }
        }
    }
    if context.json {
        outln!(
            "{}",
            json!({"services": services, "data_dir": context.data_dir, "key": key})
        );
    } else {
        table.print("");
        outln!();
        output::fields(&[("data dir", context.data_dir.display().to_string()), ("key", key)]);
    }
    match up {
        3 => Ok(()),
        0 => Err(Failure::new(
            5,
            "no service answers at these endpoints: start them with `holler up`",
        )),
        _ => Err(Failure::new(5, "some services do not answer")),
    }
}

async fn tools(context: &Context, which: Option<String>) -> Result<(), Failure> {
    let targets = match which {
        Some(name) => vec![backend(&name)?],
        None => Backend::ALL.to_vec(),
    };
    let mut all = Vec::new();
    for target in targets {
        match context
            .backends
            .tools(target, context.timeout.min(Duration::from_secs(3)))
            .await
        {
            Ok(tools) => all.extend(tools.into_iter().map(|t| (target, t))),
            Err(error) => eprintln!("holler: {} left out: {error}", target.name()),
        }
    }
    if context.json {
        let list: Vec<Value> = all
            .iter()
            .map(|(b, t)| json!({"backend": b.name(), "name": t.name, "description": t.description}))
            .collect();
        outln!("{}", Value::Array(list));
    } else {
        let mut table = Table::new(&["TOOL", "SERVICE", "DESCRIPTION"]);
        for (b, t) in all {
            // The whole description, on one line: sentences are never cut.
            let description = t.description.split_whitespace().collect::<Vec<_>>().join(" ");
            table.row(vec![t.name, b.name().into(), description]);
        }
        table.print("no backend answered (holler status)");
    }
    Ok(())
}

/// `tools --schema TOOL`: the tool as the schema declares it (no backend needed).
fn tool_schema(tool: &str) -> Result<(), Failure> {
    let facts = hooteproto::tools::find(tool).ok_or_else(|| usage(format!("no tool {tool:?}")))?;
    let info = facts.info().map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    let schema = |s: Option<hooteproto::wkt::Struct>| {
        s.and_then(|s| s.to_json().ok())
            .map(Value::Object)
            .unwrap_or(Value::Null)
    };
    let value = json!({
        "name": info.name,
        "service": info.service,
        "description": info.description,
        "read_only": info.read_only,
        "destructive": info.destructive,
        "idempotent": info.idempotent,
        "open_world": info.open_world,
        "input_schema": schema(info.input_schema),
        "output_schema": schema(info.output_schema),
    });
    outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    Ok(())
}

async fn resource(context: &Context, command: ResourceCommand) -> Result<(), Failure> {
    match command {
        ResourceCommand::List => {
            let mut resources = Vec::new();
            let mut templates = Vec::new();
            let mut json = serde_json::Map::new();
            for target in [Backend::Luanette, Backend::Hootenanny] {
                let request = Payload::ListResources(pb::ListResourcesRequest::default());
                match context
                    .send_to::<pb::ListResourcesRequest>(target, request, context.timeout)
                    .await
                {
                    Ok(answer) => {
                        if let Some(value) = answer.json {
                            json.insert(target.name().into(), value);
                        }
                        resources.extend(answer.reply.resources);
                        templates.extend(answer.reply.templates);
                    }
                    Err(failure) => eprintln!("holler: {} left out: {}", target.name(), failure.message),
                }
            }
            if context.json {
                outln!("{}", Value::Object(json));
                return Ok(());
            }
            let mut table = Table::new(&["URI", "TYPE", "DESCRIPTION"]);
            for r in resources {
                table.row(vec![r.uri, r.mime_type, r.description]);
            }
            for t in templates {
                table.row(vec![t.uri_template, t.mime_type, t.description]);
            }
            table.print("no resources (is the stack up? holler status)");
            Ok(())
        }
        ResourceCommand::Read { uri } => {
            let target = holler::catalog::resource_backend(&uri)
                .ok_or_else(|| usage(format!("no resource {uri:?}: URIs start with lua:// or hootenanny://")))?;
            let request = Payload::ReadResource(pb::ReadResourceRequest { uri });
            let answer = context
                .send_to::<pb::ReadResourceRequest>(target, request, context.timeout)
                .await?;
            context.show(&answer, |reply| {
                for content in &reply.contents {
                    match &content.content {
                        Some(pb::resource_content::Content::Text(text)) => {
                            let newline = if text.ends_with('\n') { "" } else { "\n" };
                            output::write_out(&format!("{text}{newline}"));
                        }
                        Some(pb::resource_content::Content::Blob(bytes)) => output::write_bytes(bytes),
                        None => {}
                    }
                }
            });
            Ok(())
        }
    }
}

async fn prompt(context: &Context, name: Option<String>, arguments: Vec<String>) -> Result<(), Failure> {
    let Some(name) = name else {
        if !arguments.is_empty() {
            return Err(usage("give the prompt's name before its arguments"));
        }
        let request = Payload::ListPrompts(pb::ListPromptsRequest {});
        let answer = context
            .send_to::<pb::ListPromptsRequest>(Backend::Luanette, request, context.timeout)
            .await?;
        context.show(&answer, |reply| {
            let mut table = Table::new(&["PROMPT", "ARGUMENTS", "DESCRIPTION"]);
            for p in &reply.prompts {
                let args: Vec<String> = p
                    .arguments
                    .iter()
                    .map(|a| {
                        if a.required {
                            a.name.clone()
                        } else {
                            format!("[{}]", a.name)
                        }
                    })
                    .collect();
                table.row(vec![p.name.clone(), args.join(" "), p.description.clone()]);
            }
            table.print("no prompts");
        });
        return Ok(());
    };
    let mut map = std::collections::BTreeMap::new();
    for argument in arguments {
        let (key, value) = argument
            .split_once('=')
            .ok_or_else(|| usage(format!("prompt argument {argument:?}: expected key=value")))?;
        let value = match value.strip_prefix('@') {
            Some(file) => params::read_text(std::path::Path::new(file))?,
            None => value.to_string(),
        };
        map.insert(key.to_string(), value);
    }
    let request = Payload::GetPrompt(pb::GetPromptRequest { name, arguments: map });
    let answer = context
        .send_to::<pb::GetPromptRequest>(Backend::Luanette, request, context.timeout)
        .await?;
    context.show(&answer, |reply| {
        let many = reply.messages.len() > 1;
        for message in &reply.messages {
            if many {
                outln!("--- {} ---", enum_name("hooteproto.v1.PromptRole", message.role));
            }
            outln!("{}", message.text.trim_end());
        }
    });
    Ok(())
}
