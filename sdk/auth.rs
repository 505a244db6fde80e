//! Shared-key message signing (HOOT/1 frame 2): HMAC-SHA256 over the envelope bytes, where
//! the key comes from, and constant-time comparison of secrets.
//!
//! Every program finds the key the same way ([`Key::locate`]): a `--key-file` flag, else the
//! file named by `HOOT_KEY_FILE`, else the value of `HOOT_KEY`, else `<data dir>/hoot.key` when
//! that file exists (the file `holler up` creates on first start, mode 0600). The key itself is
//! never logged or shown: only the path it came from.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;

/// Env var naming a file that holds the key (the project convention).
pub const KEY_FILE_ENV: &str = "HOOT_KEY_FILE";
/// Env var holding the key itself, for environments where a file is awkward.
pub const KEY_ENV: &str = "HOOT_KEY";
/// Keys shorter than this are refused: they would be guessable.
pub const MIN_KEY_LEN: usize = 16;
/// Length of a signature frame.
pub const SIGNATURE_LEN: usize = 32;
/// The key file's name inside the data directory.
pub const KEY_FILE_NAME: &str = "hoot.key";
/// Random bytes in a generated key (written as 64 hex characters).
const GENERATED_KEY_BYTES: usize = 32;

/// `<data dir>/hoot.key`: where `holler up` keeps the key it creates and where every program
/// looks last.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE_NAME)
}

/// Where a key was found (for messages: a path or a variable's name, never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A `--key-file` flag.
    Flag(PathBuf),
    /// The file named by `HOOT_KEY_FILE`.
    EnvFile(PathBuf),
    /// The value of `HOOT_KEY`.
    Env,
    /// `<data dir>/hoot.key`.
    DataDir(PathBuf),
    /// Created just now at this path.
    Created(PathBuf),
}

impl KeySource {
    /// The file the key was read from, if it came from a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            KeySource::Flag(p) | KeySource::EnvFile(p) | KeySource::DataDir(p) | KeySource::Created(p) => Some(p),
            KeySource::Env => None,
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Flag(p) => write!(f, "--key-file {}", p.display()),
            KeySource::EnvFile(p) => write!(f, "{KEY_FILE_ENV}={}", p.display()),
            KeySource::Env => f.write_str(KEY_ENV),
            KeySource::DataDir(p) => write!(f, "{}", p.display()),
            KeySource::Created(p) => write!(f, "{} (created)", p.display()),
        }
    }
}

/// What a service binary does with its data directory and key before it starts: makes what it
/// writes private ([`crate::dirs::prepare`]: umask 077, the data directory created 0700), then
/// finds the key as every program does ([`Key::locate`]: `--key-file`, `HOOT_KEY_FILE`,
/// `HOOT_KEY`, `<data dir>/hoot.key`) and logs where it came from (never the key itself).
pub fn key_for_service(flag: Option<&Path>, data_dir: &Path) -> Result<Option<Key>, Error> {
    crate::dirs::prepare(data_dir)?;
    match Key::locate(flag, data_dir)? {
        Some((key, source)) => {
            tracing::info!(key = %source, "HOOT/1 messages must be signed with the shared key");
            Ok(Some(key))
        }
        None => {
            tracing::info!(
                looked_in = %default_key_file(data_dir).display(),
                "no shared key: unsigned messages are obeyed (loopback only, unless --insecure)"
            );
            Ok(None)
        }
    }
}

/// Compares two secrets (e.g. a bearer token) in time that depends on neither their content
/// nor their lengths: both are MACed under a fresh random key and the equal-length tags are
/// compared in constant time (`hmac`'s verify, which uses `subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let key: [u8; 32] = rand::random();
    let tag = |bytes: &[u8]| {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
        mac.update(bytes);
        mac
    };
    let expected = tag(a).finalize().into_bytes();
    tag(b).verify_slice(&expected).is_ok()
}

/// A shared secret used to sign and verify envelopes.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_LEN {
            return Err(Error::Config(format!(
                "HMAC key is {} bytes; at least {MIN_KEY_LEN} are required",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    /// The secret itself, for handing to a process that signs on this one's behalf (over a
    /// pipe, never a command line or environment other users can read).
    pub fn secret(&self) -> &[u8] {
        &self.0
    }

    /// A new random key: 32 random bytes, as 64 hex characters (so a key file is text and
    /// trailing-whitespace trimming can never change it).
    pub fn generate() -> Self {
        let bytes: [u8; GENERATED_KEY_BYTES] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(hex.into_bytes())
    }

    /// Reads a key file. Trailing whitespace (a final newline) is not part of the key. A file
    /// that others than its owner may read is used, with a warning naming its path and mode.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let mut bytes =
            std::fs::read(path).map_err(|e| Error::Config(format!("cannot read key file {}: {e}", path.display())))?;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                "the key file is readable by other users: chmod 600 it"
            );
        }
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Self::new(bytes).map_err(|e| Error::Config(format!("key file {}: {e}", path.display())))
    }

    /// The key named by a `--key-file` flag, else by `HOOT_KEY_FILE`, else `HOOT_KEY`; `None` if unset.
    pub fn from_flag_or_env(flag: Option<&Path>) -> Result<Option<Self>, Error> {
        if let Some(path) = flag {
            return Self::from_file(path).map(Some);
        }
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            return Self::from_file(Path::new(&path)).map(Some);
        }
        match std::env::var(KEY_ENV) {
            Ok(value) if !value.is_empty() => Self::new(value.into_bytes()).map(Some),
            _ => Ok(None),
        }
    }

    /// The key as every program finds it: `flag` (a `--key-file`), else the file named by
    /// `HOOT_KEY_FILE`, else `HOOT_KEY`, else `<data_dir>/hoot.key` if it exists. `None`: no key.
    /// A named file that cannot be read is an error; only the data directory's file is optional.
    pub fn locate(flag: Option<&Path>, data_dir: &Path) -> Result<Option<(Self, KeySource)>, Error> {
        Self::locate_with(flag, data_dir, |name| std::env::var_os(name))
    }

    /// [`Key::locate`] without where it came from.
    pub fn find(flag: Option<&Path>, data_dir: &Path) -> Result<Option<Self>, Error> {
        Ok(Self::locate(flag, data_dir)?.map(|(key, _)| key))
    }

    fn locate_with(
        flag: Option<&Path>,
        data_dir: &Path,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Option<(Self, KeySource)>, Error> {
        if let Some(path) = flag {
            return Ok(Some((Self::from_file(path)?, KeySource::Flag(path.to_path_buf()))));
        }
        if let Some(path) = env(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return Ok(Some((Self::from_file(&path)?, KeySource::EnvFile(path))));
        }
        if let Some(value) = env(KEY_ENV).filter(|v| !v.is_empty()) {
            let value = value
                .into_string()
                .map_err(|_| Error::Config(format!("{KEY_ENV} is not valid UTF-8")))?;
            return Ok(Some((Self::new(value.into_bytes())?, KeySource::Env)));
        }
        let path = default_key_file(data_dir);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(Some((Self::from_file(&path)?, KeySource::DataDir(path)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Config(format!("cannot read key file {}: {e}", path.display()))),
        }
    }

    /// The key in `path`, or a new random one written there (mode 0600, created atomically:
    /// a concurrent reader never sees a partial file, and two starters agree on one key).
    /// Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), Error> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Ok((Self::from_file(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Config(format!("cannot read key file {}: {e}", path.display()))),
        }
        let failed = |what: &str, e: std::io::Error| Error::Config(format!("cannot {what} {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::dirs::create_private_dir(dir)?;
        }
        let key = Self::generate();
        let temporary = path.with_file_name(format!(
            ".{KEY_FILE_NAME}.{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(&key.0)?;
            file.write_all(b"\n")?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(failed("write key file", e));
        }
        // A hard link never replaces an existing file: if another process created the key
        // first, this fails and its key is the one everybody uses.
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok((key, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((Self::from_file(path)?, false)),
            Err(e) => Err(failed("create key file", e)),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// The signature frame for these envelope bytes.
    pub fn sign(&self, envelope: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut mac = self.mac();
        mac.update(envelope);
        mac.finalize().into_bytes().into()
    }

    /// Whether `signature` is this key's signature of `envelope` (constant-time compare).
    pub fn verify(&self, envelope: &[u8], signature: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(envelope);
        mac.verify_slice(signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"s3cret token", b"s3cret token"));
        assert!(constant_time_eq(b"", b""));
        for other in [
            &b"s3cret tokem"[..],
            b"s3cret toke",
            b"s3cret token!",
            b"",
            b"S3cret token",
        ] {
            assert!(!constant_time_eq(b"s3cret token", other), "{other:?}");
        }
    }

    #[test]
    fn a_created_key_file_is_private_and_reused() {
        let dir = std::env::temp_dir().join(format!(
            "hoot-key-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let path = default_key_file(&dir.join("data"));
        let (first, created) = Key::load_or_create(&path).expect("create");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode {mode:o}");
        let dir_mode = std::fs::metadata(dir.join("data"))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700, "data dir mode {dir_mode:o}");
        let (again, created) = Key::load_or_create(&path).expect("reuse");
        assert!(!created);
        assert_eq!(first.0, again.0);
        assert_eq!(first.0.len(), 64, "64 hex characters");
        let entries: Vec<_> = std::fs::read_dir(dir.join("data")).expect("list").collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_key_is_found_flag_first_then_env_then_the_data_dir() {
        let dir = std::env::temp_dir().join(format!(
            "hoot-locate-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        assert!(
            Key::locate_with(None, &dir, no_env).expect("locate").is_none(),
            "nothing: no key"
        );
        let (in_data_dir, _) = Key::load_or_create(&default_key_file(&dir)).expect("create");
        let flag_file = dir.join("flag.key");
        std::fs::write(&flag_file, "a key from the flag, 16+ bytes\n").expect("write");
        let env_file = dir.join("env.key");
        std::fs::write(&env_file, "a key from HOOT_KEY_FILE\n").expect("write");

        let (key, source) = Key::locate_with(None, &dir, no_env).expect("locate").expect("found");
        assert_eq!(
            (key.0.clone(), source),
            (in_data_dir.0.clone(), KeySource::DataDir(default_key_file(&dir)))
        );
        let env = |name: &str| match name {
            KEY_FILE_ENV => Some(env_file.clone().into_os_string()),
            KEY_ENV => Some(OsString::from("a key from HOOT_KEY itself")),
            _ => None,
        };
        let (key, source) = Key::locate_with(None, &dir, env).expect("locate").expect("found");
        assert_eq!(
            (key.0, source),
            (
                b"a key from HOOT_KEY_FILE".to_vec(),
                KeySource::EnvFile(env_file.clone())
            )
        );
        let only_value = |name: &str| (name == KEY_ENV).then(|| OsString::from("a key from HOOT_KEY itself"));
        let (key, source) = Key::locate_with(None, &dir, only_value)
            .expect("locate")
            .expect("found");
        assert_eq!(
            (key.0, source),
            (b"a key from HOOT_KEY itself".to_vec(), KeySource::Env)
        );
        let (key, source) = Key::locate_with(Some(&flag_file), &dir, env)
            .expect("locate")
            .expect("found");
        assert_eq!(
            (key.0, source),
            (
                b"a key from the flag, 16+ bytes".to_vec(),
                KeySource::Flag(flag_file.clone())
            )
        );
        assert!(
            Key::locate_with(Some(&dir.join("missing")), &dir, no_env).is_err(),
            "a named file must exist"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = Key::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(std::str::from_utf8(&key.0).expect("hex")), "{shown}");
    }
}
