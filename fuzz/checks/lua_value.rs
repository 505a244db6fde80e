//! What the `lua_value` fuzz target checks for each input (also replayed on stable by
//! `services/luanette/tests/fuzz_corpus.rs`): any `google.protobuf.Value` a client can send
//! converts to Lua and back without a panic, and one round trip reaches a fixed point (a
//! second round trip changes nothing).

use prost::Message as _;

thread_local! {
    static LUA: mlua::Lua = mlua::Lua::new();
}

/// Runs the check on one input; panics on a violation.
pub fn run(data: &[u8]) {
    let Ok(value) = prost_types::Value::decode(data) else {
        return;
    };
    LUA.with(|lua| {
        let round_trip = |value: &prost_types::Value| {
            let lua_value = luanette::sandbox::to_lua(lua, value, 0).ok()?;
            luanette::sandbox::from_lua(&lua_value, 0).ok()
        };
        if let Some(once) = round_trip(&value) {
            let twice = round_trip(&once).expect("a value that came back from Lua converts again");
            assert_eq!(twice, once, "Lua ⇄ Value settles after one round trip");
        }
    });
}
