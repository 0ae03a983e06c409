//! 1. One process at a time owns a data directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// The data directory's files (name and whether it is a log segment).
fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn client(subcommand: &str, url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(subcommand.split(' '))
        .args(["--addr", url])
        .args(args)
        .output()
        .unwrap()
}

/// Files a process holds open that were deleted under it.
fn deleted_open_files(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.ends_with("(deleted)"))
        .collect()
}

#[test]
fn a_second_server_on_the_same_data_directory_exits_64_and_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let (child, url, drain, _admin) = spawn_server(&data, &[]);
    let mut first = KillOnDrop(child);
    let pid = first.0.id();
    let out = client(
        "event",
        &url,
        &["--user", "ann", "block-brand", "--brand", "8"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = files(&data);
    assert!(before.iter().any(|f| f.starts_with("wal-")), "{before:?}");

    // Twice: with the admin server off, and on another admin port.
    for admin in ["off", "127.0.0.1:0"] {
        let second = Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", admin])
            .arg("--data-dir")
            .arg(&data)
            .env_remove("TACTFUL_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Without the lock the second server would serve on: give it 20 s to exit.
        let mut second = second;
        let started = Instant::now();
        while second.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = second.kill();
                panic!("a second server on the same data directory kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let second = second.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
        let after = files(&data);
        assert!(before.is_subset(&after), "{before:?} -> {after:?}");
        assert_eq!(deleted_open_files(pid), Vec::<String>::new());
    }
    // `config check` says who owns the directory, and takes nothing from it.
    let config = root.path().join("t.toml");
    std::fs::write(
        &config,
        format!("[state]\ndata_dir = {:?}\n", &data.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("in use by pid {pid}")), "{stdout}");

    // The first server's acknowledged block survives its kill -9.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drain.join().unwrap().unwrap();
    let (child, url, drain, _) = spawn_server(&data, &[]);
    let mut again = KillOnDrop(child);
    let out = client("profile get", &url, &["--user", "ann"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("blocked brands    8"), "{stdout}");
    again.0.kill().unwrap();
    again.0.wait().unwrap();
    drain.join().unwrap().unwrap();
}
