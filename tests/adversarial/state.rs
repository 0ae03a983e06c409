//! 8. The user's words against late events, no-op calls and erasure, through the real binary.

use std::time::Duration;

use tactful::pb;
use tonic::transport::Channel;

use super::Server;
use super::common::event;

async fn channel(server: &Server) -> Channel {
    tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn profile(server: &Server, user: &str) -> pb::UserProfile {
    pb::profile_client::ProfileClient::new(channel(server).await)
        .get(pb::GetProfileRequest {
            user_id: user.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Bytes the process has written to storage (`/proc/PID/io`).
fn written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn late_words_no_ops_and_erasure_of_a_stranger() {
    // The data directory, and its key store beside it, in one temporary directory.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start_in(&data, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // BLOCK at t, then an UNBLOCK said at t - 4 s arriving after it: still blocked.
        let now = now_ms();
        let mut events = pb::events_client::EventsClient::new(channel(&server).await);
        for (t, at) in [
            (pb::EventType::BlockBrand, now - 1000),
            (pb::EventType::UnblockBrand, now - 5000),
        ] {
            events
                .record(pb::RecordRequest {
                    events: vec![pb::Event {
                        at_ms: at,
                        brand_id: 8,
                        ..event("late", t)
                    }],
                })
                .await
                .unwrap();
        }
        assert_eq!(profile(&server, "late").await.blocked_brands, vec![8]);

        // Calls that change nothing create nobody.
        let mut p = pb::profile_client::ProfileClient::new(channel(&server).await);
        p.undo(pb::UndoRequest {
            user_id: "nobody".into(),
            kind: pb::UndoKind::BlockBrand.into(),
            id: 3,
        })
        .await
        .unwrap();
        p.set_consent(pb::SetConsentRequest {
            user_id: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        p.update_interests(pb::UpdateInterestsRequest {
            user_id: "nobody".into(),
            updates: vec![pb::InterestUpdate {
                kind: pb::TagKind::Category.into(),
                id: 5,
                weight: 0.0,
                label: None,
            }],
        })
        .await
        .unwrap();
        assert!(!profile(&server, "nobody").await.known);

        // Forget of a user never seen: a log record, not a snapshot of everyone.
        let snapshots = server.metric("tactful_state_snapshots_total").unwrap();
        let pid = server.child.0.id();
        let before = written(pid);
        p.forget(pb::ForgetRequest {
            user_id: "stranger".into(),
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            server.metric("tactful_state_snapshots_total").unwrap(),
            snapshots
        );
        if let (Some(before), Some(after)) = (before, written(pid)) {
            assert!(after - before < 1 << 20, "{} bytes written", after - before);
        }
    });
    // After a restart: the block holds, nobody is still unknown.
    drop(server);
    let server = Server::start_in(&data, &[]);
    runtime.block_on(async {
        assert_eq!(profile(&server, "late").await.blocked_brands, vec![8]);
        assert!(!profile(&server, "nobody").await.known);
    });
}
