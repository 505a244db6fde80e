//! Backends come and go under a running gateway: while Luanette is down its tools answer
//! "backend unavailable" (and leave tools/list) and the other backends keep working;
//! when it comes back on the same endpoint, its tools and calls work again. The CLI,
//! talking to the backends directly, sees the same.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Mcp;
use holler::backends::{Backends, Endpoints};
use serde_json::json;

async fn start_luanette(
    dir: &std::path::Path,
    bind: &str,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let mut config = luanette::Config::new(dir.to_path_buf());
    config.bind = bind.into();
    config.pub_bind = None;
    config.health_bind = None;
    let bound = luanette::bind(config).await.expect("luanette");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = bound
            .run(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, task)
}

fn tool_names(mcp: &mut Mcp) -> Vec<String> {
    let listed = mcp.request("tools/list", json!({}));
    listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_survives_a_backend_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua_endpoint = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let hoot_endpoint = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let (lua_stop, lua_task) = start_luanette(dir.path(), &lua_endpoint).await;
    let mut hoot = hootenanny::Config::new(dir.path().to_path_buf());
    hoot.bind = hoot_endpoint.clone();
    hoot.health_bind = None;
    let (hoot_stop, hoot_stopped) = tokio::sync::oneshot::channel::<()>();
    let hoot_task = tokio::spawn(hootenanny::run(hoot, async move {
        let _ = hoot_stopped.await;
    }));
    let endpoints = Endpoints {
        luanette: lua_endpoint.clone(),
        hootenanny: hoot_endpoint.clone(),
        chaosgarden: format!("tcp://127.0.0.1:{}", testkit::free_port()), // never started
    };
    let backends = Arc::new(Backends::connect(endpoints, None, "holler-test").expect("clients"));
    let config = holler::serve::ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let gateway = holler::serve::bind(config, backends).await.expect("gateway");
    let url = format!("http://{}/mcp", gateway.local_addr().expect("addr"));
    let (gateway_stop, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway_task = tokio::spawn(gateway.run(async move {
        let _ = gateway_stopped.await;
    }));

    let blocking = |f: Box<dyn FnOnce() + Send>| tokio::task::spawn_blocking(f);
    let session = Arc::new(std::sync::Mutex::new(None::<Mcp>));
    {
        let (session, url) = (session.clone(), url.clone());
        blocking(Box::new(move || {
            let mut mcp = Mcp::connect(&url);
            let names = tool_names(&mut mcp);
            assert!(names.contains(&"lua_eval".to_string()) && names.contains(&"cas_store".to_string()));
            assert!(
                !names.iter().any(|n| n.starts_with("transport_")),
                "chaosgarden is down: no transport tools"
            );
            let (failed, reply) = mcp.call("transport_status", json!({}));
            assert!(failed && reply.to_string().contains("UNAVAILABLE"), "{reply}");
            *session.lock().expect("lock") = Some(mcp);
        }))
        .await
        .expect("before");
    }
    // Luanette goes down. (A call already in flight when a backend dies waits out its
    // deadline; calls after the gateway's liveness window, 2 s, fail at once.)
    let _ = lua_stop.send(());
    lua_task.await.expect("luanette stopped");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    {
        let session = session.clone();
        blocking(Box::new(move || {
            let mut guard = session.lock().expect("lock");
            let mcp = guard.as_mut().expect("session");
            let asked = std::time::Instant::now();
            let (failed, reply) = mcp.call("lua_eval", json!({"code": "return 1"}));
            assert!(failed, "{reply}");
            assert!(asked.elapsed() < Duration::from_secs(2), "a down backend fails fast");
            let text = reply.to_string();
            assert!(text.contains("UNAVAILABLE") && text.contains("luanette"), "{text}");
            let (failed, reply) = mcp.call("cas_store", json!({"data": "aGk=", "mime_type": "text/plain"}));
            assert!(!failed, "hootenanny still works: {reply}");
            assert!(
                !tool_names(mcp).contains(&"lua_eval".to_string()),
                "a down backend's tools leave the list"
            );
        }))
        .await
        .expect("while down");
    }
    // Luanette comes back on the same endpoint; the same session works again.
    let (lua_stop, lua_task) = start_luanette(dir.path(), &lua_endpoint).await;
    {
        let session = session.clone();
        blocking(Box::new(move || {
            let mut guard = session.lock().expect("lock");
            let mcp = guard.as_mut().expect("session");
            let mut answered = None;
            for _ in 0..50 {
                let (failed, reply) = mcp.call("lua_eval", json!({"code": "return 40 + 2"}));
                if !failed {
                    answered = Some(reply);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert_eq!(answered.expect("luanette answers again")["result"].as_f64(), Some(42.0));
            assert!(tool_names(mcp).contains(&"lua_eval".to_string()), "its tools are back");
        }))
        .await
        .expect("after");
    }
    let _ = gateway_stop.send(());
    gateway_task.await.expect("join").expect("gateway stops");
    let _ = lua_stop.send(());
    lua_task.await.expect("luanette");
    let _ = hoot_stop.send(());
    hoot_task.await.expect("join").expect("hootenanny");
}
