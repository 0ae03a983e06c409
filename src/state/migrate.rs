//! The automatic migrations of a data directory to the current format (4), run at start by
//! the disk backend, holding the directory's lock.
//!
//! **From format 3** (rows of the wider layout): only the snapshot's rows change; log records
//! carry events and changes, whose encoding did not (a row inside a record, which only the
//! shared backend writes, is read in either layout).
//!
//! 1. The snapshot and log segments move into `format-3-backup/` (built under a temporary
//!    name, as below).
//! 2. Every row of the backup's snapshot is opened under its user's key, read in format 3,
//!    written in format 4 and sealed again under the same key, at the same log position, into
//!    a new snapshot; the rows of destroyed keys are left out (nobody can read them). The log
//!    segments are copied back beside it and fsynced.
//! 3. The `format` file says 4; only then does the backup go. A crash before that starts
//!    again from the backup, as below.
//!
//! **From format 2** (state in clear, rows keyed by user) to the current format (every row and
//! record sealed under its user's data key, rows keyed by key id):
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
use super::disk::{open_row, row_id, row_key, seal_row};
use super::key::UserKey;
use super::op::Op;
use super::snapshot::{FORMAT_V2, FORMAT_V3, Table, TableWriter};
use super::user::UserState;
use super::vault::Vault;
use super::wal::{self, sync_dir};
use super::{StateConfig, StateError, legacy};

pub(super) const BACKUP: &str = "format-2-backup";
const BACKUP_TMP: &str = "format-2-backup.tmp";
pub(super) const BACKUP_V3: &str = "format-3-backup";
const BACKUP_V3_TMP: &str = "format-3-backup.tmp";

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
    for name in [BACKUP, BACKUP_TMP, BACKUP_V3, BACKUP_V3_TMP] {
        let path = dir.join(name);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| StateError::io(&path, e))?;
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Moves the old format's files into the backup `name`, unless a previous run already did.
fn make_backup(dir: &Path, name: &str, tmp: &str) -> Result<std::path::PathBuf, StateError> {
    let backup = dir.join(name);
    if backup.exists() {
        // An interrupted run: what it wrote beside the backup is discarded.
        for path in state_files(dir)? {
            fs::remove_file(&path).map_err(|e| StateError::io(&path, e))?;
        }
        sync_dir(dir)?;
        return Ok(backup);
    }
    let tmp = dir.join(tmp);
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
    let backup = make_backup(dir, BACKUP, BACKUP_TMP)?;
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

/// Migrates `dir` (holding format 3, locked by the caller) to the current format: every
/// snapshot row rewritten in today's layout under the same key, the log as it was. Returns
/// the users written.
pub(super) fn from_v3(dir: &Path, vault: &Vault) -> Result<u64, StateError> {
    let corrupt = |what: String| {
        StateError::Corrupt(format!("migrating from data format {FORMAT_V3}: {what}"))
    };
    let backup = make_backup(dir, BACKUP_V3, BACKUP_V3_TMP)?;
    let table = Table::open_latest(&backup)?;
    if table.rows() > 0 && table.version() != FORMAT_V3 {
        return Err(corrupt(format!(
            "the snapshot in {} is in format {}",
            backup.display(),
            table.version()
        )));
    }
    let mut out = TableWriter::create(dir, table.base_seq())?;
    let (mut users, mut unreadable) = (0u64, 0u64);
    for row in table.scan()? {
        let (key, seq, sealed) = row?;
        let id = row_id(&key);
        // A destroyed key's row: nobody can read it, and the next snapshot would drop it.
        let Some((user, data_key)) = vault.by_id(id) else {
            unreadable += 1;
            continue;
        };
        let state = open_row(&data_key, user, id, seq, &sealed)?;
        let plain = state
            .to_row()
            .map_err(|e| corrupt(format!("a user state does not encode: {e}")))?;
        out.push(key, seq, &seal_row(&data_key, user, id, seq, &plain))?;
        users += 1;
    }
    out.finish()?;
    // The log is the same in both formats: copied, so that the backup stays whole.
    for entry in fs::read_dir(&backup).map_err(|e| StateError::io(&backup, e))? {
        let path = entry.map_err(|e| StateError::io(&backup, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with("wal-") {
            let to = dir.join(name);
            fs::copy(&path, &to).map_err(|e| StateError::io(&to, e))?;
            fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| StateError::io(&to, e))?;
        }
    }
    sync_dir(dir)?;
    super::disk::write_format(dir, DATA_FORMAT)?;
    remove_leftover(dir)?;
    tracing::info!(
        dir = %dir.display(),
        users,
        unreadable,
        from = FORMAT_V3,
        to = DATA_FORMAT,
        "migrated the data directory: every user's row is now in the narrower layout"
    );
    Ok(users)
}

#[cfg(test)]
pub(super) mod tests {
    //! The data directory of format 3 kept in `tests/fixtures/data-format-3/`: how it was
    //! written (an ignored test, run once by the release that wrote format 3), and how its
    //! users are read back, so that a migration can be compared with what that release saw.

    use std::path::{Path, PathBuf};

    use super::super::backend::{DATA_FORMAT, Load, Ticket};
    use super::super::disk::Disk;
    use super::super::event::{Event, EventKind};
    use super::super::snapshot::Table;
    use super::super::user::{InterestChange, Undo};
    use super::super::{StateBackend, StateConfig, UserStore};
    use super::BACKUP_V3;
    use crate::rank::user::{TagKind, TagSource};
    use crate::rank::{DataDimension, UserView};

    /// The fixture's users; the last two were forgotten.
    pub const USERS: [&str; 6] = [
        "fixture-ann",
        "fixture-ben",
        "fixture-cat",
        "fixture-eve",
        "fixture-dan",
        "fixture-fay",
    ];

    pub fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-format-3")
    }

    /// Copies a directory tree (the fixture's `data/` and `data-keys/`) to `to`.
    pub fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let dest = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_tree(&path, &dest);
            } else if path.extension().is_none_or(|e| e != "md" && e != "txt") {
                std::fs::copy(&path, &dest).unwrap();
            }
        }
    }

    fn event(kind: EventKind, at_ms: i64, item: u64, category: u64, brand: u64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.item_id = item;
        e.category_id = category;
        e.brand_id = brand;
        e
    }

    /// Writes the fixture with the code of the day into `root` (`data/`, `data-keys/`,
    /// `expected.txt`): run once by the release whose format it keeps, with
    /// `cargo test --lib write_the_format_3_fixture -- --ignored`.
    #[tokio::test]
    #[ignore = "writes tests/fixtures/data-format-3"]
    async fn write_the_format_3_fixture() {
        let root = fixture_dir();
        assert!(!root.join("data").exists(), "remove the old fixture first");
        let data = root.join("data");
        // Everything an hour ago, so that the events are in the past when recorded.
        let t0 = crate::time::now_ms() / 1000 * 1000 - 3_600_000;
        let store =
            UserStore::open(StateConfig::default(), &StateBackend::Disk(data.clone())).unwrap();
        let key = |u: &str| store.key(u);
        let mut last = Ticket::NONE;
        macro_rules! rec {
            ($user:expr, $e:expr) => {
                let t = store.record(key($user), &$e, t0 + 3_600_000).await.unwrap();
                last = last.join(t);
            };
        }
        // ann: every kind of counter and word, in the snapshot and then in the log.
        for i in 0..12u64 {
            let item = 1001 + i % 4;
            rec!(
                "fixture-ann",
                event(
                    EventKind::Impression,
                    t0 + i as i64 * 700,
                    item,
                    7 + i % 2,
                    70 + i % 3
                )
            );
        }
        rec!(
            "fixture-ann",
            event(EventKind::Click, t0 + 20_000, 1002, 8, 71)
        );
        rec!(
            "fixture-ann",
            event(EventKind::Cart, t0 + 21_500, 1003, 7, 72)
        );
        let mut buy = event(EventKind::Purchase, t0 + 30_250, 1004, 8, 70);
        buy.price = 24.5;
        buy.title = "Kettle with a whistle".into();
        rec!("fixture-ann", buy);
        let mut seen_elsewhere = event(EventKind::Impression, t0 + 31_000, 4040, 9, 0);
        seen_elsewhere.source = Some(DataDimension::CrossPlatform);
        rec!("fixture-ann", seen_elsewhere);
        rec!(
            "fixture-ann",
            event(EventKind::BlockBrand, t0 + 40_000, 0, 0, 90)
        );
        rec!(
            "fixture-ann",
            event(EventKind::BlockBrand, t0 + 41_000, 0, 0, 91)
        );
        rec!(
            "fixture-ann",
            event(EventKind::UnblockBrand, t0 + 42_000, 0, 0, 90)
        );
        let mut shop = event(EventKind::BlockShop, t0 + 43_000, 0, 0, 0);
        shop.shop_id = 501;
        rec!("fixture-ann", shop);
        let mut not = event(EventKind::NotInterested, t0 + 44_000, 2002, 0, 0);
        not.expires_at_ms = 4_102_444_800_000; // 2100-01-01
        rec!("fixture-ann", not);
        rec!(
            "fixture-ann",
            event(EventKind::FewerLikeThis, t0 + 45_000, 1001, 7, 80)
        );
        let t = store
            .update_interests(
                key("fixture-ann"),
                vec![InterestChange {
                    kind: TagKind::Category,
                    id: 12,
                    weight: 0.75,
                    label: Some("Tea".into()),
                }],
                t0 + 46_000,
            )
            .await
            .unwrap();
        last = last.join(t);
        store
            .set_consent(key("fixture-ann"), &[], None, &[(33, true)], t0 + 47_000)
            .await
            .unwrap();
        // ben: a consent withdrawal, and a block.
        rec!(
            "fixture-ben",
            event(EventKind::Impression, t0 + 1_000, 3001, 5, 50)
        );
        rec!(
            "fixture-ben",
            event(EventKind::Click, t0 + 2_000, 3001, 5, 50)
        );
        rec!(
            "fixture-ben",
            event(EventKind::BlockBrand, t0 + 3_000, 0, 0, 92)
        );
        store
            .set_consent(
                key("fixture-ben"),
                &[
                    (DataDimension::Browsing, false),
                    (DataDimension::Location, true),
                ],
                Some(false),
                &[],
                t0 + 4_000,
            )
            .await
            .unwrap();
        // dan: a block, then forgotten before the snapshot.
        rec!(
            "fixture-dan",
            event(EventKind::BlockBrand, t0 + 5_000, 0, 0, 93)
        );
        store.forget(key("fixture-dan")).await.unwrap();
        store.durable(last).await.unwrap();
        store.snapshot().unwrap();
        // After the snapshot, in the log only: more of ann, all of cat and eve, fay forgotten.
        rec!(
            "fixture-ann",
            event(EventKind::Impression, t0 + 50_000, 1001, 7, 70)
        );
        rec!(
            "fixture-ann",
            event(EventKind::BlockBrand, t0 + 51_000, 0, 0, 94)
        );
        let t = store
            .undo(key("fixture-ann"), Undo::FewerBrand(80), t0 + 52_000)
            .await
            .unwrap();
        last = last.join(t);
        for i in 0..5u64 {
            rec!(
                "fixture-cat",
                event(
                    EventKind::Impression,
                    t0 + 60_000 + i as i64 * 1_300,
                    5000 + i,
                    20 + i,
                    200
                )
            );
        }
        rec!(
            "fixture-cat",
            event(EventKind::Favorite, t0 + 70_000, 5001, 21, 200)
        );
        rec!(
            "fixture-cat",
            event(EventKind::Search, t0 + 70_500, 0, 22, 0)
        );
        rec!(
            "fixture-cat",
            event(EventKind::NotInterested, t0 + 71_000, 5002, 0, 0)
        );
        rec!(
            "fixture-cat",
            event(EventKind::FewerLikeThis, t0 + 72_000, 5003, 23, 200)
        );
        let mut shop = event(EventKind::BlockShop, t0 + 73_000, 0, 0, 0);
        shop.shop_id = 777;
        rec!("fixture-cat", shop);
        let mut buy = event(EventKind::Purchase, t0 + 74_000, 5004, 24, 200);
        buy.price = 1_999.99;
        rec!("fixture-cat", buy);
        rec!(
            "fixture-eve",
            event(EventKind::BlockBrand, t0 + 80_000, 0, 0, 95)
        );
        rec!(
            "fixture-eve",
            event(EventKind::NotInterested, t0 + 81_000, 6001, 0, 0)
        );
        let t = store
            .undo(key("fixture-eve"), Undo::NotInterested(6001), t0 + 82_000)
            .await
            .unwrap();
        last = last.join(t);
        let t = store
            .set_consent(
                key("fixture-eve"),
                &[(DataDimension::Purchases, false)],
                None,
                &[],
                t0 + 83_000,
            )
            .await
            .unwrap();
        last = last.join(t);
        rec!(
            "fixture-fay",
            event(EventKind::BlockBrand, t0 + 90_000, 0, 0, 96)
        );
        store.forget(key("fixture-fay")).await.unwrap();
        store.durable(last).await.unwrap();
        // As a crash leaves it: the log holds what came after the snapshot.
        store.abandon();
        let view_at = t0 + 3_600_000;
        let copy = tempfile::tempdir().unwrap();
        copy_tree(&root, copy.path());
        let mut text = format!("view_at {view_at}\n");
        for (user, view) in read_views(&copy.path().join("data"), view_at).await {
            text.push_str(&describe(&user, view.as_ref()));
        }
        std::fs::write(root.join("expected.txt"), text).unwrap();
    }

    /// Compares views read now with `expected.txt`: every `exact` line the same, every
    /// counter within its precision.
    pub fn assert_same_as_expected(views: &[(String, Option<UserView>)]) {
        let expected = std::fs::read_to_string(fixture_dir().join("expected.txt")).unwrap();
        let now: String = views.iter().map(|(u, v)| describe(u, v.as_ref())).collect();
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with("view_at"))
                .map(str::to_owned)
                .collect()
        };
        let (want, got) = (lines(&expected), lines(&now));
        assert_eq!(want.len(), got.len(), "{now}");
        for (w, g) in want.iter().zip(&got) {
            if let (Some(w), Some(g)) = (w.strip_prefix("counter "), g.strip_prefix("counter ")) {
                let (wn, wv) = w.rsplit_once(' ').unwrap();
                let (gn, gv) = g.rsplit_once(' ').unwrap();
                let (wv, gv): (f32, f32) = (wv.parse().unwrap(), gv.parse().unwrap());
                assert_eq!(wn, gn);
                assert!((wv - gv).abs() <= wv.abs() * 0.01, "{wn}: {wv} then {gv}");
            } else {
                assert_eq!(w, g);
            }
        }
    }

    /// The view time the fixture was read at.
    pub fn expected_view_at() -> i64 {
        let expected = std::fs::read_to_string(fixture_dir().join("expected.txt")).unwrap();
        expected.lines().next().unwrap()["view_at ".len()..]
            .parse()
            .unwrap()
    }

    fn format_of(data: &Path) -> String {
        std::fs::read_to_string(data.join("format")).unwrap()
    }

    #[tokio::test]
    async fn a_data_directory_of_format_3_is_migrated_at_start_without_losing_a_word() {
        let root = tempfile::tempdir().unwrap();
        copy_tree(&fixture_dir(), root.path());
        let data = root.path().join("data");
        assert_eq!(format_of(&data), "3\n");
        // Opening the directory migrates it; every user reads as the release that wrote it
        // read them: words exactly, counters within their precision.
        let views = read_views(&data, expected_view_at()).await;
        assert_same_as_expected(&views);
        assert_eq!(format_of(&data), format!("{DATA_FORMAT}\n"));
        assert!(!data.join(BACKUP_V3).exists(), "the backup went");
        let snapshot = Table::open_latest(&data).unwrap();
        assert_eq!(snapshot.version(), super::super::snapshot::FORMAT_VERSION);
        assert_eq!(
            snapshot.rows(),
            2,
            "ann and ben; dan's row was erased with his key"
        );
        // And again: the migrated directory opens as any other.
        let views = read_views(&data, expected_view_at()).await;
        assert_same_as_expected(&views);
    }

    #[tokio::test]
    async fn a_format_3_migration_interrupted_by_a_crash_starts_again_from_its_backup() {
        let root = tempfile::tempdir().unwrap();
        copy_tree(&fixture_dir(), root.path());
        let data = root.path().join("data");
        // What a crash after the backup was made, halfway through the new snapshot, leaves.
        let backup = data.join(BACKUP_V3);
        std::fs::create_dir(&backup).unwrap();
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("wal-") || name.starts_with("snapshot-") {
                std::fs::rename(&path, backup.join(&name)).unwrap();
            }
        }
        let snapshot = std::fs::read_dir(&backup)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("snapshot-"))
            .unwrap();
        std::fs::write(data.join(format!("{snapshot}.tmp")), b"half").unwrap();
        std::fs::write(data.join(snapshot), b"not a snapshot").unwrap();
        let views = read_views(&data, expected_view_at()).await;
        assert_same_as_expected(&views);
        assert!(!backup.exists());
        assert_eq!(format_of(&data), format!("{DATA_FORMAT}\n"));
    }

    /// Each fixture user's view at `at_ms`, as the disk backend reads the directory at start
    /// (`None`: nothing held). Without a store around it, so that nothing expires by the
    /// wall clock meanwhile.
    pub async fn read_views(data: &Path, at_ms: i64) -> Vec<(String, Option<UserView>)> {
        let cfg = StateConfig::default();
        let opened = Disk::open(data, &cfg).unwrap();
        let mut out = Vec::new();
        for user in USERS {
            let key = opened.keyer.key(user);
            let load = opened.backend.load(&opened.map, key, false).await.unwrap();
            let view = match load {
                Load::Unknown => None,
                Load::Present | Load::Inserted => opened.map.read(key, |s| {
                    s.view(at_ms, s.consent().apply_to(cfg.consent_default), &cfg)
                }),
            };
            out.push((user.to_owned(), view));
        }
        opened.backend.abandon();
        out
    }

    /// A user's view as lines of text: `exact` lines must read the same after a migration,
    /// `counter` lines may move by the counters' precision.
    pub fn describe(user: &str, view: Option<&UserView>) -> String {
        let mut s = format!("user {user}\n");
        let Some(v) = view else {
            s.push_str("exact unknown\n");
            return s;
        };
        let own: Vec<_> = v
            .tags
            .iter()
            .filter(|t| t.source == TagSource::User)
            .collect();
        let learned: Vec<_> = v
            .tags
            .iter()
            .filter(|t| t.source != TagSource::User)
            .collect();
        for (name, value) in [
            ("consent", format!("{:?}", v.consent)),
            ("not_interested", format!("{:?}", v.not_interested)),
            ("blocked_brands", format!("{:?}", v.blocked_brands)),
            ("blocked_shops", format!("{:?}", v.blocked_shops)),
            ("fewer_categories", format!("{:?}", v.fewer_categories)),
            ("fewer_brands", format!("{:?}", v.fewer_brands)),
            ("first_seen_ms", format!("{:?}", v.first_seen_ms)),
            ("last_active_ms", format!("{:?}", v.last_active_ms)),
            ("shown", format!("{:?}", v.shown)),
            ("engaged", format!("{:?}", v.engaged)),
            ("purchases", format!("{:?}", v.purchases)),
            ("sightings", format!("{:?}", v.sightings)),
            ("sensitive_opt_in", format!("{:?}", v.sensitive_opt_in)),
            ("own_tags", format!("{own:?}")),
            (
                "learned_tags",
                format!(
                    "{:?}",
                    learned
                        .iter()
                        .map(|t| (t.kind, t.id, &t.source))
                        .collect::<Vec<_>>()
                ),
            ),
        ] {
            s.push_str(&format!("exact {name} {value}\n"));
        }
        let mut counter =
            |name: String, value: f32| s.push_str(&format!("counter {name} {value}\n"));
        for (id, n) in &v.ignored {
            counter(format!("ignored/{id}"), *n);
        }
        for (id, n) in &v.ignored_categories {
            counter(format!("ignored_category/{id}"), *n);
        }
        for (id, n) in &v.ignored_brands {
            counter(format!("ignored_brand/{id}"), *n);
        }
        for t in &learned {
            counter(format!("learned_weight/{:?}/{}", t.kind, t.id), t.weight);
        }
        counter("recent_impressions".into(), v.recent_impressions);
        counter("recent_engagements".into(), v.recent_engagements);
        s
    }
}
