//! Lua programs chosen from a grammar of the stdlib's own calls, run in a sandbox VM with
//! tight limits; see `fuzz/checks/lua_program.rs` for what must hold.
#![no_main]

#[path = "../checks/lua_program.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
