//! Request decoding and validation over arbitrary input (property 7, proptest): arbitrary
//! bytes as each request message, and structured requests with hostile values (NaN, infinities,
//! extremes, huge strings, duplicate ids), never panic; what validation accepts stays within
//! the limits. `PROPTEST_CASES` sets the count (256 here; `scripts/fuzz.sh` runs far more).

use proptest::prelude::*;
use prost::Message;
use tactful::catalog::Catalog;
use tactful::config::Config;
use tactful::grpc::convert;
use tactful::pb;

const NOW: i64 = 1_790_000_000_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Every request message a client sends, decoded from `bytes` and validated as the handlers
/// do: an error is fine, a panic is not.
fn decode_and_validate(bytes: &[u8], catalog: &Catalog) {
    let limits = Config::default().limits;
    if let Ok(req) = pb::RankRequest::decode(bytes) {
        let _ = convert::shown_to_record(&req);
        if let Ok(call) = convert::rank_call_with_catalog(req, &limits, Some(catalog), NOW, None) {
            assert!(call.input.candidates.len() <= limits.max_candidates);
        }
    }
    if let Ok(e) = pb::Event::decode(bytes) {
        let _ = convert::event(&e, NOW, &limits);
    }
    if let Ok(r) = pb::RecordRequest::decode(bytes) {
        for e in &r.events {
            let _ = convert::event(e, NOW, &limits);
        }
    }
    if let Ok(item) = pb::CatalogItem::decode(bytes)
        && let Ok(fields) = convert::catalog_item(item)
    {
        let _ = catalog.check(fields);
    }
    if let Ok(r) = pb::SetConsentRequest::decode(bytes) {
        let _ = convert::consent_changes(&r);
        let _ = convert::sensitive_changes(&r);
    }
    if let Ok(r) = pb::UpdateInterestsRequest::decode(bytes) {
        let _ = convert::interest_changes(r);
    }
    if let Ok(r) = pb::UndoRequest::decode(bytes) {
        let _ = convert::undo(&r);
    }
}

fn hostile_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(f32::MAX),
        Just(f32::MIN),
        Just(f32::MIN_POSITIVE),
        Just(-0.0),
        Just(3e38),
        any::<f32>(),
        -2.0f32..2.0,
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}",
        ".{0,40}",
        (0usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

prop_compose! {
    fn candidate()(
        item_id in prop_oneof![Just(0u64), 1u64..50, Just(u64::MAX)],
        score in hostile_f32(),
        category_id in prop_oneof![Just(0u64), 1u64..10, Just(u64::MAX)],
        brand_id in 0u64..5,
        price in hostile_f32(),
        embedding in prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(hostile_f32(), 0..8),
            (0usize..1100).prop_map(|n| vec![0.5; n]),
        ],
        title in hostile_string(),
    ) -> pb::Candidate {
        pb::Candidate {
            item_id,
            score,
            category_id,
            brand_id,
            price,
            embedding,
            title,
            ..Default::default()
        }
    }
}

prop_compose! {
    fn rank_request()(
        user_id in hostile_string(),
        candidates in proptest::collection::vec(candidate(), 0..40),
        k in prop_oneof![Just(0u32), 1u32..50, Just(u32::MAX)],
        policy in prop_oneof![Just(String::new()), Just("default".to_owned()), hostile_string()],
        request_id in hostile_string(),
        shown in prop_oneof![Just(0u32), 1u32..10, Just(u32::MAX)],
        all_shown in any::<bool>(),
        strict in any::<bool>(),
        explain in any::<bool>(),
    ) -> pb::RankRequest {
        pb::RankRequest {
            user_id,
            candidates,
            k,
            policy,
            request_id,
            shown,
            all_shown,
            strict,
            explain,
            ..Default::default()
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_decoding_or_validation(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let (catalog, _) = Catalog::open(&Config::default().catalog).unwrap();
        decode_and_validate(&bytes, &catalog);
    }

    #[test]
    fn hostile_rank_requests_are_refused_or_bounded_never_a_panic(req in rank_request()) {
        let (catalog, _) = Catalog::open(&Config::default().catalog).unwrap();
        decode_and_validate(&req.encode_to_vec(), &catalog);
        // Mutations of a valid encoding: truncated, a byte flipped.
        let bytes = req.encode_to_vec();
        if !bytes.is_empty() {
            decode_and_validate(&bytes[..bytes.len() / 2], &catalog);
            let mut flipped = bytes.clone();
            let i = bytes.len() / 3;
            flipped[i] ^= 0xA5;
            decode_and_validate(&flipped, &catalog);
        }
    }
}
