//! How a user id appears anywhere outside the state store (audit records, log lines, trace
//! spans): as a keyed hash, HMAC-SHA256 under the `TACTFUL_USER_HASH_KEY` secret, cut to 128
//! bits in hex. The same id gives the same pseudonym under the same key, so an operator can
//! follow one user through the audit log and the logs, and find them with `tactful user-hash`;
//! without the key, nobody can go from a pseudonym back to the id or test a guess.
//!
//! Without a configured key each process draws its own: pseudonyms then hold within one run
//! only. Set the same key on every replica to correlate across replicas and restarts.
//!
//! The state store keys users with a different secret (its own file), so audit records and
//! logs cannot be joined with snapshots by someone who holds only one of the two.
//!
//! Every call names its user in its span, so the pseudonyms of recent users are kept in a
//! small table (1,024 slots, the newest in each): an HMAC is two SHA-256 blocks, 5,000
//! instructions, 1.4 % of a Rank call's. The table holds no id: a slot is found, and checked,
//! by a 128-bit SipHash-1-3 of the id under a key this process draws for itself.

use std::hash::Hasher;
use std::sync::Mutex;

use ring::hmac;
use siphasher::sip128::{Hasher128, SipHasher13};

/// How many recent pseudonyms are kept.
const RECENT_SLOTS: usize = 1024;

/// Turns user ids into pseudonyms.
pub struct Pseudonyms {
    key: hmac::Key,
    /// The key of the slots' tags.
    tag_key: (u64, u64),
    recent: Box<[Mutex<Recent>]>,
}

/// A recent pseudonym and the tag of its id (0: an empty slot).
#[derive(Clone, Copy)]
struct Recent {
    tag: u128,
    hex: [u8; 32],
}

impl Pseudonyms {
    /// Pseudonyms under `secret`; a random key when `None` (this process only).
    pub fn new(secret: Option<&str>) -> Self {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system's random source works"),
        };
        let mut random = [0; 16];
        getrandom::fill(&mut random).expect("the system's random source works");
        let half = |i: usize| u64::from_le_bytes(random[i..i + 8].try_into().expect("8 bytes"));
        let empty = Recent {
            tag: 0,
            hex: [0; 32],
        };
        Self {
            key,
            tag_key: (half(0), half(8)),
            recent: (0..RECENT_SLOTS).map(|_| Mutex::new(empty)).collect(),
        }
    }

    /// The pseudonym of `user_id`: 32 hex digits.
    pub fn of(&self, user_id: &str) -> String {
        let mut sip = SipHasher13::new_with_keys(self.tag_key.0, self.tag_key.1);
        sip.write(user_id.as_bytes());
        // Never 0, which marks an empty slot.
        let tag = sip.finish128().as_u128() | 1;
        let slot = &self.recent[(tag >> 64) as usize % RECENT_SLOTS];
        // A slot another thread holds is passed by: the pseudonym is computed instead.
        if let Ok(recent) = slot.try_lock()
            && recent.tag == tag
        {
            return hex_string(&recent.hex);
        }
        let hex = self.compute(user_id);
        if let Ok(mut recent) = slot.try_lock() {
            *recent = Recent { tag, hex };
        }
        hex_string(&hex)
    }

    /// The pseudonym itself: the HMAC's first 16 bytes in hex.
    fn compute(&self, user_id: &str) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = hmac::sign(&self.key, user_id.as_bytes());
        let mut hex = [0; 32];
        for (i, &b) in tag.as_ref()[..16].iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        hex
    }
}

fn hex_string(hex: &[u8; 32]) -> String {
    std::str::from_utf8(hex)
        .expect("hex digits are ASCII")
        .to_owned()
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_gives_the_same_pseudonym_and_others_differ() {
        let a = Pseudonyms::new(Some("a key of at least sixteen bytes"));
        let again = Pseudonyms::new(Some("a key of at least sixteen bytes"));
        let other = Pseudonyms::new(Some("another key, just as long"));
        let p = a.of("alice");
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!p.contains("alice"));
        assert_eq!(p, again.of("alice"));
        assert_ne!(p, a.of("bob"));
        assert_ne!(p, other.of("alice"));
        assert_ne!(
            Pseudonyms::new(None).of("alice"),
            Pseudonyms::new(None).of("alice")
        );
    }

    #[test]
    fn a_recent_pseudonym_is_the_one_computed_whatever_shares_its_slot() {
        let p = Pseudonyms::new(Some("a key of at least sixteen bytes"));
        // Four times the slots: every slot is taken over many times.
        let ids: Vec<String> = (0..4 * RECENT_SLOTS).map(|i| format!("user-{i}")).collect();
        for _ in 0..3 {
            for id in &ids {
                assert_eq!(p.of(id), String::from_utf8(p.compute(id).to_vec()).unwrap());
            }
        }
        // Recent ones come from their slot, the same.
        assert_eq!(p.of("alice"), p.of("alice"));
        let kept = p
            .recent
            .iter()
            .filter(|s| s.lock().unwrap().tag != 0)
            .count();
        assert!(kept > RECENT_SLOTS / 2, "{kept} slots used");
    }
}
