//! Readable text for the client subcommands' answers.

use std::fmt::Write;

use crate::pb;

fn dimension_names(dims: &[i32]) -> String {
    dims.iter()
        .filter_map(|&d| crate::rank::DataDimension::from_number(d))
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(",")
}

fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_ascii_lowercase())
        .unwrap_or_else(|| "?".into())
}

/// A unix-millisecond time as UTC, minute precision: `2026-11-23 12:00Z`.
fn utc(ms: i64) -> String {
    crate::time::date_time_minutes(ms, 0) + "Z"
}

fn lifecycle_name(stage: i32) -> String {
    enum_name(
        pb::LifecycleStage::try_from(stage)
            .ok()
            .map(|s| s.as_str_name()),
        "LIFECYCLE_STAGE_",
    )
}

pub fn ranking(r: &pb::RankResponse, explain: bool) -> String {
    let mut out = String::new();
    let lifecycle = lifecycle_name(r.lifecycle_stage);
    let _ = write!(
        out,
        "policy {}  ·  {} items  ·  suggested k {}  ·  lifecycle {}",
        r.policy_version,
        r.items.len(),
        r.suggested_k,
        lifecycle
    );
    if r.degraded {
        let why = enum_name(
            pb::DegradedReason::try_from(r.degraded_reason)
                .ok()
                .map(|s| s.as_str_name()),
            "DEGRADED_REASON_",
        );
        let _ = write!(out, "  ·  DEGRADED ({why}): upstream order");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:>3}  {:>10}  {:>8}  {:>4}  reason",
        "#", "item", "score", "was"
    );
    for (i, item) in r.items.iter().enumerate() {
        let (text, dims) = item
            .reason
            .as_ref()
            .map(|x| (x.text.as_str(), dimension_names(&x.dimensions)))
            .unwrap_or_default();
        let dims = if dims.is_empty() {
            String::new()
        } else {
            format!("  [{dims}]")
        };
        // With explain, the machine code too: "(complement)", "(interest)", ...
        let code = match (&item.reason, explain) {
            (Some(reason), true) => format!(
                "  ({})",
                enum_name(
                    pb::ReasonCode::try_from(reason.code)
                        .ok()
                        .map(|c| c.as_str_name()),
                    "REASON_CODE_",
                )
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:>3}  {:>10}  {:>8.4}  {:>4}  {text}{dims}{code}",
            i + 1,
            item.item_id,
            item.score,
            item.upstream_position + 1,
        );
        if explain && !item.breakdown.is_empty() {
            // A component that did nothing to this item is noise in a table.
            let parts: Vec<String> = item
                .breakdown
                .iter()
                .filter(|c| c.value != 0.0)
                .map(|c| format!("{} {:+.4}", c.name, c.value))
                .collect();
            let _ = writeln!(out, "{:>33}{}", "", parts.join("  "));
        }
    }
    if explain && !r.dropped.is_empty() {
        let _ = writeln!(out, "dropped:");
        for d in &r.dropped {
            let rule = enum_name(
                pb::DropRule::try_from(d.rule).ok().map(|s| s.as_str_name()),
                "DROP_RULE_",
            );
            let _ = writeln!(out, "     {:>10}  {rule}: {}", d.item_id, d.detail);
        }
    }
    out
}

pub fn profile(p: &pb::UserProfile) -> String {
    let mut out = String::new();
    let ids = |v: &[u64]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    let lifecycle = lifecycle_name(p.lifecycle_stage);
    let _ = writeln!(
        out,
        "user {}{}  ·  lifecycle {lifecycle}",
        p.user_id,
        if p.known {
            ""
        } else {
            " (nothing held: defaults shown)"
        }
    );
    let _ = writeln!(
        out,
        "personalisation   {}",
        if p.personalization { "on" } else { "off" }
    );
    let granted: Vec<i32> = p
        .consent
        .iter()
        .filter(|c| c.granted)
        .map(|c| c.dimension)
        .collect();
    let denied: Vec<i32> = p
        .consent
        .iter()
        .filter(|c| !c.granted)
        .map(|c| c.dimension)
        .collect();
    let _ = writeln!(out, "consent granted   {}", dimension_names(&granted));
    let _ = writeln!(out, "consent denied    {}", dimension_names(&denied));
    let _ = writeln!(out, "blocked brands    {}", ids(&p.blocked_brands));
    let _ = writeln!(out, "blocked shops     {}", ids(&p.blocked_shops));
    let not_interested: Vec<u64> = p.not_interested.iter().map(|n| n.item_id).collect();
    let _ = writeln!(out, "not interested    {}", ids(&not_interested));
    if p.fatigue.is_empty() {
        let _ = writeln!(out, "fatigue           none");
    } else {
        let items: Vec<String> = p
            .fatigue
            .iter()
            .take(10)
            .map(|f| format!("{} ({:.1} ignored)", f.item_id, f.ignored_impressions))
            .collect();
        let _ = writeln!(out, "fatigue           {}", items.join(", "));
    }
    let _ = writeln!(out, "interests         {}", interests(&p.interests));
    let _ = writeln!(out, "muted categories  {}", muted(&p.muted_categories));
    let _ = writeln!(out, "muted brands      {}", muted(&p.muted_brands));
    if p.cooling_off.is_empty() {
        let _ = writeln!(out, "cooling off       none");
    }
    for (i, w) in p.cooling_off.iter().enumerate() {
        let label = if i == 0 { "cooling off" } else { "" };
        let _ = writeln!(out, "{label:<18}{}", cooling_off(w));
    }
    let _ = writeln!(out, "sensitive opt-in  {}", ids(&p.sensitive_categories));
    let used = dimension_names(&p.used_recently);
    let _ = writeln!(
        out,
        "used recently     {}",
        if used.is_empty() { "none" } else { &used }
    );
    out
}

fn interests(tags: &[pb::InterestTag]) -> String {
    if tags.is_empty() {
        return "none".into();
    }
    tags.iter()
        .map(|t| {
            let kind = enum_name(
                pb::TagKind::try_from(t.kind).ok().map(|k| k.as_str_name()),
                "TAG_KIND_",
            );
            let label = if t.label.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", t.label)
            };
            let source = match t.source() {
                pb::TagSource::User => "yours".to_owned(),
                pb::TagSource::Learned => {
                    format!("learned from {}", dimension_names(&t.learned_from))
                }
                pb::TagSource::Unspecified => "?".to_owned(),
            };
            format!("{kind} {}{label} {:.2} ({source})", t.id, t.weight)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn muted(v: &[pb::Muted]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|m| format!("{} ({:.2})", m.id, m.strength))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cooling_off(w: &pb::CoolingOff) -> String {
    let title = if w.title.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", w.title)
    };
    let mut out = format!(
        "item {}{title} (category {}) bought {}",
        w.item_id,
        w.category_id,
        utc(w.bought_at_ms)
    );
    if w.substitutes_until_ms > w.bought_at_ms {
        let _ = write!(
            out,
            ": no substitutes until {}",
            utc(w.substitutes_until_ms)
        );
        let _ = write!(
            out,
            ", no price drops until {}",
            utc(w.price_drops_until_ms)
        );
    } else {
        let _ = write!(
            out,
            ": no price drops until {}",
            utc(w.price_drops_until_ms)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00Z");
        assert_eq!(utc(1_795_435_200_000), "2026-11-23 12:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00Z");
    }

    #[test]
    fn the_profile_shows_every_section() {
        let p = pb::UserProfile {
            user_id: "u".into(),
            known: true,
            interests: vec![
                pb::InterestTag {
                    kind: pb::TagKind::Category.into(),
                    id: 5,
                    label: "tea".into(),
                    weight: 1.0,
                    source: pb::TagSource::User.into(),
                    learned_from: vec![],
                },
                pb::InterestTag {
                    kind: pb::TagKind::Brand.into(),
                    id: 103,
                    label: String::new(),
                    weight: 0.4,
                    source: pb::TagSource::Learned.into(),
                    learned_from: vec![pb::DataDimension::Browsing.into()],
                },
            ],
            muted_categories: vec![pb::Muted {
                id: 2,
                strength: 0.5,
            }],
            cooling_off: vec![pb::CoolingOff {
                item_id: 1,
                category_id: 12,
                title: "Pixel 9".into(),
                bought_at_ms: 1_795_435_200_000,
                substitutes_until_ms: 1_795_435_200_000 + 14 * 86_400_000,
                price_drops_until_ms: 1_795_435_200_000 + 30 * 86_400_000,
            }],
            sensitive_categories: vec![40],
            used_recently: vec![pb::DataDimension::Favorites.into()],
            ..Default::default()
        };
        let text = profile(&p);
        for want in [
            "interests         category 5 \"tea\" 1.00 (yours), brand 103 0.40 (learned from browsing)",
            "muted categories  2 (0.50)",
            "muted brands      none",
            "cooling off       item 1 \"Pixel 9\" (category 12) bought 2026-11-23 12:00Z: no \
             substitutes until 2026-12-07 12:00Z, no price drops until 2026-12-23 12:00Z",
            "sensitive opt-in  40",
            "used recently     favorites",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
    }
}
