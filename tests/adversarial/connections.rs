//! 2. Silent connections, the connection bound and idle connections.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{Server, fd_limit};

/// Opens `n` TCP connections that never send a byte.
fn silent(server: &Server, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| TcpStream::connect(server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect()
}

/// Whether the server closes `stream` within 5 seconds (a read sees the end, or a reset): the
/// server decides at once, but its connection task may wait for a busy machine's cores before
/// the socket is dropped.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // The server's SETTINGS frame: keep reading.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn silent_connections_neither_starve_the_server_nor_stay_open() {
    // 2,000 by default: a debug build on a shared machine accepts a few hundred connections
    // a second. TACTFUL_TEST_SILENT_CONNECTIONS=10000 with a release build is the issue's
    // case. The test holds one descriptor per connection, and needs some for itself.
    let wanted = std::env::var("TACTFUL_TEST_SILENT_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let n = wanted.min((fd_limit().saturating_sub(512) / 2) as usize);
    let handshake_s = 20;
    let server = Server::start(&[("TACTFUL_HANDSHAKE_TIMEOUT_S", "20")]);
    let opened = Instant::now();
    let mut held = silent(&server, n);
    // Accepted by now (the accept loop is not blocked by silence).
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("tactful_grpc_connections").unwrap_or(0.0) < n as f64 {
        assert!(
            Instant::now() < deadline,
            "the connections were not accepted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // While they are open (and still within their handshake time), the server serves.
    let (status, _) = super::common::http_get_blocking(server.admin, "/live");
    assert_eq!(status, 200, "/live with {n} silent connections open");
    assert!(server.ranks(), "Rank with {n} silent connections open");
    assert!(
        opened.elapsed() < Duration::from_secs(handshake_s),
        "the checks ran after the handshake timeout ({:?}): make the test faster",
        opened.elapsed()
    );
    // Within the handshake timeout (20 s here, 10 s by default) of the last one, every one
    // is closed.
    let deadline = Instant::now() + Duration::from_secs(handshake_s + 5);
    while server
        .metric("tactful_grpc_connections")
        .unwrap_or(f64::MAX)
        > 0.0
    {
        assert!(
            Instant::now() < deadline,
            "silent connections still open {:?} after they were made",
            opened.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed = server
        .metric(r#"tactful_grpc_connections_closed_total{reason="handshake"}"#)
        .unwrap();
    assert!(closed >= n as f64, "{closed} closed for silence of {n}");
    for stream in held.iter_mut().step_by(97) {
        assert!(closed_by_server(stream));
    }
    assert!(server.metric("tactful_process_max_fds").unwrap() >= 1024.0);
}

/// Opens `n` connections that send the HTTP/2 preface and an empty SETTINGS frame, then
/// nothing more: they have spoken.
fn spoken(server: &Server, n: usize) -> Vec<TcpStream> {
    use std::io::Write;
    let mut held = silent(server, n);
    for stream in &mut held {
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
    }
    held
}

fn wait_for(server: &Server, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric(series).unwrap_or(0.0) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {at_least}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn at_the_bound_silent_connections_make_room_and_spoken_ones_keep_theirs() {
    let server = Server::start(&[("TACTFUL_MAX_CONNECTIONS", "20")]);
    // Set as the server starts serving, a moment after it logs its address.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("tactful_grpc_max_connections") != Some(20.0) {
        assert!(Instant::now() < deadline, "the bound in force is not 20");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The bound full of silent connections: a real client still gets in, in place of the
    // oldest silent one.
    let mut held = silent(&server, 20);
    wait_for(&server, "tactful_grpc_connections", 20.0);
    assert!(
        server.ranks(),
        "Rank with the bound full of silent connections"
    );
    assert!(
        server
            .metric(r#"tactful_grpc_connections_closed_total{reason="evicted"}"#)
            .unwrap()
            >= 1.0
    );
    assert!(
        closed_by_server(&mut held[0]),
        "the oldest silent one made room"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .metric("tactful_grpc_connections")
        .unwrap_or(f64::MAX)
        > 0.0
    {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The bound full of connections that have spoken: a new one is closed at once.
    let _spoken = spoken(&server, 20);
    wait_for(&server, "tactful_grpc_connections", 20.0);
    let mut extra = silent(&server, 5);
    for stream in &mut extra {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        let n = stream.read(&mut buf);
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "a connection past the bound was served: {n:?}"
        );
    }
    assert!(
        server
            .metric(r#"tactful_grpc_connections_closed_total{reason="limit"}"#)
            .unwrap()
            >= 5.0
    );
    // The admin port keeps answering whatever the gRPC port holds.
    assert_eq!(
        super::common::http_get_blocking(server.admin, "/live").0,
        200
    );
}

#[test]
fn an_idle_connection_is_closed_and_its_client_reconnects() {
    let server = Server::start(&[("TACTFUL_IDLE_TIMEOUT_S", "2")]);
    // A client that spoke once and then stays quiet is closed after the idle limit (2 s);
    // its next call reconnects and succeeds.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let check = || tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        };
        health.check(check()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let idle = server
            .metric(r#"tactful_grpc_connections_closed_total{reason="idle"}"#)
            .unwrap();
        assert!(idle >= 1.0, "an idle connection was not closed");
        health.check(check()).await.unwrap();
    });
}

#[test]
fn connections_never_use_the_descriptors_the_rest_of_the_server_needs() {
    // 512 descriptors: the bound becomes 512 - 256 (the reserve), whatever is configured.
    let server = Server::start_with_fd_limit(&[], 512);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("tactful_grpc_max_connections") != Some(256.0) {
        assert!(
            Instant::now() < deadline,
            "the bound is not the limit minus the reserve"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.metric("tactful_process_max_fds"), Some(512.0));
    let _held = silent(&server, 1_000);
    let open = server.metric("tactful_grpc_connections").unwrap();
    assert!(open <= 256.0, "{open} connections open");
    // The admin port, a Rank (a new connection, a log append and its fsync) and a Forget all
    // find descriptors.
    assert_eq!(
        super::common::http_get_blocking(server.admin, "/live").0,
        200
    );
    assert!(server.ranks());
    let out = server.client("profile forget", &["--user", "probe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
