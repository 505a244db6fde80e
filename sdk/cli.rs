//! The flags every service binary shares, declared once (feature `cli`): flatten
//! [`ServiceArgs`] into a service's clap struct and call [`ServiceArgs::resolve`].
//!
//! ```no_run
//! # use clap::Parser;
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     common: hooteproto::cli::ServiceArgs<hooteproto::cli::Hootenanny>,
//!     // ... the service's own flags
//! }
//! # fn demo() -> Result<(), hooteproto::Error> {
//! let args = Args::parse();
//! let common = args.common.resolve()?;
//! println!("binding {} with data in {}", common.bind, common.data_dir.display());
//! # Ok(()) }
//! ```
//!
//! `--bind` and `--health-bind` default to the service's [`crate::defaults`] and read its
//! own variables (`LUANETTE_BIND`, `HOOTENANNY_HEALTH_BIND`, ...); the rest read the shared
//! ones (`HOOT_DATA_DIR`, `HOOT_CAS_ROOT`, `HOOT_KEY_FILE`, `OTEL_EXPORTER_OTLP_ENDPOINT`).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::defaults::{self, ServiceDefaults};
use crate::{Error, Key};

/// Which service a [`ServiceArgs`] is for: its defaults and variable names.
pub trait ServiceKind: Clone + Send + Sync + 'static {
    /// The service's defaults.
    const DEFAULTS: ServiceDefaults;
}

/// [`ServiceArgs`] for Luanette.
#[derive(Debug, Clone, Copy, Default)]
pub struct Luanette;
impl ServiceKind for Luanette {
    const DEFAULTS: ServiceDefaults = defaults::LUANETTE;
}

/// [`ServiceArgs`] for Hootenanny.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hootenanny;
impl ServiceKind for Hootenanny {
    const DEFAULTS: ServiceDefaults = defaults::HOOTENANNY;
}

/// [`ServiceArgs`] for Chaosgarden.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chaosgarden;
impl ServiceKind for Chaosgarden {
    const DEFAULTS: ServiceDefaults = defaults::CHAOSGARDEN;
}

/// The flags every service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs<S: ServiceKind> {
    /// HOOT/1 ROUTER endpoint (`tcp://127.0.0.1:*` picks a free port).
    #[arg(long, env = S::DEFAULTS.bind_env, default_value = S::DEFAULTS.bind)]
    pub bind: String,
    /// grpc.health.v1 address, or "none".
    #[arg(long, env = S::DEFAULTS.health_bind_env, default_value = S::DEFAULTS.health_bind)]
    pub health_bind: String,
    /// File holding the shared HMAC key [default: $HOOT_KEY, else <data dir>/hoot.key if it exists].
    #[arg(long, env = "HOOT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Allow binding a non-loopback address without a key.
    #[arg(long)]
    pub insecure: bool,
    /// OTLP/HTTP collector for traces, e.g. http://127.0.0.1:4318 (none: spans are not exported).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
    /// Data directory [default: $XDG_DATA_HOME/hootenanny].
    #[arg(long, env = "HOOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The shared CAS root [default: <data dir>/cas].
    #[arg(long, env = "HOOT_CAS_ROOT")]
    pub cas_root: Option<PathBuf>,
    /// Where blobs live.
    #[command(flatten)]
    pub blobs: BlobArgs,
    #[arg(skip)]
    service: PhantomData<S>,
}

/// Where blobs live: every service, `holler up` and `holler cas put` take these.
#[derive(Debug, Clone, clap::Args)]
pub struct BlobArgs {
    /// Where blobs live: file:///path (a local CAS there) or s3://bucket[/prefix] (cluster
    /// mode; endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP) [default: the local CAS root].
    #[arg(long, env = "HOOT_BLOB_URL")]
    pub blob_url: Option<String>,
    /// This host's read-through cache of object storage [default: <data dir>/cache].
    #[arg(long, env = "HOOT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most the cache keeps, in bytes or with a unit: 512M, 10G, 1T.
    #[arg(long, env = "HOOT_CACHE_MAX", default_value = "10G", value_parser = parse_size)]
    pub cache_max: u64,
}

impl BlobArgs {
    /// The blob URL (None when unset or empty) and the cache directory, defaulted under
    /// `data_dir`.
    pub fn resolve(&self, data_dir: &std::path::Path) -> (Option<String>, PathBuf) {
        (
            self.blob_url.clone().filter(|url| !url.is_empty()),
            self.cache_dir.clone().unwrap_or_else(|| data_dir.join("cache")),
        )
    }
}

/// The shared flags, resolved: what a service's `Config` takes from them.
#[derive(Debug, Clone)]
pub struct Common {
    /// HOOT/1 ROUTER endpoint.
    pub bind: String,
    /// Where to serve grpc.health.v1 (None: not at all).
    pub health_bind: Option<SocketAddr>,
    /// The data directory (created 0700, with the umask at 077).
    pub data_dir: PathBuf,
    /// The shared CAS root.
    pub cas_root: PathBuf,
    /// Where blobs live (`--blob-url`; None: the CAS root).
    pub blob_url: Option<String>,
    /// The object-storage cache directory.
    pub cache_dir: PathBuf,
    /// Most bytes the cache keeps.
    pub cache_max: u64,
    /// The shared key, if there is one (found as [`crate::auth::key_for_service`] does).
    pub key: Option<Key>,
    /// Allow a non-loopback bind without a key.
    pub insecure: bool,
}

impl<S: ServiceKind> ServiceArgs<S> {
    /// Starts logging and tracing as the flags say (keep the guard until exit).
    #[cfg(feature = "telemetry")]
    pub fn telemetry(&self) -> Result<crate::telemetry::TelemetryGuard, Error> {
        crate::telemetry::init(S::DEFAULTS.name, self.otlp_endpoint.as_deref(), self.log_json)
    }

    /// Resolves the data directory (preparing it), the CAS root, the key and the health
    /// address. Call it after [`ServiceArgs::telemetry`], so where the key came from is logged.
    pub fn resolve(&self) -> Result<Common, Error> {
        let data_dir = crate::dirs::data_dir(self.data_dir.clone());
        let cas_root = crate::dirs::cas_root(self.cas_root.clone(), &data_dir);
        let key = crate::auth::key_for_service(self.key_file.as_deref(), &data_dir)?;
        let (blob_url, cache_dir) = self.blobs.resolve(&data_dir);
        Ok(Common {
            bind: self.bind.clone(),
            health_bind: crate::health::parse_bind(&self.health_bind)?,
            blob_url,
            cache_dir,
            data_dir,
            cas_root,
            cache_max: self.blobs.cache_max,
            key,
            insecure: self.insecure,
        })
    }
}

/// A size in bytes, or with a binary unit (K, M, G, T; an optional trailing `B` or `iB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let number = upper.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match number.chars().last() {
        Some('K') => (&number[..number.len() - 1], 10),
        Some('M') => (&number[..number.len() - 1], 20),
        Some('G') => (&number[..number.len() - 1], 30),
        Some('T') => (&number[..number.len() - 1], 40),
        _ => (number, 0),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{trimmed:?} is not a size; give bytes or a number with K, M, G or T"))?;
    value
        .checked_mul(1u64 << shift)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("{trimmed:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        for bad in ["", "G", "ten", "-1G", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        common: ServiceArgs<Chaosgarden>,
    }

    #[test]
    fn defaults_are_the_services_own() {
        let args = Args::try_parse_from(["chaosgarden"]).expect("parses");
        assert_eq!(args.common.bind, defaults::CHAOSGARDEN.bind);
        assert_eq!(args.common.health_bind, defaults::CHAOSGARDEN.health_bind);
        assert_eq!(
            crate::health::parse_bind(&args.common.health_bind).ok(),
            Some(Some(defaults::CHAOSGARDEN.health_addr()))
        );
        let args = Args::try_parse_from(["chaosgarden", "--bind", "tcp://127.0.0.1:*", "--health-bind", "none"])
            .expect("parses");
        assert_eq!(args.common.bind, "tcp://127.0.0.1:*");
        assert_eq!(crate::health::parse_bind(&args.common.health_bind).ok(), Some(None));
        assert!(crate::health::parse_bind("nowhere").is_err());
    }
}
