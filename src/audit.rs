//! The audit log: who changed a user's consent, who had a user forgotten, and who reloaded the
//! policies, and when. One JSON object per line:
//!
//! ```json
//! {"at":"2026-11-23T20:39:15.630Z","action":"consent","who":"app-backend","user":"3f9a…","outcome":"ok","detail":{"granted":["location"],"denied":["browsing"]}}
//! ```
//!
//! - `who` is the id of the caller's bearer token (`anonymous` with auth off), or for a reload
//!   what asked for it (`sighup`).
//! - `user` is the user id's pseudonym ([`crate::pseudonym`]), never the id.
//! - `outcome` is `ok` once the change is durable, else `failed` with `error`: attempts are
//!   audited too.
//!
//! Where: `audit.path` (`TACTFUL_AUDIT_PATH`), a file opened for appending (created with mode
//! 0600), one `write` per record so concurrent records never interleave; it is not fsynced per
//! record (the change itself is durable before it is audited; a record still in the page cache
//! survives a crash of the process, not of the machine). Rotate it with `copytruncate`, or
//! ship it with a log collector. Without a path, records go to the service log under the
//! target `tactful::audit` (one `audit` field holding the JSON), so they are never off.
//!
//! Must not: write a user id, a token or any other secret.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::pseudonym::Pseudonyms;
use crate::time::{now_ms, rfc3339_millis};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Profile.SetConsent: dimensions granted or withdrawn, personalisation, sensitive
    /// categories.
    Consent,
    /// Profile.Forget: everything about the user erased.
    Forget,
    /// The policies were reloaded from the configuration file.
    PolicyReload,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Forget => "forget",
            Self::PolicyReload => "policy_reload",
        }
    }
}

/// One record to write.
#[derive(Debug)]
pub struct Entry<'a> {
    pub action: Action,
    /// The caller's token id, or what triggered the action.
    pub who: &'a str,
    /// The user concerned (written as a pseudonym).
    pub user_id: Option<&'a str>,
    /// `Err(why)` when the action failed.
    pub result: Result<(), String>,
    /// What exactly changed.
    pub detail: serde_json::Value,
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    action: &'a str,
    who: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    detail: &'a serde_json::Value,
}

enum Sink {
    Log,
    File(Mutex<File>),
}

pub struct AuditLog {
    sink: Sink,
    pseudonyms: Arc<Pseudonyms>,
    /// Records that could not be written (a full disk, say): reported as a metric.
    errors: AtomicU64,
}

impl AuditLog {
    /// Records go to the service log (target `tactful::audit`).
    pub fn to_log(pseudonyms: Arc<Pseudonyms>) -> Self {
        Self {
            sink: Sink::Log,
            pseudonyms,
            errors: AtomicU64::new(0),
        }
    }

    /// Records are appended to the file at `path` (created if missing, mode 0600).
    pub fn to_file(path: &Path, pseudonyms: Arc<Pseudonyms>) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        Ok(Self {
            sink: Sink::File(Mutex::new(file)),
            pseudonyms,
            errors: AtomicU64::new(0),
        })
    }

    pub fn pseudonyms(&self) -> &Arc<Pseudonyms> {
        &self.pseudonyms
    }

    /// Records that could not be written since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn record(&self, entry: Entry<'_>) {
        let line = Line {
            at: rfc3339_millis(now_ms()),
            action: entry.action.name(),
            who: entry.who,
            user: entry.user_id.map(|id| self.pseudonyms.of(id)),
            outcome: if entry.result.is_ok() { "ok" } else { "failed" },
            error: entry.result.as_ref().err().map(String::as_str),
            detail: &entry.detail,
        };
        let Ok(mut json) = serde_json::to_string(&line) else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match &self.sink {
            Sink::Log => tracing::info!(target: "tactful::audit", audit = %json, "audit"),
            Sink::File(file) => {
                json.push('\n');
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = file.write_all(json.as_bytes()) {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, action = line.action, "cannot write the audit log");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_one_json_line_per_record_with_no_user_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let pseudonyms = Arc::new(Pseudonyms::new(Some("sixteen bytes at least")));
        let log = AuditLog::to_file(&path, pseudonyms.clone()).unwrap();
        log.record(Entry {
            action: Action::Forget,
            who: "app",
            user_id: Some("alice@example.com"),
            result: Ok(()),
            detail: serde_json::Value::Null,
        });
        log.record(Entry {
            action: Action::Consent,
            who: "anonymous",
            user_id: Some("alice@example.com"),
            result: Err("state unavailable".into()),
            detail: serde_json::json!({"denied": ["browsing"]}),
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("alice"), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["action"], "forget");
        assert_eq!(lines[0]["who"], "app");
        assert_eq!(lines[0]["user"], pseudonyms.of("alice@example.com"));
        assert_eq!(lines[0]["outcome"], "ok");
        assert!(lines[0].get("detail").is_none());
        assert_eq!(lines[1]["outcome"], "failed");
        assert_eq!(lines[1]["error"], "state unavailable");
        assert_eq!(lines[1]["detail"]["denied"][0], "browsing");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
