//! `holler mcp`: MCP over stdin/stdout, the transport desktop hosts use when they launch a
//! server as a command. The same [`Gateway`] as `holler serve`, one session per process: tools
//! are discovered from the backends, and Luanette's broadcasts reach the session as they do
//! over HTTP. stdout carries only MCP messages; logs go to stderr.

use std::sync::Arc;

use rmcp::ServiceExt as _;

use crate::backends::Backends;
use crate::mcp::{Gateway, Sessions};

/// Serves one MCP session on stdin/stdout until the host closes stdin or `shutdown` fires.
pub async fn run(
    backends: Arc<Backends>,
    broadcasts: Option<String>,
    key: Option<hooteproto::Key>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let sessions = Arc::new(Sessions::default());
    let gateway = Gateway::new(backends.clone(), sessions.clone());
    let mut tasks = vec![tokio::spawn(Gateway::watch_backends(
        backends,
        sessions.clone(),
        crate::serve::WATCH_EVERY,
    ))];
    if let Some(endpoint) = &broadcasts {
        let subscriber = hooteproto::broadcast::Subscriber::connect(endpoint, &[""], key)?;
        tasks.push(tokio::spawn(Gateway::forward_broadcasts(subscriber, sessions, None)));
    }
    let outcome = async {
        let running = gateway
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))?;
        let cancel = running.cancellation_token();
        tokio::select! {
            quit = running.waiting() => {
                tracing::info!(reason = ?quit, "the MCP host closed the session");
            }
            () = shutdown => cancel.cancel(),
        }
        anyhow::Ok(())
    }
    .await;
    for task in tasks {
        task.abort();
    }
    outcome
}
