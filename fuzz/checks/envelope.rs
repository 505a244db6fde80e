//! What the `envelope` fuzz target checks for each input (also replayed on stable by
//! `tests/fuzz_corpus.rs`): HOOT/1 frames from untrusted bytes never panic, and whatever
//! decodes re-encodes to something that decodes to the same envelope.
//!
//! The input is split into frames: the first byte says how many (0–5); every frame but the
//! last is a length byte then that many bytes; the last takes the rest.

use hooteproto::Key;
use hooteproto::json::message_descriptor;
use hooteproto::wire;

/// The largest envelope the check accepts (small, so the limit itself is exercised).
const MAX: usize = 64 * 1024;

fn frames(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&count, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = usize::from(count % 6);
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        if i + 1 == count {
            frames.push(rest.to_vec());
            break;
        }
        let Some((&len, tail)) = rest.split_first() else { break };
        let len = usize::from(len).min(tail.len());
        frames.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    frames
}

/// Runs the check on one input; panics on a violation.
pub fn run(data: &[u8]) {
    let frames = frames(data);
    let key = Key::new(b"the fuzzing key, 32 bytes long!!".to_vec()).expect("a valid key");
    for key in [None, Some(&key)] {
        if let Ok(envelope) = wire::decode(&frames, key, MAX) {
            // Compared as bytes: a NaN in a Value is never equal to itself as a struct.
            let again = wire::encode(&envelope, key, usize::MAX).expect("a decoded envelope re-encodes");
            let back = wire::decode(&again, key, usize::MAX).expect("a re-encoded envelope decodes");
            let thrice = wire::encode(&back, key, usize::MAX).expect("and re-encodes");
            assert_eq!(thrice, again, "encode ∘ decode settles after one round trip");
        }
    }
    if let Some(body) = frames.last() {
        let _ = wire::peek_id(body);
        let descriptor = message_descriptor("hooteproto.v1.Envelope").expect("Envelope");
        if let Ok(canonical) = hooteproto::canonical::canonicalize(&descriptor, body) {
            let twice =
                hooteproto::canonical::canonicalize(&descriptor, &canonical).expect("canonical bytes are valid");
            assert_eq!(twice, canonical, "canonical form is a fixed point");
        }
        let _ = hooteproto::json::bytes_to_json("hooteproto.v1.Envelope", body);
    }
}
