//! Replays the committed fuzz corpus (`fuzz/corpus/envelope`) through the `envelope` fuzz
//! target's own check, on stable, so every input the fuzzer found interesting stays checked
//! in CI without nightly or libFuzzer.

#[path = "../fuzz/checks/envelope.rs"]
mod check;

#[test]
fn the_envelope_fuzz_corpus_passes_its_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope");
    testkit::replay_corpus(&dir, 20, check::run);
}
