//! `/api/events`: one Server-Sent Events stream per open page.
//!
//! - `job` `{job_id, state}`, `progress` `{job_id, fraction, message}` and `log`
//!   `{job_id, first_line, lines: [{level, message}]}` (a running job's output, lines cut
//!   to 4 KiB) come from Luanette's broadcasts (every front sends them for every job,
//!   embedded or on a worker); `scripts` says the stored scripts changed.
//! - `transport` is Chaosgarden's `transport_status` result. Chaosgarden does not broadcast,
//!   so the hub asks it: every [`PLAYING_EVERY`] while it plays (the page interpolates the
//!   playhead between), every [`STOPPED_EVERY`] otherwise, and not at all while no page is
//!   open — an idle gateway stays idle.
//! - `timeline` is a `timeline_query` result (without the transport), sent when the
//!   regions, markers or tempo map changed: looked at every [`TIMELINE_EVERY`] while a page
//!   is open, so edits by agents, scripts and the CLI appear without a reload.
//! - `resync` tells a page that fell behind (it missed events) to reload its lists.
//!
//! At most [`MAX_STREAMS`] streams are open at once; one more is refused with 503.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use hooteproto::v1 as pb;
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast};

use crate::backends::Backends;

/// How often the transport is asked while it plays: 21–22 updates a second, over the 20 the
/// page needs (asked over HOOT/1, each cost ~0.9 ms of CPU across the gateway and
/// Chaosgarden, mostly threads woken on both sides; read in process, far less).
pub const PLAYING_EVERY: Duration = Duration::from_millis(45);
/// How often while it is stopped (to see play pressed elsewhere: the CLI, an agent).
pub const STOPPED_EVERY: Duration = Duration::from_millis(500);
/// How often the timeline is looked at for edits made elsewhere.
pub const TIMELINE_EVERY: Duration = Duration::from_secs(1);
/// Open event streams at most (each holds a connection and a queue).
pub const MAX_STREAMS: usize = 64;
/// Events queued for a slow page before it is told to resync.
const QUEUE: usize = 256;

/// Reads the transport's state in this process, when the gateway runs beside Chaosgarden
/// (`holler up`): no request, no socket, no thread woken on the other side.
#[derive(Clone)]
pub struct LocalTransport(pub Arc<dyn Fn() -> pb::TransportState + Send + Sync>);

impl std::fmt::Debug for LocalTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalTransport")
    }
}

/// One event: its SSE name and JSON data.
#[derive(Debug, Clone)]
pub struct Published {
    name: &'static str,
    data: Arc<str>,
}

/// The hub every stream subscribes to.
pub struct Events {
    sender: broadcast::Sender<Published>,
    /// Woken when a page subscribes, so the transport watcher starts asking.
    subscribed: Notify,
    /// The transport's last state, sent first to a new stream.
    transport: Mutex<Option<Published>>,
    /// The timeline as last published (to see whether it changed).
    timeline: Mutex<Option<Arc<str>>>,
    streams: Arc<Semaphore>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(QUEUE).0,
            subscribed: Notify::new(),
            transport: Mutex::new(None),
            timeline: Mutex::new(None),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }
}

impl Events {
    /// Sends an event to every open stream (none open: dropped, nobody is looking).
    pub fn publish(&self, name: &'static str, data: &Value) {
        let _ = self.sender.send(Published {
            name,
            data: Arc::from(data.to_string()),
        });
    }

    /// Passes on a Luanette broadcast the page shows.
    pub fn publish_broadcast(&self, event: &pb::broadcast::Event) {
        use pb::broadcast::Event as E;
        match event {
            E::JobStateChanged(change) => {
                let state = pb::JobState::try_from(change.state)
                    .map(|s| s.as_str_name().trim_start_matches("JOB_STATE_").to_ascii_lowercase())
                    .unwrap_or_else(|_| "unspecified".into());
                self.publish("job", &json!({"job_id": change.job_id, "state": state}));
            }
            E::JobProgress(progress) => self.publish(
                "progress",
                &json!({"job_id": progress.job_id, "fraction": progress.fraction, "message": progress.message}),
            ),
            E::JobLog(batch) => {
                let lines: Vec<serde_json::Value> = batch
                    .lines
                    .iter()
                    .map(|line| {
                        let level = pb::LogLevel::try_from(line.level).unwrap_or(pb::LogLevel::Unspecified);
                        json!({"level": level.as_str_name(), "message": line.message})
                    })
                    .collect();
                self.publish(
                    "log",
                    &json!({"job_id": batch.job_id, "first_line": batch.first_line, "lines": lines}),
                );
            }
            E::ScriptInvalidate(_) => self.publish("scripts", &json!({})),
            _ => {}
        }
    }

    /// Asks Chaosgarden for the transport's state while any page is open (or reads it
    /// through `local`, in the same process); runs until dropped.
    pub async fn watch_transport(self: Arc<Self>, backends: Arc<Backends>, local: Option<LocalTransport>) {
        let mut last_timeline = tokio::time::Instant::now();
        loop {
            if self.sender.receiver_count() == 0 {
                self.subscribed.notified().await;
                continue;
            }
            let status = match &local {
                // The tool's own JSON form, as if asked through it.
                Some(read) => hooteproto::json::tool_result(hooteproto::v1::envelope::Payload::TransportStatusReply(
                    pb::TransportStatusReply {
                        state: Some((read.0)()),
                    },
                ))
                .map_err(|e| e.to_string()),
                None => backends
                    .call_tool_structured("transport_status", &json!({}), Duration::from_secs(2))
                    .await
                    .map_err(|e| e.to_string()),
            };
            let playing = match status {
                Ok(reply) => {
                    let playing = reply.pointer("/state/playback").and_then(Value::as_str) == Some("playing");
                    let published = Published {
                        name: "transport",
                        data: Arc::from(reply.to_string()),
                    };
                    let changed = {
                        let mut last = self.transport.lock().unwrap_or_else(|p| p.into_inner());
                        let changed = last.as_ref().is_none_or(|l| l.data != published.data);
                        *last = Some(published.clone());
                        changed
                    };
                    // Stopped and unchanged: nothing to say.
                    if changed || playing {
                        let _ = self.sender.send(published);
                    }
                    playing
                }
                Err(error) => {
                    tracing::debug!(%error, "transport status for the studio");
                    false
                }
            };
            if last_timeline.elapsed() >= TIMELINE_EVERY {
                last_timeline = tokio::time::Instant::now();
                self.check_timeline(&backends).await;
            }
            tokio::time::sleep(if playing { PLAYING_EVERY } else { STOPPED_EVERY }).await;
        }
    }

    /// Publishes `timeline` (a `timeline_query` result without its transport) when the
    /// regions, markers or tempo map changed since the last look: edits by agents, scripts
    /// and the CLI reach open pages.
    async fn check_timeline(&self, backends: &Backends) {
        let mut reply = match backends
            .call_tool_structured("timeline_query", &json!({}), Duration::from_secs(2))
            .await
        {
            Ok(reply) => reply,
            Err(error) => {
                tracing::debug!(%error, "timeline for the studio");
                return;
            }
        };
        if let Some(object) = reply.as_object_mut() {
            object.remove("transport");
        }
        let data: Arc<str> = Arc::from(reply.to_string());
        let mut last = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(&*data) {
            *last = Some(data.clone());
            drop(last);
            let _ = self.sender.send(Published { name: "timeline", data });
        }
    }

    fn subscribe(&self) -> (broadcast::Receiver<Published>, Option<Published>) {
        let receiver = self.sender.subscribe();
        self.subscribed.notify_one();
        let last = self.transport.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (receiver, last)
    }
}

fn sse(published: &Published) -> Event {
    Event::default().event(published.name).data(&*published.data)
}

/// `GET /api/events`.
pub async fn stream(State(studio): State<super::Studio>) -> Response {
    let Ok(permit) = studio.events.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"code": "RESOURCE_EXHAUSTED", "message": format!("{MAX_STREAMS} event streams are open already")})),
        )
            .into_response();
    };
    let (receiver, last) = studio.events.subscribe();
    let first = last.map(|p| sse(&p));
    let stream = futures_util::stream::unfold(
        (receiver, first, permit),
        |(mut receiver, first, permit): (_, Option<Event>, OwnedSemaphorePermit)| async move {
            if let Some(event) = first {
                return Some((Ok::<_, Infallible>(event), (receiver, None, permit)));
            }
            let event = match receiver.recv().await {
                Ok(published) => sse(&published),
                Err(broadcast::error::RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), (receiver, None, permit)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
