//! One trace from the MCP client's `traceparent` through Holler to Luanette and
//! Hootenanny, checked at a local OTLP/HTTP collector.

mod common;

use std::time::Duration;

use common::{Mcp, Up};
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

use testkit::hex;

#[test]
fn a_tool_call_joins_the_callers_trace_across_every_hop() {
    let collector = testkit::HttpServer::accepting();
    let data = tempfile::tempdir().expect("tmp");
    let up = Up::start(data.path(), &["--otlp-endpoint", &collector.url]);
    let mut mcp = Mcp::connect(&up.url());
    mcp.traceparent = Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-01"));
    let (failed, lua) = mcp.call("lua_eval", json!({"code": "return otel.traceparent()"}));
    assert!(!failed, "{lua}");
    let seen = lua["result"].as_str().expect("a traceparent string").to_string();
    assert_eq!(
        seen.split('-').nth(1),
        Some(TRACE_ID),
        "the script runs in the MCP client's trace: {seen}"
    );
    let (failed, stored) = mcp.call("cas_store", json!({"data": "aGk=", "mime_type": "text/plain"}));
    assert!(!failed, "{stored}");
    assert!(up.stop(), "holler up exits cleanly");
    collector.wait_for(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let exported: Vec<u8> = collector.requests().into_iter().flat_map(|r| r.body).collect();
    let contains = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&hex(TRACE_ID)), "spans were exported in the client's trace");
    assert!(contains(b"mcp.tool_call"), "the gateway's span");
    assert!(
        contains(b"lua_eval") && contains(b"cas_store"),
        "the backends' request spans"
    );
    let script_span = seen.split('-').nth(2).expect("span id");
    assert!(contains(&hex(script_span)), "Luanette's request span was exported");
}
