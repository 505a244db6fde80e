//! Hostile media at the real Chaosgarden binary: WAV headers that ask for absurd memory (a
//! 644-byte file declaring 1 Hz and 600 s, which once cost 220 MB per region once resampled;
//! a data chunk claiming 4 GiB), and renders at odd sample rates (which once kept 73–147 MB
//! each). Each is refused or forgotten, Chaosgarden's resident memory stays bounded, and it
//! keeps answering.

use std::time::{Duration, Instant};

use hooteproto::v1::{self as pb, ErrorCode, PingRequest};
use hooteproto::{Client, RequestOptions};
use system_tests::{Cluster, Service};

/// Growth of Chaosgarden's resident memory allowed over the whole test.
const RSS_SLACK: u64 = 64 << 20;

/// A PCM WAV header for `data_len` bytes of samples, followed by `data` (which may be shorter:
/// a header that lies).
fn wav(rate: u32, channels: u16, bits: u16, data_len: u32, data: &[u8]) -> Vec<u8> {
    let block_align = channels * (bits / 8);
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&36u32.saturating_add(data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Chaosgarden's pid: the process running the `chaosgarden` binary with `endpoint` among its
/// arguments (the harness does not hand out its children's pids).
fn chaosgarden_pid(endpoint: &str) -> u32 {
    let processes = std::fs::read_dir("/proc").expect("/proc");
    for entry in processes.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_chaosgarden = args
            .first()
            .is_some_and(|a| a.ends_with(b"/chaosgarden") || *a == b"chaosgarden");
        if is_chaosgarden && args.contains(&endpoint.as_bytes()) {
            return pid;
        }
    }
    panic!("no chaosgarden process serves {endpoint}");
}

/// Resident memory in bytes (VmRSS in /proc/<pid>/status).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib << 10
}

async fn store(cluster: &Cluster, bytes: Vec<u8>) -> String {
    cluster
        .client(Service::Hootenanny)
        .call(pb::CasStoreRequest {
            data: bytes,
            mime_type: "audio/wav".into(),
        })
        .await
        .expect("cas_store")
        .hash
}

async fn add_region(garden: &Client, hash: &str, beats: f64) -> Result<pb::TimelineRegion, hooteproto::Error> {
    garden
        .call(pb::TimelineAddRegionRequest {
            cas_hash: hash.into(),
            position_beats: beats,
            gain_db: 0.0,
            ..Default::default()
        })
        .await
        .map(|reply| reply.region.expect("a region"))
}

async fn still_answers(cluster: &Cluster, garden: &Client) {
    let started = Instant::now();
    let pong = garden
        .call_with(
            PingRequest {},
            RequestOptions {
                timeout: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )
        .await;
    assert!(
        pong.is_ok(),
        "chaosgarden stopped answering: {pong:?}\n{}",
        cluster.log(Service::Chaosgarden)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "chaosgarden answers, but slowly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_wav_headers_and_odd_rate_renders_keep_memory_bounded() {
    let cluster = Cluster::start(&[]).await;
    let endpoint = cluster.endpoint(Service::Chaosgarden);
    let pid = chaosgarden_pid(&endpoint);
    let garden = cluster.client(Service::Chaosgarden);
    still_answers(&cluster, &garden).await;
    let baseline = rss(pid);

    // The row from the issue: 644 bytes declaring 1 Hz, 8-bit mono, 600 s.
    let one_hertz = wav(1, 1, 8, 600, &[128; 600]);
    assert_eq!(one_hertz.len(), 644);
    let hash = store(&cluster, one_hertz).await;
    for beats in 0..64 {
        let error = add_region(&garden, &hash, beats as f64)
            .await
            .expect_err("a 1 Hz WAV is refused");
        assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
        let text = error.to_string();
        assert!(
            text.contains("1 Hz") && text.contains("8000") && text.contains("384000"),
            "the refusal names the rate and the bounds: {text}"
        );
    }

    // Headers that lie: a data chunk of 4 GiB in a file of a few bytes; 65,535 channels; 4 GHz.
    let lies = [
        ("4 GiB of samples", wav(48_000, 2, 16, u32::MAX - 3, &[0; 64])),
        ("65535 channels", wav(48_000, u16::MAX, 8, 65_535 * 4, &[0; 65_535 * 4])),
        ("4 GHz", wav(4_000_000_000, 1, 8, 64, &[0; 64])),
    ];
    for (what, bytes) in lies {
        let hash = store(&cluster, bytes).await;
        let error = add_region(&garden, &hash, 0.0).await.expect_err(what);
        assert_eq!(error.code(), ErrorCode::InvalidArgument, "{what}: {error}");
    }
    let after_refusals = rss(pid);
    assert!(
        after_refusals < baseline + RSS_SLACK,
        "RSS grew from {} MiB to {} MiB refusing hostile WAVs",
        baseline >> 20,
        after_refusals >> 20
    );
    still_answers(&cluster, &garden).await;

    // Renders at odd rates keep nothing once the region is gone: a 10 s 44.1 kHz WAV (3.5 MB
    // decoded), rendered at four rates, eight times over (this once kept 26 MB a round).
    let seconds = 10;
    let data = vec![0u8; 44_100 * 4 * seconds];
    let hash = store(&cluster, wav(44_100, 2, 16, data.len() as u32, &data)).await;
    for round in 0..8 {
        let region = add_region(&garden, &hash, 0.0).await.expect("a 20 s WAV is fine");
        for rate in [11_025, 22_050, 96_000, 192_000] {
            // One attempt with room to finish: a debug build renders 10 s at 192 kHz in
            // seconds, and retries would only pile renders up.
            let patient = RequestOptions {
                timeout: Some(Duration::from_secs(60)),
                attempt_timeout: Some(Duration::from_secs(60)),
                idempotent: Some(false),
                ..RequestOptions::default()
            };
            let request = pb::TimelineRenderRequest {
                from_beats: 0.0,
                to_beats: 0.0,
                sample_rate: rate,
            };
            let rendered = garden.call_with(request, patient).await.unwrap_or_else(|e| {
                panic!(
                    "round {round}: render at {rate} Hz: {e}\n{}",
                    cluster.log(Service::Chaosgarden)
                )
            });
            assert_eq!(rendered.sample_rate, rate);
        }
        garden
            .call(pb::TimelineRemoveRequest {
                id: region.region_id.clone(),
            })
            .await
            .expect("remove");
    }
    let after_renders = rss(pid);
    assert!(
        after_renders < baseline + RSS_SLACK,
        "RSS grew from {} MiB to {} MiB over 32 renders of a region since removed\n{}",
        baseline >> 20,
        after_renders >> 20,
        cluster.log(Service::Chaosgarden)
    );
    eprintln!(
        "chaosgarden RSS: {} MiB at start, {} MiB after the hostile WAVs, {} MiB after 32 odd-rate renders",
        baseline >> 20,
        after_refusals >> 20,
        after_renders >> 20
    );
    still_answers(&cluster, &garden).await;
}
