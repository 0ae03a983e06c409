//! The composition root: from one [`Config`] it builds every part of a running tactful — the
//! metrics, the readiness latch, the audit log, the user state, the item catalog, the ranking
//! pool and the engine — hands each gRPC service the parts it uses, and runs the gRPC and
//! admin HTTP servers until a shutdown. `tactful serve` ([`crate::cli`]) and the integration
//! tests run this same code; the command line only reads its arguments, binds the ports and
//! turns signals into a shutdown or a reload.
//!
//! The start is ordered so that an operator can watch it:
//! 1. The caller checks the configuration ([`check`]) before it binds any port.
//! 2. [`App::start`] starts the admin server first (on a listener the caller bound), so that
//!    `/live` answers and `/ready` says "loading" during what follows.
//! 3. The user state is opened and recovered, then (off the runtime's threads) the policies,
//!    the audit log, the ranking pool and the catalog (with its start-up file) are built, and
//!    the engine over them.
//! 4. Only then does the caller bind the gRPC port and call [`App::serve`]: nothing is served
//!    from half-loaded state. The gRPC listener is handed over here and not at the start for
//!    that reason; the admin one at the start so that it answers during recovery.
//! 5. On shutdown the gRPC server drains, the state writes a last snapshot, and the admin
//!    server (which said "draining" throughout) stops last.
//!
//! Everything is built here and nowhere else: no part builds another, and the engine only
//! ranks. This module sits at the top of the crate: nothing but `cli` depends on it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::audit::{Action, AuditLog, Entry};
use crate::catalog::Catalog;
use crate::config::{Config, ConfigError};
use crate::engine::{self, Engine};
use crate::grpc::{self, ServeError, Services};
use crate::grpc::{
    catalog::CatalogService, events::EventsService, profile::ProfileService, ranker::RankerService,
};
use crate::metrics::{Metrics, Observed};
use crate::pseudonym::Pseudonyms;
use crate::rank::{Component, DropRule, Policies, Policy};
use crate::readiness::Readiness;
use crate::state::{StateBackend, StateError, UserStore};

/// Why a server could not start. `tactful serve` exits with a code of its own for each.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that cannot be used, a bad catalog file or audit path among them.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// The user state could not be opened or recovered (e.g. its Redis does not answer).
    #[error("cannot open user state: {0}")]
    State(#[from] StateError),
    /// Building the engine broke off (its thread panicked).
    #[error("cannot build the engine: {0}")]
    Build(String),
}

/// Parts given to [`App::start_with`] instead of built from the configuration (embedding,
/// tests).
#[derive(Default)]
pub struct Given {
    /// Policies with pipelines added in code ([`Policies::insert`]); default: the built-ins
    /// plus `config.policies`.
    pub policies: Option<Policies>,
    /// A store already open (e.g. two servers on one Redis namespace); default: opened, and
    /// recovered, from `config.state`.
    pub store: Option<UserStore>,
}

/// Where the user state comes from.
enum StateSource {
    Given(Box<UserStore>),
    Open(StateBackend),
}

/// The running admin server and how to stop it.
struct AdminTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Every part of one tactful server, built and ready to serve.
pub struct App {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    audit: Arc<AuditLog>,
    store: Arc<UserStore>,
    catalog: Arc<Catalog>,
    engine: Arc<Engine>,
    admin: Option<AdminTask>,
}

/// What can be checked of `config` before any port is bound or file written: the state
/// backend's setting and the TLS files.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    config.state_backend()?;
    grpc::check_tls(config)
}

/// The audit log `audit.path` names (appended to), or the service log without one.
pub fn audit_log(config: &Config) -> Result<AuditLog, ConfigError> {
    let pseudonyms = Arc::new(Pseudonyms::new(
        config.user_hash_key.as_ref().map(|k| k.0.as_str()),
    ));
    match &config.audit.path {
        Some(path) => AuditLog::to_file(path, pseudonyms).map_err(|e| ConfigError {
            setting: "audit.path".into(),
            message: format!("cannot open {}: {e}", path.display()),
        }),
        None => Ok(AuditLog::to_log(pseudonyms)),
    }
}

/// The pool rankings run on: `rank.threads` threads (0 = one per core).
pub fn rank_pool(config: &Config) -> Result<rayon::ThreadPool, ConfigError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(config.rank.threads)
        .thread_name(|i| format!("tactful-rank-{i}"))
        .build()
        .map_err(|e| ConfigError {
            setting: "rank.threads".into(),
            message: e.to_string(),
        })
}

/// The configured catalog with its start-up file (`catalog.path`) loaded, and how many lines
/// the file held; a bad file is an error naming its line.
pub fn open_catalog(config: &Config) -> Result<(Catalog, usize), ConfigError> {
    Catalog::open(&config.catalog).map_err(|e| ConfigError {
        setting: "catalog.path".into(),
        message: e.to_string(),
    })
}

/// The engine and the parts built with it (on a blocking thread: the catalog's file may take
/// seconds to load).
fn build(
    config: &Config,
    policies: Option<Policies>,
    store: Arc<UserStore>,
    metrics: Arc<Metrics>,
) -> Result<(Engine, Arc<AuditLog>, Arc<Catalog>), ConfigError> {
    let policies = match policies {
        Some(p) => p,
        None => engine::build_policies(&config.policies, config.parallelism())?,
    };
    let audit = Arc::new(audit_log(config)?);
    let pool = Arc::new(rank_pool(config)?);
    let (catalog, loaded) = open_catalog(config)?;
    if let Some(path) = &config.catalog.path {
        tracing::info!(
            path = %path.display(),
            lines = loaded,
            items = catalog.len(),
            "catalog loaded"
        );
    }
    let catalog = Arc::new(catalog);
    let engine = Engine::new(
        config,
        engine::Parts {
            policies,
            store,
            catalog: catalog.clone(),
            pool,
            metrics,
        },
    );
    Ok((engine, audit, catalog))
}

impl App {
    /// Builds a server from `config` alone, the admin server already answering on `admin`
    /// (if given) while the state is recovered.
    pub async fn start(config: Config, admin: Option<TcpListener>) -> Result<Self, StartError> {
        Self::start_with(config, admin, Given::default()).await
    }

    /// [`App::start`] with some parts `given` rather than built from the configuration.
    pub async fn start_with(
        config: Config,
        admin: Option<TcpListener>,
        given: Given,
    ) -> Result<Self, StartError> {
        grpc::check_tls(&config)?;
        let state = match given.store {
            Some(store) => StateSource::Given(Box::new(store)),
            None => StateSource::Open(config.state_backend()?),
        };
        // The admin server comes first, so that /live answers (and /ready says "loading")
        // while the state is recovered.
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new();
        let admin_server = Admin::new(metrics.clone(), readiness.clone());
        let admin = admin.map(|listener| {
            if let Some(addr) = listener.local_addr().ok().or(config.admin_listen) {
                tracing::info!(%addr, "admin server on http://{addr} (/metrics, /live, /ready)");
            }
            let (stop, stopped) = oneshot::channel::<()>();
            let stopped = async {
                let _ = stopped.await;
            };
            let task = tokio::spawn(admin_server.clone().serve(listener, stopped));
            AdminTask { stop, task }
        });
        // Recovery runs before the gRPC port opens: nothing is served from half-loaded state.
        let store = match state {
            StateSource::Given(store) => *store,
            StateSource::Open(backend) => {
                UserStore::open_async(config.state_config(), &backend).await?
            }
        };
        let store = Arc::new(store);
        // Off the runtime's threads: the catalog's start-up file may take seconds, and the
        // admin server keeps answering meanwhile.
        let built = {
            let (config, store, metrics) = (config.clone(), store.clone(), metrics.clone());
            let policies = given.policies;
            tokio::task::spawn_blocking(move || build(&config, policies, store, metrics)).await
        };
        let (engine, audit, catalog) = built.map_err(|e| StartError::Build(e.to_string()))??;
        let engine = Arc::new(engine);
        admin_server.attach({
            let (engine, store, catalog, audit) = (
                engine.clone(),
                store.clone(),
                catalog.clone(),
                audit.clone(),
            );
            move || observed(&engine, &store, &catalog, &audit)
        });
        Ok(Self {
            config: Arc::new(config),
            metrics,
            readiness,
            audit,
            store,
            catalog,
            engine,
            admin,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn store(&self) -> &Arc<UserStore> {
        &self.store
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// What reloads this server's policies (on SIGHUP, or a test's call).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            engine: self.engine.clone(),
            audit: self.audit.clone(),
            running: self.config.clone(),
        }
    }

    /// The gRPC services, each with the parts it uses.
    fn services(&self) -> Services {
        let limits = &self.config.limits;
        Services {
            ranker: RankerService::new(
                self.engine.clone(),
                self.store.clone(),
                self.catalog.clone(),
                self.audit.pseudonyms().clone(),
                &self.metrics,
                limits.clone(),
            ),
            events: EventsService::new(
                self.store.clone(),
                self.catalog.clone(),
                self.metrics.clone(),
                limits.clone(),
            ),
            profile: ProfileService::new(
                self.store.clone(),
                self.audit.clone(),
                self.engine.clone(),
                limits.clone(),
            ),
            catalog: CatalogService::new(self.catalog.clone()),
        }
    }

    /// Serves gRPC on `listener` until `shutdown` completes, then drains (in-flight calls get
    /// `drain_grace_s`), writes the state's last snapshot so that the next start has little
    /// to replay, and stops the admin server last.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let config = &*self.config;
        let addr = listener.local_addr().map_or(config.listen, |a| a);
        let tls = match (config.tls.enabled(), config.tls.client_ca.is_some()) {
            (false, _) => "off",
            (true, false) => "on",
            (true, true) => "mutual",
        };
        let tokens = config.auth.tokens().map_or(0, |t| t.len());
        let auth = match (tokens, config.auth.rank_open) {
            (0, _) => "off".to_owned(),
            (n, true) => format!("{n} token(s); Rank open"),
            (n, false) => format!("{n} token(s)"),
        };
        tracing::info!(
            %addr,
            policies = ?self.engine.policies().names().collect::<Vec<_>>(),
            tls,
            auth,
            allocator = crate::alloc::NAME,
            io_threads = tokio::runtime::Handle::current().metrics().num_workers(),
            "tactful listening on {addr}"
        );
        let served = grpc::serve(
            listener,
            &self.config,
            self.services(),
            self.metrics.clone(),
            shutdown,
            self.readiness.clone(),
        )
        .await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        if let Some(admin) = self.admin {
            let _ = admin.stop.send(());
            let _ = admin.task.await;
        }
        served
    }
}

/// What the running parts count themselves, for a metrics scrape.
fn observed(engine: &Engine, store: &UserStore, catalog: &Catalog, audit: &AuditLog) -> Observed {
    let stats = store.stats();
    let items = catalog.stats();
    let a = engine.avoidance();
    let (inflight, max_inflight) = engine.inflight();
    Observed {
        rankings: a.rankings.load(Ordering::Relaxed),
        dropped: DropRule::ALL
            .iter()
            .map(|r| (r.name(), a.dropped_by(*r)))
            .collect(),
        penalised: Component::PENALTIES
            .iter()
            .map(|c| (c.name(), a.penalised_by(*c)))
            .collect(),
        users: stats.users,
        state_bytes: stats.bytes,
        memory_cap_bytes: store.config().memory_cap_bytes,
        evicted_total: stats.evicted_total,
        snapshots_total: stats.snapshots_total,
        snapshot_failures_total: stats.snapshot_failures_total,
        inflight,
        max_inflight,
        audit_errors: audit.errors(),
        policies: engine.policy_versions(),
        catalog_items: items.items,
        catalog_bytes: items.bytes,
        catalog_max_items: items.max_items,
        catalog_upserted: items.upserted,
        catalog_deleted: items.deleted,
        catalog_rejected: items.rejected,
        catalog_hits: items.hits,
        catalog_misses: items.misses,
        catalog_partial_embeddings: items.partial_embeddings,
    }
}

/// Reloads the policies of a running server, and audits every attempt (who asked, the
/// versions before and after, whether it took). Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    engine: Arc<Engine>,
    audit: Arc<AuditLog>,
    /// The configuration the server started with, to tell which changed settings need a
    /// restart.
    running: Arc<Config>,
}

impl Reloader {
    /// Puts the policies `configured` (plus the built-in ones) in force for every ranking
    /// that starts from now on (see [`Engine::replace_policies`]); on an invalid policy
    /// nothing changes. Audited as done by `who`.
    pub fn reload_policies(
        &self,
        configured: &BTreeMap<String, Policy>,
        who: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let before = self.engine.policy_versions();
        let result = self.engine.replace_policies(configured);
        let versions = |v: &[(String, String)]| -> Vec<String> {
            v.iter().map(|(_, version)| version.clone()).collect()
        };
        self.audit.record(Entry {
            action: Action::PolicyReload,
            who,
            user_id: None,
            result: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            detail: serde_json::json!({
                "before": versions(&before),
                "after": result.as_ref().map_or_else(|_| versions(&before), |v| versions(v)),
            }),
        });
        result
    }

    /// Reloads what can change while serving — the policies — from `loaded`, a configuration
    /// just read again (or the error reading it); warns about any other setting that differs
    /// from the one the server started with, which takes a restart. Audited as done by `who`.
    pub fn reload(
        &self,
        loaded: Result<Config, ConfigError>,
        who: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let config = match loaded {
            Ok(config) => config,
            Err(e) => {
                self.audit.record(Entry {
                    action: Action::PolicyReload,
                    who,
                    user_id: None,
                    result: Err(e.to_string()),
                    detail: serde_json::Value::Null,
                });
                return Err(e);
            }
        };
        let needs_restart = self.running.differences_outside_policies(&config);
        if !needs_restart.is_empty() {
            tracing::warn!(
                settings = ?needs_restart,
                "these settings changed in the configuration but take effect only at restart"
            );
        }
        self.reload_policies(&config.policies, who)
    }
}
