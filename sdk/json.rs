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

// ---------------------------------------------------------------------------------------
// The tool JSON form: what agents see through MCP.
//
// Requests and replies of tools travel to and from agents as JSON objects whose properties
// are the proto field names (`position_beats`, not `positionBeats`), whose enum values are
// short lowercase names (`section_change` for `TIMELINE_EVENT_TYPE_SECTION_CHANGE`; the full
// names and numbers are accepted on input, `*_UNSPECIFIED` is never offered nor written: it
// is the field left out), and, in results, whose 64-bit integers are numbers and zero values
// are present. Their JSON Schemas (draft 2020-12) are derived from the schema, with each
// property's description taken from its `.proto` comment and `required` from the
// `(hooteproto.v1.required)` field option.
// ---------------------------------------------------------------------------------------

/// Which side of a tool a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Arguments: `required` applies, 64-bit integers may be strings.
    Input,
    /// Results.
    Output,
}

/// The JSON Schema of a tool's arguments: the request message `full_name` in the tool JSON form.
pub fn tool_input_schema(full_name: &str) -> Result<serde_json::Value, JsonError> {
    top_schema(full_name, Side::Input)
}

/// The JSON Schema of a tool's result: the reply message `full_name` in the tool JSON form.
pub fn tool_output_schema(full_name: &str) -> Result<serde_json::Value, JsonError> {
    top_schema(full_name, Side::Output)
}

/// The JSON Schema (draft 2020-12) of a message's arguments form; same as
/// [`tool_input_schema`] (kept for callers that describe any request message).
pub fn json_schema(full_name: &str) -> Result<serde_json::Value, JsonError> {
    tool_input_schema(full_name)
}

fn top_schema(full_name: &str, side: Side) -> Result<serde_json::Value, JsonError> {
    let descriptor = message_descriptor(full_name)?;
    let mut schema = message_schema(&descriptor, side, 0);
    if let Some(object) = schema.as_object_mut() {
        object.insert("$schema".into(), "https://json-schema.org/draft/2020-12/schema".into());
    }
    Ok(schema)
}

/// The comment written above a message, field, enum or enum value in `schema/`, on one line.
pub fn comment(file: &prost_reflect::FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!line.is_empty()).then_some(line)
}

fn field_comment(field: &prost_reflect::FieldDescriptor) -> Option<String> {
    comment(&field.parent_file(), field.path())
}

/// Whether a field carries `(hooteproto.v1.required) = true`.
pub fn is_required(field: &prost_reflect::FieldDescriptor) -> bool {
    static REQUIRED: OnceLock<Option<prost_reflect::ExtensionDescriptor>> = OnceLock::new();
    let Some(extension) = REQUIRED
        .get_or_init(|| descriptor_pool().get_extension_by_name("hooteproto.v1.required"))
        .as_ref()
    else {
        return false;
    };
    field.options().get_extension(extension).as_bool() == Some(true)
}

/// `TimelineEventType` → `TIMELINE_EVENT_TYPE_`: the prefix buf's ENUM_VALUE_PREFIX demands.
fn enum_prefix(descriptor: &prost_reflect::EnumDescriptor) -> String {
    let mut prefix = String::new();
    for (i, c) in descriptor.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    prefix
}

/// An enum value's short name: `TIMELINE_EVENT_TYPE_SECTION_CHANGE` → `section_change`.
pub fn enum_short_name(value: &prost_reflect::EnumValueDescriptor) -> String {
    let prefix = enum_prefix(value.parent_enum());
    value
        .name()
        .strip_prefix(prefix.as_str())
        .unwrap_or(value.name())
        .to_ascii_lowercase()
}

/// The values an agent may choose: every one but the zero `*_UNSPECIFIED`.
fn offered_values(
    descriptor: &prost_reflect::EnumDescriptor,
) -> impl Iterator<Item = prost_reflect::EnumValueDescriptor> {
    descriptor
        .values()
        .filter(|v| !(v.number() == 0 && v.name().ends_with("_UNSPECIFIED")))
}

/// Whether a message is a well-known type that has its own JSON form.
fn is_well_known(descriptor: &MessageDescriptor) -> bool {
    descriptor.full_name().starts_with("google.protobuf.")
}

fn message_schema(descriptor: &MessageDescriptor, side: Side, depth: usize) -> serde_json::Value {
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
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for field in descriptor.fields() {
        let mut schema = field_schema(&field, side, depth);
        if let (Some(object), Some(text)) = (schema.as_object_mut(), field_description(&field)) {
            object.insert("description".into(), text.into());
        }
        properties.insert(field.name().to_string(), schema);
        if side == Side::Input && is_required(&field) {
            required.push(serde_json::Value::from(field.name()));
        }
    }
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty()
        && let Some(object) = schema.as_object_mut()
    {
        object.insert("required".into(), required.into());
    }
    schema
}

/// A field's comment, plus its values' meanings when it is an enum.
fn field_description(field: &prost_reflect::FieldDescriptor) -> Option<String> {
    let mut text = field_comment(field).unwrap_or_default();
    if let prost_reflect::Kind::Enum(descriptor) = field.kind() {
        let values: Vec<String> = offered_values(&descriptor)
            .map(|v| match comment(&v.parent_file(), v.path()) {
                Some(meaning) => format!("{} ({})", enum_short_name(&v), meaning.trim_end_matches('.')),
                None => enum_short_name(&v),
            })
            .collect();
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str("One of: ");
        text.push_str(&values.join("; "));
        text.push('.');
    }
    (!text.is_empty()).then_some(text)
}

fn field_schema(field: &prost_reflect::FieldDescriptor, side: Side, depth: usize) -> serde_json::Value {
    use serde_json::json;
    if field.is_map()
        && let prost_reflect::Kind::Message(entry) = field.kind()
    {
        let value = kind_schema(&entry.map_entry_value_field().kind(), side, depth);
        return json!({"type": "object", "additionalProperties": value});
    }
    let single = kind_schema(&field.kind(), side, depth);
    if field.is_list() {
        json!({"type": "array", "items": single})
    } else {
        single
    }
}

fn kind_schema(kind: &prost_reflect::Kind, side: Side, depth: usize) -> serde_json::Value {
    use prost_reflect::Kind as K;
    use serde_json::json;
    match kind {
        K::Double | K::Float => json!({"type": "number"}),
        K::Int32 | K::Sint32 | K::Sfixed32 => json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
        K::Uint32 | K::Fixed32 => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        // Arguments may give 64-bit integers as strings (proto3 JSON); results are numbers.
        K::Int64 | K::Sint64 | K::Sfixed64 if side == Side::Input => json!({"type": ["integer", "string"]}),
        K::Uint64 | K::Fixed64 if side == Side::Input => json!({"type": ["integer", "string"]}),
        K::Int64 | K::Sint64 | K::Sfixed64 => json!({"type": "integer"}),
        K::Uint64 | K::Fixed64 => json!({"type": "integer", "minimum": 0}),
        K::Bool => json!({"type": "boolean"}),
        K::String => json!({"type": "string"}),
        K::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        K::Enum(e) => {
            json!({"type": "string", "enum": offered_values(e).map(|v| enum_short_name(&v)).collect::<Vec<_>>()})
        }
        K::Message(m) => message_schema(m, side, depth + 1),
    }
}

/// Why a tool's arguments were refused; the text names the field and what is valid.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgumentError(pub String);

/// A tool's request from its arguments in the tool JSON form (proto field names or their
/// camelCase JSON names; enums by short or full name or number). Unknown fields are refused
/// with the list of valid ones, missing `(hooteproto.v1.required)` fields by name.
pub fn tool_request(
    tool: &crate::tools::Tool,
    arguments: &serde_json::Value,
) -> Result<crate::v1::envelope::Payload, ArgumentError> {
    let descriptor = message_descriptor(tool.request).map_err(|e| ArgumentError(e.to_string()))?;
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let arguments = if arguments.is_null() { &empty } else { arguments };
    let normalized = normalize_message(arguments, &descriptor, "")?;
    let mut envelope = serde_json::Map::new();
    envelope.insert(tool.name.to_string(), normalized);
    let text = serde_json::Value::Object(envelope).to_string();
    let envelope = envelope_from_json(&text).map_err(|e| {
        // serde's "at line 1 column N" points into JSON the caller never wrote.
        let text = match e {
            JsonError::Json { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        let text = match text.rfind(" at line ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        ArgumentError(text)
    })?;
    envelope
        .payload
        .ok_or_else(|| ArgumentError(format!("{} is not a payload of the schema", tool.name)))
}

fn where_(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in `{path}`")
    }
}

fn normalize_message(
    value: &serde_json::Value,
    descriptor: &MessageDescriptor,
    path: &str,
) -> Result<serde_json::Value, ArgumentError> {
    if is_well_known(descriptor) {
        return Ok(value.clone());
    }
    let serde_json::Value::Object(object) = value else {
        return Err(ArgumentError(format!(
            "expected an object{}, not {value}",
            where_(path)
        )));
    };
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let field = descriptor
            .get_field_by_name(key)
            .or_else(|| descriptor.get_field_by_json_name(key))
            .ok_or_else(|| {
                let valid: Vec<String> = descriptor.fields().map(|f| f.name().to_string()).collect();
                let valid = if valid.is_empty() {
                    "it takes no fields".to_string()
                } else {
                    format!("valid fields: {}", valid.join(", "))
                };
                ArgumentError(format!("unknown field `{key}`{}; {valid}", where_(path)))
            })?;
        let inner = if path.is_empty() {
            field.name().to_string()
        } else {
            format!("{path}.{}", field.name())
        };
        out.insert(field.name().to_string(), normalize_field(value, &field, &inner)?);
    }
    let missing: Vec<String> = descriptor
        .fields()
        .filter(|f| is_required(f) && out.get(f.name()).is_none_or(serde_json::Value::is_null))
        .map(|f| f.name().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ArgumentError(format!(
            "missing required field{} {}{}",
            if missing.len() == 1 { "" } else { "s" },
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            where_(path)
        )));
    }
    Ok(serde_json::Value::Object(out))
}

fn normalize_field(
    value: &serde_json::Value,
    field: &prost_reflect::FieldDescriptor,
    path: &str,
) -> Result<serde_json::Value, ArgumentError> {
    if value.is_null() {
        return Ok(value.clone());
    }
    if field.is_map() {
        let prost_reflect::Kind::Message(entry) = field.kind() else {
            return Ok(value.clone());
        };
        let value_field = entry.map_entry_value_field();
        return match value {
            serde_json::Value::Object(entries) => Ok(serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            normalize_kind(v, &value_field.kind(), &format!("{path}.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, ArgumentError>>()?,
            )),
            _ => Err(ArgumentError(format!("`{path}` must be an object"))),
        };
    }
    if field.is_list() {
        return match value {
            serde_json::Value::Array(items) => Ok(serde_json::Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| normalize_kind(v, &field.kind(), &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
            _ => Err(ArgumentError(format!("`{path}` must be an array"))),
        };
    }
    normalize_kind(value, &field.kind(), path)
}

fn normalize_kind(
    value: &serde_json::Value,
    kind: &prost_reflect::Kind,
    path: &str,
) -> Result<serde_json::Value, ArgumentError> {
    match kind {
        prost_reflect::Kind::Message(message) => normalize_message(value, message, path),
        prost_reflect::Kind::Enum(descriptor) => match value {
            serde_json::Value::String(name) => {
                let wanted = name.trim();
                descriptor
                    .values()
                    .find(|v| v.name().eq_ignore_ascii_case(wanted) || enum_short_name(v).eq_ignore_ascii_case(wanted))
                    .map(|v| serde_json::Value::from(v.name()))
                    .ok_or_else(|| {
                        let valid: Vec<String> = offered_values(descriptor).map(|v| enum_short_name(&v)).collect();
                        ArgumentError(format!("`{path}` must be one of {}, not {name:?}", valid.join(", ")))
                    })
            }
            other => Ok(other.clone()),
        },
        _ => Ok(value.clone()),
    }
}

/// A tool's result in the tool JSON form: the reply with proto field names, enums by short
/// name (unset ones left out), 64-bit integers as numbers and zero values present.
pub fn tool_result(payload: crate::v1::envelope::Payload) -> Result<serde_json::Value, JsonError> {
    let case = payload.name();
    let envelope = Envelope {
        payload: Some(payload),
        ..Default::default()
    };
    let descriptor = message_descriptor("hooteproto.v1.Envelope")?;
    let bytes = envelope.encode_to_vec();
    let dynamic = DynamicMessage::decode(descriptor, bytes.as_slice()).map_err(|source| JsonError::Decode {
        message: "hooteproto.v1.Envelope".to_string(),
        source,
    })?;
    let Some(prost_reflect::Value::Message(reply)) = dynamic.get_field_by_name(case).map(|v| v.into_owned()) else {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    };
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    let mut json = reply
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|source| JsonError::Json {
            message: case.to_string(),
            source,
        })?;
    shorten_message(&mut json, &prost_reflect::ReflectMessage::descriptor(&reply));
    Ok(json)
}

fn shorten_message(value: &mut serde_json::Value, descriptor: &MessageDescriptor) {
    if is_well_known(descriptor) {
        return;
    }
    let serde_json::Value::Object(object) = value else {
        return;
    };
    for field in descriptor.fields() {
        let Some(value) = object.get_mut(field.name()) else {
            continue;
        };
        let kind = if field.is_map() {
            match field.kind() {
                prost_reflect::Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            }
        } else {
            field.kind()
        };
        let keep = match value {
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|item| shorten_kind(item, &kind));
                items.retain(|item| !item.is_null());
                true
            }
            serde_json::Value::Object(entries) if field.is_map() => {
                entries.values_mut().for_each(|item| shorten_kind(item, &kind));
                true
            }
            single => {
                shorten_kind(single, &kind);
                !(single.is_null() && matches!(kind, prost_reflect::Kind::Enum(_)))
            }
        };
        if !keep {
            object.remove(field.name());
        }
    }
}

/// Enum names become short names; `*_UNSPECIFIED` becomes null (then left out).
fn shorten_kind(value: &mut serde_json::Value, kind: &prost_reflect::Kind) {
    match kind {
        prost_reflect::Kind::Message(message) => shorten_message(value, message),
        prost_reflect::Kind::Enum(descriptor) => {
            let found = match &*value {
                serde_json::Value::String(name) => descriptor.get_value_by_name(name),
                serde_json::Value::Number(n) => n.as_i64().and_then(|n| descriptor.get_value(n as i32)),
                _ => None,
            };
            *value = match found {
                Some(v) if v.number() == 0 && v.name().ends_with("_UNSPECIFIED") => serde_json::Value::Null,
                Some(v) => enum_short_name(&v).into(),
                None => value.take(),
            };
        }
        _ => {}
    }
}
