//! Users are known to the store by a keyed hash of their id, never by the id itself: nothing
//! tactful writes to disk or to a shared backend names a user in clear, and the map key is a
//! fixed 16 bytes whatever the platform's ids look like.
//!
//! The hash is SipHash-1-3 with a 128-bit output under a secret key. The secret lives with the
//! durable state (the data directory, or the shared backend) so that every restart and every
//! replica derives the same key for the same user.

use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Serialize};
use siphasher::sip128::{Hasher128, SipHasher13};

/// A user as the store knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserKey(pub [u8; 16]);

impl UserKey {
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 8 bytes: already uniformly distributed, so the map hashes with nothing more.
    fn low(self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl std::hash::Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.low());
    }
}

/// Derives [`UserKey`]s from user ids.
#[derive(Clone)]
pub struct Keyer {
    secret: [u8; 16],
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyer(..)")
    }
}

impl Keyer {
    pub fn new(secret: [u8; 16]) -> Self {
        Self { secret }
    }

    /// A keyer with a fresh random secret (state that lives only as long as the process).
    pub fn random() -> std::io::Result<Self> {
        Ok(Self::new(random_secret()?))
    }

    pub fn secret(&self) -> [u8; 16] {
        self.secret
    }

    pub fn key(&self, user_id: &str) -> UserKey {
        let mut h = SipHasher13::new_with_key(&self.secret);
        h.write(user_id.as_bytes());
        UserKey(h.finish128().as_bytes())
    }
}

pub fn random_secret() -> std::io::Result<[u8; 16]> {
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
    Ok(secret)
}

/// Map hasher for [`UserKey`]: passes the key's first 8 bytes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

#[derive(Debug, Default)]
pub struct PassThroughHasher(u64);

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a UserKey is hashed: fold it in.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_secret_and_differ_across_secrets() {
        let a = Keyer::new([1; 16]);
        assert_eq!(a.key("alice"), a.key("alice"));
        assert_ne!(a.key("alice"), a.key("bob"));
        assert_ne!(a.key("alice"), Keyer::new([2; 16]).key("alice"));
        assert_eq!(a.key("alice").to_hex().len(), 32);
        assert!(!a.key("alice").to_hex().contains("alice"));
    }
}
