//! What the state store is configured with, in two forms:
//! - [`StateSettings`]: the `[state]` section of the configuration, as people write it (hours,
//!   days, MiB, a backend name or URL), deserialized here and embedded by `crate::config`. The
//!   defaults and the reasons behind them live here, once.
//! - [`StateConfig`]: the same limits in the units the store computes with (milliseconds,
//!   bytes, a resolved default consent), derived from the settings by
//!   [`StateSettings::config`]; tests and benchmarks also build it directly.
//!
//! [`StateSettings::validate`] is the one check of the section: `tactful config check` and
//! `tactful serve` both run it (through `Config::validate`), so that no setting passes the
//! one and is refused by the other.
//!
//! Must not: depend on anything else in `state` (every other file may use this one).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::crypt::MasterKeySource;
use crate::rank::{Consent, DataDimension, DimensionSet};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    /// Nothing leaves the process.
    Memory,
    /// Write-ahead log and snapshots in this directory.
    Disk(PathBuf),
    /// Explicit words written through to Redis at this URL, shared by replicas: one server
    /// (`redis://`, `rediss://`) or a Redis Cluster through its seed nodes (`redis-cluster://`,
    /// `rediss-cluster://`; see [`RedisTarget`]).
    Redis(String),
}

/// A `[state]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct InvalidSetting {
    /// The dotted setting at fault, e.g. `state.backend`.
    pub setting: &'static str,
    pub message: String,
}

fn invalid(setting: &'static str, message: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        setting,
        message: message.into(),
    }
}

/// The `[state]` section: limits, time constants and where state is kept.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSettings {
    /// Ignored exposure halves in a day: yesterday's scrolling matters less today and the
    /// item is back to nearly fresh within a week.
    pub exposure_half_life_hours: f64,
    /// "Fewer like this" halves in 30 days: a clear request, honoured for weeks, not forever.
    pub fewer_like_this_half_life_days: f64,
    /// A "not interested" without its own expiry lasts 90 days: a season, after which tastes
    /// and assortments have moved on.
    pub not_interested_days: f64,
    /// An impression counts as ignored once this long has passed without a click, cart or
    /// favourite of the item: five minutes covers a shopper who opens an item after reading the
    /// rest of the screen, yet the next visit already sees the fatigue.
    pub ignored_after_minutes: f64,
    /// The overload meter (impressions against engagement) halves every three minutes: it
    /// describes the current session, not the day.
    pub session_half_life_minutes: f64,
    /// Engagement with a category or brand (the source of learned interest tags) halves in 30
    /// days: interests change by the season, not by the day.
    pub interest_half_life_days: f64,
    /// Items with exposure counters per user. 256 covers several days of a heavy user's feed;
    /// past it the faintest is forgotten (counters may be approximate).
    pub max_items_per_user: usize,
    /// Entries of each kind of explicit feedback per user (blocked brands, blocked shops,
    /// not-interested items, fewer-like-this categories and brands). Past it, new feedback of
    /// that kind is refused with a clear error rather than silently lost.
    pub max_explicit_per_kind: usize,
    /// Dimensions denied to users who have not chosen, on top of the privacy default (a
    /// platform may start stricter, never looser).
    pub consent_denied_by_default: Vec<DataDimension>,
    /// Start users with personalisation off until they turn it on.
    pub personalization_off_by_default: bool,
    /// `disk` (write-ahead log and snapshots in `data_dir`: nothing else to run), `memory`
    /// (nothing survives a restart: tests and benchmarks only), `redis://host:port/db` (one
    /// Redis), or `redis-cluster://host:port,host:port` (a Redis Cluster, through any of its
    /// nodes; `rediss://`, `rediss-cluster://` over TLS).
    pub backend: String,
    /// The `disk` backend's directory (relative to the working directory).
    pub data_dir: PathBuf,
    /// Where the `disk` backend keeps each user's data key (wrapped by the master key): a
    /// directory apart from `data_dir`, neither inside the other, ideally its own volume, so
    /// that a copy or backup of the data does not carry what opens it. Unset: beside
    /// `data_dir`, named after it (`tactful-data-keys`).
    pub key_dir: Option<PathBuf>,
    /// The file holding the master key (64 hex digits, e.g. `openssl rand -hex 32`), which
    /// wraps every user's data key: mount it from a secret. Unset (and `TACTFUL_MASTER_KEY`
    /// unset): `master.key` in the key store's directory, made on first start, which is fine
    /// for trying tactful but keeps the key beside what it protects.
    pub master_key_file: Option<PathBuf>,
    /// `rediss://` only: the CA certificate (PEM) that signed Redis' certificate, when it is
    /// not one the system trusts.
    pub redis_ca_cert: Option<PathBuf>,
    /// `rediss://` only: the client certificate (PEM) for a Redis that asks for one
    /// (`tls-auth-clients yes`), with `redis_client_key`.
    pub redis_client_cert: Option<PathBuf>,
    /// The private key (PEM) of `redis_client_cert`.
    pub redis_client_key: Option<PathBuf>,
    /// Redis replicas that must hold a write of explicit words before it is acknowledged
    /// (`WAIT`, up to 1 s). Redis replicates asynchronously: without it, a master that dies
    /// right after answering takes its last writes with it when its replica is promoted.
    /// Unset: 1 for a Redis Cluster (whose point is to survive losing a master; every master
    /// needs a replica then, or its users' words are refused), 0 for one Redis (which has no
    /// failover to survive). 0 trades that window (the replication lag, usually under a
    /// millisecond) for not waiting a round trip to the replica.
    pub redis_wait_replicas: Option<u32>,
    /// Memory for user state (map slots, per-user heap, snapshot index). Past it, the
    /// coldest users are evicted (and read back from the snapshot or Redis when they return).
    /// 1 GiB holds several million typical users; size it to the pod's limit minus ~100 MiB.
    pub memory_cap_mib: u64,
    /// Exposure counters untouched for 30 days are forgotten: fatigue has long decayed by
    /// then, and keeping them would only grow memory and snapshots.
    pub counter_retention_days: f64,
    /// A snapshot is taken at least this often while the log grows: it bounds recovery time.
    pub snapshot_interval_s: u64,
    /// ... and whenever the log has grown by this much since the last one: replay after a
    /// crash reads at most this much (128 MiB: about 2 s for a million users on two cores),
    /// while a snapshot rewrites every user, so much smaller would cost more writing.
    pub snapshot_log_mib: u64,
    /// Counters (impressions, clicks) reach disk in batches at least this often; explicit
    /// feedback and consent are fsynced before they are acknowledged, whatever this says.
    pub counter_sync_ms: u64,
    /// Whether counters are logged at all. Off, they are durable only as of the last
    /// snapshot: a crash loses minutes of fatigue, never a user's explicit words.
    pub log_counters: bool,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            exposure_half_life_hours: 24.0,
            fewer_like_this_half_life_days: 30.0,
            not_interested_days: 90.0,
            ignored_after_minutes: 5.0,
            session_half_life_minutes: 3.0,
            interest_half_life_days: 30.0,
            max_items_per_user: 256,
            max_explicit_per_kind: 1000,
            consent_denied_by_default: Vec::new(),
            personalization_off_by_default: false,
            backend: "disk".into(),
            data_dir: PathBuf::from("tactful-data"),
            key_dir: None,
            master_key_file: None,
            redis_ca_cert: None,
            redis_client_cert: None,
            redis_client_key: None,
            redis_wait_replicas: None,
            memory_cap_mib: 1024,
            counter_retention_days: 30.0,
            snapshot_interval_s: 5 * 60,
            snapshot_log_mib: 128,
            counter_sync_ms: 1000,
            log_counters: true,
        }
    }
}

impl StateSettings {
    /// Checks every setting of the section, naming the first one at fault.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (setting, v) in [
            ("state.max_items_per_user", self.max_items_per_user),
            ("state.max_explicit_per_kind", self.max_explicit_per_kind),
            ("state.memory_cap_mib", self.memory_cap_mib as usize),
            (
                "state.snapshot_interval_s",
                self.snapshot_interval_s as usize,
            ),
            ("state.snapshot_log_mib", self.snapshot_log_mib as usize),
            ("state.counter_sync_ms", self.counter_sync_ms as usize),
        ] {
            if v == 0 {
                return Err(invalid(setting, "must be above 0"));
            }
        }
        for (setting, v) in [
            (
                "state.exposure_half_life_hours",
                self.exposure_half_life_hours,
            ),
            (
                "state.fewer_like_this_half_life_days",
                self.fewer_like_this_half_life_days,
            ),
            ("state.not_interested_days", self.not_interested_days),
            ("state.ignored_after_minutes", self.ignored_after_minutes),
            (
                "state.session_half_life_minutes",
                self.session_half_life_minutes,
            ),
            (
                "state.interest_half_life_days",
                self.interest_half_life_days,
            ),
            ("state.counter_retention_days", self.counter_retention_days),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 100_000.0) {
                return Err(invalid(
                    setting,
                    "must be a number above 0 (and below 100000)",
                ));
            }
        }
        let backend = self.backend()?;
        self.check_redis_tls(&backend)?;
        match (self.redis_wait_replicas, &backend) {
            (Some(_), StateBackend::Memory | StateBackend::Disk(_)) => Err(invalid(
                "state.redis_wait_replicas",
                "is for the redis backend: set state.backend to a redis:// or \
                 redis-cluster:// URL",
            )),
            (Some(n), _) if n > MAX_WAIT_REPLICAS => Err(invalid(
                "state.redis_wait_replicas",
                format!("{n} replicas: at most {MAX_WAIT_REPLICAS}"),
            )),
            _ => Ok(()),
        }
    }

    /// The TLS files are given only for a `rediss://` backend, the client certificate with its
    /// key, and each reads as PEM.
    fn check_redis_tls(&self, backend: &StateBackend) -> Result<(), InvalidSetting> {
        let tls = matches!(backend, StateBackend::Redis(url)
            if url.starts_with("rediss://") || url.starts_with("rediss-cluster://"));
        for (setting, path) in [
            ("state.redis_ca_cert", &self.redis_ca_cert),
            ("state.redis_client_cert", &self.redis_client_cert),
            ("state.redis_client_key", &self.redis_client_key),
        ] {
            let Some(path) = path else { continue };
            if !tls {
                return Err(invalid(
                    setting,
                    "is for TLS to Redis: set state.backend to a rediss:// or \
                     rediss-cluster:// URL",
                ));
            }
            let text = std::fs::read(path)
                .map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))?;
            if !text.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(invalid(
                    setting,
                    format!("{} holds no PEM block", path.display()),
                ));
            }
        }
        if self.redis_client_cert.is_some() != self.redis_client_key.is_some() {
            return Err(invalid(
                if self.redis_client_cert.is_some() {
                    "state.redis_client_key"
                } else {
                    "state.redis_client_cert"
                },
                "a client certificate and its key go together: set both or neither",
            ));
        }
        Ok(())
    }

    /// Where user state is kept, from `backend` and `data_dir`: refused here, not when the
    /// server opens it, if this build cannot use it.
    pub fn backend(&self) -> Result<StateBackend, InvalidSetting> {
        match self.backend.as_str() {
            "disk" => {
                if self.data_dir.as_os_str().is_empty() {
                    return Err(invalid("state.data_dir", "must not be empty"));
                }
                Ok(StateBackend::Disk(self.data_dir.clone()))
            }
            "memory" => Ok(StateBackend::Memory),
            url if REDIS_SCHEMES.iter().any(|s| url.starts_with(s)) => {
                check_redis_url(url).map_err(|message| invalid("state.backend", message))?;
                Ok(StateBackend::Redis(url.to_owned()))
            }
            other => Err(invalid(
                "state.backend",
                format!(
                    "{:?} is not disk, memory, a redis:// URL or a redis-cluster:// URL",
                    redact(other)
                ),
            )),
        }
    }

    /// The settings in the units the store computes with.
    pub fn config(&self) -> StateConfig {
        let ms = |units: f64, unit_ms: i64| (units * unit_ms as f64).round() as i64;
        StateConfig {
            consent_default: Consent::privacy_default().restrict(
                DimensionSet::of(self.consent_denied_by_default.iter().copied()),
                self.personalization_off_by_default,
            ),
            exposure_half_life_ms: ms(self.exposure_half_life_hours, HOUR_MS),
            fewer_like_this_half_life_ms: ms(self.fewer_like_this_half_life_days, DAY_MS),
            not_interested_ms: ms(self.not_interested_days, DAY_MS),
            ignore_window_ms: ms(self.ignored_after_minutes, MINUTE_MS),
            session_half_life_ms: ms(self.session_half_life_minutes, MINUTE_MS),
            interest_half_life_ms: ms(self.interest_half_life_days, DAY_MS),
            max_items_per_user: self.max_items_per_user,
            max_explicit_per_kind: self.max_explicit_per_kind,
            counter_retention_ms: ms(self.counter_retention_days, DAY_MS),
            memory_cap_bytes: usize::try_from(self.memory_cap_mib << 20).unwrap_or(usize::MAX),
            snapshot_interval_ms: (self.snapshot_interval_s as i64).saturating_mul(SECOND_MS),
            snapshot_log_bytes: self.snapshot_log_mib << 20,
            counter_sync_ms: self.counter_sync_ms,
            log_counters: self.log_counters,
            keys: KeyConfig {
                dir: self.key_dir.clone(),
                master: self.master_key_file.clone().map(MasterKeySource::File),
            },
            redis_tls: RedisTls {
                ca_cert: self.redis_ca_cert.clone(),
                client_cert: self.redis_client_cert.clone(),
                client_key: self.redis_client_key.clone(),
            },
            redis_wait_replicas: self.redis_wait_replicas,
        }
    }
}

/// More would make every acknowledgement wait on a large fleet of replicas; Redis deployments
/// that keep users' words have one or two per master.
pub const MAX_WAIT_REPLICAS: u32 = 16;

/// The URL schemes of the redis backend: one server, or a cluster, each also over TLS.
const REDIS_SCHEMES: [&str; 4] = [
    "redis://",
    "rediss://",
    "redis-cluster://",
    "rediss-cluster://",
];

/// Where the redis backend connects, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: a `redis://` or `rediss://` (TLS) URL, as the client takes it.
    Single(String),
    /// A Redis Cluster, from `redis-cluster://[user:password@]host:port,host:port[/0]`
    /// (`rediss-cluster://` over TLS): each seed node as a `redis://` (or `rediss://`) URL
    /// with the credentials. Any one seed that answers is enough; the client learns the
    /// other nodes from it.
    Cluster {
        seeds: Vec<String>,
        /// `redis://` or `rediss://`, for the nodes the cluster names later.
        scheme: &'static str,
        /// `user:password@` or empty, for the same.
        userinfo: String,
    },
}

impl RedisTarget {
    /// Parses and checks a backend URL (the message never shows a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let cluster = [
            ("redis-cluster://", "redis://"),
            ("rediss-cluster://", "rediss://"),
        ]
        .into_iter()
        .find_map(|(prefix, scheme)| url.strip_prefix(prefix).map(|rest| (rest, scheme)));
        let Some((rest, scheme)) = cluster else {
            return redis::IntoConnectionInfo::into_connection_info(url)
                .map(|_| Self::Single(url.to_owned()))
                .map_err(|e| format!("{} is not a usable redis URL: {e}", redact(url)));
        };
        let shown = redact(url);
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if !(db.is_empty() || db == "0") {
            return Err(format!(
                "{shown}: a Redis Cluster has only database 0 (end the URL with the last \
                 seed, or with /0)"
            ));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let mut seeds = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(format!(
                    "{shown}: expected seed nodes as host:port, separated by commas \
                     (an empty one is there)"
                ));
            }
            let seed = format!("{scheme}{userinfo}{host}/0");
            redis::IntoConnectionInfo::into_connection_info(seed.as_str()).map_err(|e| {
                format!("{shown}: the seed node {host:?} is not a usable address: {e}")
            })?;
            seeds.push(seed);
        }
        Ok(Self::Cluster {
            seeds,
            scheme,
            userinfo,
        })
    }

    /// Whether the connections use TLS.
    pub fn tls(&self) -> bool {
        match self {
            Self::Single(url) => url.starts_with("rediss://"),
            Self::Cluster { scheme, .. } => *scheme == "rediss://",
        }
    }
}

/// Whether this build can connect to Redis at `url`: one server or a cluster (the message
/// never shows a password).
pub(super) fn check_redis_url(url: &str) -> Result<(), String> {
    RedisTarget::parse(url).map(|_| ())
}

/// The URL without its password, for messages and logs.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The store's limits and time constants, in the units it computes with. From the
/// configuration: [`StateSettings::config`] (whose fields say the reasons for each default).
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Consent for users who have chosen nothing: the privacy default, or stricter.
    pub consent_default: Consent,
    /// [`StateSettings::exposure_half_life_hours`].
    pub exposure_half_life_ms: i64,
    /// [`StateSettings::fewer_like_this_half_life_days`].
    pub fewer_like_this_half_life_ms: i64,
    /// [`StateSettings::not_interested_days`].
    pub not_interested_ms: i64,
    /// [`StateSettings::ignored_after_minutes`].
    pub ignore_window_ms: i64,
    /// [`StateSettings::session_half_life_minutes`].
    pub session_half_life_ms: i64,
    /// [`StateSettings::interest_half_life_days`].
    pub interest_half_life_ms: i64,
    /// [`StateSettings::max_items_per_user`].
    pub max_items_per_user: usize,
    /// [`StateSettings::max_explicit_per_kind`].
    pub max_explicit_per_kind: usize,
    /// [`StateSettings::counter_retention_days`].
    pub counter_retention_ms: i64,
    /// [`StateSettings::memory_cap_mib`].
    pub memory_cap_bytes: usize,
    /// [`StateSettings::snapshot_interval_s`].
    pub snapshot_interval_ms: i64,
    /// [`StateSettings::snapshot_log_mib`].
    pub snapshot_log_bytes: u64,
    /// [`StateSettings::counter_sync_ms`].
    pub counter_sync_ms: u64,
    /// [`StateSettings::log_counters`].
    pub log_counters: bool,
    /// Where the data keys are and what wraps them.
    pub keys: KeyConfig,
    /// The files of TLS to Redis (`rediss://`).
    pub redis_tls: RedisTls,
    /// [`StateSettings::redis_wait_replicas`]: `None` picks the default for the target.
    pub redis_wait_replicas: Option<u32>,
}

/// [`StateSettings::redis_ca_cert`], [`StateSettings::redis_client_cert`],
/// [`StateSettings::redis_client_key`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The key store's place and the master key's source; `None` means the default
/// ([`StateSettings::key_dir`], [`StateSettings::master_key_file`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyConfig {
    pub dir: Option<PathBuf>,
    pub master: Option<MasterKeySource>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateSettings::default().config()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let c = StateConfig::default();
        assert_eq!(c.consent_default, Consent::privacy_default());
        assert_eq!(c.exposure_half_life_ms, DAY_MS);
        assert_eq!(c.fewer_like_this_half_life_ms, 30 * DAY_MS);
        assert_eq!(c.not_interested_ms, 90 * DAY_MS);
        assert_eq!(c.ignore_window_ms, HOUR_MS / 12);
        assert_eq!(c.session_half_life_ms, HOUR_MS / 20);
        assert_eq!(c.interest_half_life_ms, 30 * DAY_MS);
        assert_eq!(c.counter_retention_ms, 30 * DAY_MS);
        assert_eq!(c.memory_cap_bytes, 1 << 30);
        assert_eq!(c.snapshot_interval_ms, 5 * 60 * 1000);
        assert_eq!(c.snapshot_log_bytes, 128 << 20);
        assert_eq!((c.max_items_per_user, c.max_explicit_per_kind), (256, 1000));
        assert!(c.log_counters && c.counter_sync_ms == 1000);
        assert_eq!(StateSettings::default().validate(), Ok(()));
    }

    fn with_backend(backend: &str) -> StateSettings {
        StateSettings {
            backend: backend.into(),
            ..StateSettings::default()
        }
    }

    /// A file that reads as PEM (its contents are not a real certificate).
    fn pem_in(dir: &Path) -> PathBuf {
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        pem
    }

    #[test]
    fn backends_are_checked_by_name_and_tls_files_only_go_with_rediss() {
        assert_eq!(
            with_backend("redis://127.0.0.1:6379/0").backend(),
            Ok(StateBackend::Redis("redis://127.0.0.1:6379/0".into()))
        );
        assert_eq!(
            with_backend("rediss://user:s3cret@host:6380/0").backend(),
            Ok(StateBackend::Redis(
                "rediss://user:s3cret@host:6380/0".into()
            ))
        );
        let e = with_backend("redis://host:notaport/0")
            .backend()
            .unwrap_err();
        assert_eq!(e.setting, "state.backend");
        assert!(with_backend("postgres://x").validate().is_err());
        let no_dir = StateSettings {
            data_dir: PathBuf::new(),
            ..StateSettings::default()
        };
        assert_eq!(no_dir.backend().unwrap_err().setting, "state.data_dir");

        let dir = tempfile::tempdir().unwrap();
        let pem = pem_in(dir.path());
        let tls = |backend: &str, ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>| {
            StateSettings {
                redis_ca_cert: ca.map(Path::to_owned),
                redis_client_cert: cert.map(Path::to_owned),
                redis_client_key: key.map(Path::to_owned),
                ..with_backend(backend)
            }
            .validate()
        };
        let url = "rediss://127.0.0.1:6380/0";
        assert_eq!(tls(url, Some(&pem), Some(&pem), Some(&pem)), Ok(()));
        assert_eq!(tls(url, None, None, None), Ok(()));
        let e = tls("redis://127.0.0.1:6379/0", Some(&pem), None, None).unwrap_err();
        assert_eq!(e.setting, "state.redis_ca_cert");
        let e = tls(url, None, Some(&pem), None).unwrap_err();
        assert_eq!(e.setting, "state.redis_client_key");
        let e = tls(url, Some(&dir.path().join("none.pem")), None, None).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
        std::fs::write(dir.path().join("x"), "not pem").unwrap();
        let e = tls(url, Some(&dir.path().join("x")), None, None).unwrap_err();
        assert!(e.message.contains("no PEM"), "{e}");
    }

    #[test]
    fn a_cluster_is_named_by_its_seeds_and_checked_like_one_redis() {
        let url = "redis-cluster://127.0.0.1:7000,127.0.0.1:7001";
        assert_eq!(
            with_backend(url).backend(),
            Ok(StateBackend::Redis(url.into()))
        );
        assert_eq!(
            RedisTarget::parse("rediss-cluster://u:s3cret@a:7000,b:7001/0"),
            Ok(RedisTarget::Cluster {
                seeds: vec![
                    "rediss://u:s3cret@a:7000/0".into(),
                    "rediss://u:s3cret@b:7001/0".into()
                ],
                scheme: "rediss://",
                userinfo: "u:s3cret@".into(),
            })
        );
        assert!(RedisTarget::parse("rediss-cluster://a:1").unwrap().tls());
        assert!(!RedisTarget::parse(url).unwrap().tls());
        for (bad, why) in [
            ("redis-cluster://a:7000,,b:7001", "empty"),
            ("redis-cluster://", "empty"),
            ("redis-cluster://a:notaport", "seed node"),
            ("redis-cluster://u:s3cret@a:7000/1", "only database 0"),
        ] {
            let e = with_backend(bad).validate().unwrap_err();
            assert_eq!(e.setting, "state.backend");
            assert!(e.message.contains(why), "{bad}: {e}");
            assert!(!e.message.contains("s3cret"), "{e}");
        }
        // TLS files go with rediss-cluster:// as with rediss://.
        let dir = tempfile::tempdir().unwrap();
        let pem = pem_in(dir.path());
        let ca = |backend: &str| StateSettings {
            redis_ca_cert: Some(pem.clone()),
            ..with_backend(backend)
        };
        assert_eq!(ca("rediss-cluster://a:7000").validate(), Ok(()));
        assert_eq!(
            ca(url).validate().unwrap_err().setting,
            "state.redis_ca_cert"
        );
    }

    #[test]
    fn replicas_to_wait_for_are_a_redis_setting_within_bounds() {
        let wait = |backend: &str, n: u32| StateSettings {
            backend: backend.into(),
            redis_wait_replicas: Some(n),
            ..StateSettings::default()
        };
        assert_eq!(wait("redis-cluster://a:7000", 2).validate(), Ok(()));
        assert_eq!(wait("redis://a:6379/0", 0).validate(), Ok(()));
        for bad in [
            wait("disk", 1),
            wait("memory", 0),
            wait("redis://a:6379/0", 17),
        ] {
            let e = bad.validate().unwrap_err();
            assert_eq!(e.setting, "state.redis_wait_replicas", "{e}");
        }
        assert_eq!(StateSettings::default().config().redis_wait_replicas, None);
        assert_eq!(
            wait("redis-cluster://a:7000", 2)
                .config()
                .redis_wait_replicas,
            Some(2)
        );
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
    }
}
