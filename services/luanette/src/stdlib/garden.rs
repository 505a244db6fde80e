//! `garden.*`: Chaosgarden's transport and timeline from inside a run (see [`super::peers`]).

use hooteproto::Request as _;
use hooteproto::v1::{self as pb, envelope::Payload};
use mlua::Lua;

use super::peers::{Connections, Options, Peer, json_to_lua, reply_field, reply_to_lua};
use super::{Registrar, fail};
use crate::sandbox::RunHandle;

/// A beat far past any timeline, for queries that want the tempo map and nothing else.
const NOWHERE: f64 = 1.0e12;

/// What one garden function needs.
#[derive(Clone)]
struct Garden {
    connections: Connections,
    run: RunHandle,
}

impl Garden {
    async fn call(&self, lua: &Lua, function: &str, request: Payload) -> mlua::Result<Payload> {
        self.connections
            .call(lua, &self.run, Peer::Chaosgarden, function, request)
            .await
    }

    fn transport_allowed(&self, function: &str) -> mlua::Result<()> {
        if self.connections.peers().allow_transport {
            Ok(())
        } else {
            Err(fail(
                function,
                "moving the transport from Lua is switched off on this Luanette (start it with \
                 --allow-transport-from-lua to allow it)",
            ))
        }
    }
}

fn event_type(function: &str, kind: &str) -> mlua::Result<i32> {
    let full = format!("TIMELINE_EVENT_TYPE_{}", kind.to_ascii_uppercase());
    pb::TimelineEventType::from_str_name(&full)
        .filter(|t| *t != pb::TimelineEventType::Unspecified)
        .map(|t| t as i32)
        .ok_or_else(|| {
            fail(
                function,
                format!("unknown marker kind `{kind}`: section_change, beat_marker, cue_point or generate_transition"),
            )
        })
}

/// Registers an async garden function: `build` turns the Lua arguments into a request, and
/// `field` picks what the function returns from the reply ("" for the whole reply).
macro_rules! garden_fn {
    ($api:expr, $garden:expr, $name:literal, $signature:literal, $doc:literal, $field:literal, $transport:literal,
     |$g:ident, $options:ident : $args:ty| $build:expr) => {{
        let shared = $garden.clone();
        let function = $api.lua().create_async_function(move |lua, $options: $args| {
            let $g = shared.clone();
            async move {
                let function = concat!("garden.", $name);
                if $transport {
                    $g.transport_allowed(function)?;
                }
                let request: Payload = $build;
                let reply = $g.call(&lua, function, request).await?;
                if $field.is_empty() {
                    reply_to_lua(&lua, function, reply)
                } else {
                    reply_field(&lua, function, reply, $field)
                }
            }
        })?;
        $api.function("garden", $name, $signature, $doc, function)?;
    }};
}

pub(super) fn install(api: &mut Registrar<'_>, connections: Connections, run: &RunHandle) -> mlua::Result<()> {
    api.module(
        "garden",
        "Chaosgarden, the transport and timeline, over HOOT/1 (needs luanette --chaosgarden). Every call carries \
         the run's trace and deadline and stops with the run; results are tables in the tool JSON form (the \
         shapes the timeline_* and transport_* tools return). Positions are in beats.",
    );
    let garden = Garden {
        connections,
        run: run.clone(),
    };
    garden_fn!(
        api,
        garden,
        "status",
        "garden.status() -> state",
        "The transport now: playback (\"playing\"/\"stopped\"), position_beats, position_seconds, tempo_bpm, \
         time_signature, loop_range. Example: `if garden.status().playback == \"playing\" then ... end`.",
        "state",
        false,
        |garden, _args: ()| pb::TransportStatusRequest {}.into_payload()
    );
    garden_fn!(
        api,
        garden,
        "timeline",
        "garden.timeline{from_beats = 0, to_beats = 0} -> {markers, regions, tempo_map, transport}",
        "What sounds in a range of beats (to_beats = 0: to the end): markers and regions (region_id, cas_hash, \
         position_beats, duration_beats, kind, source_job_id) by position. Example: `local around = \
         garden.timeline{from_beats = params.position_beats - 16, to_beats = params.boundary_beats + 16}`.",
        "",
        false,
        |garden, options: Option<mlua::Table>| {
            let options = Options::new("garden.timeline", options);
            pb::TimelineQueryRequest {
                from_beats: options.number("from_beats")?.unwrap_or(0.0),
                to_beats: options.number("to_beats")?.unwrap_or(0.0),
            }
            .into_payload()
        }
    );
    garden_fn!(
        api,
        garden,
        "add_region",
        "garden.add_region{hash = h, at_beats = b, gain_db = 0} -> region",
        "Places a CAS object (MIDI or WAV) on the timeline, with this job as its source_job_id; returns the region \
         with its region_id. Example: \
         `garden.add_region{hash = midi, at_beats = params.boundary_beats}`.",
        "region",
        false,
        |garden, options: mlua::Table| {
            let options = Options::new("garden.add_region", Some(options));
            pb::TimelineAddRegionRequest {
                cas_hash: options.required_text("hash")?,
                position_beats: options.required_number("at_beats")?,
                gain_db: options.number("gain_db")?.unwrap_or(0.0),
                // The region remembers which job placed it.
                source_job_id: garden.run.identity().job_id,
            }
            .into_payload()
        }
    );
    garden_fn!(
        api,
        garden,
        "add_marker",
        "garden.add_marker{kind = k, at_beats = b, metadata = {...}} -> marker",
        "Adds a marker: kind is section_change, beat_marker, cue_point or generate_transition; metadata.script \
         names the script its crossing runs. Example: `garden.add_marker{kind = \"cue_point\", at_beats = 32}`.",
        "marker",
        false,
        |garden, options: mlua::Table| {
            let run = garden.run.clone();
            let options = Options::new("garden.add_marker", Some(options));
            pb::TimelineAddMarkerRequest {
                event_type: event_type("garden.add_marker", &options.required_text("kind")?)?,
                position_beats: options.required_number("at_beats")?,
                metadata: options.object("metadata", &run)?,
            }
            .into_payload()
        }
    );
    garden_fn!(
        api,
        garden,
        "remove",
        "garden.remove(id) -> id",
        "Removes a marker or region by id. Example: `garden.remove(old.region_id)`.",
        "id",
        false,
        |garden, id: String| pb::TimelineRemoveRequest { id }.into_payload()
    );
    garden_fn!(
        api,
        garden,
        "move",
        "garden.move(id, at_beats) -> marker or region",
        "Moves a marker or region to another beat. Example: `garden.move(region.region_id, 64)`.",
        "",
        false,
        |garden, args: (String, f64)| {
            let (id, position_beats) = args;
            pb::TimelineMoveRequest { id, position_beats }.into_payload()
        }
    );
    let tempo = {
        let garden = garden.clone();
        api.lua().create_async_function(move |lua, ()| {
            let garden = garden.clone();
            async move {
                let function = "garden.tempo";
                let request = pb::TimelineQueryRequest {
                    from_beats: NOWHERE,
                    to_beats: NOWHERE + 1.0,
                }
                .into_payload();
                let reply = garden.call(&lua, function, request).await?;
                let json = hooteproto::json::tool_result(reply).map_err(|e| fail(function, e))?;
                let transport = json.get("transport").cloned().unwrap_or_default();
                let tempo = serde_json::json!({
                    "bpm": transport.get("tempo_bpm"),
                    "time_signature": transport.get("time_signature"),
                    "map": json.get("tempo_map"),
                });
                json_to_lua(&lua, function, tempo)
            }
        })?
    };
    api.function(
        "garden",
        "tempo",
        "garden.tempo() -> {bpm, time_signature, map}",
        "The tempo at the playhead and the whole tempo map ({position_beats, tempo_bpm} by position). Example: \
         `local seconds_per_beat = 60 / garden.tempo().bpm`.",
        tempo,
    )?;
    garden_fn!(
        api,
        garden,
        "play",
        "garden.play() -> state",
        "Starts the transport (only when the operator allows it: --allow-transport-from-lua). Example: \
         `garden.play()`.",
        "state",
        true,
        |garden, _args: ()| pb::TransportPlayRequest {}.into_payload()
    );
    garden_fn!(
        api,
        garden,
        "stop",
        "garden.stop() -> state",
        "Stops the transport (only with --allow-transport-from-lua). Example: `garden.stop()`.",
        "state",
        true,
        |garden, _args: ()| pb::TransportStopRequest {}.into_payload()
    );
    garden_fn!(
        api,
        garden,
        "seek",
        "garden.seek(beats) -> state",
        "Moves the playhead (only with --allow-transport-from-lua). Example: `garden.seek(0)`.",
        "state",
        true,
        |garden, position_beats: f64| pb::TransportSeekRequest { position_beats }.into_payload()
    );
    Ok(())
}
