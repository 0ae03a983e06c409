//! A platform's own log: any delimited text file, one interaction per line, read through a
//! column [`Mapping`] given as flags (`--columns user=uid,item=sku,time=ts,...`) or as a small
//! TOML file (`--mapping log.toml`), documented in `docs/logs.md`.
//!
//! Required columns: `user`, `item`, `time`. Optional: `category`, `brand`, `shop`, `price`,
//! `action`. Without an `action` column every row is a view. Action words are matched without
//! regard to case against [`ActionWords`] (the defaults cover the usual vocabularies: `view`,
//! `pv`, `click`, `cart`, `add_to_cart`, `fav`, `wishlist`, `buy`, `purchase`, `order`…); a
//! word listed under `ignore` drops the row, any other unknown word is an error naming the line.
//!
//! Ids that are positive integers are kept; other text is hashed ([`super::text::id`]), so
//! string keys work. Times are unix seconds, unix milliseconds or date-times
//! ([`TimeFormat`]).

use std::path::Path;

use serde::Deserialize;

use super::text;
use super::{Action, LoadError, LogEvent, malformed};

/// How a time column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Unix seconds.
    #[default]
    Unix,
    /// Unix milliseconds.
    UnixMs,
    /// `2019-10-01 00:00:04`, `2019-10-01T00:00:04Z`, `2019-10-01` (midnight): UTC when it
    /// says ` UTC` or `Z`, else local at `utc_offset_minutes`.
    Datetime,
}

/// Which words of the action column mean what. A mapping that lists any replaces the
/// defaults entirely.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionWords {
    pub view: Vec<String>,
    pub cart: Vec<String>,
    pub favorite: Vec<String>,
    pub buy: Vec<String>,
    /// Rows with these words carry no interaction and are left out.
    pub ignore: Vec<String>,
}

impl Default for ActionWords {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        Self {
            view: words(&["view", "pv", "click", "detail", "page_view", "play", "rate"]),
            cart: words(&["cart", "add_to_cart", "addtocart", "basket"]),
            favorite: words(&["fav", "favorite", "favourite", "wishlist", "like", "save"]),
            buy: words(&["buy", "purchase", "order", "transaction", "checkout"]),
            ignore: words(&["remove_from_cart", "removefromcart"]),
        }
    }
}

impl ActionWords {
    /// `Some(None)` for an ignored word, `None` for an unknown one.
    fn action(&self, word: &str) -> Option<Option<Action>> {
        let has = |list: &[String]| list.iter().any(|w| w.eq_ignore_ascii_case(word));
        [
            (&self.view, Action::View),
            (&self.cart, Action::Cart),
            (&self.favorite, Action::Favorite),
            (&self.buy, Action::Buy),
        ]
        .into_iter()
        .find(|(list, _)| has(list))
        .map(|(_, a)| Some(a))
        .or_else(|| has(&self.ignore).then_some(None))
    }

    fn known(&self) -> String {
        [
            &self.view,
            &self.cart,
            &self.favorite,
            &self.buy,
            &self.ignore,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Where each field is in the file, and how to read it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// One character, or `tab`, `comma`, `semicolon`, `pipe`: `,` by default.
    #[serde(default = "comma")]
    pub delimiter: String,
    /// Whether the first line names the columns (then columns are named by it); without one,
    /// columns are 1-based numbers.
    #[serde(default = "yes")]
    pub header: bool,
    pub user: String,
    pub item: String,
    pub time: String,
    #[serde(default)]
    pub time_format: TimeFormat,
    /// The platform's offset from UTC: local days, and date-times without a zone.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub shop: Option<String>,
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub actions: ActionWords,
}

fn comma() -> String {
    ",".into()
}

fn yes() -> bool {
    true
}

impl Mapping {
    /// A mapping file (TOML with the fields of [`Mapping`]).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let m: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    /// The flag form: `user=uid,item=sku,time=ts,time_format=unix_ms,...` (the fields of a
    /// mapping file except `actions`, whose defaults apply).
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let mut table = toml::Table::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let value = match key {
                "header" => toml::Value::Boolean(
                    value
                        .parse()
                        .map_err(|_| format!("header={value:?}: expected true or false"))?,
                ),
                "utc_offset_minutes" => toml::Value::Integer(
                    value
                        .parse()
                        .map_err(|_| format!("utc_offset_minutes={value:?}: expected minutes"))?,
                ),
                "actions" => return Err("action words go in a mapping file (--mapping)".into()),
                _ => toml::Value::String(value.to_owned()),
            };
            if table.insert(key.to_owned(), value).is_some() {
                return Err(format!("{key} is given twice"));
            }
        }
        let m: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    /// The delimiter as a character.
    pub fn delimiter(&self) -> Result<char, String> {
        match self.delimiter.as_str() {
            "tab" | "\\t" => Ok('\t'),
            "comma" => Ok(','),
            "semicolon" => Ok(';'),
            "pipe" => Ok('|'),
            d => {
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c != '"' => Ok(c),
                    _ => Err(format!(
                        "delimiter {d:?}: expected one character, tab, comma, semicolon or pipe"
                    )),
                }
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        self.delimiter()?;
        if self.utc_offset_minutes.abs() > 18 * 60 {
            return Err(format!(
                "utc_offset_minutes {} is beyond ±18 hours",
                self.utc_offset_minutes
            ));
        }
        for (key, column) in self.columns() {
            let Some(column) = column else { continue };
            if column.is_empty() {
                return Err(format!("{key}: the column is empty"));
            }
            if !self.header && column.parse::<usize>().map_or(true, |n| n == 0) {
                return Err(format!(
                    "{key}={column:?}: without a header, columns are numbered from 1"
                ));
            }
        }
        Ok(())
    }

    fn columns(&self) -> [(&'static str, Option<&str>); 8] {
        fn opt(c: &Option<String>) -> Option<&str> {
            c.as_deref()
        }
        [
            ("user", Some(self.user.as_str())),
            ("item", Some(self.item.as_str())),
            ("time", Some(self.time.as_str())),
            ("category", opt(&self.category)),
            ("brand", opt(&self.brand)),
            ("shop", opt(&self.shop)),
            ("price", opt(&self.price)),
            ("action", opt(&self.action)),
        ]
    }
}

/// Reads a file through the mapping.
pub fn load(path: &Path, mapping: &Mapping) -> Result<Vec<LogEvent>, LoadError> {
    parse(&text::read(path)?, &path.display().to_string(), mapping)
}

/// Parses a file's bytes through the mapping; `file` names the source in errors.
pub fn parse(bytes: &[u8], file: &str, mapping: &Mapping) -> Result<Vec<LogEvent>, LoadError> {
    let delimiter = mapping.delimiter().map_err(|e| malformed(file, 0, e))?;
    let text = text::utf8(bytes, file)?;
    let mut lines = text::lines(text).peekable();
    // Column indices, in the order of `Mapping::columns`.
    let mut at = [None::<usize>; 8];
    let width;
    if mapping.header {
        let (_, header) = lines
            .next()
            .ok_or_else(|| malformed(file, 0, "the file is empty: expected a header"))?;
        let names = text::fields(header, delimiter);
        width = names.len();
        for (slot, (key, column)) in at.iter_mut().zip(mapping.columns()) {
            let Some(column) = column else { continue };
            *slot = Some(
                names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(column))
                    .ok_or_else(|| {
                        malformed(
                            file,
                            1,
                            format!(
                                "{key}: the header has no column {column:?} (it has {})",
                                names.join(", ")
                            ),
                        )
                    })?,
            );
        }
    } else {
        for (slot, (_, column)) in at.iter_mut().zip(mapping.columns()) {
            *slot = column.and_then(|c| c.parse::<usize>().ok()).map(|n| n - 1);
        }
        width = lines
            .peek()
            .map_or(0, |(_, l)| text::fields(l, delimiter).len());
    }
    let needed = at.iter().flatten().max().map_or(0, |m| m + 1);
    let mut events = Vec::with_capacity(bytes.len() / 40);
    for (line, raw) in lines {
        let f = text::fields(raw, delimiter);
        if f.len() < needed {
            return Err(malformed(
                file,
                line,
                format!(
                    "{} fields, the mapping reads column {needed} (the first line has {width})",
                    f.len()
                ),
            ));
        }
        let get = |i: usize| at[i].map_or("", |c| f[c].as_ref());
        let action = match at[7] {
            None => Action::View,
            Some(_) => match mapping.actions.action(get(7)) {
                Some(Some(a)) => a,
                Some(None) => continue,
                None => {
                    return Err(malformed(
                        file,
                        line,
                        format!(
                            "action {:?} is none of the mapping's words ({})",
                            get(7),
                            mapping.actions.known()
                        ),
                    ));
                }
            },
        };
        let required = |i: usize, what: &str| match text::id(get(i)) {
            0 => Err(malformed(
                file,
                line,
                format!("{what} {:?} is empty or 0", get(i)),
            )),
            id => Ok(id),
        };
        let time = get(2);
        let at_ms = match mapping.time_format {
            TimeFormat::Unix => time.parse::<i64>().ok().map(|s| s * 1000),
            TimeFormat::UnixMs => time.parse::<i64>().ok(),
            TimeFormat::Datetime => text::date_time_ms(time, mapping.utc_offset_minutes),
        }
        .filter(|t| *t >= 0)
        .ok_or_else(|| {
            malformed(
                file,
                line,
                format!(
                    "time {time:?} is not {}",
                    match mapping.time_format {
                        TimeFormat::Unix => "unix seconds",
                        TimeFormat::UnixMs => "unix milliseconds",
                        TimeFormat::Datetime => "a date or date-time (2019-10-01 00:00:04)",
                    }
                ),
            )
        })?;
        events.push(LogEvent {
            user: required(0, "user")?,
            item: required(1, "item")?,
            category: text::id(get(3)),
            brand: text::id(get(4)),
            shop: text::id(get(5)),
            price: text::price(get(6), file, line)?,
            action,
            at_ms,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_file_give_the_same_mapping() {
        let spec = Mapping::from_spec(
            "user=visitor, item=sku,time=ts,time_format=unix_ms,brand=maker,action=event,delimiter=semicolon",
        )
        .unwrap();
        let file = Mapping::from_toml(
            "user = \"visitor\"\nitem = \"sku\"\ntime = \"ts\"\ntime_format = \"unix_ms\"\n\
             brand = \"maker\"\naction = \"event\"\ndelimiter = \";\"\n",
        )
        .unwrap();
        assert_eq!(spec.delimiter(), Ok(';'));
        assert_eq!(
            Mapping {
                delimiter: ";".into(),
                ..spec
            },
            file
        );
    }

    #[test]
    fn a_platform_log_reads_through_its_mapping() {
        let m = Mapping::from_toml(
            "user = \"uid\"\nitem = \"sku\"\ntime = \"when\"\ntime_format = \"datetime\"\n\
             utc_offset_minutes = 60\ncategory = \"cat\"\nbrand = \"brand\"\nshop = \"store\"\n\
             price = \"eur\"\naction = \"what\"\n\
             [actions]\nview = [\"seen\"]\nbuy = [\"paid\"]\nignore = [\"hover\"]\n",
        )
        .unwrap();
        let text = "uid,when,sku,cat,brand,store,eur,what\n\
                    u-1,2024-03-01 10:00:00,A1,shoes,acme,7,19.90,SEEN\n\
                    u-1,2024-03-01 10:00:05,A1,shoes,acme,7,19.90,hover\n\
                    u-1,2024-03-01T09:00:00Z,A1,shoes,,,,paid\n";
        let events = parse(text.as_bytes(), "mine.csv", &m).unwrap();
        assert_eq!(events.len(), 2, "the ignored word drops its row");
        let (a, b) = (events[0], events[1]);
        assert_eq!(a.user, text::id("u-1"));
        assert_eq!((a.item, a.category), (text::id("A1"), text::id("shoes")));
        assert_eq!((a.brand, a.shop, a.price), (text::id("acme"), 7, 19.9));
        assert_eq!(a.action, Action::View);
        assert_eq!(a.at_ms, b.at_ms, "10:00 at UTC+1 is 09:00 UTC");
        assert_eq!((b.brand, b.shop, b.action), (0, 0, Action::Buy));
    }

    #[test]
    fn without_a_header_columns_are_numbers_and_rows_are_views() {
        let m = Mapping::from_spec("header=false,delimiter=tab,user=2,item=1,time=3").unwrap();
        let events = parse(b"10\t7\t1700000000\n11\t7\t1700000001\n", "t.tsv", &m).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!((events[1].user, events[1].item), (7, 11));
        assert_eq!(events[1].at_ms, 1_700_000_001_000);
        assert_eq!(events[1].action, Action::View);
        assert!(
            Mapping::from_spec("header=false,user=uid,item=1,time=3")
                .unwrap_err()
                .contains("numbered from 1")
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            Mapping::from_spec("user=a,item=b")
                .unwrap_err()
                .contains("missing field `time`")
        );
        assert!(
            Mapping::from_spec("user=a,item=b,time=c,colour=d")
                .unwrap_err()
                .contains("unknown field `colour`")
        );
        assert!(
            Mapping::from_spec("user=a,item=b,time=c,time_format=weeks")
                .unwrap_err()
                .contains("weeks")
        );
        let m = Mapping::from_spec("user=a,item=b,time=c,action=d").unwrap();
        let err = |text: &str| parse(text.as_bytes(), "m.csv", &m).unwrap_err().to_string();
        assert_eq!(
            err("a,b,x\n"),
            "m.csv:1: time: the header has no column \"c\" (it has a, b, x)"
        );
        assert!(
            err("a,b,c,d\n1,2,3,stare\n")
                .starts_with("m.csv:2: action \"stare\" is none of the mapping's words (view, pv,")
        );
        assert_eq!(
            err("a,b,c,d\n1,2,soon,view\n"),
            "m.csv:2: time \"soon\" is not unix seconds"
        );
        assert_eq!(
            err("a,b,c,d\n,2,3,view\n"),
            "m.csv:2: user \"\" is empty or 0"
        );
        assert_eq!(
            err("a,b,c,d\n1,2,3\n"),
            "m.csv:2: 3 fields, the mapping reads column 4 (the first line has 4)"
        );
    }
}
