//! [`Struct`]: `google.protobuf.Struct` kept in its encoded form until someone reads it.
//!
//! Free-form JSON objects (`params`, `metadata`, `details`, `input_schema`, …) are often
//! only passed along: a gateway forwards them, a store persists them. Decoding them into
//! `prost_types::Struct` allocates a map node and a string per key and string value, which
//! was most of the cost of decoding an envelope. The generated types therefore use this
//! type for every `google.protobuf.Struct` field (`build.rs`: `extern_path`); it is
//! identical on the wire. Read it with [`Struct::to_prost`] or [`Struct::to_json`].
//!
//! Decoding an envelope checks only the framing of a Struct's entries; the entries
//! themselves are checked when read, and a malformed one is an `INVALID_ARGUMENT` then.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use prost_types::value::Kind;

/// A `google.protobuf.Struct` (a JSON object), stored encoded.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Struct {
    /// The `fields` entries (field 1, map<string, Value>) exactly as encoded.
    encoded: Vec<u8>,
}

/// Field number of `google.protobuf.Struct.fields`.
const FIELDS: u32 = 1;

impl Struct {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the object has no entries.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The encoded entries (the body of a `google.protobuf.Struct` message).
    pub fn as_encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// From the encoded body of a `google.protobuf.Struct`; checked when read.
    pub fn from_encoded(encoded: Vec<u8>) -> Self {
        Self { encoded }
    }

    /// Decodes the entries.
    pub fn to_prost(&self) -> Result<prost_types::Struct, DecodeError> {
        prost_types::Struct::decode(self.encoded.as_slice())
    }

    /// The object as JSON. Numbers are doubles (as in proto3); NaN and infinities become null.
    pub fn to_json(&self) -> Result<serde_json::Map<String, serde_json::Value>, DecodeError> {
        Ok(struct_to_json(self.to_prost()?))
    }

    /// From a JSON object. Integers beyond 2^53 lose precision (proto3 numbers are doubles).
    pub fn from_json(object: serde_json::Map<String, serde_json::Value>) -> Self {
        Self::from(json_to_struct(object))
    }
}

impl From<prost_types::Struct> for Struct {
    fn from(value: prost_types::Struct) -> Self {
        Self {
            encoded: value.encode_to_vec(),
        }
    }
}

impl std::fmt::Debug for Struct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_json() {
            Ok(json) => write!(f, "Struct({})", serde_json::Value::Object(json)),
            Err(_) => write!(f, "Struct(<{} bytes, malformed>)", self.encoded.len()),
        }
    }
}

impl Message for Struct {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.encoded);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != FIELDS || wire_type != WireType::LengthDelimited {
            // Struct has no other field; like prost, ignore unknown ones.
            return encoding::skip_field(wire_type, tag, buf, ctx);
        }
        let len = encoding::decode_varint(buf)?;
        let len = match usize::try_from(len) {
            Ok(len) if len <= buf.remaining() => len,
            _ => return Err(underflow()),
        };
        if self.encoded.is_empty() {
            self.encoded.reserve(buf.remaining().min(256));
        }
        encoding::encode_key(FIELDS, WireType::LengthDelimited, &mut self.encoded);
        encoding::encode_varint(len as u64, &mut self.encoded);
        let start = self.encoded.len();
        self.encoded.resize(start + len, 0);
        buf.copy_to_slice(&mut self.encoded[start..]);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    fn clear(&mut self) {
        self.encoded.clear();
    }
}

/// prost's own "buffer underflow" error (its constructor is not public API).
fn underflow() -> DecodeError {
    match prost_types::Struct::decode(&[0x0A, 0x01][..]) {
        Err(error) => error,
        Ok(_) => unreachable!("a one-byte entry that announces more cannot decode"),
    }
}

/// A `google.protobuf.Value` as JSON.
pub fn value_to_json(value: prost_types::Value) -> serde_json::Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.into_iter().map(value_to_json).collect()),
    }
}

/// JSON as a `google.protobuf.Value`.
pub fn json_to_value(json: serde_json::Value) -> prost_types::Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(object) => Kind::StructValue(json_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn struct_to_json(value: prost_types::Struct) -> serde_json::Map<String, serde_json::Value> {
    value.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()
}

fn json_to_struct(object: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_as_prost_types_and_lossless_json() {
        let json = serde_json::json!({"tempo": 120.5, "key": "Dm", "loop": true, "none": null, "parts": [1.0, "two", {"x": false}]});
        let serde_json::Value::Object(object) = json.clone() else {
            unreachable!()
        };
        let lazy = Struct::from_json(object);
        let eager = lazy.to_prost().expect("decodes");
        assert_eq!(
            lazy.as_encoded(),
            eager.encode_to_vec().as_slice(),
            "wire-identical to prost_types"
        );
        assert_eq!(serde_json::Value::Object(lazy.to_json().expect("json")), json);
        // As a nested field: decode through the Message impl and re-encode unchanged.
        let wrapped = prost_types::Value {
            kind: Some(Kind::StructValue(eager)),
        }
        .encode_to_vec();
        let mut buf = &wrapped[1..]; // skip the StructValue key; what remains is length + body
        let mut nested = Struct::new();
        encoding::message::merge(
            WireType::LengthDelimited,
            &mut nested,
            &mut buf,
            DecodeContext::default(),
        )
        .expect("merge");
        assert_eq!(nested, lazy);
    }

    #[test]
    fn malformed_entries_fail_when_read_not_when_carried() {
        let lazy = Struct::from_encoded(vec![0x0A, 0x03, 0xFF, 0xFF, 0xFF]);
        assert!(lazy.to_prost().is_err());
        assert!(format!("{lazy:?}").contains("malformed"));
        let mut truncated: &[u8] = &[0x0A, 0x09, 0x01];
        let mut into = Struct::new();
        assert!(
            into.merge_field(1, WireType::LengthDelimited, &mut truncated, DecodeContext::default())
                .is_err()
        );
    }
}
