//! The tool catalog generated from the schema's `(hooteproto.v1.tool)` options, and the tool
//! JSON form agents see: schemas that are valid JSON Schema and say what each field means,
//! enums by short name, arguments refused with the valid names, results that match their
//! output schema. The README's tool lists are checked against the catalog here too.

use hooteproto::json::{tool_input_schema, tool_output_schema, tool_request, tool_result};
use hooteproto::tools::{self, Service, TOOLS};
use hooteproto::v1::{self as pb, envelope::Payload};
use serde_json::{Value, json};

fn schemas(tool: &tools::Tool) -> (Value, Value) {
    (
        tool_input_schema(tool.request).expect("input schema"),
        tool_output_schema(tool.reply).expect("output schema"),
    )
}

/// Every `properties` object anywhere in a schema, with its path.
fn properties(schema: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (name, property) in props {
            out.push((format!("{path}.{name}"), property.clone()));
            properties(property, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        properties(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_service_has_tools_and_every_tool_is_routed_to_its_service() {
    assert_eq!(
        Service::ALL.map(Service::name),
        ["luanette", "hootenanny", "chaosgarden"]
    );
    for service in Service::ALL {
        assert!(service.tools().count() > 0, "{service} has tools");
    }
    for tool in TOOLS {
        assert_eq!(Service::for_tool(tool.name), Some(tool.service), "{}", tool.name);
        assert_eq!(tools::find(tool.name), Some(tool));
        assert!(!tool.description.is_empty());
        assert!(!(tool.read_only && tool.destructive), "{}", tool.name);
    }
    // Names no service serves are not routed (holler once sent orpheus_* to Luanette).
    for name in [
        "orpheus_generate",
        "musicgen_generate",
        "deepseek_query",
        "lua_",
        "ping",
    ] {
        assert_eq!(Service::for_tool(name), None, "{name}");
    }
    // The hints agree with what the services do.
    let hints = |name: &str| tools::find(name).map(|t| (t.read_only, t.destructive, t.idempotent));
    assert_eq!(hints("transport_status"), Some((true, false, true)));
    assert_eq!(hints("timeline_remove"), Some((false, true, false)));
    assert_eq!(hints("cas_store"), Some((false, false, true)));
    assert!(tools::find("job_execute").is_some_and(|t| t.open_world));
}

#[test]
fn every_schema_is_valid_json_schema_that_describes_its_fields() {
    let (mut described, mut total) = (0, 0);
    for tool in TOOLS {
        let (input, output) = schemas(tool);
        for (side, schema) in [("input", &input), ("output", &output)] {
            jsonschema::meta::validate(schema).unwrap_or_else(|e| panic!("{} {side} schema: {e}", tool.name));
            jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{} {side} schema: {e}", tool.name));
            assert_eq!(schema["type"], "object", "{} {side}", tool.name);
            let text = schema.to_string();
            assert!(
                !text.contains("UNSPECIFIED"),
                "{} {side} schema offers an unspecified value: {text}",
                tool.name
            );
        }
        let mut props = Vec::new();
        properties(&input, tool.name, &mut props);
        for (path, property) in &props {
            total += 1;
            match property["description"].as_str() {
                Some(text) if !text.is_empty() => described += 1,
                _ => eprintln!("no description: {path}"),
            }
        }
        for name in input["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("required names are strings");
            assert!(
                input["properties"].get(name).is_some(),
                "{}: required {name} is a property",
                tool.name
            );
        }
    }
    assert!(total > 50, "{total} input properties");
    assert_eq!(described, total, "every input property is described");
}

#[test]
fn schemas_carry_comments_required_fields_and_short_enum_names() {
    let seek = tools::find("transport_seek").expect("transport_seek");
    let (input, output) = schemas(seek);
    assert_eq!(
        input["properties"]["position_beats"]["description"],
        "The new position in beats (must be >= 0)."
    );
    assert_eq!(input["required"], json!(["position_beats"]));
    assert_eq!(
        output["properties"]["state"]["properties"]["playback"]["enum"],
        json!(["stopped", "playing"])
    );
    let marker = tools::find("timeline_add_marker").expect("timeline_add_marker");
    let (input, _) = schemas(marker);
    assert_eq!(
        input["properties"]["event_type"]["enum"],
        json!(["section_change", "beat_marker", "cue_point", "generate_transition"])
    );
    assert_eq!(input["required"], json!(["event_type", "position_beats"]));
    // Tools with nothing to require say so by leaving `required` out.
    let (input, _) = schemas(tools::find("transport_status").expect("transport_status"));
    assert!(input.get("required").is_none());
}

#[test]
fn arguments_take_enums_in_either_form_and_wrong_names_are_answered_with_the_valid_ones() {
    let marker = tools::find("timeline_add_marker").expect("timeline_add_marker");
    for event_type in [
        "section_change",
        "TIMELINE_EVENT_TYPE_SECTION_CHANGE",
        "Section_Change",
        "1",
    ] {
        let value = if event_type == "1" { json!(1) } else { json!(event_type) };
        let payload = tool_request(marker, &json!({"event_type": value, "position_beats": 4}))
            .unwrap_or_else(|e| panic!("{event_type}: {e}"));
        match payload {
            Payload::TimelineAddMarker(request) => {
                assert_eq!(
                    request.event_type,
                    pb::TimelineEventType::SectionChange as i32,
                    "{event_type}"
                );
                assert_eq!(request.position_beats, 4.0);
            }
            other => panic!("{other:?}"),
        }
    }
    let bad = tool_request(marker, &json!({"event_type": "drop", "position_beats": 0}))
        .expect_err("unknown enum value")
        .to_string();
    assert!(
        bad.contains("section_change, beat_marker, cue_point, generate_transition") && bad.contains("drop"),
        "{bad}"
    );

    let seek = tools::find("transport_seek").expect("transport_seek");
    let wrong = tool_request(seek, &json!({"beats": 4}))
        .expect_err("wrong name")
        .to_string();
    assert_eq!(wrong, "unknown field `beats`; valid fields: position_beats");
    let missing = tool_request(seek, &json!({})).expect_err("missing").to_string();
    assert_eq!(missing, "missing required field `position_beats`");
    // camelCase (proto3 JSON) names are accepted too.
    assert!(tool_request(seek, &json!({"positionBeats": 2})).is_ok());

    let tempo = tools::find("timeline_set_tempo").expect("timeline_set_tempo");
    let nested = tool_request(tempo, &json!({"change": {"bpm": 120}}))
        .expect_err("nested wrong name")
        .to_string();
    assert_eq!(
        nested,
        "unknown field `bpm` in `change`; valid fields: position_beats, tempo_bpm, time_signature"
    );
    let typed = tool_request(seek, &json!({"position_beats": "soon"}))
        .expect_err("wrong type")
        .to_string();
    assert!(!typed.contains("line 1"), "{typed}");
}

#[test]
fn results_use_short_enum_names_keep_zero_values_and_match_their_output_schema() {
    let state = pb::TransportState {
        playback: pb::PlaybackState::Stopped as i32,
        position_beats: 0.0,
        xruns: 0,
        ..Default::default()
    };
    let reply = Payload::TransportSeekReply(pb::TransportSeekReply { state: Some(state) });
    let json = tool_result(reply).expect("result");
    assert_eq!(json["state"]["playback"], "stopped");
    assert_eq!(json["state"]["position_beats"], 0.0);
    assert_eq!(json["state"]["xruns"], 0, "64-bit integers are numbers");
    let (_, output) = schemas(tools::find("transport_seek").expect("seek"));
    let validator = jsonschema::validator_for(&output).expect("schema");
    assert!(validator.is_valid(&json), "{json}");

    // An unset enum is left out rather than written as *_UNSPECIFIED.
    let reply = Payload::JobExecuteReply(pb::JobExecuteReply {
        job_id: "j1".into(),
        state: pb::JobState::Unspecified as i32,
    });
    let json = tool_result(reply).expect("result");
    assert_eq!(json, json!({"job_id": "j1"}));
}

/// The backticked names in a README section's "- Tools (`ListTools`): ..." bullet.
fn readme_tools(readme: &str, service: &str) -> Vec<String> {
    let section = readme
        .split("\n### ")
        .find(|s| s.starts_with(service))
        .unwrap_or_else(|| panic!("README has a ### {service} section"));
    let bullet = section
        .split("\n- ")
        .find(|b| b.starts_with("Tools (`ListTools`):"))
        .unwrap_or_else(|| panic!("README's {service} section lists its tools"));
    let list = bullet.trim_start_matches("Tools (`ListTools`):");
    let end = list.find([';', '.']).unwrap_or(list.len());
    list[..end].split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn the_readme_lists_each_services_tools_as_the_schema_declares_them() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for service in Service::ALL {
        let schema: Vec<String> = service.tools().map(|t| t.name.to_string()).collect();
        assert_eq!(
            readme_tools(&readme, service.name()),
            schema,
            "README.md's tool list for {service} differs from schema/ (the (hooteproto.v1.tool) options)"
        );
    }
}
