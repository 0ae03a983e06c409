//! Encryption at rest with the real binary and the CLI client. Properties checked:
//! 1. After a user's events (with distinctive item, category and brand ids) and a stop, none
//!    of those ids appears in any file of the data directory or the key store, neither as
//!    decimal text nor as 8 bytes little- or big-endian.
//! 2. A copy of the data directory taken before a Forget, started with the current key store,
//!    knows nothing of the forgotten user (their records no longer decrypt) and still knows
//!    everyone else; the user's key appears in no file.
//! 3. `tactful keys rotate` refuses while the server runs (exit 64); after the stop it
//!    re-wraps the keys; the old master key is then refused at start (exit 64) and the new
//!    one opens everything.
//! 4. A key store whose master key is missing stops the start with exit 64 and a message,
//!    never an empty start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const BRAND: u64 = 424_242_421;
const ITEM: u64 = 31_337_313_373;
const CATEGORY: u64 = 7_770_777;

fn cli(url: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(args)
        .args(["--addr", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn profile(url: &str, user: &str) -> String {
    String::from_utf8_lossy(&cli(url, &["profile", "get", "--user", user]).stdout).into_owned()
}

/// Stops the server with SIGTERM (a clean stop: a final snapshot) and waits for it. (Call it
/// once the server has answered a call: its signal handlers are in place by then.)
fn stop(mut server: KillOnDrop) {
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.0.wait().unwrap().success());
}

fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_nowhere(dirs: &[&Path], id: u64) {
    for dir in dirs {
        for (path, bytes) in files_under(dir) {
            for form in [
                id.to_string().into_bytes(),
                id.to_le_bytes().to_vec(),
                id.to_be_bytes().to_vec(),
            ] {
                assert!(!contains(&bytes, &form), "{id} in {}", path.display());
            }
        }
    }
}

/// `serve` on `data`, expected to refuse to start: its exit code and what it said.
fn refused_start(data: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .arg("--data-dir")
        .arg(data)
        .env_remove("TACTFUL_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn user_data_is_sealed_forget_reaches_every_copy_and_the_master_key_rotates() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keys = root.path().join("data-keys");
    let (child, url, _drain, _) = spawn_server(&data, &[]);
    let server = KillOnDrop(child);
    let cat = CATEGORY.to_string();
    for args in [
        vec!["block-brand", "--brand", "424242421"],
        vec![
            "not-interested",
            "--item",
            "31337313373",
            "--category",
            &cat,
        ],
        vec!["fewer-like-this", "--category", &cat],
        vec!["click", "--item", "31337313373", "--category", &cat],
    ] {
        let mut all = vec!["event", "--user", "ivy"];
        all.extend(args);
        cli(&url, &all);
    }
    cli(
        &url,
        &["event", "--user", "jon", "block-brand", "--brand", "5"],
    );
    stop(server);

    // 1. Nothing in clear, in the data or the key store.
    for id in [BRAND, ITEM, CATEGORY] {
        assert_nowhere(&[&data, &keys], id);
    }

    // 2. A backup of the data directory, then Forget.
    let backup = root.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    for (path, bytes) in files_under(&data) {
        if path.file_name().is_some_and(|n| n != "lock") {
            std::fs::write(backup.join(path.file_name().unwrap()), bytes).unwrap();
        }
    }
    let secret: [u8; 16] = std::fs::read(data.join("secret"))
        .unwrap()
        .try_into()
        .unwrap();
    let ivy = tactful::state::key::Keyer::new(secret).key("ivy");
    let (child, url, _drain, _) = spawn_server(&data, &[]);
    let server = KillOnDrop(child);
    assert!(profile(&url, "ivy").contains("blocked brands    424242421"));
    cli(&url, &["profile", "forget", "--user", "ivy"]);
    stop(server);
    for (path, bytes) in files_under(&keys)
        .into_iter()
        .chain(files_under(&data))
        .chain(files_under(&backup))
    {
        assert!(!contains(&bytes, &ivy.0), "ivy's key in {}", path.display());
        assert!(!contains(&bytes, b"ivy"), "ivy's id in {}", path.display());
    }
    let key_dir = keys.display().to_string();
    // `config check` sees what `serve` will: the current key store opens for the backup.
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(["config", "check", "/dev/null"])
        .env("TACTFUL_DATA_DIR", &backup)
        .env("TACTFUL_KEY_DIR", &key_dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("opens with the configured master key"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (child, url, _drain, _) = spawn_server_with_env(&backup, &[("TACTFUL_KEY_DIR", &key_dir)]);
    let server = KillOnDrop(child);
    let shown = profile(&url, "ivy");
    assert!(
        shown.contains("lifecycle new") && shown.contains("blocked brands    none"),
        "{shown}"
    );
    assert!(profile(&url, "jon").contains("blocked brands    5"));
    stop(server);

    // 3. Rotation: not while the server runs; afterwards, only the new key opens the store.
    let new_key = root.path().join("new.key");
    std::fs::write(&new_key, "a1".repeat(32)).unwrap();
    let (child, url, _drain, _) = spawn_server(&data, &[]);
    let server = KillOnDrop(child);
    assert!(profile(&url, "jon").contains("blocked brands    5"));
    let rotate = || {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(["keys", "rotate", "--new-master-key-file"])
            .arg(&new_key)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("TACTFUL_CONFIG")
            .output()
            .unwrap()
    };
    assert_eq!(
        rotate().status.code(),
        Some(64),
        "refused while the server runs"
    );
    stop(server);
    let old_key = std::fs::read(keys.join("master.key")).unwrap();
    let out = rotate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-wrapped 1 data key"));
    let old_file = root.path().join("old.key");
    std::fs::write(&old_file, &old_key).unwrap();
    let (code, said) = refused_start(
        &data,
        &[("TACTFUL_MASTER_KEY_FILE", old_file.to_str().unwrap())],
    );
    assert_eq!(code, Some(64), "{said}");
    assert!(said.contains("does not open the key store"), "{said}");
    let (child, url, _drain, _) = spawn_server_with_env(
        &data,
        &[("TACTFUL_MASTER_KEY_FILE", new_key.to_str().unwrap())],
    );
    let server = KillOnDrop(child);
    assert!(profile(&url, "jon").contains("blocked brands    5"));
    stop(server);

    // 4. The master key gone: refused, nothing started empty.
    std::fs::remove_file(keys.join("master.key")).unwrap();
    let (code, said) = refused_start(&data, &[]);
    assert_eq!(code, Some(64), "{said}");
    assert!(said.contains("needs its master key"), "{said}");
}
