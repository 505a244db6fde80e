//! Where services keep their data, per the project conventions: `HOOT_DATA_DIR` (default
//! `$XDG_DATA_HOME/hootenanny`, i.e. `~/.local/share/hootenanny`) and `HOOT_CAS_ROOT`
//! (default `<data dir>/cas`). Each service keeps its own state in `<data dir>/<service>/`.
//!
//! What a service keeps is private to its user: [`prepare`] creates the data directory with
//! mode 0700 and sets the process's umask so that every file and directory created after it
//! (by this crate, sled, the CAS, …) is 0600 / 0700.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::Error;

/// The data directory: a flag's value, else `HOOT_DATA_DIR`, else the XDG default.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("HOOT_DATA_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| {
        let xdg = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share"));
        xdg.or(home).unwrap_or_else(|| PathBuf::from(".")).join("hootenanny")
    })
}

/// The shared CAS root: a flag's value, else `HOOT_CAS_ROOT`, else `<data dir>/cas`.
pub fn cas_root(flag: Option<PathBuf>, data_dir: &std::path::Path) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("HOOT_CAS_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| data_dir.join("cas"))
}

/// Makes every file and directory this process creates from now on private to its user (the
/// umask gains 077: files 0600, directories 0700). Process-wide; call it early in `main`.
pub fn restrict_new_files() {
    // SAFETY: umask(2) cannot fail and touches no memory; it only sets the process's mask.
    unsafe {
        let previous = libc::umask(0o077);
        libc::umask(previous | 0o077);
    }
}

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is left as it is,
/// with a warning if other users can enter it.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Config(format!("cannot create the directory {}: {e}", dir.display())))?;
    if let Ok(metadata) = std::fs::metadata(dir)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the data directory is open to other users (created by an older version?): chmod 700 it"
        );
    }
    Ok(())
}

/// What a service does with its data directory before it opens anything in it:
/// [`restrict_new_files`], then [`create_private_dir`].
pub fn prepare(data_dir: &Path) -> Result<(), Error> {
    restrict_new_files();
    create_private_dir(data_dir)
}
