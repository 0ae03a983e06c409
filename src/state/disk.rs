//! The embedded durable backend: a write-ahead log and snapshots in one data directory, every
//! record sealed under its user's data key from the key store ([`Vault`], in a directory of
//! its own).
//!
//! Recovery opens the latest snapshot (its index only), replays the log written since, and
//! starts a new log segment. A snapshot merges the previous snapshot with every user changed
//! since (in key order, streaming, so it needs no more memory than one user at a time), drops
//! the rows whose key was destroyed since, and then deletes the log segments it made
//! redundant.
//!
//! Replay is exact, not approximate: each snapshot row carries the seq that was next when the
//! row was captured (under the user's lock), and replay skips that user's ops below it.
//!
//! Sealing: a log record is `[seq][key id][sealed op]`, a snapshot row is keyed by the key id
//! and holds the sealed state. The associated data binds each to its user, key and seq
//! ([`record_aad`], [`row_aad`]), so that a record moved to another user or position does not
//! open. Nothing here names a user: only the key store maps key ids to users.
//!
//! Erasure destroys the user's key ([`Vault`]); a marker record (a key id, nothing sealed)
//! makes the log's next fsync, which first fsyncs the key store, the moment it is durable.
//! Replay skips records whose key is gone, lookups never find their rows, and the next
//! snapshot leaves the rows out. An erasure writes one key slot and one marker, whatever the
//! size of the state.
//!
//! Reading a user back: a user not in memory is read from their snapshot row (their later
//! ops are in memory: a changed user is never evicted before a snapshot holds them). Loads hold
//! `loads` shared from lookup to insert; a snapshot's swap of the table and an erasure hold it
//! exclusively, so that no load can insert what was just replaced or erased.
//!
//! Files: `lock` (held while open, with the holder's pid: [`super::lock`]), `format` (the
//! layout version of everything here; a directory of format 2 is migrated at start:
//! [`super::migrate`]), `secret` (the user-key secret, 0600), `wal-*.log`, `snapshot-*.tbl`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::backend::{Backend, BoxFuture, Cold, DATA_FORMAT, Load, Opened, Ticket};
use super::crypt::{DataKey, KeyWrap, MasterKey, MasterKeySource};
use super::key::{Keyer, UserKey, random_secret};
use super::lock::DirLock;
use super::map::{Loaded, UserMap};
use super::op::Op;
use super::snapshot::{FORMAT_V2, FORMAT_V3, FORMAT_VERSION, RowKey, Table, TableWriter};
use super::user::UserState;
use super::vault::{KeyId, Vault};
use super::wal::{self, Wal};
use super::{KeyConfig, StateConfig, StateError};

pub(super) struct Disk {
    /// Held for as long as the backend lives (one process at a time owns the directory), or
    /// until the store is abandoned.
    lock: Mutex<Option<DirLock>>,
    dir: PathBuf,
    config: StateConfig,
    wal: Wal,
    table: RwLock<Arc<Table>>,
    vault: Arc<Vault>,
    /// Loads hold it shared from lookup to insert; a snapshot swap and a forget hold it
    /// exclusively, so that no load can insert what was just replaced or erased.
    loads: RwLock<()>,
}

/// What a log record's seal is bound to: its user, key and seq.
fn record_aad(user: UserKey, id: KeyId, seq: u64) -> [u8; 40] {
    aad(b"tactfulW", user, id, seq)
}

/// What a snapshot row's seal is bound to: its user, key and the seq captured with it.
fn row_aad(user: UserKey, id: KeyId, seq: u64) -> [u8; 40] {
    aad(b"tactfulR", user, id, seq)
}

fn aad(what: &[u8; 8], user: UserKey, id: KeyId, seq: u64) -> [u8; 40] {
    let mut a = [0u8; 40];
    a[..8].copy_from_slice(what);
    a[8..24].copy_from_slice(&user.0);
    a[24..32].copy_from_slice(&id.0.to_le_bytes());
    a[32..].copy_from_slice(&seq.to_le_bytes());
    a
}

/// A snapshot row's key: the key id, big-endian so that rows sort by id.
pub(super) fn row_key(id: KeyId) -> RowKey {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.0.to_be_bytes());
    k
}

pub(super) fn row_id(key: &RowKey) -> KeyId {
    KeyId(u64::from_be_bytes(key[..8].try_into().expect("8 bytes")))
}

/// A user's encoded state, sealed as a snapshot row captured at `seq`.
pub(super) fn seal_row(key: &DataKey, user: UserKey, id: KeyId, seq: u64, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + super::crypt::SEAL_OVERHEAD);
    key.seal(&row_aad(user, id, seq), plain, &mut out);
    out
}

pub(super) fn open_row(
    key: &DataKey,
    user: UserKey,
    id: KeyId,
    seq: u64,
    sealed: &[u8],
) -> Result<UserState, StateError> {
    let plain = key
        .open(&row_aad(user, id, seq), sealed)
        .map_err(|e| StateError::Corrupt(format!("a snapshot row {e}")))?;
    UserState::from_row(&plain)
        .map_err(|e| StateError::Corrupt(format!("a snapshot row does not decode: {e}")))
}

/// A log record, opened for replay.
enum Replayed {
    /// Below the snapshot's base: the snapshot holds it.
    Before,
    /// An erasure's marker.
    Marker,
    /// Sealed under a key that is gone.
    Unreadable,
    Damaged(String),
    Op {
        key: UserKey,
        id: KeyId,
        data_key: DataKey,
        op: Op,
    },
}

fn open_record(frame: &wal::Frame<'_>, vault: &Vault, base: u64) -> Replayed {
    if frame.seq < base {
        return Replayed::Before;
    }
    if frame.sealed.is_empty() {
        return Replayed::Marker;
    }
    let id = KeyId(frame.key_id);
    let Some((key, data_key)) = vault.by_id(id) else {
        return Replayed::Unreadable;
    };
    let plain = match data_key.open(&record_aad(key, id, frame.seq), frame.sealed) {
        Ok(plain) => plain,
        Err(e) => return Replayed::Damaged(format!("does not open: {e}")),
    };
    match postcard::from_bytes::<Op>(&plain) {
        Ok(op) => Replayed::Op {
            key,
            id,
            data_key,
            op,
        },
        Err(e) => Replayed::Damaged(format!("does not decode: {e}")),
    }
}

/// Below this many records a batch is opened on one thread.
const PARALLEL_OPEN: usize = 4096;
/// Records opened at once during replay: some tens of MiB of opened ops at most.
const OPEN_BATCH: usize = 1 << 16;

/// Opens the records of one log segment, split across the cores, in order.
fn open_records(frames: &[wal::Frame<'_>], vault: &Vault, base: u64) -> Vec<Replayed> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads == 1 || frames.len() < PARALLEL_OPEN {
        return frames.iter().map(|f| open_record(f, vault, base)).collect();
    }
    let chunk = frames.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = frames
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|f| open_record(f, vault, base))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("opening log records does not panic"))
            .collect()
    })
}

fn load_secret(dir: &Path) -> Result<[u8; 16], StateError> {
    let path = dir.join("secret");
    match fs::read(&path) {
        Ok(bytes) => bytes
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Corrupt(format!("{}: expected 16 bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_secret().map_err(|e| StateError::io(&path, e))?;
            let tmp = dir.join("secret.tmp");
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(|e| StateError::io(&tmp, e))?;
            f.write_all(&secret)
                .and_then(|()| f.sync_all())
                .map_err(|e| StateError::io(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| StateError::io(&path, e))?;
            wal::sync_dir(dir)?;
            Ok(secret)
        }
        Err(e) => Err(StateError::io(&path, e)),
    }
}

/// Where a data directory stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// New, or written in this build's layout.
    Current,
    /// Written by the release before encryption at rest: migrated at start.
    V2,
    /// Written by the release before rows narrowed: migrated at start.
    V3,
}

/// Writes the `format` file (atomically: a crash leaves the old one or the new one).
pub(super) fn write_format(dir: &Path, format: u32) -> Result<(), StateError> {
    let path = dir.join("format");
    let tmp = dir.join("format.tmp");
    fs::write(&tmp, format!("{format}\n"))
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .map_err(|e| StateError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StateError::io(&path, e))?;
    wal::sync_dir(dir)
}

/// Reads the layout of `dir` ([`DATA_FORMAT`], or format 2, which is migrated); refuses any
/// other (read with the wrong layout, a log record would look torn and everything after it
/// would be lost); marks a new directory with this build's.
fn check_format(dir: &Path) -> Result<Format, StateError> {
    let path = dir.join("format");
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(DATA_FORMAT) => Ok(Format::Current),
            Ok(FORMAT_V2) => Ok(Format::V2),
            Ok(FORMAT_V3) => Ok(Format::V3),
            Ok(other) => Err(StateError::Corrupt(format!(
                "{} holds data format {other}; this build reads format {DATA_FORMAT} (and \
                 migrates formats {FORMAT_V3} and {FORMAT_V2}). Run the release that wrote it, or start with an \
                 empty --data-dir (users' state is then rebuilt from new events)",
                dir.display()
            ))),
            Err(_) => Err(StateError::Corrupt(format!(
                "{}: expected a format number",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if holds_state(dir)? {
                return Err(StateError::Corrupt(format!(
                    "{} holds data from a release before format {FORMAT_V2}; start with an \
                     empty --data-dir or run the release that wrote it",
                    dir.display()
                )));
            }
            write_format(dir, DATA_FORMAT)?;
            Ok(Format::Current)
        }
        Err(e) => Err(StateError::io(&path, e)),
    }
}

/// Whether `dir` holds any user state: a snapshot, or a log segment with something in it.
fn holds_state(dir: &Path) -> Result<bool, StateError> {
    for entry in fs::read_dir(dir).map_err(|e| StateError::io(dir, e))? {
        let entry = entry.map_err(|e| StateError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot-") && name.ends_with(".tbl") {
            return Ok(true);
        }
        if name.starts_with("wal-") && entry.metadata().is_ok_and(|m| m.len() > 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The key store's directory when none is configured: beside the data directory, named after
/// it (`tactful-data` → `tactful-data-keys`), so that a copy of the one is not a copy of the
/// other.
pub fn default_key_dir(data_dir: &Path) -> PathBuf {
    let name = data_dir.file_name().map_or_else(
        || "tactful-data".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    data_dir.with_file_name(format!("{name}-keys"))
}

/// The master key file used when none is configured: in the key store's directory, made on
/// first start (a development default; a deployment mounts its own from a secret).
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";

/// The master key `keys` names, or the one beside the key store in `key_dir`; `None` when
/// none is configured and the store is new (opening it then makes one).
fn find_master(
    keys: &KeyConfig,
    key_dir: &Path,
    exists: bool,
) -> Result<Option<MasterKey>, StateError> {
    if let Some(source) = &keys.master {
        return MasterKey::load(source).map(Some).map_err(StateError::Key);
    }
    let path = key_dir.join(DEFAULT_MASTER_KEY_FILE);
    if path.exists() {
        return MasterKey::load(&MasterKeySource::File(path))
            .map(Some)
            .map_err(StateError::Key);
    }
    if exists {
        return Err(StateError::Key(format!(
            "the key store at {} needs its master key: set TACTFUL_MASTER_KEY_FILE (or \
             state.master_key_file) to the file it was made with",
            key_dir.display()
        )));
    }
    Ok(None)
}

/// The key store's directory for `dir`, refused if it holds sealed state and its key store
/// is missing.
fn key_dir_of(
    dir: &Path,
    keys: &KeyConfig,
    had_state: bool,
) -> Result<(PathBuf, bool), StateError> {
    let key_dir = keys.dir.clone().unwrap_or_else(|| default_key_dir(dir));
    check_apart(dir, &key_dir)?;
    let exists = Vault::exists(&key_dir);
    if had_state && !exists {
        return Err(StateError::Key(format!(
            "{} holds encrypted user state, but there is no key store at {}: configure the key \
             store it was written with (state.key_dir, TACTFUL_KEY_DIR). Without it the state \
             cannot be read; tactful does not start empty in its place",
            dir.display(),
            key_dir.display()
        )));
    }
    Ok((key_dir, exists))
}

/// Opens the key store `keys` names for the data directory `dir`. `had_state`: the data
/// directory already holds sealed state, so a missing key store is an error, not a fresh
/// start.
fn open_vault(dir: &Path, keys: &KeyConfig, had_state: bool) -> Result<Vault, StateError> {
    let (key_dir, exists) = key_dir_of(dir, keys, had_state)?;
    let master = match find_master(keys, &key_dir, exists)? {
        Some(master) => master,
        None => {
            super::vault::create_private_dir(&key_dir)?;
            let path = key_dir.join(DEFAULT_MASTER_KEY_FILE);
            let key = MasterKey::generate_at(&path).map_err(StateError::Key)?;
            tracing::warn!(
                path = %path.display(),
                "no master key configured: generated one beside the key store. Fine for \
                 trying tactful; in production mount one from a secret \
                 (TACTFUL_MASTER_KEY_FILE) and keep it away from the key store's backups"
            );
            key
        }
    };
    let master: Arc<dyn KeyWrap> = Arc::new(master);
    Vault::open(&key_dir, master)
}

/// What `serve` will find when it opens the key store of the data directory `dir`, checked
/// without creating, locking or changing anything (`tactful config check`).
pub fn describe_key_store(dir: &Path, keys: &KeyConfig) -> Result<String, StateError> {
    let had_state = dir.is_dir()
        && fs::read_to_string(dir.join("format")).is_ok_and(|f| {
            [DATA_FORMAT, FORMAT_V3]
                .iter()
                .any(|v| f.trim() == v.to_string())
        })
        && holds_state(dir)?;
    let (key_dir, exists) = key_dir_of(dir, keys, had_state)?;
    let master = find_master(keys, &key_dir, exists)?;
    Ok(match master {
        Some(master) if exists => {
            Vault::check_master(&key_dir, &master)?;
            format!(
                "{}: opens with the configured master key",
                key_dir.display()
            )
        }
        Some(_) => format!("{}: made at first start", key_dir.display()),
        None => format!(
            "{}: made at first start, with a generated master key (configure one for \
             production: TACTFUL_MASTER_KEY_FILE)",
            key_dir.display()
        ),
    })
}

/// Re-wraps every data key of the data directory `dir`'s key store under `new`, without
/// touching any user data: the directory must not be in use (its lock is taken). When the
/// store's master key was the default file beside it, that file is replaced by the new key.
/// Returns the key store's directory and the keys re-wrapped.
pub fn rotate_master_key(
    dir: &Path,
    keys: &KeyConfig,
    new: &MasterKeySource,
) -> Result<(PathBuf, usize), StateError> {
    let _lock = DirLock::acquire(dir)?;
    let (key_dir, exists) = key_dir_of(dir, keys, false)?;
    if !exists {
        return Err(StateError::Key(format!(
            "no key store at {}: nothing to rotate",
            key_dir.display()
        )));
    }
    let old = find_master(keys, &key_dir, true)?.expect("an existing store needs its key");
    let new_key = MasterKey::load(new).map_err(StateError::Key)?;
    let vault = Vault::open(&key_dir, Arc::new(old))?;
    let rewrapped = vault.rotate(&new_key)?;
    if keys.master.is_none() {
        // The store opened with the default file: it must now hold the new key.
        let path = key_dir.join(DEFAULT_MASTER_KEY_FILE);
        let tmp = key_dir.join("master.key.new");
        let _ = fs::remove_file(&tmp);
        let text = match new {
            MasterKeySource::File(p) => fs::read(p).map_err(|e| StateError::io(p, e))?,
            MasterKeySource::Inline(hex) => hex.as_bytes().to_vec(),
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&text)?;
                f.sync_all()
            })
            .map_err(|e| StateError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| StateError::io(&path, e))?;
        wal::sync_dir(&key_dir)?;
    }
    Ok((key_dir, rewrapped))
}

/// The key store must not be inside the data directory (a copy of the data would carry the
/// keys) nor hold it.
pub(super) fn check_apart(data: &Path, keys: &Path) -> Result<(), StateError> {
    let canon = |p: &Path| {
        fs::canonicalize(p).unwrap_or_else(|_| {
            // Not made yet: its parent's canonical path and its name.
            p.parent()
                .and_then(|parent| fs::canonicalize(parent).ok())
                .zip(p.file_name())
                .map_or_else(|| p.to_owned(), |(parent, name)| parent.join(name))
        })
    };
    let (data, keys) = (canon(data), canon(keys));
    if keys.starts_with(&data) || data.starts_with(&keys) {
        return Err(StateError::Key(format!(
            "the key store ({}) must be apart from the data directory ({}), neither inside the \
             other: a copy or backup of the data must not carry the keys that open it",
            keys.display(),
            data.display()
        )));
    }
    Ok(())
}

impl Disk {
    /// Opens the data directory: migrates it from format 2 or 3 if it is, recovers the latest
    /// snapshot's index and replays the log written since into the map.
    pub(super) fn open(dir: &Path, cfg: &StateConfig) -> Result<Opened, StateError> {
        fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
        // Before anything else is read, created or deleted here.
        let lock = DirLock::acquire(dir)?;
        let format = check_format(dir)?;
        // A directory of format 3 has its key store already.
        let had_state = matches!(format, Format::Current | Format::V3) && holds_state(dir)?;
        let keyer = Keyer::new(load_secret(dir)?);
        let vault = Arc::new(open_vault(dir, &cfg.keys, had_state)?);
        match format {
            Format::V2 => {
                super::migrate::from_v2(dir, &vault, cfg)?;
            }
            Format::V3 => {
                super::migrate::from_v3(dir, &vault)?;
            }
            Format::Current => super::migrate::remove_leftover(dir)?,
        }
        let table = Table::open_latest(dir)?;
        if table.version() != FORMAT_VERSION {
            return Err(StateError::Corrupt(format!(
                "{}: a snapshot of format {} in a directory of format {DATA_FORMAT}",
                dir.display(),
                table.version()
            )));
        }
        let base = table.base_seq();
        let map = UserMap::new();
        // The seq captured with each user's snapshot row: their ops below it are in the row.
        let mut floors: HashMap<UserKey, u64> = HashMap::new();
        let (mut replayed, mut unreadable) = (0u64, 0u64);
        let mut next_seq = base.max(1);
        let mut failure = None;
        wal::read_segments(dir, |frames| {
            if failure.is_some() {
                return;
            }
            // Opening the seals is what costs: on every core, a batch at a time (so that
            // memory stays bounded however long the segment), then applied in order.
            for batch in frames.chunks(OPEN_BATCH) {
                let opened = open_records(batch, &vault, base);
                for (frame, record) in batch.iter().zip(opened) {
                    let (key, id, data_key, op) = match record {
                        Replayed::Before => continue,
                        Replayed::Marker => {
                            next_seq = next_seq.max(frame.seq + 1);
                            continue;
                        }
                        Replayed::Unreadable => {
                            // Sealed under a key destroyed since (or never made durable):
                            // unreadable by design.
                            next_seq = next_seq.max(frame.seq + 1);
                            unreadable += 1;
                            continue;
                        }
                        Replayed::Damaged(why) => {
                            failure = Some(StateError::Corrupt(format!(
                                "{}: log record {} {why}",
                                dir.display(),
                                frame.seq
                            )));
                            return;
                        }
                        Replayed::Op {
                            key,
                            id,
                            data_key,
                            op,
                        } => (key, id, data_key, op),
                    };
                    next_seq = next_seq.max(frame.seq + 1);
                    if !map.contains(key) {
                        let stored = match table.get(row_key(id)).and_then(|row| {
                            row.map(|(seq, bytes)| {
                                open_row(&data_key, key, id, seq, &bytes).map(|s| (seq, s))
                            })
                            .transpose()
                        }) {
                            Ok(row) => row,
                            Err(e) => {
                                failure = Some(e);
                                return;
                            }
                        };
                        let (floor, state) = stored.unwrap_or_default();
                        floors.insert(key, floor);
                        map.insert_recovered(key, state);
                    }
                    if frame.seq < floors.get(&key).copied().unwrap_or(0) {
                        continue;
                    }
                    let applied = map.replay(key, |state| {
                    if let Err(err) = op.apply(state, cfg) {
                        // Only applied ops are logged; a refusal now means the limits were
                        // lowered since. Keep going: the rest of the user's words still count.
                        tracing::warn!(seq = frame.seq, error = %err, "a logged op no longer applies");
                    }
                });
                    if applied {
                        replayed += 1;
                    }
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let keys = vault.clone();
        let wal = Wal::start(
            dir,
            next_seq,
            Duration::from_millis(cfg.counter_sync_ms.max(1)),
            Box::new(move || keys.sync()),
        )?;
        tracing::info!(
            dir = %dir.display(),
            key_store = %vault.dir().display(),
            snapshot_users = table.rows(),
            replayed,
            unreadable,
            in_memory = map.len(),
            "recovered user state"
        );
        let disk = Disk {
            lock: Mutex::new(Some(lock)),
            dir: dir.to_owned(),
            config: cfg.clone(),
            wal,
            table: RwLock::new(Arc::new(table)),
            vault,
            loads: RwLock::new(()),
        };
        Ok(Opened {
            backend: Arc::new(disk),
            keyer,
            map: Arc::new(map),
            snapshot_soon: replayed > 0 || unreadable > 0,
        })
    }

    /// A user's row in the current snapshot (callers hold `loads`).
    fn row(&self, key: UserKey) -> Result<Option<(u64, UserState)>, StateError> {
        let Some((id, data_key)) = self.vault.get(key) else {
            return Ok(None);
        };
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        match table.get(row_key(id))? {
            Some((seq, bytes)) => Ok(Some((seq, open_row(&data_key, key, id, seq, &bytes)?))),
            None => Ok(None),
        }
    }

    fn load_now(&self, map: &UserMap, key: UserKey, create: bool) -> Result<Load, StateError> {
        if map.contains(key) {
            return Ok(Load::Present);
        }
        let _guard = self.loads.read().unwrap_or_else(|e| e.into_inner());
        let stored = self.row(key)?;
        if stored.is_none() && !create {
            return Ok(Load::Unknown);
        }
        let state = stored.map(|(_, s)| s).unwrap_or_default();
        Ok(match map.insert(key, state, create, || true) {
            Loaded::Inserted => Load::Inserted,
            Loaded::Present | Loaded::Raced => Load::Present,
        })
    }

    /// Writes a new snapshot: the previous one merged with every changed user, without the
    /// rows whose key was destroyed; then deletes the log segments it covers. Returns the rows
    /// written.
    fn write_snapshot(&self, map: &UserMap) -> Result<u64, StateError> {
        let boundary = self.wal.rotate()?;
        // Every changed user gets a key (one whose ops were not logged may have none yet).
        // Under `loads`, so that an erasure cannot come between finding the user in memory
        // and making their key: a key made for a user just forgotten would outlive them.
        let mut changed: Vec<(KeyId, UserKey, DataKey)> = {
            let _no_forget = self.loads.read().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            for key in map.changed() {
                if map.contains(key) {
                    let (id, data_key) = self.vault.get_or_create(key)?;
                    out.push((id, key, data_key));
                }
            }
            out
        };
        changed.sort_unstable_by_key(|c| c.0);
        let old = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now_ms = crate::time::now_ms();
        let mut out = TableWriter::create(&self.dir, boundary)?;
        let mut old_rows = old.scan()?.peekable();
        let mut changed = changed.into_iter().peekable();
        loop {
            let next_old = match old_rows.peek() {
                Some(Ok((k, _, _))) => Some(row_id(k)),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            };
            let next_changed = changed.peek().map(|c| c.0);
            match (next_old, next_changed) {
                (None, None) => break,
                (Some(o), c) if c.is_none_or(|c| o < c) => {
                    let Some(Ok((key, seq, payload))) = old_rows.next() else {
                        unreachable!("peeked")
                    };
                    // A destroyed key's rows go now.
                    if self.vault.is_live(o) {
                        out.push(key, seq, &payload)?;
                    }
                }
                (o, Some(c)) => {
                    let (id, key, data_key) = changed.next().expect("peeked");
                    if o == Some(c) {
                        old_rows.next();
                    }
                    self.capture(map, key, id, &data_key, now_ms, &mut out)?;
                }
                (Some(_), None) => unreachable!("covered by the first arm"),
            }
        }
        let rows = out.rows();
        let kept = out.take_keys();
        // The keys the rows are sealed under are durable before the rows are.
        self.vault.sync()?;
        let table = out.finish()?;
        let new_path = table.path().map(Path::to_owned);
        {
            let _no_loads = self.loads.write().unwrap_or_else(|e| e.into_inner());
            *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
            // A user with no row and not in memory holds nothing any more (their counters
            // expired, say): their key goes too. Under `loads`, so that no load can bring such
            // a user into memory (and then append under the key) meanwhile.
            let unused = self.vault.retain_used(
                |id| kept.binary_search(&row_key(id)).is_ok(),
                |user| map.contains(user),
            )?;
            if unused > 0 {
                tracing::debug!(
                    keys = unused,
                    "destroyed the keys of users who hold nothing"
                );
            }
        }
        // Readers still holding the old table keep its open file; its name goes now (unless
        // the new one, taken at the same log position, has just replaced it under that name).
        if let Some(path) = old.path().filter(|p| Some(*p) != new_path.as_deref()) {
            fs::remove_file(path).map_err(|e| StateError::io(path, e))?;
        }
        wal::delete_before(&self.dir, boundary)?;
        Ok(rows)
    }

    /// Writes one changed user's current state, sealed (their previous row, if any, is
    /// replaced). A changed user no longer in memory was forgotten: changed users are never
    /// evicted.
    fn capture(
        &self,
        map: &UserMap,
        key: UserKey,
        id: KeyId,
        data_key: &DataKey,
        now_ms: i64,
        out: &mut TableWriter,
    ) -> Result<(), StateError> {
        let row = map.write_out(key, now_ms, &self.config, |state| {
            // Read under the user's lock: every op already applied to this user is below it.
            let seq = self.wal.next_seq();
            if state.is_empty() {
                return Ok(None);
            }
            let bytes = state.to_row().map_err(|err| {
                StateError::Corrupt(format!("a user state does not encode: {err}"))
            })?;
            Ok(Some((seq, seal_row(data_key, key, id, seq, &bytes))))
        });
        if let Some((seq, sealed)) = row.transpose()?.flatten() {
            out.push(row_key(id), seq, &sealed)?;
        }
        Ok(())
    }
}

impl Backend for Disk {
    fn load<'a>(
        &'a self,
        map: &'a UserMap,
        key: UserKey,
        create: bool,
    ) -> BoxFuture<'a, Result<Load, StateError>> {
        Box::pin(std::future::ready(self.load_now(map, key, create)))
    }

    /// The snapshot row is the truth for a user evicted again right after being loaded: a
    /// user with changes no snapshot holds is never evicted.
    fn read_cold(&self, key: UserKey) -> Result<Cold, StateError> {
        let _no_swap = self.loads.read().unwrap_or_else(|e| e.into_inner());
        Ok(match self.row(key)? {
            Some((_, state)) => Cold::State(state),
            None => Cold::Unknown,
        })
    }

    /// Explicit words are acknowledged once fsynced; counters are logged (unless
    /// `log_counters` is off) and reach disk in the next batch, acknowledged at once.
    fn append(&self, key: UserKey, op: &Op) -> Result<Ticket, StateError> {
        let explicit = op.is_explicit();
        if !(explicit || self.config.log_counters) {
            return Ok(Ticket::NONE);
        }
        let (id, data_key) = self.vault.get_or_create(key)?;
        // Sealed by the log's writer thread, off this path (which holds the user's lock).
        let plain = op
            .encoded()
            .map_err(|e| StateError::Corrupt(format!("a log record does not encode: {e}")))?;
        let size = plain.len() + super::crypt::SEAL_OVERHEAD;
        let seq = self.wal.append(
            id.0,
            explicit,
            size,
            Box::new(move |seq, buf| data_key.seal(&record_aad(key, id, seq), &plain, buf)),
        )?;
        Ok(if explicit {
            Ticket::at(seq + 1)
        } else {
            Ticket::NONE
        })
    }

    fn durable(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.wal.durable(ticket.last))
    }

    /// Destroys the user's key and logs a marker: the log's next fsync, which the erasure
    /// waits for, makes the key store's erasure durable first. Nothing about a user who had
    /// no key was ever written, so their erasure writes nothing.
    fn forget(&self, map: &UserMap, key: UserKey) -> Result<Ticket, StateError> {
        let _no_loads = self.loads.write().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
        let Some(id) = self.vault.destroy(key)? else {
            return Ok(Ticket::NONE);
        };
        let seq = self.wal.append(id.0, true, 0, Box::new(|_, _| {}))?;
        Ok(Ticket::at(seq + 1))
    }

    fn takes_snapshots(&self) -> bool {
        true
    }

    fn abandon(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.vault.abandon();
    }

    fn log_bytes(&self) -> u64 {
        self.wal.bytes_since_rotation()
    }

    fn snapshot(&self, map: &UserMap) -> Result<u64, StateError> {
        self.write_snapshot(map)
    }

    /// Memory the snapshot index and the key store take.
    fn index_bytes(&self) -> usize {
        let rows = self.table.read().unwrap_or_else(|e| e.into_inner()).rows() as usize;
        rows.div_ceil(64) * 24 + self.vault.memory_bytes()
    }

    /// Users changed since the last snapshot stay: their changes exist only in memory and
    /// the log until a snapshot writes them out.
    fn evict(&self, map: &UserMap, want: usize) -> usize {
        map.evict_coldest(want, true)
    }
}
