//! Stored scripts and background jobs, including waiting on one with a progress bar.

use std::time::Duration;

use serde_json::json;

use super::args::{JobCommand, ScriptCommand};
use super::{Context, Failure, parse_json, usage};

pub async fn script(context: &Context, command: ScriptCommand) -> Result<(), Failure> {
    let (tool, arguments) = match command {
        ScriptCommand::Store { file, tags, creator } => {
            let content =
                std::fs::read_to_string(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            (
                "script_store",
                json!({"content": content, "tags": tags, "creator": creator}),
            )
        }
        ScriptCommand::Search { tag, creator } => ("script_search", json!({"tag": tag, "creator": creator})),
        ScriptCommand::Describe { hash } => ("lua_describe", json!({"script_hash": hash})),
    };
    let reply = context.call(tool, arguments).await?;
    context.show(&reply, |r| r["script"]["scriptHash"].as_str().map(str::to_string));
    Ok(())
}

pub async fn job(context: &Context, command: JobCommand) -> Result<(), Failure> {
    match command {
        JobCommand::Run { hash, params, wait } => {
            let mut arguments = json!({"script_hash": hash});
            if let Some(params) = params {
                arguments["params"] = parse_json("--params", &params)?;
            }
            let reply = context.call("job_execute", arguments).await?;
            let id = reply["jobId"].as_str().unwrap_or_default().to_string();
            if wait {
                wait_for(context, &id).await
            } else {
                context.show(&reply, |_| Some(id.clone()));
                Ok(())
            }
        }
        JobCommand::Wait { id } => wait_for(context, &id).await,
        JobCommand::Status { id } => {
            let reply = context.call("job_status", json!({"job_id": id})).await?;
            context.print(&reply);
            Ok(())
        }
        JobCommand::Poll { ids, all, timeout_ms } => {
            let mode = if all { "POLL_MODE_ALL" } else { "POLL_MODE_ANY" };
            let wait = Duration::from_millis(timeout_ms as u64) + Duration::from_secs(5);
            let reply = context
                .backends
                .call_tool(
                    "job_poll",
                    &json!({"job_ids": ids, "timeout_ms": timeout_ms, "mode": mode}),
                    wait.max(context.timeout),
                )
                .await?;
            context.print(&reply);
            Ok(())
        }
        JobCommand::Cancel { id } => {
            let reply = context.call("job_cancel", json!({"job_id": id})).await?;
            context.show(&reply, |r| {
                r["state"]
                    .as_str()
                    .map(|s| s.trim_start_matches("JOB_STATE_").to_lowercase())
            });
            Ok(())
        }
        JobCommand::List { state } => {
            let mut arguments = json!({});
            if let Some(state) = state {
                arguments["status"] = json!(format!("JOB_STATE_{}", state.to_uppercase()));
            }
            let reply = context.call("job_list", arguments).await?;
            context.print(&reply);
            Ok(())
        }
    }
}

/// Follows a job to its end with a progress bar (on a terminal), then prints its record.
async fn wait_for(context: &Context, id: &str) -> Result<(), Failure> {
    let bar = indicatif::ProgressBar::new(1000);
    if context.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let job = loop {
        let reply = context.call("job_status", json!({"job_id": id})).await?;
        let job = reply["job"].clone();
        let state = job["state"].as_str().unwrap_or_default().to_string();
        bar.set_position((job["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
        bar.set_message(job["progressMessage"].as_str().unwrap_or(&state).to_string());
        if matches!(
            state.as_str(),
            "JOB_STATE_SUCCEEDED" | "JOB_STATE_FAILED" | "JOB_STATE_CANCELLED"
        ) {
            break job;
        }
        // A long poll returns as soon as the job ends; progress is refreshed every half second.
        let _ = context
            .backends
            .call_tool(
                "job_poll",
                &json!({"job_ids": [id], "timeout_ms": 500}),
                Duration::from_secs(5),
            )
            .await;
    };
    bar.finish_and_clear();
    let state = job["state"].as_str().unwrap_or_default().to_string();
    context.show(&job, |j| {
        Some(match state.as_str() {
            "JOB_STATE_SUCCEEDED" => serde_json::to_string_pretty(&j["result"]).unwrap_or_default(),
            _ => format!(
                "{}: {}",
                state.trim_start_matches("JOB_STATE_").to_lowercase(),
                j["error"]["message"].as_str().unwrap_or_default()
            ),
        })
    });
    if state == "JOB_STATE_SUCCEEDED" {
        Ok(())
    } else {
        Err(Failure {
            code: 6,
            message: format!(
                "job {id} ended {}",
                state.trim_start_matches("JOB_STATE_").to_lowercase()
            ),
        })
    }
}
