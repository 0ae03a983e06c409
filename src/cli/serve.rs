//! `tactful serve`: the arguments, telemetry, the runtime, binding the ports (the admin one
//! before the start, the gRPC one once the state is recovered), the signal that starts a
//! drain and the one that reloads the policies (SIGHUP). What runs is [`crate::app`].

use std::process::ExitCode;

use super::{EXIT_UNAVAILABLE, EXIT_USAGE, ServeArgs};
use crate::app::{self, App, Reloader, StartError};
use crate::config::{Config, Overrides, ProcessEnv, parse_listen_or_off};
use crate::state::StateError;

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
async fn reload_on_sighup(reloader: Reloader, overrides: Overrides) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: policies will not reload");
            return;
        };
        while hangups.recv().await.is_some() {
            let loaded = Config::load(&ProcessEnv, &overrides);
            match reloader.reload(loaded, "sighup") {
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
    let _ = (reloader, overrides);
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
        listen: args.listen,
        admin_listen,
        ..args.state_args.overrides()
    };
    let config = match Config::load(&ProcessEnv, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tactful: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.grpc.io_threads_for(cores))
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
        if let Err(e) = app::check(&config) {
            eprintln!("tactful: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        let admin = match config.admin_listen {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => Some(listener),
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
        let app = match App::start(config.clone(), admin).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("tactful: {e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(EXIT_USAGE),
                    // Another process owns the data directory, or the keys are missing or
                    // wrong: usage errors, not outages to retry.
                    StartError::State(StateError::Locked { .. } | StateError::Key(_)) => {
                        ExitCode::from(EXIT_USAGE)
                    }
                    StartError::State(_) => ExitCode::from(EXIT_UNAVAILABLE),
                    StartError::Build(_) => ExitCode::FAILURE,
                };
            }
        };
        // Bound only now that the state is recovered and the engine built.
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tactful: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let reloader = tokio::spawn(reload_on_sighup(app.reloader(), overrides.clone()));
        let served = app.serve(listener, shutdown_signal()).await;
        reloader.abort();
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
