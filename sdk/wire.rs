//! HOOT/1 framing (normative text: `schema/PROTOCOL.md`).
//!
//! A message is exactly three frames after any routing-identity frames:
//! `["HOOT/1", signature, envelope]`, where `signature` is empty or
//! HMAC-SHA256(key, envelope) and `envelope` is an encoded `hooteproto.v1.Envelope`.

use prost::Message as _;

use crate::Error;
use crate::auth::{Key, SIGNATURE_LEN};
use crate::v1::Envelope;

/// Frame 1: the protocol name and major version.
pub const PROTOCOL: &[u8] = b"HOOT/1";
/// Default maximum size of an envelope frame: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Envelope ids longer than this are refused (they are echoed in every reply).
pub const MAX_ID_LEN: usize = 128;

/// Why an inbound message was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not exactly three frames after the routing frames.
    #[error("expected 3 frames (HOOT/1, signature, envelope), got {0}")]
    FrameCount(usize),
    /// Frame 1 is not `HOOT/1`.
    #[error("protocol frame is {0:?}; this peer speaks HOOT/1")]
    Protocol(String),
    /// A key is configured and the signature frame is empty.
    #[error("message is unsigned but a shared key is configured")]
    Unsigned,
    /// A key is configured and the signature does not match.
    #[error("message signature does not match the shared key")]
    BadSignature,
    /// The envelope frame is larger than the maximum message size.
    #[error("envelope of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// The envelope frame is not a valid `hooteproto.v1.Envelope`.
    #[error("envelope does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The envelope id is empty or too long.
    #[error("envelope id must be 1 to {MAX_ID_LEN} bytes, got {0}")]
    BadId(usize),
}

impl WireError {
    /// Authentication failures are dropped silently; never answered.
    pub fn is_auth(&self) -> bool {
        matches!(self, WireError::Unsigned | WireError::BadSignature)
    }
}

/// A refused inbound message, with the envelope id if one could be read from an
/// authenticated (or unauthenticated-by-configuration) message. A receiver answers
/// `INVALID_ARGUMENT` to that id, or drops the message when there is none.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: WireError,
    /// The id to answer to, if any.
    pub reply_to: Option<String>,
}

/// Only the id of an envelope, for answering envelopes that do not fully decode.
#[derive(Clone, PartialEq, prost::Message)]
struct EnvelopeId {
    #[prost(string, tag = "1")]
    id: String,
}

/// The id of a possibly malformed envelope, if its field 1 can be read.
pub fn peek_id(envelope: &[u8]) -> Option<String> {
    EnvelopeId::decode(envelope)
        .ok()
        .map(|e| e.id)
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
}

/// Encodes an envelope into its three frames, refusing one larger than `max_size`.
pub fn encode(envelope: &Envelope, key: Option<&Key>, max_size: usize) -> Result<Vec<Vec<u8>>, Error> {
    let size = envelope.encoded_len();
    if size > max_size {
        return Err(Error::MessageTooLarge { size, max: max_size });
    }
    let body = envelope.encode_to_vec();
    let signature = key.map(|k| k.sign(&body).to_vec()).unwrap_or_default();
    Ok(vec![PROTOCOL.to_vec(), signature, body])
}

/// Decodes the three HOOT/1 frames of a message (routing frames already removed).
pub fn decode(frames: &[Vec<u8>], key: Option<&Key>, max_size: usize) -> Result<Envelope, Rejected> {
    let reject = |error: WireError, reply_to: Option<String>| Rejected { error, reply_to };
    let [protocol, signature, body] = frames else {
        // Without a key we may answer whatever id the last frame carries; with one we
        // cannot tell which frame is the signature, so the message stays unauthenticated.
        let reply_to = if key.is_none() {
            frames.last().and_then(|f| peek_id(f))
        } else {
            None
        };
        return Err(reject(WireError::FrameCount(frames.len()), reply_to));
    };
    if let Some(key) = key {
        if signature.is_empty() {
            return Err(reject(WireError::Unsigned, None));
        }
        if signature.len() != SIGNATURE_LEN || !key.verify(body, signature) {
            return Err(reject(WireError::BadSignature, None));
        }
    }
    if protocol.as_slice() != PROTOCOL {
        let shown = String::from_utf8_lossy(&protocol[..protocol.len().min(32)]).into_owned();
        return Err(reject(WireError::Protocol(shown), peek_id(body)));
    }
    if body.len() > max_size {
        return Err(reject(
            WireError::TooLarge {
                size: body.len(),
                max: max_size,
            },
            None,
        ));
    }
    let envelope = Envelope::decode(body.as_slice()).map_err(|e| reject(e.into(), peek_id(body)))?;
    if envelope.id.is_empty() || envelope.id.len() > MAX_ID_LEN {
        return Err(reject(WireError::BadId(envelope.id.len()), None));
    }
    Ok(envelope)
}
