//! The item catalog over the real server. Properties checked:
//! 1. After an Upsert, a Rank whose candidates carry ids and scores only returns the same
//!    ranking (ids, scores, reasons) as the same request with every attribute and embedding
//!    inline.
//! 2. What the request carries wins over the catalog, field by field: a blocked brand in the
//!    catalog drops the item, the request's own brand keeps it.
//! 3. Unknown ids are ranked with what the request has, with no error, and counted as misses
//!    next to the hits in `/metrics` (with items, bytes and upserts by outcome).
//! 4. A bad item gets INVALID_ARGUMENT naming its index and field, and nothing of its stream
//!    is applied; a stream past `catalog.max_items` gets RESOURCE_EXHAUSTED naming the
//!    setting and changes nothing, and tombstones make room.
//! 5. The catalog's complement categories of an item bought boost candidates of those
//!    categories ("goes with your new …"), and its titles name anchors.
//! 6. A purchase event with only the item id starts the cooling-off of the item's category
//!    from the catalog, and ids-only substitutes are held back.
//! 7. With tokens configured, Upsert needs one; health reports the Catalog service.
//! 8. `tactful serve` loads the start-up file before opening its port, and a bad file stops
//!    it with exit code 64 naming the line; `tactful catalog upsert FILE` uploads a file
//!    and names the file's line of an item the server refuses.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tactful::config::{Config, Secret};
use tactful::pb;
use tonic::Code;

/// Catalog items for [`catalogue`]'s candidates, each with a 4-dim embedding.
fn items() -> Vec<pb::CatalogItem> {
    catalogue()
        .into_iter()
        .map(|c| pb::CatalogItem {
            item_id: c.item_id,
            category_id: c.category_id,
            brand_id: c.brand_id,
            shop_id: c.shop_id,
            price: 10.0 * c.item_id as f32,
            popularity: (c.item_id % 4) as f32,
            embedding: embedding(c.item_id),
            embedding_f32le: Vec::new(),
            title: c.title,
            complement_categories: Vec::new(),
            deleted: false,
        })
        .collect()
}

fn embedding(item_id: u64) -> Vec<f32> {
    let mut e = vec![0.1; 4];
    e[(item_id % 4) as usize] = 1.0;
    e
}

/// [`catalogue`] with every attribute and embedding of [`items`] inline.
fn inline_candidates() -> Vec<pb::Candidate> {
    catalogue()
        .into_iter()
        .zip(items())
        .map(|(c, item)| pb::Candidate {
            price: item.price,
            popularity: item.popularity,
            embedding: item.embedding,
            ..c
        })
        .collect()
}

/// [`catalogue`]'s ids and scores only.
fn bare_candidates() -> Vec<pb::Candidate> {
    catalogue()
        .into_iter()
        .map(|c| pb::Candidate {
            item_id: c.item_id,
            score: c.score,
            ..Default::default()
        })
        .collect()
}

fn with_catalog(dim: usize, max_items: usize) -> Config {
    let mut config = Config::default();
    config.catalog.dim = dim;
    config.catalog.max_items = max_items;
    config
}

async fn upsert(
    server: &TestServer,
    items: Vec<pb::CatalogItem>,
) -> Result<pb::UpsertResponse, tonic::Status> {
    upsert_with(server, items, None).await
}

async fn upsert_with(
    server: &TestServer,
    items: Vec<pb::CatalogItem>,
    token: Option<&str>,
) -> Result<pb::UpsertResponse, tonic::Status> {
    let mut request = tonic::Request::new(tokio_stream::iter(items));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    pb::catalog_client::CatalogClient::new(server.channel().await)
        .upsert(request)
        .await
        .map(tonic::Response::into_inner)
}

fn ranked(r: &pb::RankResponse) -> Vec<(u64, f32, String)> {
    r.items
        .iter()
        .map(|i| (i.item_id, i.score, i.reason.clone().unwrap().text))
        .collect()
}

#[tokio::test]
async fn ids_and_scores_rank_as_the_same_request_with_everything_inline() {
    let server = TestServer::start(with_catalog(4, 100)).await;
    let r = upsert(&server, items()).await.unwrap();
    assert_eq!((r.upserted, r.deleted, r.items), (10, 0, 10));
    for policy in ["", "identity"] {
        for k in [0, 5] {
            let ask = |candidates| pb::RankRequest {
                k,
                policy: policy.into(),
                explain: true,
                ..request("ana", candidates)
            };
            let inline = server.rank(ask(inline_candidates())).await;
            let bare = server.rank(ask(bare_candidates())).await;
            assert!(!inline.items.is_empty());
            assert_eq!(ranked(&bare), ranked(&inline), "policy {policy:?}, k {k}");
            let breakdown = |r: &pb::RankResponse| -> Vec<Vec<pb::ScoreComponent>> {
                r.items.iter().map(|i| i.breakdown.clone()).collect()
            };
            assert_eq!(breakdown(&bare), breakdown(&inline));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_request_wins_field_by_field_and_unknown_ids_are_ranked() {
    let server = TestServer::with_admin(with_catalog(4, 100), Vec::new()).await;
    upsert(&server, items()).await.unwrap();
    // Item 3's brand in the catalog is 103 (3 % 5 + 100): blocked.
    let mut block = event("bo", pb::EventType::BlockBrand);
    block.brand_id = 103;
    server
        .events()
        .await
        .record(pb::RecordRequest {
            events: vec![block],
        })
        .await
        .unwrap();
    let r = server.rank(request("bo", bare_candidates())).await;
    assert!(!ids(&r).contains(&3), "the catalog's brand is blocked");
    let mut own = bare_candidates();
    own[2].brand_id = 200;
    let r = server.rank(request("bo", own)).await;
    assert!(ids(&r).contains(&3), "the request's own brand wins");

    // Ids the catalog does not hold are ranked with what the request has.
    let mut mixed = bare_candidates();
    mixed.extend((50..55).map(|i| pb::Candidate {
        item_id: i,
        score: 0.99,
        category_id: 40,
        ..Default::default()
    }));
    let mut req = request("ana", mixed);
    req.strict = true;
    let r = server.rank(req).await;
    assert_eq!(r.items.len(), 15);
    assert!(!r.degraded);

    let admin = server.admin.unwrap();
    let (_, page) = http_get(admin, "/metrics").await;
    let get = |s: &str| metric(&page, s).unwrap_or_else(|| panic!("{s} missing:\n{page}"));
    assert_eq!(get("tactful_catalog_items"), 10.0);
    assert_eq!(get("tactful_catalog_max_items"), 100.0);
    assert!(get("tactful_catalog_bytes") >= 10.0 * 16.0);
    assert_eq!(
        get(r#"tactful_catalog_upserts_total{outcome="upserted"}"#),
        10.0
    );
    assert_eq!(
        get(r#"tactful_catalog_upserts_total{outcome="rejected"}"#),
        0.0
    );
    assert_eq!(get(r#"tactful_catalog_lookups_total{outcome="hit"}"#), 30.0);
    assert_eq!(get(r#"tactful_catalog_lookups_total{outcome="miss"}"#), 5.0);
    // The five unknown items had no embedding: that request ranked without any.
    assert_eq!(get("tactful_catalog_partial_embeddings_total"), 1.0);
    assert_eq!(
        get(r#"tactful_grpc_requests_total{method="tactful.v1.Catalog/Upsert",outcome="ok"}"#),
        1.0
    );
    server.stop().await;
}

/// The message of a refused call, checked to have `code`.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> String {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    status.message().to_owned()
}

#[tokio::test]
async fn bad_items_are_named_and_nothing_of_their_stream_is_applied() {
    let server = TestServer::start(with_catalog(4, 100)).await;
    let good = items();
    let bad = |i: usize, spoil: fn(&mut pb::CatalogItem)| {
        let mut stream = good.clone();
        spoil(&mut stream[i]);
        stream
    };
    let cases: [(Vec<pb::CatalogItem>, &str); 7] = [
        (bad(0, |x| x.item_id = 0), "items[0].item_id: is required"),
        (
            bad(3, |x| x.price = f32::NAN),
            "items[3].price: must be a finite",
        ),
        (
            bad(4, |x| x.popularity = -1.0),
            "items[4].popularity: must be a finite",
        ),
        (
            bad(5, |x| x.embedding.push(1.0)),
            "items[5].embedding: has 5 values, the catalog holds embeddings of 4 (catalog.dim)",
        ),
        (
            bad(6, |x| x.embedding[2] = f32::INFINITY),
            "items[6].embedding[2]: must be a finite number",
        ),
        (
            bad(7, |x| x.title = "t".repeat(201)),
            "items[7].title: is 201 bytes",
        ),
        (
            bad(9, |x| x.complement_categories = vec![13, 0]),
            "items[9].complement_categories[1]",
        ),
    ];
    for (stream, says) in cases {
        let message = refused(upsert(&server, stream).await, Code::InvalidArgument);
        assert!(message.starts_with(says), "{message}");
        assert!(
            message.contains("nothing of this stream was applied"),
            "{message}"
        );
        assert!(server.catalog.is_empty(), "{says}: half-applied");
    }
    assert_eq!(server.catalog.stats().rejected, 1 + 4 + 5 + 6 + 7 + 8 + 10);
    server.stop().await;
}

#[tokio::test]
async fn the_item_limit_refuses_a_stream_whole_and_tombstones_make_room() {
    let server = TestServer::start(with_catalog(4, 8)).await;
    let all = items();
    upsert(&server, all[..6].to_vec()).await.unwrap();
    let message = refused(
        upsert(&server, all[4..].to_vec()).await,
        Code::ResourceExhausted,
    );
    assert!(
        message.starts_with(
            "catalog.max_items: this change would leave 10 items in the catalog, the limit is 8"
        ),
        "{message}"
    );
    assert_eq!(server.catalog.len(), 6, "nothing was applied");
    assert!(server.catalog.get(7).is_none());
    let mut stream: Vec<pb::CatalogItem> = [1, 2]
        .map(|item_id| pb::CatalogItem {
            item_id,
            deleted: true,
            ..Default::default()
        })
        .to_vec();
    stream.extend(all[4..].iter().cloned());
    let r = upsert(&server, stream).await.unwrap();
    assert_eq!((r.upserted, r.deleted, r.items), (6, 2, 8));
    // One stream may not carry more items than the catalog can hold.
    let message = refused(
        upsert(&server, [all.clone(), all].concat()).await,
        Code::InvalidArgument,
    );
    assert!(
        message.starts_with("items: a stream carries at most catalog.max_items (8)"),
        "{message}"
    );
    assert_eq!(server.catalog.len(), 8);
    server.stop().await;
}

#[tokio::test]
async fn complements_and_anchor_titles_come_from_the_catalog() {
    let server = TestServer::start(with_catalog(0, 100)).await;
    let phone = pb::CatalogItem {
        item_id: 900,
        category_id: 12,
        title: "Nova X phone".into(),
        complement_categories: vec![13],
        ..Default::default()
    };
    let case = pb::CatalogItem {
        item_id: 901,
        category_id: 13,
        ..Default::default()
    };
    let sofa = pb::CatalogItem {
        item_id: 902,
        category_id: 40,
        ..Default::default()
    };
    upsert(&server, vec![phone, case, sofa]).await.unwrap();
    // The purchase carries the item id only (its title too comes from the catalog); the
    // default policy has no complement graph.
    let mut buy = event("cy", pb::EventType::Purchase);
    buy.item_id = 900;
    server
        .events()
        .await
        .record(pb::RecordRequest { events: vec![buy] })
        .await
        .unwrap();
    let candidates = vec![
        pb::Candidate {
            item_id: 902,
            score: 0.9,
            ..Default::default()
        },
        pb::Candidate {
            item_id: 901,
            score: 0.85,
            ..Default::default()
        },
        pb::Candidate {
            item_id: 903,
            score: 0.1,
            ..Default::default()
        },
    ];
    let r = server.rank(request("cy", candidates)).await;
    assert_eq!(ids(&r), [901, 902, 903], "the case moves up");
    let reason = r.items[0].reason.clone().unwrap();
    assert_eq!(reason.code(), pb::ReasonCode::Complement);
    assert_eq!(reason.text, "Goes with your new Nova X phone");

    // An anchor given by id is named by the catalog's title.
    let anchored = pb::Candidate {
        item_id: 901,
        score: 0.5,
        anchor_item_id: 900,
        evidence: vec![pb::DataDimension::Favorites as i32],
        ..Default::default()
    };
    let r = server.rank(request("dee", vec![anchored])).await;
    assert_eq!(
        r.items[0].reason.clone().unwrap().text,
        "Because you favourited Nova X phone"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_ids_only_purchase_starts_cooling_off_from_the_catalog() {
    let mut config = with_catalog(0, 100);
    let policy: tactful::rank::Policy =
        toml::from_str("[cooling_off]\ncycles = [{ category_id = 12, days = 14 }]").unwrap();
    config.policies.insert("default".into(), policy);
    let server = TestServer::start(config).await;
    let phone = |item_id| pb::CatalogItem {
        item_id,
        category_id: 12,
        price: 699.0,
        ..Default::default()
    };
    let case = pb::CatalogItem {
        item_id: 901,
        category_id: 13,
        ..Default::default()
    };
    upsert(&server, vec![phone(900), phone(904), case])
        .await
        .unwrap();
    let bare = |item_id, score| pb::Candidate {
        item_id,
        score,
        ..Default::default()
    };
    let before = server
        .rank(request("eve", vec![bare(904, 0.9), bare(901, 0.5)]))
        .await;
    assert_eq!(ids(&before), [904, 901]);
    let mut buy = event("eve", pb::EventType::Purchase);
    buy.item_id = 900;
    server
        .events()
        .await
        .record(pb::RecordRequest { events: vec![buy] })
        .await
        .unwrap();
    let mut after = request("eve", vec![bare(904, 0.9), bare(901, 0.5)]);
    after.explain = true;
    let after = server.rank(after).await;
    assert_eq!(ids(&after), [901], "the rival phone rests");
    assert_eq!(after.dropped[0].rule(), pb::DropRule::CoolingOff);
    let profile = server.get_profile("eve").await;
    assert_eq!(profile.cooling_off[0].category_id, 12);
    server.stop().await;
}

const TOKEN: &str = "catalog-0123456789abcdef";

#[tokio::test]
async fn upsert_needs_a_token_when_auth_is_on_and_health_reports_the_service() {
    let mut config = with_catalog(4, 100);
    config.auth.env_tokens = Some(Secret(format!("feeder:{TOKEN}")));
    let server = TestServer::start(config).await;
    for token in [None, Some("wrong-0123456789abcdef")] {
        let code = upsert_with(&server, items(), token)
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, Code::Unauthenticated, "{token:?}");
    }
    assert!(server.catalog.is_empty());
    let r = upsert_with(&server, items(), Some(TOKEN)).await.unwrap();
    assert_eq!(r.items, 10);

    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tactful.v1.Catalog".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    server.stop().await;
}

/// A JSON-lines file of [`items`], in protobuf's JSON form (ids as strings, camelCase names on
/// every other line, as protobuf's own printers and hand-written files would have them).
fn jsonl(items: &[pb::CatalogItem]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let (id, category) = if i % 2 == 0 {
                ("item_id", "category_id")
            } else {
                ("itemId", "categoryId")
            };
            format!(
                "{{\"{id}\": \"{}\", \"{category}\": {}, \"brand_id\": {}, \"shop_id\": {}, \
                 \"price\": {}, \"popularity\": {}, \"embedding\": {:?}, \"title\": {:?}}}\n",
                x.item_id,
                x.category_id,
                x.brand_id,
                x.shop_id,
                x.price,
                x.popularity,
                x.embedding,
                x.title
            )
        })
        .collect()
}

#[tokio::test]
async fn a_start_up_file_fills_the_catalog_before_the_first_rank() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.jsonl");
    std::fs::write(&path, jsonl(&items())).unwrap();
    let mut config = with_catalog(4, 100);
    config.catalog.path = Some(path);
    let server = TestServer::start(config).await;
    assert_eq!(server.catalog.len(), 10);
    let inline = server.rank(request("ana", inline_candidates())).await;
    let bare = server.rank(request("ana", bare_candidates())).await;
    assert_eq!(ranked(&bare), ranked(&inline));
    server.stop().await;
}

/// Runs `tactful` with `args` and the environment `env`; its exit code and stderr, or a
/// failure if it runs for more than 30 s.
fn run_tactful(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tactful"));
    command
        .args(args)
        .env_remove("TACTFUL_CONFIG")
        .env_remove("TACTFUL_CATALOG_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tactful {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its output is small: the pipes did not fill while it ran.
    let output = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    (output.status.code(), text)
}

/// `tactful_catalog_items` once it shows `expected` (the server announces its port a moment
/// before its metrics cover the engine), or after two seconds whatever it shows.
fn catalog_items(admin: std::net::SocketAddr, expected: f64) -> f64 {
    let started = std::time::Instant::now();
    loop {
        let (_, page) = http_get_blocking(admin, "/metrics");
        let items = metric(&page, "tactful_catalog_items").unwrap_or(-1.0);
        if items == expected || started.elapsed() > Duration::from_secs(2) {
            return items;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tactful_serve_loads_the_file_and_a_bad_one_stops_it_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("items.jsonl");
    std::fs::write(&good, jsonl(&items())).unwrap();
    let config = dir.path().join("tactful.toml");
    std::fs::write(
        &config,
        format!(
            "[catalog]\ndim = 4\nmax_items = 100\npath = {:?}\n",
            good.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config_arg = config.display().to_string();
    let (child, url, _drain, admin) = spawn_server(&data, &["--config", &config_arg]);
    let _child = KillOnDrop(child);
    assert_eq!(catalog_items(admin, 10.0), 10.0);

    // The client uploads a file and names the line of an item the server refuses.
    let more = dir.path().join("more.jsonl");
    let mut extra = items();
    for x in &mut extra {
        x.item_id += 100;
    }
    let mut text = jsonl(&extra);
    text.push_str("\n{\"item_id\": 1, \"deleted\": true}\n");
    std::fs::write(&more, &text).unwrap();
    let more_arg = more.display().to_string();
    let (code, out) = run_tactful(&["catalog", "upsert", "--addr", &url, &more_arg], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("upserted 10 item(s), deleted 1") && out.contains("holds 19 item(s)"),
        "{out}"
    );
    let broken = dir.path().join("broken.jsonl");
    let mut text = jsonl(&items()[..3]);
    text.push_str("{\"item_id\": 7, \"embedding\": [1, 2]}\n");
    std::fs::write(&broken, text).unwrap();
    let broken_arg = broken.display().to_string();
    let (code, out) = run_tactful(&["catalog", "upsert", "--addr", &url, &broken_arg], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("broken.jsonl line 4: items[3].embedding: has 2 values"),
        "{out}"
    );
    std::fs::write(&broken, "{\"item_id\": 7}\n{\"item_id\": 8,}\n").unwrap();
    let (code, out) = run_tactful(&["catalog", "upsert", "--addr", &url, &broken_arg], &[]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("broken.jsonl line 2: "), "{out}");
    assert_eq!(catalog_items(admin, 19.0), 19.0);

    // A bad start-up file: exit code 64, naming the file and the line, before any port opens.
    let mut text = jsonl(&items());
    text.insert(0, '\n');
    text.push_str("{\"item_id\": 11, \"price\": -1}\n");
    std::fs::write(&good, text).unwrap();
    // A directory of its own: the running server owns `data`.
    let data_arg = dir.path().join("data-2").display().to_string();
    let (code, out) = run_tactful(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--config",
            &config_arg,
            "--data-dir",
            &data_arg,
        ],
        &[],
    );
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("configuration error: catalog.path: ")
            && out.contains("items.jsonl line 12: price: must be a finite number >= 0"),
        "{out}"
    );
    // `config check` finds it too, and the environment points at the file as well.
    let (code, out) = run_tactful(&["config", "check", &config_arg], &[]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("items.jsonl line 12"), "{out}");
    let mut file = std::fs::File::create(&good).unwrap();
    file.write_all(jsonl(&items()).as_bytes()).unwrap();
    let (code, out) = run_tactful(
        &["config", "check", &config_arg],
        &[("TACTFUL_CATALOG_DIM", "3")],
    );
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("line 1: embedding: has 4 values"), "{out}");
    let (code, out) = run_tactful(&["config", "check", &config_arg], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("10 items, all valid"), "{out}");
}
