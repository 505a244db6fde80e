//! WAV and MIDI headers that lie (absurd rates, channel counts and lengths; sizes the file
//! does not have) are refused with INVALID_ARGUMENT before anything is allocated for what
//! they declare. A counting allocator records the largest single allocation made meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use hooteproto::v1::{self as pb, ErrorCode};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// A PCM WAV header declaring `data_len` bytes of samples, then `data` (maybe fewer).
fn wav(rate: u32, channels: u16, bits: u16, data_len: u32, data: &[u8]) -> Vec<u8> {
    let block_align = channels.wrapping_mul(bits / 8);
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&36u32.saturating_add(data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.wrapping_mul(block_align as u32).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// A MIDI file whose header promises 65,535 tracks and whose one track chunk claims 4 GiB.
fn lying_midi() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"MThd");
    out.extend_from_slice(&6u32.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::MAX.to_be_bytes());
    out.extend_from_slice(&480u16.to_be_bytes());
    out.extend_from_slice(b"MTrk");
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    out.extend_from_slice(&[0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_headers_are_refused_without_a_large_allocation() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    let cases = [
        (
            "1 Hz for 600 s (the issue's 644 bytes)",
            wav(1, 1, 8, 600, &[128; 600]),
            "1 Hz",
        ),
        ("4 GHz", wav(4_000_000_000, 1, 8, 64, &[0; 64]), "4000000000 Hz"),
        (
            "4 GiB of samples in 108 bytes",
            wav(48_000, 2, 16, u32::MAX - 3, &[0; 64]),
            "declares",
        ),
        (
            "600 s at 384 kHz in 1 KiB",
            wav(384_000, 2, 32, 384_000 * 8 * 600, &[0; 1024]),
            "declares",
        ),
        (
            "65,535 channels",
            wav(8_000, u16::MAX, 8, 65_535 * 4, &[0; 65_535 * 4]),
            "65535 channels",
        ),
        (
            "an hour at 8 kHz",
            wav(8_000, 1, 8, 8_000 * 3_600, &vec![0; 8_000 * 3_600]),
            "regions are limited",
        ),
    ];
    for (what, bytes, says) in cases {
        let hash = cas_put(dir.path(), &bytes, "audio/wav");
        drop(bytes);
        LARGEST.store(0, Ordering::Relaxed);
        let error = garden
            .client
            .call(pb::TimelineAddRegionRequest {
                cas_hash: hash,
                position_beats: 0.0,
                gain_db: 0.0,
                ..Default::default()
            })
            .await
            .expect_err(what);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert_eq!(error.code(), ErrorCode::InvalidArgument, "{what}: {error}");
        assert!(error.to_string().contains(says), "{what}: {error}");
        assert!(
            largest < 1 << 20,
            "{what}: refusing it allocated {largest} bytes at once"
        );
    }
    let hash = cas_put(dir.path(), &lying_midi(), "audio/midi");
    LARGEST.store(0, Ordering::Relaxed);
    let answer = garden
        .client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: hash,
            position_beats: 0.0,
            gain_db: 0.0,
            ..Default::default()
        })
        .await;
    let largest = LARGEST.load(Ordering::Relaxed);
    match answer {
        Err(error) => assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}"),
        Ok(reply) => panic!("a MIDI file with a lying header was placed: {reply:?}"),
    }
    assert!(
        largest < 1 << 20,
        "refusing the MIDI file allocated {largest} bytes at once"
    );
    garden.stop().await;
}
