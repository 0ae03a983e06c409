//! The avoidance model as users live it, over the real gRPC server. One story per mechanism:
//! 1. Frequency caps: an item shown six times today rests on the feed until tomorrow.
//! 2. Fatigue: a category scrolled past again and again sinks; a click on it restores it.
//! 3. Overload: a user who skims forty items without a tap is shown fewer items, no sponsored
//!    ones, and more variety; engaging again ends it.
//! 4. Cooling-off and complements: a user buys a phone; for 14 days sees no other phones and
//!    never the same phone cheaper, sees cases first with "goes with your new …"; then
//!    phones return.
//! 5. Consent: withdrawing browsing consent removes browsing-only candidates, discounts mixed
//!    ones and keeps browsing out of every reason; sensitive categories need an opt-in; young
//!    cross-platform evidence is "too soon" even with consent.
//! 6. Personalisation off: the ranking is the one a stranger with the same blocks would get.
//! 7. User control: Undo takes back a block and a "fewer like this"; interest tags the user
//!    adds lift matching items with their reason; a learned tag shows where it came from and
//!    stays gone once removed.
//! 8. Lifecycle: a returning churned user gets a short list; a new user sees popular items.
//! 9. Context: an evening rule in the user's local time lifts its category.
//! 10. The profile shows cooling-off windows, muted categories, sensitive opt-ins and the data
//!     used lately; the engine counts what each avoidance rule did.

mod common;

use common::*;
use tactful::config::Config;
use tactful::pb;
use tactful::rank::{DropRule, Policy};
use tactful::time::now_ms;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const PHONES: u64 = 12;
const CASES: u64 = 13;
const CHARGERS: u64 = 14;

async fn record(server: &TestServer, events: Vec<pb::Event>) {
    let r = server
        .events()
        .await
        .record(pb::RecordRequest { events })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.rejected_total, 0, "{:?}", r.rejected);
}

fn at(user: &str, t: pb::EventType, at_ms: i64, item_id: u64, category_id: u64) -> pb::Event {
    pb::Event {
        at_ms,
        item_id,
        category_id,
        ..event(user, t)
    }
}

fn rank_at(user: &str, candidates: Vec<pb::Candidate>, now: i64) -> pb::RankRequest {
    pb::RankRequest {
        context: Some(pb::Context {
            now_ms: now,
            ..Default::default()
        }),
        explain: true,
        ..request(user, candidates)
    }
}

fn position(r: &pb::RankResponse, item: u64) -> Option<usize> {
    r.items.iter().position(|i| i.item_id == item)
}

fn dropped_by(r: &pb::RankResponse, item: u64) -> Option<pb::DropRule> {
    r.dropped
        .iter()
        .find(|d| d.item_id == item)
        .map(|d| d.rule())
}

fn with_policy(toml: &str) -> Config {
    let policy: Policy = toml::from_str(toml).unwrap();
    let mut config = Config::default();
    config.policies.insert("default".into(), policy);
    config
}

#[tokio::test]
async fn an_item_shown_six_times_today_rests_until_tomorrow() {
    let server = TestServer::start(Config::default()).await;
    let now = now_ms();
    let shown: Vec<pb::Event> = (0..6)
        .map(|h| at("fc", pb::EventType::Impression, now - (6 - h) * HOUR, 1, 2))
        .collect();
    record(&server, shown).await;
    let today = server.rank(rank_at("fc", catalogue(), now)).await;
    assert_eq!(position(&today, 1), None);
    assert_eq!(dropped_by(&today, 1), Some(pb::DropRule::FrequencyCap));
    let tomorrow = server.rank(rank_at("fc", catalogue(), now + DAY)).await;
    assert!(position(&tomorrow, 1).is_some());
    server.stop().await;
}

#[tokio::test]
async fn a_category_scrolled_past_sinks_and_a_click_restores_it() {
    let server = TestServer::start(Config::default()).await;
    let now = now_ms();
    // Category 2 holds items 1 and 6 of the catalogue; the user scrolls past 30 other items
    // of it over the last hours.
    let scrolled: Vec<pb::Event> = (0..30)
        .map(|i| {
            at(
                "cf",
                pb::EventType::Impression,
                now - 3 * HOUR + i * 1000,
                500 + i as u64,
                2,
            )
        })
        .collect();
    record(&server, scrolled).await;
    let r = server.rank(rank_at("cf", catalogue(), now)).await;
    let fatigue = |r: &pb::RankResponse, item: u64| {
        r.items
            .iter()
            .find(|i| i.item_id == item)
            .and_then(|i| i.breakdown.iter().find(|b| b.name == "fatigue"))
            .map_or(0.0, |b| b.value)
    };
    assert!(fatigue(&r, 1) < -0.1, "{:?}", r.items[0].breakdown);
    assert_eq!(fatigue(&r, 2), 0.0);
    record(&server, vec![at("cf", pb::EventType::Click, now, 777, 2)]).await;
    let r = server.rank(rank_at("cf", catalogue(), now)).await;
    assert_eq!(fatigue(&r, 1), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_skimming_user_is_shown_less_and_no_sponsored_items() {
    let server = TestServer::start(Config::default()).await;
    let now = now_ms();
    let mut list = catalogue();
    list[1].sponsored = true;
    let calm = server.rank(rank_at("ov", list.clone(), now)).await;
    assert_eq!(calm.suggested_k, 10);
    let skimmed: Vec<pb::Event> = (0..40)
        .map(|i| {
            at(
                "ov",
                pb::EventType::Impression,
                now - 60_000 + i * 1000,
                900 + i as u64,
                9,
            )
        })
        .collect();
    record(&server, skimmed).await;
    let r = server.rank(rank_at("ov", list.clone(), now)).await;
    assert_eq!(r.suggested_k, 5);
    assert_eq!(dropped_by(&r, 2), Some(pb::DropRule::Overload));
    // Engaging again: not skimming any more.
    let taps: Vec<pb::Event> = (0..3)
        .map(|i| at("ov", pb::EventType::Click, now, 900 + i, 9))
        .collect();
    record(&server, taps).await;
    let r = server.rank(rank_at("ov", list, now)).await;
    assert_eq!(r.suggested_k, 10);
    assert!(position(&r, 2).is_some());
    server.stop().await;
}

fn phone_shop() -> Vec<pb::Candidate> {
    vec![
        pb::Candidate {
            price: 899.0,
            ..candidate(1, 0.95, PHONES, 100) // the phone just bought, cheaper now
        },
        candidate(2, 0.9, PHONES, 101), // a rival phone
        candidate(3, 0.8, PHONES, 102), // another
        candidate(4, 0.5, CASES, 103),
        candidate(5, 0.45, CHARGERS, 104),
        candidate(6, 0.55, 20, 105), // unrelated
    ]
}

#[tokio::test]
async fn after_buying_a_phone_no_phones_for_two_weeks_and_cases_first() {
    let server = TestServer::start(with_policy(
        r#"
        [cooling_off]
        cycles = [{ category_id = 12, days = 14 }]
        [complements]
        graph = [{ category_id = 12, complements = [13, 14] }]
        "#,
    ))
    .await;
    let now = now_ms();
    let mut buy = at("ph", pb::EventType::Purchase, now, 1, PHONES);
    buy.price = 999.0;
    buy.title = "Pixel 9".into();
    record(&server, vec![buy]).await;

    for day in [0, 3, 13] {
        let r = server
            .rank(rank_at("ph", phone_shop(), now + day * DAY))
            .await;
        let shown = ids(&r);
        assert!(
            !shown.contains(&1) && !shown.contains(&2) && !shown.contains(&3),
            "day {day}: {shown:?}"
        );
        assert_eq!(dropped_by(&r, 2), Some(pb::DropRule::CoolingOff));
        assert_eq!(shown[0], 4, "day {day}: the case comes first: {shown:?}");
        assert_eq!(
            r.items[0].reason.as_ref().unwrap().text,
            "Goes with your new Pixel 9"
        );
        assert_eq!(
            r.items[0].reason.as_ref().unwrap().code(),
            pb::ReasonCode::Complement
        );
    }
    let r = server
        .rank(rank_at("ph", phone_shop(), now + 15 * DAY))
        .await;
    let shown = ids(&r);
    assert!(
        shown.contains(&2) && shown.contains(&3),
        "phones return: {shown:?}"
    );
    assert!(
        !shown.contains(&1),
        "still no price drop of the phone just bought"
    );
    let r = server
        .rank(rank_at("ph", phone_shop(), now + 31 * DAY))
        .await;
    assert!(ids(&r).contains(&1), "after the price-protection month");

    let profile = server.get_profile("ph").await;
    assert_eq!(profile.cooling_off.len(), 1);
    let w = &profile.cooling_off[0];
    assert_eq!(
        (w.item_id, w.category_id, w.title.as_str()),
        (1, PHONES, "Pixel 9")
    );
    assert_eq!(w.substitutes_until_ms, now + 14 * DAY);
    assert!(server.engine.avoidance().dropped_by(DropRule::CoolingOff) >= 3);
    server.stop().await;
}

fn with_evidence(mut c: pb::Candidate, dims: &[pb::DataDimension]) -> pb::Candidate {
    c.evidence = dims.iter().map(|d| *d as i32).collect();
    c
}

#[tokio::test]
async fn consent_decides_what_data_is_used_and_cited() {
    use pb::DataDimension as D;
    let server = TestServer::start(with_policy("[consent]\nsensitive_categories = [40]")).await;
    let list = vec![
        with_evidence(candidate(1, 0.9, 1, 100), &[D::Browsing]),
        with_evidence(candidate(2, 0.8, 2, 101), &[D::Browsing, D::Favorites]),
        with_evidence(candidate(3, 0.7, 3, 102), &[D::Trending]),
        with_evidence(candidate(4, 0.6, 40, 103), &[D::Trending]), // a health item
    ];
    let mut profile = server.profile().await;
    let before = server.rank(request("cs", list.clone())).await;
    assert_eq!(ids(&before), vec![1, 2, 3]);
    profile
        .set_consent(pb::SetConsentRequest {
            user_id: "cs".into(),
            dimensions: vec![pb::DimensionConsent {
                dimension: D::Browsing.into(),
                granted: false,
            }],
            sensitive_categories: vec![pb::SensitiveConsent {
                category_id: 40,
                granted: true,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let r = server
        .rank(pb::RankRequest {
            explain: true,
            ..request("cs", list)
        })
        .await;
    assert_eq!(dropped_by(&r, 1), Some(pb::DropRule::Consent));
    assert!(ids(&r).contains(&4), "opted in to the sensitive category");
    let mixed = r.items.iter().find(|i| i.item_id == 2).unwrap();
    let discount = mixed
        .breakdown
        .iter()
        .find(|b| b.name == "consent_discount");
    assert!(
        discount.is_some_and(|b| b.value < 0.0),
        "{:?}",
        mixed.breakdown
    );
    for item in &r.items {
        let reason = item.reason.as_ref().unwrap();
        assert!(
            !reason.dimensions.contains(&(D::Browsing as i32)),
            "{reason:?}"
        );
        assert!(!reason.text.contains("browsing"), "{reason:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn what_followed_the_user_from_another_app_waits_a_day() {
    use pb::DataDimension as D;
    let server = TestServer::start(Config::default()).await;
    let now = now_ms();
    server
        .profile()
        .await
        .set_consent(pb::SetConsentRequest {
            user_id: "xp".into(),
            dimensions: vec![pb::DimensionConsent {
                dimension: D::CrossPlatform.into(),
                granted: true,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = at("xp", pb::EventType::Click, now - HOUR, 1, 1);
    seen.source = D::CrossPlatform.into();
    record(&server, vec![seen]).await;
    let list = vec![
        with_evidence(candidate(1, 0.9, 1, 100), &[D::CrossPlatform]),
        with_evidence(candidate(2, 0.85, 2, 101), &[D::Browsing]),
        with_evidence(candidate(3, 0.0, 3, 102), &[D::Trending]),
    ];
    let soon = server.rank(rank_at("xp", list.clone(), now)).await;
    assert_eq!(ids(&soon)[..2], [2, 1], "too soon: it sinks");
    let later = server.rank(rank_at("xp", list, now + DAY)).await;
    assert_eq!(ids(&later)[..2], [1, 2]);
    server.stop().await;
}

#[tokio::test]
async fn with_personalisation_off_the_user_gets_a_strangers_ranking_minus_their_blocks() {
    let server = TestServer::start(Config::default()).await;
    let now = now_ms();
    let mut history: Vec<pb::Event> = (0..5)
        .map(|i| at("po", pb::EventType::Impression, now - 2 * HOUR + i, 1, 2))
        .collect();
    history.push(at("po", pb::EventType::Purchase, now - HOUR, 2, 3));
    let mut block = event("po", pb::EventType::BlockBrand);
    block.brand_id = 103;
    history.push(block.clone());
    record(&server, history).await;
    let mut stranger_block = block;
    stranger_block.user_id = "stranger".into();
    record(&server, vec![stranger_block]).await;

    let mut list = catalogue();
    for (i, c) in list.iter_mut().enumerate() {
        c.popularity = (i * 7 % 10) as f32;
    }
    let off = |user: &str| pb::RankRequest {
        consent: Some(pb::ConsentOverride {
            personalization_off: true,
            ..Default::default()
        }),
        ..rank_at(user, list.clone(), now)
    };
    let mine = server.rank(off("po")).await;
    let theirs = server.rank(off("stranger")).await;
    assert_eq!(mine.items, theirs.items);
    assert_eq!(mine.suggested_k, theirs.suggested_k);
    assert!(
        !ids(&mine).contains(&3) && !ids(&mine).contains(&8),
        "the block holds"
    );
    assert_eq!(mine.lifecycle_stage(), pb::LifecycleStage::Unspecified);
    server.stop().await;
}

#[tokio::test]
async fn undo_takes_back_a_block_and_a_fewer_like_this() {
    let server = TestServer::start(Config::default()).await;
    let mut block = event("ud", pb::EventType::BlockBrand);
    block.brand_id = 103;
    let mut fewer = event("ud", pb::EventType::FewerLikeThis);
    fewer.category_id = 2;
    record(&server, vec![block, fewer]).await;
    let r = server.rank(request("ud", catalogue())).await;
    assert!(!ids(&r).contains(&3));
    let profile = server.get_profile("ud").await;
    assert_eq!(profile.muted_categories.len(), 1);

    let mut client = server.profile().await;
    for (kind, id) in [
        (pb::UndoKind::BlockBrand, 103),
        (pb::UndoKind::FewerLikeThisCategory, 2),
    ] {
        client
            .undo(pb::UndoRequest {
                user_id: "ud".into(),
                kind: kind.into(),
                id,
            })
            .await
            .unwrap();
    }
    let after = server.rank(request("ud", catalogue())).await;
    assert_eq!(
        ids(&after),
        ids(&server.rank(request("nobody", catalogue())).await)
    );
    let profile = server.get_profile("ud").await;
    assert!(profile.blocked_brands.is_empty() && profile.muted_categories.is_empty());
    let err = client
        .undo(pb::UndoRequest {
            user_id: "ud".into(),
            kind: pb::UndoKind::BlockBrand.into(),
            id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn interest_tags_lift_what_the_user_cares_about_and_stay_under_their_control() {
    let server = TestServer::start(Config::default()).await;
    let mut client = server.profile().await;
    let update = |id: u64, weight: f32, label: Option<&str>| pb::UpdateInterestsRequest {
        user_id: "it".into(),
        updates: vec![pb::InterestUpdate {
            kind: pb::TagKind::Category.into(),
            id,
            weight,
            label: label.map(str::to_owned),
        }],
    };
    // Category 5 holds items 4 and 9, low in the upstream order.
    let profile = client
        .update_interests(update(5, 1.0, Some("tea")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.interests.len(), 1);
    assert_eq!(profile.interests[0].source(), pb::TagSource::User);
    let r = server.rank(request("it", catalogue())).await;
    let before = server.rank(request("nobody", catalogue())).await;
    assert!(
        position(&r, 4) < position(&before, 4),
        "{:?} vs {:?}",
        ids(&r),
        ids(&before)
    );
    let tea = r.items.iter().find(|i| i.item_id == 4).unwrap();
    assert_eq!(
        tea.reason.as_ref().unwrap().text,
        "Matches your interest in tea"
    );
    client.update_interests(update(5, 0.0, None)).await.unwrap();
    assert_eq!(
        ids(&server.rank(request("it", catalogue())).await),
        ids(&before)
    );

    // Learned from clicks: shown with where it came from; removed, it stays removed.
    let now = now_ms();
    let clicks: Vec<pb::Event> = (0..3)
        .map(|i| at("it", pb::EventType::Click, now - i, 50 + i as u64, 3))
        .collect();
    record(&server, clicks).await;
    let profile = server.get_profile("it").await;
    let learned = profile.interests.iter().find(|t| t.id == 3).unwrap();
    assert_eq!(learned.source(), pb::TagSource::Learned);
    assert_eq!(
        learned.learned_from,
        vec![pb::DataDimension::Browsing as i32]
    );
    client.update_interests(update(3, 0.0, None)).await.unwrap();
    record(&server, vec![at("it", pb::EventType::Click, now, 60, 3)]).await;
    assert!(server.get_profile("it").await.interests.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_returning_user_gets_a_short_list_and_a_new_user_popular_items() {
    let server = TestServer::start(Config::default()).await;
    let now = now_ms();
    let many: Vec<pb::Candidate> = (1..=40)
        .map(|i| pb::Candidate {
            popularity: if i == 30 { 1000.0 } else { 1.0 },
            ..candidate(i, 1.0 - i as f32 * 0.01, i % 7 + 1, i % 9 + 100)
        })
        .collect();
    record(
        &server,
        vec![at("lc", pb::EventType::Click, now - 200 * DAY, 1, 1)],
    )
    .await;
    let back = server.rank(rank_at("lc", many.clone(), now)).await;
    assert_eq!(back.lifecycle_stage(), pb::LifecycleStage::Churned);
    assert_eq!(
        back.items.len(),
        40,
        "the list itself is the caller's to cut"
    );
    assert!(back.suggested_k <= 10, "{}", back.suggested_k);

    let newcomer = server.rank(rank_at("fresh", many.clone(), now)).await;
    let stranger_no_pop = server
        .rank(pb::RankRequest {
            policy: "identity".into(),
            ..rank_at("fresh", many, now)
        })
        .await;
    assert_eq!(newcomer.lifecycle_stage(), pb::LifecycleStage::New);
    assert!(position(&newcomer, 30).unwrap() < position(&stranger_no_pop, 30).unwrap());
    server.stop().await;
}

#[tokio::test]
async fn an_evening_rule_lifts_its_category_in_the_users_local_evening() {
    let server = TestServer::start(with_policy(
        "[context]\nrules = [{ categories = [5], boost = 0.5, hours = [18, 23] }]",
    ))
    .await;
    // 20:00 in Shanghai (UTC+8) on 2026-11-23 is 12:00 UTC.
    let noon_utc = 1_795_435_200_000; // 2026-11-23T12:00:00Z
    let ask = |offset: i32| pb::RankRequest {
        context: Some(pb::Context {
            now_ms: noon_utc,
            utc_offset_minutes: offset,
            ..Default::default()
        }),
        ..request("ev", catalogue())
    };
    let evening = server.rank(ask(480)).await;
    let noon = server.rank(ask(0)).await;
    assert!(position(&evening, 4) < position(&noon, 4));
    let item = evening.items.iter().find(|i| i.item_id == 4).unwrap();
    assert_eq!(
        item.reason.as_ref().unwrap().code(),
        pb::ReasonCode::Context
    );
    server.stop().await;
}

#[tokio::test]
async fn the_profile_shows_what_was_used_and_the_engine_counts_each_rule() {
    use pb::DataDimension as D;
    let server = TestServer::start(Config::default()).await;
    record(&server, vec![at("pu", pb::EventType::Click, 0, 1, 2)]).await;
    let list = vec![with_evidence(candidate(1, 0.9, 1, 100), &[D::Favorites])];
    server.rank(request("pu", list)).await;
    let profile = server.get_profile("pu").await;
    assert_eq!(profile.used_recently, vec![D::Favorites as i32]);

    let mut e = event("pu", pb::EventType::NotInterested);
    e.item_id = 2;
    record(&server, vec![e]).await;
    let before = server
        .engine
        .avoidance()
        .dropped_by(DropRule::NotInterested);
    server.rank(request("pu", catalogue())).await;
    assert_eq!(
        server
            .engine
            .avoidance()
            .dropped_by(DropRule::NotInterested),
        before + 1
    );
    server.stop().await;
}
