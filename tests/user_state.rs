//! The user's last action shapes the very next Rank. Properties checked:
//! 1. BLOCK_BRAND recorded → the brand is gone from the next ranking; UNBLOCK_BRAND brings it
//!    back. The same for shops.
//! 2. NOT_INTERESTED hides the item.
//! 3. Repeated IMPRESSIONs without a click make the item sink, then the frequency cap holds it
//!    back; a CLICK restores it.
//! 4. Events.Stream applies events as Events.Record does.
//! 5. Bad events are rejected one by one with the field named; good ones in the same batch
//!    are applied.
//! 6. Consent: candidates backed only by a non-consented dimension are dropped (cross-platform
//!    by default); SetConsent grants it; the request override and personalisation off restrict.
//! 7. Profile.Get shows what was recorded.
//! 8. A Rank request that says what was shown records those items as impressions (the first
//!    `shown`, or `all_shown`), once even when the host also sends the same impression; both
//!    at once is INVALID_ARGUMENT naming `shown`.

mod common;

use common::*;
use tactful::config::Config;
use tactful::pb;

async fn rank_ids(server: &TestServer, req: pb::RankRequest) -> Vec<u64> {
    ids(&server.rank(req).await)
}

async fn record(server: &TestServer, events: Vec<pb::Event>) -> pb::RecordResponse {
    server
        .events()
        .await
        .record(pb::RecordRequest { events })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_blocked_brand_or_shop_is_gone_from_the_next_ranking_until_unblocked() {
    let server = TestServer::start(Config::default()).await;
    assert!(
        rank_ids(&server, request("bo", catalogue()))
            .await
            .contains(&3)
    );

    let mut block = event("bo", pb::EventType::BlockBrand);
    block.brand_id = 103; // items 3 and 8
    assert_eq!(record(&server, vec![block.clone()]).await.applied, 1);
    let after = rank_ids(&server, request("bo", catalogue())).await;
    assert!(!after.contains(&3) && !after.contains(&8), "{after:?}");
    assert_eq!(after.len(), 8);
    assert!(
        rank_ids(&server, request("someone-else", catalogue()))
            .await
            .contains(&3)
    );

    block.r#type = pb::EventType::UnblockBrand.into();
    record(&server, vec![block]).await;
    assert!(
        rank_ids(&server, request("bo", catalogue()))
            .await
            .contains(&3)
    );

    let mut shop = event("bo", pb::EventType::BlockShop);
    shop.shop_id = 1040; // items 4 and 9
    record(&server, vec![shop]).await;
    let after = rank_ids(&server, request("bo", catalogue())).await;
    assert!(!after.contains(&4) && !after.contains(&9), "{after:?}");
    server.stop().await;
}

#[tokio::test]
async fn not_interested_hides_the_item() {
    let server = TestServer::start(Config::default()).await;
    let mut e = event("cy", pb::EventType::NotInterested);
    e.item_id = 1;
    record(&server, vec![e]).await;
    let after = rank_ids(&server, request("cy", catalogue())).await;
    assert!(!after.contains(&1), "{after:?}");
    server.stop().await;
}

#[tokio::test]
async fn ignored_impressions_make_an_item_sink_and_a_click_restores_it() {
    let server = TestServer::start(Config::default()).await;
    let position = |ids: &[u64], item: u64| ids.iter().position(|i| *i == item).unwrap();
    let before = rank_ids(&server, request("di", catalogue())).await;
    assert_eq!(position(&before, 1), 0);

    // Shown four times, six minutes ago, a second apart, and never clicked: ignored. (One
    // showing reported twice, same item and second, would count once.)
    let mut seen = event("di", pb::EventType::Impression);
    seen.item_id = 1;
    let shown_at = |from: i64| {
        let seen = seen.clone();
        move |i: i64| pb::Event {
            at_ms: tactful::time::now_ms() - 6 * 60_000 + (from + i) * 1000,
            ..seen.clone()
        }
    };
    record(&server, (0..4).map(shown_at(0)).collect()).await;
    let tired = rank_ids(&server, request("di", catalogue())).await;
    assert!(position(&tired, 1) >= 3, "item 1 should sink: {tired:?}");

    // Shown eight times today: the frequency cap (six a day) holds it back altogether.
    record(&server, (0..4).map(shown_at(4)).collect()).await;
    let wearier = rank_ids(&server, request("di", catalogue())).await;
    assert!(!wearier.contains(&1), "{wearier:?}");

    let mut click = seen;
    click.r#type = pb::EventType::Click.into();
    click.at_ms = 0;
    record(&server, vec![click]).await;
    assert_eq!(
        position(&rank_ids(&server, request("di", catalogue())).await, 1),
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn the_stream_applies_events_like_record() {
    let server = TestServer::start(Config::default()).await;
    let mut block = event("ed", pb::EventType::BlockBrand);
    block.brand_id = 101;
    let bad = event("ed", pb::EventType::Impression); // no item_id
    let mut seen = event("ed", pb::EventType::Impression);
    seen.item_id = 5;
    let events = vec![block, bad, seen.clone(), seen.clone(), seen];
    let r = server
        .events()
        .await
        .stream(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.applied, r.rejected_total), (4, 1));
    assert_eq!(r.rejected[0].index, 1);
    assert!(
        r.rejected[0].reason.starts_with("item_id:"),
        "{:?}",
        r.rejected
    );
    let after = rank_ids(&server, request("ed", catalogue())).await;
    assert!(!after.contains(&1) && !after.contains(&6), "{after:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_events_are_rejected_one_by_one_and_good_ones_applied() {
    let server = TestServer::start(Config::default()).await;
    let good = {
        let mut e = event("fa", pb::EventType::BlockShop);
        e.shop_id = 7;
        e
    };
    let no_user = {
        let mut e = good.clone();
        e.user_id.clear();
        e
    };
    let no_type = {
        let mut e = good.clone();
        e.r#type = 0;
        e
    };
    let future = {
        let mut e = good.clone();
        e.at_ms = i64::MAX / 2;
        e
    };
    let nan_price = {
        let mut e = good.clone();
        e.price = f32::NAN;
        e
    };
    let r = record(&server, vec![no_user, good, no_type, future, nan_price]).await;
    assert_eq!((r.applied, r.rejected_total), (1, 4));
    let fields: Vec<(u32, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.index, x.reason.split(':').next().unwrap()))
        .collect();
    assert_eq!(
        fields,
        vec![(0, "user_id"), (2, "type"), (3, "at_ms"), (4, "price")]
    );

    let limit = Config::default().limits.max_events_per_batch;
    let status = server
        .events()
        .await
        .record(pb::RecordRequest {
            events: vec![event("fa", pb::EventType::Search); limit + 1],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("events:"),
        "{}",
        status.message()
    );
    server.stop().await;
}

fn with_evidence(item_id: u64, dims: &[pb::DataDimension]) -> pb::Candidate {
    let mut c = candidate(item_id, 1.0 - item_id as f32 * 0.1, item_id, item_id);
    c.evidence = dims.iter().map(|d| *d as i32).collect();
    c
}

#[tokio::test]
async fn consent_gates_candidates_by_their_evidence() {
    use pb::DataDimension as D;
    let server = TestServer::start(Config::default()).await;
    let candidates = vec![
        with_evidence(1, &[D::CrossPlatform]),
        with_evidence(2, &[D::Browsing]),
        with_evidence(3, &[D::Location]),
        with_evidence(4, &[D::Trending]),
        with_evidence(5, &[D::CrossPlatform, D::Favorites]),
    ];
    // Privacy by default: cross-platform and location need an opt-in.
    assert_eq!(
        rank_ids(&server, request("gu", candidates.clone())).await,
        vec![2, 4, 5]
    );

    let mut profiles = server.profile().await;
    let p = profiles
        .set_consent(pb::SetConsentRequest {
            user_id: "gu".into(),
            dimensions: vec![
                pb::DimensionConsent {
                    dimension: D::CrossPlatform as i32,
                    granted: true,
                },
                pb::DimensionConsent {
                    dimension: D::Browsing as i32,
                    granted: false,
                },
            ],
            personalization: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let granted = |d: D| {
        p.consent
            .iter()
            .any(|c| c.dimension == d as i32 && c.granted)
    };
    assert!(granted(D::CrossPlatform) && !granted(D::Browsing));
    assert_eq!(
        rank_ids(&server, request("gu", candidates.clone())).await,
        vec![1, 4, 5]
    );

    // The request's override is stricter still.
    let mut req = request("gu", candidates.clone());
    req.consent = Some(pb::ConsentOverride {
        denied: vec![D::CrossPlatform as i32],
        personalization_off: false,
    });
    assert_eq!(rank_ids(&server, req).await, vec![4, 5]);

    // Reasons cite only consented dimensions.
    let r = server.rank(request("gu", candidates.clone())).await;
    let five = r.items.iter().find(|i| i.item_id == 5).unwrap();
    let dims = &five.reason.as_ref().unwrap().dimensions;
    assert!(!dims.contains(&(D::Browsing as i32)));

    // Personalisation off: only non-personal evidence survives.
    profiles
        .set_consent(pb::SetConsentRequest {
            user_id: "gu".into(),
            dimensions: vec![],
            personalization: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rank_ids(&server, request("gu", candidates)).await, vec![4]);
    server.stop().await;
}

#[tokio::test]
async fn set_consent_refuses_bad_dimensions_by_field() {
    let server = TestServer::start(Config::default()).await;
    let mut profiles = server.profile().await;
    for (dimension, field) in [
        (0, "dimensions[0].dimension"),
        (99, "dimensions[0].dimension"),
        (
            pb::DataDimension::Trending as i32,
            "dimensions[0].dimension",
        ),
    ] {
        let status = profiles
            .set_consent(pb::SetConsentRequest {
                user_id: "ha".into(),
                dimensions: vec![pb::DimensionConsent {
                    dimension,
                    granted: true,
                }],
                personalization: None,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    let status = profiles
        .get(pb::GetProfileRequest {
            user_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("user_id:"));
    server.stop().await;
}

#[tokio::test]
async fn the_profile_shows_what_was_recorded() {
    let server = TestServer::start(Config::default()).await;
    let mut profiles = server.profile().await;
    let unknown = profiles
        .get(pb::GetProfileRequest {
            user_id: "io".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.known && unknown.personalization);
    assert_eq!(unknown.lifecycle_stage, pb::LifecycleStage::New as i32);

    let mut block = event("io", pb::EventType::BlockBrand);
    block.brand_id = 9;
    let mut not_interested = event("io", pb::EventType::NotInterested);
    not_interested.item_id = 4;
    let mut seen = event("io", pb::EventType::Impression);
    seen.item_id = 2;
    seen.at_ms = tactful::time::now_ms() - 6 * 60_000;
    let mut seen_again = seen.clone();
    seen_again.at_ms += 1000;
    record(&server, vec![block, not_interested, seen, seen_again]).await;
    let p = profiles
        .get(pb::GetProfileRequest {
            user_id: "io".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p.known);
    assert_eq!(p.blocked_brands, vec![9]);
    assert_eq!(
        p.not_interested
            .iter()
            .map(|n| n.item_id)
            .collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(p.fatigue.len(), 1);
    assert!((p.fatigue[0].ignored_impressions - 2.0).abs() < 0.01);
    assert!(p.last_active_ms > 0);
    server.stop().await;
}

#[tokio::test]
async fn a_rank_that_says_what_was_shown_records_its_items_as_impressions() {
    let server = TestServer::start(Config::default()).await;
    let ten_seconds_ago = tactful::time::now_ms() - 10_000;
    let mut req = request("sh", catalogue());
    req.k = 5;
    req.shown = 3;
    req.context = Some(pb::Context {
        now_ms: ten_seconds_ago,
        ..Default::default()
    });
    let answer = rank_ids(&server, req.clone()).await;
    // The host also reports the first item itself, at the same moment: counted once.
    let mut also = event("sh", pb::EventType::Impression);
    also.item_id = answer[0];
    also.at_ms = ten_seconds_ago;
    record(&server, vec![also]).await;

    // Recording happens after the answer: wait for it (bounded).
    let mut profiles = server.profile().await;
    let mut fatigue = Vec::new();
    for _ in 0..100 {
        let p = profiles
            .get(pb::GetProfileRequest {
                user_id: "sh".into(),
            })
            .await
            .unwrap()
            .into_inner();
        fatigue = p.fatigue;
        if fatigue.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut recorded: Vec<u64> = fatigue.iter().map(|f| f.item_id).collect();
    recorded.sort_unstable();
    let mut first_three = answer[..3].to_vec();
    first_three.sort_unstable();
    assert_eq!(recorded, first_three, "the first three of {answer:?}");
    for f in &fatigue {
        // Seen ten seconds ago and passed over by the Profile read: one ignored impression.
        assert!(
            (f.ignored_impressions - 1.0).abs() < 0.01,
            "item {} counted {}",
            f.item_id,
            f.ignored_impressions
        );
    }

    req.all_shown = true;
    let status = server.ranker().await.rank(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("shown"), "{}", status.message());
    server.stop().await;
}
