//! The shipped alerts and dashboard (`k8s/monitoring/`) against the metrics the server exports:
//!
//! - every metric name the alert rules and the dashboard's queries use is registered in
//!   `src/metrics.rs` (a histogram's `_bucket`, `_sum` and `_count` series count as the
//!   histogram), so renaming a metric, or a typo in a query, fails here rather than as an empty
//!   panel or an alert that can never fire;
//! - every label a query selects on (`name{label=...}`) is one of that metric's labels (or
//!   `job`/`instance`, which Prometheus adds), and every label it groups by (`by (...)`) is one of
//!   the labels of a metric in the same query;
//! - the PrometheusRule manifest is the plain rules file under `spec:` (what
//!   `scripts/monitoring-check.sh --write` makes), so the two cannot drift;
//! - every alert has a runbook entry in docs/operations.md, and the dashboard covers what
//!   operators were promised (rankings, latency, degraded share, in flight, trust KPIs, events,
//!   user state, evictions, snapshots, catalog hits, connections).
//!
//! `promtool check rules` and `promtool test rules` run in `scripts/monitoring-check.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Metric name -> its labels, and the names registered as histograms, read from the
/// registrations in `Metrics::new`.
struct Exported {
    labels: BTreeMap<String, BTreeSet<String>>,
    histograms: BTreeSet<String>,
}

/// The string literals of `text`, in order, with their byte offsets.
fn literals(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            for (_, d) in chars.by_ref() {
                if d == '"' {
                    break;
                }
                s.push(d);
            }
            out.push((i, s));
        }
    }
    out
}

fn is_metric_name(s: &str) -> bool {
    (s.starts_with("tactful_") || s.starts_with("process_"))
        && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

fn exported() -> Exported {
    let source = read("src/metrics.rs");
    let start = source.find("pub fn new() -> Self").expect("Metrics::new");
    let end = source[start..].find("pub fn call(").expect("Metrics::call") + start;
    let body = &source[start..end];
    let lits = literals(body);
    let names: Vec<(usize, &str)> = lits
        .iter()
        .filter(|(_, s)| is_metric_name(s))
        .map(|(i, s)| (*i, s.as_str()))
        .collect();
    let mut labels = BTreeMap::new();
    let mut histograms = BTreeSet::new();
    for (k, (at, name)) in names.iter().enumerate() {
        let next = names.get(k + 1).map_or(body.len(), |(i, _)| *i);
        // The registration's text, from the call that opens it to the next name.
        let call_start = body[..*at].rfind('(').unwrap_or(0);
        let opener = body[..call_start]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("");
        if opener.starts_with("histogram") || opener == "HistogramOpts::new" {
            histograms.insert(name.to_string());
        }
        let span = &body[*at..next];
        let set = match span.find("&[") {
            Some(open) => {
                let close = span[open..].find(']').expect("closing bracket") + open;
                literals(&span[open..close])
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect()
            }
            None => BTreeSet::new(),
        };
        assert!(
            labels.insert(name.to_string(), set).is_none(),
            "{name} registered twice"
        );
    }
    Exported { labels, histograms }
}

/// The metric a series name in a query belongs to, if it is exported.
fn metric_of<'a>(exported: &'a Exported, series: &str) -> Option<&'a str> {
    if let Some((name, _)) = exported.labels.get_key_value(series) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        exported.histograms.get(base).map(String::as_str)
    })
}

/// Series names in a query: identifiers starting with `tactful_` or `process_`.
fn series_in(expr: &str) -> Vec<(usize, String)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && (expr[i..].starts_with("tactful_") || expr[i..].starts_with("process_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            out.push((end, expr[i..end].to_string()));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Checks one query; returns the problems found, each naming `where_`.
fn check_expr(exported: &Exported, where_: &str, expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let series = series_in(expr);
    if series.is_empty() {
        problems.push(format!("{where_}: queries no tactful metric: {expr}"));
    }
    let mut in_query = BTreeSet::from(["job".to_string(), "instance".to_string()]);
    for (end, name) in &series {
        let Some(metric) = metric_of(exported, name) else {
            problems.push(format!(
                "{where_}: {name} is not a metric src/metrics.rs exports"
            ));
            continue;
        };
        let labels = &exported.labels[metric];
        in_query.extend(labels.iter().cloned());
        if exported.histograms.contains(metric) && name.ends_with("_bucket") {
            in_query.insert("le".into());
        }
        if let Some(rest) = expr[*end..].strip_prefix('{') {
            let selector = &rest[..rest.find('}').expect("closing brace")];
            for matcher in selector.split(',').filter(|m| !m.trim().is_empty()) {
                let label = matcher
                    .split(['=', '!'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if !labels.contains(&label) && label != "job" && label != "instance" {
                    problems.push(format!(
                        "{where_}: {metric} has no label {label:?} (its labels: {labels:?})"
                    ));
                }
            }
        }
    }
    let mut rest = expr;
    while let Some(at) = [" by (", " on ("].iter().filter_map(|k| rest.find(k)).min() {
        let open = at + rest[at..].find('(').unwrap() + 1;
        let close = open + rest[open..].find(')').expect("closing paren");
        for label in rest[open..close].split(',').map(str::trim) {
            if !in_query.contains(label) {
                problems.push(format!(
                    "{where_}: groups by {label:?}, a label of no metric in the query"
                ));
            }
        }
        rest = &rest[close..];
    }
    problems
}

/// `(alert, expr)` for each rule of a Prometheus rules file.
fn alerts(rules: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    let mut alert = String::new();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert: ") {
            alert = name.trim().to_string();
        } else if let Some(value) = t.strip_prefix("expr: ") {
            let indent = line.len() - t.len();
            let mut expr = String::new();
            if value.trim() == "|" {
                while let Some(next) = lines.peek() {
                    let n = next.trim_start();
                    if !n.is_empty() && next.len() - n.len() <= indent {
                        break;
                    }
                    expr.push_str(n);
                    expr.push(' ');
                    lines.next();
                }
            } else {
                expr.push_str(value);
            }
            out.push((alert.clone(), expr));
        }
    }
    out
}

/// Every `"expr"` of the dashboard, with its panel's title.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            out.push((title.clone(), expr.to_string()));
        }
    }
    out
}

#[test]
fn the_registrations_are_read_with_their_labels() {
    // The parse below is what every other check stands on: make sure it sees what is there.
    let e = exported();
    assert!(e.labels.len() >= 30, "{:?}", e.labels.keys());
    let labels = |name: &str| e.labels[name].iter().cloned().collect::<Vec<_>>();
    assert_eq!(labels("tactful_grpc_requests_total"), ["method", "outcome"]);
    assert_eq!(labels("tactful_events_total"), ["outcome", "type"]);
    assert_eq!(labels("tactful_rank_degraded_total"), ["reason"]);
    assert_eq!(labels("tactful_policy_info"), ["policy", "version"]);
    assert_eq!(labels("tactful_build_info"), ["version"]);
    assert!(labels("tactful_state_users").is_empty());
    assert_eq!(
        e.histograms.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "tactful_grpc_request_duration_seconds",
            "tactful_rank_candidates",
            "tactful_rank_queue_seconds",
            "tactful_rank_stage_duration_seconds",
        ]
    );
    assert_eq!(
        metric_of(&e, "tactful_rank_candidates_bucket"),
        Some("tactful_rank_candidates")
    );
    assert_eq!(metric_of(&e, "tactful_state_users_bucket"), None);
    // And the checker finds what is wrong.
    let bad = check_expr(
        &e,
        "t",
        r#"sum by (reason, shard) (rate(tactful_rank_degraded_totl[5m])) / tactful_state_users{type="x"}"#,
    );
    // The misspelled name, the label tactful_state_users lacks, and both groupings (`reason`
    // belongs to no metric the query could resolve).
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(
        bad[0].contains("tactful_rank_degraded_totl is not a metric"),
        "{bad:?}"
    );
    assert!(bad[1].contains(r#"no label "type""#), "{bad:?}");
}

#[test]
fn the_alert_rules_use_only_exported_metrics_and_each_has_a_runbook() {
    let e = exported();
    let rules = read("k8s/monitoring/rules.yml");
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 10, "{alerts:?}");
    let operations = read("docs/operations.md").to_lowercase();
    let mut problems = Vec::new();
    for (alert, expr) in &alerts {
        problems.extend(check_expr(&e, alert, expr));
        let anchor = alert.to_lowercase();
        if !operations.contains(&format!("### {anchor}\n")) {
            problems.push(format!(
                "{alert}: no runbook heading `### {alert}` in docs/operations.md"
            ));
        }
        if !rules.contains(&format!("runbook: docs/operations.md#{anchor}\n")) {
            problems.push(format!(
                "{alert}: no runbook annotation pointing at #{anchor}"
            ));
        }
    }
    for promised in [
        "TactfulDegradedShareHigh",
        "TactfulRankLatencyHigh",
        "TactfulOverloadShedding",
        "TactfulStateUnavailable",
        "TactfulStateMemoryNearCap",
        "TactfulAuditWriteErrors",
        "TactfulEventWritesFailing",
        "TactfulSnapshotsStalled",
        "TactfulConnectionsNearLimit",
        "TactfulDescriptorsNearLimit",
    ] {
        if !alerts.iter().any(|(a, _)| a == promised) {
            problems.push(format!("no alert {promised}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_prometheusrule_manifest_is_the_rules_file() {
    let rules = read("k8s/monitoring/rules.yml");
    let manifest = read("k8s/monitoring/prometheusrule.yaml");
    let groups = &rules[rules.find("\ngroups:").expect("groups:") + 1..];
    let spec = &manifest[manifest.find("\nspec:\n").expect("spec:") + "\nspec:\n".len()..];
    let indented: String = groups
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    assert!(
        spec == indented,
        "k8s/monitoring/prometheusrule.yaml differs from rules.yml: run scripts/monitoring-check.sh --write"
    );
    assert!(manifest.contains("\nkind: PrometheusRule\n"));
}

#[test]
fn the_dashboard_queries_only_exported_metrics_and_covers_the_promised_panels() {
    let e = exported();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("k8s/monitoring/tactful-dashboard.json")).expect("JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        problems.extend(check_expr(&e, title, expr));
        for (_, s) in series_in(expr) {
            if let Some(m) = metric_of(&e, &s) {
                used.insert(m.to_string());
            }
        }
    }
    for promised in [
        "tactful_grpc_requests_total",
        "tactful_grpc_request_duration_seconds",
        "tactful_rank_degraded_total",
        "tactful_rank_inflight",
        "tactful_rank_max_inflight",
        "tactful_avoidance_dropped_total",
        "tactful_avoidance_penalised_total",
        "tactful_avoidance_rankings_total",
        "tactful_events_total",
        "tactful_state_users",
        "tactful_state_bytes",
        "tactful_state_memory_cap_bytes",
        "tactful_state_evicted_total",
        "tactful_state_snapshots_total",
        "tactful_catalog_lookups_total",
        "tactful_grpc_connections",
        "tactful_grpc_max_connections",
    ] {
        if !used.contains(promised) {
            problems.push(format!("no panel queries {promised}"));
        }
    }
    // Panels must not overlap on Grafana's 24-column grid.
    let mut cells = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let g = &panel["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{}", panel["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                if !cells.insert((cx, cy)) {
                    problems.push(format!("panel {} overlaps another", panel["title"]));
                }
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
