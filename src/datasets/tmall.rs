//! Reader for the Tmall user logs of the IJCAI-15 repeat-buyers competition (Alibaba
//! Tianchi): six months of a marketplace up to and including Double 11, 2014, with
//! categories, sellers (shops) and brands. Two layouts, each with its header, told apart by
//! it:
//!
//! - `user_log_format1.csv`: `user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type`
//!   with `time_stamp` the day as `mmdd` (`1111`, or `829` for 08-29);
//! - the 11-column teaching variant: `user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,age_range,gender,province`
//!   (the columns after `action` are not read).
//!
//! Actions are `0` click, `1` add to cart, `2` purchase, `3` add to favourites. `brand_id` may
//! be empty or `null` (no brand). Days are in 2014 ([`YEAR`]) at UTC+8: an event's time is its
//! day's local midnight, so the events of one day keep the file's order and share one
//! timestamp (the log records no finer time).
//!
//! Rows stay in file order; errors name the file and the 1-based line.

use std::path::Path;

use super::text::{self, positive};
use super::{Action, LoadError, LogEvent, malformed};

/// The log's file name in a folder of it.
pub const FILE_NAME: &str = "user_log_format1.csv";
/// The year of the logs' days.
pub const YEAR: i64 = 2014;
/// The platform's offset from UTC.
pub const UTC_OFFSET_MINUTES: i32 = 8 * 60;

/// The header of `user_log_format1.csv`.
pub const FORMAT1_COLUMNS: [&str; 7] = [
    "user_id",
    "item_id",
    "cat_id",
    "seller_id",
    "brand_id",
    "time_stamp",
    "action_type",
];
/// The first columns of the 11-column variant's header.
pub const VARIANT_COLUMNS: [&str; 8] = [
    "user_id",
    "item_id",
    "cat_id",
    "merchant_id",
    "brand_id",
    "month",
    "day",
    "action",
];

/// What the user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TmallAction {
    Click,
    Cart,
    Purchase,
    Favorite,
}

impl TmallAction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "0" => Some(Self::Click),
            "1" => Some(Self::Cart),
            "2" => Some(Self::Purchase),
            "3" => Some(Self::Favorite),
            _ => None,
        }
    }
}

/// One line of either layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub user_id: u64,
    pub item_id: u64,
    pub cat_id: u64,
    /// `seller_id` or `merchant_id`: the shop.
    pub seller_id: u64,
    /// 0 = none.
    pub brand_id: u64,
    pub month: u32,
    pub day: u32,
    pub action: TmallAction,
}

impl Row {
    /// Unix milliseconds of the row's day's local midnight.
    pub fn at_ms(&self) -> i64 {
        text::civil_ms(
            (YEAR, self.month, self.day),
            (0, 0, 0, 0),
            UTC_OFFSET_MINUTES,
        )
        .expect("checked when parsed")
    }
}

/// The two layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `user_log_format1.csv`.
    Format1,
    /// The 11-column variant with `month` and `day`.
    Variant,
}

/// Which layout's header a first line is, if either.
pub fn layout(header: &str) -> Option<Layout> {
    let names: Vec<String> = text::fields(header, ',')
        .iter()
        .map(|f| f.to_ascii_lowercase())
        .collect();
    if names == FORMAT1_COLUMNS {
        Some(Layout::Format1)
    } else if names.starts_with(&VARIANT_COLUMNS.map(str::to_owned)) {
        Some(Layout::Variant)
    } else {
        None
    }
}

/// Reads a log file.
pub fn load(path: &Path) -> Result<Vec<Row>, LoadError> {
    parse(&text::read(path)?, &path.display().to_string())
}

/// Parses the log's bytes; `file` names the source in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<Row>, LoadError> {
    let text = text::utf8(bytes, file)?;
    let mut lines = text::lines(text);
    let header = lines.next().map_or("", |(_, l)| l);
    let layout = layout(header).ok_or_else(|| {
        malformed(
            file,
            1,
            format!(
                "expected the header `{}` or `{},...`, found {header:?}",
                FORMAT1_COLUMNS.join(","),
                VARIANT_COLUMNS.join(",")
            ),
        )
    })?;
    let format1 = layout == Layout::Format1;
    let wanted = if format1 { 7 } else { 8 };
    let mut rows = Vec::with_capacity(bytes.len() / 36);
    for (line, raw) in lines {
        let f = text::fields(raw, ',');
        if f.len() < wanted || (format1 && f.len() != wanted) {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected {} comma-separated fields as in the header, found {}",
                    if format1 { "7" } else { "at least 8" },
                    f.len()
                ),
            ));
        }
        let (month, day, action) = if format1 {
            let mmdd: u32 = text::number(&f[5], file, line, "time_stamp")?;
            (mmdd / 100, mmdd % 100, &f[6])
        } else {
            (
                text::number(&f[5], file, line, "month")?,
                text::number(&f[6], file, line, "day")?,
                &f[7],
            )
        };
        if text::civil_ms((YEAR, month, day), (0, 0, 0, 0), 0).is_none() {
            return Err(malformed(
                file,
                line,
                format!("month {month} day {day} is not a date"),
            ));
        }
        let action = TmallAction::parse(action).ok_or_else(|| {
            malformed(
                file,
                line,
                format!(
                    "action {action:?} is not 0 (click), 1 (cart), 2 (purchase) or 3 (favourite)"
                ),
            )
        })?;
        let brand = f[4].trim();
        rows.push(Row {
            user_id: positive(&f[0], file, line, "user_id")?,
            item_id: positive(&f[1], file, line, "item_id")?,
            cat_id: positive(&f[2], file, line, "cat_id")?,
            seller_id: positive(&f[3], file, line, "seller_id")?,
            brand_id: if brand.is_empty() || brand.eq_ignore_ascii_case("null") {
                0
            } else {
                text::number(brand, file, line, "brand_id")?
            },
            month,
            day,
            action,
        });
    }
    Ok(rows)
}

/// The rows as replay events: a click is a view, the seller the shop; no prices.
pub fn events(rows: &[Row]) -> Vec<LogEvent> {
    rows.iter()
        .map(|r| LogEvent {
            user: r.user_id,
            item: r.item_id,
            category: r.cat_id,
            brand: r.brand_id,
            shop: r.seller_id,
            price: 0.0,
            action: match r.action {
                TmallAction::Click => Action::View,
                TmallAction::Cart => Action::Cart,
                TmallAction::Purchase => Action::Buy,
                TmallAction::Favorite => Action::Favorite,
            },
            at_ms: r.at_ms(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_parse_to_the_same_events() {
        let format1 = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n\
                       328862,323294,833,2882,2661,0829,0\n\
                       328862,844400,1271,2882,,1111,2\n\
                       328862,575153,1271,2882,null,511,3\n";
        let variant = "user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,age_range,gender,province\n\
                       328862,323294,833,2882,2661,08,29,0,0,1,Zhejiang\n\
                       328862,844400,1271,2882,,11,11,2,0,1,Zhejiang\n\
                       328862,575153,1271,2882,NULL,05,11,3,,,\n";
        let a = events(&parse(format1.as_bytes(), "f1.csv").unwrap());
        let b = events(&parse(variant.as_bytes(), "v.csv").unwrap());
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert_eq!((a[0].brand, a[0].shop, a[0].category), (2661, 2882, 833));
        assert_eq!(a[0].action, Action::View);
        // 2014-08-29 00:00 at UTC+8 is 2014-08-28 16:00 UTC.
        assert_eq!(a[0].at_ms, 1_409_241_600_000);
        assert_eq!((a[1].brand, a[1].action), (0, Action::Buy));
        assert_eq!((a[2].brand, a[2].action), (0, Action::Favorite));
    }

    #[test]
    fn errors_name_file_line_and_what_was_expected() {
        let err = |text: &str| parse(text.as_bytes(), "t.csv").unwrap_err().to_string();
        assert!(err("a,b,c\n").starts_with(
            "t.csv:1: expected the header `user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type` or"
        ));
        let h = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n";
        assert_eq!(
            err(&format!("{h}1,2,3,4,5,1111,4\n")),
            "t.csv:2: action \"4\" is not 0 (click), 1 (cart), 2 (purchase) or 3 (favourite)"
        );
        assert_eq!(
            err(&format!("{h}1,2,3,4,5,0231,0\n")),
            "t.csv:2: month 2 day 31 is not a date"
        );
        assert_eq!(
            err(&format!("{h}1,2,3,4,5,1111\n")),
            "t.csv:2: expected 7 comma-separated fields as in the header, found 6"
        );
    }
}
