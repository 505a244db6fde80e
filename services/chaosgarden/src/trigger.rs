//! The trigger flow: what happens when the playhead crosses a marker.
//!
//! - Every marker is reported to Luanette as a `TimelineEvent` (Luanette runs the script
//!   its metadata names, if any).
//! - A `generate_transition` marker whose metadata names a script (`script`: a hash, a
//!   script name or name@prefix, resolved by Luanette at each crossing; or `script_hash`)
//!   instead runs that script as a high-priority job with `{current_section, next_section,
//!   beats_available, tempo, position_beats, boundary_beats}` (CAS hashes of the regions
//!   around it), waits for the job off the clock, and places the CAS hash it returns as a
//!   region at the next section boundary — unless the job returns `{region_id = ...}`: then
//!   the script placed its region itself (`garden.add_region`) and nothing more is done.
//! - Late results: if the playhead is already within one beat of the boundary (or past
//!   it), the region goes to the next bar line at least one beat ahead, unless that is
//!   more than `max_late_bars` bars (metadata, default 4) after the boundary; then it is
//!   dropped with a logged reason. A stopped transport always takes it at the boundary.
//! - Luanette being down never touches the clock: all of this runs on async tasks, with
//!   deadlines, and failures are logged.
//!
//! Chaosgarden also registers with Luanette as a worker at start and at every heartbeat,
//! so a restarted Luanette lists it again within one interval.

use std::sync::Arc;
use std::time::Duration;

use hooteproto::client::RequestOptions;
use hooteproto::v1::{self as pb, JobState, PollMode, TimelineEventType};
use hooteproto::{Client, wkt};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::engine::Fired;
use crate::service::Studio;

/// How far ahead of the playhead a late result must land (rendering needs a moment).
const LEAD_BEATS: f64 = 1.0;
/// Default for metadata `max_late_bars`.
const MAX_LATE_BARS: f64 = 4.0;
/// Default for metadata `max_wait_secs`: how long a transition job may take.
const MAX_WAIT_SECS: f64 = 120.0;

fn options(timeout: Duration) -> RequestOptions {
    RequestOptions {
        timeout: Some(timeout),
        ..Default::default()
    }
}

/// Registers with Luanette now and at every heartbeat, until the task is dropped.
pub async fn register_forever(client: Client, registration: pb::WorkerRegistration) {
    let mut registered = false;
    loop {
        let request = pb::RegisterRequest {
            registration: Some(registration.clone()),
        };
        let wait = match client.call_with(request, options(Duration::from_secs(3))).await {
            Ok(reply) => {
                if !registered {
                    tracing::info!(luanette = %client.endpoint(), worker_id = %reply.worker_id, "registered with Luanette");
                }
                registered = true;
                Duration::from_millis(reply.heartbeat_interval_ms.clamp(500, 60_000) as u64)
            }
            Err(error) => {
                if registered {
                    tracing::warn!(luanette = %client.endpoint(), %error, "Luanette is unreachable; retrying");
                } else {
                    tracing::debug!(luanette = %client.endpoint(), %error, "cannot register with Luanette yet");
                }
                registered = false;
                Duration::from_secs(1)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Handles fired markers until the channel closes.
pub async fn run(studio: Arc<Studio>, client: Client, mut fires: tokio::sync::mpsc::Receiver<Fired>) {
    while let Some(fired) = fires.recv().await {
        let (studio, client) = (studio.clone(), client.clone());
        // One span per crossing; requests to Luanette carry it as their traceparent.
        let span = tracing::info_span!(
            "marker.fire",
            marker = %fired.marker.marker_id,
            event_type = fired.marker.event_type,
            position_beats = fired.marker.position_beats,
            late = fired.late,
        );
        tokio::spawn(async move { handle(&studio, &client, fired).await }.instrument(span));
    }
}

fn metadata_of(marker: &pb::TimelineMarker) -> serde_json::Map<String, Value> {
    marker
        .metadata
        .as_ref()
        .and_then(|m| m.to_json().ok())
        .unwrap_or_default()
}

async fn handle(studio: &Arc<Studio>, client: &Client, fired: Fired) {
    let marker = &fired.marker;
    let metadata = metadata_of(marker);
    let script = ["script", "script_hash"]
        .iter()
        .find_map(|key| metadata.get(*key).and_then(Value::as_str))
        .map(str::to_string);
    if marker.event_type == TimelineEventType::GenerateTransition as i32
        && let Some(script) = script
    {
        transition(studio, client, &fired, metadata, script).await;
        return;
    }
    let event = pb::TimelineEventRequest {
        event_type: marker.event_type,
        position_beats: marker.position_beats,
        tempo: fired.tempo,
        metadata: marker.metadata.clone(),
    };
    match client.call_with(event, options(Duration::from_secs(3))).await {
        Ok(reply) => tracing::debug!(marker = %marker.marker_id, job = %reply.job_id, "timeline event sent"),
        Err(error) => tracing::warn!(marker = %marker.marker_id, %error, "timeline event not delivered to Luanette"),
    }
}

/// The region a transition job placed itself, if it returned `{region_id = ...}`.
pub fn placed_region(result: Option<&prost_types::Value>) -> Option<String> {
    match wkt::value_to_json(result?.clone()) {
        Value::Object(fields) => fields.get("region_id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The CAS hash a transition job returned: a string, or a table with `hash`, `cas_hash`,
/// `midi` or `wav`.
pub fn result_hash(result: Option<prost_types::Value>) -> Option<String> {
    match wkt::value_to_json(result?) {
        Value::String(hash) => Some(hash),
        Value::Object(fields) => ["hash", "cas_hash", "midi", "wav"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str).map(str::to_string)),
        _ => None,
    }
}

async fn transition(
    studio: &Arc<Studio>,
    client: &Client,
    fired: &Fired,
    mut metadata: serde_json::Map<String, Value>,
    script: String,
) {
    let marker = &fired.marker;
    let position = marker.position_beats;
    let (boundary, current, next, bar_beats) = {
        let editor = studio.editor.lock().await;
        let timeline = &editor.timeline;
        let boundary = metadata
            .get("boundary_beats")
            .and_then(Value::as_f64)
            .filter(|b| *b > position)
            .unwrap_or_else(|| timeline.next_boundary(position));
        let current = timeline.region_at(position).map(|r| r.cas_hash.clone());
        let next = timeline
            .region_from(boundary)
            .map(|r| r.cas_hash.clone())
            .filter(|h| Some(h) != current.as_ref());
        (boundary, current, next, timeline.map.meter_at(boundary).bar_beats())
    };
    let max_late_bars = metadata
        .get("max_late_bars")
        .and_then(Value::as_f64)
        .unwrap_or(MAX_LATE_BARS);
    let max_wait = metadata
        .get("max_wait_secs")
        .and_then(Value::as_f64)
        .unwrap_or(MAX_WAIT_SECS);
    metadata.remove("script_hash");
    metadata.remove("script");
    metadata.insert("current_section".into(), json!(current));
    metadata.insert("next_section".into(), json!(next));
    metadata.insert("beats_available".into(), json!(boundary - position));
    metadata.insert("tempo".into(), json!(fired.tempo));
    metadata.insert("position_beats".into(), json!(position));
    metadata.insert("boundary_beats".into(), json!(boundary));
    let request = pb::JobExecuteRequest {
        script_hash: script.clone(),
        params: Some(wkt::Struct::from_json(metadata)),
        // `marker:<id>` lets a viewer find the job a marker started (the studio shows it).
        tags: vec![
            "chaosgarden".into(),
            "transition".into(),
            format!("marker:{}", marker.marker_id),
        ],
        // The boundary will not wait: ahead of normal work.
        priority: pb::JobPriority::High as i32,
        required_capabilities: Vec::new(),
    };
    let job_id = match client.call_with(request, options(Duration::from_secs(5))).await {
        Ok(reply) => reply.job_id,
        Err(error) => {
            tracing::warn!(marker = %marker.marker_id, script = %script, %error, "transition job not started");
            return;
        }
    };
    tracing::info!(marker = %marker.marker_id, job = %job_id, boundary, "transition job started");
    let Some(job) = wait_for(client, &job_id, Duration::from_secs_f64(max_wait.clamp(1.0, 3600.0))).await else {
        tracing::warn!(marker = %marker.marker_id, job = %job_id, "transition job did not finish in time; dropped");
        return;
    };
    if job.state != JobState::Succeeded as i32 {
        let why = job.error.map(|e| e.message).unwrap_or_default();
        tracing::warn!(marker = %marker.marker_id, job = %job_id, state = job.state, %why, "transition job failed");
        return;
    }
    if let Some(region) = placed_region(job.result.as_ref()) {
        tracing::info!(marker = %marker.marker_id, job = %job_id, region = %region, "transition placed by its script");
        return;
    }
    let Some(hash) = result_hash(job.result) else {
        tracing::warn!(marker = %marker.marker_id, job = %job_id, "transition job returned no CAS hash (return the hash, or {{hash = ...}})");
        return;
    };
    let (_, now, playing) = studio.engine.position();
    let at = if !playing || now + LEAD_BEATS <= boundary {
        boundary
    } else {
        let at = studio.engine.arrangement().map.next_bar(now + LEAD_BEATS);
        if at - boundary > max_late_bars * bar_beats {
            tracing::warn!(
                marker = %marker.marker_id, job = %job_id, boundary, playhead = now,
                "transition arrived more than {max_late_bars} bars after its boundary; dropped"
            );
            return;
        }
        tracing::info!(marker = %marker.marker_id, job = %job_id, boundary, at, "transition arrived late; placed at the next bar");
        at
    };
    let job_for_region = job_id.clone();
    match studio
        .edit(move |editor| editor.add_region(&hash, at, 0.0, &job_for_region))
        .await
    {
        Ok(region) => tracing::info!(
            marker = %marker.marker_id, job = %job_id, region = %region.region_id, at, "transition placed"
        ),
        Err(status) => {
            tracing::warn!(marker = %marker.marker_id, job = %job_id, %status, "transition result not placed")
        }
    }
}

/// Long-polls a job until it finishes or `max_wait` passes; Luanette restarts are retried.
async fn wait_for(client: &Client, job_id: &str, max_wait: Duration) -> Option<pb::JobInfo> {
    let deadline = tokio::time::Instant::now() + max_wait;
    while tokio::time::Instant::now() < deadline {
        let wait = (deadline - tokio::time::Instant::now()).min(Duration::from_secs(10));
        let request = pb::JobPollRequest {
            job_ids: vec![job_id.to_string()],
            timeout_ms: wait.as_millis() as u32,
            mode: PollMode::Any as i32,
        };
        let options = RequestOptions {
            timeout: Some(wait + Duration::from_secs(5)),
            attempt_timeout: Some(wait + Duration::from_secs(2)),
            ..Default::default()
        };
        match client.call_with(request, options).await {
            Ok(mut reply) if !reply.completed.is_empty() => return Some(reply.completed.remove(0)),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(job = %job_id, %error, "polling the transition job failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    None
}
