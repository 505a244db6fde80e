//! Hostile and malformed input at a ROUTER: the server never crashes, answers
//! INVALID_ARGUMENT / UNIMPLEMENTED where an id can be read, drops the rest, counts
//! everything, and keeps answering valid requests.

mod common;

use common::{TestService, config, raw_dealer, raw_exchange, start};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{Envelope, ErrorCode, PingRequest};
use hooteproto::wire::{self, PROTOCOL};
use hooteproto::{Client, ClientConfig, Key};
use prost::Message as _;

fn ping_envelope(id: &str) -> Vec<u8> {
    Envelope {
        id: id.into(),
        payload: Some(Payload::Ping(PingRequest {})),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Decodes a raw reply and returns (id, error code) of its Error payload.
fn error_reply(frames: &[Vec<u8>]) -> (String, ErrorCode) {
    let envelope = wire::decode(frames, None, wire::DEFAULT_MAX_MESSAGE_SIZE).expect("well-formed reply");
    match envelope.payload {
        Some(Payload::Error(e)) => (envelope.id, ErrorCode::try_from(e.code).expect("known code")),
        other => panic!("expected an Error reply, got {other:?}"),
    }
}

async fn still_serving(endpoint: &str) {
    let client = Client::connect(ClientConfig::new(endpoint)).expect("connect");
    client
        .call(PingRequest {})
        .await
        .expect("server still answers valid requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_dropped_and_counted() {
    let server = start(config(), TestService::default());
    let endpoint = server.endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let raw = raw_dealer(&endpoint);
        raw.set_rcvtimeo(300).expect("rcvtimeo");
        let junk: Vec<Vec<Vec<u8>>> = vec![
            vec![b"\xff\x00garbage".to_vec()],
            vec![vec![]],
            vec![vec![0xAB; 1000], vec![1, 2, 3]],
            vec![PROTOCOL.to_vec(), vec![], vec![0xFF; 64]],
            vec![vec![7; 10], vec![8; 10], vec![9; 10], vec![10; 10], vec![11; 10]],
        ];
        for frames in &junk {
            assert!(
                raw_exchange(&raw, frames).is_none(),
                "nothing readable to answer: {frames:?}"
            );
        }
    })
    .await
    .expect("raw peer");
    still_serving(&server.endpoint).await;
    let stats = server.shutdown().await;
    assert_eq!(stats.malformed, 5, "{stats:?}");
    assert_eq!(stats.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readable_ids_get_invalid_argument_or_unimplemented() {
    let server = start(config(), TestService::default());
    let endpoint = server.endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let raw = raw_dealer(&endpoint);

        // Wrong protocol frame, valid envelope.
        let reply = raw_exchange(&raw, &[b"HOOT/2".to_vec(), vec![], ping_envelope("wrong-proto")]).expect("reply");
        assert_eq!(error_reply(&reply), ("wrong-proto".into(), ErrorCode::InvalidArgument));

        // Two frames instead of three: the last one still names an id.
        let reply = raw_exchange(&raw, &[PROTOCOL.to_vec(), ping_envelope("two-frames")]).expect("reply");
        assert_eq!(error_reply(&reply), ("two-frames".into(), ErrorCode::InvalidArgument));

        // Readable id, payload that does not decode (lua_eval whose body has an invalid wire type).
        let mut bad = Envelope {
            id: "bad-payload".into(),
            ..Default::default()
        }
        .encode_to_vec();
        bad.extend_from_slice(&[0xA2, 0x01, 2, 0x0F, 0x00]); // tag 20 (varint 162), wire type 2, 2 bytes
        let reply = raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![], bad]).expect("reply");
        assert_eq!(error_reply(&reply), ("bad-payload".into(), ErrorCode::InvalidArgument));

        // A payload case from a newer schema (field 999): UNIMPLEMENTED.
        let mut newer = Envelope {
            id: "from-the-future".into(),
            ..Default::default()
        }
        .encode_to_vec();
        newer.extend_from_slice(&[0xBA, 0x3E, 0]); // tag 999, wire type 2, length 0
        let reply = raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![], newer]).expect("reply");
        assert_eq!(
            error_reply(&reply),
            ("from-the-future".into(), ErrorCode::Unimplemented)
        );

        // No id at all: dropped.
        let anonymous = Envelope {
            payload: Some(Payload::Ping(PingRequest {})),
            ..Default::default()
        };
        raw.set_rcvtimeo(300).expect("rcvtimeo");
        assert!(raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![], anonymous.encode_to_vec()]).is_none());

        // An id longer than 128 bytes: dropped (it would be echoed in the reply).
        assert!(raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![], ping_envelope(&"i".repeat(200))]).is_none());
    })
    .await
    .expect("raw peer");
    still_serving(&server.endpoint).await;
    let stats = server.shutdown().await;
    assert_eq!(stats.malformed, 5, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_missing_signatures_are_dropped_never_executed() {
    let key = Key::new(b"a-shared-key-of-some-length".to_vec()).expect("key");
    let mut server_config = config();
    server_config.key = Some(key.clone());
    let server = start(server_config, TestService::default());
    let endpoint = server.endpoint.clone();
    let signer = key.clone();
    tokio::task::spawn_blocking(move || {
        let raw = raw_dealer(&endpoint);
        raw.set_rcvtimeo(300).expect("rcvtimeo");
        let body = ping_envelope("unsigned");
        assert!(raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![], body]).is_none());
        let body = ping_envelope("forged");
        assert!(raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![0x42; 32], body]).is_none());
        let body = ping_envelope("short-sig");
        assert!(raw_exchange(&raw, &[PROTOCOL.to_vec(), vec![1, 2, 3], body]).is_none());
        // Signed for different bytes than sent (tampered in transit).
        let signature = signer.sign(&ping_envelope("original")).to_vec();
        assert!(raw_exchange(&raw, &[PROTOCOL.to_vec(), signature, ping_envelope("tampered")]).is_none());
        // Correctly signed: answered, and the reply is signed with the same key.
        let body = ping_envelope("signed");
        let reply = raw_exchange(&raw, &[PROTOCOL.to_vec(), signer.sign(&body).to_vec(), body]).expect("reply");
        let envelope = wire::decode(&reply, Some(&signer), wire::DEFAULT_MAX_MESSAGE_SIZE).expect("signed reply");
        assert_eq!(envelope.id, "signed");
    })
    .await
    .expect("raw peer");
    let stats = server.shutdown().await;
    assert_eq!((stats.unauthenticated, stats.requests), (4, 1), "{stats:?}");
}

/// A hand-written ZMTP 3.0 peer: greeting, READY, then one frame header announcing 1 TiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_announcing_one_tebibyte_is_cut_off() {
    let server = start(config(), TestService::default());
    let address = server.endpoint.trim_start_matches("tcp://").to_string();
    tokio::task::spawn_blocking(move || {
        let closed = testkit::one_tebibyte_frame(&address);
        assert!(closed, "the server kept a connection that announced a 1 TiB frame");
    })
    .await
    .expect("raw ZMTP peer");
    still_serving(&server.endpoint).await;
    server.shutdown().await;
}
