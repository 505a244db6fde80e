//! The commands that call one backend tool and show its reply.

use std::time::{Duration, Instant};

use holler::backends::Backend;
use serde_json::{Value, json};

use super::args::{ArtifactCommand, Command, GraphCommand, TimelineCommand, TransportCommand};
use super::{Context, Failure, backend, parse_json, usage};

/// Runs a command that calls the backends (everything but up, serve and completions).
pub async fn run(command: Command, context: &Context) -> Result<(), Failure> {
    match command {
        Command::Ping { backend: which } => ping(context, which).await,
        Command::Tools { backend: which } => tools(context, which).await,
        Command::Call { tool, arguments } => {
            let arguments = parse_json("the arguments", &arguments)?;
            let reply = context.call(&tool, arguments).await?;
            context.print(&reply);
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
            context.print(&holler::backends::payload_to_json(reply));
            Ok(())
        }
        Command::Lua { code, file, params } => {
            let code = match (code, file) {
                (Some(code), None) => code,
                (None, Some(file)) => {
                    std::fs::read_to_string(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?
                }
                _ => return Err(usage("give the code, or -f FILE")),
            };
            let mut arguments = json!({"code": code});
            if let Some(params) = params {
                arguments["params"] = parse_json("--params", &params)?;
            }
            let reply = context.call("lua_eval", arguments).await?;
            context.show(&reply, |r| {
                let mut text = String::new();
                for line in r["output"].as_array().into_iter().flatten() {
                    text.push_str(&format!("{}\n", line["message"].as_str().unwrap_or_default()));
                }
                text.push_str(&serde_json::to_string_pretty(&r["result"]).unwrap_or_default());
                Some(text)
            });
            Ok(())
        }
        Command::Script(command) => super::jobs::script(context, command).await,
        Command::Job(command) => super::jobs::job(context, command).await,
        Command::Cas(command) => super::cas::run(context, command).await,
        Command::Artifact(command) => {
            let (tool, arguments) = match command {
                ArtifactCommand::Create {
                    hash,
                    name,
                    tags,
                    parents,
                } => (
                    "artifact_create",
                    json!({"cas_hash": hash, "name": name, "tags": tags, "parent_ids": parents, "creator": "holler"}),
                ),
                ArtifactCommand::Get { id } => ("artifact_get", json!({"artifact_id": id})),
                ArtifactCommand::List { tag } => ("artifact_list", json!({"tag": tag})),
            };
            let reply = context.call(tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
        Command::Graph(command) => {
            let (tool, arguments) = match command {
                GraphCommand::Query { query } => ("graph_query", json!({"query": query})),
                GraphCommand::Bind { identity, hints } => (
                    "graph_bind",
                    json!({"identity": identity, "hints": parse_json("the hints", &hints)?}),
                ),
            };
            let reply = context.call(tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
        Command::Transport(command) => {
            let (tool, arguments) = match command {
                TransportCommand::Play => ("transport_play", json!({})),
                TransportCommand::Stop => ("transport_stop", json!({})),
                TransportCommand::Seek { beats } => ("transport_seek", json!({"position_beats": beats})),
                TransportCommand::Status => ("transport_status", json!({})),
            };
            let reply = context.call(tool, arguments).await?;
            context.show(&reply, |r| {
                let s = &r["state"];
                Some(format!(
                    "{} at beat {:.3} ({:.3} s), {} bpm, {} Hz on {}",
                    s["playback"]
                        .as_str()
                        .unwrap_or("PLAYBACK_STATE_STOPPED")
                        .trim_start_matches("PLAYBACK_STATE_")
                        .to_lowercase(),
                    s["positionBeats"].as_f64().unwrap_or(0.0),
                    s["positionSeconds"].as_f64().unwrap_or(0.0),
                    s["tempoBpm"].as_f64().unwrap_or(0.0),
                    s["sampleRate"].as_u64().unwrap_or(0),
                    s["backend"].as_str().unwrap_or("?"),
                ))
            });
            Ok(())
        }
        Command::Timeline(command) => {
            let (tool, arguments) = match command {
                TimelineCommand::Query { from, to } => ("timeline_query", json!({"from_beats": from, "to_beats": to})),
                TimelineCommand::Marker { kind, beats, metadata } => {
                    let metadata = match metadata {
                        Some(m) => parse_json("--metadata", &m)?,
                        None => json!({}),
                    };
                    let kind = format!("TIMELINE_EVENT_TYPE_{}", kind.to_uppercase());
                    (
                        "timeline_add_marker",
                        json!({"event_type": kind, "position_beats": beats, "metadata": metadata}),
                    )
                }
                TimelineCommand::Region { hash, beats, gain_db } => (
                    "timeline_add_region",
                    json!({"cas_hash": hash, "position_beats": beats, "gain_db": gain_db}),
                ),
                TimelineCommand::Remove { id } => ("timeline_remove", json!({"id": id})),
                TimelineCommand::Tempo { bpm, at } => (
                    "timeline_set_tempo",
                    json!({"change": {"position_beats": at, "tempo_bpm": bpm}}),
                ),
                TimelineCommand::Render { from, to } => {
                    ("timeline_render", json!({"from_beats": from, "to_beats": to}))
                }
            };
            let reply = context.call(tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
        Command::Up { .. } | Command::Serve { .. } | Command::Mcp { .. } | Command::Completions { .. } => {
            unreachable!("dispatched in cli::run")
        }
    }
}

async fn ping(context: &Context, which: Option<String>) -> Result<(), Failure> {
    let targets = match which {
        Some(name) => vec![backend(&name)?],
        None => Backend::ALL.to_vec(),
    };
    let mut results = serde_json::Map::new();
    let mut down = None;
    for target in targets {
        let started = Instant::now();
        let options = hooteproto::RequestOptions {
            timeout: Some(context.timeout.min(Duration::from_secs(3))),
            ..Default::default()
        };
        let reply = context
            .backends
            .request(
                target,
                hooteproto::v1::envelope::Payload::Ping(Default::default()),
                options,
            )
            .await;
        let value = match reply {
            Ok(reply) => {
                let mut value = holler::backends::payload_to_json(reply);
                value["latency_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
                value
            }
            Err(error) => {
                let value = json!({"error": error.to_string()});
                down = Some(Failure::from(error));
                value
            }
        };
        results.insert(target.name().into(), value);
    }
    let results = Value::Object(results);
    context.show(&results, |r| {
        let mut text = String::new();
        for (name, value) in r.as_object().into_iter().flatten() {
            match value.get("error") {
                Some(error) => text.push_str(&format!("{name:<12} down: {}\n", error.as_str().unwrap_or_default())),
                None => text.push_str(&format!(
                    "{name:<12} up   {} {} ({:.2} ms, up {} s)\n",
                    value["workerId"].as_str().unwrap_or_default(),
                    value["version"].as_str().unwrap_or_default(),
                    value["latency_ms"].as_f64().unwrap_or_default(),
                    value["uptimeSecs"]
                        .as_str()
                        .or(value["uptimeSecs"].as_u64().map(|_| ""))
                        .unwrap_or("0"),
                )),
            }
        }
        Some(text.trim_end().to_string())
    });
    match down {
        Some(failure) => Err(Failure {
            code: failure.code,
            message: "a backend is down".into(),
        }),
        None => Ok(()),
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
        println!("{}", Value::Array(list));
    } else {
        for (b, t) in &all {
            let summary = t.description.split(". ").next().unwrap_or_default();
            println!("{:<22} {:<12} {summary}", t.name, b.name());
        }
    }
    Ok(())
}
