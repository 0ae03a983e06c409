//! `tactful keys rotate`: re-wraps every user's data key under a new master key, without
//! rewriting any user data, for the disk backend's key store or the Redis namespace. The
//! server must be stopped: the data directory's lock is taken (a running server makes this
//! exit 64), and Redis replicas hold the old key in memory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{EXIT_UNAVAILABLE, EXIT_USAGE, StateArgs};
use crate::config::{Config, ProcessEnv};
use crate::state::crypt::MasterKeySource;
use crate::state::{StateBackend, StateError};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every user's data key under a new master key (no user data is rewritten).
    /// Stop the server first; the current key comes from the configuration, as for `serve`.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The file holding the new master key (64 hex digits, e.g. `openssl rand -hex 32`).
    #[arg(long)]
    pub new_master_key_file: PathBuf,
    /// Read as `serve` reads them.
    #[command(flatten)]
    pub state_args: StateArgs,
}

pub fn run(command: KeysCommand) -> ExitCode {
    let KeysCommand::Rotate(args) = command;
    let config = match Config::load(&ProcessEnv, &args.state_args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tactful: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let new = MasterKeySource::File(args.new_master_key_file.clone());
    let state = config.state_config();
    let rotated = match config.state_backend() {
        Ok(StateBackend::Disk(dir)) => crate::state::rotate_master_key(&dir, &state.keys, &new)
            .map(|(key_dir, n)| (key_dir.display().to_string(), n)),
        Ok(StateBackend::Redis(url)) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StateError::Unavailable(e.to_string()))
            .and_then(|rt| {
                rt.block_on(crate::state::rotate_redis_master_key(
                    &state,
                    &url,
                    crate::state::DEFAULT_REDIS_NAMESPACE,
                    &new,
                ))
            })
            .map(|n| {
                (
                    format!("redis namespace {}", crate::state::DEFAULT_REDIS_NAMESPACE),
                    n,
                )
            }),
        Ok(StateBackend::Memory) => {
            eprintln!("tactful: the memory backend keeps no keys: nothing to rotate");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("tactful: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rotated {
        Ok((store, n)) => {
            println!(
                "re-wrapped {n} data key(s) of {store} under {}; no user data was rewritten. \
                 Start the server with that key now (TACTFUL_MASTER_KEY_FILE or \
                 state.master_key_file), then retire the old one.",
                args.new_master_key_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tactful: {e}");
            ExitCode::from(match e {
                StateError::Key(_) | StateError::Locked { .. } => EXIT_USAGE,
                _ => EXIT_UNAVAILABLE,
            })
        }
    }
}
