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
        let _ = writeln!(
            out,
            "{:>3}  {:>10}  {:>8.4}  {:>4}  {text}{dims}",
            i + 1,
            item.item_id,
            item.score,
            item.upstream_position + 1,
        );
        if explain && !item.breakdown.is_empty() {
            let parts: Vec<String> = item
                .breakdown
                .iter()
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
    out
}
