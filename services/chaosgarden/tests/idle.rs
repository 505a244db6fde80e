//! Idle means idle: with the transport stopped, the engine's threads (the marker scheduler
//! and the null backend's clock) sleep until a command comes, instead of polling; and a
//! `transport_play` still wakes them at once, markers firing on time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hooteproto::v1::{self as pb, TimelineEventType};

/// CPU time (user + system) the threads of this process whose names start with `prefix`
/// have used, in seconds (from /proc/self/task/*/stat).
fn thread_cpu(prefix: &str) -> (f64, usize) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    let mut threads = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: f64 = fields[11].parse().expect("utime");
        let stime: f64 = fields[12].parse().expect("stime");
        total += (utime + stime) / ticks;
        threads += 1;
    }
    (total, threads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_sleeps_and_play_still_fires_markers_on_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    add_marker(&garden.client, TimelineEventType::CuePoint, 0.5, serde_json::json!({})).await;
    // Thread names are cut to 15 bytes: "chaosgarden-sch", "chaosgarden-nul".
    let (before, threads) = thread_cpu("chaosgarden-");
    assert!(
        threads >= 2,
        "the scheduler and the null backend's clock: {threads} threads"
    );
    let window = Duration::from_secs(2);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let (after, _) = thread_cpu("chaosgarden-");
    let used = after - before;
    let share = used / started.elapsed().as_secs_f64();
    // Polling every 0.5 ms cost about half a core; sleeping costs a few wake-ups a second.
    assert!(
        share < 0.01,
        "stopped, the engine's threads used {:.0} ms of CPU in {:?} ({:.1}% of a core)",
        used * 1e3,
        window,
        share * 100.0
    );

    let mut fires = garden.fires();
    let played = Instant::now();
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    let fired = tokio::time::timeout(Duration::from_secs(5), fires.recv())
        .await
        .expect("the marker fires")
        .expect("a fired marker");
    // At 120 bpm, beat 0.5 is 250 ms after play.
    let after_play = played.elapsed();
    assert!(
        (Duration::from_millis(240)..Duration::from_millis(400)).contains(&after_play),
        "the marker at beat 0.5 fired {after_play:?} after play"
    );
    let late = fired.fired_nanos.saturating_sub(fired.ideal_nanos);
    assert!(late < 5_000_000, "fired {late} ns after its time");
    garden.stop().await;
}
