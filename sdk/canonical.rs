//! Deterministic encoding for messages built at run time (PROTOCOL.md §3): fields in number
//! order and every map's entries sorted by key (strings by their UTF-8 bytes, numbers by
//! value), as prost's `BTreeMap`s, Python's `deterministic=True` and the TypeScript client
//! write them.
//!
//! prost-reflect's `DynamicMessage` keeps maps in a `HashMap`, so a message made from JSON
//! (the gateway, `holler send`) would otherwise go out with its map entries in random order.
//! [`canonicalize`] rewrites such an encoding, guided by the schema.

use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// Why bytes could not be canonicalized: they are not a valid encoding of the message.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// A key, varint or length could not be read.
    #[error(transparent)]
    Decode(#[from] prost::DecodeError),
    /// The bytes end early, nest too deeply or use a construct HOOT/1 never uses.
    #[error("{0}")]
    Malformed(&'static str),
}

/// Rewrites `bytes`, an encoding of `descriptor`'s message, with every map (at any depth)
/// sorted by key. Other fields and unknown fields are copied as they are.
pub fn canonicalize(descriptor: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    message(descriptor, bytes, RECURSION_LIMIT)
}

/// How deep messages may nest, as prost's decoder allows.
const RECURSION_LIMIT: u32 = 100;

/// The map field being read (its number) and its entries so far, each with its sort key.
type OpenMap = Option<(u32, Vec<(SortKey, Vec<u8>)>)>;

fn message(descriptor: &MessageDescriptor, mut bytes: &[u8], depth: u32) -> Result<Vec<u8>, CanonicalError> {
    let depth = depth
        .checked_sub(1)
        .ok_or(CanonicalError::Malformed("messages nested too deeply"))?;
    let mut out = Vec::with_capacity(bytes.len());
    // Entries of the map field being read: an encoder writes one field's entries together.
    let mut map: OpenMap = None;
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes)?;
        if map.as_ref().is_some_and(|(n, _)| *n != number) {
            flush(&mut map, &mut out);
        }
        let field = descriptor.get_field(number);
        match field {
            Some(field) if field.is_map() && wire_type == WireType::LengthDelimited => {
                let entry = map_entry(&field, length_delimited(&mut bytes)?, depth)?;
                map.get_or_insert_with(|| (number, Vec::new())).1.push(entry);
            }
            Some(field) if wire_type == WireType::LengthDelimited && matches!(field.kind(), Kind::Message(_)) => {
                let Kind::Message(inner) = field.kind() else {
                    unreachable!("matched above")
                };
                let body = message(&inner, length_delimited(&mut bytes)?, depth)?;
                write_length_delimited(number, &body, &mut out);
            }
            _ => copy_value(number, wire_type, &mut bytes, &mut out)?,
        }
    }
    flush(&mut map, &mut out);
    Ok(out)
}

/// How a map key sorts: strings (and bytes) by their bytes, every integer kind by value.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Number(i128),
    Bytes(Vec<u8>),
}

fn flush(map: &mut OpenMap, out: &mut Vec<u8>) {
    if let Some((number, mut entries)) = map.take() {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, entry) in entries {
            write_length_delimited(number, &entry, out);
        }
    }
}

/// One map entry with its value canonicalized, and the key it sorts by.
fn map_entry(field: &FieldDescriptor, mut bytes: &[u8], depth: u32) -> Result<(SortKey, Vec<u8>), CanonicalError> {
    let Kind::Message(entry) = field.kind() else {
        return Err(CanonicalError::Malformed("a map field without an entry message"));
    };
    let key_kind = entry.map_entry_key_field().kind();
    let mut key = match key_kind {
        Kind::String => SortKey::Bytes(Vec::new()),
        _ => SortKey::Number(0),
    };
    let mut out = Vec::with_capacity(bytes.len());
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes)?;
        let before = bytes;
        if number == 1 {
            copy_value(number, wire_type, &mut bytes, &mut out)?;
            key = sort_key(&key_kind, &before[..before.len() - bytes.len()])?;
        } else if let (2, WireType::LengthDelimited, Kind::Message(value)) =
            (number, wire_type, entry.map_entry_value_field().kind())
        {
            let body = message(&value, length_delimited(&mut bytes)?, depth)?;
            write_length_delimited(number, &body, &mut out);
        } else {
            copy_value(number, wire_type, &mut bytes, &mut out)?;
        }
    }
    Ok((key, out))
}

fn sort_key(kind: &Kind, mut raw: &[u8]) -> Result<SortKey, CanonicalError> {
    let fixed = |raw: &[u8], n: usize| -> Result<u64, CanonicalError> {
        let bytes = raw.get(..n).ok_or(CanonicalError::Malformed("a truncated map key"))?;
        Ok(bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    Ok(match kind {
        Kind::String | Kind::Bytes => SortKey::Bytes(length_delimited(&mut raw)?.to_vec()),
        Kind::Int32 | Kind::Int64 => SortKey::Number(i128::from(decode_varint(&mut raw)? as i64)),
        Kind::Uint32 | Kind::Uint64 | Kind::Bool => SortKey::Number(i128::from(decode_varint(&mut raw)?)),
        Kind::Sint32 | Kind::Sint64 => {
            let v = decode_varint(&mut raw)?;
            SortKey::Number(i128::from(((v >> 1) as i64) ^ -((v & 1) as i64)))
        }
        Kind::Fixed32 => SortKey::Number(i128::from(fixed(raw, 4)?)),
        Kind::Sfixed32 => SortKey::Number(i128::from(fixed(raw, 4)? as u32 as i32)),
        Kind::Fixed64 => SortKey::Number(i128::from(fixed(raw, 8)?)),
        Kind::Sfixed64 => SortKey::Number(i128::from(fixed(raw, 8)? as i64)),
        _ => SortKey::Bytes(raw.to_vec()),
    })
}

fn length_delimited<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], CanonicalError> {
    let len = usize::try_from(decode_varint(bytes)?).map_err(|_| CanonicalError::Malformed("a length too large"))?;
    if len > bytes.len() {
        return Err(CanonicalError::Malformed("a length past the end of the buffer"));
    }
    let (body, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(body)
}

fn write_length_delimited(number: u32, body: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// Copies one field's key and value as they are.
fn copy_value(number: u32, wire_type: WireType, bytes: &mut &[u8], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    encode_key(number, wire_type, out);
    let len = match wire_type {
        WireType::Varint => {
            let before = *bytes;
            decode_varint(bytes)?;
            out.extend_from_slice(&before[..before.len() - bytes.len()]);
            return Ok(());
        }
        WireType::ThirtyTwoBit => 4,
        WireType::SixtyFourBit => 8,
        WireType::LengthDelimited => {
            let body = length_delimited(bytes)?;
            encode_varint(body.len() as u64, out);
            out.extend_from_slice(body);
            return Ok(());
        }
        WireType::StartGroup | WireType::EndGroup => {
            return Err(CanonicalError::Malformed("groups are not used in HOOT/1"));
        }
    };
    if len > bytes.len() {
        return Err(CanonicalError::Malformed(
            "a fixed-size value past the end of the buffer",
        ));
    }
    out.extend_from_slice(&bytes[..len]);
    bytes.advance(len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::message_descriptor;

    fn structure() -> MessageDescriptor {
        message_descriptor("google.protobuf.Struct").expect("Struct is in the schema")
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let descriptor = message_descriptor("hooteproto.v1.Envelope").expect("Envelope");
        for bytes in [
            &[0x0a, 0xff][..],
            &[0x0a, 0x05, 0x01],
            &[0x0b],
            &[0xff; 12],
            &[0x25, 0x01],
        ] {
            assert!(canonicalize(&descriptor, bytes).is_err(), "{bytes:?} is refused");
        }
    }

    #[test]
    fn nesting_deeper_than_prost_allows_is_refused() {
        // Struct{"k": Value{struct_value: Struct{…}}}, 200 levels deep.
        let mut bytes = Vec::new();
        for _ in 0..200 {
            let mut value = Vec::new();
            write_length_delimited(5, &bytes, &mut value);
            let mut entry = Vec::new();
            write_length_delimited(1, b"k", &mut entry);
            write_length_delimited(2, &value, &mut entry);
            bytes.clear();
            write_length_delimited(1, &entry, &mut bytes);
        }
        let error = canonicalize(&structure(), &bytes).expect_err("too deep");
        assert!(error.to_string().contains("nested too deeply"), "{error}");
    }
}
