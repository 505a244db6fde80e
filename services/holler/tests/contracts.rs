//! What an MCP agent is promised, checked against a real `holler up`: every tool's input and
//! output schema is valid JSON Schema, every tool carries annotations from the schema's hints,
//! and every tool's real result (`structuredContent`) validates against its output schema.
//! Wrong arguments are answered with what is valid; error text says its code once.

mod common;

use std::collections::BTreeSet;

use common::{Mcp, Up};
use serde_json::{Value, json};

/// `tools/list`, by name.
fn tools(mcp: &mut Mcp) -> std::collections::BTreeMap<String, Value> {
    let listed = mcp.request("tools/list", json!({}));
    listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| (t["name"].as_str().expect("name").to_string(), t.clone()))
        .collect()
}

/// Calls a tool and checks its result against the tool's output schema; returns the result.
fn call(mcp: &mut Mcp, tools: &std::collections::BTreeMap<String, Value>, name: &str, arguments: Value) -> Value {
    let reply = mcp.request("tools/call", json!({"name": name, "arguments": arguments}));
    let result = &reply["result"];
    assert_ne!(result["isError"], json!(true), "{name} failed: {reply}");
    let structured = result["structuredContent"].clone();
    assert!(structured.is_object(), "{name} has structuredContent: {reply}");
    let text = result["content"][0]["text"].as_str().expect("text content");
    assert_eq!(
        serde_json::from_str::<Value>(text).expect("text is JSON"),
        structured,
        "{name}: the text is the structured result"
    );
    let schema = &tools[name]["outputSchema"];
    let validator = jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{name} output schema: {e}"));
    let errors: Vec<String> = validator.iter_errors(&structured).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{name} result does not match its outputSchema: {errors:?}\n{structured}"
    );
    structured
}

/// An error result's text.
fn refused(mcp: &mut Mcp, name: &str, arguments: Value) -> String {
    let reply = mcp.request("tools/call", json!({"name": name, "arguments": arguments}));
    assert_eq!(
        reply["result"]["isError"],
        json!(true),
        "{name} {arguments} must fail: {reply}"
    );
    reply["result"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_string()
}

#[test]
fn every_tool_keeps_its_contract_with_a_real_stack() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Up::start(dir.path(), &[]);
    let mut mcp = Mcp::connect(&up.url());
    let tools = tools(&mut mcp);

    // The catalog is what the schema declares, every tool with its contract.
    let declared: BTreeSet<&str> = hooteproto::tools::TOOLS.iter().map(|t| t.name).collect();
    assert_eq!(tools.keys().map(String::as_str).collect::<BTreeSet<_>>(), declared);
    for (name, tool) in &tools {
        let facts = hooteproto::tools::find(name).expect("declared");
        for side in ["inputSchema", "outputSchema"] {
            let schema = &tool[side];
            jsonschema::meta::validate(schema).unwrap_or_else(|e| panic!("{name} {side}: {e}"));
            assert_eq!(schema["type"], "object", "{name} {side}");
            assert!(!schema.to_string().contains("UNSPECIFIED"), "{name} {side}");
        }
        let hints = &tool["annotations"];
        assert_eq!(hints["readOnlyHint"], json!(facts.read_only), "{name}");
        assert_eq!(hints["destructiveHint"], json!(facts.destructive), "{name}");
        assert_eq!(hints["idempotentHint"], json!(facts.idempotent), "{name}");
        assert_eq!(hints["openWorldHint"], json!(facts.open_world), "{name}");
    }

    // Every tool, called for real, answers within its output schema.
    let mut called = BTreeSet::new();
    let mut run = |name: &str, arguments: Value| {
        called.insert(name.to_string());
        call(&mut mcp, &tools, name, arguments)
    };
    let eval = run("lua_eval", json!({"code": "print('hi') return {n = 6 * 7}"}));
    assert_eq!(eval["result"], json!({"n": 42.0}));
    let script = run(
        "script_store",
        json!({"content": "function describe() return {name = 'twice', params = {type = 'object'}} end\nfunction main(p) return p.n * 2 end", "tags": ["contract"]}),
    );
    let hash = script["script"]["script_hash"]
        .as_str()
        .expect("script_hash")
        .to_string();
    run("lua_describe", json!({"script_hash": &hash[..12]}));
    run("script_search", json!({"tag": "contract"}));
    let job = run("job_execute", json!({"script_hash": hash, "params": {"n": 4}}));
    let job_id = job["job_id"].as_str().expect("job_id").to_string();
    let polled = run(
        "job_poll",
        json!({"job_ids": [job_id], "timeout_ms": 10000, "mode": "all"}),
    );
    assert_eq!(polled["completed"][0]["state"], "succeeded", "{polled}");
    assert_eq!(polled["timed_out"], false, "zero values are present");
    run("job_status", json!({"job_id": job_id}));
    run("job_cancel", json!({"job_id": job_id}));
    let listed = run("job_list", json!({"status": "succeeded"}));
    assert!(listed["jobs"].as_array().is_some_and(|j| !j.is_empty()), "{listed}");
    let stats = run("job_stats", json!({}));
    assert_eq!(
        stats["busy_workers"], 0,
        "nothing runs now, and zero values are present: {stats}"
    );

    let stored = run("cas_store", json!({"data": "aGVsbG8=", "mime_type": "text/plain"}));
    let cas_hash = stored["hash"].as_str().expect("hash").to_string();
    assert_eq!(stored["size"], 5, "64-bit integers are numbers");
    run("cas_inspect", json!({"hash": &cas_hash[..10]}));
    run("cas_get", json!({"hash": cas_hash, "offset": 1, "length": 2}));
    let artifact = run(
        "artifact_create",
        json!({"cas_hash": cas_hash, "name": "greeting", "tags": ["contract"]}),
    );
    let artifact_id = artifact["artifact"]["artifact_id"]
        .as_str()
        .expect("artifact_id")
        .to_string();
    run("artifact_get", json!({"artifact_id": artifact_id}));
    run("artifact_list", json!({"tag": "contract"}));
    run(
        "graph_query",
        json!({"query": "{ artifacts(tag: \"contract\") { name } }"}),
    );
    run(
        "graph_bind",
        json!({"identity": "bass-synth", "hints": {"midi_port_patterns": ["*Bass*"]}}),
    );

    let stopped = run("transport_status", json!({}));
    assert_eq!(stopped["state"]["playback"], "stopped");
    assert_eq!(stopped["state"]["position_beats"], 0.0, "a zero position is shown");
    run("transport_seek", json!({"position_beats": 2}));
    run(
        "transport_loop",
        json!({"loop_range": {"enabled": true, "from_beats": 0, "to_beats": 8}}),
    );
    let playing = run("transport_play", json!({}));
    assert_eq!(playing["state"]["playback"], "playing");
    run("transport_stop", json!({}));
    let marker = run(
        "timeline_add_marker",
        json!({"event_type": "section_change", "position_beats": 16}),
    );
    assert_eq!(marker["marker"]["event_type"], "section_change");
    // The full proto name is accepted too.
    run(
        "timeline_add_marker",
        json!({"event_type": "TIMELINE_EVENT_TYPE_CUE_POINT", "position_beats": 20}),
    );
    run(
        "timeline_set_tempo",
        json!({"change": {"position_beats": 8, "tempo_bpm": 90}}),
    );
    let render = run("timeline_render", json!({"from_beats": 0, "to_beats": 1}));
    let wav = render["cas_hash"].as_str().expect("cas_hash").to_string();
    let region = run("timeline_add_region", json!({"cas_hash": wav, "position_beats": 4}));
    assert_eq!(region["region"]["kind"], "audio");
    let query = run("timeline_query", json!({}));
    assert_eq!(query["markers"].as_array().map(Vec::len), Some(2), "{query}");
    let region_id = region["region"]["region_id"].as_str().expect("region_id");
    let moved = run("timeline_move", json!({"id": region_id, "position_beats": 6}));
    assert_eq!(moved["region"]["position_beats"], 6.0, "{moved}");
    assert_eq!(moved["region"]["region_id"], region_id, "{moved}");
    let marker_id = marker["marker"]["marker_id"].as_str().expect("marker_id");
    run("timeline_remove", json!({"id": marker_id}));
    assert_eq!(
        called.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        declared,
        "every declared tool is exercised here"
    );

    // Wrong arguments name what is valid; an error says its code once.
    let wrong = refused(&mut mcp, "transport_seek", json!({"beats": 4}));
    assert!(wrong.starts_with("INVALID_ARGUMENT: "), "{wrong}");
    assert!(
        wrong.contains("`beats`") && wrong.contains("valid fields: position_beats"),
        "{wrong}"
    );
    let missing = refused(&mut mcp, "transport_seek", json!({}));
    assert!(missing.contains("missing required field `position_beats`"), "{missing}");
    let bad_enum = refused(
        &mut mcp,
        "timeline_add_marker",
        json!({"event_type": "drop", "position_beats": 1}),
    );
    assert!(
        bad_enum.contains("section_change, beat_marker, cue_point, generate_transition"),
        "{bad_enum}"
    );
    let boom = refused(&mut mcp, "lua_eval", json!({"code": "error('boom')"}));
    assert!(
        boom.starts_with("INVALID_ARGUMENT: ") && boom.contains("boom"),
        "{boom}"
    );
    assert!(!boom.contains("INVALID_ARGUMENT: INVALID_ARGUMENT"), "{boom}");
    let absent = refused(&mut mcp, "cas_inspect", json!({"hash": "0".repeat(64)}));
    assert_eq!(absent.matches("NOT_FOUND").count(), 1, "{absent}");

    assert!(up.stop(), "holler up exits cleanly");
}
