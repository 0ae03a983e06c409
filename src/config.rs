//! One [`Config`]: built-in defaults (each with its reason), overlaid by an optional TOML file,
//! then by `TACTFUL_*` environment variables, then by command-line flags. Validation names the
//! setting at fault. The environment is read through the [`Env`] trait so tests pass a map
//! instead of mutating the process environment.
//!
//! Must not: read anything at request time. The server takes a validated `Config` once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogSettings, MAX_CATALOG_ITEMS};
use crate::rank::{Parallelism, Policies, Policy};
/// The `[state]` section, owned by the state store (re-exported where it always was).
pub use crate::state::StateSettings;
use crate::state::crypt::{MasterKey, MasterKeySource};
use crate::state::{InvalidSetting, StateBackend, StateConfig};

/// Address to serve gRPC on. Default `127.0.0.1:50051`: loopback, so a sidecar is not exposed
/// beyond its pod unless asked.
pub const ENV_LISTEN: &str = "TACTFUL_LISTEN";
/// Address of the admin HTTP server (`/metrics`, `/live`, `/ready`), or `off`. Default
/// `127.0.0.1:9464`: loopback, like the gRPC port; 9464 is the port commonly used for
/// Prometheus exporters next to an application.
pub const ENV_ADMIN_LISTEN: &str = "TACTFUL_ADMIN_LISTEN";
/// File of bearer tokens, one `ID:TOKEN` per line. Default: none. With no token configured
/// (here or in `TACTFUL_AUTH_TOKENS`) no call needs one.
pub const ENV_AUTH_TOKENS_FILE: &str = "TACTFUL_AUTH_TOKENS_FILE";
/// Bearer tokens as `ID:TOKEN` pairs separated by commas (e.g. from a Kubernetes secret).
/// Default: none. Never read from the TOML file: secrets stay out of configuration files.
pub const ENV_AUTH_TOKENS: &str = "TACTFUL_AUTH_TOKENS";
/// Whether Rank needs no token (`true`, default: in sidecar mode only the pod's recommender
/// reaches the port) or needs one like every other tactful method (`false`).
pub const ENV_AUTH_RANK_OPEN: &str = "TACTFUL_AUTH_RANK_OPEN";
/// The server's certificate chain (PEM). Default: none (plaintext gRPC).
pub const ENV_TLS_CERT: &str = "TACTFUL_TLS_CERT";
/// The server certificate's private key (PEM). Default: none.
pub const ENV_TLS_KEY: &str = "TACTFUL_TLS_KEY";
/// CA certificate(s) (PEM) client certificates must be signed by: mutual TLS. Default: none
/// (clients present no certificate).
pub const ENV_TLS_CLIENT_CA: &str = "TACTFUL_TLS_CLIENT_CA";
/// File the audit log is appended to (JSON lines). Default: none, and audit records go to the
/// service log under the target `tactful::audit`.
pub const ENV_AUDIT_PATH: &str = "TACTFUL_AUDIT_PATH";
/// Secret under which user ids are turned into pseudonyms in audit records and logs (at least
/// 16 characters). Default: none, and each process draws a random one (pseudonyms then hold
/// within one run only). Never read from the TOML file.
pub const ENV_USER_HASH_KEY: &str = "TACTFUL_USER_HASH_KEY";
/// OTLP/gRPC endpoint spans are exported to, e.g. `http://otel-collector:4317`. Default: none
/// (no export). Needs a build with the cargo feature `otlp`.
pub const ENV_OTLP_ENDPOINT: &str = "TACTFUL_OTLP_ENDPOINT";
/// Largest gRPC message accepted or sent, in bytes. Default 16 MiB (16777216).
pub const ENV_MAX_MESSAGE_BYTES: &str = "TACTFUL_MAX_MESSAGE_BYTES";
/// Seconds between HTTP/2 PINGs on an idle connection; 0 = none. Default 30.
pub const ENV_HTTP2_KEEPALIVE_INTERVAL_S: &str = "TACTFUL_HTTP2_KEEPALIVE_INTERVAL_S";
/// Seconds to wait for a PING's answer before closing the connection. Default 10.
pub const ENV_HTTP2_KEEPALIVE_TIMEOUT_S: &str = "TACTFUL_HTTP2_KEEPALIVE_TIMEOUT_S";
/// Streams (calls) in flight per connection; 0 = HTTP/2's own default. Default 0.
pub const ENV_MAX_CONCURRENT_STREAMS: &str = "TACTFUL_MAX_CONCURRENT_STREAMS";
/// Seconds after which a connection is asked to go away (clients reconnect, so load spreads
/// over new replicas); 0 = never. Default 0.
pub const ENV_MAX_CONNECTION_AGE_S: &str = "TACTFUL_MAX_CONNECTION_AGE_S";
/// Connections open at once on the gRPC port; past it new ones are closed at once. Default
/// 16384, never more than the descriptor limit minus a reserve for the admin port and files.
pub const ENV_MAX_CONNECTIONS: &str = "TACTFUL_MAX_CONNECTIONS";
/// Seconds a new connection may take to send its first bytes (the HTTP/2 preface, or the TLS
/// hello); 0 = no limit. Default 10.
pub const ENV_HANDSHAKE_TIMEOUT_S: &str = "TACTFUL_HANDSHAKE_TIMEOUT_S";
/// Seconds a connection may stay open with no call in flight; 0 = no limit. Default 300.
pub const ENV_IDLE_TIMEOUT_S: &str = "TACTFUL_IDLE_TIMEOUT_S";
/// Threads serving connections; 0 (default) = one on two cores or fewer, else one per core.
pub const ENV_IO_THREADS: &str = "TACTFUL_IO_THREADS";
/// Path of a TOML configuration file. Default: none (built-in defaults only).
pub const ENV_CONFIG: &str = "TACTFUL_CONFIG";
/// The server's own time budget per Rank, in milliseconds. Default 50.
pub const ENV_BUDGET_MS: &str = "TACTFUL_BUDGET_MS";
/// Rank requests allowed in flight before new ones fail open as overloaded. Default 1024.
pub const ENV_MAX_INFLIGHT: &str = "TACTFUL_MAX_INFLIGHT";
/// Threads of the ranking pool. Default 0 = one per core.
pub const ENV_RANK_THREADS: &str = "TACTFUL_RANK_THREADS";
/// Largest candidate list accepted. Default 5000.
pub const ENV_MAX_CANDIDATES: &str = "TACTFUL_MAX_CANDIDATES";
/// Largest `k` accepted. Default 1000.
pub const ENV_MAX_K: &str = "TACTFUL_MAX_K";
/// Seconds in-flight calls get to finish after SIGTERM/SIGINT. Default 10.
pub const ENV_DRAIN_GRACE_S: &str = "TACTFUL_DRAIN_GRACE_S";
/// `human` (default) or `json` logs.
pub const ENV_LOG_FORMAT: &str = "TACTFUL_LOG_FORMAT";
/// Where user state is kept: `disk` (default), `memory`, or a `redis://` URL.
pub const ENV_STATE: &str = "TACTFUL_STATE";
/// Data directory of the `disk` state. Default `tactful-data` (relative to the working dir).
pub const ENV_DATA_DIR: &str = "TACTFUL_DATA_DIR";
/// `state.key_dir`: where the disk backend keeps users' data keys (default: beside the data
/// directory, `<data_dir>-keys`).
pub const ENV_KEY_DIR: &str = "TACTFUL_KEY_DIR";
/// `state.master_key_file`: the file holding the master key that wraps users' data keys.
pub const ENV_MASTER_KEY_FILE: &str = "TACTFUL_MASTER_KEY_FILE";
/// The master key itself, as 64 hex digits (instead of a file); never from the file.
pub const ENV_MASTER_KEY: &str = "TACTFUL_MASTER_KEY";
/// `state.redis_ca_cert`: the CA (PEM) that signed a `rediss://` Redis' certificate.
pub const ENV_REDIS_CA_CERT: &str = "TACTFUL_REDIS_CA_CERT";
/// `state.redis_client_cert`: a client certificate (PEM) for a Redis that asks for one.
pub const ENV_REDIS_CLIENT_CERT: &str = "TACTFUL_REDIS_CLIENT_CERT";
/// `state.redis_client_key`: its private key (PEM).
pub const ENV_REDIS_CLIENT_KEY: &str = "TACTFUL_REDIS_CLIENT_KEY";
/// `state.redis_wait_replicas`: Redis replicas that must hold a write of explicit words
/// before it is acknowledged; empty: the default (1 on a Redis Cluster, 0 on one Redis).
pub const ENV_REDIS_WAIT_REPLICAS: &str = "TACTFUL_REDIS_WAIT_REPLICAS";
/// Memory for user state, in MiB. Default 1024.
pub const ENV_MEMORY_CAP_MIB: &str = "TACTFUL_MEMORY_CAP_MIB";
/// Items the catalog holds at most. Default 1000000 (see [`CatalogSettings::max_items`]).
pub const ENV_CATALOG_MAX_ITEMS: &str = "TACTFUL_CATALOG_MAX_ITEMS";
/// Length of the catalog's embeddings; 0 = it holds none. Default 0 (see
/// [`CatalogSettings::dim`]).
pub const ENV_CATALOG_DIM: &str = "TACTFUL_CATALOG_DIM";
/// JSON-lines file of items loaded into the catalog at start-up. Default: none (the catalog
/// starts empty and fills through `Catalog.Upsert`).
pub const ENV_CATALOG_PATH: &str = "TACTFUL_CATALOG_PATH";

/// Where configuration values come from besides the file.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// Request size limits: what a single call may ask of the server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Candidates per Rank. 5000 is well above any feed page and bounds a request's CPU cost.
    pub max_candidates: usize,
    /// `k` per Rank: nobody shows a user more than 1000 items at once.
    pub max_k: usize,
    /// Embedding length. 1024 covers common text and image encoders.
    pub max_embedding_dim: usize,
    /// Events per Record call; larger volumes belong on Events.Stream.
    pub max_events_per_batch: usize,
    /// Bytes of one user id: ids are opaque keys, not documents.
    pub max_user_id_bytes: usize,
    /// Bytes of one gRPC message. 16 MiB fits 5000 candidates with 256-dim embeddings.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_candidates: 5000,
            max_k: 1000,
            max_embedding_dim: 1024,
            max_events_per_batch: 10_000,
            max_user_id_bytes: 256,
            max_message_bytes: 16 << 20,
        }
    }
}

/// The gRPC transport: HTTP/2 keepalive and connection limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    /// Seconds between PINGs on a quiet connection; 0 = none. 30 s finds a dead peer (or a
    /// NAT that forgot the connection) well before a client's next burst, at a negligible cost.
    pub http2_keepalive_interval_s: u64,
    /// Seconds a PING may go unanswered before the connection is closed. 10 s: a live peer
    /// answers in milliseconds.
    pub http2_keepalive_timeout_s: u64,
    /// Calls in flight per connection; 0 = HTTP/2's default. The in-flight limit of rankings
    /// (`rank.max_inflight`) is what protects the server; this only caps one client.
    pub max_concurrent_streams: u32,
    /// Seconds after which a connection is asked to go away, with `drain_grace_s` to finish
    /// its calls; 0 = never. Set it (e.g. 300) when clients hold long-lived connections and
    /// replicas scale out: otherwise new replicas receive no traffic from old connections.
    pub max_connection_age_s: u64,
    /// Connections open at once; at the bound a new connection takes the place of the oldest
    /// one still silent, or is closed as soon as it is accepted (and counted). 16384 is far above what a sidecar's callers open (a handful each) yet
    /// bounds what idle connections can cost (~15 KB each). The effective bound is also kept
    /// below the process's descriptor limit minus a reserve, so that the admin port, the log
    /// and snapshots always have descriptors (see `crate::grpc::connections`).
    pub max_connections: usize,
    /// Seconds a new connection may take to send its first bytes (the HTTP/2 preface, or a
    /// TLS hello); 0 = no limit. 10 s: a real client sends them within milliseconds, so only
    /// a connection that will never speak waits that long.
    pub handshake_timeout_s: u64,
    /// Seconds a connection may stay open with no call in flight before it is closed; 0 = no
    /// limit. 300 s: clients reconnect transparently, and a connection idle for five minutes
    /// is not worth a descriptor. Keepalive PINGs do not count as activity; calls do.
    pub idle_timeout_s: u64,
    /// Threads serving connections (the async runtime's workers: transport, decoding, and
    /// rankings too small to split); 0 = [`GrpcSettings::io_threads_for`] the machine's cores.
    pub io_threads: usize,
}

/// The most threads `grpc.io_threads` may ask for.
pub const MAX_IO_THREADS: usize = 256;

impl GrpcSettings {
    /// Threads serving connections on a machine (or CPU quota) of `cores` cores: the setting,
    /// or when it is 0, one thread up to two cores and one per core above. On two cores a
    /// sidecar shares with its host, and a second thread mostly adds hand-offs between the
    /// two: one thread served a Rank of 100 candidates at saturation with a quarter to a third
    /// less CPU per call and 9–35% more calls per second (docs/performance.md, "Eighth round").
    pub fn io_threads_for(&self, cores: usize) -> usize {
        match self.io_threads {
            0 if cores <= 2 => 1,
            0 => cores,
            n => n,
        }
    }
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            http2_keepalive_interval_s: 30,
            http2_keepalive_timeout_s: 10,
            max_concurrent_streams: 0,
            max_connection_age_s: 0,
            max_connections: 16384,
            handshake_timeout_s: 10,
            idle_timeout_s: 300,
            io_threads: 0,
        }
    }
}

/// How rankings are run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankSettings {
    /// The server's own budget per Rank, even when the caller sets no deadline. 50 ms is far
    /// above the normal cost (well under 1 ms for 200 candidates) and far below what hurts a
    /// page load: past it, the upstream order is the better answer.
    pub budget_ms: u64,
    /// Rankings in flight (queued or running) before new ones fail open as overloaded. 1024
    /// absorbs bursts while keeping queueing delay within the budget on two cores.
    pub max_inflight: usize,
    /// Threads of the ranking pool; 0 = one per core.
    pub threads: usize,
    /// Multiply-adds in one vector pass above which it is split across the pool's threads;
    /// per-candidate rules count `Parallelism::PER_CANDIDATE` (32) per candidate against it.
    /// 65536 (e.g. 1024 candidates × 64 dims, or 2048 candidates through a rule) is where
    /// splitting stops costing more than it saves on this class of machine
    /// (`cargo bench --bench parallel`).
    pub parallel_min_work: usize,
}

impl Default for RankSettings {
    fn default() -> Self {
        Self {
            budget_ms: 50,
            max_inflight: 1024,
            threads: 0,
            parallel_min_work: 65_536,
        }
    }
}

/// A value never printed: `Debug` shows only that one is set.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Who may call what. Auth is on once a token is configured: then every tactful method needs
/// `authorization: Bearer TOKEN` with a known token, except Rank while `rank_open`. Health
/// and reflection stay open (probes and tools).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// File of `ID:TOKEN` lines (`#` starts a comment). The id names the caller in the audit
    /// log; the token is the secret. Read at start.
    pub tokens_file: Option<PathBuf>,
    /// Rank needs no token. True: in sidecar mode only the pod's recommender reaches the port,
    /// and a ranking changes nothing.
    pub rank_open: bool,
    /// `ID:TOKEN,...` from `TACTFUL_AUTH_TOKENS`; never from the file.
    #[serde(skip)]
    pub env_tokens: Option<Secret>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            tokens_file: None,
            rank_open: true,
            env_tokens: None,
        }
    }
}

/// The shortest token accepted: 16 characters of a random hex or base64 string are 64 to 96
/// bits, beyond guessing at any rate a server answers.
pub const MIN_TOKEN_LEN: usize = 16;

impl AuthSettings {
    /// The configured `(id, token)` pairs, from the file and then the environment; empty when
    /// auth is off.
    pub fn tokens(&self) -> Result<Vec<(String, Secret)>, ConfigError> {
        let mut tokens: Vec<(String, Secret)> = Vec::new();
        let mut add = |setting: String, entry: &str| -> Result<(), ConfigError> {
            let (id, token) = entry
                .split_once(':')
                .ok_or_else(|| error(&setting, "is not ID:TOKEN"))?;
            let (id, token) = (id.trim(), token.trim());
            let id_ok = !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !id_ok {
                return Err(error(
                    &setting,
                    format!("token id {id:?} must be letters, digits, '-', '_' or '.'"),
                ));
            }
            if token.len() < MIN_TOKEN_LEN || token.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(error(
                    &setting,
                    format!(
                        "the token of {id:?} must be at least {MIN_TOKEN_LEN} characters with \
                         no spaces (e.g. `openssl rand -hex 24`)"
                    ),
                ));
            }
            if tokens.iter().any(|(known, _)| known == id) {
                return Err(error(&setting, format!("token id {id:?} appears twice")));
            }
            if tokens.iter().any(|(_, known)| known.0 == token) {
                return Err(error(
                    &setting,
                    format!("the token of {id:?} is also another id's"),
                ));
            }
            tokens.push((id.to_owned(), Secret(token.to_owned())));
            Ok(())
        };
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                error(
                    "auth.tokens_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if !line.is_empty() {
                    add(format!("auth.tokens_file line {}", n + 1), line)?;
                }
            }
        }
        if let Some(env) = &self.env_tokens {
            for (n, entry) in env.0.split(',').enumerate() {
                if !entry.trim().is_empty() {
                    add(format!("{ENV_AUTH_TOKENS} entry {}", n + 1), entry)?;
                }
            }
        }
        Ok(tokens)
    }
}

/// TLS for the gRPC port, through rustls. Off unless `cert` and `key` are set.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Its private key, PEM.
    pub key: Option<PathBuf>,
    /// CA certificate(s), PEM: when set, every client must present a certificate signed by
    /// one of them (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(error("tls.key", "is needed with tls.cert")),
            (None, Some(_)) => return Err(error("tls.cert", "is needed with tls.key")),
            (None, None) if self.client_ca.is_some() => {
                return Err(error(
                    "tls.client_ca",
                    "needs tls.cert and tls.key: client certificates are checked over TLS",
                ));
            }
            _ => {}
        }
        for (setting, path) in [
            ("tls.cert", &self.cert),
            ("tls.key", &self.key),
            ("tls.client_ca", &self.client_ca),
        ] {
            if let Some(path) = path {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| error(setting, format!("cannot read {}: {e}", path.display())))?;
                if !text.contains("-----BEGIN ") {
                    return Err(error(
                        setting,
                        format!("{} is not a PEM file", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where the audit log goes; see [`crate::audit`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// A JSON-lines file to append to; none = the service log (target `tactful::audit`), so
    /// that auditing is never off.
    pub path: Option<PathBuf>,
}

/// Trace export; see [`crate::telemetry`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceSettings {
    /// OTLP/gRPC endpoint to export spans to; none = no export. Only in builds with the
    /// cargo feature `otlp`.
    pub otlp_endpoint: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// The admin HTTP server's address; `None` (`"off"` or `""` in the file) turns it off.
    #[serde(
        deserialize_with = "listen_or_off",
        serialize_with = "write_listen_or_off"
    )]
    pub admin_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// Seconds in-flight calls get to finish after SIGTERM/SIGINT. 10 s covers any Rank many
    /// times over and stays below Kubernetes' default 30 s termination grace.
    pub drain_grace_s: u64,
    pub limits: Limits,
    pub grpc: GrpcSettings,
    pub rank: RankSettings,
    /// `[state]`: owned, documented and checked by the state store.
    pub state: StateSettings,
    pub catalog: CatalogSettings,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
    pub audit: AuditSettings,
    pub trace: TraceSettings,
    /// The key of user-id pseudonyms (`TACTFUL_USER_HASH_KEY`); never from the file.
    #[serde(skip)]
    pub user_hash_key: Option<Secret>,
    /// The master key (`TACTFUL_MASTER_KEY`); never from the file.
    #[serde(skip)]
    pub master_key: Option<Secret>,
    /// Named policies; `default` may be tuned here, `identity` is fixed. The only settings a
    /// running server reloads (SIGHUP).
    #[serde(skip_serializing)]
    pub policies: BTreeMap<String, Policy>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            log_format: LogFormat::Human,
            drain_grace_s: 10,
            limits: Limits::default(),
            grpc: GrpcSettings::default(),
            rank: RankSettings::default(),
            state: StateSettings::default(),
            catalog: CatalogSettings::default(),
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            audit: AuditSettings::default(),
            trace: TraceSettings::default(),
            user_hash_key: None,
            master_key: None,
            policies: BTreeMap::new(),
        }
    }
}

/// A setting that cannot be used, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The file path, environment variable or dotted setting at fault.
    pub setting: String,
    pub message: String,
}

impl From<InvalidSetting> for ConfigError {
    fn from(e: InvalidSetting) -> Self {
        error(e.setting, e.message)
    }
}

fn error(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        message: message.into(),
    }
}

/// An address, or `off` / an empty string for none.
pub fn parse_listen_or_off(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.trim() {
        "" | "off" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|e| format!("{addr:?} is not an address (host:port) or off: {e}")),
    }
}

fn write_listen_or_off<S: serde::Serializer>(
    addr: &Option<SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_str("off"),
    }
}

fn listen_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen_or_off(&s).map_err(serde::de::Error::custom)
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// `Some(None)`: the admin server is turned off.
    pub admin_listen: Option<Option<SocketAddr>>,
    pub state: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults ← file (flag, else `TACTFUL_CONFIG`) ← environment ← flags, then validation.
    pub fn load(env: &dyn Env, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = overrides
            .config_file
            .clone()
            .or_else(|| env.get(ENV_CONFIG).map(PathBuf::from));
        let mut config = match file {
            Some(path) => Self::from_file(&path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(admin) = overrides.admin_listen {
            config.admin_listen = admin;
        }
        if let Some(state) = &overrides.state {
            config.state.backend = state.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            config.state.data_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// The settings outside `policies` that differ between `self` and `other`: a running
    /// server reloads only policies, so these wait for a restart.
    pub fn differences_outside_policies(&self, other: &Config) -> Vec<&'static str> {
        let mut differ = Vec::new();
        let mut check = |name, same: bool| {
            if !same {
                differ.push(name);
            }
        };
        check("listen", self.listen == other.listen);
        check("admin_listen", self.admin_listen == other.admin_listen);
        check("log_format", self.log_format == other.log_format);
        check("drain_grace_s", self.drain_grace_s == other.drain_grace_s);
        check("limits", self.limits == other.limits);
        check("grpc", self.grpc == other.grpc);
        check("rank", self.rank == other.rank);
        check("state", self.state == other.state);
        check("catalog", self.catalog == other.catalog);
        check("auth", self.auth == other.auth);
        check("tls", self.tls == other.tls);
        check("audit", self.audit == other.audit);
        check("trace", self.trace == other.trace);
        check(ENV_USER_HASH_KEY, self.user_hash_key == other.user_hash_key);
        check(ENV_MASTER_KEY, self.master_key == other.master_key);
        differ
    }

    /// The effective configuration as TOML, for `tactful config check`. Secrets are left out
    /// (only their presence is noted). Policies are shown as the file gave them (`file_policies`,
    /// its `[policies]` table), every knob not set there being at its default.
    pub fn to_toml(&self, file_policies: Option<&toml::Value>) -> Result<String, ConfigError> {
        let mut out = toml::to_string(self).map_err(|e| error("config", e.to_string()))?;
        let tokens = self.auth.tokens()?.len();
        out.push_str(&format!(
            "\n# auth: {tokens} token(s) configured (not shown); {}: {}\n",
            ENV_USER_HASH_KEY,
            if self.user_hash_key.is_some() {
                "set (not shown)"
            } else {
                "not set: random per process"
            }
        ));
        if self.master_key.is_some() {
            out.push_str(&format!("# {ENV_MASTER_KEY}: set (not shown)\n"));
        }
        let policies = Policies::build(&self.policies, self.parallelism())
            .map_err(|e| error(e.field, e.message))?;
        out.push_str("# policies in force (knobs the file does not set are at their defaults):\n");
        for name in policies.names() {
            if let Some(p) = policies.get(name) {
                out.push_str(&format!(
                    "#   {}: {}\n",
                    p.version(),
                    p.stage_names().join(" → ")
                ));
            }
        }
        if let Some(table) = file_policies {
            let mut wrapper = toml::Table::new();
            wrapper.insert("policies".into(), table.clone());
            out.push('\n');
            out.push_str(&toml::to_string(&wrapper).map_err(|e| error("policies", e.to_string()))?);
        }
        Ok(out)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(path.display().to_string(), format!("cannot read: {e}")))?;
        toml::from_str(&text).map_err(|e| error(path.display().to_string(), e.to_string()))
    }

    fn apply_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(env: &dyn Env, key: &str) -> Result<Option<T>, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            env.get(key)
                .map(|v| {
                    v.trim()
                        .parse::<T>()
                        .map_err(|e| error(key, format!("cannot parse {v:?}: {e}")))
                })
                .transpose()
        }
        if let Some(v) = parse(env, ENV_LISTEN)? {
            self.listen = v;
        }
        if let Some(v) = env.get(ENV_ADMIN_LISTEN) {
            self.admin_listen = parse_listen_or_off(&v).map_err(|e| error(ENV_ADMIN_LISTEN, e))?;
        }
        if let Some(v) = parse(env, ENV_BUDGET_MS)? {
            self.rank.budget_ms = v;
        }
        if let Some(v) = parse(env, ENV_MAX_INFLIGHT)? {
            self.rank.max_inflight = v;
        }
        if let Some(v) = parse(env, ENV_RANK_THREADS)? {
            self.rank.threads = v;
        }
        if let Some(v) = parse(env, ENV_MAX_CANDIDATES)? {
            self.limits.max_candidates = v;
        }
        if let Some(v) = parse(env, ENV_MAX_K)? {
            self.limits.max_k = v;
        }
        if let Some(v) = parse(env, ENV_MAX_MESSAGE_BYTES)? {
            self.limits.max_message_bytes = v;
        }
        if let Some(v) = parse(env, ENV_HTTP2_KEEPALIVE_INTERVAL_S)? {
            self.grpc.http2_keepalive_interval_s = v;
        }
        if let Some(v) = parse(env, ENV_HTTP2_KEEPALIVE_TIMEOUT_S)? {
            self.grpc.http2_keepalive_timeout_s = v;
        }
        if let Some(v) = parse(env, ENV_MAX_CONCURRENT_STREAMS)? {
            self.grpc.max_concurrent_streams = v;
        }
        if let Some(v) = parse(env, ENV_MAX_CONNECTION_AGE_S)? {
            self.grpc.max_connection_age_s = v;
        }
        if let Some(v) = parse(env, ENV_MAX_CONNECTIONS)? {
            self.grpc.max_connections = v;
        }
        if let Some(v) = parse(env, ENV_HANDSHAKE_TIMEOUT_S)? {
            self.grpc.handshake_timeout_s = v;
        }
        if let Some(v) = parse(env, ENV_IO_THREADS)? {
            self.grpc.io_threads = v;
        }
        if let Some(v) = parse(env, ENV_IDLE_TIMEOUT_S)? {
            self.grpc.idle_timeout_s = v;
        }
        if let Some(v) = env.get(ENV_STATE) {
            self.state.backend = v.trim().to_owned();
        }
        if let Some(v) = env.get(ENV_DATA_DIR) {
            self.state.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env.get(ENV_KEY_DIR) {
            self.state.key_dir = (!v.trim().is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_MASTER_KEY_FILE) {
            self.state.master_key_file = (!v.trim().is_empty()).then(|| PathBuf::from(v));
        }
        for (name, setting) in [
            (ENV_REDIS_CA_CERT, &mut self.state.redis_ca_cert),
            (ENV_REDIS_CLIENT_CERT, &mut self.state.redis_client_cert),
            (ENV_REDIS_CLIENT_KEY, &mut self.state.redis_client_key),
        ] {
            if let Some(v) = env.get(name) {
                *setting = (!v.trim().is_empty()).then(|| PathBuf::from(v));
            }
        }
        if let Some(v) = env.get(ENV_MASTER_KEY) {
            self.master_key = (!v.trim().is_empty()).then_some(Secret(v));
        }
        if let Some(v) = env.get(ENV_REDIS_WAIT_REPLICAS) {
            self.state.redis_wait_replicas = match v.trim() {
                "" => None,
                n => Some(n.parse().map_err(|e| {
                    error(
                        ENV_REDIS_WAIT_REPLICAS,
                        format!("cannot parse {v:?}: {e} (a number of replicas, or empty)"),
                    )
                })?),
            };
        }
        if let Some(v) = parse(env, ENV_MEMORY_CAP_MIB)? {
            self.state.memory_cap_mib = v;
        }
        if let Some(v) = parse(env, ENV_CATALOG_MAX_ITEMS)? {
            self.catalog.max_items = v;
        }
        if let Some(v) = parse(env, ENV_CATALOG_DIM)? {
            self.catalog.dim = v;
        }
        if let Some(v) = env.get(ENV_CATALOG_PATH) {
            self.catalog.path = (!v.trim().is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_AUTH_TOKENS_FILE) {
            self.auth.tokens_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_AUTH_TOKENS) {
            self.auth.env_tokens = Some(Secret(v));
        }
        if let Some(v) = parse(env, ENV_AUTH_RANK_OPEN)? {
            self.auth.rank_open = v;
        }
        if let Some(v) = env.get(ENV_TLS_CERT) {
            self.tls.cert = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_TLS_KEY) {
            self.tls.key = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_TLS_CLIENT_CA) {
            self.tls.client_ca = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_AUDIT_PATH) {
            self.audit.path = (!v.trim().is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = env.get(ENV_OTLP_ENDPOINT) {
            self.trace.otlp_endpoint = (!v.trim().is_empty()).then(|| v.trim().to_owned());
        }
        if let Some(v) = env.get(ENV_USER_HASH_KEY) {
            self.user_hash_key = Some(Secret(v));
        }
        if let Some(v) = parse(env, ENV_DRAIN_GRACE_S)? {
            self.drain_grace_s = v;
        }
        if let Some(v) = env.get(ENV_LOG_FORMAT) {
            self.log_format = match v.trim() {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                other => {
                    return Err(error(
                        ENV_LOG_FORMAT,
                        format!("{other:?} is not human or json"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// The master key's source is one, and it loads; the key store is apart from the data.
    /// (Whether the key opens the key store is checked when the store opens: `serve`, and
    /// `config check`, which reads the store's header.)
    fn check_master_key(&self) -> Result<(), ConfigError> {
        match (&self.master_key, &self.state.master_key_file) {
            (Some(_), Some(_)) => {
                return Err(error(
                    ENV_MASTER_KEY,
                    "set either TACTFUL_MASTER_KEY or state.master_key_file \
                     (TACTFUL_MASTER_KEY_FILE), not both",
                ));
            }
            (Some(key), None) => {
                MasterKey::load(&MasterKeySource::Inline(key.0.clone()))
                    .map_err(|m| error(ENV_MASTER_KEY, m))?;
            }
            (None, Some(path)) => {
                MasterKey::load(&MasterKeySource::File(path.clone()))
                    .map_err(|m| error("state.master_key_file", m))?;
            }
            (None, None) => {
                if let Ok(StateBackend::Redis(_)) = self.state.backend() {
                    return Err(error(
                        "state.master_key_file",
                        "the redis backend needs a master key, the same on every replica: set \
                         TACTFUL_MASTER_KEY_FILE (or state.master_key_file) to a file holding 64 \
                         hex digits (e.g. `openssl rand -hex 32`), mounted from a secret",
                    ));
                }
            }
        }
        if let Ok(StateBackend::Disk(dir)) = self.state.backend() {
            let keys = self
                .state
                .key_dir
                .clone()
                .unwrap_or_else(|| crate::state::default_key_dir(&dir));
            crate::state::check_key_dir(&dir, &keys).map_err(|m| error("state.key_dir", m))?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("limits.max_candidates", self.limits.max_candidates),
            ("limits.max_k", self.limits.max_k),
            ("limits.max_embedding_dim", self.limits.max_embedding_dim),
            (
                "limits.max_events_per_batch",
                self.limits.max_events_per_batch,
            ),
            ("limits.max_user_id_bytes", self.limits.max_user_id_bytes),
            ("limits.max_message_bytes", self.limits.max_message_bytes),
            ("rank.max_inflight", self.rank.max_inflight),
            ("rank.budget_ms", self.rank.budget_ms as usize),
            ("catalog.max_items", self.catalog.max_items),
            ("grpc.max_connections", self.grpc.max_connections),
        ];
        for (setting, v) in positive {
            if v == 0 {
                return Err(error(setting, "must be above 0"));
            }
        }
        self.state.validate()?;
        if self.admin_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(error(
                "admin_listen",
                format!("{} is also the gRPC listen address", self.listen),
            ));
        }
        let g = &self.grpc;
        if g.http2_keepalive_interval_s > 0 && g.http2_keepalive_timeout_s == 0 {
            return Err(error(
                "grpc.http2_keepalive_timeout_s",
                "must be above 0 while grpc.http2_keepalive_interval_s is (set the interval to 0 to turn keepalive off)",
            ));
        }
        if g.http2_keepalive_interval_s > 86_400 || g.max_connection_age_s > 30 * 86_400 {
            return Err(error(
                "grpc",
                "http2_keepalive_interval_s is at most a day and max_connection_age_s 30 days",
            ));
        }
        if g.handshake_timeout_s > 3600 || g.idle_timeout_s > 30 * 86_400 {
            return Err(error(
                "grpc",
                "handshake_timeout_s is at most an hour and idle_timeout_s 30 days",
            ));
        }
        if g.io_threads > MAX_IO_THREADS {
            return Err(error(
                "grpc.io_threads",
                format!("must be at most {MAX_IO_THREADS} (0 = automatic)"),
            ));
        }
        if self.limits.max_message_bytes > 1 << 30 {
            return Err(error("limits.max_message_bytes", "must be at most 1 GiB"));
        }
        if self.catalog.max_items > MAX_CATALOG_ITEMS {
            return Err(error(
                "catalog.max_items",
                format!("must be at most {MAX_CATALOG_ITEMS}"),
            ));
        }
        if self.catalog.dim > self.limits.max_embedding_dim {
            return Err(error(
                "catalog.dim",
                format!(
                    "{} is above limits.max_embedding_dim ({}): no request could use such embeddings",
                    self.catalog.dim, self.limits.max_embedding_dim
                ),
            ));
        }
        self.auth.tokens()?;
        self.tls.validate()?;
        self.check_master_key()?;
        if let Some(key) = &self.user_hash_key
            && key.0.len() < MIN_TOKEN_LEN
        {
            return Err(error(
                ENV_USER_HASH_KEY,
                format!(
                    "must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 24`)"
                ),
            ));
        }
        if let Some(endpoint) = &self.trace.otlp_endpoint {
            if !cfg!(feature = "otlp") {
                return Err(error(
                    "trace.otlp_endpoint",
                    "this build cannot export traces: build with `--features otlp`",
                ));
            }
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(error(
                    "trace.otlp_endpoint",
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if let Some(path) = &self.audit.path {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                return Err(error(
                    "audit.path",
                    format!("the directory of {} does not exist", path.display()),
                ));
            }
        }
        Policies::build(&self.policies, self.parallelism())
            .map_err(|e| error(e.field, e.message))?;
        Ok(())
    }

    /// Where user state is kept, from `state.backend` and `state.data_dir` (checked as
    /// [`Config::validate`] checks it).
    pub fn state_backend(&self) -> Result<StateBackend, ConfigError> {
        Ok(self.state.backend()?)
    }

    pub fn parallelism(&self) -> Parallelism {
        Parallelism {
            min_work: self.rank.parallel_min_work.max(1),
        }
    }

    /// The state store's limits in the units it computes with.
    pub fn state_config(&self) -> StateConfig {
        let mut config = self.state.config();
        if let Some(key) = &self.master_key {
            config.keys.master = Some(MasterKeySource::Inline(key.0.clone()));
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::rank::DataDimension;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file_and_validate() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.state_config(), StateConfig::default());
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let mut file = tempfile();
        writeln!(
            file.1,
            "listen = \"127.0.0.1:7000\"\n[rank]\nbudget_ms = 20\nmax_inflight = 8"
        )
        .unwrap();
        let e = env(&[(ENV_BUDGET_MS, "30"), (ENV_LISTEN, "127.0.0.1:7001")]);
        let o = Overrides {
            config_file: Some(file.0.clone()),
            ..Overrides::default()
        };
        let c = Config::load(&e, &o).unwrap();
        assert_eq!((c.rank.budget_ms, c.rank.max_inflight), (30, 8));
        assert_eq!(c.listen.port(), 7001);
        let o = Overrides {
            listen: Some("127.0.0.1:7002".parse().unwrap()),
            ..o
        };
        assert_eq!(Config::load(&e, &o).unwrap().listen.port(), 7002);
    }

    #[test]
    fn state_backend_comes_from_env_or_flag_and_is_checked() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            c.state_backend().unwrap(),
            StateBackend::Disk(PathBuf::from("tactful-data"))
        );
        let e = env(&[(ENV_STATE, "memory"), (ENV_MEMORY_CAP_MIB, "64")]);
        let c = Config::load(&e, &Overrides::default()).unwrap();
        assert_eq!(c.state_backend().unwrap(), StateBackend::Memory);
        assert_eq!(c.state_config().memory_cap_bytes, 64 << 20);
        let o = Overrides {
            state: Some("redis://127.0.0.1:6379/0".into()),
            ..Overrides::default()
        };
        // The shared backend needs a master key, the same on every replica.
        assert_eq!(
            Config::load(&e, &o).unwrap_err().setting,
            "state.master_key_file"
        );
        let key = "ab".repeat(32);
        let with_key = env(&[(ENV_STATE, "memory"), (ENV_MASTER_KEY, &key)]);
        assert!(matches!(
            Config::load(&with_key, &o)
                .unwrap()
                .state_backend()
                .unwrap(),
            StateBackend::Redis(_)
        ));
    }

    #[test]
    fn replicas_to_wait_for_come_from_the_environment_and_are_checked() {
        let key = "ab".repeat(32);
        let cluster = "redis-cluster://127.0.0.1:7000,127.0.0.1:7001";
        let load = |wait: &str| {
            Config::load(
                &env(&[
                    (ENV_STATE, cluster),
                    (ENV_MASTER_KEY, &key),
                    (ENV_REDIS_WAIT_REPLICAS, wait),
                ]),
                &Overrides::default(),
            )
        };
        assert_eq!(
            load("2").unwrap().state_config().redis_wait_replicas,
            Some(2)
        );
        assert_eq!(load(" ").unwrap().state_config().redis_wait_replicas, None);
        assert_eq!(load("two").unwrap_err().setting, ENV_REDIS_WAIT_REPLICAS);
        assert_eq!(load("99").unwrap_err().setting, "state.redis_wait_replicas");
    }

    #[test]
    fn the_master_key_comes_from_one_place_and_must_load() {
        let key = "ab".repeat(32);
        let c = Config::load(&env(&[(ENV_MASTER_KEY, &key)]), &Overrides::default()).unwrap();
        assert_eq!(
            c.state_config().keys.master,
            Some(MasterKeySource::Inline(key.clone()))
        );
        assert!(
            c.to_toml(None)
                .unwrap()
                .contains("TACTFUL_MASTER_KEY: set (not shown)")
        );
        assert!(!c.to_toml(None).unwrap().contains(&key));
        let short = Config::load(&env(&[(ENV_MASTER_KEY, "abc")]), &Overrides::default());
        assert_eq!(short.unwrap_err().setting, ENV_MASTER_KEY);
        let file = tempfile();
        std::fs::write(&file.0, &key).unwrap();
        let path = file.0.display().to_string();
        let both = env(&[(ENV_MASTER_KEY, &key), (ENV_MASTER_KEY_FILE, &path)]);
        assert_eq!(
            Config::load(&both, &Overrides::default())
                .unwrap_err()
                .setting,
            ENV_MASTER_KEY
        );
        let from_file =
            Config::load(&env(&[(ENV_MASTER_KEY_FILE, &path)]), &Overrides::default()).unwrap();
        assert_eq!(
            from_file.state_config().keys.master,
            Some(MasterKeySource::File(file.0.clone()))
        );
        let missing = env(&[(ENV_MASTER_KEY_FILE, "/nonexistent/master.key")]);
        assert_eq!(
            Config::load(&missing, &Overrides::default())
                .unwrap_err()
                .setting,
            "state.master_key_file"
        );
        let inside = env(&[
            (ENV_DATA_DIR, "/srv/tactful"),
            (ENV_KEY_DIR, "/srv/tactful/keys"),
        ]);
        assert_eq!(
            Config::load(&inside, &Overrides::default())
                .unwrap_err()
                .setting,
            "state.key_dir"
        );
        let err =
            Config::load(&env(&[(ENV_STATE, "postgres://x")]), &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "state.backend");
    }

    #[test]
    fn errors_name_the_setting() {
        let bad = Config::load(&env(&[(ENV_BUDGET_MS, "soon")]), &Overrides::default());
        assert_eq!(bad.unwrap_err().setting, ENV_BUDGET_MS);
        let zero = Config::load(&env(&[(ENV_MAX_K, "0")]), &Overrides::default());
        assert_eq!(zero.unwrap_err().setting, "limits.max_k");
        let mut file = tempfile();
        writeln!(file.1, "[rank]\nbudget = 20").unwrap();
        let err = Config::from_file(&file.0).unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
        let mut file = tempfile();
        writeln!(file.1, "[policies.soft.diversity]\nsame_brand = 2.0").unwrap();
        let c = Config::from_file(&file.0).unwrap();
        assert_eq!(
            c.validate().unwrap_err().setting,
            "policies.soft.diversity.same_brand"
        );
    }

    #[test]
    fn the_admin_server_has_an_address_or_is_off() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.admin_listen.unwrap().to_string(), "127.0.0.1:9464");
        for off in ["off", ""] {
            let c = Config::load(&env(&[(ENV_ADMIN_LISTEN, off)]), &Overrides::default());
            assert_eq!(c.unwrap().admin_listen, None, "{off:?}");
        }
        let bad = Config::load(&env(&[(ENV_ADMIN_LISTEN, "9464")]), &Overrides::default());
        assert_eq!(bad.unwrap_err().setting, ENV_ADMIN_LISTEN);
        let mut file = tempfile();
        writeln!(file.1, "admin_listen = \"off\"").unwrap();
        assert_eq!(Config::from_file(&file.0).unwrap().admin_listen, None);
        let same = Config::load(
            &env(&[(ENV_ADMIN_LISTEN, "127.0.0.1:50051")]),
            &Overrides::default(),
        );
        assert_eq!(same.unwrap_err().setting, "admin_listen");
    }

    #[test]
    fn tokens_come_from_the_file_and_the_environment_and_are_checked() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert!(c.auth.tokens().unwrap().is_empty());
        assert!(c.auth.rank_open);
        let mut file = tempfile();
        writeln!(
            file.1,
            "# who:secret\nrecommender:0123456789abcdef0123\n\napp-backend : fedcba9876543210fedc # app"
        )
        .unwrap();
        let path = file.0.display().to_string();
        let e = env(&[
            (ENV_AUTH_TOKENS_FILE, path.as_str()),
            (ENV_AUTH_TOKENS, "ops:aaaaaaaaaaaaaaaaaaaa"),
            (ENV_AUTH_RANK_OPEN, "false"),
        ]);
        let c = Config::load(&e, &Overrides::default()).unwrap();
        let ids: Vec<String> = c.auth.tokens().unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(ids, ["recommender", "app-backend", "ops"]);
        assert!(!c.auth.rank_open);
        assert!(
            !format!("{c:?}").contains("aaaaaaaaaaaa"),
            "secrets stay out of Debug"
        );
        for (bad, why) in [
            ("ops:short", "at least 16"),
            ("no-colon-here-at-all", "ID:TOKEN"),
            ("a b:0123456789abcdef0123", "letters"),
            ("x:0123456789abcdef0123,x:fedcba9876543210fedc", "twice"),
            ("x:0123456789abcdef0123,y:0123456789abcdef0123", "another"),
        ] {
            let err =
                Config::load(&env(&[(ENV_AUTH_TOKENS, bad)]), &Overrides::default()).unwrap_err();
            assert!(err.setting.starts_with(ENV_AUTH_TOKENS), "{bad}: {err}");
            assert!(err.message.contains(why), "{bad}: {err}");
        }
        let missing = env(&[(ENV_AUTH_TOKENS_FILE, "/nonexistent/tokens")]);
        let err = Config::load(&missing, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "auth.tokens_file");
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let only_cert = env(&[(ENV_TLS_CERT, "/nonexistent/cert.pem")]);
        let err = Config::load(&only_cert, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "tls.key");
        let only_ca = env(&[(ENV_TLS_CLIENT_CA, "/nonexistent/ca.pem")]);
        let err = Config::load(&only_ca, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "tls.client_ca");
        let mut not_pem = tempfile();
        writeln!(not_pem.1, "hello").unwrap();
        let path = not_pem.0.display().to_string();
        let err = Config::load(
            &env(&[(ENV_TLS_CERT, path.as_str()), (ENV_TLS_KEY, path.as_str())]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.setting == "tls.cert" && err.message.contains("not a PEM"),
            "{err}"
        );
    }

    #[test]
    fn the_audit_file_and_the_pseudonym_key_are_checked() {
        let e = env(&[
            (ENV_AUDIT_PATH, "/tmp/audit.jsonl"),
            (ENV_USER_HASH_KEY, "0123456789abcdef"),
        ]);
        let c = Config::load(&e, &Overrides::default()).unwrap();
        assert_eq!(c.audit.path, Some(PathBuf::from("/tmp/audit.jsonl")));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let short = env(&[(ENV_USER_HASH_KEY, "short")]);
        let err = Config::load(&short, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, ENV_USER_HASH_KEY);
        let nowhere = env(&[(ENV_AUDIT_PATH, "/nonexistent/dir/audit.jsonl")]);
        let err = Config::load(&nowhere, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "audit.path");
    }

    #[test]
    fn otlp_export_needs_the_feature_and_a_url() {
        let e = env(&[(ENV_OTLP_ENDPOINT, "http://127.0.0.1:4317")]);
        let loaded = Config::load(&e, &Overrides::default());
        if cfg!(feature = "otlp") {
            let c = loaded.unwrap();
            assert_eq!(
                c.trace.otlp_endpoint.as_deref(),
                Some("http://127.0.0.1:4317")
            );
        } else {
            assert_eq!(loaded.unwrap_err().setting, "trace.otlp_endpoint");
        }
        let e = env(&[(ENV_OTLP_ENDPOINT, "127.0.0.1:4317")]);
        let err = Config::load(&e, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "trace.otlp_endpoint");
    }

    #[test]
    fn transport_settings_come_from_the_file_and_the_environment() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.grpc, GrpcSettings::default());
        let mut file = tempfile();
        writeln!(
            file.1,
            "[grpc]\nhttp2_keepalive_interval_s = 60\nmax_connection_age_s = 300\n[limits]\nmax_message_bytes = 1048576"
        )
        .unwrap();
        let path = file.0.display().to_string();
        let e = env(&[
            (ENV_CONFIG, path.as_str()),
            (ENV_HTTP2_KEEPALIVE_TIMEOUT_S, "5"),
            (ENV_MAX_CONCURRENT_STREAMS, "100"),
            (ENV_MAX_CONNECTIONS, "500"),
            (ENV_HANDSHAKE_TIMEOUT_S, "3"),
            (ENV_IDLE_TIMEOUT_S, "0"),
            (ENV_IO_THREADS, "3"),
        ]);
        let c = Config::load(&e, &Overrides::default()).unwrap();
        assert_eq!(
            c.grpc,
            GrpcSettings {
                http2_keepalive_interval_s: 60,
                http2_keepalive_timeout_s: 5,
                max_concurrent_streams: 100,
                max_connection_age_s: 300,
                max_connections: 500,
                handshake_timeout_s: 3,
                idle_timeout_s: 0,
                io_threads: 3,
            }
        );
        assert_eq!(c.grpc.io_threads_for(1), 3, "a setting is taken as it is");
        let auto = GrpcSettings::default();
        assert_eq!(
            [1, 2, 3, 8].map(|cores| auto.io_threads_for(cores)),
            [1, 1, 3, 8]
        );
        let many = env(&[(ENV_IO_THREADS, "257")]);
        let err = Config::load(&many, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "grpc.io_threads");
        let zero = env(&[(ENV_MAX_CONNECTIONS, "0")]);
        let err = Config::load(&zero, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "grpc.max_connections");
        assert_eq!(c.limits.max_message_bytes, 1 << 20);
        let off = env(&[
            (ENV_HTTP2_KEEPALIVE_INTERVAL_S, "0"),
            (ENV_HTTP2_KEEPALIVE_TIMEOUT_S, "0"),
        ]);
        assert!(Config::load(&off, &Overrides::default()).is_ok());
        let bad = env(&[(ENV_HTTP2_KEEPALIVE_TIMEOUT_S, "0")]);
        let err = Config::load(&bad, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "grpc.http2_keepalive_timeout_s");
        let bad = env(&[(ENV_MAX_MESSAGE_BYTES, "0")]);
        let err = Config::load(&bad, &Overrides::default()).unwrap_err();
        assert_eq!(err.setting, "limits.max_message_bytes");
    }

    #[test]
    fn catalog_settings_come_from_the_file_and_the_environment_and_are_checked() {
        let c = Config::load(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.catalog, CatalogSettings::default());
        let mut file = tempfile();
        writeln!(
            file.1,
            "[catalog]\nmax_items = 5000\ndim = 32\npath = \"items.jsonl\""
        )
        .unwrap();
        let path = file.0.display().to_string();
        let c = Config::load(&env(&[(ENV_CONFIG, path.as_str())]), &Overrides::default()).unwrap();
        assert_eq!(
            c.catalog,
            CatalogSettings {
                max_items: 5000,
                dim: 32,
                path: Some(PathBuf::from("items.jsonl")),
            }
        );
        let e = env(&[
            (ENV_CONFIG, path.as_str()),
            (ENV_CATALOG_MAX_ITEMS, "7"),
            (ENV_CATALOG_DIM, "64"),
            (ENV_CATALOG_PATH, ""),
        ]);
        let c = Config::load(&e, &Overrides::default()).unwrap();
        assert_eq!((c.catalog.max_items, c.catalog.dim), (7, 64));
        assert_eq!(c.catalog.path, None, "an empty path turns the file off");
        for (key, value, setting) in [
            (ENV_CATALOG_MAX_ITEMS, "0", "catalog.max_items"),
            (ENV_CATALOG_MAX_ITEMS, "100000001", "catalog.max_items"),
            (ENV_CATALOG_DIM, "1025", "catalog.dim"),
            (ENV_CATALOG_DIM, "-1", ENV_CATALOG_DIM),
        ] {
            let err = Config::load(&env(&[(key, value)]), &Overrides::default()).unwrap_err();
            assert_eq!(err.setting, setting, "{key}={value}: {err}");
        }
        let mut changed = c.clone();
        changed.catalog.dim = 8;
        assert_eq!(c.differences_outside_policies(&changed), ["catalog"]);
    }

    #[test]
    fn a_platform_may_start_stricter() {
        let c = Config {
            state: StateSettings {
                consent_denied_by_default: vec![DataDimension::Search],
                ..Default::default()
            },
            ..Default::default()
        };
        let consent = c.state_config().consent_default;
        assert!(!consent.allows(DataDimension::Search));
        assert!(consent.allows(DataDimension::Browsing));
    }

    fn tempfile() -> (PathBuf, std::fs::File) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tactful-config-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }
}
