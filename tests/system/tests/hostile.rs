//! Hostile input at every service's ROUTER (the real binaries): a raw ZMTP peer announcing a
//! 1 TiB frame; random and mutated multipart messages; a wrong protocol frame; an unknown
//! payload case; JSON values nested 10,000 deep; a huge string in every field of every request
//! the schema has; and, with a key set, unsigned and wrongly signed messages. Each case gets
//! the documented answer or drop (schema/PROTOCOL.md §7), and the service keeps answering.

use hooteproto::Key;
use hooteproto::json::message_descriptor;
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{Envelope, ErrorCode, PingRequest};
use hooteproto::wire::{self, DEFAULT_MAX_MESSAGE_SIZE, PROTOCOL};
use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, Value};
use rand::{Rng, SeedableRng};
use system_tests::{Cluster, Service, still_serving};

const KEY: &str = "a shared key for the hostile tests";

fn raw_dealer(endpoint: &str, timeout_ms: i32) -> zmq::Socket {
    let socket = zmq::Context::new().socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_rcvtimeo(timeout_ms).expect("rcvtimeo");
    socket.connect(endpoint).expect("connect");
    socket
}

fn exchange(socket: &zmq::Socket, frames: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    socket.send_multipart(frames, 0).expect("send");
    socket.recv_multipart(0).ok()
}

fn ping(id: &str) -> Envelope {
    Envelope {
        id: id.into(),
        payload: Some(Payload::Ping(PingRequest {})),
        ..Default::default()
    }
}

/// The reply's (id, payload case), checking it is well-formed HOOT/1.
fn reply(frames: &[Vec<u8>], key: Option<&Key>) -> (String, &'static str, Option<ErrorCode>) {
    let envelope = wire::decode(frames, key, DEFAULT_MAX_MESSAGE_SIZE).expect("a well-formed reply");
    let payload = envelope.payload.expect("a reply has a payload");
    let code = match &payload {
        Payload::Error(e) => Some(ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unknown)),
        _ => None,
    };
    (envelope.id, payload.name(), code)
}

/// A raw ZMTP peer announcing a 1 TiB frame: the service cuts the connection.
fn one_tebibyte_frame(endpoint: &str) {
    let closed = testkit::one_tebibyte_frame(endpoint.trim_start_matches("tcp://"));
    assert!(closed, "{endpoint} kept a connection that announced a 1 TiB frame");
}

/// Random frames and mutations of a valid request, sent back to back: every reply that comes
/// is well-formed.
fn random_and_mutated(endpoint: &str) {
    let socket = raw_dealer(endpoint, 500);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let valid = ping("mutant").encode_to_vec();
    for round in 0..400 {
        let frames: Vec<Vec<u8>> = if round % 2 == 0 {
            (0..rng.random_range(1..6))
                .map(|_| (0..rng.random_range(0..200)).map(|_| rng.random()).collect())
                .collect()
        } else {
            let mut body = valid.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..body.len());
                body[at] ^= 1 << rng.random_range(0..8);
            }
            body.truncate(rng.random_range(1..=body.len()));
            vec![PROTOCOL.to_vec(), vec![], body]
        };
        socket.send_multipart(&frames, 0).expect("send");
    }
    let mut answers = 0;
    while let Ok(answer) = socket.recv_multipart(0) {
        wire::decode(&answer, None, DEFAULT_MAX_MESSAGE_SIZE).expect("answers to junk are well-formed HOOT/1");
        answers += 1;
    }
    eprintln!("{endpoint}: 400 junk messages, {answers} answered (the rest dropped)");
}

/// A Struct nested `depth` levels deep, encoded by hand (no encoder would build it).
fn nested_struct(depth: usize) -> Vec<u8> {
    fn field(number: u32, body: &[u8], out: &mut Vec<u8>) {
        prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
        prost::encoding::encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    let mut structure = Vec::new();
    for _ in 0..depth {
        let mut value = Vec::new();
        field(5, &structure, &mut value); // Value.struct_value
        let mut entry = Vec::new();
        field(1, b"k", &mut entry);
        field(2, &value, &mut entry);
        structure.clear();
        field(1, &entry, &mut structure); // Struct.fields
    }
    structure
}

/// Every request case of the schema, each string field a 1 MiB string and each bytes field
/// 1 MiB (Shutdown excepted: it would do what it says).
fn huge_requests() -> Vec<(String, Vec<u8>)> {
    let envelope = message_descriptor("hooteproto.v1.Envelope").expect("Envelope");
    let payload = envelope.oneofs().find(|o| o.name() == "payload").expect("payload");
    let huge = "\u{1F3B5}".repeat(256 * 1024); // 1 MiB of UTF-8
    payload
        .fields()
        .filter(|f| !f.name().ends_with("_reply") && !["error", "success", "shutdown"].contains(&f.name()))
        .map(|field| {
            let Kind::Message(request) = field.kind() else {
                unreachable!("payload cases are messages")
            };
            let mut message = DynamicMessage::new(request.clone());
            for f in request.fields() {
                match f.kind() {
                    Kind::String if f.is_list() => {
                        message.set_field(&f, Value::List(vec![Value::String(huge.clone())]))
                    }
                    Kind::String if !f.is_map() => message.set_field(&f, Value::String(huge.clone())),
                    Kind::Bytes if !f.is_list() => {
                        message.set_field(&f, Value::Bytes(huge.clone().into_bytes().into()))
                    }
                    _ => {}
                }
            }
            let mut top = DynamicMessage::new(envelope.clone());
            top.set_field_by_name("id", Value::String(format!("huge-{}", field.name())));
            top.set_field(&field, Value::Message(message));
            (field.name().to_string(), top.encode_to_vec())
        })
        .collect()
}

/// An envelope whose payload is `case` (by field number) with `body` as its encoded message.
fn raw_envelope(id: &str, case: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Envelope {
        id: id.into(),
        ..Default::default()
    }
    .encode_to_vec();
    prost::encoding::encode_key(case, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// A request of `service` carrying a Struct nested 10,000 deep where it holds free-form JSON:
/// (case, encoded request). `cas_hash` names an object in the CAS.
fn nested_request(service: Service, cas_hash: &str) -> (&'static str, Vec<u8>) {
    use hooteproto::v1 as pb;
    let (case, mut request, field) = match service {
        Service::Luanette => {
            let request = pb::LuaEvalRequest {
                code: "return 1".into(),
                params: None,
            };
            ("lua_eval", request.encode_to_vec(), 2)
        }
        Service::Hootenanny => {
            let request = pb::ArtifactCreateRequest {
                cas_hash: cas_hash.into(),
                name: "deep".into(),
                ..Default::default()
            };
            ("artifact_create", request.encode_to_vec(), 5)
        }
        Service::Chaosgarden => {
            let request = pb::TimelineAddMarkerRequest {
                event_type: pb::TimelineEventType::CuePoint as i32,
                position_beats: 1.0,
                metadata: None,
            };
            ("timeline_add_marker", request.encode_to_vec(), 3)
        }
    };
    let deep = nested_struct(10_000);
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut request);
    prost::encoding::encode_varint(deep.len() as u64, &mut request);
    request.extend_from_slice(&deep);
    (case, request)
}

fn case_number(case: &str) -> u32 {
    message_descriptor("hooteproto.v1.Envelope")
        .and_then(|d| {
            d.get_field_by_name(case)
                .ok_or_else(|| hooteproto::json::JsonError::UnknownMessage(case.into()))
        })
        .map(|f| f.number())
        .expect("a payload case")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_router_survives_hostile_input() {
    let cluster = Cluster::start(&[]).await;
    let requests = huge_requests();
    let stored = cluster
        .client(Service::Hootenanny)
        .call(hooteproto::v1::CasStoreRequest {
            data: b"deep".to_vec(),
            mime_type: "text/plain".into(),
        })
        .await
        .expect("cas_store");
    for service in Service::ALL {
        let endpoint = cluster.endpoint(service);
        let name = service.name();

        let at = endpoint.clone();
        tokio::task::spawn_blocking(move || one_tebibyte_frame(&at))
            .await
            .expect("1 TiB peer");
        still_serving(&cluster, service).await;

        let at = endpoint.clone();
        tokio::task::spawn_blocking(move || random_and_mutated(&at))
            .await
            .expect("junk peer");
        still_serving(&cluster, service).await;

        let at = endpoint.clone();
        let (case, nested) = nested_request(service, &stored.hash);
        let requests = requests.clone();
        tokio::task::spawn_blocking(move || {
            let socket = raw_dealer(&at, 10_000);
            // Wrong protocol frame: INVALID_ARGUMENT to the readable id.
            let body = ping("wrong-protocol").encode_to_vec();
            let answer = exchange(&socket, &[b"HOOT/2".to_vec(), vec![], body]).expect("an answer to HOOT/2");
            assert_eq!(
                reply(&answer, None),
                ("wrong-protocol".into(), "error", Some(ErrorCode::InvalidArgument))
            );
            // A payload case from a newer schema: UNIMPLEMENTED.
            let body = raw_envelope("from-the-future", 9_999, &[]);
            let answer = exchange(&socket, &[PROTOCOL.to_vec(), vec![], body]).expect("an answer to case 9999");
            assert_eq!(
                reply(&answer, None),
                ("from-the-future".into(), "error", Some(ErrorCode::Unimplemented))
            );
            // JSON values nested 10,000 deep where the service holds free-form JSON:
            // INVALID_ARGUMENT, not a stack overflow.
            let body = raw_envelope(case, case_number(case), &nested);
            let answer = exchange(&socket, &[PROTOCOL.to_vec(), vec![], body]).expect("an answer to deep JSON");
            let (id, payload, code) = reply(&answer, None);
            assert_eq!(
                (id.as_str(), code),
                (case, Some(ErrorCode::InvalidArgument)),
                "{name}: {case} with JSON nested 10,000 deep was answered {payload}"
            );
            // A 1 MiB string in every field of every request: each gets a well-formed answer.
            for (case, body) in requests {
                let answer = exchange(&socket, &[PROTOCOL.to_vec(), vec![], body])
                    .unwrap_or_else(|| panic!("{name}: no answer to huge {case}"));
                let (id, _, _) = reply(&answer, None);
                assert_eq!(id, format!("huge-{case}"));
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        still_serving(&cluster, service).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_unsigned_and_forged_messages_are_dropped() {
    let cluster = Cluster::start(&[("HOOT_KEY", KEY)]).await;
    let key = Key::new(KEY.as_bytes().to_vec()).expect("key");
    let forger = Key::new(b"not the key the services hold".to_vec()).expect("key");
    for service in Service::ALL {
        let endpoint = cluster.endpoint(service);
        let (key, forger) = (key.clone(), forger.clone());
        tokio::task::spawn_blocking(move || {
            let socket = raw_dealer(&endpoint, 700);
            let body = ping("unsigned").encode_to_vec();
            assert!(
                exchange(&socket, &[PROTOCOL.to_vec(), vec![], body.clone()]).is_none(),
                "unsigned: dropped"
            );
            let forged = forger.sign(&body).to_vec();
            assert!(
                exchange(&socket, &[PROTOCOL.to_vec(), forged, body.clone()]).is_none(),
                "forged: dropped"
            );
            let mut tampered = wire::encode(&ping("tampered"), Some(&key), DEFAULT_MAX_MESSAGE_SIZE).expect("encode");
            tampered[2].push(0);
            assert!(
                exchange(&socket, &tampered).is_none(),
                "tampered after signing: dropped"
            );
            let signed = wire::encode(&ping("signed"), Some(&key), DEFAULT_MAX_MESSAGE_SIZE).expect("encode");
            let answer = exchange(&socket, &signed).expect("a signed ping is answered");
            assert_eq!(reply(&answer, Some(&key)).1, "ping_reply");
        })
        .await
        .expect("raw peer");
        still_serving(&cluster, service).await;
    }
}
