//! Replays the committed fuzz corpus (`fuzz/corpus/lua_value`) through the `lua_value` fuzz
//! target's own check, on stable, so every input the fuzzer found interesting stays checked
//! in CI without nightly or libFuzzer.

#[path = "../../../fuzz/checks/lua_value.rs"]
mod check;

#[test]
fn the_lua_value_fuzz_corpus_passes_its_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/lua_value");
    testkit::replay_corpus(&dir, 20, check::run);
}

#[path = "../../../fuzz/checks/lua_program.rs"]
mod program;

#[test]
fn the_lua_program_fuzz_corpus_passes_its_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/lua_program");
    testkit::replay_corpus(&dir, 20, program::run);
}
