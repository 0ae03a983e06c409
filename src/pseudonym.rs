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

use ring::hmac;

/// Turns user ids into pseudonyms.
pub struct Pseudonyms {
    key: hmac::Key,
}

impl Pseudonyms {
    /// Pseudonyms under `secret`; a random key when `None` (this process only).
    pub fn new(secret: Option<&str>) -> Self {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system's random source works"),
        };
        Self { key }
    }

    /// The pseudonym of `user_id`: 32 hex digits.
    pub fn of(&self, user_id: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = hmac::sign(&self.key, user_id.as_bytes());
        let mut hex = String::with_capacity(32);
        for &b in &tag.as_ref()[..16] {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 15)]));
        }
        hex
    }
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
}
