//! Golden wire vectors under `schema/testdata/`: one Envelope per payload case and one
//! Broadcast per event case, every field filled with deterministic values read off the
//! schema. Each is checked byte for byte (`.binpb`) and in proto3 JSON form (`.json`).
//! The Python and TypeScript clients check the same files, so all languages agree.
//!
//! After a deliberate schema change: `HOOT_BLESS=1 cargo test --test golden`, then commit.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hooteproto::json;
use hooteproto::v1::{Broadcast, Envelope};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value};

const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/testdata")
}

/// A well-known type, filled with a typical value.
fn well_known(descriptor: &MessageDescriptor) -> Option<DynamicMessage> {
    use prost_types::value::Kind as K;
    let value = |kind| prost_types::Value { kind: Some(kind) };
    // One key per object, at every depth: Structs are carried as encoded (sdk/wkt.rs), so
    // their entry order is the producer's, and prost-reflect's map order is random.
    // The one list still holds every kind of Value, a nested object included.
    let object = |key: &str, v| prost_types::Struct {
        fields: [(key.to_string(), v)].into_iter().collect(),
    };
    let structure = object(
        "song",
        value(K::ListValue(prost_types::ListValue {
            values: vec![
                value(K::StringValue("verse".into())),
                value(K::NumberValue(120.5)),
                value(K::BoolValue(true)),
                value(K::NullValue(0)),
                value(K::StructValue(object("key", value(K::StringValue("Dm".into()))))),
            ],
        })),
    );
    let bytes = match descriptor.full_name() {
        "google.protobuf.Struct" => structure.encode_to_vec(),
        "google.protobuf.Value" => value(K::StructValue(structure)).encode_to_vec(),
        "google.protobuf.Timestamp" => prost_types::Timestamp {
            seconds: 1_764_000_000,
            nanos: 250_000_000,
        }
        .encode_to_vec(),
        _ => return None,
    };
    DynamicMessage::decode(descriptor.clone(), bytes.as_slice()).ok()
}

fn sample_message(descriptor: &MessageDescriptor, depth: u32) -> DynamicMessage {
    if let Some(message) = well_known(descriptor) {
        return message;
    }
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        // Of each oneof, fill its first field only.
        if let Some(oneof) = field.containing_oneof()
            && oneof.fields().next().map(|f| f.number()) != Some(field.number())
        {
            continue;
        }
        if depth > 5 && matches!(field.kind(), Kind::Message(_)) {
            continue;
        }
        message.set_field(&field, sample_field(&field, depth));
    }
    message
}

fn sample_field(field: &FieldDescriptor, depth: u32) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("map fields are entry messages")
        };
        let value_field = entry.map_entry_value_field();
        let entries: HashMap<MapKey, Value> = ["alpha", "beta"]
            .into_iter()
            .map(|k| (MapKey::String(k.into()), sample_scalar(&value_field, depth)))
            .collect();
        Value::Map(entries)
    } else if field.is_list() {
        Value::List(vec![sample_scalar(field, depth), sample_scalar(field, depth + 1)])
    } else {
        sample_scalar(field, depth)
    }
}

fn sample_scalar(field: &FieldDescriptor, depth: u32) -> Value {
    let n = field.number() + depth;
    match field.kind() {
        Kind::String if field.name().ends_with("hash") => Value::String(HASH.into()),
        Kind::String => Value::String(format!("{}-{n}", field.name())),
        Kind::Bytes => Value::Bytes(vec![0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff].into()),
        Kind::Bool => Value::Bool(true),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-(n as i32)),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-(i64::from(n) * 1_000_000_007)),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(n),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::from(n) * 1_000_000_007),
        Kind::Double => Value::F64(f64::from(n) + 0.25),
        Kind::Float => Value::F32(n as f32 + 0.5),
        Kind::Enum(e) => Value::EnumNumber(e.values().map(|v| v.number()).find(|&v| v != 0).unwrap_or(0)),
        Kind::Message(m) => Value::Message(sample_message(&m, depth + 1)),
    }
}

/// (file stem, canonical bytes) for each case of the top message's oneof.
fn cases(top: &str, oneof: &str, header: impl Fn(&mut DynamicMessage, &str)) -> Vec<(String, Vec<u8>)> {
    let descriptor = json::message_descriptor(top).expect("top message");
    let oneof = descriptor.oneofs().find(|o| o.name() == oneof).expect("oneof");
    oneof
        .fields()
        .map(|field| {
            let mut message = DynamicMessage::new(descriptor.clone());
            header(&mut message, field.name());
            let Kind::Message(payload) = field.kind() else {
                unreachable!("payload cases are messages")
            };
            message.set_field(&field, Value::Message(sample_message(&payload, 1)));
            (field.name().to_string(), message.encode_to_vec())
        })
        .collect()
}

fn set(message: &mut DynamicMessage, name: &str, value: Value) {
    let field = message.descriptor().get_field_by_name(name).expect("field");
    message.set_field(&field, value);
}

/// Canonical form: what prost writes (fields by number, map keys sorted).
fn canonical<M: prost::Message + Default>(bytes: &[u8]) -> Vec<u8> {
    let typed = M::decode(bytes).expect("typed decode of a dynamic encoding");
    let once = typed.encode_to_vec();
    let twice = M::decode(once.as_slice()).expect("re-decode").encode_to_vec();
    assert_eq!(once, twice, "encoding is not stable across a round trip");
    once
}

fn check_dir<M: prost::Message + Default>(dir: &str, full_name: &str, vectors: Vec<(String, Vec<u8>)>) {
    let bless = std::env::var_os("HOOT_BLESS").is_some();
    let root = testdata().join(dir);
    std::fs::create_dir_all(&root).expect("testdata dir");
    let mut problems = Vec::new();
    let mut expected_files = BTreeSet::new();
    for (name, dynamic_bytes) in vectors {
        let bytes = canonical::<M>(&dynamic_bytes);
        let json_value = json::bytes_to_json(full_name, &bytes).expect("to JSON");
        // JSON -> bytes -> typed must land on the same canonical bytes.
        let back = json::json_to_bytes(full_name, &json_value.to_string()).expect("from JSON");
        assert_eq!(
            canonical::<M>(&back),
            bytes,
            "{dir}/{name}: JSON round trip changed the message"
        );
        let json_text = serde_json::to_string_pretty(&json_value).expect("pretty") + "\n";
        let (bin_path, json_path) = (root.join(format!("{name}.binpb")), root.join(format!("{name}.json")));
        expected_files.insert(bin_path.clone());
        expected_files.insert(json_path.clone());
        if bless {
            std::fs::write(&bin_path, &bytes).expect("write binpb");
            std::fs::write(&json_path, json_text).expect("write json");
            continue;
        }
        match std::fs::read(&bin_path) {
            Ok(golden) if golden == bytes => {}
            Ok(_) => problems.push(format!("{dir}/{name}.binpb: the encoding changed")),
            Err(_) => problems.push(format!("{dir}/{name}.binpb: missing (new payload case?)")),
        }
        match std::fs::read_to_string(&json_path).map(|t| serde_json::from_str::<serde_json::Value>(&t)) {
            Ok(Ok(golden)) if golden == json_value => {}
            Ok(_) => problems.push(format!("{dir}/{name}.json: the JSON form changed")),
            Err(_) => problems.push(format!("{dir}/{name}.json: missing")),
        }
    }
    for entry in std::fs::read_dir(&root).expect("read testdata") {
        let path = entry.expect("entry").path();
        if !expected_files.contains(&path) {
            if bless {
                std::fs::remove_file(&path).expect("remove stale vector");
            } else {
                problems.push(format!("{}: no payload case produces it (stale)", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "golden vectors disagree with the schema:\n  {}\nIf the schema change is deliberate (and `buf breaking` \
         accepts it), run `HOOT_BLESS=1 cargo test --test golden` and commit schema/testdata/.",
        problems.join("\n  ")
    );
}

#[test]
fn envelope_vectors_match_byte_for_byte() {
    let vectors = cases("hooteproto.v1.Envelope", "payload", |message, name| {
        set(message, "id", Value::String(format!("golden-{name}")));
        set(message, "traceparent", Value::String(TRACEPARENT.into()));
        set(message, "timeout_ms", Value::U32(2500));
    });
    assert!(
        vectors.len() >= 60,
        "every payload case has a vector ({} found)",
        vectors.len()
    );
    check_dir::<Envelope>("envelope", "hooteproto.v1.Envelope", vectors);
}

#[test]
fn broadcast_vectors_match_byte_for_byte() {
    let vectors = cases("hooteproto.v1.Broadcast", "event", |message, _| {
        set(message, "source", Value::String("luanette".into()));
        set(message, "sequence", Value::U64(42));
    });
    check_dir::<Broadcast>("broadcast", "hooteproto.v1.Broadcast", vectors);
}

#[test]
fn every_payload_case_round_trips_through_the_typed_api() {
    for (name, bytes) in cases("hooteproto.v1.Envelope", "payload", |m, n| {
        set(m, "id", Value::String(n.into()));
    }) {
        let envelope = Envelope::decode(bytes.as_slice()).expect("decode");
        let payload = envelope
            .payload
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: payload lost in decoding"));
        assert_eq!(payload.name(), name, "generated name() agrees with the schema");
        let again = Envelope::decode(envelope.encode_to_vec().as_slice()).expect("re-decode");
        assert_eq!(again, envelope, "{name}: typed round trip");
    }
}

/// Maps with many keys, integer-like and non-ASCII ones among them, at several depths. Every
/// language must write the entries sorted by key bytes ("10" < "2" < "9" < "Z" < "_" < "b" <
/// "é"), which sorted insertion alone cannot do in JavaScript: an object lists integer-like
/// keys first, in numeric order.
#[test]
fn map_vectors_match_byte_for_byte() {
    use hooteproto::v1::{GetPromptRequest, LuaEvalRequest, envelope::Payload};
    use prost_types::value::Kind as K;
    const KEYS: [&str; 8] = ["b", "10", "9", "a", "Z", "é", "_", "2"];
    let value = |kind| prost_types::Value { kind: Some(kind) };
    let leaf = prost_types::Struct {
        fields: KEYS
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), value(K::NumberValue(i as f64))))
            .collect(),
    };
    let mut params = leaf.clone();
    params
        .fields
        .insert("nested".into(), value(K::StructValue(leaf.clone())));
    params.fields.insert(
        "list".into(),
        value(K::ListValue(prost_types::ListValue {
            values: vec![value(K::StructValue(leaf))],
        })),
    );
    let envelope = |id: &str, payload| Envelope {
        id: format!("golden-{id}"),
        payload: Some(payload),
        ..Default::default()
    };
    let struct_keys = envelope(
        "struct_keys",
        Payload::LuaEval(LuaEvalRequest {
            code: "return params".into(),
            params: Some(params.into()),
        }),
    );
    let prompt_arguments = envelope(
        "prompt_arguments",
        Payload::GetPrompt(GetPromptRequest {
            name: "write-script".into(),
            arguments: KEYS.iter().map(|k| (k.to_string(), format!("value of {k}"))).collect(),
        }),
    );
    check_dir::<Envelope>(
        "maps",
        "hooteproto.v1.Envelope",
        vec![
            ("struct_keys".into(), struct_keys.encode_to_vec()),
            ("prompt_arguments".into(), prompt_arguments.encode_to_vec()),
        ],
    );
}
