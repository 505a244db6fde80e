//! Hostile requests at the MCP endpoint of `holler up` (with a token): a wrong Origin, no
//! token, malformed JSON-RPC, a body past the size limit, and tool arguments nested 10,000
//! deep. Each gets its documented refusal, and the gateway keeps serving valid sessions.

mod common;

use common::{Mcp, Up};
use serde_json::json;

const TOKEN: &str = "a token for the hostile tests";

#[test]
fn the_gateway_refuses_hostile_requests_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let up = Up::start_with(
        &dir.path().join("data"),
        &[],
        &["--token-file", token_file.to_str().expect("utf-8 path")],
    );
    let http = reqwest::blocking::Client::new();
    let post = |body: Vec<u8>| {
        http.post(up.url())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .bearer_auth(TOKEN)
            .body(body)
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "1"}}});

    let status = post(initialize.to_string().into_bytes())
        .header("Origin", "http://evil.example")
        .send()
        .expect("POST")
        .status();
    assert_eq!(status, 403, "a foreign Origin is refused");
    let status = http
        .post(up.url())
        .header("Content-Type", "application/json")
        .body(initialize.to_string())
        .send()
        .expect("POST")
        .status();
    assert_eq!(status, 401, "no token, no entry");

    for junk in [&b"{not json"[..], b"[]", b"{\"hello\": 1}", b"\xff\xfe\x00", b""] {
        let reply = post(junk.to_vec()).send().expect("POST");
        assert!(
            reply.status().is_client_error(),
            "{:?} gets a 4xx, not {}",
            String::from_utf8_lossy(junk),
            reply.status()
        );
    }

    let giant = format!(
        "{{\"jsonrpc\": \"2.0\", \"id\": 2, \"method\": \"ping\", \"params\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(100 << 20)
    );
    // The gateway answers 413 from the length alone and closes the connection; a client still
    // sending the body may see that close (a broken pipe) before it reads the answer. Either
    // way the body was refused before it was read.
    match post(giant.into_bytes()).send() {
        Ok(reply) => assert_eq!(reply.status(), 413, "a 100 MiB body is refused before it is read"),
        Err(error) => assert!(
            error.is_request() && format!("{error:?}").contains("BodyWrite"),
            "a 100 MiB body is refused: {error:?}"
        ),
    }

    let mut mcp = Mcp::connect_with_token(&up.url(), Some(TOKEN));
    let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let session_post = |body: String| {
        let mut request = post(body.into_bytes());
        if let Some(session) = mcp.session_id() {
            request = request.header("mcp-session-id", session);
        }
        request.send().expect("POST").status()
    };
    let deep_call = format!(
        "{{\"jsonrpc\": \"2.0\", \"id\": 3, \"method\": \"tools/call\", \"params\": {{\"name\": \"lua_eval\", \"arguments\": {{\"code\": \"return 1\", \"params\": {deep}}}}}}}"
    );
    let shallow = deep_call.replace(&deep, "{\"a\": 1}");
    assert!(session_post(shallow).is_success(), "the same call, shallow, is served");
    let status = session_post(deep_call);
    assert!(status.is_client_error(), "JSON nested 10,000 deep is refused: {status}");

    let (is_error, value) = mcp.call("lua_eval", json!({"code": "return 6 * 7"}));
    assert!(!is_error, "the gateway still serves: {value}");
    assert_eq!(value["result"].as_f64(), Some(42.0), "{value}");
    assert!(up.stop(), "holler up exits cleanly");
}
