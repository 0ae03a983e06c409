//! The embedded durable backend: a write-ahead log and snapshots in one data directory.
//!
//! Recovery opens the latest snapshot (its index only), replays the log written since, and
//! starts a new log segment. A snapshot merges the previous snapshot with every user changed
//! since (in key order, streaming, so it needs no more memory than one user at a time), drops
//! the users forgotten since, and then deletes the log segments it made redundant.
//!
//! Replay is exact, not approximate: each snapshot row carries the seq that was next when the
//! row was captured (under the user's lock), and replay skips that user's ops below it.
//!
//! Reading a user back: a user not in memory is read from their snapshot row (their later
//! ops are in memory: a changed user is never evicted before a snapshot holds them). A user
//! forgotten since the last snapshot still has a row there, so such users are listed until
//! the next snapshot drops their rows, and are never read back. Loads hold `loads` shared from
//! lookup to insert; a snapshot's swap of the table and an erasure hold it exclusively, so
//! that no load can insert what was just replaced or erased.
//!
//! Files: `lock` (held while open, with the holder's pid: [`super::lock`]), `format` (the
//! layout version of everything here), `secret` (the user-key secret, 0600), `wal-*.log`,
//! `snapshot-*.tbl`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::backend::{Backend, BoxFuture, Cold, DATA_FORMAT, Load, Opened, Ticket};
use super::key::{Keyer, UserKey, random_secret};
use super::lock::DirLock;
use super::map::{Loaded, UserMap};
use super::op::Op;
use super::snapshot::{Table, TableWriter};
use super::user::UserState;
use super::wal::{self, Wal};
use super::{StateConfig, StateError};

pub(super) struct Disk {
    /// Held for as long as the backend lives (one process at a time owns the directory), or
    /// until the store is abandoned.
    lock: Mutex<Option<DirLock>>,
    dir: PathBuf,
    config: StateConfig,
    wal: Wal,
    table: RwLock<Arc<Table>>,
    /// Users forgotten since the last snapshot: their rows in it must not be read back.
    forgotten: Mutex<HashSet<UserKey>>,
    /// Loads hold it shared from lookup to insert; a snapshot swap and a forget hold it
    /// exclusively, so that no load can insert what was just replaced or erased.
    loads: RwLock<()>,
}

fn decode(bytes: &[u8]) -> Result<UserState, StateError> {
    UserState::from_row(bytes)
        .map_err(|e| StateError::Corrupt(format!("a snapshot row does not decode: {e}")))
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

/// Refuses a data directory written in another layout ([`DATA_FORMAT`]: read with the wrong
/// layout, a log record would look torn and everything after it would be lost); marks a new
/// one with this build's.
fn check_format(dir: &Path) -> Result<(), StateError> {
    let path = dir.join("format");
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(DATA_FORMAT) => Ok(()),
            Ok(other) => Err(StateError::Corrupt(format!(
                "{} holds data format {other}; this build reads format {DATA_FORMAT}. Start \
                 with an empty --data-dir (users' state is then rebuilt from new events) or \
                 run the release that wrote it",
                dir.display()
            ))),
            Err(_) => Err(StateError::Corrupt(format!(
                "{}: expected a format number",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let written_before = fs::read_dir(dir)
                .map_err(|e| StateError::io(dir, e))?
                .filter_map(Result::ok)
                .any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("wal-") || name.starts_with("snapshot-")
                });
            if written_before {
                return Err(StateError::Corrupt(format!(
                    "{} holds data from a release before format {DATA_FORMAT}; start with an \
                     empty --data-dir or run the release that wrote it",
                    dir.display()
                )));
            }
            fs::write(&path, format!("{DATA_FORMAT}\n"))
                .and_then(|()| fs::File::open(&path)?.sync_all())
                .map_err(|e| StateError::io(&path, e))?;
            wal::sync_dir(dir)
        }
        Err(e) => Err(StateError::io(&path, e)),
    }
}

impl Disk {
    /// Opens the data directory: recovers the latest snapshot's index and replays the log
    /// written since into the map.
    pub(super) fn open(dir: &Path, cfg: &StateConfig) -> Result<Opened, StateError> {
        fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
        // Before anything else is read, created or deleted here.
        let lock = DirLock::acquire(dir)?;
        check_format(dir)?;
        let keyer = Keyer::new(load_secret(dir)?);
        let table = Table::open_latest(dir)?;
        let base = table.base_seq();
        let map = UserMap::new();
        let mut forgotten = HashSet::new();
        // The seq captured with each user's snapshot row: their ops below it are in the row.
        let mut floors: HashMap<UserKey, u64> = HashMap::new();
        let mut replayed = 0u64;
        let mut next_seq = base.max(1);
        let mut failure = None;
        wal::read_all(dir, |record| {
            if record.seq < base || failure.is_some() {
                return;
            }
            next_seq = next_seq.max(record.seq + 1);
            let key = record.key;
            if record.op == Op::Forget {
                map.remove(key);
                floors.remove(&key);
                forgotten.insert(key);
                replayed += 1;
                return;
            }
            if !map.contains(key) {
                let stored = if forgotten.contains(&key) {
                    None
                } else {
                    match table.get(key).and_then(|row| {
                        row.map(|(seq, bytes)| decode(&bytes).map(|s| (seq, s)))
                            .transpose()
                    }) {
                        Ok(row) => row,
                        Err(e) => {
                            failure = Some(e);
                            return;
                        }
                    }
                };
                let (floor, state) = stored.unwrap_or_default();
                floors.insert(key, floor);
                map.insert_recovered(key, state);
            }
            if record.seq < floors.get(&key).copied().unwrap_or(0) {
                return;
            }
            let applied = map.replay(key, |state| {
                if let Err(err) = record.op.apply(state, cfg) {
                    // Only applied ops are logged; a refusal now means the limits were
                    // lowered since. Keep going: the rest of the user's words still count.
                    tracing::warn!(seq = record.seq, error = %err, "a logged op no longer applies");
                }
            });
            if applied {
                replayed += 1;
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let wal = Wal::start(
            dir,
            next_seq,
            Duration::from_millis(cfg.counter_sync_ms.max(1)),
        )?;
        tracing::info!(
            dir = %dir.display(),
            snapshot_users = table.rows(),
            replayed,
            in_memory = map.len(),
            "recovered user state"
        );
        let disk = Disk {
            lock: Mutex::new(Some(lock)),
            dir: dir.to_owned(),
            config: cfg.clone(),
            wal,
            table: RwLock::new(Arc::new(table)),
            forgotten: Mutex::new(forgotten),
            loads: RwLock::new(()),
        };
        Ok(Opened {
            backend: Arc::new(disk),
            keyer,
            map: Arc::new(map),
            snapshot_soon: replayed > 0,
        })
    }

    fn is_forgotten(&self, key: UserKey) -> bool {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
    }

    /// A user's row in the current snapshot (callers hold `loads`).
    fn row(&self, key: UserKey) -> Result<Option<(u64, UserState)>, StateError> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        match table.get(key)? {
            Some((seq, bytes)) => Ok(Some((seq, decode(&bytes)?))),
            None => Ok(None),
        }
    }

    fn load_now(&self, map: &UserMap, key: UserKey, create: bool) -> Result<Load, StateError> {
        if map.contains(key) {
            return Ok(Load::Present);
        }
        let _guard = self.loads.read().unwrap_or_else(|e| e.into_inner());
        let stored = if self.is_forgotten(key) {
            None
        } else {
            self.row(key)?
        };
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
    /// forgotten ones; then deletes the log segments it covers. Returns the rows written.
    fn write_snapshot(&self, map: &UserMap) -> Result<u64, StateError> {
        let boundary = self.wal.rotate()?;
        let forgotten: HashSet<UserKey> = self
            .forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let changed = map.changed();
        let old = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now_ms = crate::time::now_ms();
        let mut out = TableWriter::create(&self.dir, boundary)?;
        let mut old_rows = old.scan()?.peekable();
        let mut changed = changed.into_iter().peekable();
        loop {
            let next_old = match old_rows.peek() {
                Some(Ok((k, _, _))) => Some(*k),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            };
            let next_changed = changed.peek().copied();
            match (next_old, next_changed) {
                (None, None) => break,
                (Some(o), c) if c.is_none_or(|c| o < c) => {
                    let Some(Ok((key, seq, payload))) = old_rows.next() else {
                        unreachable!("peeked")
                    };
                    if !forgotten.contains(&key) {
                        out.push(key, seq, &payload)?;
                    }
                }
                (o, Some(c)) => {
                    changed.next();
                    if o == Some(c) {
                        old_rows.next();
                    }
                    self.capture(map, c, now_ms, &mut out)?;
                }
                (Some(_), None) => unreachable!("covered by the first arm"),
            }
        }
        let rows = out.rows();
        let table = out.finish()?;
        let new_path = table.path().map(Path::to_owned);
        {
            let _no_loads = self.loads.write().unwrap_or_else(|e| e.into_inner());
            *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
            self.forgotten
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|k| !forgotten.contains(k));
        }
        // Readers still holding the old table keep its open file; its name goes now (unless
        // the new one, taken at the same log position, has just replaced it under that name).
        if let Some(path) = old.path().filter(|p| Some(*p) != new_path.as_deref()) {
            fs::remove_file(path).map_err(|e| StateError::io(path, e))?;
        }
        wal::delete_before(&self.dir, boundary)?;
        Ok(rows)
    }

    /// Writes one changed user's current state (their previous row, if any, is replaced). A
    /// changed user no longer in memory was forgotten: changed users are never evicted.
    fn capture(
        &self,
        map: &UserMap,
        key: UserKey,
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
            Ok(Some((seq, bytes)))
        });
        if let Some((seq, bytes)) = row.transpose()?.flatten() {
            out.push(key, seq, &bytes)?;
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
        if self.is_forgotten(key) {
            return Ok(Cold::Unknown);
        }
        Ok(match self.row(key)? {
            Some((_, state)) => Cold::State(state),
            None => Cold::Unknown,
        })
    }

    /// Explicit words are acknowledged once fsynced; counters are logged (unless
    /// `log_counters` is off) and reach disk in the next batch, acknowledged at once.
    fn append(&self, key: UserKey, op: &Op) -> Result<Ticket, StateError> {
        if !(op.is_explicit() || self.config.log_counters) {
            return Ok(Ticket::NONE);
        }
        let seq = self.wal.append(key, op)?;
        Ok(if op.is_explicit() {
            Ticket::at(seq + 1)
        } else {
            Ticket::NONE
        })
    }

    fn durable(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.wal.durable(ticket.last))
    }

    /// Logs the erasure and lists the user as forgotten until a snapshot without their row
    /// replaces the current one (which the store waits for).
    fn forget(&self, map: &UserMap, key: UserKey) -> Result<Ticket, StateError> {
        let _no_loads = self.loads.write().unwrap_or_else(|e| e.into_inner());
        let ticket = Ticket::at(self.wal.append(key, &Op::Forget)? + 1);
        // Until the next snapshot drops their row, it must not be read back.
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        map.remove(key);
        Ok(ticket)
    }

    fn takes_snapshots(&self) -> bool {
        true
    }

    fn abandon(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn log_bytes(&self) -> u64 {
        self.wal.bytes_since_rotation()
    }

    fn snapshot(&self, map: &UserMap) -> Result<u64, StateError> {
        self.write_snapshot(map)
    }

    /// Memory the snapshot index takes.
    fn index_bytes(&self) -> usize {
        let rows = self.table.read().unwrap_or_else(|e| e.into_inner()).rows() as usize;
        rows.div_ceil(64) * 24
    }

    /// Users changed since the last snapshot stay: their changes exist only in memory and
    /// the log until a snapshot writes them out.
    fn evict(&self, map: &UserMap, want: usize) -> usize {
        map.evict_coldest(want, true)
    }
}
