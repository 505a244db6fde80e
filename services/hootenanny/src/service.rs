//! The HOOT/1 handler: the tools through the schema's `HootenannyTools` trait (one method
//! per tool request), with CAS and sled work off the async threads (both fsync).

use std::sync::Arc;
use std::time::Instant;

use hooteproto::server::Lifecycle;
use hooteproto::tools::{Dispatch, HootenannyTools};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{self as pb, ErrorCode};
use hooteproto::{Handler, RequestContext, Status};

use crate::graph::{self, GraphLimits, GraphSchema};
use crate::store::Store;
use crate::{objects, tools};

/// Everything a request may touch.
pub struct Service {
    pub(crate) cas: cas::Cas,
    pub(crate) store: Store,
    pub(crate) schema: GraphSchema,
    pub(crate) graph_limits: GraphLimits,
    /// One permit per graph query allowed to run at once.
    pub(crate) graph_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// Largest reply payload we build (kept under the max message size).
    pub(crate) max_reply_bytes: u64,
}

/// Runs blocking CAS work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, cas::CasError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("CAS task failed: {e}")))?
        .map_err(objects::status)
}

fn object(info: cas::ObjectInfo) -> pb::CasObject {
    pb::CasObject {
        hash: info.hash.to_string(),
        size: info.size,
        mime_type: info.mime_type,
        created_at: Some(info.created_at.into()),
    }
}

impl Handler for Service {
    async fn handle(&self, context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        let payload = match hooteproto::tools::dispatch_hootenanny(self, &context, payload).await {
            Dispatch::Answered(reply) => return reply,
            Dispatch::Other(payload) => payload,
        };
        match payload {
            Payload::Ping(_) => Ok(self.lifecycle.ping_reply()),
            Payload::Shutdown(request) => Ok(self.lifecycle.shutdown_reply(&request.reason)),
            Payload::ListTools(_) => Ok(Payload::ListToolsReply(hooteproto::tools::list(
                hooteproto::tools::Service::Hootenanny,
            )?)),
            Payload::ListResources(_) => Ok(Payload::ListResourcesReply(tools::resources())),
            Payload::ReadResource(request) => {
                tools::read_resource(&request.uri, &self.schema).map(Payload::ReadResourceReply)
            }
            other => Err(Status::unimplemented(format!(
                "hootenanny does not serve `{}`",
                other.name()
            ))),
        }
    }
}

impl HootenannyTools for Service {
    async fn cas_store(
        &self,
        _context: &RequestContext,
        request: pb::CasStoreRequest,
    ) -> Result<pb::CasStoreReply, Status> {
        objects::check_mime(&request.mime_type)?;
        let cas = self.cas.clone();
        // Content already stored is answered from its metadata, which the store reads with a
        // bound (another process may have left any sidecar there).
        let stored = blocking(move || cas.store(&request.data, &request.mime_type)).await?;
        Ok(pb::CasStoreReply {
            hash: stored.info.hash.to_string(),
            size: stored.info.size,
            already_existed: stored.already_existed,
        })
    }

    async fn cas_inspect(
        &self,
        _context: &RequestContext,
        request: pb::CasInspectRequest,
    ) -> Result<pb::CasInspectReply, Status> {
        let cas = self.cas.clone();
        let info = blocking(move || {
            cas.resolve(&request.hash)
                .and_then(|hash| objects::inspect(&cas, &hash))
        })
        .await?;
        Ok(pb::CasInspectReply {
            object: Some(object(info)),
        })
    }

    async fn artifact_create(
        &self,
        _context: &RequestContext,
        request: pb::ArtifactCreateRequest,
    ) -> Result<pb::ArtifactCreateReply, Status> {
        let hash = cas::Hash::parse(&request.cas_hash).map_err(objects::status)?;
        let cas = self.cas.clone();
        if !blocking(move || cas.exists(&hash)).await? {
            return Err(Status::not_found(format!(
                "CAS object {hash} does not exist; store it first (cas_store)"
            )));
        }
        let artifact = self.store.create(request).await?;
        Ok(pb::ArtifactCreateReply {
            artifact: Some(Box::new(artifact)),
        })
    }

    async fn artifact_get(
        &self,
        _context: &RequestContext,
        request: pb::ArtifactGetRequest,
    ) -> Result<pb::ArtifactGetReply, Status> {
        match self.store.get(&request.artifact_id).await? {
            Some(artifact) => Ok(pb::ArtifactGetReply {
                artifact: Some(Box::new(artifact)),
            }),
            None => Err(Status::not_found(format!("no artifact {:?}", request.artifact_id))),
        }
    }

    async fn artifact_list(
        &self,
        _context: &RequestContext,
        request: pb::ArtifactListRequest,
    ) -> Result<pb::ArtifactListReply, Status> {
        let cas_hash = match request.cas_hash.as_str() {
            "" => String::new(),
            given => cas::Hash::parse(given).map_err(objects::status)?.to_string(),
        };
        let filter = crate::store::Filter {
            tag: &request.tag,
            creator: &request.creator,
            cas_hash: &cas_hash,
        };
        let (artifacts, next_page_token) = self
            .store
            .list(&filter, request.page_size as usize, &request.page_token)
            .await?;
        Ok(pb::ArtifactListReply {
            artifacts,
            next_page_token,
        })
    }

    async fn graph_bind(
        &self,
        _context: &RequestContext,
        request: pb::GraphBindRequest,
    ) -> Result<pb::GraphBindReply, Status> {
        let binding = self
            .store
            .bind(&request.identity, request.hints.unwrap_or_default())
            .await?;
        Ok(pb::GraphBindReply { binding: Some(binding) })
    }

    async fn cas_get(&self, _context: &RequestContext, request: pb::CasGetRequest) -> Result<pb::CasGetReply, Status> {
        let cas = self.cas.clone();
        let limit = self.max_reply_bytes;
        let offset = request.offset;
        let (info, data) = blocking(move || {
            let hash = cas.resolve(&request.hash)?;
            let info = objects::inspect(&cas, &hash)?;
            if offset > info.size {
                return Ok((info, None));
            }
            let data = cas.read_range(&hash, offset, request.length, limit)?;
            Ok((info, Some(data)))
        })
        .await
        .map_err(|status| match status.code {
            ErrorCode::ResourceExhausted => Status::resource_exhausted(format!(
                "{}; ask for a byte range (offset, length <= {limit}) or read the CAS directly on this host",
                status.message
            )),
            _ => status,
        })?;
        let Some(data) = data else {
            return Err(Status::new(
                ErrorCode::OutOfRange,
                format!(
                    "offset {offset} is past the end of object {} ({} bytes); ask for an offset of at most {}",
                    info.hash, info.size, info.size
                ),
            ));
        };
        Ok(pb::CasGetReply {
            object: Some(object(info)),
            data,
            offset,
        })
    }

    /// Runs a query on the blocking pool (never on the threads that answer pings), at most
    /// `max_concurrent` at once, within the graph timeout or the request's deadline.
    async fn graph_query(
        &self,
        context: &RequestContext,
        request: pb::GraphQueryRequest,
    ) -> Result<pb::GraphQueryReply, Status> {
        let limits = self.graph_limits.clone();
        let accepted = Instant::now();
        let timeout = match context.deadline {
            Some(deadline) => limits
                .timeout
                .min(deadline.into_std().saturating_duration_since(accepted)),
            None => limits.timeout,
        };
        let deadline = accepted + timeout;
        let slot = tokio::time::timeout_at(deadline.into(), self.graph_slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "{} graph queries are running (--graph-max-concurrent) and none finished within {} ms; retry later",
                    limits.max_concurrent,
                    timeout.as_millis()
                ))
            })?
            .map_err(|_| Status::unavailable("hootenanny is shutting down"))?;
        let schema = self.schema.clone();
        let runtime = tokio::runtime::Handle::current();
        let work = tokio::task::spawn_blocking(move || {
            let reply = graph::run(&schema, &runtime, &limits, request, deadline, timeout);
            drop(slot);
            reply
        });
        // A query stops itself at its deadline (its resolvers check it); this only covers one
        // stuck in a single long read. Its slot stays taken until it really ends.
        let grace = std::time::Duration::from_millis(500);
        match tokio::time::timeout_at((deadline + grace).into(), work).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => Err(Status::internal(format!("graph query task failed: {e}"))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the query ran past its deadline of {} ms (--graph-timeout-ms)",
                timeout.as_millis()
            ))),
        }
    }
}
