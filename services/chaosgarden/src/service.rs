//! The HOOT/1 handler (the tools through the schema's `ChaosgardenTools` trait, one method
//! per tool request) and the [`Studio`] it edits: the timeline (behind one lock, so edits
//! are ordered) and the engine that plays it. Every edit re-arranges the timeline off the
//! async threads (MIDI is rendered there) and hands the result to the real-time side.

use std::sync::Arc;

use hooteproto::server::Lifecycle;
use hooteproto::tools::{ChaosgardenTools, Dispatch};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{self as pb};
use hooteproto::{Handler, RequestContext, Status};

use crate::engine::Engine;
use crate::engine::playhead::Command;
use crate::time::MAX_BEATS;
use crate::timeline::{Editor, cas_status};
use crate::{media, render};

/// The timeline and the engine playing it.
pub struct Studio {
    /// The engine.
    pub engine: Engine,
    /// The timeline and its media.
    pub editor: tokio::sync::Mutex<Editor>,
}

impl Studio {
    /// Applies an edit, then installs the re-arranged timeline (in edit order) and waits
    /// until the real-time side plays it.
    pub async fn edit<T: Send + 'static>(
        self: &Arc<Self>,
        edit: impl FnOnce(&mut Editor) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let studio = self.clone();
        let (value, sent, freed) = tokio::task::spawn_blocking(move || {
            let mut editor = studio.editor.blocking_lock();
            let value = edit(&mut editor);
            let freed = editor.take_freed();
            let value = match value {
                Ok(value) => value,
                Err(status) => {
                    drop(editor);
                    if freed {
                        media::return_freed_memory();
                    }
                    return Err(status);
                }
            };
            let arrangement = editor.arrange(studio.engine.next_version(), studio.engine.sample_rate());
            let freed = freed | editor.take_freed();
            let sent = studio.engine.adopt(arrangement)?;
            Ok::<_, Status>((value, sent, freed))
        })
        .await
        .map_err(|e| Status::internal(format!("timeline edit failed: {e}")))??;
        // Once applied, the real-time side has let go of the previous arrangement and the
        // engine has freed it: that is when a removed region's audio is really gone.
        self.engine.applied(sent).await;
        if freed {
            let _ = tokio::task::spawn_blocking(media::return_freed_memory).await;
        }
        Ok(value)
    }

    /// Re-arranges and installs the timeline as it is (after start).
    pub async fn arrange(self: &Arc<Self>) -> Result<(), Status> {
        self.edit(|_| Ok(())).await
    }
}

/// Everything a request may touch.
pub struct Service {
    pub(crate) studio: Arc<Studio>,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

fn check_seek(beats: f64) -> Result<(), Status> {
    if beats.is_finite() && (0.0..=MAX_BEATS).contains(&beats) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "position_beats must be between 0 and {MAX_BEATS}, not {beats}"
        )))
    }
}

impl Handler for Service {
    async fn handle(&self, context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        let payload = match hooteproto::tools::dispatch_chaosgarden(self, &context, payload).await {
            Dispatch::Answered(reply) => return reply,
            Dispatch::Other(payload) => payload,
        };
        match payload {
            Payload::Ping(_) => Ok(self.lifecycle.ping_reply()),
            Payload::Shutdown(request) => Ok(self.lifecycle.shutdown_reply(&request.reason)),
            Payload::ListTools(_) => Ok(Payload::ListToolsReply(hooteproto::tools::list(
                hooteproto::tools::Service::Chaosgarden,
            )?)),
            other => Err(Status::unimplemented(format!(
                "chaosgarden does not serve `{}`",
                other.name()
            ))),
        }
    }
}

impl ChaosgardenTools for Service {
    async fn transport_play(
        &self,
        _context: &RequestContext,
        _request: pb::TransportPlayRequest,
    ) -> Result<pb::TransportPlayReply, Status> {
        let engine = &self.studio.engine;
        engine.command(Command::Play).await?;
        Ok(pb::TransportPlayReply {
            state: Some(engine.state()),
        })
    }

    async fn transport_stop(
        &self,
        _context: &RequestContext,
        _request: pb::TransportStopRequest,
    ) -> Result<pb::TransportStopReply, Status> {
        let engine = &self.studio.engine;
        engine.command(Command::Stop).await?;
        Ok(pb::TransportStopReply {
            state: Some(engine.state()),
        })
    }

    async fn transport_seek(
        &self,
        _context: &RequestContext,
        request: pb::TransportSeekRequest,
    ) -> Result<pb::TransportSeekReply, Status> {
        let engine = &self.studio.engine;
        check_seek(request.position_beats)?;
        engine.command(Command::Seek(request.position_beats)).await?;
        Ok(pb::TransportSeekReply {
            state: Some(engine.state()),
        })
    }

    async fn transport_status(
        &self,
        _context: &RequestContext,
        _request: pb::TransportStatusRequest,
    ) -> Result<pb::TransportStatusReply, Status> {
        Ok(pb::TransportStatusReply {
            state: Some(self.studio.engine.state()),
        })
    }

    async fn transport_loop(
        &self,
        _context: &RequestContext,
        request: pb::TransportLoopRequest,
    ) -> Result<pb::TransportLoopReply, Status> {
        self.studio
            .edit(move |editor| editor.set_loop(request.loop_range))
            .await?;
        Ok(pb::TransportLoopReply {
            state: Some(self.studio.engine.state()),
        })
    }

    async fn timeline_query(
        &self,
        _context: &RequestContext,
        request: pb::TimelineQueryRequest,
    ) -> Result<pb::TimelineQueryReply, Status> {
        if !request.from_beats.is_finite() || !request.to_beats.is_finite() {
            return Err(Status::invalid_argument("from_beats and to_beats must be numbers"));
        }
        let mut reply = self
            .studio
            .editor
            .lock()
            .await
            .timeline
            .to_proto(request.from_beats, request.to_beats);
        reply.transport = Some(self.studio.engine.state());
        Ok(reply)
    }

    async fn timeline_add_marker(
        &self,
        _context: &RequestContext,
        request: pb::TimelineAddMarkerRequest,
    ) -> Result<pb::TimelineAddMarkerReply, Status> {
        let marker = self.studio.edit(move |editor| editor.add_marker(request)).await?;
        Ok(pb::TimelineAddMarkerReply { marker: Some(marker) })
    }

    async fn timeline_add_region(
        &self,
        _context: &RequestContext,
        request: pb::TimelineAddRegionRequest,
    ) -> Result<pb::TimelineAddRegionReply, Status> {
        if request.source_job_id.len() > 64 {
            return Err(Status::invalid_argument("source_job_id must be at most 64 bytes"));
        }
        let region = self
            .studio
            .edit(move |editor| {
                editor.add_region(
                    &request.cas_hash,
                    request.position_beats,
                    request.gain_db,
                    &request.source_job_id,
                )
            })
            .await?;
        Ok(pb::TimelineAddRegionReply { region: Some(region) })
    }

    async fn timeline_remove(
        &self,
        _context: &RequestContext,
        request: pb::TimelineRemoveRequest,
    ) -> Result<pb::TimelineRemoveReply, Status> {
        let id = request.id.clone();
        self.studio.edit(move |editor| editor.remove(&request.id)).await?;
        Ok(pb::TimelineRemoveReply { id })
    }

    async fn timeline_move(
        &self,
        _context: &RequestContext,
        request: pb::TimelineMoveRequest,
    ) -> Result<pb::TimelineMoveReply, Status> {
        self.studio
            .edit(move |editor| editor.move_to(&request.id, request.position_beats))
            .await
    }

    async fn timeline_set_tempo(
        &self,
        _context: &RequestContext,
        request: pb::TimelineSetTempoRequest,
    ) -> Result<pb::TimelineSetTempoReply, Status> {
        let change = request
            .change
            .ok_or_else(|| Status::invalid_argument("change is required"))?;
        let map = self
            .studio
            .edit(move |editor| {
                editor.set_tempo(change)?;
                Ok(editor.timeline.map.to_proto())
            })
            .await?;
        Ok(pb::TimelineSetTempoReply { tempo_map: map })
    }

    async fn timeline_render(
        &self,
        _context: &RequestContext,
        request: pb::TimelineRenderRequest,
    ) -> Result<pb::TimelineRenderReply, Status> {
        self.render(request).await
    }
}

impl Service {
    async fn render(&self, request: pb::TimelineRenderRequest) -> Result<pb::TimelineRenderReply, Status> {
        let studio = self.studio.clone();
        let sample_rate = match request.sample_rate {
            0 => studio.engine.sample_rate(),
            rate @ 8_000..=192_000 => rate,
            rate => {
                return Err(Status::invalid_argument(format!(
                    "sample_rate must be between 8000 and 192000 Hz, not {rate}"
                )));
            }
        };
        tokio::task::spawn_blocking(move || {
            // The reservation counts this render's audio against the media budget until the
            // WAV is stored and dropped.
            let (arrangement, reservation, cas) = {
                let mut editor = studio.editor.blocking_lock();
                let (arrangement, reservation) =
                    editor.arrange_for_render(sample_rate, request.from_beats, request.to_beats)?;
                (arrangement, reservation, editor.cas().clone())
            };
            let rendered = render::render(&arrangement, request.from_beats, request.to_beats)?;
            drop(arrangement);
            let stored = cas.store(&rendered.wav, "audio/wav").map_err(cas_status)?;
            let (frames, start_frame) = (rendered.frames, rendered.start_frame);
            drop(rendered);
            drop(reservation);
            media::return_freed_memory();
            Ok(pb::TimelineRenderReply {
                cas_hash: stored.info.hash.to_string(),
                frames,
                sample_rate,
                channels: 2,
                start_frame,
            })
        })
        .await
        .map_err(|e| Status::internal(format!("render failed: {e}")))?
    }
}
