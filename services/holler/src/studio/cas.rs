//! `GET /api/cas/{hash}`: a CAS object over HTTP, with single byte ranges (`Range: bytes=a-b`,
//! `a-`, `-n`), so `<audio>` can seek and a download can resume. The gateway holds no copy:
//! it streams the object from Hootenanny in [`CHUNK`]-sized `cas_get` calls ([`chunks`]), so
//! a large object costs a few chunks of memory however many bytes are asked for.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hooteproto::v1 as pb;

use super::{Studio, call_failure};
use crate::backends::Backends;
use std::sync::Arc;

/// Bytes per `cas_get` (well under the default maximum message size).
pub const CHUNK: u64 = 1 << 20;
const CALL: Duration = Duration::from_secs(30);

/// Chunks fetched ahead of the reader.
pub const IN_FLIGHT: usize = 4;

/// Bytes `start..end` of an object, as [`CHUNK`]-sized `cas_get` calls with up to
/// [`IN_FLIGHT`] in flight, so Hootenanny reads the next chunks while this side copies out the
/// last (peaks of a 110 MiB WAV: 0.73 s one at a time, 0.50 s four at a time; 4 MiB chunks
/// gained nothing over 1 MiB). Memory: at most `IN_FLIGHT` chunks, however large the object.
/// A call that fails, or returns fewer bytes than asked, ends the stream with an error.
pub fn chunks(
    backends: Arc<Backends>,
    hash: String,
    start: u64,
    end: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use futures_util::StreamExt as _;
    let offsets = (start..end).step_by(CHUNK as usize);
    futures_util::stream::iter(offsets)
        .map(move |offset| {
            let backends = backends.clone();
            let request = pb::CasGetRequest {
                hash: hash.clone(),
                offset,
                length: CHUNK.min(end - offset),
            };
            async move {
                let want = request.length as usize;
                match backends.send(request, CALL).await {
                    Ok(reply) if reply.data.len() == want => Ok(Bytes::from(reply.data)),
                    Ok(reply) => Err(std::io::Error::other(hooteproto::Status::new(
                        pb::ErrorCode::DataLoss,
                        format!(
                            "the CAS returned {} bytes where {want} were asked for",
                            reply.data.len()
                        ),
                    ))),
                    // The status goes along, so a reader's caller can answer with its code.
                    Err(error) => Err(std::io::Error::other(hooteproto::Status::new(
                        error.code(),
                        error.message(),
                    ))),
                }
            }
        })
        .buffered(IN_FLIGHT)
}

/// Which bytes a `Range` header asks for, of an object of `size` bytes: `Ok(None)` for the
/// whole object (no header, or one this endpoint does not serve, which HTTP lets it ignore),
/// `Err(())` for a range that lies past the end (416).
fn requested_range(range: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = |s: &str| s.parse::<u64>().map_err(|_| ());
    let (start, end) = match (first.is_empty(), last.is_empty()) {
        // The last n bytes.
        (true, false) => {
            let n = parsed(last)?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (false, true) => (parsed(first)?, size.saturating_sub(1)),
        (false, false) => (parsed(first)?, parsed(last)?.min(size.saturating_sub(1))),
        (true, true) => return Ok(None),
    };
    if size == 0 || start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// An object's metadata, or the response that says why not (a bad hash, none such).
pub(super) async fn inspect(backends: &Backends, hash: String) -> Result<pb::CasObject, Response> {
    match backends.send(pb::CasInspectRequest { hash }, CALL).await {
        Ok(reply) => Ok(reply.object.unwrap_or_default()),
        Err(error) => Err(call_failure(&error)),
    }
}

pub async fn object(State(studio): State<Studio>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    let backends = studio.backends.clone();
    let object = match inspect(&backends, hash).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    let span = match Span::of(&headers, object.size) {
        Ok(span) => span,
        Err(unsatisfiable) => return unsatisfiable.into_response(),
    };
    let chunks = chunks(backends, object.hash.clone(), span.start, span.start + span.length);
    // Content-addressed: the bytes under a hash never change.
    span.respond(
        Body::from_stream(chunks),
        &object.mime_type,
        "private, max-age=31536000, immutable",
    )
}

/// A range that lies past the end of a `size`-byte resource: 416, saying the size.
pub(super) struct Unsatisfiable {
    size: u64,
}

impl IntoResponse for Unsatisfiable {
    fn into_response(self) -> Response {
        let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", self.size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        response
    }
}

/// The bytes of a `size`-byte resource a request gets: all of it (200), or the one range its
/// `Range` header asks for (206).
pub(super) struct Span {
    status: StatusCode,
    pub(super) start: u64,
    pub(super) length: u64,
    size: u64,
}

impl Span {
    /// The span `headers` ask for, or why none can be served (a range past the end).
    pub(super) fn of(headers: &HeaderMap, size: u64) -> Result<Self, Unsatisfiable> {
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let (status, start, end) = match requested_range(range, size) {
            Ok(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
            Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
            Err(()) => return Err(Unsatisfiable { size }),
        };
        let length = if size == 0 { 0 } else { end - start + 1 };
        Ok(Self {
            status,
            start,
            length,
            size,
        })
    }

    /// `body` (exactly the span's bytes) with the headers a ranged response carries.
    pub(super) fn respond(&self, body: Body, mime: &str, cache_control: &'static str) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        let mime = if mime.is_empty() {
            "application/octet-stream"
        } else {
            mime
        };
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.length));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if self.status == StatusCode::PARTIAL_CONTENT {
            let end = self.start + self.length - 1;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{end}/{}", self.start, self.size)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::requested_range;

    #[test]
    fn byte_ranges_as_browsers_send_them() {
        assert_eq!(requested_range(None, 100), Ok(None));
        assert_eq!(requested_range(Some("bytes=0-"), 100), Ok(Some((0, 99))));
        assert_eq!(requested_range(Some("bytes=10-19"), 100), Ok(Some((10, 19))));
        assert_eq!(requested_range(Some("bytes=90-500"), 100), Ok(Some((90, 99))));
        assert_eq!(requested_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(requested_range(Some("bytes=-500"), 100), Ok(Some((0, 99))));
        assert_eq!(requested_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(requested_range(Some("bytes=20-10"), 100), Err(()));
        assert_eq!(requested_range(Some("bytes=x-1"), 100), Err(()));
        assert_eq!(requested_range(Some("bytes=0-"), 0), Err(()));
        // Several ranges, or another unit: the whole object, as HTTP allows.
        assert_eq!(requested_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(requested_range(Some("items=0-1"), 100), Ok(None));
    }
}
