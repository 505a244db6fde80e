//! The real-time promise, checked: while the playhead plays clips, loops, seeks, adopts
//! new arrangements (tempo changes included) and publishes its clock, the audio thread
//! makes no heap allocation and frees nothing. A counting allocator watches that thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chaosgarden::engine::clock;
use chaosgarden::engine::playhead::{Arrangement, Command, Cue, CueKind, Placed};
use chaosgarden::time::{Meter, TempoMap};
use chaosgarden::{Engine, EngineConfig, Output};
use hooteproto::v1 as pb;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static FREES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

fn watched() -> bool {
    WATCHED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if watched() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if watched() {
            FREES.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if watched() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn arrangement(version: u64, bpm: f64) -> Arrangement {
    let mut map = TempoMap::new(bpm, Meter::default()).expect("map");
    map.set(8.0, bpm * 1.5, None).expect("change");
    let clip = |start: u64| Placed {
        start,
        gain: 0.5,
        samples: Arc::new((0..9600).map(|i| ((i as f32) * 0.01).sin()).collect()),
    };
    let marker = |beats: f64| Cue {
        beats,
        kind: CueKind::Marker(Arc::new(pb::TimelineMarker {
            marker_id: format!("marker-{beats}"),
            event_type: pb::TimelineEventType::CuePoint as i32,
            position_beats: beats,
            metadata: None,
        })),
    };
    Arrangement {
        version,
        sample_rate: 48_000,
        clips: vec![clip(0), clip(2_000), clip(30_000)],
        loop_range: Some(((0.0, 2.0), (map.sample_at(0.0, 48_000), map.sample_at(2.0, 48_000)))),
        cues: vec![marker(0.5), marker(1.0), marker(1.5)],
        map,
    }
}

#[test]
fn the_audio_thread_never_allocates_or_frees() {
    let (engine, mut playhead) = Engine::start_driven(EngineConfig {
        sample_rate: 48_000,
        block: 256,
        output: Output::Null,
        midi: None,
        trigger: None,
    })
    .expect("engine");
    assert_eq!(engine.backend(), "external");
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let audio = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0.0f32; 512];
            let (mut blocks, mut energy) = (0u64, 0.0f64);
            while running.load(Ordering::Relaxed) {
                let nanos = clock::nanos(Instant::now());
                WATCHED.with(|w| w.set(true));
                playhead.process(&mut buffer, nanos);
                WATCHED.with(|w| w.set(false));
                energy += buffer.iter().map(|s| s.abs() as f64).sum::<f64>();
                blocks += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (blocks, energy, playhead)
        })
    };
    let mut sent = 0;
    for round in 0..40u64 {
        sent = engine
            .adopt(arrangement(round + 1, 100.0 + round as f64))
            .expect("adopt");
        for command in [
            Command::Play,
            Command::Seek(1.9),
            Command::Stop,
            Command::Play,
            Command::Seek(0.0),
        ] {
            sent = engine.send(command).expect("send");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(engine.applied(sent));
    assert!(Instant::now() < deadline);
    // Let the loop wrap a few times (2 beats at ~140 bpm is under a second).
    std::thread::sleep(Duration::from_millis(1500));
    running.store(false, Ordering::Relaxed);
    let (blocks, energy, playhead) = audio.join().expect("audio thread");
    assert!(blocks > 1000, "the audio thread ran ({blocks} blocks)");
    assert!(energy > 0.0, "and played the clips");
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "allocations on the audio thread"
    );
    assert_eq!(FREES.load(Ordering::Relaxed), 0, "frees on the audio thread");
    drop(playhead);
    engine.shutdown();
}
