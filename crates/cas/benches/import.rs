//! `cargo bench -p cas --bench import`: importing a 1 GiB file, against `cp` and `b3sum`
//! on the same file in the same run, with this process's peak RSS.
//!
//! - P4a `import_file` (copy, hash, fsync, rename) vs `cp` and vs `cp` + `sync FILE` (our
//!   import is durable when it returns; plain `cp` is not).
//! - P4b `import_move` (rename, hash on all cores, fsync) vs `b3sum` (Debian package `b3sum`).
//!
//! Set `HOOT_BENCH_SIZE_MIB` to change the size (default 1024).

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn write_test_file(path: &Path, mib: usize) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    let mut block: Vec<u8> = (0..8 << 20).map(|_| rand::random::<u8>()).collect();
    for i in 0..mib / 8 {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes()); // no two blocks alike
        file.write_all(&block)?;
    }
    file.sync_all()
}

fn time_command(program: &str, args: &[&Path]) -> Option<Duration> {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| started.elapsed())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("import bench: run with `cargo bench -p cas --bench import`");
        return;
    }
    let mib: usize = std::env::var("HOOT_BENCH_SIZE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cas-import-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let source = dir.join("source.bin");
    let copy = dir.join("copy.bin");
    write_test_file(&source, mib).expect("write the test file");
    let gib = mib as f64 / 1024.0;
    let rate = |d: Duration| gib / d.as_secs_f64();

    // Warm the page cache the same way for everyone.
    let _ = time_command("cat", &[&source]);
    let cp = time_command("cp", &[&source, &copy]);
    let _ = std::fs::remove_file(&copy);
    let started = Instant::now();
    let cp_sync = time_command("cp", &[&source, &copy])
        .and(time_command("sync", &[&copy]))
        .map(|_| started.elapsed());
    let _ = std::fs::remove_file(&copy);
    let b3sum = time_command("b3sum", &[&source]);

    let cas = cas::Cas::open(dir.join("store")).expect("open store");
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let stored = cas.import_file(&source, "application/octet-stream").expect("import");
    let import = started.elapsed();
    let rss_after = peak_rss_mib();
    std::fs::remove_dir_all(dir.join("store")).expect("clean store");

    let cas = cas::Cas::open(dir.join("store")).expect("open store");
    let started = Instant::now();
    let moved = cas.import_move(&source, "application/octet-stream").expect("move");
    let import_move = started.elapsed();
    assert_eq!(stored.info.hash, moved.info.hash, "both imports name the same content");

    let show = |name: &str, d: Option<Duration>| match d {
        Some(d) => println!("    {name:<34} {:>7.3} s  {:>6.2} GiB/s", d.as_secs_f64(), rate(d)),
        None => println!("    {name:<34} (not available: apt-get install b3sum)"),
    };
    println!("P4  CAS import of a {mib} MiB file (page cache warm for all)");
    show("cp", cp);
    show("cp + sync FILE (durable)", cp_sync);
    show("cas import_file (durable)", Some(import));
    show("b3sum", b3sum);
    show("cas import_move (durable)", Some(import_move));
    let ratio = |ours: Duration, peer: Option<Duration>| {
        peer.map(|p| format!("{:.2}x", p.as_secs_f64() / ours.as_secs_f64()))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "    import_file throughput: {} of cp, {} of cp+sync      (goal: >= 0.9x cp)",
        ratio(import, cp),
        ratio(import, cp_sync)
    );
    println!(
        "    import_move throughput: {} of b3sum                    (goal: close to b3sum)",
        ratio(import_move, b3sum)
    );
    println!(
        "    peak RSS of this process: {rss_after:.1} MiB (was {rss_before:.1} MiB before the import)   (goal: <= 64 MiB)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
