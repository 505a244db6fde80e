//! One `LISTEN` connection per process for every channel its parts follow.
//!
//! PostgreSQL wakes every listening connection of a database at each notifying commit,
//! whatever channels it listens on, and a job makes three such commits (queued, claimed,
//! done). So each extra listener costs the server a wake-up per commit: a front that
//! follows both the job queue and the shared script index, with local workers too, listens
//! once and hands each part what it heard.

use std::sync::Arc;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Notifications a part may fall behind by before it is told it missed some.
const BACKLOG: usize = 4096;

/// What a part hears.
#[derive(Debug, Clone)]
pub enum Heard {
    Notification {
        channel: Arc<str>,
        payload: String,
    },
    /// The connection dropped (it is being re-established) or this part fell behind:
    /// notifications may have been missed, so look at the tables again.
    Missed,
}

/// The process's listener; cloned to each part. It stops when the last clone is dropped.
#[derive(Clone)]
pub struct Notifications {
    heard: broadcast::Sender<Heard>,
    _stop: Arc<DropGuard>,
}

/// What one part receives.
pub struct Subscription(broadcast::Receiver<Heard>);

impl Notifications {
    /// Listens on `channels` (before returning, so nothing committed afterwards is missed).
    pub async fn start(pool: &PgPool, channels: &[&str]) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen_all(channels.iter().copied()).await?;
        let (heard, _) = broadcast::channel(BACKLOG);
        let stop = CancellationToken::new();
        let sender = heard.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            // Channel names are few: one shared copy each.
            let mut names: Vec<Arc<str>> = Vec::new();
            loop {
                let next = tokio::select! {
                    () = stopped.cancelled() => return,
                    next = listener.recv() => next,
                };
                match next {
                    Ok(notification) => {
                        let channel = match names.iter().find(|name| ***name == *notification.channel()) {
                            Some(name) => name.clone(),
                            None => {
                                let name: Arc<str> = notification.channel().into();
                                names.push(name.clone());
                                name
                            }
                        };
                        let _ = sender.send(Heard::Notification {
                            channel,
                            payload: notification.payload().to_string(),
                        });
                    }
                    Err(error) => {
                        // The next recv reconnects and listens again.
                        tracing::warn!(%error, "the notification connection dropped; reconnecting");
                        let _ = sender.send(Heard::Missed);
                        tokio::select! {
                            () = stopped.cancelled() => return,
                            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        }
                    }
                }
            }
        });
        Ok(Self {
            heard,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// Everything heard from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription(self.heard.subscribe())
    }
}

impl Subscription {
    /// The next thing heard; `Missed` also when this part fell more than [`BACKLOG`] behind.
    /// Never returns while the listener lives and nothing is heard.
    pub async fn recv(&mut self) -> Heard {
        match self.0.recv().await {
            Ok(heard) => heard,
            Err(broadcast::error::RecvError::Lagged(_)) => Heard::Missed,
            // The listener stopped with its last owner: nothing more will come.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
