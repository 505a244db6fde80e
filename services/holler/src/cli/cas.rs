//! The content-addressed store: `put` imports straight into a CAS on this host.

use std::io::Write as _;

use serde_json::json;

use super::args::CasCommand;
use super::{Context, Failure, usage};

pub async fn run(context: &Context, command: CasCommand) -> Result<(), Failure> {
    match command {
        CasCommand::Put { file, mime, cas_root } => {
            let root = cas_root.unwrap_or_else(|| context.data_dir.join("cas"));
            if root.join("objects").is_dir() {
                // What this process adds to the shared store is as private as what the services write.
                hooteproto::dirs::restrict_new_files();
                // Same host: import straight into the shared store, no bytes over ZMQ.
                let cas = cas::Cas::open(&root).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
                let stored = cas
                    .import_file(&file, &mime)
                    .map_err(|e| Failure::from(anyhow::anyhow!("importing {}: {e}", file.display())))?;
                let reply = json!({"hash": stored.info.hash.to_string(), "size": stored.info.size, "already_existed": stored.already_existed, "imported_into": root});
                context.show(&reply, |r| r["hash"].as_str().map(str::to_string));
                return Ok(());
            }
            let data = std::fs::read(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(data);
            let reply = context
                .call("cas_store", json!({"data": encoded, "mime_type": mime}))
                .await?;
            context.show(&reply, |r| r["hash"].as_str().map(str::to_string));
            Ok(())
        }
        CasCommand::Get { hash, output } => {
            let reply = context.call("cas_get", json!({"hash": hash})).await?;
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD
                .decode(reply["data"].as_str().unwrap_or_default())
                .map_err(|e| Failure::from(anyhow::anyhow!("the reply's data is not base64: {e}")))?;
            match output {
                Some(path) => std::fs::write(&path, &data)
                    .map_err(|e| Failure::from(anyhow::anyhow!("writing {}: {e}", path.display())))?,
                None => std::io::stdout()
                    .write_all(&data)
                    .map_err(|e| Failure::from(anyhow::anyhow!("writing to stdout: {e}")))?,
            }
            Ok(())
        }
        CasCommand::Inspect { hash } => {
            let reply = context.call("cas_inspect", json!({"hash": hash})).await?;
            context.print(&reply);
            Ok(())
        }
    }
}
