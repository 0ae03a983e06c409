//! 3. A cut-off Catalog.Upsert changes nothing; 7. unreadable messages are the client's
//! fault. Both through a raw HTTP/2 client, which sends what gRPC clients never do.

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

fn request(server: &Server, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
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
    let cases: Vec<(&str, Vec<(&str, &str)>, Bytes, &str)> = vec![
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
        ("two messages in a unary call", vec![], two.into(), "exactly one message"),
        ("no message", vec![], Bytes::new(), "carries none"),
        ("compressed without an encoding", vec![], {
            let mut f = frame(&good).to_vec();
            f[0] = 1;
            f.into()
        }, "grpc-encoding"),
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
    assert_eq!(internal.unwrap_or(0.0), 0.0, "counted as the server's fault");
    let invalid = super::common::metric(
        &page,
        r#"tactful_grpc_requests_total{method="tactful.v1.Ranker/Rank",outcome="invalid_argument"}"#,
    );
    assert_eq!(invalid, Some(6.0));
}
