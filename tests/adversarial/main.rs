//! The server against careless and hostile clients, and against a second process: the cases
//! found by trying to break it, each run against the real binary on loopback, bounded in time
//! and count. Properties checked:
//! 1. A second `tactful serve` on a running server's data directory exits 64 naming the
//!    holder's pid, and deletes nothing: the first server's log segments stay, and after a
//!    `kill -9` of the first, what it acknowledged is still there.
//! 2. Connections: while 2,000 silent connections are open (`TACTFUL_TEST_SILENT_CONNECTIONS`
//!    for more, e.g. the 10,000 with a release build), `/live` answers and a Rank
//!    succeeds; the silent ones are
//!    closed within `grpc.handshake_timeout_s`; at `grpc.max_connections` a new connection
//!    takes the place of the oldest silent one (a Rank gets through), and is closed at once
//!    when every open connection has spoken; with the process limited to 512 descriptors,
//!    1,000 silent connections never exhaust them; a connection idle for `grpc.idle_timeout_s` is closed, and its
//!    client's next call simply reconnects; `tactful_grpc_connections` counts them.
//! 3. A Catalog.Upsert stream the client resets (CANCEL or NO_ERROR) or lets pass its
//!    deadline changes nothing; one it ends itself is applied.
//! 4. `grpc-timeout: 8m` on a 5,000 × 128 Rank gets a degraded answer or DEADLINE_EXCEEDED
//!    (never tonic's CANCELLED), counted in `tactful_rank_degraded_total{reason="deadline"}`;
//!    a strict one gets DEADLINE_EXCEEDED.
//! 5. A garbage message, a lying length prefix, a wrong content type, two messages or none in
//!    a unary call, a compressed flag without an encoding: INVALID_ARGUMENT saying what is
//!    wrong, never counted as `outcome="internal"`.
//! 6. The CLI: `--addr host:port` without a scheme works; the server's log has no colour
//!    codes when it is not written to a terminal.
//! 7. Request decoding and validation never panic on arbitrary bytes or hostile values
//!    (proptest; `scripts/fuzz.sh` runs it for minutes).
//! 8. Through the binary: BLOCK at t then UNBLOCK said at t − 4 s leaves the brand blocked,
//!    also after a kill -9; an Undo of nothing, an empty SetConsent and removing a tag never
//!    set leave the user unknown; Forget of a user never seen writes no snapshot (and under
//!    1 MiB).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod connections;
mod fuzz;
mod lock;
mod state;
mod wire;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// A running `tactful serve` (killed when dropped), with its gRPC URL and admin address.
pub struct Server {
    pub child: common::KillOnDrop,
    pub url: String,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The server's log up to its "listening" line.
    pub log_head: String,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the real binary on free ports with state in a directory of its own and `env`
    /// on top of the defaults.
    pub fn start(env: &[(&str, &str)]) -> Self {
        // The data directory and its key store (beside it) both in one temporary directory.
        let data = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(&data.path().join("data"), env);
        server._data = Some(data);
        server
    }

    pub fn start_in(data: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_fds(data, env, None)
    }

    /// [`Server::start`] with the process's file-descriptor limit (soft and hard) at `fds`.
    pub fn start_with_fd_limit(env: &[(&str, &str)], fds: u64) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut server = Self::start_with_fds(&data.path().join("data"), env, Some(fds));
        server._data = Some(data);
        server
    }

    fn start_with_fds(data: &std::path::Path, env: &[(&str, &str)], fds: Option<u64>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tactful"));
        if let Some(fds) = fds {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: fds,
                rlim_max: fds,
            };
            // SAFETY: only setrlimit runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data)
            .env("TACTFUL_LOG", "info")
            .env_remove("TACTFUL_CONFIG")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut admin = None;
        let mut log_head = String::new();
        let addr = loop {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
                "server exited early"
            );
            log_head.push_str(&line);
            if let Some(rest) = line.split("admin server on http://").nth(1) {
                admin = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self {
            child: common::KillOnDrop(child),
            url: format!("http://{addr}"),
            addr: addr.parse().unwrap(),
            admin: admin.expect("the admin address is logged first"),
            log_head,
            _data: None,
        }
    }

    /// A series of the server's `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (status, page) = common::http_get_blocking(self.admin, "/metrics");
        assert_eq!(status, 200);
        common::metric(&page, series)
    }

    /// Runs a CLI client subcommand against this server.
    pub fn client(&self, subcommand: &str, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(subcommand.split(' '))
            .args(["--addr", &self.url])
            .args(args)
            .output()
            .unwrap()
    }

    /// Whether a Rank of the sample candidates succeeds.
    pub fn ranks(&self) -> bool {
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/candidates.json");
        let out = self.client("rank", &["--user", "probe", "--candidates", sample]);
        out.status.success()
    }
}

/// The soft limit of this process's file descriptors.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}
