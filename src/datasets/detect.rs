//! Which reader a log needs, decided in one place from the path and the first line:
//!
//! | path | first line | format |
//! |---|---|---|
//! | folder with `u.data`, or `u.data` | — | MovieLens 100K |
//! | folder with `ratings.csv` and `movies.csv`, or either file | `userId,movieId,rating,timestamp` | MovieLens "latest" |
//! | file (or folder with `events.csv`) | `event_time,event_type,product_id,…` | REES46 / Open CDP |
//! | file (or folder with `user_log_format1.csv`) | `user_id,item_id,cat_id,seller_id,…` or `…,merchant_id,brand_id,month,day,action,…` | Tmall IJCAI-15 |
//! | file (or folder with `UserBehavior.csv`) | no header, 5 fields, numbers around a `pv`/`cart`/`fav`/`buy` | Taobao UserBehavior |
//!
//! Anything else is an error naming the file, what its first line is, and what was expected;
//! a platform's own CSV is never guessed: it is read through a column mapping
//! ([`super::generic`]).

use std::io::Read as _;
use std::path::Path;

use super::{LoadError, malformed, rees46, taobao, text, tmall};

/// A log format the replay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Taobao,
    Rees46,
    Tmall,
    MovieLens100k,
    MovieLensLatest,
    /// A platform's own CSV, through a column mapping.
    Csv,
}

impl Format {
    /// The name reports and `--format` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Taobao => "taobao",
            Self::Rees46 => "rees46",
            Self::Tmall => "tmall",
            Self::MovieLens100k => "movielens-100k",
            Self::MovieLensLatest => "movielens-latest",
            Self::Csv => "csv",
        }
    }

    /// The source to cite with results on it.
    pub fn source(self) -> &'static str {
        match self {
            Self::Taobao => "Taobao UserBehavior (Zhu et al., KDD 2018)",
            Self::Rees46 => "REES46 / Open CDP eCommerce behavior data (REES46 Marketing Platform)",
            Self::Tmall => "Tmall IJCAI-15 user logs (Alibaba Tianchi)",
            Self::MovieLens100k | Self::MovieLensLatest => {
                "MovieLens (Harper & Konstan, ACM TiiS 2015)"
            }
            Self::Csv => "the platform's own log",
        }
    }
}

const EXPECTED: &str = "expected a Taobao UserBehavior file (no header; user_id,item_id,category_id,behavior,unix_ts), \
a REES46 events.csv (header event_time,event_type,product_id,...), \
a Tmall user_log_format1.csv (header user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type, \
or user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,...), \
or a MovieLens folder (u.data, or ratings.csv with movies.csv); \
for any other log, give --format csv with --columns or --mapping (docs/logs.md)";

/// The format of the log at `path`.
pub fn detect(path: &Path) -> Result<Format, LoadError> {
    let shown = path.display().to_string();
    if path.is_dir() {
        if path.join("u.data").is_file() {
            return Ok(Format::MovieLens100k);
        }
        if path.join("ratings.csv").is_file() && path.join("movies.csv").is_file() {
            return Ok(Format::MovieLensLatest);
        }
        for name in [rees46::FILE_NAME, tmall::FILE_NAME, taobao::FILE_NAME] {
            if path.join(name).is_file() {
                return detect(&path.join(name));
            }
        }
        return Err(malformed(
            &shown,
            0,
            format!("a folder with no log file of a known name in it: {EXPECTED}"),
        ));
    }
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().to_ascii_lowercase());
    if name == "u.data" {
        return Ok(Format::MovieLens100k);
    }
    let line = first_line(path)?;
    let names: Vec<String> = text::fields(&line, ',')
        .iter()
        .map(|f| f.to_ascii_lowercase())
        .collect();
    let starts =
        |cols: &[&str]| names.len() >= cols.len() && names.iter().zip(cols).all(|(a, b)| a == b);
    let has = |col: &str| names.iter().any(|n| n == col);
    if has("event_time") && has("event_type") && has("product_id") {
        return Ok(Format::Rees46);
    }
    if tmall::layout(&line).is_some() {
        return Ok(Format::Tmall);
    }
    if starts(&["userid", "movieid", "rating", "timestamp"])
        || starts(&["movieid", "title", "genres"])
    {
        return Ok(Format::MovieLensLatest);
    }
    let numeric = |i: usize| names.get(i).is_some_and(|f| f.parse::<u64>().is_ok());
    if names.len() == 5 && numeric(0) && numeric(1) && numeric(2) && numeric(4) {
        // The behaviour column is checked by the reader, which names the line if it is wrong.
        return Ok(Format::Taobao);
    }
    let shown_line: String = line.chars().take(120).collect();
    Err(malformed(
        &shown,
        0,
        format!("cannot tell the log's format from its first line {shown_line:?}: {EXPECTED}"),
    ))
}

/// The first non-blank line (from the first 64 KiB), without a byte-order mark.
fn first_line(path: &Path) -> Result<String, LoadError> {
    let mut head = Vec::with_capacity(1 << 16);
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 16).read_to_end(&mut head))
        .map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&head);
    let text = text.trim_start_matches('\u{feff}');
    Ok(text::lines(text)
        .next()
        .map_or(String::new(), |(_, l)| l.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_told_by_its_path_or_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cases = [
            ("tb.csv", "1,2,3,pv,1511544070\n", Format::Taobao),
            (
                "r.csv",
                "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n",
                Format::Rees46,
            ),
            (
                "t1.csv",
                "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n",
                Format::Tmall,
            ),
            (
                "t2.csv",
                "\u{feff}user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,age_range,gender,province\n",
                Format::Tmall,
            ),
            (
                "ratings.csv",
                "userId,movieId,rating,timestamp\n",
                Format::MovieLensLatest,
            ),
            ("u.data", "196\t242\t3\t881250949\n", Format::MovieLens100k),
        ];
        for (name, text, format) in cases {
            assert_eq!(detect(&put(name, text)).unwrap(), format, "{name}");
        }
        // A folder is told by the files in it.
        let ml = dir.path().join("ml");
        std::fs::create_dir(&ml).unwrap();
        std::fs::write(ml.join("u.data"), "").unwrap();
        assert_eq!(detect(&ml).unwrap(), Format::MovieLens100k);
        let rees = dir.path().join("rees");
        std::fs::create_dir(&rees).unwrap();
        std::fs::write(rees.join("events.csv"), cases[1].1).unwrap();
        assert_eq!(detect(&rees).unwrap(), Format::Rees46);
    }

    #[test]
    fn an_unknown_log_is_an_error_naming_file_line_and_expectations() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mine.csv");
        std::fs::write(&p, "\n\nvisitor,sku,ts\n1,2,3\n").unwrap();
        let err = detect(&p).unwrap_err().to_string();
        assert!(err.starts_with(&format!(
            "{}: cannot tell the log's format from its first line \"visitor,sku,ts\": expected a Taobao",
            p.display()
        )));
        assert!(err.ends_with("give --format csv with --columns or --mapping (docs/logs.md)"));
        let err = detect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("a folder with no log file of a known name"),
            "{err}"
        );
        assert!(matches!(
            detect(&dir.path().join("nope.csv")),
            Err(LoadError::Io { .. })
        ));
    }
}
