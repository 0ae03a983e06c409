//! A cut-off Catalog.Upsert changes nothing (3), a tight caller deadline fails open (4),
//! unreadable messages are the client's fault (5), a Rank message whole in one DATA frame
//! (decoded where it arrived) and one split over several (gathered by tonic) are answered
//! alike (6): through a raw HTTP/2 client, which sends what gRPC clients never do.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tactful::pb;

use super::Server;

/// One gRPC frame around `message`'s bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

fn item(id: u64) -> Bytes {
    frame(
        &pb::CatalogItem {
            item_id: id,
            category_id: 3,
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// A raw HTTP/2 connection to the server.
async fn connect(server: &Server) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

pub(super) fn request(server: &Server, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut r = http::Request::post(format!("http://{}{path}", server.addr))
        .header("te", "trailers")
        .header("content-type", "application/grpc");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

/// The call's gRPC status code and message (trailers-only answers carry them in the
/// headers, others in the trailers).
async fn status(response: h2::client::ResponseFuture) -> (i32, String) {
    let response = response.await.unwrap();
    let read = |h: &http::HeaderMap| {
        h.get("grpc-status").map(|s| {
            (
                s.to_str().unwrap().parse().unwrap(),
                h.get("grpc-message")
                    .map(|m| m.to_str().unwrap().replace("%20", " "))
                    .unwrap_or_default(),
            )
        })
    };
    if let Some(s) = read(response.headers()) {
        return s;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    read(&trailers).expect("a grpc-status")
}

/// A successful call's one response message.
async fn answer(response: h2::client::ResponseFuture) -> pb::RankResponse {
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("grpc-status").is_none(),
        "{response:?}"
    );
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{trailers:?}");
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert_eq!(
        (bytes[0], bytes.len()),
        (0, 5 + len),
        "one uncompressed message"
    );
    pb::RankResponse::decode(&bytes[5..]).unwrap()
}

fn catalog_items(server: &Server) -> f64 {
    server.metric("tactful_catalog_items").unwrap()
}

#[test]
fn a_cut_off_upsert_changes_nothing() {
    let server = Server::start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let upsert = "/tactful.v1.Catalog/Upsert";
        // Reset by the client mid-stream, with CANCEL (a cancel, a client's deadline) and
        // with NO_ERROR (which hyper reports as the end of the body).
        for reason in [h2::Reason::CANCEL, h2::Reason::NO_ERROR] {
            let mut client = connect(&server).await;
            let (_response, mut stream) = client
                .send_request(request(&server, upsert, &[]), false)
                .unwrap();
            for id in 1..=3 {
                stream.send_data(item(id), false).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            stream.send_reset(reason);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(catalog_items(&server), 0.0, "reset with {reason:?}");
        }
        // The caller's deadline passes before the stream ends.
        let mut client = connect(&server).await;
        let (response, mut stream) = client
            .send_request(request(&server, upsert, &[("grpc-timeout", "200m")]), false)
            .unwrap();
        stream.send_data(item(1), false).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = stream.send_data(Bytes::new(), true);
        let (code, _) = status(response).await;
        assert_ne!(code, 0, "a stream past its deadline was applied");
        assert_eq!(catalog_items(&server), 0.0);
        // A stream the client ends itself is applied (the harness works).
        let mut client = connect(&server).await;
        let (response, mut stream) = client
            .send_request(request(&server, upsert, &[]), false)
            .unwrap();
        stream.send_data(item(1), false).unwrap();
        stream.send_data(item(2), true).unwrap();
        assert_eq!(status(response).await.0, 0);
        assert_eq!(catalog_items(&server), 2.0);
    });
}

#[test]
fn unreadable_messages_are_the_clients_fault() {
    let server = Server::start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rank = "/tactful.v1.Ranker/Rank";
    let good = pb::RankRequest {
        user_id: "u".into(),
        candidates: vec![pb::Candidate {
            item_id: 1,
            score: 1.0,
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let mut two = frame(&good).to_vec();
    two.extend_from_slice(&frame(&good));
    let mut lying = vec![0, 0, 0, 0x10, 0];
    lying.extend_from_slice(&good);
    /// What is sent wrong, extra headers, the body, and what the answer must say.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Bytes, &'a str);
    let cases: Vec<Case> = vec![
        (
            "garbage",
            vec![],
            frame(&[0xff; 64]),
            "failed to decode Protobuf message",
        ),
        ("lying length prefix", vec![], lying.into(), "length prefix"),
        (
            "wrong content type",
            vec![("content-type", "application/json")],
            frame(&good),
            "content-type",
        ),
        (
            "two messages in a unary call",
            vec![],
            two.into(),
            "exactly one message",
        ),
        ("no message", vec![], Bytes::new(), "carries none"),
        (
            "compressed without an encoding",
            vec![],
            {
                let mut f = frame(&good).to_vec();
                f[0] = 1;
                f.into()
            },
            "grpc-encoding",
        ),
    ];
    runtime.block_on(async {
        for (case, headers, body, says) in cases {
            let mut client = connect(&server).await;
            let mut req = request(&server, rank, &[]);
            for (k, v) in headers {
                req.headers_mut().insert(k, v.parse().unwrap());
            }
            let (response, mut stream) = client.send_request(req, false).unwrap();
            stream.send_data(body, true).unwrap();
            let (code, message) = status(response).await;
            assert_eq!(code, 3, "{case}: {message}");
            assert!(message.contains(says), "{case}: {message}");
        }
    });
    let page = super::common::http_get_blocking(server.admin, "/metrics").1;
    let internal = super::common::metric(
        &page,
        r#"tactful_grpc_requests_total{method="tactful.v1.Ranker/Rank",outcome="internal"}"#,
    );
    assert_eq!(
        internal.unwrap_or(0.0),
        0.0,
        "counted as the server's fault"
    );
    let invalid = super::common::metric(
        &page,
        r#"tactful_grpc_requests_total{method="tactful.v1.Ranker/Rank",outcome="invalid_argument"}"#,
    );
    assert_eq!(invalid, Some(6.0));
}

#[test]
fn a_rank_message_whole_or_split_over_frames_is_answered_alike() {
    let server = Server::start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let message = pb::RankRequest {
        user_id: "u-frames".into(),
        k: 10,
        explain: true,
        candidates: (1..=60u64)
            .map(|i| pb::Candidate {
                item_id: i,
                score: 1.0 - i as f32 / 100.0,
                category_id: 1 + i % 4,
                brand_id: 10 + i % 7,
                popularity: (i * 37 % 101) as f32,
                evidence: vec![pb::DataDimension::Browsing as i32],
                embedding: (0..16).map(|j| ((i * 16 + j) % 13) as f32 / 13.0).collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec();
    let whole = frame(&message);
    let in_place = || {
        server
            .metric("tactful_rank_decoded_in_place_total")
            .unwrap()
    };
    let split_at = [0, 3, 5, 6, 700, whole.len() / 2, whole.len() - 1];
    let answers = runtime.block_on(async {
        let mut answers = Vec::new();
        // Whole, then split in two at every kind of place (inside the header, right after it,
        // inside the message), then in three, then whole again.
        let mut sends: Vec<Vec<Bytes>> = vec![vec![whole.clone()]];
        for at in split_at {
            sends.push(vec![whole.slice(..at), whole.slice(at..)]);
        }
        sends.push(vec![
            whole.slice(..9),
            whole.slice(9..800),
            whole.slice(800..),
        ]);
        sends.push(vec![whole.clone()]);
        for (n, chunks) in sends.into_iter().enumerate() {
            let before = in_place();
            let mut client = connect(&server).await;
            let (response, mut stream) = client
                .send_request(request(&server, "/tactful.v1.Ranker/Rank", &[]), false)
                .unwrap();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                stream.send_data(chunk, i == last).unwrap();
            }
            answers.push((n, answer(response).await, in_place() - before));
        }
        answers
    });
    let (_, first, _) = &answers[0];
    assert_eq!(first.items.len(), 10);
    assert!(
        first
            .items
            .iter()
            .all(|i| i.reason.as_ref().is_some_and(|r| !r.text.is_empty()))
    );
    for (n, answer, decoded_in_place) in &answers {
        assert_eq!(answer, first, "send {n}");
        // The whole message is decoded where it arrived; a split one is gathered by tonic
        // (after an empty first part, the whole message is in the next frame).
        let whole_frame = *n == 0 || *n == answers.len() - 1 || split_at.get(n - 1) == Some(&0);
        assert_eq!(
            *decoded_in_place,
            f64::from(u8::from(whole_frame)),
            "send {n}"
        );
    }
}

/// The answer to a Rank sent with `grpc-timeout` and no timer of the client's own: the status
/// code, and whether the answer is degraded.
async fn rank_with_timeout(
    server: &Server,
    request: &pb::RankRequest,
    timeout: &str,
) -> (i32, bool) {
    // Encoded before the headers leave: the deadline counts from their arrival.
    let body = frame(&request.encode_to_vec());
    let mut client = connect(server).await;
    let (response, mut stream) = client
        .send_request(
            super::wire::request(
                server,
                "/tactful.v1.Ranker/Rank",
                &[("grpc-timeout", timeout)],
            ),
            false,
        )
        .unwrap();
    // Sent in pieces as flow control allows.
    let mut rest = body;
    while !rest.is_empty() {
        stream.reserve_capacity(rest.len());
        // None once the server has answered (and closed the stream).
        let Some(Ok(capacity)) = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await else {
            break;
        };
        let chunk = rest.split_to(capacity.min(rest.len()));
        if stream.send_data(chunk, rest.is_empty()).is_err() {
            break;
        }
    }
    let response = response.await.unwrap();
    if let Some(code) = response.headers().get("grpc-status") {
        let message = response.headers().get("grpc-message");
        eprintln!("trailers-only: {code:?} {message:?}");
        return (code.to_str().unwrap().parse().unwrap(), false);
    }
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let code = trailers
        .get("grpc-status")
        .map(|c| c.to_str().unwrap().parse().unwrap())
        .unwrap_or(-1);
    let degraded = bytes.len() > 5 && pb::RankResponse::decode(&bytes[5..]).unwrap().degraded;
    (code, degraded)
}

#[test]
fn a_tight_caller_deadline_fails_open_and_is_counted() {
    let server = Server::start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let request = pb::RankRequest {
        user_id: "tight".into(),
        candidates: (1..=5_000u64)
            .map(|i| pb::Candidate {
                item_id: i,
                score: 1.0 / i as f32,
                category_id: i % 50 + 1,
                embedding: (0..128)
                    .map(|d| ((i * 31 + d) % 97) as f32 / 97.0)
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    runtime.block_on(async {
        for _ in 0..3 {
            let (code, degraded) = rank_with_timeout(&server, &request, "8m").await;
            eprintln!("grpc-timeout 8m on 5,000 x 128: grpc-status {code}, degraded {degraded}");
            // A fail-open answer, or DEADLINE_EXCEEDED: never CANCELLED from a timer.
            assert!(
                (code == 0 && degraded) || code == 4,
                "grpc-status {code}, degraded {degraded}"
            );
        }
        let strict = pb::RankRequest {
            strict: true,
            ..request.clone()
        };
        let (code, _) = rank_with_timeout(&server, &strict, "8m").await;
        assert_eq!(code, 4, "a strict call gets DEADLINE_EXCEEDED");
    });
    let deadline = server
        .metric(r#"tactful_rank_degraded_total{reason="deadline"}"#)
        .unwrap();
    assert!(deadline >= 3.0, "{deadline} deadline fail-opens counted");
}
