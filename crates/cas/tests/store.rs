//! The store on a real filesystem: round trips, idempotence, imports, hostile names,
//! prefixes, corruption, crash safety (SIGKILL mid-write) and two writers on one root.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cas::{Cas, CasError, ErrorKind, Hash};

fn store_in(dir: &tempfile::TempDir) -> Cas {
    Cas::open(dir.path().join("cas")).expect("open")
}

fn staging_files(cas: &Cas) -> usize {
    std::fs::read_dir(cas.root().join("tmp")).expect("tmp").count()
}

fn object_files(cas: &Cas) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(cas.root().join("objects"))
        .expect("objects")
        .flatten()
    {
        for file in std::fs::read_dir(dir.path()).expect("fanout").flatten() {
            if file.path().extension().is_none() {
                files.push(file.path());
            }
        }
    }
    files
}

/// Every object file's content hashes to its name: no partial or misnamed objects.
fn assert_all_objects_whole(cas: &Cas) -> usize {
    let files = object_files(cas);
    for path in &files {
        let dir = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("dir");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let hash = Hash::parse(&format!("{dir}{name}")).expect("object named by a hash");
        cas.verify(&hash).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    files.len()
}

fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

#[test]
fn store_read_inspect_and_store_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let bytes = b"MThd\x00\x00\x00\x06 a tiny midi file".to_vec();
    let stored = cas.store(&bytes, "audio/midi").expect("store");
    assert_eq!(stored.info.hash.to_string(), blake3::hash(&bytes).to_hex().to_string());
    assert!(!stored.already_existed);
    assert_eq!(cas.read(&stored.info.hash, 1 << 20, true).expect("read"), bytes);
    let info = cas.inspect(&stored.info.hash).expect("inspect");
    assert_eq!((info.size, info.mime_type.as_str()), (bytes.len() as u64, "audio/midi"));

    let again = cas.store(&bytes, "text/plain").expect("store again");
    assert!(again.already_existed);
    assert_eq!(again.info.mime_type, "audio/midi", "the first store's metadata stays");
    assert_eq!(object_files(&cas).len(), 1);
    assert_eq!(staging_files(&cas), 0, "no staging leftovers");
}

#[test]
fn import_file_hashes_what_it_stored_in_bounded_steps() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let source = dir.path().join("take.wav");
    let bytes = random_bytes(20 * 1024 * 1024 + 123);
    std::fs::write(&source, &bytes).expect("write source");
    let stored = cas.import_file(&source, "audio/wav").expect("import");
    assert_eq!(stored.info.hash, Hash::of(&bytes));
    assert_eq!(stored.info.size, bytes.len() as u64);
    assert!(source.exists(), "a copy leaves the source alone");
    let mut back = Vec::new();
    cas.open_reader(&stored.info.hash, true)
        .expect("open")
        .read_to_end(&mut back)
        .expect("read");
    assert!(back == bytes);
    assert!(cas.import_file(&source, "audio/wav").expect("again").already_existed);
    assert_eq!(staging_files(&cas), 0);
}

#[test]
fn import_move_takes_the_file_and_refuses_other_filesystems() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let source = dir.path().join("render.wav");
    let bytes = random_bytes(3 * 1024 * 1024);
    std::fs::write(&source, &bytes).expect("write");
    let stored = cas.import_move(&source, "audio/wav").expect("move");
    assert_eq!(stored.info.hash, Hash::of(&bytes));
    assert!(!source.exists(), "moved, not copied");
    cas.verify(&stored.info.hash).expect("whole");

    // /dev/shm is tmpfs, another filesystem than the temp dir's disk.
    let Ok(elsewhere) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let foreign = elsewhere.path().join("x.bin");
    std::fs::write(&foreign, b"somewhere else").expect("write");
    if std::fs::metadata(&foreign).is_ok() && !same_device(&foreign, dir.path()) {
        let error = cas.import_move(&foreign, "").expect_err("cross-device");
        assert!(matches!(error, CasError::CrossDevice(_)), "{error}");
        assert!(foreign.exists(), "a refused move leaves the file where it was");
    }
}

fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(a).map(|m| m.dev()).ok() == std::fs::metadata(b).map(|m| m.dev()).ok()
}

#[test]
fn hostile_names_never_reach_a_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let upper = "A".repeat(64);
    let long = "a".repeat(65);
    let short = "a".repeat(63);
    let nul = format!("{}\0", "a".repeat(63));
    for bad in [
        "../../../../etc/passwd",
        "",
        upper.as_str(),
        long.as_str(),
        short.as_str(),
        nul.as_str(),
        "zz",
        "0123456",
    ] {
        assert!(
            matches!(Hash::parse(bad), Err(CasError::InvalidHash(_))),
            "{bad:?} parsed"
        );
        if bad == short {
            continue; // 63 hex characters are a valid prefix (of nothing stored)
        }
        let resolved = cas.resolve(bad);
        assert_eq!(
            resolved.map_err(|e| e.kind()).err(),
            Some(ErrorKind::InvalidArgument),
            "{bad:?}"
        );
    }
    assert_eq!(
        cas.resolve(&short).map_err(|e| e.kind()).err(),
        Some(ErrorKind::NotFound)
    );
    let traversal = format!("../{}", "a".repeat(61));
    assert_eq!(
        cas.resolve(&traversal).map_err(|e| e.kind()).err(),
        Some(ErrorKind::InvalidArgument)
    );
}

#[test]
fn prefixes_resolve_when_unique() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let hash = cas.store(b"verse one", "").expect("store").info.hash;
    let text = hash.to_string();
    assert_eq!(cas.resolve(&text[..8]).expect("8 chars"), hash);
    assert_eq!(cas.resolve(&text[..20]).expect("20 chars"), hash);
    assert_eq!(cas.resolve(&text).expect("full"), hash);
    assert_eq!(
        cas.resolve(&text[..7]).map_err(|e| e.kind()).err(),
        Some(ErrorKind::InvalidArgument)
    );
    let missing = if text.starts_with("00000000") {
        "11111111"
    } else {
        "00000000"
    };
    assert_eq!(
        cas.resolve(missing).map_err(|e| e.kind()).err(),
        Some(ErrorKind::NotFound)
    );
    // Two names sharing 8 characters are astronomically rare by chance; plant a twin.
    let (dir_name, file_name) = text.split_at(2);
    let twin = format!("{}{}", &file_name[..6], "f".repeat(56));
    std::fs::write(cas.root().join("objects").join(dir_name).join(&twin), b"").expect("plant");
    let error = cas.resolve(&text[..8]).expect_err("ambiguous");
    assert!(matches!(error, CasError::Ambiguous { count: 2, .. }), "{error}");
    assert_eq!(cas.resolve(&text).expect("a full hash is never ambiguous"), hash);
}

#[test]
fn corruption_is_caught_by_verification() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let hash = cas.store(&random_bytes(100_000), "").expect("store").info.hash;
    let path = cas.object_path(&hash);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[50_000] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("tamper");
    assert!(matches!(cas.verify(&hash), Err(CasError::Corrupt { .. })));
    let error = cas.read(&hash, 1 << 20, true).expect_err("verified read");
    assert_eq!(error.kind(), ErrorKind::DataLoss, "{error}");
    assert_eq!(
        cas.read(&hash, 1 << 20, false)
            .expect("unverified read returns what is there"),
        bytes
    );
}

#[test]
fn limits_ranges_and_lost_metadata() {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = store_in(&dir);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let hash = cas.store(&bytes, "application/x-test").expect("store").info.hash;
    assert_eq!(
        cas.read(&hash, 9_999, false).map_err(|e| e.kind()).err(),
        Some(ErrorKind::ResourceExhausted)
    );
    assert_eq!(cas.read_range(&hash, 9_000, 0, 1_000).expect("tail"), bytes[9_000..]);
    assert_eq!(cas.read_range(&hash, 100, 50, 1_000).expect("range"), bytes[100..150]);
    assert_eq!(
        cas.read_range(&hash, 20_000, 10, 1_000).expect("past the end"),
        Vec::<u8>::new()
    );
    // A crash between the content and its metadata: inspect rebuilds the metadata.
    std::fs::remove_file(cas.object_path(&hash).with_extension("meta")).expect("lose meta");
    let info = cas.inspect(&hash).expect("inspect");
    assert_eq!(
        (info.size, info.mime_type.as_str()),
        (10_000, "application/octet-stream")
    );
    assert!(cas.object_path(&hash).with_extension("meta").exists(), "rebuilt");
    let unknown = Hash::of(b"never stored");
    assert_eq!(
        cas.inspect(&unknown).map_err(|e| e.kind()).err(),
        Some(ErrorKind::NotFound)
    );
}

fn writer_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join("cas-writer")
}

fn spawn_writer(root: &Path, seed: u64, count: u64) -> std::process::Child {
    Command::new(writer_binary())
        .args([root.to_str().expect("utf8"), &seed.to_string(), &count.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cas-writer (cargo builds examples before tests)")
}

#[test]
fn kill_9_mid_write_leaves_only_whole_objects_and_loses_no_acknowledged_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("cas");
    for round in 0..3 {
        let mut child = spawn_writer(&root, 1000 + round, 0);
        let stdout = child.stdout.take().expect("stdout");
        let mut acknowledged = Vec::new();
        let started = Instant::now();
        let mut lines = BufReader::new(stdout).lines();
        while started.elapsed() < Duration::from_millis(400 + 150 * round) {
            match lines.next() {
                Some(Ok(line)) => acknowledged.push(line),
                _ => break,
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        assert!(
            !acknowledged.is_empty(),
            "the writer acknowledged some objects before being killed"
        );
        let cas = Cas::open(&root).expect("reopen after a crash");
        for hash in &acknowledged {
            let hash = Hash::parse(hash).expect("hash");
            cas.verify(&hash)
                .unwrap_or_else(|e| panic!("acknowledged {hash} lost or damaged: {e}"));
        }
        let whole = assert_all_objects_whole(&cas);
        assert!(whole >= acknowledged.len());
    }
}

#[test]
fn two_processes_write_one_root_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("cas");
    // Same seed: both store the same 60 objects, racing on every one.
    let writers: Vec<_> = (0..2).map(|_| spawn_writer(&root, 42, 60)).collect();
    let mut reported = BTreeSet::new();
    for writer in writers {
        let output = writer.wait_with_output().expect("writer");
        assert!(output.status.success(), "a writer failed: {:?}", output.status);
        reported.extend(
            String::from_utf8(output.stdout)
                .expect("utf8")
                .lines()
                .map(str::to_string),
        );
    }
    let cas = Cas::open(&root).expect("open");
    assert_eq!(reported.len(), 60, "both reported the same 60 hashes");
    for hash in &reported {
        cas.verify(&Hash::parse(hash).expect("hash")).expect("whole");
    }
    assert_eq!(assert_all_objects_whole(&cas), 60);
    assert_eq!(staging_files(&cas), 0, "racing writers leave no staging files");
    let _ = std::io::stdout().flush();
}
