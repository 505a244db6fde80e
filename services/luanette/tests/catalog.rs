//! Discovery over HOOT/1: tools, resources, prompts, completions, worker registration.

mod common;

use hooteproto::v1::{
    CompleteRequest, ErrorCode, GetPromptRequest, JobExecuteRequest, JobPollRequest, ListPromptsRequest,
    ListResourcesRequest, ListToolsRequest, PingRequest, PollMode, ReadResourceRequest, RegisterRequest,
    ScriptStoreRequest, WorkerRegistration, resource_content,
};
use hooteproto::{Client, ClientConfig};

async fn start(dir: &std::path::Path) -> (Client, tokio::sync::oneshot::Sender<()>) {
    let mut config = common::config(dir);
    config.name = "lua-test".into();
    let bound = luanette::bind(config).await.expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("luanette answers ping");
    (client, stop)
}

fn texts(reply: hooteproto::v1::ReadResourceReply) -> Vec<(String, String)> {
    reply
        .contents
        .into_iter()
        .map(|c| match c.content {
            Some(resource_content::Content::Text(text)) => (c.mime_type, text),
            other => panic!("expected text, got {other:?}"),
        })
        .collect()
}

const SCRIPT: &str = "function describe() return {name = 'arpeggio', description = 'Spreads a chord'} end\n\
                      function main(p) return 1 end";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_resources_prompts_and_completions_describe_the_service() {
    let dir = tempfile::tempdir().expect("tmp");
    let (client, _stop) = start(dir.path()).await;
    let tools: Vec<String> = client
        .call(ListToolsRequest {})
        .await
        .expect("tools")
        .tools
        .into_iter()
        .map(|t| t.name)
        .collect();
    let declared: Vec<String> = hooteproto::tools::Service::Luanette
        .tools()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(tools, declared, "luanette lists the tools the schema gives it");

    let script = client
        .call(ScriptStoreRequest {
            content: SCRIPT.into(),
            tags: vec!["arp".into(), "texture".into()],
            creator: "carol".into(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .expect("script");
    let job_id = client
        .call(JobExecuteRequest {
            script_hash: script.script_hash.clone(),
            params: None,
            tags: vec!["take".into()],
            ..Default::default()
        })
        .await
        .expect("execute")
        .job_id;
    client
        .call(JobPollRequest {
            job_ids: vec![job_id.clone()],
            timeout_ms: 5000,
            mode: PollMode::Any as i32,
        })
        .await
        .expect("poll");

    let listed = client.call(ListResourcesRequest::default()).await.expect("resources");
    let uris: Vec<&str> = listed.resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(uris.contains(&"lua://stdlib"));
    let script_uri = format!("lua://scripts/{}", script.script_hash);
    assert!(uris.contains(&script_uri.as_str()), "{uris:?}");
    let templates: Vec<&str> = listed.templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(templates, ["lua://scripts/{hash}", "lua://jobs/{id}"]);

    let read = |uri: String| {
        let client = client.clone();
        async move { client.call(ReadResourceRequest { uri }).await }
    };
    let stdlib = texts(read("lua://stdlib".into()).await.expect("stdlib"));
    assert_eq!(stdlib[0].0, "text/markdown");
    assert!(stdlib[0].1.contains("job.progress(fraction, message?)"));
    let script_contents = texts(read(script_uri).await.expect("script"));
    assert_eq!(script_contents[0], ("text/x-lua".to_string(), SCRIPT.to_string()));
    let info: serde_json::Value = serde_json::from_str(&script_contents[1].1).expect("json");
    assert_eq!(info["description"]["name"], "arpeggio");
    let job = texts(read(format!("lua://jobs/{job_id}")).await.expect("job"));
    let job: serde_json::Value = serde_json::from_str(&job[0].1).expect("json");
    assert_eq!(job["state"], "JOB_STATE_SUCCEEDED");
    for (uri, code) in [
        ("lua://jobs/nope", ErrorCode::NotFound),
        ("lua://elsewhere", ErrorCode::NotFound),
        ("file:///etc/passwd", ErrorCode::InvalidArgument),
    ] {
        assert_eq!(read(uri.into()).await.map_err(|e| e.code()).err(), Some(code), "{uri}");
    }

    let prompts: Vec<String> = client
        .call(ListPromptsRequest {})
        .await
        .expect("prompts")
        .prompts
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, ["write-script", "debug-script"]);
    let write = client
        .call(GetPromptRequest {
            name: "write-script".into(),
            arguments: [("goal".to_string(), "a walking bass line".to_string())].into(),
        })
        .await
        .expect("write-script");
    let text = &write.messages[0].text;
    assert!(text.contains("a walking bass line") && text.contains("main(params)") && text.contains("otel.traceparent"));
    let debug = client
        .call(GetPromptRequest {
            name: "debug-script".into(),
            arguments: [("job_id".to_string(), job_id.clone())].into(),
        })
        .await
        .expect("debug-script");
    assert!(debug.messages[0].text.contains(SCRIPT), "the job's script is included");
    let missing_goal = client
        .call(GetPromptRequest {
            name: "write-script".into(),
            arguments: Default::default(),
        })
        .await;
    assert_eq!(
        missing_goal.map_err(|e| e.code()).err(),
        Some(ErrorCode::InvalidArgument)
    );
    let unknown = client
        .call(GetPromptRequest {
            name: "compose-symphony".into(),
            arguments: Default::default(),
        })
        .await;
    assert_eq!(unknown.map_err(|e| e.code()).err(), Some(ErrorCode::NotFound));

    let complete = |context: &str, partial: &str| {
        let client = client.clone();
        let request = CompleteRequest {
            context: context.into(),
            partial: partial.into(),
        };
        async move { client.call(request).await.expect("complete") }
    };
    let hashes = complete("script_hash", &script.script_hash[..4]).await;
    assert_eq!(hashes.values, std::slice::from_ref(&script.script_hash));
    let ids = complete("resource:lua://jobs/{id}/id", &job_id[..6]).await;
    assert!(ids.values.contains(&job_id));
    let tags = complete("tag", "t").await;
    assert_eq!(tags.values, ["take", "texture"]);
    assert!(complete("script_hash", "zzz").await.values.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_register_and_are_listed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (client, _stop) = start(dir.path()).await;
    let pong = client.call(PingRequest {}).await.expect("ping");
    assert_eq!(pong.worker_id, "lua-test", "--name is the ping's worker id");
    let reply = client
        .call(RegisterRequest {
            registration: Some(WorkerRegistration {
                worker_id: String::new(),
                worker_type: "chaosgarden".into(),
                name: "stage-left".into(),
                capabilities: vec!["timeline".into(), "audio".into()],
                endpoint: "tcp://127.0.0.1:5555".into(),
                version: "0.1.0".into(),
            }),
        })
        .await
        .expect("register");
    assert!(reply.worker_id.starts_with("chaosgarden-"), "{}", reply.worker_id);
    assert!(reply.heartbeat_interval_ms > 0);
    let workers = client
        .call(ReadResourceRequest {
            uri: "lua://workers".into(),
        })
        .await
        .expect("workers");
    let Some(resource_content::Content::Text(json)) = &workers.contents[0].content else {
        panic!("text");
    };
    let workers: serde_json::Value = serde_json::from_str(json).expect("json");
    assert_eq!(workers[0]["worker_id"], reply.worker_id.as_str());
    assert_eq!(workers[0]["name"], "stage-left");
    assert_eq!(workers[0]["connected"], true);
    let nameless = client
        .call(RegisterRequest {
            registration: Some(WorkerRegistration::default()),
        })
        .await;
    assert_eq!(nameless.map_err(|e| e.code()).err(), Some(ErrorCode::InvalidArgument));
    let empty = client.call(RegisterRequest { registration: None }).await;
    assert_eq!(empty.map_err(|e| e.code()).err(), Some(ErrorCode::InvalidArgument));
}
