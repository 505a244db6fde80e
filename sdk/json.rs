//! The schema at run time: the embedded descriptor set, and proto3 JSON for any
//! message (what the golden vectors, `holler send` and tool input schemas build on).

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::v1::Envelope;

/// The compiled schema (a `google.protobuf.FileDescriptorSet`, imports included).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hooteproto.v1.binpb"));

/// Why a JSON conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// No message of this name in the schema.
    #[error("no message named {0} in the schema")]
    UnknownMessage(String),
    /// The bytes are not a valid encoding of the message.
    #[error("cannot decode {message}: {source}")]
    Decode {
        /// Message name.
        message: String,
        /// Cause.
        source: prost::DecodeError,
    },
    /// The JSON does not match the message's proto3 JSON form.
    #[error("invalid JSON for {message}: {source}")]
    Json {
        /// Message name.
        message: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// The schema's descriptor pool.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| match DescriptorPool::decode(FILE_DESCRIPTOR_SET) {
        Ok(pool) => pool,
        // build.rs produced these bytes from a pool it had just built.
        Err(e) => unreachable!("embedded descriptor set is invalid: {e}"),
    })
}

/// The descriptor of a message by full name, e.g. `hooteproto.v1.Envelope`.
pub fn message_descriptor(full_name: &str) -> Result<MessageDescriptor, JsonError> {
    descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))
}

/// The proto3 JSON form of an encoded message.
pub fn bytes_to_json(full_name: &str, bytes: &[u8]) -> Result<serde_json::Value, JsonError> {
    let descriptor = message_descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(descriptor, bytes).map_err(|source| JsonError::Decode {
        message: full_name.to_string(),
        source,
    })?;
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|source| JsonError::Json {
            message: full_name.to_string(),
            source,
        })
}

/// The encoding of a message given in proto3 JSON form.
pub fn json_to_bytes(full_name: &str, json: &str) -> Result<Vec<u8>, JsonError> {
    let descriptor = message_descriptor(full_name)?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .and_then(|m| deserializer.end().map(|()| m))
        .map_err(|source| JsonError::Json {
            message: full_name.to_string(),
            source,
        })?;
    Ok(dynamic.encode_to_vec())
}

/// The proto3 JSON form of an envelope.
pub fn envelope_to_json(envelope: &Envelope) -> Result<serde_json::Value, JsonError> {
    bytes_to_json("hooteproto.v1.Envelope", &envelope.encode_to_vec())
}

/// An envelope from its proto3 JSON form.
pub fn envelope_from_json(json: &str) -> Result<Envelope, JsonError> {
    let bytes = json_to_bytes("hooteproto.v1.Envelope", json)?;
    Envelope::decode(bytes.as_slice()).map_err(|source| JsonError::Decode {
        message: "hooteproto.v1.Envelope".to_string(),
        source,
    })
}
