//! `holler timeline`: Chaosgarden's markers, regions, tempo and loop.

use hooteproto::v1 as pb;
use serde_json::Value;

use super::args::TimelineCommand;
use super::calls::transport;
use super::output::{self, Table, enum_name, number, short};
use super::{Context, Failure, parse_json, usage};

fn print_timeline(reply: &pb::TimelineQueryReply) {
    outln!("{}", transport(reply.transport.as_ref()));
    let mut tempo = Table::new(&["AT BEAT", "BPM", "METER"]);
    for t in &reply.tempo_map {
        let meter = t
            .time_signature
            .as_ref()
            .map(|s| format!("{}/{}", s.numerator, s.denominator))
            .unwrap_or_else(|| "-".into());
        tempo.row(vec![number(t.position_beats), number(t.tempo_bpm), meter]);
    }
    outln!();
    tempo.print("no tempo changes");
    let mut markers = Table::new(&["MARKER", "KIND", "AT BEAT", "METADATA"]);
    for m in &reply.markers {
        let metadata = m
            .metadata
            .as_ref()
            .and_then(|s| s.to_json().ok())
            .filter(|m| !m.is_empty())
            .map(|m| output::integral(Value::Object(m)).to_string())
            .unwrap_or_default();
        markers.row(vec![
            m.marker_id.clone(),
            enum_name("hooteproto.v1.TimelineEventType", m.event_type),
            number(m.position_beats),
            metadata,
        ]);
    }
    outln!();
    markers.print("no markers");
    let mut regions = Table::new(&["REGION", "KIND", "AT BEAT", "BEATS", "GAIN DB", "HASH", "FROM JOB"]);
    for r in &reply.regions {
        regions.row(vec![
            r.region_id.clone(),
            enum_name("hooteproto.v1.RegionKind", r.kind),
            number(r.position_beats),
            number(r.duration_beats),
            number(r.gain_db),
            short(&r.cas_hash),
            if r.source_job_id.is_empty() {
                "-".into()
            } else {
                r.source_job_id.clone()
            },
        ]);
    }
    outln!();
    regions.print("no regions");
}

pub(super) async fn timeline(context: &Context, command: TimelineCommand) -> Result<(), Failure> {
    match command {
        TimelineCommand::Query { from, to } => {
            let answer = context
                .send(pb::TimelineQueryRequest {
                    from_beats: from,
                    to_beats: to,
                })
                .await?;
            context.show(&answer, print_timeline);
        }
        TimelineCommand::Marker { kind, beats, metadata } => {
            let metadata = match metadata {
                Some(m) => match parse_json("--metadata", &m)? {
                    Value::Object(map) => Some(hooteproto::wkt::Struct::from_json(map)),
                    other => return Err(usage(format!("--metadata must be a JSON object, not {other}"))),
                },
                None => None,
            };
            let event_type = output::enum_number("hooteproto.v1.TimelineEventType", &kind)
                .ok_or_else(|| usage(format!("no marker kind {kind:?}")))?;
            let answer = context
                .send(pb::TimelineAddMarkerRequest {
                    event_type,
                    position_beats: beats,
                    metadata,
                })
                .await?;
            context.show(&answer, |r| {
                if let Some(m) = &r.marker {
                    outln!(
                        "{} ({} at beat {})",
                        m.marker_id,
                        enum_name("hooteproto.v1.TimelineEventType", m.event_type),
                        number(m.position_beats)
                    );
                }
            });
        }
        TimelineCommand::Region {
            hash,
            beats,
            gain_db,
            allow_duplicate,
        } => {
            let cas_hash = super::cas::resolve(context, &hash).await?;
            if !allow_duplicate {
                let existing = context
                    .send(pb::TimelineQueryRequest::default())
                    .await?
                    .reply
                    .regions
                    .into_iter()
                    .find(|r| r.cas_hash == cas_hash && r.position_beats == beats);
                if let Some(region) = existing {
                    return Err(Failure::new(
                        3,
                        format!(
                            "region {} already places {} at beat {}; pass --allow-duplicate to add another",
                            region.region_id,
                            short(&cas_hash),
                            number(beats)
                        ),
                    ));
                }
            }
            let answer = context
                .send(pb::TimelineAddRegionRequest {
                    cas_hash,
                    position_beats: beats,
                    gain_db,
                    ..Default::default()
                })
                .await?;
            context.show(&answer, |r| {
                if let Some(r) = &r.region {
                    outln!(
                        "{} ({} at beat {}, {} beats)",
                        r.region_id,
                        enum_name("hooteproto.v1.RegionKind", r.kind),
                        number(r.position_beats),
                        number(r.duration_beats)
                    );
                }
            });
        }
        TimelineCommand::Remove { id } => {
            let answer = context.send(pb::TimelineRemoveRequest { id }).await?;
            context.show(&answer, |r| outln!("removed {}", r.id));
        }
        TimelineCommand::Tempo { bpm, at } => {
            let answer = context
                .send(pb::TimelineSetTempoRequest {
                    change: Some(pb::TempoChange {
                        position_beats: at,
                        tempo_bpm: bpm,
                        time_signature: None,
                    }),
                })
                .await?;
            context.show(&answer, |r| {
                let mut table = Table::new(&["AT BEAT", "BPM"]);
                for t in &r.tempo_map {
                    table.row(vec![number(t.position_beats), number(t.tempo_bpm)]);
                }
                table.print("no tempo changes");
            });
        }
        TimelineCommand::Render { from, to } => {
            let answer = context
                .send(pb::TimelineRenderRequest {
                    from_beats: from,
                    to_beats: to,
                    sample_rate: 0,
                })
                .await?;
            context.show(&answer, |r| {
                outln!("{}", r.cas_hash);
                eprintln!("{} frames, {} Hz, {} channels", r.frames, r.sample_rate, r.channels);
            });
        }
    }
    Ok(())
}
