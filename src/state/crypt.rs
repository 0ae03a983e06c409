//! Encryption at rest: every record about a user that leaves the process (log records,
//! snapshot rows, Redis values) is sealed with an AEAD under that user's own data key, and the
//! data keys are kept wrapped by a master key that comes from outside the data.
//!
//! - [`DataKey`]: a user's 256-bit key; [`DataKey::seal`] and [`DataKey::open`] use
//!   ChaCha20-Poly1305 (from `ring`), whose key needs no expansion, so that a key can be used
//!   straight from where it is stored, for one record, at no set-up cost.
//! - [`KeyWrap`]: what wraps data keys. [`MasterKey`] is the built-in one (a 256-bit key from a
//!   file or the environment, mounted from a Kubernetes Secret); a KMS plugs in by
//!   implementing the trait.
//!
//! Every seal binds the record to where it belongs through the associated data (the user's
//! key, the data key's id, and the record's position): a record copied to another user, or
//! replayed at another position, fails to open.
//!
//! Nonces are 96 bits: 32 random bits drawn once per process, then a 64-bit counter that
//! starts at a random value. Two processes repeat a nonce under the same key only if they draw
//! the same 32 bits and their counters overlap: far less likely than any random 96-bit choice,
//! and no system call per record.
//!
//! Must not: keep a key in memory longer than its holder (keys are wiped on drop), or write
//! a key unwrapped anywhere.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

/// Bytes of a key (data or master).
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext: the nonce in front, the tag behind.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// A data key wrapped by [`MasterKey`]: a sealed key.
pub const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;

/// A record that does not open: damaged, moved, or sealed under another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("does not decrypt (damaged, moved, or sealed under another key)")
    }
}

struct NonceSource {
    prefix: [u8; 4],
    counter: AtomicU64,
}

static NONCES: LazyLock<NonceSource> = LazyLock::new(|| {
    let mut seed = [0u8; 12];
    // Without an entropy source nothing can be sealed safely: fail loudly, once.
    getrandom::fill(&mut seed).expect("the system's random number generator is unavailable");
    NonceSource {
        prefix: seed[..4].try_into().expect("4 bytes"),
        counter: AtomicU64::new(u64::from_le_bytes(seed[4..].try_into().expect("8 bytes"))),
    }
});

fn next_nonce() -> [u8; NONCE_LEN] {
    let n = NONCES.counter.fetch_add(1, Ordering::Relaxed);
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&NONCES.prefix);
    nonce[4..].copy_from_slice(&n.to_le_bytes());
    nonce
}

fn cipher(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key"))
}

/// Appends `nonce ‖ ciphertext ‖ tag` of `plain` to `out`.
fn seal_with(key: &[u8; KEY_LEN], aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
    let nonce = next_nonce();
    out.reserve(plain.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = cipher(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        .expect("a record far below the AEAD's length limit");
    out.extend_from_slice(tag.as_ref());
}

/// The plaintext of `sealed` (`nonce ‖ ciphertext ‖ tag`).
fn open_with(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unreadable> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Unreadable);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unreadable)?;
    let mut buf = body.to_vec();
    let len = cipher(key)
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| Unreadable)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Overwrites `bytes` with zeros in a way the optimiser keeps.
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to one byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// One user's data key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn random() -> std::io::Result<Self> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(Self(key))
    }

    /// Appends the sealed `plain` to `out`.
    pub fn seal(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        seal_with(&self.0, aad, plain, out);
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unreadable> {
        open_with(&self.0, aad, sealed)
    }

    /// The raw key, for tests that look for it where it must not be.
    #[cfg(test)]
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Wraps and unwraps data keys. The built-in [`MasterKey`] holds its key in the process; a
/// KMS implementation would send the wrapped bytes to the KMS instead (data keys are
/// unwrapped once per user and start, so a remote call per unwrap is affordable).
pub trait KeyWrap: Send + Sync {
    /// The sealed `key`, bound to `aad`: exactly [`WRAPPED_LEN`] bytes.
    fn wrap(&self, key: &DataKey, aad: &[u8]) -> Vec<u8>;
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, Unreadable>;
    /// A value sealed under this key that only this key opens: stored beside the wrapped
    /// keys, it tells at start whether the configured key is the one they were wrapped with.
    fn check_value(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let key = DataKey([0; KEY_LEN]);
        out.extend_from_slice(&self.wrap(&key, CHECK_AAD));
        out
    }
    /// Whether `check` ([`KeyWrap::check_value`]) was made with this key.
    fn matches(&self, check: &[u8]) -> bool {
        self.unwrap(check, CHECK_AAD).is_ok()
    }
}

const CHECK_AAD: &[u8] = b"tactful master key check";

/// Where the master key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A file holding the key as 64 hex digits (or 32 raw bytes).
    File(PathBuf),
    /// The key itself, as 64 hex digits (from `TACTFUL_MASTER_KEY`).
    Inline(String),
}

impl fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

/// The key-encryption key: wraps every user's data key.
pub struct MasterKey([u8; KEY_LEN]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Parses 64 hex digits (surrounding whitespace allowed) or exactly 32 raw bytes.
fn parse_key(bytes: &[u8]) -> Result<[u8; KEY_LEN], String> {
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; KEY_LEN];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits");
        }
        return Ok(key);
    }
    if bytes.len() == KEY_LEN {
        return Ok(bytes.try_into().expect("32 bytes"));
    }
    Err(format!(
        "expected a 256-bit key as 64 hex digits (e.g. `openssl rand -hex 32`), got {} bytes",
        bytes.len()
    ))
}

impl MasterKey {
    pub fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        Self(key)
    }

    /// Loads the key from `source`; the message names where it looked.
    pub fn load(source: &MasterKeySource) -> Result<Self, String> {
        match source {
            MasterKeySource::Inline(text) => parse_key(text.as_bytes())
                .map(Self)
                .map_err(|e| format!("TACTFUL_MASTER_KEY: {e}")),
            MasterKeySource::File(path) => {
                let mut bytes = std::fs::read(path).map_err(|e| {
                    format!("cannot read the master key at {}: {e}", path.display())
                })?;
                let key = parse_key(&bytes).map_err(|e| format!("{}: {e}", path.display()));
                wipe(&mut bytes);
                key.map(Self)
            }
        }
    }

    /// A fresh random key, written as hex to `path` (mode 0600, created, never overwritten):
    /// the development default when no key is configured.
    pub fn generate_at(path: &Path) -> Result<Self, String> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for a master key: {e}"))?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(path).and_then(|mut f| {
            use std::io::Write;
            f.write_all(hex.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
        written.map_err(|e| format!("cannot write a master key to {}: {e}", path.display()))?;
        Ok(Self(key))
    }
}

impl KeyWrap for MasterKey {
    fn wrap(&self, key: &DataKey, aad: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        seal_with(&self.0, aad, &key.0, &mut out);
        out
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, Unreadable> {
        let mut plain = open_with(&self.0, aad, wrapped)?;
        let key = <[u8; KEY_LEN]>::try_from(plain.as_slice()).map_err(|_| Unreadable);
        wipe(&mut plain);
        key.map(DataKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_opens_only_with_its_key_and_its_associated_data() {
        let (k, other) = (DataKey::random().unwrap(), DataKey::random().unwrap());
        let mut sealed = Vec::new();
        k.seal(b"user a, seq 7", b"block brand 424242", &mut sealed);
        assert_eq!(sealed.len(), 18 + SEAL_OVERHEAD);
        assert!(
            !sealed.windows(6).any(|w| w == b"424242"),
            "the plaintext does not show"
        );
        assert_eq!(
            k.open(b"user a, seq 7", &sealed).unwrap(),
            b"block brand 424242"
        );
        assert_eq!(other.open(b"user a, seq 7", &sealed), Err(Unreadable));
        assert_eq!(k.open(b"user b, seq 7", &sealed), Err(Unreadable));
        assert_eq!(k.open(b"user a, seq 8", &sealed), Err(Unreadable));
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert_eq!(k.open(b"user a, seq 7", &flipped), Err(Unreadable));
        assert_eq!(k.open(b"", &sealed[..10]), Err(Unreadable));
    }

    #[test]
    fn nonces_never_repeat_within_a_process() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(next_nonce()));
        }
    }

    #[test]
    fn a_wrapped_key_unwraps_only_under_its_master_and_binding() {
        let (m, other) = (MasterKey([1; 32]), MasterKey([2; 32]));
        let k = DataKey::random().unwrap();
        let w = m.wrap(&k, b"slot 3");
        assert_eq!(w.len(), WRAPPED_LEN);
        assert_eq!(m.unwrap(&w, b"slot 3").unwrap(), k);
        assert!(m.unwrap(&w, b"slot 4").is_err());
        assert!(other.unwrap(&w, b"slot 3").is_err());
        assert!(m.matches(&m.check_value()));
        assert!(!other.matches(&m.check_value()));
    }

    #[test]
    fn master_keys_load_from_hex_or_raw_bytes_and_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{hex}\n")).unwrap();
        let a = MasterKey::load(&MasterKeySource::File(path.clone())).unwrap();
        let b = MasterKey::load(&MasterKeySource::Inline(hex.to_uppercase())).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.0[1], 0x11);
        std::fs::write(&path, [7u8; 32]).unwrap();
        assert_eq!(
            MasterKey::load(&MasterKeySource::File(path.clone()))
                .unwrap()
                .0,
            [7; 32]
        );
        std::fs::write(&path, "short").unwrap();
        let e = MasterKey::load(&MasterKeySource::File(path.clone())).unwrap_err();
        assert!(e.contains("64 hex digits") && e.contains("/k"), "{e}");
        let e = MasterKey::load(&MasterKeySource::File(dir.path().join("none"))).unwrap_err();
        assert!(e.contains("cannot read the master key"), "{e}");
        let generated = dir.path().join("gen");
        let g = MasterKey::generate_at(&generated).unwrap();
        assert_eq!(
            MasterKey::load(&MasterKeySource::File(generated.clone()))
                .unwrap()
                .0,
            g.0
        );
        assert!(
            MasterKey::generate_at(&generated).is_err(),
            "never overwritten"
        );
    }
}
