//! The content-addressed store: `put` imports straight into a CAS on this host; hash
//! prefixes are resolved here for every command that takes a hash.

use std::path::Path;

use hooteproto::v1 as pb;
use serde_json::json;

use super::args::CasCommand;
use super::output;
use super::{Context, Failure, params};

/// A full hash from a hash or a unique prefix (8+ hex characters), as the CAS knows it.
/// Scripts live in the same store, so script hashes resolve too.
pub async fn resolve(context: &Context, hash: &str) -> Result<String, Failure> {
    if hash.len() == 64 {
        return Ok(hash.to_string());
    }
    let answer = context.send(pb::CasInspectRequest { hash: hash.to_string() }).await?;
    answer
        .reply
        .object
        .map(|o| o.hash)
        .ok_or_else(|| Failure::new(4, format!("no object {hash}")))
}

fn show_stored(context: &Context, hash: &str, size: u64, already: bool, extra: serde_json::Value) {
    if context.json {
        let mut value = json!({"hash": hash, "size": size, "alreadyExisted": already});
        if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
            object.extend(extra);
        }
        outln!("{value}");
    } else {
        outln!("{hash}");
        if already {
            eprintln!("(already stored)");
        }
    }
}

pub async fn run(context: &Context, command: CasCommand) -> Result<(), Failure> {
    match command {
        CasCommand::Put {
            file,
            mime,
            cas_root,
            blobs,
        } => {
            let root = cas_root.unwrap_or_else(|| context.data_dir.join("cas"));
            let (url, cache_dir) = blobs.resolve(&context.data_dir);
            let blobs = cas::BlobConfig::from_env(url, Some(cache_dir), blobs.cache_max);
            let direct = blobs.url.is_some() || root.join("objects").is_dir();
            if direct && file != Path::new("-") {
                // What this process adds to the shared store is as private as what the services write.
                hooteproto::dirs::restrict_new_files();
                // Same host, or object storage this host reaches: import straight into the
                // store, no bytes over ZMQ.
                let cas = cas::Cas::open_with(&root, &blobs).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
                let stored = cas
                    .import_file(&file, &mime)
                    .map_err(|e| Failure::from(anyhow::anyhow!("importing {}: {e}", file.display())))?;
                let hash = stored.info.hash.to_string();
                show_stored(
                    context,
                    &hash,
                    stored.info.size,
                    stored.already_existed,
                    json!({"importedInto": cas.describe()}),
                );
                return Ok(());
            }
            let data = params::read(&file)?;
            let answer = context.send(pb::CasStoreRequest { data, mime_type: mime }).await?;
            let r = answer.reply;
            show_stored(context, &r.hash, r.size, r.already_existed, json!({}));
            Ok(())
        }
        CasCommand::Get { hash, output } => {
            use std::io::Write as _;
            // In ranges, written as they come: an object may be larger than one message.
            const CHUNK: u64 = 4 << 20;
            let mut file = match &output {
                Some(path) if path != Path::new("-") => Some(
                    std::fs::File::create(path)
                        .map_err(|e| Failure::from(anyhow::anyhow!("creating {}: {e}", path.display())))?,
                ),
                // The bytes themselves, even with --json: this is a file, not a reply.
                _ => None,
            };
            let mut offset = 0u64;
            loop {
                let reply = context
                    .send(pb::CasGetRequest {
                        hash: hash.clone(),
                        offset,
                        length: CHUNK,
                    })
                    .await?
                    .reply;
                let size = reply.object.as_ref().map_or(0, |o| o.size);
                match file.as_mut() {
                    Some(file) => file
                        .write_all(&reply.data)
                        .map_err(|e| Failure::from(anyhow::anyhow!("writing: {e}")))?,
                    None => output::write_bytes(&reply.data),
                }
                offset += reply.data.len() as u64;
                if reply.data.is_empty() || offset >= size {
                    break;
                }
            }
            Ok(())
        }
        CasCommand::Inspect { hash } => {
            let answer = context.send(pb::CasInspectRequest { hash }).await?;
            context.show(&answer, |r| {
                if let Some(o) = &r.object {
                    output::fields(&[
                        ("hash", o.hash.clone()),
                        ("size", format!("{} bytes", o.size)),
                        ("type", o.mime_type.clone()),
                        ("created", output::time(&o.created_at)),
                    ]);
                }
            });
            Ok(())
        }
    }
}
