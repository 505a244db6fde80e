//! Where services keep their data, per the project conventions: `HOOT_DATA_DIR` (default
//! `$XDG_DATA_HOME/hootenanny`, i.e. `~/.local/share/hootenanny`) and `HOOT_CAS_ROOT`
//! (default `<data dir>/cas`). Each service keeps its own state in `<data dir>/<service>/`.

use std::path::PathBuf;

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
