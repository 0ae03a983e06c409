//! Where Redis is and how to reach it: one server, or a Redis Cluster through its seed nodes
//! ([`RedisTarget`]). The rest of the backend talks to a [`Link`] and does not care which:
//! - [`Conn`]: the shared, multiplexed connection every read, write and ping goes through. For
//!   one server, a connection manager that reconnects; for a cluster, the `redis` crate's
//!   cluster client, which sends each command (or single-slot pipeline) to the master of its
//!   slot, follows MOVED/ASK and learns the new masters after a failover. A pipeline on a
//!   cluster must stay within one slot: everything about one user does (hash tag
//!   `{<user key>}`); commands without a key (PUBLISH, WAIT) go along with the keyed ones, or
//!   to any node on their own.
//! - [`Link::subscribe`]: a subscription to the announcements of changes. PUBLISH on a cluster
//!   reaches every node, masters and replicas, so one connection to any node hears all of
//!   them; when it fails, the next subscription goes to whichever node answers (the seeds,
//!   then every node the cluster names).
//! - [`Link::masters`]: a client per node that holds keys, for a SCAN over every user (the
//!   migration, the master-key rotation): the one server, or each master of the cluster.
//!
//! Must not: route a pipeline that spans slots (the cluster refuses it), or hide which node an
//! error came from in a message (operators need it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::super::settings::{RedisTarget, RedisTls, redact};

/// Connecting (or reconnecting) to Redis.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// An answer that takes longer than this has failed.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A cluster connection is made anew at most this often.
pub(super) const RECONNECT_EVERY: Duration = Duration::from_secs(3);

/// The shared connection: cheap to clone, multiplexed, reconnecting.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Redis as the backend reaches it.
pub(super) struct Link {
    target: RedisTarget,
    tls: RedisTls,
    /// Printable address (no password), for messages.
    pub(super) addr: String,
    /// The shared connection; replaced by [`Link::reconnect`].
    conn: Mutex<Conn>,
    /// When the connection was last made.
    reconnected: Mutex<Instant>,
}

impl Link {
    /// Connects to the server, or to the cluster through the first seed that answers.
    pub(super) async fn connect(url: &str, tls: &RedisTls) -> Result<Self, String> {
        let target = RedisTarget::parse(url)?;
        let addr = redact(url);
        let conn = match &target {
            RedisTarget::Single(url) => {
                let client = client(url, tls)?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(200));
                let conn = tokio::time::timeout(
                    CONNECT_TIMEOUT * 2,
                    ConnectionManager::new_with_config(client, manager),
                )
                .await
                .map_err(|_| "connect: timed out".to_owned())?
                .map_err(|e| format!("connect: {e}"))?;
                Conn::Single(conn)
            }
            RedisTarget::Cluster { seeds, .. } => {
                let mut conn = Conn::Cluster(connect_cluster(seeds, target.tls(), tls).await?);
                // Scripts carry flags on a cluster (see `script`): Redis 7.0 or later.
                let flagged: RedisResult<i64> = redis::cmd("EVAL")
                    .arg("#!lua flags=no-writes\nreturn 1")
                    .arg(0)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = flagged {
                    return Err(format!(
                        "the cluster does not run scripts with flags ({e}): a Redis Cluster \
                         needs Redis 7.0 or later"
                    ));
                }
                conn
            }
        };
        Ok(Self {
            target,
            tls: tls.clone(),
            addr,
            conn: Mutex::new(conn),
            reconnected: Mutex::new(Instant::now()),
        })
    }

    /// A cluster connection made anew from the seeds, replacing the shared one: for when
    /// writes keep failing although the cluster answers (its client's map of slots can stay
    /// behind a failover: a node that no longer serves a slot, or one that still says the
    /// cluster is down). At most once per [`RECONNECT_EVERY`]; nothing for one server, whose
    /// connection manager reconnects by itself. The old connection goes once its last clone
    /// is dropped.
    pub(super) async fn reconnect(&self) {
        let RedisTarget::Cluster { seeds, .. } = &self.target else {
            return;
        };
        {
            let mut last = self.reconnected.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < RECONNECT_EVERY {
                return;
            }
            *last = Instant::now();
        }
        match connect_cluster(seeds, self.target.tls(), &self.tls).await {
            Ok(conn) => {
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Conn::Cluster(conn);
                tracing::info!(redis = %self.addr, "connected to the cluster anew");
            }
            Err(e) => tracing::debug!(redis = %self.addr, error = %e, "reconnecting failed"),
        }
    }

    /// The shared connection (a clone shares the same sockets).
    pub(super) fn conn(&self) -> Conn {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, RedisTarget::Cluster { .. })
    }

    /// A Lua script as this Redis must be sent it. On a cluster, with a `#!lua` line that
    /// declares it a script that writes: the cluster client opens every connection READONLY
    /// (for reads from replicas), and a replica serves a script without that line as if it
    /// were a read, failing at its first write where it should answer MOVED; after a
    /// failover, the old master's connection would keep failing instead of being sent to
    /// the new one. (One server keeps the plain form, which Redis before 7.0 also takes.)
    pub(super) fn script(&self, body: &str) -> String {
        if self.is_cluster() {
            format!("#!lua\n{body}")
        } else {
            body.to_owned()
        }
    }

    /// Publishes each message on `channel`. On a cluster, through any node that takes them
    /// (PUBLISH reaches every node from any of them; the channel's own slot and its master do
    /// not matter): up to three nodes are tried, so that one that is down does not hold the
    /// announcements back.
    pub(super) async fn publish(
        &self,
        channel: &str,
        messages: &[&[u8]],
        timeout: Duration,
    ) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for message in messages {
            pipe.cmd("PUBLISH").arg(channel).arg(*message).ignore();
        }
        let mut cluster = match self.conn() {
            Conn::Cluster(cluster) => cluster,
            mut single => {
                return match tokio::time::timeout(timeout, pipe.exec_async(&mut single)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("announcing changes timed out".to_owned()),
                };
            }
        };
        let mut last = String::new();
        for _ in 0..3 {
            let sent = cluster.route_pipeline(
                pipe.clone(),
                0,
                messages.len(),
                SingleNodeRoutingInfo::Random,
            );
            match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "announcing changes timed out".to_owned(),
            }
        }
        Err(last)
    }

    /// A Lua script that only reads, as this Redis must be sent it: on a cluster, with a line
    /// that says so (`#!lua flags=no-writes`), so that it may run where a read may.
    pub(super) fn read_only_script(&self, body: &str) -> String {
        if self.is_cluster() {
            format!("#!lua flags=no-writes\n{body}")
        } else {
            body.to_owned()
        }
    }

    /// Whether Redis answers: the server, or any node of the cluster (one node down is
    /// for its users' writes to find out; the others' go on). Tries a few nodes, so that one
    /// that is down does not make the whole cluster look down.
    pub(super) async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let mut cluster = match self.conn() {
            Conn::Cluster(cluster) => cluster,
            mut single => {
                let ping = redis::cmd("PING");
                let pong = ping.query_async::<Value>(&mut single);
                return match tokio::time::timeout(timeout, pong).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("a ping timed out".to_owned()),
                };
            }
        };
        let mut last = String::new();
        for _ in 0..3 {
            let pong = cluster.route_command(
                redis::cmd("PING"),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            );
            match tokio::time::timeout(timeout, pong).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "a ping timed out".to_owned(),
            }
        }
        Err(last)
    }

    /// A client of each node that holds keys: the server, or every master of the cluster (as
    /// the cluster names them now).
    pub(super) async fn masters(&self) -> Result<Vec<(String, redis::Client)>, String> {
        match &self.target {
            RedisTarget::Single(url) => Ok(vec![(self.addr.clone(), client(url, &self.tls)?)]),
            RedisTarget::Cluster { .. } => {
                let (masters, _) = self.nodes().await.map_err(|e| e.to_string())?;
                masters
                    .iter()
                    .map(|node| Ok((node.clone(), self.node_client(node)?)))
                    .collect()
            }
        }
    }

    /// Subscribes to `channel` on the server, or on the first node of the cluster that takes
    /// the subscription: the seeds first, then the nodes the cluster names.
    pub(super) async fn subscribe(&self, channel: &str) -> RedisResult<redis::aio::PubSub> {
        let url = match &self.target {
            RedisTarget::Single(url) => url,
            RedisTarget::Cluster { seeds, .. } => {
                let mut last = None;
                let mut tried = Vec::new();
                for seed in seeds {
                    match subscribe(&client(seed, &self.tls).map_err(io_error)?, channel).await {
                        Ok(s) => return Ok(s),
                        Err(e) => last = Some(e),
                    }
                    tried.push(seed.clone());
                }
                if let Ok((masters, replicas)) = self.nodes().await {
                    for node in masters.iter().chain(&replicas) {
                        let Ok(client) = self.node_client(node) else {
                            continue;
                        };
                        match subscribe(&client, channel).await {
                            Ok(s) => return Ok(s),
                            Err(e) => last = Some(e),
                        }
                    }
                }
                return Err(last.unwrap_or_else(|| io_error("no node to subscribe to")));
            }
        };
        subscribe(&client(url, &self.tls).map_err(io_error)?, channel).await
    }

    /// The cluster's masters and replicas (`host:port`), from CLUSTER SLOTS.
    async fn nodes(&self) -> RedisResult<(Vec<String>, Vec<String>)> {
        let mut conn = self.conn();
        let slots: Value = tokio::time::timeout(
            RESPONSE_TIMEOUT,
            redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn),
        )
        .await
        .map_err(|_| io_error("CLUSTER SLOTS timed out"))??;
        Ok(parse_cluster_slots(&slots))
    }

    /// A client of one node of the cluster, with the seeds' credentials and TLS.
    fn node_client(&self, node: &str) -> Result<redis::Client, String> {
        let RedisTarget::Cluster {
            scheme, userinfo, ..
        } = &self.target
        else {
            unreachable!("only a cluster has nodes")
        };
        client(&format!("{scheme}{userinfo}{node}/0"), &self.tls)
    }
}

/// A connection to the cluster through the first seed that answers.
async fn connect_cluster(
    seeds: &[String],
    use_tls: bool,
    tls: &RedisTls,
) -> Result<ClusterConnection, String> {
    // Few, quick retries: a write that cannot land within the backend's own timeout fails
    // and the client retries it; meanwhile the cluster client refreshes its map of slots, so
    // the retry finds the promoted master.
    let mut builder = redis::cluster::ClusterClient::builder(seeds.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(2)
        .min_retry_wait(20)
        .max_retry_wait(200);
    if use_tls {
        builder = builder.certs(certificates(tls)?);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_async_connection())
        .await
        .map_err(|_| "connect to the cluster: timed out".to_owned())?
        .map_err(|e| format!("connect to the cluster: {e}"))
}

fn io_error(e: impl std::fmt::Display) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "redis", e.to_string()))
}

/// Masters and replicas (`host:port`, each once) from a CLUSTER SLOTS answer: per range of
/// slots, its start, its end, its master, then its replicas, each node as
/// `[host, port, id, …]`.
fn parse_cluster_slots(slots: &Value) -> (Vec<String>, Vec<String>) {
    let (mut masters, mut replicas) = (Vec::<String>::new(), Vec::<String>::new());
    let Value::Array(ranges) = slots else {
        return (masters, replicas);
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        for (i, node) in fields.iter().enumerate().skip(2) {
            let Value::Array(node) = node else { continue };
            let host = match node.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = node.get(1) else {
                continue;
            };
            // An empty host (or "?") means "the node you asked": not reachable by name.
            if host.is_empty() || host == "?" {
                continue;
            }
            let address = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let list = if i == 2 { &mut masters } else { &mut replicas };
            if !list.contains(&address) {
                list.push(address);
            }
        }
    }
    replicas.retain(|r| !masters.contains(r));
    (masters, replicas)
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let timed_out = || io_error("timed out");
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())??;
    tokio::time::timeout(CONNECT_TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| timed_out())??;
    Ok(pubsub)
}

/// The TLS files, read.
fn certificates(tls: &RedisTls) -> Result<redis::TlsCertificates, String> {
    let read = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
            .transpose()
    };
    let client_tls = match (read(&tls.client_cert)?, read(&tls.client_key)?) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        _ => None,
    };
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert: read(&tls.ca_cert)?,
    })
}

/// The client for one server's `url`: over TLS for `rediss://`, trusting `tls.ca_cert` (or the
/// system's roots) and presenting the client certificate if one is configured.
pub(super) fn client(url: &str, tls: &RedisTls) -> Result<redis::Client, String> {
    if !url.starts_with("rediss://") {
        return redis::Client::open(url).map_err(|e| e.to_string());
    }
    redis::Client::build_with_tls(url, certificates(tls)?).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_name_each_master_and_replica_once() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |start: i64, end: i64, nodes: Vec<Value>| {
            let mut fields = vec![Value::Int(start), Value::Int(end)];
            fields.extend(nodes);
            Value::Array(fields)
        };
        let slots = Value::Array(vec![
            range(
                0,
                5460,
                vec![node("127.0.0.1", 7000), node("127.0.0.1", 7004)],
            ),
            range(5461, 10922, vec![node("127.0.0.1", 7001), node("", 7005)]),
            // One master may hold several ranges.
            range(10923, 12000, vec![node("127.0.0.1", 7000)]),
            range(
                12001,
                16383,
                vec![node("::1", 7002), node("127.0.0.1", 7003)],
            ),
        ]);
        let (masters, replicas) = parse_cluster_slots(&slots);
        assert_eq!(masters, ["127.0.0.1:7000", "127.0.0.1:7001", "[::1]:7002"]);
        assert_eq!(replicas, ["127.0.0.1:7004", "127.0.0.1:7003"]);
        assert_eq!(parse_cluster_slots(&Value::Nil), (vec![], vec![]));
    }
}
