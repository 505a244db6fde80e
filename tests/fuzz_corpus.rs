//! Replays the committed fuzz corpus (`fuzz/corpus/envelope`) through the `envelope` fuzz
//! target's own check, on stable, so every input the fuzzer found interesting stays checked
//! in CI without nightly or libFuzzer.

#[path = "../fuzz/checks/envelope.rs"]
mod check;

#[test]
fn the_envelope_fuzz_corpus_passes_its_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
        let path = entry.expect("a corpus entry").path();
        check::run(&std::fs::read(&path).expect("a corpus file"));
        inputs += 1;
    }
    assert!(inputs >= 20, "only {inputs} inputs in {}", dir.display());
}
