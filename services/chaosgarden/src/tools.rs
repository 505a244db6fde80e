//! What Chaosgarden offers agents: its tools, with input schemas derived from the request
//! messages in `schema/` so they never drift.

use hooteproto::Status;
use hooteproto::v1 as pb;

/// (tool name, request message, description)
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "transport_play",
        "TransportPlayRequest",
        "Start playback from the current position. Markers fire as the playhead crosses them.",
    ),
    (
        "transport_stop",
        "TransportStopRequest",
        "Stop playback, keeping the position.",
    ),
    (
        "transport_seek",
        "TransportSeekRequest",
        "Move the playhead to a beat. Markers between the old and new position do not fire.",
    ),
    (
        "transport_status",
        "TransportStatusRequest",
        "Playing or stopped, position (beats, seconds, samples), tempo, meter, sample rate, backend, xruns, loop.",
    ),
    (
        "transport_loop",
        "TransportLoopRequest",
        "Loop a range of beats while playing (enabled = false turns it off). Markers in the range fire once per pass.",
    ),
    (
        "timeline_query",
        "TimelineQueryRequest",
        "Markers, regions and the tempo map in a range of beats (to_beats = 0: to the end), with the transport state.",
    ),
    (
        "timeline_add_marker",
        "TimelineAddMarkerRequest",
        "Add a marker: section_change, beat_marker, cue_point or generate_transition. When the playhead crosses it, Chaosgarden tells Luanette; a generate_transition marker whose metadata names a script_hash runs that script as a job and places the CAS hash it returns at the next section boundary.",
    ),
    (
        "timeline_add_region",
        "TimelineAddRegionRequest",
        "Place a CAS object (a MIDI file or a WAV) at a beat, with a gain in dB. MIDI plays at the timeline's tempo through the SoundFont (and the MIDI output, if any). WAVs at 8-384 kHz, up to 600 s. Decoded audio shares a memory budget: past it this is RESOURCE_EXHAUSTED, and removing regions frees it.",
    ),
    (
        "timeline_remove",
        "TimelineRemoveRequest",
        "Remove a marker or region by id.",
    ),
    (
        "timeline_set_tempo",
        "TimelineSetTempoRequest",
        "Set the tempo (and optionally the meter) from a beat on; tempo_bpm = 0 removes the change at that beat. Playback keeps its beat position.",
    ),
    (
        "timeline_render",
        "TimelineRenderRequest",
        "Render a range of beats to a stereo 32-bit float WAV in the CAS, faster than real time; returns its hash. Up to 600 s; the render's audio counts against the media budget while it runs (RESOURCE_EXHAUSTED past it).",
    ),
];

/// The tools.
pub fn tools() -> Result<Vec<pb::ToolInfo>, Status> {
    TOOLS
        .iter()
        .map(|(name, message, description)| {
            hooteproto::json::tool_info(name, message, description).map_err(|e| Status::internal(e.to_string()))
        })
        .collect()
}
