//! `holler artifact` and `holler graph`: artifacts, their lineage and the GraphQL view.

use hooteproto::v1 as pb;

use super::args::{ArtifactCommand, GraphCommand};
use super::output::{self, Table, short};
use super::{Context, Failure, params, parse_json, usage};

fn artifact_row(table: &mut Table, a: &pb::Artifact) {
    table.row(vec![
        a.artifact_id.clone(),
        a.name.clone(),
        short(&a.cas_hash),
        a.tags.join(","),
        output::time(&a.created_at),
    ]);
}

fn artifact_fields(a: &pb::Artifact) {
    output::fields(&[
        ("id", a.artifact_id.clone()),
        ("name", a.name.clone()),
        ("hash", a.cas_hash.clone()),
        ("tags", a.tags.join(", ")),
        ("creator", a.creator.clone()),
        ("parents", a.parent_ids.join(", ")),
        ("created", output::time(&a.created_at)),
    ]);
}

pub(super) async fn artifact(context: &Context, command: ArtifactCommand) -> Result<(), Failure> {
    match command {
        ArtifactCommand::Create {
            hash,
            name,
            tags,
            parents,
        } => {
            let cas_hash = super::cas::resolve(context, &hash).await?;
            let answer = context
                .send(pb::ArtifactCreateRequest {
                    cas_hash,
                    name,
                    tags,
                    creator: "holler".into(),
                    metadata: None,
                    parent_ids: parents,
                })
                .await?;
            context.show(&answer, |r| {
                if let Some(a) = &r.artifact {
                    artifact_fields(a)
                }
            });
        }
        ArtifactCommand::Get { id } => {
            let answer = context.send(pb::ArtifactGetRequest { artifact_id: id }).await?;
            context.show(&answer, |r| {
                if let Some(a) = &r.artifact {
                    artifact_fields(a)
                }
            });
        }
        ArtifactCommand::List { tag, creator, hash } => {
            let answer = context
                .send(pb::ArtifactListRequest {
                    tag,
                    creator,
                    cas_hash: hash,
                    ..Default::default()
                })
                .await?;
            context.show(&answer, |r| {
                let mut table = Table::new(&["ID", "NAME", "HASH", "TAGS", "CREATED"]);
                r.artifacts.iter().for_each(|a| artifact_row(&mut table, a));
                table.print("no artifacts");
                if !r.next_page_token.is_empty() {
                    eprintln!("(more: --json shows next_page_token)");
                }
            });
        }
    }
    Ok(())
}

pub(super) async fn graph(context: &Context, command: GraphCommand) -> Result<(), Failure> {
    match command {
        GraphCommand::Query { query } => {
            let query = if query == "-" {
                params::read_text(std::path::Path::new("-"))?
            } else {
                query
            };
            let answer = context
                .send(pb::GraphQueryRequest {
                    query,
                    ..Default::default()
                })
                .await?;
            context.show(&answer, |r| {
                for error in &r.errors {
                    eprintln!("holler: graph error at {}: {}", error.path.join("."), error.message);
                }
                outln!("{}", output::proto_value(r.data.clone()));
            });
            if !answer.reply.errors.is_empty() && answer.reply.data.is_none() {
                return Err(Failure::new(3, "the query failed"));
            }
        }
        GraphCommand::Bind { identity, hints } => {
            let hints = parse_json("the hints", &hints)?;
            let bytes = hooteproto::json::json_to_bytes("hooteproto.v1.DeviceHints", &hints.to_string())
                .map_err(|e| usage(format!("the hints: {e}")))?;
            let hints = <pb::DeviceHints as prost::Message>::decode(bytes.as_slice())
                .map_err(|e| usage(format!("the hints: {e}")))?;
            let answer = context
                .send(pb::GraphBindRequest {
                    identity,
                    hints: Some(hints),
                })
                .await?;
            context.show(&answer, |r| {
                if let Some(b) = &r.binding {
                    let hints = b.hints.clone().unwrap_or_default();
                    output::fields(&[
                        ("identity", b.identity.clone()),
                        ("midi ports", hints.midi_port_patterns.join(", ")),
                        ("usb ids", hints.usb_ids.join(", ")),
                        ("audio devices", hints.audio_device_names.join(", ")),
                        ("updated", output::time(&b.updated_at)),
                    ]);
                }
            });
        }
    }
    Ok(())
}
