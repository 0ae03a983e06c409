//! Passes over every user of a namespace, on one Redis or on every master of a cluster: the
//! migration of lists written in clear (data format 2) to sealed ones, in the background at
//! the first start on such a namespace, and `tactful keys rotate`, which re-wraps every user's
//! data key under a new master key. Both find the users with a SCAN of each node that holds
//! keys ([`Link::masters`]) and read and write each key through the shared connection, which
//! follows it if it moves; both can be run again after an interruption.
//!
//! Must not: decide anything about a user's data here (compaction does, in `mod.rs`), or keep
//! going past a key it cannot open (a wrong master key must stop the rotation).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::super::backend::DATA_FORMAT;
use super::super::crypt::{KeyWrap, MasterKey};
use super::super::key::UserKey;
use super::super::settings::redact;
use super::super::vault::{KeyId, wrap_aad};
use super::super::{StateConfig, StateError};
use super::conn::{CONNECT_TIMEOUT, Link};
use super::{KEY_VALUE_LEN, Redis, load_master, unavailable};

impl Redis {
    /// Rewrites every list of the namespace (format 2: elements in clear; format 3: rows of the
    /// wider layout) as one sealed `Restore` of this format under its user's key, then marks
    /// the namespace with this format. Runs in the
    /// background at the first start on such a namespace; what it has not reached yet is
    /// read as it is meanwhile.
    pub(super) async fn migrate(self: Arc<Self>) {
        let mut attempt = 0u32;
        loop {
            match self.migrate_once().await {
                Ok(users) => {
                    tracing::info!(
                        namespace = %self.namespace,
                        users,
                        to = DATA_FORMAT,
                        "migrated the redis namespace: every user's words are now sealed, in \
                         the current format"
                    );
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migrating the redis namespace failed; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(30)))).await;
                }
            }
        }
    }

    async fn migrate_once(&self) -> Result<u64, String> {
        let mut users = 0u64;
        // Every node that holds keys: each master of a cluster has its own users.
        for (node, client) in self.link.masters().await? {
            let mut conn =
                tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| format!("{node}: connecting timed out"))?
                    .map_err(|e| format!("{node}: {e}"))?;
            let mut cursor = 0u64;
            loop {
                let (next, page) = scan_users(&mut conn, &self.namespace, "ops", cursor)
                    .await
                    .map_err(|e| format!("{node}: {e}"))?;
                for (name, user) in page {
                    let mut done = false;
                    for _ in 0..10 {
                        if self.compact(user, true).await? {
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        return Err(format!("{name} kept changing"));
                    }
                    users += 1;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let mut conn = self.link.conn();
        redis::cmd("SET")
            .arg(format!("{}:format", self.namespace))
            .arg(DATA_FORMAT)
            .exec_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(users)
    }
}

/// Re-wraps every data key of the namespace under `new`, touching no user data, and makes
/// `new` the namespace's master key. Stop the replicas first (they hold the old key); a run
/// that was interrupted can be run again (keys already under `new` are left as they are).
pub(in crate::state) async fn rotate_master(
    url: &str,
    namespace: &str,
    config: &StateConfig,
    new: &super::super::crypt::MasterKeySource,
) -> Result<usize, StateError> {
    let addr = redact(url);
    let old = load_master(config)?;
    let new: Arc<dyn KeyWrap> = Arc::new(MasterKey::load(new).map_err(StateError::Key)?);
    let link = Link::connect(url, &config.redis_tls)
        .await
        .map_err(|e| StateError::Unavailable(format!("redis at {addr}: {e}")))?;
    let mut conn = link.conn();
    let fail = |e: redis::RedisError| unavailable("rotate the master key", &addr, e);
    let check_key = format!("{namespace}:master-check");
    let check: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&check_key)
        .query_async(&mut conn)
        .await
        .map_err(fail)?;
    if let Some(check) = &check
        && !old.matches(check)
        && !new.matches(check)
    {
        return Err(StateError::Key(format!(
            "neither master key opens the data keys in redis namespace {namespace}"
        )));
    }
    let mut rewrapped = 0usize;
    // Every node that holds keys: each master of a cluster has its own users. The keys are
    // read and written through the shared connection, which follows them if they move.
    let masters = link
        .masters()
        .await
        .map_err(|e| unavailable("list the cluster's masters", &addr, e))?;
    for (node, client) in masters {
        let mut scan =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| unavailable("connect", &node, "timed out"))?
                .map_err(|e| unavailable("connect", &node, e))?;
        let mut cursor = 0u64;
        loop {
            let (next, page) = scan_users(&mut scan, namespace, "key", cursor)
                .await
                .map_err(fail)?;
            for (name, user) in page {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&name)
                    .query_async(&mut conn)
                    .await
                    .map_err(fail)?;
                let Some(value) = value.filter(|v| v.len() == KEY_VALUE_LEN) else {
                    continue;
                };
                let id = KeyId(u64::from_le_bytes(value[..8].try_into().expect("8 bytes")));
                let aad = wrap_aad(user, id);
                if new.unwrap(&value[8..], &aad).is_ok() {
                    continue;
                }
                let key = old.unwrap(&value[8..], &aad).map_err(|_| {
                    StateError::Corrupt(format!(
                        "{name}: not a data key the old master key unwraps"
                    ))
                })?;
                let mut rewritten = value[..8].to_vec();
                rewritten.extend_from_slice(&new.wrap(&key, &aad));
                redis::cmd("SET")
                    .arg(&name)
                    .arg(rewritten)
                    .exec_async(&mut conn)
                    .await
                    .map_err(fail)?;
                rewrapped += 1;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    redis::cmd("SET")
        .arg(&check_key)
        .arg(new.check_value())
        .exec_async(&mut conn)
        .await
        .map_err(fail)?;
    Ok(rewrapped)
}

/// One page of a SCAN over the users' `<ns>:{<user key>}:<kind>` keys: the next cursor (0 at
/// the end) and each key's name with its user.
async fn scan_users(
    conn: &mut impl ConnectionLike,
    namespace: &str,
    kind: &str,
    cursor: u64,
) -> redis::RedisResult<(u64, Vec<(String, UserKey)>)> {
    let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(format!("{namespace}:{{*}}:{kind}"))
        .arg("COUNT")
        .arg(1000)
        .query_async(conn)
        .await?;
    let (prefix, suffix) = (format!("{namespace}:{{"), format!("}}:{kind}"));
    let users = names
        .into_iter()
        .filter_map(|name| {
            let user = name
                .strip_prefix(&prefix)
                .and_then(|n| n.strip_suffix(&suffix))
                .and_then(parse_user_key)?;
            Some((name, user))
        })
        .collect();
    Ok((next, users))
}

/// A user key from its hex form ([`UserKey::to_hex`]).
fn parse_user_key(hex: &str) -> Option<UserKey> {
    if hex.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(UserKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_read_back_from_their_hex() {
        let key = UserKey([0xa5; 16]);
        assert_eq!(parse_user_key(&key.to_hex()), Some(key));
        assert_eq!(parse_user_key("zz"), None);
    }
}
