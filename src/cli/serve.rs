//! `tactful serve`: configuration, telemetry, the runtime, the signal that starts a drain, and
//! the one that reloads the policies (SIGHUP).

use std::process::ExitCode;
use std::sync::Arc;

use super::{EXIT_UNAVAILABLE, EXIT_USAGE, ServeArgs};
use crate::admin::Admin;
use crate::config::{Config, Overrides, ProcessEnv, parse_listen_or_off};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::state::UserStore;

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// On every SIGHUP, reads the configuration again (same file, environment and flags) and
/// reloads the policies; a bad file leaves the running ones in force. Runs until the process
/// ends.
async fn reload_on_sighup(engine: Arc<Engine>, overrides: Overrides, running: Config) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: policies will not reload");
            return;
        };
        while hangups.recv().await.is_some() {
            let loaded = Config::load(&ProcessEnv, &overrides);
            match engine.reload(loaded, &running, "sighup") {
                Ok(versions) => {
                    let versions: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
                    tracing::info!(?versions, "policies reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload refused; the running policies stay in force");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (engine, overrides, running);
}

/// The gRPC services over the engine's parts.
fn services(engine: &Arc<Engine>, config: &Config) -> crate::grpc::Services {
    use crate::grpc::{catalog, events, profile, ranker};
    let limits = &config.limits;
    crate::grpc::Services {
        ranker: ranker::RankerService::new(
            engine.clone(),
            engine.catalog().clone(),
            engine.audit().pseudonyms().clone(),
            limits.clone(),
        ),
        events: events::EventsService::new(
            engine.store().clone(),
            engine.catalog().clone(),
            engine.metrics().clone(),
            limits.clone(),
        ),
        profile: profile::ProfileService::new(
            engine.store().clone(),
            engine.audit().clone(),
            engine.clone(),
            limits.clone(),
        ),
        catalog: catalog::CatalogService::new(engine.catalog().clone()),
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    let admin_listen = match args
        .admin_listen
        .as_deref()
        .map(parse_listen_or_off)
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tactful: --admin-listen: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let overrides = Overrides {
        config_file: args.config,
        listen: args.listen,
        admin_listen,
        state: args.state,
        data_dir: args.data_dir,
    };
    let config = match Config::load(&ProcessEnv, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tactful: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tactful-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tactful: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: an OTLP exporter's gRPC client needs it.
    let telemetry = {
        let _entered = runtime.enter();
        crate::telemetry::init(&config)
    };
    let code = runtime.block_on(async move {
        let backend = match config.state_backend() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("tactful: configuration error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        if let Err(e) = crate::grpc::check_tls(&config) {
            eprintln!("tactful: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        // The admin server comes first, so that /live answers (and /ready says "loading")
        // while the state is recovered.
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new();
        let admin = Admin::new(metrics.clone(), readiness.clone());
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = match config.admin_listen {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let addr = listener.local_addr().map_or(addr, |a| a);
                    tracing::info!(%addr, "admin server on http://{addr} (/metrics, /live, /ready)");
                    let stopped = async {
                        let _ = admin_stopped.await;
                    };
                    Some(tokio::spawn(admin.clone().serve(listener, stopped)))
                }
                Err(e) => {
                    eprintln!(
                        "tactful: cannot listen on {addr} (admin_listen): {e}; choose another \
                         address with --admin-listen or TACTFUL_ADMIN_LISTEN, or turn it off"
                    );
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        // Recovery runs before the port opens: nothing is served from half-loaded state.
        let store = match UserStore::open_async(config.state_config(), &backend).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("tactful: cannot open user state: {e}");
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        };
        // Off the runtime's threads: the engine loads the catalog's start-up file, which may
        // take seconds, and the admin server keeps answering meanwhile.
        let built = {
            let (config, store) = (config.clone(), store.clone());
            tokio::task::spawn_blocking(move || Engine::new(&config, store)).await
        };
        let engine = match built {
            Ok(Ok(e)) => Arc::new(e.with_metrics(metrics)),
            Ok(Err(e)) => {
                eprintln!("tactful: configuration error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            Err(e) => {
                eprintln!("tactful: cannot build the engine: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tactful: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
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
            policies = ?engine.policies().names().collect::<Vec<_>>(),
            tls,
            auth,
            allocator = crate::alloc::NAME,
            "tactful listening on {addr}"
        );
        admin.attach(engine.clone());
        let reloader = tokio::spawn(reload_on_sighup(
            engine.clone(),
            overrides.clone(),
            config.clone(),
        ));
        let services = services(&engine, &config);
        let metrics = engine.metrics().clone();
        let served = crate::grpc::serve(
            listener,
            &config,
            services,
            metrics,
            shutdown_signal(),
            readiness,
        )
        .await;
        // A last snapshot, so that the next start has little log to replay.
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        reloader.abort();
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        match served {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    });
    // Exported spans still queued are sent while the runtime is alive.
    let _entered = runtime.enter();
    drop(telemetry);
    code
}
