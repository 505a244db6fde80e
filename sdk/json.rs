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
    /// The message's own encoding could not be put in canonical form (a bug, never input).
    #[error("cannot canonicalize {message}: {source}")]
    Canonical {
        /// Message name.
        message: String,
        /// Cause.
        source: crate::canonical::CanonicalError,
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
    // prost-reflect writes maps in HashMap order; the wire wants them sorted (PROTOCOL.md §3).
    crate::canonical::canonicalize(
        &prost_reflect::ReflectMessage::descriptor(&dynamic),
        &dynamic.encode_to_vec(),
    )
    .map_err(|source| JsonError::Canonical {
        message: full_name.to_string(),
        source,
    })
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

/// A JSON Schema (draft 2020-12) for the proto3 JSON form of a message, derived from the
/// schema itself so a tool's `input_schema` never drifts from the request it describes.
/// Properties use the proto field names (proto3 JSON parsers accept them and camelCase).
pub fn json_schema(full_name: &str) -> Result<serde_json::Value, JsonError> {
    let descriptor = message_descriptor(full_name)?;
    let mut schema = message_schema(&descriptor, 0);
    if let Some(object) = schema.as_object_mut() {
        object.insert("$schema".into(), "https://json-schema.org/draft/2020-12/schema".into());
    }
    Ok(schema)
}

fn message_schema(descriptor: &MessageDescriptor, depth: usize) -> serde_json::Value {
    use serde_json::json;
    match descriptor.full_name() {
        "google.protobuf.Struct" => return json!({"type": "object"}),
        "google.protobuf.Value" => return json!({}),
        "google.protobuf.ListValue" => return json!({"type": "array"}),
        "google.protobuf.Timestamp" => return json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => return json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"}),
        _ => {}
    }
    if depth > 8 {
        return json!({"type": "object"});
    }
    let properties: serde_json::Map<String, serde_json::Value> = descriptor
        .fields()
        .map(|field| (field.name().to_string(), field_schema(&field, depth)))
        .collect();
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn field_schema(field: &prost_reflect::FieldDescriptor, depth: usize) -> serde_json::Value {
    use serde_json::json;
    if field.is_map()
        && let prost_reflect::Kind::Message(entry) = field.kind()
    {
        let value = kind_schema(&entry.map_entry_value_field().kind(), depth);
        return json!({"type": "object", "additionalProperties": value});
    }
    let single = kind_schema(&field.kind(), depth);
    if field.is_list() {
        json!({"type": "array", "items": single})
    } else {
        single
    }
}

fn kind_schema(kind: &prost_reflect::Kind, depth: usize) -> serde_json::Value {
    use prost_reflect::Kind as K;
    use serde_json::json;
    match kind {
        K::Double | K::Float => json!({"type": "number"}),
        K::Int32 | K::Sint32 | K::Sfixed32 => json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
        K::Uint32 | K::Fixed32 => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        // proto3 JSON writes 64-bit integers as strings and reads either form.
        K::Int64 | K::Sint64 | K::Sfixed64 => json!({"type": ["integer", "string"]}),
        K::Uint64 | K::Fixed64 => json!({"type": ["integer", "string"]}),
        K::Bool => json!({"type": "boolean"}),
        K::String => json!({"type": "string"}),
        K::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        K::Enum(e) => json!({"type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>()}),
        K::Message(m) => message_schema(m, depth + 1),
    }
}

/// A tool description whose `input_schema` is the JSON Schema of a request message
/// (e.g. `("lua_eval", "LuaEvalRequest", "...")`), so it never drifts from `schema/`.
pub fn tool_info(name: &str, request_message: &str, description: &str) -> Result<crate::v1::ToolInfo, JsonError> {
    let schema = json_schema(&format!("hooteproto.v1.{request_message}"))?;
    let object = match schema {
        serde_json::Value::Object(object) => object,
        _ => serde_json::Map::new(),
    };
    Ok(crate::v1::ToolInfo {
        name: name.to_string(),
        description: description.to_string(),
        input_schema: Some(crate::wkt::Struct::from_json(object)),
    })
}
