#![no_main]
#[path = "../checks/lua_value.rs"]
mod check;
libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
