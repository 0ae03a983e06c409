//! The key store of the disk backend: each user's data key, wrapped by the master key, in a
//! directory apart from the data (its own path, its own volume in a deployment), so that a
//! copy of the data directory alone, or a backup of it, holds nothing readable.
//!
//! Forgetting a user destroys their key: the slot holding it is overwritten in place and
//! fsynced before the erasure is acknowledged. From then on every record sealed under the key,
//! in the live log, in every snapshot and in any copy of them, is noise; the bytes themselves
//! go lazily, at the next snapshot. That costs one 96-byte write and one fsync, whatever the
//! size of the state.
//!
//! File `keys`: a header slot, then one fixed slot per data key, reused after an erasure:
//! `[used u8][0; 3][generation u32][user key 16][wrapped data key 60][crc32 u32][0; 8]`. The
//! generation is drawn at random (never the slot's previous one) at every use of a slot; a
//! key's id is `slot << 32 | generation`, and it is all a record on the data side names (never
//! the user's key): records of a destroyed key find a slot that is free, or holds another
//! generation. Random rather than counted, so that a key lost in a crash before it was synced
//! cannot have its id handed out again to someone else while its records are still in the
//! log. The header holds a value sealed
//! under the master key, so that a wrong master key is refused at start instead of reading
//! every user as unknown.
//!
//! Durability: a new key is written at once (a write into the page cache, under the store's
//! lock) and made durable by [`Vault::sync`], which the log writer calls before each fsync of
//! its own, so that no acknowledged record is sealed under a key a crash could lose. An
//! erasure is made durable the same way, before it is acknowledged.
//!
//! Must not: hold a key unwrapped anywhere but in this process's memory, or name a user on
//! the data side.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::StateError;
use super::crypt::{DataKey, KeyWrap, WRAPPED_LEN};
use super::key::{PassThrough, UserKey};
use super::lock::DirLock;
use super::wal::sync_dir;

const MAGIC: &[u8; 8] = b"TACTKEYS";
const VERSION: u32 = 1;
const SLOT: usize = 96;
const KEYS_FILE: &str = "keys";
/// The header's sealed check value starts here.
const CHECK_AT: usize = 16;

/// A data key's id: its slot and the slot's generation. What records on the data side carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u64);

impl KeyId {
    fn new(slot: u32, generation: u32) -> Self {
        Self(u64::from(slot) << 32 | u64::from(generation))
    }

    fn slot(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn generation(self) -> u32 {
        self.0 as u32
    }
}

struct Slot {
    generation: u32,
    /// `None`: free (never used, or its key destroyed).
    held: Option<(UserKey, DataKey)>,
}

#[derive(Default)]
struct Slots {
    by_user: HashMap<UserKey, u32, PassThrough>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// The associated data a wrapped key is bound to: its user and id.
pub(super) fn wrap_aad(user: UserKey, id: KeyId) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..8].copy_from_slice(b"tactfulK");
    aad[8..24].copy_from_slice(&user.0);
    aad[24..].copy_from_slice(&id.0.to_le_bytes());
    aad
}

fn encode_slot(generation: u32, held: Option<(UserKey, &[u8])>) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[4..8].copy_from_slice(&generation.to_le_bytes());
    if let Some((user, wrapped)) = held {
        s[0] = 1;
        s[8..24].copy_from_slice(&user.0);
        s[24..24 + WRAPPED_LEN].copy_from_slice(wrapped);
    }
    let crc = crc32fast::hash(&s[..84]);
    s[84..88].copy_from_slice(&crc.to_le_bytes());
    s
}

/// Per-user data keys, wrapped by the master key, in their own directory.
pub struct Vault {
    dir: PathBuf,
    file: File,
    master: Arc<dyn KeyWrap>,
    slots: RwLock<Slots>,
    /// A key was written since the last fsync.
    dirty: AtomicBool,
    /// One fsync at a time, outside the slots' lock.
    syncing: Mutex<()>,
    lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("dir", &self.dir).finish()
    }
}

fn key_error(message: String) -> StateError {
    StateError::Key(message)
}

impl Vault {
    /// Whether `dir` holds a key store.
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEYS_FILE).exists()
    }

    /// Opens the key store in `dir` (created, mode 0700, when absent) and unwraps every key
    /// with `master`. A master key that did not make the store is refused by name.
    pub fn open(dir: &Path, master: Arc<dyn KeyWrap>) -> Result<Self, StateError> {
        create_private_dir(dir)?;
        let lock = DirLock::acquire(dir)?;
        let path = dir.join(KEYS_FILE);
        let fresh = !path.exists();
        if fresh {
            let mut header = [0u8; SLOT];
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            let check = master.check_value();
            header[CHECK_AT..CHECK_AT + check.len()].copy_from_slice(&check);
            write_new(dir, &path, &header)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StateError::io(&path, e))?;
        let bytes = fs::read(&path).map_err(|e| StateError::io(&path, e))?;
        if bytes.len() < SLOT || &bytes[..8] != MAGIC {
            return Err(key_error(format!(
                "{}: not a tactful key store",
                path.display()
            )));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(key_error(format!(
                "{}: key store version {version}; this build reads {VERSION}",
                path.display()
            )));
        }
        if !master.matches(&bytes[CHECK_AT..CHECK_AT + WRAPPED_LEN]) {
            return Err(key_error(format!(
                "the master key does not open the key store at {}: it was made with another \
                 key. Configure the key it was made with (TACTFUL_MASTER_KEY_FILE or \
                 state.master_key_file); after a rotation, the new one",
                dir.display()
            )));
        }
        let mut slots = Slots::default();
        let raw: Vec<&[u8]> = bytes[SLOT..].chunks(SLOT).collect();
        u32::try_from(raw.len()).map_err(|_| key_error("too many keys".into()))?;
        for (i, slot) in unwrap_all(&raw, &*master).into_iter().enumerate() {
            let i = i as u32;
            let slot = slot.map_err(|e| key_error(format!("{}: slot {i}: {e}", path.display())))?;
            match &slot.held {
                Some((user, _)) => {
                    slots.by_user.insert(*user, i);
                }
                None => slots.free.push(i),
            }
            slots.slots.push(slot);
        }
        // Reuse low slots first: the file stays as short as the live keys allow.
        slots.free.sort_unstable_by(|a, b| b.cmp(a));
        Ok(Self {
            dir: dir.to_owned(),
            file,
            master,
            slots: RwLock::new(slots),
            dirty: AtomicBool::new(false),
            syncing: Mutex::new(()),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Whether `master` opens the key store in `dir`, reading its header only (no lock, no
    /// change): what `tactful config check` asks.
    pub fn check_master(dir: &Path, master: &dyn KeyWrap) -> Result<(), StateError> {
        let path = dir.join(KEYS_FILE);
        let mut header = [0u8; SLOT];
        File::open(&path)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .map_err(|e| StateError::io(&path, e))?;
        if &header[..8] != MAGIC {
            return Err(key_error(format!(
                "{}: not a tactful key store",
                path.display()
            )));
        }
        if master.matches(&header[CHECK_AT..CHECK_AT + WRAPPED_LEN]) {
            Ok(())
        } else {
            Err(key_error(format!(
                "the master key does not open the key store at {}: it was made with another key",
                dir.display()
            )))
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lets go of the directory's lock, as a crash would.
    pub fn abandon(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn read(&self) -> RwLockReadGuard<'_, Slots> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> RwLockWriteGuard<'_, Slots> {
        self.slots.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's key, if they have one.
    pub fn get(&self, user: UserKey) -> Option<(KeyId, DataKey)> {
        let s = self.read();
        let i = *s.by_user.get(&user)?;
        let slot = &s.slots[i as usize];
        let (_, key) = slot.held.as_ref()?;
        Some((KeyId::new(i, slot.generation), key.clone()))
    }

    /// The user's key, made now if they have none (durable at the next [`Vault::sync`]).
    pub fn get_or_create(&self, user: UserKey) -> Result<(KeyId, DataKey), StateError> {
        if let Some(found) = self.get(user) {
            return Ok(found);
        }
        let mut s = self.lock();
        if let Some(&i) = s.by_user.get(&user) {
            let slot = &s.slots[i as usize];
            if let Some((_, key)) = &slot.held {
                return Ok((KeyId::new(i, slot.generation), key.clone()));
            }
        }
        let key = DataKey::random().map_err(|e| StateError::io(&self.dir, e))?;
        let i = match s.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(s.slots.len())
                    .map_err(|_| key_error("the key store is full".into()))?;
                s.slots.push(Slot {
                    generation: 0,
                    held: None,
                });
                i
            }
        };
        let generation = random_generation(s.slots[i as usize].generation)
            .map_err(|e| StateError::io(&self.dir, e))?;
        let id = KeyId::new(i, generation);
        let wrapped = self.master.wrap(&key, &wrap_aad(user, id));
        let bytes = encode_slot(generation, Some((user, &wrapped)));
        if let Err(e) = self.file.write_all_at(&bytes, slot_offset(i)) {
            s.free.push(i);
            return Err(StateError::io(self.dir.join(KEYS_FILE), e));
        }
        s.slots[i as usize] = Slot {
            generation,
            held: Some((user, key.clone())),
        };
        s.by_user.insert(user, i);
        self.dirty.store(true, Ordering::Release);
        Ok((id, key))
    }

    /// The user and key behind an id; `None` once the key is destroyed.
    pub fn by_id(&self, id: KeyId) -> Option<(UserKey, DataKey)> {
        let s = self.read();
        let slot = s.slots.get(id.slot() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.held.clone()
    }

    /// Whether `id` still names a key.
    pub fn is_live(&self, id: KeyId) -> bool {
        let s = self.read();
        s.slots
            .get(id.slot() as usize)
            .is_some_and(|slot| slot.generation == id.generation() && slot.held.is_some())
    }

    /// Destroys the user's key (durable at the next [`Vault::sync`]): returns its id, or
    /// `None` when they had none. Every record sealed under it becomes unreadable, wherever it
    /// is; the key is overwritten in the file and wiped from memory.
    pub fn destroy(&self, user: UserKey) -> Result<Option<KeyId>, StateError> {
        let mut s = self.lock();
        let Some(&i) = s.by_user.get(&user) else {
            return Ok(None);
        };
        let generation = s.slots[i as usize].generation;
        let bytes = encode_slot(generation, None);
        self.file
            .write_all_at(&bytes, slot_offset(i))
            .map_err(|e| StateError::io(self.dir.join(KEYS_FILE), e))?;
        s.by_user.remove(&user);
        s.slots[i as usize].held = None;
        s.free.push(i);
        self.dirty.store(true, Ordering::Release);
        Ok(Some(KeyId::new(i, generation)))
    }

    /// Destroys the keys of users who hold nothing any more: those whose id `has_row` says no
    /// to and who are not `in_memory` (durable at the next [`Vault::sync`]). `in_memory` is
    /// asked without the store's lock held, so that it may take the map's locks (an append
    /// takes a user's map lock, then this lock). Returns how many keys went.
    pub fn retain_used(
        &self,
        has_row: impl Fn(KeyId) -> bool,
        in_memory: impl Fn(UserKey) -> bool,
    ) -> Result<usize, StateError> {
        let candidates: Vec<(KeyId, UserKey)> = {
            let s = self.read();
            s.slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| {
                    let (user, _) = slot.held.as_ref()?;
                    let id = KeyId::new(i as u32, slot.generation);
                    (!has_row(id)).then_some((id, *user))
                })
                .collect()
        };
        let unused: Vec<(KeyId, UserKey)> = candidates
            .into_iter()
            .filter(|(_, user)| !in_memory(*user))
            .collect();
        let mut s = self.lock();
        let mut gone = 0;
        for (id, user) in unused {
            let i = id.slot();
            let still = s.slots[i as usize].generation == id.generation()
                && s.slots[i as usize]
                    .held
                    .as_ref()
                    .is_some_and(|(u, _)| *u == user);
            if !still {
                continue;
            }
            self.file
                .write_all_at(&encode_slot(id.generation(), None), slot_offset(i))
                .map_err(|e| StateError::io(self.dir.join(KEYS_FILE), e))?;
            s.by_user.remove(&user);
            s.slots[i as usize].held = None;
            s.free.push(i);
            gone += 1;
        }
        if gone > 0 {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(gone)
    }

    /// Makes every key written so far durable.
    pub fn sync(&self) -> Result<(), StateError> {
        let _one = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        if self.dirty.swap(false, Ordering::AcqRel)
            && let Err(e) = self.file.sync_data()
        {
            self.dirty.store(true, Ordering::Release);
            return Err(StateError::io(self.dir.join(KEYS_FILE), e));
        }
        Ok(())
    }

    /// Users holding a key.
    pub fn len(&self) -> usize {
        self.read().by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the store holds per key, for the memory cap: the slot (generation, user, key)
    /// and its entry in the index by user.
    pub fn memory_bytes(&self) -> usize {
        let s = self.read();
        s.slots.capacity() * size_of::<Slot>()
            + s.by_user.capacity() * (size_of::<(UserKey, u32)>() + 1)
            + s.free.capacity() * 4
    }

    /// Re-wraps every key under `new` and makes it the store's master key, without touching
    /// any data: a new file is written beside the old and renamed over it.
    pub fn rotate(&self, new: &dyn KeyWrap) -> Result<usize, StateError> {
        let s = self.read();
        let mut bytes = vec![0u8; SLOT * (s.slots.len() + 1)];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let check = new.check_value();
        bytes[CHECK_AT..CHECK_AT + check.len()].copy_from_slice(&check);
        let mut rewrapped = 0;
        for (i, slot) in s.slots.iter().enumerate() {
            let held = slot.held.as_ref().map(|(user, key)| {
                let id = KeyId::new(i as u32, slot.generation);
                (*user, new.wrap(key, &wrap_aad(*user, id)))
            });
            rewrapped += usize::from(held.is_some());
            let raw = encode_slot(
                slot.generation,
                held.as_ref().map(|(u, w)| (*u, w.as_slice())),
            );
            bytes[SLOT * (i + 1)..SLOT * (i + 2)].copy_from_slice(&raw);
        }
        let path = self.dir.join(KEYS_FILE);
        let tmp = self.dir.join("keys.rotating");
        let _ = fs::remove_file(&tmp);
        write_new(&self.dir, &tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(|e| StateError::io(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(rewrapped)
    }
}

/// Reads every slot, unwrapping the keys on every core (a million keys take about a second
/// on one).
fn unwrap_all(raw: &[&[u8]], master: &dyn KeyWrap) -> Vec<Result<Slot, String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let read = |first: usize, part: &[&[u8]]| -> Vec<Result<Slot, String>> {
        part.iter()
            .enumerate()
            .map(|(j, r)| read_slot(r, (first + j) as u32, master))
            .collect()
    };
    if threads == 1 || raw.len() < 4096 {
        return read(0, raw);
    }
    let chunk = raw.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = raw
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || read(n * chunk, part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("reading key slots does not panic"))
            .collect()
    })
}

/// A slot's next generation: random, non-zero, never the one before.
fn random_generation(previous: u32) -> std::io::Result<u32> {
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(std::io::Error::other)?;
        let g = u32::from_le_bytes(b);
        if g != 0 && g != previous {
            return Ok(g);
        }
    }
}

fn slot_offset(i: u32) -> u64 {
    (u64::from(i) + 1) * SLOT as u64
}

fn read_slot(raw: &[u8], i: u32, master: &dyn KeyWrap) -> Result<Slot, String> {
    if raw.len() != SLOT {
        // A slot being appended when the process died: it was never synced, so never used.
        return Ok(Slot {
            generation: 0,
            held: None,
        });
    }
    let generation = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(raw[84..88].try_into().expect("4 bytes"));
    if crc32fast::hash(&raw[..84]) != crc {
        // Never written, or torn by a crash in the middle of its write: a new key's write is
        // fsynced before anything sealed under it is acknowledged, and a destroyed key's
        // zeroing leaves nothing usable either way. Either way the slot holds no key.
        if raw.iter().any(|b| *b != 0) {
            tracing::warn!(slot = i, "a key slot was torn by a crash; it holds no key");
        }
        return Ok(Slot {
            generation: 0,
            held: None,
        });
    }
    if raw[0] != 1 {
        return Ok(Slot {
            generation,
            held: None,
        });
    }
    let user = UserKey(raw[8..24].try_into().expect("16 bytes"));
    let key = master
        .unwrap(
            &raw[24..24 + WRAPPED_LEN],
            &wrap_aad(user, KeyId::new(i, generation)),
        )
        .map_err(|e| e.to_string())?;
    Ok(Slot {
        generation,
        held: Some((user, key)),
    })
}

/// Creates `dir` readable by its owner only.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| StateError::io(dir, e))
}

/// Writes `bytes` to a new file at `path` (mode 0600), fsynced, and the directory entry too.
fn write_new(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|f| {
            f.write_all_at(bytes, 0)?;
            f.sync_all()
        })
        .map_err(|e| StateError::io(path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::crypt::MasterKey;

    fn master(b: u8) -> Arc<dyn KeyWrap> {
        Arc::new(MasterKey::from_bytes([b; 32]))
    }

    #[test]
    fn keys_survive_a_reopen_and_a_destroyed_key_is_gone_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (UserKey([1; 16]), UserKey([2; 16]));
        let (ida, ka, idb) = {
            let v = Vault::open(dir.path(), master(9)).unwrap();
            let (ida, ka) = v.get_or_create(a).unwrap();
            let (idb, _) = v.get_or_create(b).unwrap();
            assert_eq!(v.get_or_create(a).unwrap(), (ida, ka.clone()));
            v.sync().unwrap();
            (ida, ka, idb)
        };
        let v = Vault::open(dir.path(), master(9)).unwrap();
        assert_eq!(v.get(a), Some((ida, ka.clone())));
        assert_eq!(v.by_id(ida), Some((a, ka.clone())));
        assert_eq!(v.destroy(a).unwrap(), Some(ida));
        assert_eq!(v.destroy(a).unwrap(), None, "nothing left to destroy");
        v.sync().unwrap();
        assert_eq!(
            (v.get(a), v.by_id(ida), v.is_live(ida)),
            (None, None, false)
        );
        // The slot is reused under a new generation: the old id stays dead.
        let (ida2, ka2) = v.get_or_create(a).unwrap();
        assert_ne!(ida2, ida);
        assert_ne!(ka2, ka);
        assert_eq!(v.by_id(ida), None);
        assert!(v.is_live(idb));
        drop(v);
        let v = Vault::open(dir.path(), master(9)).unwrap();
        assert_eq!(v.get(a), Some((ida2, ka2)), "unsynced, but written");
        assert_eq!(v.len(), 2);
        let raw = fs::read(dir.path().join(KEYS_FILE)).unwrap();
        assert!(
            !raw.windows(32).any(|w| w == ka.expose()),
            "no key is stored unwrapped"
        );
    }

    #[test]
    fn a_wrong_master_key_is_refused_by_name_and_a_rotation_rewraps() {
        let dir = tempfile::tempdir().unwrap();
        let user = UserKey([5; 16]);
        let key = {
            let v = Vault::open(dir.path(), master(1)).unwrap();
            let (_, k) = v.get_or_create(user).unwrap();
            assert_eq!(v.rotate(&MasterKey::from_bytes([2; 32])).unwrap(), 1);
            k
        };
        match Vault::open(dir.path(), master(1)) {
            Err(StateError::Key(m)) => assert!(m.contains("master key does not open"), "{m}"),
            other => panic!("{other:?}"),
        }
        let v = Vault::open(dir.path(), master(2)).unwrap();
        assert_eq!(v.get(user).unwrap().1, key);
    }

    #[test]
    fn a_slot_torn_by_a_crash_holds_no_key_and_the_rest_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (UserKey([1; 16]), UserKey([2; 16]));
        {
            let v = Vault::open(dir.path(), master(3)).unwrap();
            v.get_or_create(a).unwrap();
            v.get_or_create(b).unwrap();
            v.sync().unwrap();
        }
        let path = dir.path().join(KEYS_FILE);
        let mut bytes = fs::read(&path).unwrap();
        // The second key's slot, half written.
        for byte in &mut bytes[2 * SLOT + 40..3 * SLOT] {
            *byte = 0;
        }
        fs::write(&path, &bytes).unwrap();
        let v = Vault::open(dir.path(), master(3)).unwrap();
        assert!(v.get(a).is_some());
        assert!(v.get(b).is_none());
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn only_the_keys_of_users_with_a_row_or_in_memory_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), master(4)).unwrap();
        let users: Vec<UserKey> = (0..4u8).map(|i| UserKey([i; 16])).collect();
        let ids: Vec<KeyId> = users
            .iter()
            .map(|u| v.get_or_create(*u).unwrap().0)
            .collect();
        // users[0] has a row, users[1] is in memory, the other two hold nothing.
        let gone = v
            .retain_used(|id| id == ids[0], |user| user == users[1])
            .unwrap();
        assert_eq!(gone, 2);
        assert!(v.get(users[0]).is_some() && v.get(users[1]).is_some());
        assert!(v.get(users[2]).is_none() && !v.is_live(ids[3]));
        v.sync().unwrap();
        drop(v);
        let v = Vault::open(dir.path(), master(4)).unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _v = Vault::open(dir.path(), master(1)).unwrap();
        assert!(matches!(
            Vault::open(dir.path(), master(1)),
            Err(StateError::Locked { .. })
        ));
    }
}
