//! Stored scripts and background jobs; waiting on one goes through the shared
//! `Backends::wait_job` loop (the MCP gateway's `job_execute{wait: true}` uses it too).

use std::time::{Duration, Instant};

use holler::backends::Waited;
use hooteproto::v1 as pb;
use serde_json::Value;

use super::args::{JobCommand, ScriptCommand};
use super::output::{self, Table, enum_name, short};
use super::{Context, Failure, params};

const JOB_STATE: &str = "hooteproto.v1.JobState";
const JOB_PRIORITY: &str = "hooteproto.v1.JobPriority";

/// `name v3`, or `-` for a script stored without a name.
fn version_label(s: &pb::ScriptInfo) -> String {
    if s.name.is_empty() {
        "-".into()
    } else {
        format!("{} v{}", s.name, s.version)
    }
}

fn script_row(table: &mut Table, s: &pb::ScriptInfo) {
    let d = s.description.clone().unwrap_or_default();
    table.row(vec![
        short(&s.script_hash),
        version_label(s),
        d.name,
        s.tags.join(","),
        s.creator.clone(),
        output::time(&s.created_at),
    ]);
}

/// A script's name, description and parameters (from its `describe()`).
fn describe(s: &pb::ScriptInfo) {
    let d = s.description.clone().unwrap_or_default();
    output::fields(&[
        ("name", d.name),
        ("description", d.description),
        ("hash", s.script_hash.clone()),
        ("stored as", version_label(s)),
        ("tags", s.tags.join(", ")),
        ("creator", s.creator.clone()),
        ("created", output::time(&s.created_at)),
    ]);
    let schema = d.params_schema.and_then(|s| s.to_json().ok()).unwrap_or_default();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut table = Table::new(&["PARAM", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"]);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in properties {
            let kind = match p.get("type") {
                Some(Value::String(t)) => t.clone(),
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("|"),
                _ if p.get("enum").is_some() => "enum".into(),
                _ => "any".into(),
            };
            let kind = match p.get("enum").and_then(Value::as_array) {
                Some(values) => format!(
                    "{kind} ({})",
                    values
                        .iter()
                        .map(|v| output::value(v.clone()))
                        .collect::<Vec<_>>()
                        .join("|")
                ),
                None => kind,
            };
            table.row(vec![
                name.clone(),
                kind,
                if required.contains(&name.as_str()) { "yes" } else { "no" }.into(),
                p.get("default")
                    .map(|v| output::integral(v.clone()).to_string())
                    .unwrap_or_else(|| "-".into()),
                p.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ]);
        }
    }
    outln!();
    table.print("(no parameters declared)");
}

pub async fn script(context: &Context, command: ScriptCommand) -> Result<(), Failure> {
    match command {
        ScriptCommand::Store {
            file,
            tags,
            creator,
            name,
        } => {
            let content = params::read_text(&file)?;
            let answer = context
                .send(pb::ScriptStoreRequest {
                    content,
                    tags,
                    creator,
                    name,
                })
                .await?;
            context.show(&answer, |r| {
                if let Some(s) = &r.script {
                    outln!("{}", s.script_hash);
                    if !s.name.is_empty() {
                        eprintln!("({} version {})", s.name, s.version);
                    }
                }
                if r.already_existed {
                    eprintln!("(already stored)");
                }
            });
        }
        ScriptCommand::Search { tag, creator, name } => {
            let answer = context
                .send(pb::ScriptSearchRequest {
                    tag,
                    creator,
                    name,
                    ..Default::default()
                })
                .await?;
            context.show(&answer, |r| {
                let mut table = Table::new(&["HASH", "STORED AS", "DESCRIBED AS", "TAGS", "CREATOR", "CREATED"]);
                r.scripts.iter().for_each(|s| script_row(&mut table, s));
                table.print("no scripts");
            });
        }
        ScriptCommand::Describe { script } => {
            // Luanette resolves prefixes and names itself.
            let answer = context.send(pb::LuaDescribeRequest { script_hash: script }).await?;
            context.show(&answer, |r| {
                if let Some(s) = &r.script {
                    describe(s)
                }
            });
        }
    }
    Ok(())
}

fn job_row(table: &mut Table, j: &pb::JobInfo) {
    table.row(vec![
        j.job_id.clone(),
        enum_name(JOB_STATE, j.state),
        format!("{}%", (j.progress * 100.0).round() as i64),
        short(&j.script_hash),
        output::time(&j.created_at),
        j.progress_message.clone(),
    ]);
}

fn job_fields(j: &pb::JobInfo) {
    let mut pairs = vec![
        ("job", j.job_id.clone()),
        ("state", enum_name(JOB_STATE, j.state)),
        ("script", j.script_hash.clone()),
        (
            "script name",
            if j.script_name.is_empty() {
                "-".into()
            } else {
                j.script_name.clone()
            },
        ),
        ("priority", enum_name(JOB_PRIORITY, j.priority)),
        (
            "progress",
            format!("{}% {}", (j.progress * 100.0).round() as i64, j.progress_message),
        ),
        ("created", output::time(&j.created_at)),
        ("started", output::time(&j.started_at)),
        ("finished", output::time(&j.finished_at)),
    ];
    if let Some(took) = output::between(&j.started_at, &j.finished_at) {
        pairs.push(("took", output::duration(took)));
    }
    if !j.tags.is_empty() {
        pairs.push(("tags", j.tags.join(", ")));
    }
    if let Some(error) = &j.error {
        pairs.push(("error", error.message.clone()));
    }
    output::fields(&pairs);
    if j.state == pb::JobState::Succeeded as i32 {
        outln!("\nresult:\n{}", output::proto_value(j.result.clone()));
    }
    if !j.logs.is_empty() {
        eprintln!("\nlogs:");
        output::logs(&j.logs);
    }
}

pub async fn job(context: &Context, command: JobCommand) -> Result<(), Failure> {
    match command {
        JobCommand::Run {
            script,
            priority,
            capabilities,
            params,
            wait,
        } => {
            let params = params::collect(params)?;
            let priority = output::enum_number(JOB_PRIORITY, &priority)
                .ok_or_else(|| super::usage(format!("no job priority {priority:?}")))?;
            let answer = context
                .send(pb::JobExecuteRequest {
                    script_hash: script,
                    params: params.map(hooteproto::wkt::Struct::from_json),
                    tags: Vec::new(),
                    priority,
                    required_capabilities: capabilities,
                })
                .await?;
            let id = answer.reply.job_id.clone();
            if wait {
                let interrupted = interrupted();
                // The id first, so the job can be found again whatever happens to this wait.
                eprintln!("job {id} started");
                wait_for(context, &id, interrupted).await
            } else {
                context.show(&answer, |r| outln!("{}", r.job_id));
                Ok(())
            }
        }
        JobCommand::Wait { id } => wait_for(context, &id, interrupted()).await,
        JobCommand::Stats => {
            let answer = context.send(pb::JobStatsRequest {}).await?;
            context.show(&answer, |r| {
                let mut table = Table::new(&["PRIORITY", "CAPABILITIES", "PENDING", "RUNNING", "OLDEST WAIT"]);
                for q in &r.queues {
                    table.row(vec![
                        enum_name(JOB_PRIORITY, q.priority),
                        if q.required_capabilities.is_empty() {
                            "-".into()
                        } else {
                            q.required_capabilities.join(",")
                        },
                        q.pending.to_string(),
                        q.running.to_string(),
                        output::duration(Duration::from_secs_f64(q.oldest_pending_seconds.max(0.0))),
                    ]);
                }
                table.print("no unfinished jobs");
                outln!("\nbusy workers: {}", r.busy_workers);
            });
            Ok(())
        }
        JobCommand::Status { id } => {
            let answer = context.send(pb::JobStatusRequest { job_id: id }).await?;
            context.show(&answer, |r| r.job.iter().for_each(|j| job_fields(j)));
            Ok(())
        }
        JobCommand::Poll { ids, all, timeout_ms } => {
            let mode = if all { pb::PollMode::All } else { pb::PollMode::Any };
            let wait = Duration::from_millis(timeout_ms as u64) + Duration::from_secs(5);
            let answer = context
                .send_within(
                    pb::JobPollRequest {
                        job_ids: ids,
                        timeout_ms,
                        mode: mode as i32,
                    },
                    wait.max(context.timeout),
                )
                .await?;
            context.show(&answer, |r| {
                let mut table = Table::new(&["JOB", "STATE", "PROGRESS", "SCRIPT", "CREATED", "MESSAGE"]);
                r.completed.iter().for_each(|j| job_row(&mut table, j));
                for id in &r.pending_job_ids {
                    table.row(vec![id.clone(), "pending".into()]);
                }
                table.print("no jobs");
                if r.timed_out {
                    eprintln!("(timed out)");
                }
            });
            Ok(())
        }
        JobCommand::Cancel { id } => {
            let answer = context.send(pb::JobCancelRequest { job_id: id }).await?;
            context.show(&answer, |r| outln!("{} {}", r.job_id, enum_name(JOB_STATE, r.state)));
            Ok(())
        }
        JobCommand::List { state } => {
            let status = match state {
                Some(name) => output::enum_number(JOB_STATE, &name)
                    .ok_or_else(|| super::usage(format!("no job state {name:?}")))?,
                None => 0,
            };
            let answer = context
                .send(pb::JobListRequest {
                    status,
                    ..Default::default()
                })
                .await?;
            context.show(&answer, |r| {
                let mut table = Table::new(&["JOB", "STATE", "PROGRESS", "SCRIPT", "CREATED", "MESSAGE"]);
                r.jobs.iter().for_each(|j| job_row(&mut table, j));
                table.print("no jobs");
            });
            Ok(())
        }
    }
}

/// Resolves at Ctrl-C (SIGINT). The handler is installed now, not when first polled, so a
/// Ctrl-C right after the job id is printed is already ours.
fn interrupted() -> impl std::future::Future<Output = ()> {
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        match signal {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // No handler: wait without one (Ctrl-C then ends the program as usual).
            Err(_) => std::future::pending::<()>().await,
        }
    }
}

/// Follows a job to its end with a progress bar (on a terminal), then prints its logs and
/// duration (stderr) and its result (stdout). Ctrl-C stops waiting, not the job, and says how
/// to follow or stop it.
async fn wait_for(
    context: &Context,
    id: &str,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<(), Failure> {
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(1000);
    if context.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |job: &pb::JobInfo| {
        bar.set_position((job.progress.clamp(0.0, 1.0) * 1000.0) as u64);
        bar.set_message(if job.progress_message.is_empty() {
            enum_name(JOB_STATE, job.state)
        } else {
            job.progress_message.clone()
        });
        std::future::ready(())
    };
    let waited = context.backends.wait_job(id, progress, interrupted).await;
    bar.finish_and_clear();
    let job = match waited? {
        Waited::Finished(job) => *job,
        Waited::Stopped => {
            eprintln!(
                "\nholler: stopped waiting; job {id} is still running.\n  \
                 follow it: holler job wait {id}\n  \
                 stop it:   holler job cancel {id}"
            );
            return Err(Failure::new(130, format!("interrupted while waiting for job {id}")));
        }
    };
    let state = enum_name(JOB_STATE, job.state);
    let took = output::between(&job.started_at, &job.finished_at).unwrap_or_else(|| started.elapsed());
    if context.json {
        let reply = pb::envelope::Payload::JobStatusReply(pb::JobStatusReply {
            job: Some(Box::new(job.clone())),
        });
        let value = holler::backends::payload_to_json(reply);
        outln!("{}", value.get("job").cloned().unwrap_or(value));
    } else {
        output::logs(&job.logs);
        eprintln!("job {id} {state} in {}", output::duration(took));
        if job.state == pb::JobState::Succeeded as i32 {
            outln!("{}", output::proto_value(job.result.clone()));
        }
    }
    if job.state == pb::JobState::Succeeded as i32 {
        return Ok(());
    }
    let error = job.error.clone().unwrap_or_default();
    Err(Failure {
        code: 6,
        message: format!("job {id} ended {state}: {}", error.message),
        traceback: super::traceback(error.details.as_ref()),
    })
}
