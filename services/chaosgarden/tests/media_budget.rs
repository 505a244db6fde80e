//! Media is budgeted: WAVs outside 8–384 kHz are refused, decoded media stays within the
//! media budget (an edit or a render past it is refused with RESOURCE_EXHAUSTED, naming the
//! budget), and what a removed region held is freed, so the budget is free again.

mod common;

use common::*;
use hooteproto::v1::{self as pb, ErrorCode};

const MIB: u64 = 1 << 20;

fn silence(rate: u32, seconds: f64) -> Vec<u8> {
    click_wav(rate, (rate as f64 * seconds) as usize, &[0], 0.5)
}

async fn add(garden: &Garden, hash: &str, beats: f64) -> Result<pb::TimelineRegion, hooteproto::Error> {
    garden
        .client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: hash.into(),
            position_beats: beats,
            gain_db: 0.0,
            ..Default::default()
        })
        .await
        .map(|reply| reply.region.expect("region"))
}

async fn remove(garden: &Garden, id: &str) {
    garden
        .client
        .call(pb::TimelineRemoveRequest { id: id.into() })
        .await
        .expect("remove");
}

async fn held(garden: &Garden) -> u64 {
    garden.studio.editor.lock().await.media_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wavs_outside_8_to_384_khz_are_refused_naming_the_rate_and_the_bounds() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    for rate in [1, 4_000, 7_999, 384_001, 1_000_000] {
        let hash = cas_put(
            dir.path(),
            &silence(rate, 0.01_f64.max(16.0 / rate as f64)),
            "audio/wav",
        );
        let error = add(&garden, &hash, 0.0).await.expect_err("refused");
        assert_eq!(error.code(), ErrorCode::InvalidArgument, "{rate} Hz: {error}");
        let text = error.to_string();
        assert!(
            text.contains(&format!("{rate} Hz")) && text.contains("8000") && text.contains("384000"),
            "{text}"
        );
    }
    for rate in [8_000, 384_000] {
        let hash = cas_put(dir.path(), &silence(rate, 0.5), "audio/wav");
        add(&garden, &hash, 0.0).await.expect("the bounds themselves are fine");
    }
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_edits_and_renders_are_refused_and_removal_frees_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |config| config.media_budget = 4 * MIB).await;
    // 10 s at 48 kHz: 3.7 MiB decoded, played as it is (no resampled copy).
    let big = cas_put(dir.path(), &silence(48_000, 10.0), "audio/wav");
    // 2 s at 44.1 kHz: 0.7 MiB decoded plus 0.7 MiB resampled to 48 kHz.
    let small = cas_put(dir.path(), &silence(44_100, 2.0), "audio/wav");

    let region = add(&garden, &big, 0.0).await.expect("3.7 MiB fits in 4 MiB");
    let with_big = held(&garden).await;
    assert_eq!(with_big, 480_000 * 8, "one decoded copy, shared with the clip");
    // The same object again costs nothing more.
    let twin = add(&garden, &big, 32.0).await.expect("the same WAV again is free");
    assert_eq!(held(&garden).await, with_big);

    let error = add(&garden, &small, 64.0).await.expect_err("over the budget");
    assert_eq!(error.code(), ErrorCode::ResourceExhausted, "{error}");
    assert!(error.to_string().contains("4.0 MiB"), "names the budget: {error}");
    assert!(
        error.to_string().contains("--media-budget"),
        "says how to raise it: {error}"
    );
    assert_eq!(held(&garden).await, with_big, "the refused WAV is not kept");

    // A render at another rate needs its own audio: 10 s at 96 kHz is 7.3 MiB.
    let error = garden
        .client
        .call(pb::TimelineRenderRequest {
            from_beats: 0.0,
            to_beats: 20.0,
            sample_rate: 96_000,
        })
        .await
        .expect_err("a render past the budget");
    assert_eq!(error.code(), ErrorCode::ResourceExhausted, "{error}");
    // A short one at an odd rate works, and keeps nothing.
    let rendered = garden
        .client
        .call(pb::TimelineRenderRequest {
            from_beats: 0.0,
            to_beats: 1.0,
            sample_rate: 22_050,
        })
        .await
        .expect("half a second at 22.05 kHz");
    assert_eq!(rendered.frames, 11_025);
    let (_, samples) = read_wav(dir.path(), &rendered.cas_hash);
    assert!((samples[0] - 0.5).abs() < 1e-6, "the click is rendered");
    assert_eq!(held(&garden).await, with_big, "renders keep nothing");

    // Removing both regions frees the object: the budget is free again.
    remove(&garden, &region.region_id).await;
    assert_eq!(held(&garden).await, with_big, "still used by its twin");
    remove(&garden, &twin.region_id).await;
    assert_eq!(held(&garden).await, 0);
    add(&garden, &small, 64.0).await.expect("fits once the big WAV is gone");
    let small_held = held(&garden).await;
    assert!(
        (88_200 * 8..=(88_200 + 96_000) * 8).contains(&small_held),
        "decoded plus resampled: {small_held}"
    );
    garden.stop().await;
}
