//! Reader for the Taobao "UserBehavior" log (Alibaba Tianchi; Zhu et al., "Learning Tree-based
//! Deep Model for Recommender Systems", KDD 2018): one behaviour per line, no header,
//! `user_id,item_id,category_id,behavior,unix_ts`, with `behavior` one of `pv` (page view of
//! the item), `cart`, `fav` and `buy`. Every item has exactly one category; there are no
//! brands, shops or prices. Timestamps are unix seconds; the platform's day runs in UTC+8.
//!
//! Rows stay in file order (which need not be time order): sorting is the caller's choice.
//! Errors name the file and the 1-based line.

use std::path::Path;

use super::text::{self, positive};
use super::{Action, LoadError, LogEvent, malformed};

/// The log's file name in a folder of it.
pub const FILE_NAME: &str = "UserBehavior.csv";

/// What the user did with the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behavior {
    /// Opened the item's page.
    PageView,
    Cart,
    Favorite,
    Buy,
}

impl Behavior {
    /// The log's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::PageView => "pv",
            Self::Cart => "cart",
            Self::Favorite => "fav",
            Self::Buy => "buy",
        }
    }

    /// The log's word read back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pv" => Some(Self::PageView),
            "cart" => Some(Self::Cart),
            "fav" => Some(Self::Favorite),
            "buy" => Some(Self::Buy),
            _ => None,
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub user_id: u64,
    pub item_id: u64,
    pub category_id: u64,
    pub behavior: Behavior,
    /// Unix seconds.
    pub timestamp: i64,
}

/// The offset of the platform's local time (UTC+8) from UTC, in seconds: calendar days of the
/// log (its 2017-11-25..12-03 window) begin at 16:00 UTC the day before.
pub const UTC_OFFSET_SECONDS: i64 = 8 * 3600;

/// Reads a log file.
pub fn load(path: &Path) -> Result<Vec<Row>, LoadError> {
    parse(&text::read(path)?, &path.display().to_string())
}

/// Parses the log's bytes; `file` names the source in errors. Blank lines (and a trailing
/// carriage return) are allowed, anything else malformed stops the parse at its line.
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<Row>, LoadError> {
    let text = text::utf8(bytes, file)?;
    let mut rows = Vec::with_capacity(bytes.len() / 40);
    for (line, raw) in text::lines(text) {
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        let [user, item, category, behavior, ts] = fields[..] else {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected 5 comma-separated fields (user_id,item_id,category_id,behavior,unix_ts), found {}",
                    fields.len()
                ),
            ));
        };
        let behavior = Behavior::parse(behavior).ok_or_else(|| {
            malformed(
                file,
                line,
                format!("behavior {behavior:?} is not one of pv, cart, fav, buy"),
            )
        })?;
        let timestamp = ts.parse::<i64>().ok().filter(|t| *t >= 0).ok_or_else(|| {
            malformed(file, line, format!("timestamp {ts:?} is not unix seconds"))
        })?;
        rows.push(Row {
            user_id: positive(user, file, line, "user id")?,
            item_id: positive(item, file, line, "item id")?,
            category_id: positive(category, file, line, "category id")?,
            behavior,
            timestamp,
        });
    }
    Ok(rows)
}

/// The rows as replay events: `pv` is a view; no brands, shops or prices.
pub fn events(rows: &[Row]) -> Vec<LogEvent> {
    rows.iter()
        .map(|r| LogEvent {
            user: r.user_id,
            item: r.item_id,
            category: r.category_id,
            action: match r.behavior {
                Behavior::PageView => Action::View,
                Behavior::Cart => Action::Cart,
                Behavior::Favorite => Action::Favorite,
                Behavior::Buy => Action::Buy,
            },
            at_ms: r.timestamp * 1000,
            ..LogEvent::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_in_file_order() {
        let rows = parse(
            b"1,2268318,2520377,pv,1511544070\r\n\n1,2333346,2520771,buy,1511561733\n",
            "t.csv",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1],
            Row {
                user_id: 1,
                item_id: 2333346,
                category_id: 2520771,
                behavior: Behavior::Buy,
                timestamp: 1511561733
            }
        );
        assert_eq!(rows[0].behavior.name(), "pv");
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = |text: &str| parse(text.as_bytes(), "log.csv").unwrap_err().to_string();
        assert_eq!(
            err("1,2,3,pv,10\n1,2,3,like,11\n"),
            "log.csv:2: behavior \"like\" is not one of pv, cart, fav, buy"
        );
        assert!(err("1,2,3,pv\n").starts_with("log.csv:1: expected 5 comma-separated fields"));
        assert_eq!(
            err("1,2,3,pv,10\n\n1,x,3,pv,10\n"),
            "log.csv:3: item id \"x\" is not a positive integer"
        );
        assert_eq!(
            err("1,2,3,pv,-5\n"),
            "log.csv:1: timestamp \"-5\" is not unix seconds"
        );
        assert_eq!(
            err("1,2,0,pv,5\n"),
            "log.csv:1: category id \"0\" is not a positive integer"
        );
    }
}
