//! Access control and transport security. Properties checked:
//! 1. With tokens configured, Events, every Profile method and Rank-when-closed answer
//!    UNAUTHENTICATED to a call with no token or an unknown one, and work with a known one;
//!    Rank (open by default in sidecar mode) and health need none. Refused calls are counted.
//! 2. With a certificate from a test CA, calls over TLS work, and a plaintext client gets
//!    nowhere.
//! 3. With mutual TLS, a client certificate signed by the configured CA works; one signed by
//!    another CA, or none, fails the handshake.
//!
//! Certificates and keys are generated for each run (rcgen) into a temporary directory.

mod common;

use std::path::Path;

use common::*;
use tactful::config::{Config, Secret};
use tactful::pb;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const APP_TOKEN: &str = "app-0123456789abcdef0123";

fn with_auth() -> Config {
    let mut config = Config::default();
    config.auth.env_tokens = Some(Secret(format!(
        "app:{APP_TOKEN},recommender:rec-fedcba9876543210fedc"
    )));
    config
}

/// `message` with `authorization: Bearer token`, or bare.
fn req<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Calls Events.Record and every Profile method with `token` (or none); the codes they got.
async fn protected_calls(server: &TestServer, token: Option<&str>) -> Vec<Code> {
    let mut block = event("tao", pb::EventType::BlockBrand);
    block.brand_id = 7;
    let user = || "tao".to_owned();
    let mut events = server.events().await;
    let mut profile = server.profile().await;
    vec![
        code(
            events
                .record(req(
                    pb::RecordRequest {
                        events: vec![block],
                    },
                    token,
                ))
                .await,
        ),
        code(
            profile
                .get(req(pb::GetProfileRequest { user_id: user() }, token))
                .await,
        ),
        code(
            profile
                .set_consent(req(
                    pb::SetConsentRequest {
                        user_id: user(),
                        personalization: Some(true),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        code(
            profile
                .update_interests(req(
                    pb::UpdateInterestsRequest {
                        user_id: user(),
                        updates: vec![pb::InterestUpdate {
                            kind: pb::TagKind::Category.into(),
                            id: 5,
                            weight: 0.5,
                            label: None,
                        }],
                    },
                    token,
                ))
                .await,
        ),
        code(
            profile
                .undo(req(
                    pb::UndoRequest {
                        user_id: user(),
                        kind: pb::UndoKind::BlockBrand.into(),
                        id: 7,
                    },
                    token,
                ))
                .await,
        ),
        code(
            profile
                .forget(req(pb::ForgetRequest { user_id: user() }, token))
                .await,
        ),
    ]
}

#[tokio::test]
async fn calls_about_a_user_need_a_known_token_and_rank_stays_open() {
    let server = TestServer::with_admin(with_auth(), Vec::new()).await;
    let refused = vec![Code::Unauthenticated; 6];
    assert_eq!(protected_calls(&server, None).await, refused);
    assert_eq!(
        protected_calls(&server, Some("app-0123456789abcdef0124")).await,
        refused
    );
    assert_eq!(
        protected_calls(&server, Some(APP_TOKEN)).await,
        vec![Code::Ok; 6]
    );

    let ranked = server
        .ranker()
        .await
        .rank(request("tao", catalogue()))
        .await;
    assert_eq!(code(ranked), Code::Ok, "Rank is open in sidecar mode");
    let health = HealthClient::new(server.channel().await)
        .check(HealthCheckRequest::default())
        .await;
    assert_eq!(code(health), Code::Ok, "probes need no token");

    let (_, page) = http_get(server.admin.unwrap(), "/metrics").await;
    let refused = metric(
        &page,
        r#"tactful_grpc_requests_total{method="tactful.v1.Events/Record",outcome="unauthenticated"}"#,
    );
    assert_eq!(refused, Some(2.0), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn rank_needs_a_token_once_closed() {
    let mut config = with_auth();
    config.auth.rank_open = false;
    let server = TestServer::start(config).await;
    let mut ranker = server.ranker().await;
    let bare = ranker
        .rank(req(request("tao", catalogue()), None))
        .await
        .unwrap_err();
    assert_eq!(bare.code(), Code::Unauthenticated);
    assert!(bare.message().contains("Bearer"), "{bare:?}");
    let wrong = ranker
        .rank(req(request("tao", catalogue()), Some("not-a-token-at-all")))
        .await;
    assert_eq!(code(wrong), Code::Unauthenticated);
    let right = ranker
        .rank(req(request("tao", catalogue()), Some(APP_TOKEN)))
        .await;
    assert_eq!(right.unwrap().into_inner().items.len(), 10);
    server.stop().await;
}

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A server on TLS with a certificate for `localhost` from `ca`, requiring client certificates
/// from `client_ca` if given.
async fn tls_server(dir: &Path, ca: &TestCa, client_ca: Option<&TestCa>) -> TestServer {
    let (cert, key) = ca.sign(&["localhost"], true);
    let mut config = Config::default();
    config.tls.cert = Some(write(dir, "server.pem", &cert));
    config.tls.key = Some(write(dir, "server.key", &key));
    config.tls.client_ca = client_ca.map(|c| write(dir, "client-ca.pem", &c.pem));
    tactful::grpc::check_tls(&config).unwrap();
    TestServer::start(config).await
}

/// Connects over TLS trusting `ca`, presenting `identity`, and makes one Rank call.
async fn rank_over_tls(
    server: &TestServer,
    ca: &TestCa,
    identity: Option<(String, String)>,
) -> Result<usize, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let r = pb::ranker_client::RankerClient::new(channel)
        .rank(request("tls", catalogue()))
        .await
        .map_err(|s| format!("rank: {s:?}"))?;
    Ok(r.into_inner().items.len())
}

#[tokio::test]
async fn tls_with_a_test_ca_serves_and_plaintext_gets_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tactful test CA");
    let server = tls_server(dir.path(), &ca, None).await;
    assert_eq!(rank_over_tls(&server, &ca, None).await, Ok(10));

    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        pb::ranker_client::RankerClient::new(channel)
            .rank(request("plain", catalogue()))
            .await
            .map_err(|s| s.to_string())
    };
    assert!(plaintext.await.is_err(), "a plaintext call must fail");

    let stranger = TestCa::new("some other CA");
    let untrusted = rank_over_tls(&server, &stranger, None).await;
    assert!(
        untrusted.is_err(),
        "the client must not trust another CA's server"
    );
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_refuses_client_certificates_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tactful test CA");
    let clients = TestCa::new("tactful clients CA");
    let server = tls_server(dir.path(), &ca, Some(&clients)).await;

    let known = clients.sign(&["recommender"], false);
    assert_eq!(rank_over_tls(&server, &ca, Some(known)).await, Ok(10));

    let other = TestCa::new("another clients CA").sign(&["recommender"], false);
    // The server's alert ends the handshake (under TLS 1.3 the client learns it on its first
    // call).
    let refused = rank_over_tls(&server, &ca, Some(other)).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("alert")),
        "{refused:?}"
    );
    let anonymous = rank_over_tls(&server, &ca, None).await;
    assert!(
        anonymous.as_ref().is_err_and(|e| e.contains("alert")),
        "{anonymous:?}"
    );
    server.stop().await;
}

#[test]
fn a_key_that_is_not_the_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tactful test CA");
    let (cert, _) = ca.sign(&["localhost"], true);
    let (_, other_key) = ca.sign(&["localhost"], true);
    let mut config = Config::default();
    config.tls.cert = Some(write(dir.path(), "server.pem", &cert));
    config.tls.key = Some(write(dir.path(), "server.key", &other_key));
    let err = tactful::grpc::check_tls(&config).unwrap_err();
    assert_eq!(err.setting, "tls", "{err}");
    config.tls.key = Some(write(
        dir.path(),
        "garbled.key",
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    ));
    let err = tactful::grpc::check_tls(&config).unwrap_err();
    assert_eq!(err.setting, "tls", "{err}");
}
