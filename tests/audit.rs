//! The audit log. Properties checked:
//! 1. A consent change and a Forget each append one JSON line saying when, what (the
//!    dimensions granted and withdrawn), who (the id of the caller's token) and which user, as
//!    the pseudonym `tactful user-hash` would give; the file never holds the user id.
//! 2. A change refused for bad input changes nothing and is not audited; one made without a
//!    token (auth off) is audited as `anonymous`.

mod common;

use common::*;
use tactful::config::{Config, Secret};
use tactful::pb;
use tactful::pseudonym::Pseudonyms;

const KEY: &str = "an audit pseudonym key, long enough";
const TOKEN: &str = "app-0123456789abcdef0123";
const USER: &str = "ines@example.com";

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn bearer<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

#[tokio::test]
async fn consent_changes_and_erasures_are_audited_with_who_and_a_pseudonym() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut config = Config::default();
    config.audit.path = Some(path.clone());
    config.user_hash_key = Some(Secret(KEY.into()));
    config.auth.env_tokens = Some(Secret(format!("app-backend:{TOKEN}")));
    let server = TestServer::start(config).await;
    let mut profile = server.profile().await;

    profile
        .set_consent(bearer(pb::SetConsentRequest {
            user_id: USER.into(),
            dimensions: vec![
                pb::DimensionConsent {
                    dimension: pb::DataDimension::Location.into(),
                    granted: true,
                },
                pb::DimensionConsent {
                    dimension: pb::DataDimension::Browsing.into(),
                    granted: false,
                },
            ],
            personalization: None,
            sensitive_categories: vec![pb::SensitiveConsent {
                category_id: 40,
                granted: true,
            }],
        }))
        .await
        .unwrap();
    let bad = profile
        .set_consent(bearer(pb::SetConsentRequest {
            user_id: USER.into(),
            dimensions: vec![pb::DimensionConsent {
                dimension: 999,
                granted: true,
            }],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    profile
        .forget(bearer(pb::ForgetRequest {
            user_id: USER.into(),
        }))
        .await
        .unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("ines"),
        "the user id must not appear:\n{text}"
    );
    let records = lines(&path);
    assert_eq!(records.len(), 2, "{text}");
    let pseudonym = Pseudonyms::new(Some(KEY)).of(USER);
    let (consent, forget) = (&records[0], &records[1]);
    assert_eq!(consent["action"], "consent");
    assert_eq!(consent["who"], "app-backend");
    assert_eq!(consent["user"], pseudonym.as_str());
    assert_eq!(consent["outcome"], "ok");
    assert_eq!(
        consent["detail"]["granted"],
        serde_json::json!(["location"])
    );
    assert_eq!(consent["detail"]["denied"], serde_json::json!(["browsing"]));
    assert_eq!(
        consent["detail"]["sensitive_opt_in"],
        serde_json::json!([40])
    );
    assert_eq!(
        consent["detail"]["personalization"],
        serde_json::Value::Null
    );
    assert!(consent["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(forget["action"], "forget");
    assert_eq!(forget["who"], "app-backend");
    assert_eq!(forget["user"], pseudonym.as_str());
    assert_eq!(forget["outcome"], "ok");
    server.stop().await;
}

#[tokio::test]
async fn without_auth_the_caller_is_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut config = Config::default();
    config.audit.path = Some(path.clone());
    let server = TestServer::start(config).await;
    server
        .profile()
        .await
        .set_consent(pb::SetConsentRequest {
            user_id: USER.into(),
            personalization: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let records = lines(&path);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["who"], "anonymous");
    assert_eq!(records[0]["detail"]["personalization"], false);
    server.stop().await;
}
