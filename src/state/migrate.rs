//! The automatic migration of a data directory from format 2 (state in clear, rows keyed by
//! user) to the current format (every row and record sealed under its user's data key, rows
//! keyed by key id), run at start by the disk backend, holding the directory's lock.
//!
//! 1. Format 2's snapshot and log segments move into `format-2-backup/` (built under a
//!    temporary name, so that a crash never leaves half the files on each side unnoticed).
//! 2. The old state is recovered from the backup exactly as format 2's recovery did: the
//!    snapshot's rows, then the log replayed on top (erasures honoured).
//! 3. One new snapshot holds every user, each sealed under a new data key; the keys are made
//!    durable first, then the snapshot, then the `format` file says the new format.
//! 4. Only then does the backup go.
//!
//! A crash at any step leaves either format 2 with its backup (the next start migrates again
//! from the backup, discarding what the interrupted run wrote) or the new format complete
//! (the next start deletes a leftover backup). Keys made by an interrupted run are reused.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use super::backend::DATA_FORMAT;
use super::disk::{row_key, seal_row};
use super::key::UserKey;
use super::op::Op;
use super::snapshot::{FORMAT_V2, Table, TableWriter};
use super::user::UserState;
use super::vault::Vault;
use super::wal::{self, sync_dir};
use super::{StateConfig, StateError, legacy};

pub(super) const BACKUP: &str = "format-2-backup";
const BACKUP_TMP: &str = "format-2-backup.tmp";

/// Whether a file belongs to the state proper (log segments and snapshots).
fn is_state_file(name: &str) -> bool {
    name.starts_with("wal-") || name.starts_with("snapshot-")
}

fn state_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, StateError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StateError::io(dir, e))? {
        let entry = entry.map_err(|e| StateError::io(dir, e))?;
        if entry.file_name().to_str().is_some_and(is_state_file) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Deletes the backup a finished migration left (the `format` file already says the new
/// format, so the backup is no longer needed).
pub(super) fn remove_leftover(dir: &Path) -> Result<(), StateError> {
    for name in [BACKUP, BACKUP_TMP] {
        let path = dir.join(name);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| StateError::io(&path, e))?;
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Moves format 2's files into the backup, unless a previous run already did.
fn make_backup(dir: &Path) -> Result<std::path::PathBuf, StateError> {
    let backup = dir.join(BACKUP);
    if backup.exists() {
        // An interrupted run: what it wrote beside the backup is discarded.
        for path in state_files(dir)? {
            fs::remove_file(&path).map_err(|e| StateError::io(&path, e))?;
        }
        sync_dir(dir)?;
        return Ok(backup);
    }
    let tmp = dir.join(BACKUP_TMP);
    fs::create_dir_all(&tmp).map_err(|e| StateError::io(&tmp, e))?;
    for path in state_files(dir)? {
        let to = tmp.join(path.file_name().expect("a file name"));
        fs::rename(&path, &to).map_err(|e| StateError::io(&to, e))?;
    }
    sync_dir(&tmp)?;
    fs::rename(&tmp, &backup).map_err(|e| StateError::io(&backup, e))?;
    sync_dir(dir)?;
    Ok(backup)
}

/// Format 2's state: users by key, with the seq their snapshot row was captured at.
struct Old {
    table: Table,
    /// Users the log touched, replayed on top of their row.
    touched: BTreeMap<UserKey, UserState>,
    forgotten: HashSet<UserKey>,
    next_seq: u64,
}

fn corrupt(what: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(format!("migrating from data format {FORMAT_V2}: {what}"))
}

fn recover(backup: &Path, cfg: &StateConfig) -> Result<Old, StateError> {
    let table = Table::open_latest(backup)?;
    if table.rows() > 0 && table.version() != FORMAT_V2 {
        return Err(corrupt(format!(
            "the snapshot in {} is in format {}",
            backup.display(),
            table.version()
        )));
    }
    let base = table.base_seq();
    let mut touched: BTreeMap<UserKey, (u64, UserState)> = BTreeMap::new();
    let mut forgotten = HashSet::new();
    let mut next_seq = base.max(1);
    let mut failure = None;
    wal::read_payloads(backup, |payload| {
        if failure.is_some() {
            return;
        }
        let decoded = postcard::take_from_bytes::<(u64, UserKey)>(payload)
            .map_err(|e| corrupt(format!("a log record does not decode: {e}")))
            .and_then(|((seq, key), rest)| {
                legacy::decode_op_v2(rest)
                    .map(|op| (seq, key, op))
                    .map_err(|e| corrupt(format!("a log op does not decode: {e}")))
            });
        let (seq, key, op) = match decoded {
            Ok(d) => d,
            Err(e) => {
                failure = Some(e);
                return;
            }
        };
        if seq < base {
            return;
        }
        next_seq = next_seq.max(seq + 1);
        if op == Op::Forget {
            touched.remove(&key);
            forgotten.insert(key);
            return;
        }
        let (floor, state) = match touched.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let row = if forgotten.contains(&key) {
                    None
                } else {
                    match table.get(key.0).and_then(|row| {
                        row.map(|(seq, bytes)| {
                            legacy::decode_row_v2(&bytes)
                                .map(|s| (seq, s))
                                .map_err(|e| {
                                    corrupt(format!("a snapshot row does not decode: {e}"))
                                })
                        })
                        .transpose()
                    }) {
                        Ok(row) => row,
                        Err(e) => {
                            failure = Some(e);
                            return;
                        }
                    }
                };
                e.insert(row.unwrap_or_default())
            }
        };
        if seq >= *floor
            && let Err(err) = op.apply(state, cfg)
        {
            tracing::warn!(seq, error = %err, "a logged op no longer applies");
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Old {
        table,
        touched: touched.into_iter().map(|(k, (_, s))| (k, s)).collect(),
        forgotten,
        next_seq,
    })
}

/// Migrates `dir` (holding format 2, locked by the caller) to the current format, with every
/// user's data key in `vault`. Returns the users written.
pub(super) fn from_v2(dir: &Path, vault: &Vault, cfg: &StateConfig) -> Result<u64, StateError> {
    let backup = make_backup(dir)?;
    let old = recover(&backup, cfg)?;
    let mut rows: Vec<([u8; 16], Vec<u8>)> = Vec::new();
    let mut add = |key: UserKey, state: &UserState| -> Result<(), StateError> {
        if state.is_empty() {
            return Ok(());
        }
        let (id, data_key) = vault.get_or_create(key)?;
        let plain = state
            .to_row()
            .map_err(|e| corrupt(format!("a user state does not encode: {e}")))?;
        rows.push((
            row_key(id),
            seal_row(&data_key, key, id, old.next_seq, &plain),
        ));
        Ok(())
    };
    let mut touched = old.touched.iter().peekable();
    for row in old.table.scan()? {
        let (raw, _, payload) = row?;
        let key = UserKey(raw);
        while let Some((k, state)) = touched.next_if(|(k, _)| **k < key) {
            add(*k, state)?;
        }
        if let Some((k, state)) = touched.next_if(|(k, _)| **k == key) {
            add(*k, state)?;
        } else if !old.forgotten.contains(&key) {
            let state = legacy::decode_row_v2(&payload)
                .map_err(|e| corrupt(format!("a snapshot row does not decode: {e}")))?;
            add(key, &state)?;
        }
    }
    for (k, state) in touched {
        add(*k, state)?;
    }
    // Key ids follow creation order, but a key an interrupted run made may come earlier.
    rows.sort_unstable_by_key(|r| r.0);
    vault.sync()?;
    let mut out = TableWriter::create(dir, old.next_seq)?;
    for (key, sealed) in &rows {
        // Every op of the old log is in the row: the floor is the first seq of the new log.
        out.push(*key, old.next_seq, sealed)?;
    }
    out.finish()?;
    super::disk::write_format(dir, DATA_FORMAT)?;
    remove_leftover(dir)?;
    tracing::info!(
        dir = %dir.display(),
        users = rows.len(),
        from = FORMAT_V2,
        to = DATA_FORMAT,
        "migrated the data directory: every user's state is now sealed under their own key"
    );
    Ok(rows.len() as u64)
}
