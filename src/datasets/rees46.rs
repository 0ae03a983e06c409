//! Reader for the REES46 / Open CDP "eCommerce behavior data from multi category store" log
//! (REES46 Marketing Platform; published on Kaggle by M. Kechinov): one event per line, with
//! the header `event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session`
//! (columns found by name, in any order; `user_session` is not read).
//!
//! - `event_time` is UTC, `2019-10-01 00:00:04 UTC`;
//! - `event_type` is `view`, `cart`, `remove_from_cart` or `purchase`;
//! - `category_code` is a readable path (`electronics.smartphone`) and `brand` a lower-case
//!   name; either may be empty. `price` is in the store's currency, 0 for a few rows.
//!
//! In the replay a view is a view, `cart` a cart and `purchase` a buy; `remove_from_cart`
//! says nothing the user state can use (it is neither engagement nor feedback) and is left
//! out. Brands become ids through [`super::text::id`]; there are no shops.
//!
//! Rows stay in file order; errors name the file and the 1-based line.

use std::path::Path;

use super::text::{self, positive};
use super::{Action, LoadError, LogEvent, malformed};

/// The log's file name in a folder of it.
pub const FILE_NAME: &str = "events.csv";

/// The columns read, by header name.
pub const COLUMNS: [&str; 8] = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
];

/// What the user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    View,
    Cart,
    RemoveFromCart,
    Purchase,
}

impl EventType {
    /// The log's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Cart => "cart",
            Self::RemoveFromCart => "remove_from_cart",
            Self::Purchase => "purchase",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::View, Self::Cart, Self::RemoveFromCart, Self::Purchase]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub event_type: EventType,
    pub product_id: u64,
    pub category_id: u64,
    /// `electronics.smartphone`; empty when the log has none.
    pub category_code: String,
    /// Lower-case name; empty when the log has none.
    pub brand: String,
    /// 0 when unknown.
    pub price: f32,
    pub user_id: u64,
}

/// Reads a log file.
pub fn load(path: &Path) -> Result<Vec<Row>, LoadError> {
    parse(&text::read(path)?, &path.display().to_string())
}

/// Parses the log's bytes; `file` names the source in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<Row>, LoadError> {
    let text = text::utf8(bytes, file)?;
    let mut lines = text::lines(text);
    let header: Vec<String> = lines
        .next()
        .map(|(_, l)| text::fields(l, ',').iter().map(|f| f.to_string()).collect())
        .unwrap_or_default();
    let mut at = [0usize; COLUMNS.len()];
    for (slot, name) in at.iter_mut().zip(COLUMNS) {
        *slot = header.iter().position(|h| h == name).ok_or_else(|| {
            malformed(
                file,
                1,
                format!(
                    "the header has no column `{name}` (expected {})",
                    COLUMNS.join(",")
                ),
            )
        })?;
    }
    let mut rows = Vec::with_capacity(bytes.len() / 130);
    for (line, raw) in lines {
        let fields = text::fields(raw, ',');
        if fields.len() != header.len() {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected {} comma-separated fields as in the header, found {}",
                    header.len(),
                    fields.len()
                ),
            ));
        }
        let f = |i: usize| fields[at[i]].as_ref();
        let at_ms = text::date_time_ms(f(0), 0).ok_or_else(|| {
            malformed(
                file,
                line,
                format!(
                    "event_time {:?} is not a date and time like 2019-10-01 00:00:04 UTC",
                    f(0)
                ),
            )
        })?;
        let event_type = EventType::parse(f(1)).ok_or_else(|| {
            malformed(
                file,
                line,
                format!(
                    "event_type {:?} is not one of view, cart, remove_from_cart, purchase",
                    f(1)
                ),
            )
        })?;
        rows.push(Row {
            at_ms,
            event_type,
            product_id: positive(f(2), file, line, "product_id")?,
            category_id: positive(f(3), file, line, "category_id")?,
            category_code: f(4).to_owned(),
            brand: f(5).to_owned(),
            price: text::price(f(6), file, line)?,
            user_id: positive(f(7), file, line, "user_id")?,
        });
    }
    Ok(rows)
}

/// The rows as replay events, `remove_from_cart` left out; brands as ids.
pub fn events(rows: &[Row]) -> Vec<LogEvent> {
    rows.iter()
        .filter_map(|r| {
            let action = match r.event_type {
                EventType::View => Action::View,
                EventType::Cart => Action::Cart,
                EventType::Purchase => Action::Buy,
                EventType::RemoveFromCart => return None,
            };
            Some(LogEvent {
                user: r.user_id,
                item: r.product_id,
                category: r.category_id,
                brand: text::id(&r.brand),
                shop: 0,
                price: r.price,
                action,
                at_ms: r.at_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n";

    #[test]
    fn rows_parse_with_brands_codes_and_prices() {
        let text = format!(
            "{HEADER}2019-10-01 00:00:04 UTC,view,1004237,2053013555631882655,electronics.smartphone,apple,1081.98,535871217,c6bd7419\n\
             2019-10-01 00:00:05 UTC,remove_from_cart,5,6,,,0,7,s\n\
             2019-10-01 00:01:00 UTC,purchase,1004237,2053013555631882655,electronics.smartphone,apple,1081.98,535871217,c6bd7419\n"
        );
        let rows = parse(text.as_bytes(), "events.csv").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].at_ms, 1_569_888_004_000);
        assert_eq!(rows[0].category_code, "electronics.smartphone");
        assert_eq!((rows[0].brand.as_str(), rows[0].price), ("apple", 1081.98));
        assert_eq!(rows[1].event_type, EventType::RemoveFromCart);
        assert_eq!(rows[1].brand, "");
        let events = events(&rows);
        assert_eq!(events.len(), 2, "remove_from_cart is left out");
        assert_eq!(events[0].brand, text::id("apple"));
        assert_eq!(events[1].action, Action::Buy);
        assert_eq!(events[0].category, 2_053_013_555_631_882_655);
    }

    #[test]
    fn errors_name_file_line_and_what_was_expected() {
        let err = |text: &str| parse(text.as_bytes(), "e.csv").unwrap_err().to_string();
        assert!(
            err("user_id,item_id\n1,2\n").starts_with(
                "e.csv:1: the header has no column `event_time` (expected event_time,"
            )
        );
        assert_eq!(
            err(&format!(
                "{HEADER}2019-10-01 00:00:04 UTC,like,1,2,,,1,3,s\n"
            )),
            "e.csv:2: event_type \"like\" is not one of view, cart, remove_from_cart, purchase"
        );
        assert_eq!(
            err(&format!("{HEADER}yesterday,view,1,2,,,1,3,s\n")),
            "e.csv:2: event_time \"yesterday\" is not a date and time like 2019-10-01 00:00:04 UTC"
        );
        assert_eq!(
            err(&format!("{HEADER}2019-10-01 00:00:04 UTC,view,1,2,,,1,3\n")),
            "e.csv:2: expected 9 comma-separated fields as in the header, found 8"
        );
    }

    #[test]
    fn the_shared_log_loads_when_present() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/rees46-3h/events.csv");
        if !path.is_file() {
            println!("skipped: no REES46 log at {}", path.display());
            return;
        }
        let rows = load(&path).unwrap();
        assert_eq!(rows.len(), 17_434);
        let events = events(&rows);
        let mut brands: Vec<u64> = events.iter().map(|e| e.brand).filter(|b| *b != 0).collect();
        brands.sort_unstable();
        brands.dedup();
        assert_eq!(brands.len(), 864);
    }
}
