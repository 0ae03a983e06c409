//! `tactful bench --payload FILE`: a RankRequest written in the protobuf JSON mapping, the form
//! ghz and grpcurl take (`benches/ghz/data/*.json`), so the bench and ghz can send the very same
//! request.
//!
//! The file is read against the descriptors the server itself serves by reflection
//! ([`pb::FILE_DESCRIPTOR_SET`]) rather than through a hand-written copy of the schema: field
//! names in lowerCamelCase or as in the .proto, enums by name or number, 64-bit integers as
//! numbers or strings, all as the proto3 JSON mapping says; an unknown field is refused by name,
//! so a typo never silently becomes a default.

use std::path::Path;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::pb;

/// The message `name` (e.g. `tactful.v1.Candidate`) from its protobuf JSON form, already parsed
/// into a JSON value: how a candidates file's entries in that form are read.
pub fn parse_message<M: prost::Message + Default>(
    name: &str,
    value: &serde_json::Value,
) -> Result<M, String> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("the built-in descriptors do not decode: {e}"))?;
    let descriptor = pool
        .get_message_by_name(name)
        .ok_or_else(|| format!("the built-in descriptors have no {name}"))?;
    let message =
        DynamicMessage::deserialize(descriptor, value.clone()).map_err(|e| e.to_string())?;
    M::decode(message.encode_to_vec().as_slice())
        .map_err(|e| format!("does not decode as {name}: {e}"))
}

/// The request in `path`, or why it cannot be read.
pub fn read_rank_request(path: &Path) -> Result<pb::RankRequest, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_rank_request(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a RankRequest from its protobuf JSON form.
pub fn parse_rank_request(json: &str) -> Result<pb::RankRequest, String> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("the built-in descriptors do not decode: {e}"))?;
    let descriptor = pool
        .get_message_by_name("tactful.v1.RankRequest")
        .ok_or("the built-in descriptors have no tactful.v1.RankRequest")?;
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(descriptor, &mut de)
        .map_err(|e| format!("not a tactful.v1.RankRequest in protobuf JSON: {e}"))?;
    de.end()
        .map_err(|e| format!("unexpected text after the request: {e}"))?;
    // Same descriptors on both sides, so the bytes always decode; through bytes rather than
    // field by field so that every field the schema gains comes along.
    pb::RankRequest::decode(message.encode_to_vec().as_slice())
        .map_err(|e| format!("does not decode as tactful.v1.RankRequest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ghz_payloads_parse_into_the_requests_they_describe() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ghz/data");
        let r = read_rank_request(&dir.join("rank-default.json")).unwrap();
        assert_eq!(
            (r.user_id.as_str(), r.k, r.policy.as_str()),
            ("ghz-user-1", 20, "")
        );
        assert_eq!(r.surface, "home_feed");
        assert_eq!(r.context.as_ref().unwrap().utc_offset_minutes, 480);
        assert_eq!(r.candidates.len(), 100);
        let first = &r.candidates[0];
        assert_eq!((first.item_id, first.category_id), (100_000, 1001));
        assert_eq!(first.embedding.len(), 64);
        assert_eq!(
            first.evidence,
            [
                pb::DataDimension::Browsing as i32,
                pb::DataDimension::Search as i32
            ]
        );
        let identity = read_rank_request(&dir.join("rank-identity.json")).unwrap();
        assert_eq!(identity.policy, "identity");
    }

    #[test]
    fn proto_field_names_numbers_as_strings_and_enum_numbers_are_accepted() {
        let r = parse_rank_request(
            r#"{"user_id": "u", "k": 3, "candidates": [
                {"item_id": "18446744073709551615", "score": 1, "evidence": [2, "DATA_DIMENSION_SEARCH"]}
            ], "diversity": {"method": "DIVERSITY_METHOD_DPP", "weight": 0.5}}"#,
        )
        .unwrap();
        assert_eq!(r.candidates[0].item_id, u64::MAX);
        assert_eq!(r.candidates[0].evidence.len(), 2);
        let d = r.diversity.unwrap();
        assert_eq!(
            (d.method(), d.weight),
            (pb::DiversityMethod::Dpp, Some(0.5))
        );
    }

    #[test]
    fn typos_and_wrong_shapes_are_refused_by_name() {
        let err = parse_rank_request(r#"{"userId": "u", "candidate": []}"#).unwrap_err();
        assert!(err.contains("candidate"), "{err}");
        let err = parse_rank_request(r#"{"userId": "u", "k": "many"}"#).unwrap_err();
        assert!(err.contains("RankRequest"), "{err}");
        assert!(parse_rank_request(r#"{"userId": "u"} {}"#).is_err());
        let err = read_rank_request(Path::new("/nonexistent/payload.json")).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
    }
}
