//! Client subcommands: read a candidates file, call the server, print readable tables.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::Channel;

use super::{
    Command, DiversityMethod, EXIT_UNAVAILABLE, EXIT_USAGE, EventArgs, ProfileCommand, RankArgs,
    Target, table,
};
use crate::grpc::convert::event_type;
use crate::pb;
use crate::rank::DataDimension;

/// One candidate in a candidates file: the `Candidate` message with readable evidence names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateJson {
    item_id: u64,
    score: f32,
    #[serde(default)]
    category_id: u64,
    #[serde(default)]
    brand_id: u64,
    #[serde(default)]
    shop_id: u64,
    #[serde(default)]
    price: f32,
    #[serde(default)]
    popularity: f32,
    #[serde(default)]
    embedding: Vec<f32>,
    #[serde(default)]
    evidence: Vec<DataDimension>,
    #[serde(default)]
    sponsored: bool,
    #[serde(default)]
    title: String,
    #[serde(default)]
    anchor_item_id: u64,
    #[serde(default)]
    anchor_title: String,
    #[serde(default)]
    cross_platform_seen_ms: i64,
}

/// The fields around the candidates in the short form of a candidates file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortHeader {
    #[serde(default)]
    surface: String,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    utc_offset_minutes: i32,
}

/// A candidates file, read: what the request takes from it.
#[derive(Debug)]
struct CandidatesFile {
    surface: String,
    context: pb::Context,
    candidates: Vec<pb::Candidate>,
}

impl From<ShortHeader> for CandidatesFile {
    fn from(h: ShortHeader) -> Self {
        CandidatesFile {
            surface: h.surface,
            context: pb::Context {
                locale: h.locale,
                region: h.region,
                utc_offset_minutes: h.utc_offset_minutes,
                ..Default::default()
            },
            candidates: Vec::new(),
        }
    }
}

/// Reads a candidates file. Two forms, which may be mixed candidate by candidate:
///
/// - the short form: `{"candidates": [...], "surface", "locale", "region",
///   "utc_offset_minutes"}` or a bare list, candidates with proto field names and evidence by
///   short name (`"browsing"`);
/// - the protobuf JSON mapping, as grpcurl and ghz take it: a whole `tactful.v1.RankRequest`
///   (its `userId`, `k`, `policy` and the like give way to the command's flags; its surface and
///   context are used) or a bare list of `tactful.v1.Candidate`, with `itemId` or `item_id`,
///   64-bit integers as numbers or strings, `DATA_DIMENSION_BROWSING`, `embeddingF32le` in
///   base64.
///
/// Errors name the file and, for a candidate, its place and its item id.
fn read_candidates(path: &Path) -> Result<CandidatesFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let (list, header) = match &value {
        serde_json::Value::Array(list) => (list.as_slice(), None),
        serde_json::Value::Object(fields) => {
            let list = fields
                .get("candidates")
                .and_then(|c| c.as_array())
                .ok_or_else(|| format!("{}: no \"candidates\" list", path.display()))?;
            let mut rest = fields.clone();
            rest.remove("candidates");
            (list.as_slice(), Some(serde_json::Value::Object(rest)))
        }
        _ => {
            return Err(format!(
                "{}: expected an object with \"candidates\" or a list of candidates",
                path.display()
            ));
        }
    };
    let short_looking = header.as_ref().is_none_or(|h| !looks_like_protobuf_json(h))
        && !list.iter().any(looks_like_protobuf_json);
    if short_looking {
        // Parsed from the text (not the value) so that errors carry their line and column.
        return read_short_form(path, &text, &value);
    }
    read_general(path, list, header.as_ref())
}

/// Each candidate read in whichever form reads it; the header likewise.
fn read_general(
    path: &Path,
    list: &[serde_json::Value],
    header: Option<&serde_json::Value>,
) -> Result<CandidatesFile, String> {
    let mut file = match header {
        None => CandidatesFile::from(ShortHeader::default()),
        Some(h) => read_header(h).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    for (i, c) in list.iter().enumerate() {
        let candidate = read_candidate(c).map_err(|e| {
            let id = c
                .get("item_id")
                .or_else(|| c.get("itemId"))
                .and_then(|id| id.as_u64().or_else(|| id.as_str()?.parse().ok()));
            match id {
                Some(id) => format!("{}: candidates[{i}] (item_id {id}): {e}", path.display()),
                None => format!("{}: candidates[{i}]: {e}", path.display()),
            }
        })?;
        file.candidates.push(candidate);
    }
    Ok(file)
}

/// Whether a JSON object is written in the protobuf JSON mapping rather than the short form:
/// a lowerCamelCase key, an enum name (`DATA_DIMENSION_…`), an enum number, or a 64-bit id as
/// a string.
fn looks_like_protobuf_json(value: &serde_json::Value) -> bool {
    let Some(fields) = value.as_object() else {
        return false;
    };
    fields.iter().any(|(key, v)| {
        key.chars().any(|c| c.is_ascii_uppercase())
            || [
                "user_id",
                "request_id",
                "context",
                "k",
                "policy",
                "embedding_f32le",
            ]
            .contains(&key.as_str())
            || (key.ends_with("_id") && v.is_string())
            || v.as_array().is_some_and(|items| {
                items.iter().any(|x| {
                    x.is_u64() && key == "evidence"
                        || x.as_str().is_some_and(|s| s.starts_with("DATA_DIMENSION_"))
                })
            })
    })
}

/// The header of a file (everything but its candidates), in either form.
fn read_header(header: &serde_json::Value) -> Result<CandidatesFile, String> {
    if !looks_like_protobuf_json(header)
        && let Ok(short) = serde_json::from_value::<ShortHeader>(header.clone())
    {
        return Ok(short.into());
    }
    let request: pb::RankRequest = super::payload::parse_message("tactful.v1.RankRequest", header)
        .map_err(
            |proto| match serde_json::from_value::<ShortHeader>(header.clone()) {
                Err(short) if !looks_like_protobuf_json(header) => short.to_string(),
                _ => format!("not a tactful.v1.RankRequest in protobuf JSON: {proto}"),
            },
        )?;
    Ok(CandidatesFile {
        surface: request.surface,
        context: request.context.unwrap_or_default(),
        candidates: Vec::new(),
    })
}

/// One candidate, in the form it is written in: the protobuf JSON mapping when it shows a mark
/// of it ([`looks_like_protobuf_json`]), the short form otherwise (which keeps the short form's
/// checks: `score` required, numbers as numbers).
fn read_candidate(c: &serde_json::Value) -> Result<pb::Candidate, String> {
    if looks_like_protobuf_json(c) {
        super::payload::parse_message::<pb::Candidate>("tactful.v1.Candidate", c)
            .map_err(|e| format!("not a tactful.v1.Candidate in protobuf JSON: {e}"))
    } else {
        serde_json::from_value::<CandidateJson>(c.clone())
            .map(to_proto)
            .map_err(|e| e.to_string())
    }
}

/// A file wholly in the short form, read from its text.
fn read_short_form(
    path: &Path,
    text: &str,
    value: &serde_json::Value,
) -> Result<CandidatesFile, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Short {
        #[serde(default)]
        surface: String,
        #[serde(default)]
        locale: String,
        #[serde(default)]
        region: String,
        #[serde(default)]
        utc_offset_minutes: i32,
        candidates: Vec<CandidateJson>,
    }
    let parsed = if value.is_array() {
        serde_json::from_str(text).map(|candidates| Short {
            surface: String::new(),
            locale: String::new(),
            region: String::new(),
            utc_offset_minutes: 0,
            candidates,
        })
    } else {
        serde_json::from_str(text)
    };
    match parsed {
        Ok(short) => {
            let mut file = CandidatesFile::from(ShortHeader {
                surface: short.surface,
                locale: short.locale,
                region: short.region,
                utc_offset_minutes: short.utc_offset_minutes,
            });
            file.candidates = short.candidates.into_iter().map(to_proto).collect();
            Ok(file)
        }
        Err(e) => Err(match candidate_at_fault(value) {
            Some(which) => format!("{}: {which}: {e}", path.display()),
            None => format!("{}: {e}", path.display()),
        }),
    }
}

/// The first candidate of a short-form file that does not parse, named by its place and its
/// item id: `candidates[3] (item_id 7)`.
fn candidate_at_fault(value: &serde_json::Value) -> Option<String> {
    let list = if value.is_array() {
        value.as_array()?
    } else {
        value.get("candidates")?.as_array()?
    };
    list.iter().enumerate().find_map(|(i, c)| {
        serde_json::from_value::<CandidateJson>(c.clone())
            .is_err()
            .then(|| match c.get("item_id").and_then(|id| id.as_u64()) {
                Some(id) => format!("candidates[{i}] (item_id {id})"),
                None => format!("candidates[{i}]"),
            })
    })
}

fn to_proto(c: CandidateJson) -> pb::Candidate {
    pb::Candidate {
        item_id: c.item_id,
        score: c.score,
        category_id: c.category_id,
        brand_id: c.brand_id,
        shop_id: c.shop_id,
        price: c.price,
        popularity: c.popularity,
        embedding: c.embedding,
        embedding_f32le: Vec::new(),
        evidence: c.evidence.iter().map(|d| d.number()).collect(),
        sponsored: c.sponsored,
        title: c.title,
        anchor_item_id: c.anchor_item_id,
        anchor_title: c.anchor_title,
        cross_platform_seen_ms: c.cross_platform_seen_ms,
    }
}

/// A failed client command: what to print and the exit code.
pub struct Failure(pub String, pub u8);

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        // A transport failure (e.g. a TLS alert) says what happened only in its causes.
        let mut causes = String::new();
        let mut source = std::error::Error::source(&s);
        while let Some(cause) = source {
            causes.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Failure(format!("{:?}: {}{causes}", s.code(), s.message()), 1)
    }
}

async fn connect(target: &Target) -> Result<Channel, Failure> {
    target.access.authorization()?;
    let endpoint = target.access.endpoint(&target.addr)?;
    endpoint.connect().await.map_err(|e| {
        Failure(
            format!(
                "cannot reach tactful at {}: {e} (is `tactful serve` running?)",
                target.addr
            ),
            EXIT_UNAVAILABLE,
        )
    })
}

/// `msg` with the call's deadline and, if given, the bearer token.
fn with_timeout<T>(msg: T, target: &Target) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(Duration::from_millis(target.timeout_ms));
    // A token that is not ASCII was refused when the channel was made.
    if let Ok(Some(token)) = target.access.authorization() {
        req.metadata_mut().insert("authorization", token);
    }
    req
}

async fn rank(args: RankArgs) -> Result<(), Failure> {
    let file = read_candidates(&args.candidates).map_err(|e| Failure(e, EXIT_USAGE))?;
    let request = pb::RankRequest {
        user_id: args.user,
        request_id: String::new(),
        surface: args.surface.unwrap_or(file.surface),
        context: Some(pb::Context {
            locale: args.locale.unwrap_or(file.context.locale),
            region: args.region.unwrap_or(file.context.region),
            utc_offset_minutes: args.utc_offset.unwrap_or(file.context.utc_offset_minutes),
            ..file.context
        }),
        candidates: file.candidates,
        k: args.k,
        policy: args.policy,
        explain: args.explain,
        strict: args.strict,
        shown: args.shown,
        all_shown: args.all_shown,
        decoded_rows: Default::default(),
        decoded_evidence: Default::default(),
        consent: Some(pb::ConsentOverride {
            denied: args.deny.iter().map(|d| d.number()).collect(),
            personalization_off: false,
        }),
        diversity: Some(pb::DiversityOptions {
            method: match args.method {
                None => pb::DiversityMethod::Unspecified,
                Some(DiversityMethod::Mmr) => pb::DiversityMethod::Mmr,
                Some(DiversityMethod::Dpp) => pb::DiversityMethod::Dpp,
                Some(DiversityMethod::Score) => pb::DiversityMethod::Score,
            }
            .into(),
            weight: args.diversity_weight,
            exploration_share: args.explore,
            calibration: args.calibration,
            long_tail: args.long_tail,
        }),
    };
    let mut client = pb::ranker_client::RankerClient::new(connect(&args.target).await?);
    let response = client.rank(with_timeout(request, &args.target)).await?;
    print!("{}", table::ranking(&response.into_inner(), args.explain));
    Ok(())
}

async fn event(args: EventArgs) -> Result<(), Failure> {
    let repeat = i64::from(args.repeat.max(1));
    // Repeats are separate showings a second apart, the last at the time asked for: one item
    // reported twice in the same second is one impression.
    let last_ms = crate::time::now_ms() - i64::from(args.ago_minutes) * crate::time::MINUTE_MS;
    let e = pb::Event {
        user_id: args.user,
        at_ms: if args.ago_minutes == 0 && repeat == 1 {
            0
        } else {
            last_ms
        },
        r#type: event_type(args.kind).into(),
        item_id: args.item,
        category_id: args.category,
        brand_id: args.brand,
        shop_id: args.shop,
        price: args.price,
        surface: String::new(),
        source: args.source.map_or(0, |d| d.number()),
        expires_at_ms: 0,
        title: args.title,
    };
    let events = (0..repeat)
        .map(|i| pb::Event {
            at_ms: if e.at_ms == 0 {
                0
            } else {
                e.at_ms - (repeat - 1 - i) * crate::time::SECOND_MS
            },
            ..e.clone()
        })
        .collect();
    let mut client = pb::events_client::EventsClient::new(connect(&args.target).await?);
    let r = client
        .record(with_timeout(pb::RecordRequest { events }, &args.target))
        .await?
        .into_inner();
    if r.rejected_total > 0 {
        let reasons: Vec<String> = r.rejected.iter().map(|x| x.reason.clone()).collect();
        return Err(Failure(
            format!("{} rejected: {}", r.rejected_total, reasons.join("; ")),
            1,
        ));
    }
    println!("recorded {} {} event(s)", r.applied, args.kind.name());
    Ok(())
}

async fn profile(cmd: ProfileCommand) -> Result<(), Failure> {
    let profile = match cmd {
        ProfileCommand::Get { target, user } => {
            let mut client = pb::profile_client::ProfileClient::new(connect(&target).await?);
            let req = pb::GetProfileRequest { user_id: user };
            client.get(with_timeout(req, &target)).await?.into_inner()
        }
        ProfileCommand::Forget { target, user } => {
            let mut client = pb::profile_client::ProfileClient::new(connect(&target).await?);
            let req = pb::ForgetRequest {
                user_id: user.clone(),
            };
            client.forget(with_timeout(req, &target)).await?;
            println!("forgot {user}: nothing about them is held any more");
            return Ok(());
        }
        ProfileCommand::Consent {
            target,
            user,
            grant,
            deny,
            personalization,
            sensitive_opt_in,
            sensitive_opt_out,
        } => {
            let dimensions = grant
                .iter()
                .map(|d| (d, true))
                .chain(deny.iter().map(|d| (d, false)))
                .map(|(d, granted)| pb::DimensionConsent {
                    dimension: d.number(),
                    granted,
                })
                .collect();
            let sensitive_categories = sensitive_opt_in
                .iter()
                .map(|id| (id, true))
                .chain(sensitive_opt_out.iter().map(|id| (id, false)))
                .map(|(&category_id, granted)| pb::SensitiveConsent {
                    category_id,
                    granted,
                })
                .collect();
            let req = pb::SetConsentRequest {
                user_id: user,
                dimensions,
                personalization,
                sensitive_categories,
            };
            let mut client = pb::profile_client::ProfileClient::new(connect(&target).await?);
            client
                .set_consent(with_timeout(req, &target))
                .await?
                .into_inner()
        }
        ProfileCommand::Interests {
            target,
            user,
            add,
            remove,
        } => {
            let req = pb::UpdateInterestsRequest {
                user_id: user,
                updates: add.into_iter().chain(remove).collect(),
            };
            let mut client = pb::profile_client::ProfileClient::new(connect(&target).await?);
            client
                .update_interests(with_timeout(req, &target))
                .await?
                .into_inner()
        }
        ProfileCommand::Undo { target, user, what } => {
            let (kind, id) = what.kind_and_id();
            let req = pb::UndoRequest {
                user_id: user,
                kind: kind.into(),
                id,
            };
            let mut client = pb::profile_client::ProfileClient::new(connect(&target).await?);
            client.undo(with_timeout(req, &target)).await?.into_inner()
        }
    };
    print!("{}", table::profile(&profile));
    Ok(())
}

pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tactful: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Rank(args) => rank(args).await,
            Command::Event(args) => event(args).await,
            Command::Profile(cmd) => profile(cmd).await,
            Command::Bench(args) => super::load::run(args).await,
            Command::Catalog(cmd) => super::catalog::run(cmd).await,
            Command::Serve(_)
            | Command::Replay(_)
            | Command::Fit(_)
            | Command::Tune(_)
            | Command::UserHash { .. }
            | Command::Config(_)
            | Command::Keys(_) => {
                unreachable!(
                    "serve, replay, fit, tune, user-hash, config and keys are dispatched before the client"
                )
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("tactful: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_file_parses_and_typos_are_refused() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/candidates.json");
        let file = read_candidates(&sample).unwrap();
        assert!(file.candidates.len() >= 10);
        let dir = std::env::temp_dir().join(format!("tactful-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let typo = dir.join("typo.json");
        std::fs::write(&typo, r#"[{"item_id": 1, "score": 1, "brand": 3}]"#).unwrap();
        let err = read_candidates(&typo).unwrap_err();
        assert!(err.contains("unknown field `brand`"), "{err}");
        // Errors name the candidate and the line.
        let bad = dir.join("bad.json");
        std::fs::write(
            &bad,
            "{\"candidates\": [\n  {\"item_id\": 1, \"score\": 1},\n  {\"item_id\": 7, \"score\": \"0.9\"}\n]}",
        )
        .unwrap();
        let err = read_candidates(&bad).unwrap_err();
        assert!(
            err.contains("candidates[1] (item_id 7): invalid type"),
            "{err}"
        );
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(&bad, r#"[{"item_id": 1, "score": 1}, {"item_id": 2}]"#).unwrap();
        let err = read_candidates(&bad).unwrap_err();
        assert!(
            err.contains("candidates[1] (item_id 2): missing field `score`"),
            "{err}"
        );
        let bare = dir.join("bare.json");
        std::fs::write(
            &bare,
            r#"[{"item_id": 1, "score": 1, "evidence": ["cross_platform"]}]"#,
        )
        .unwrap();
        let file = read_candidates(&bare).unwrap();
        assert_eq!(
            file.candidates[0].evidence,
            vec![DataDimension::CrossPlatform.number()]
        );
    }

    fn written(name: &str, json: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tactful-cli-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn the_protobuf_json_mapping_is_read_as_grpcurl_and_ghz_write_it() {
        // A whole RankRequest: its context and surface are taken, 64-bit ids as strings, enum
        // names, the bytes form of the embedding in base64 (1.0 and -2.0 as float32 LE).
        let path = written(
            "request.json",
            r#"{"userId": "alice", "k": 3, "surface": "home_feed",
                "context": {"locale": "zh-CN", "utcOffsetMinutes": 480},
                "candidates": [
                  {"itemId": "18446744073709551615", "score": 0.9, "categoryId": "10",
                   "evidence": ["DATA_DIMENSION_BROWSING", "DATA_DIMENSION_SEARCH"],
                   "embeddingF32le": "AACAPwAAAMA=", "crossPlatformSeenMs": "1700000000000"},
                  {"item_id": 7, "score": 0.5, "evidence": ["browsing"], "anchor_title": "x"}
                ]}"#,
        );
        let file = read_candidates(&path).unwrap();
        assert_eq!(file.surface, "home_feed");
        assert_eq!(
            (
                file.context.locale.as_str(),
                file.context.utc_offset_minutes
            ),
            ("zh-CN", 480)
        );
        let first = &file.candidates[0];
        assert_eq!((first.item_id, first.category_id), (u64::MAX, 10));
        assert_eq!(
            first.evidence,
            [
                pb::DataDimension::Browsing as i32,
                pb::DataDimension::Search as i32
            ]
        );
        let floats: Vec<f32> = first
            .embedding_f32le
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(floats, [1.0, -2.0]);
        assert_eq!(first.cross_platform_seen_ms, 1_700_000_000_000);
        // The second candidate is in the short form: both forms mix in one file.
        let second = &file.candidates[1];
        assert_eq!(
            (
                second.item_id,
                second.evidence.as_slice(),
                second.anchor_title.as_str()
            ),
            (7, [pb::DataDimension::Browsing as i32].as_slice(), "x")
        );

        // A bare list of candidates in the protobuf form, enum numbers too.
        let path = written(
            "list.json",
            r#"[{"itemId": "5", "score": 1, "evidence": [2, "DATA_DIMENSION_LOCATION"]}]"#,
        );
        let file = read_candidates(&path).unwrap();
        assert_eq!(file.candidates[0].item_id, 5);
        assert_eq!(file.candidates[0].evidence.len(), 2);
    }

    #[test]
    fn a_bad_candidate_in_the_protobuf_form_is_named() {
        let path = written(
            "bad-enum.json",
            r#"{"userId": "u", "candidates": [
                  {"itemId": "1", "score": 1},
                  {"itemId": "42", "score": 1, "evidence": ["DATA_DIMENSION_BROWSNG"]}]}"#,
        );
        let err = read_candidates(&path).unwrap_err();
        assert!(
            err.contains("bad-enum.json: candidates[1] (item_id 42): "),
            "{err}"
        );
        assert!(err.contains("DATA_DIMENSION_BROWSNG"), "{err}");
        assert!(err.contains("tactful.v1.Candidate"), "{err}");

        let path = written(
            "bad-field.json",
            r#"[{"itemId": "9", "score": 1, "brandIdd": "3"}]"#,
        );
        let err = read_candidates(&path).unwrap_err();
        assert!(err.contains("candidates[0] (item_id 9): "), "{err}");
        assert!(err.contains("brandIdd"), "{err}");

        // A header that is neither form names what is wrong with it.
        let path = written(
            "bad-header.json",
            r#"{"userId": "u", "contxt": {}, "candidates": []}"#,
        );
        let err = read_candidates(&path).unwrap_err();
        assert!(err.contains("contxt"), "{err}");
    }

    #[test]
    fn the_sample_file_is_a_rank_request_in_the_protobuf_json_mapping() {
        // What grpcurl -d @ and ghz --data-file send: the very same file, read by the server's
        // own descriptors as a RankRequest.
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/candidates.json");
        let request = super::super::payload::read_rank_request(&sample).unwrap();
        assert_eq!(request.user_id, "alice");
        let file = read_candidates(&sample).unwrap();
        assert_eq!(file.candidates, request.candidates);
        assert_eq!(file.surface, request.surface);
        assert_eq!(Some(file.context), request.context);
    }
}
