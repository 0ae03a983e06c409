//! The text handling every reader shares: reading a file, numbered lines, CSV fields (quoted
//! or not), ids from text, numbers and date-times, each failure an error naming the file and
//! the line.

use std::borrow::Cow;
use std::path::Path;

use siphasher::sip::SipHasher13;

use super::{LoadError, malformed};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, days_from_civil};

/// The whole file's bytes.
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The bytes as UTF-8 text, or an error at the first line that is not.
pub fn utf8<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, LoadError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        malformed(file, line, "not UTF-8 text")
    })
}

/// Non-blank lines with their 1-based numbers, without the line ending or surrounding
/// blanks.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, raw)| (n + 1, raw.trim()))
        .filter(|(_, raw)| !raw.is_empty())
}

/// The fields of one CSV line, trimmed. A field may be quoted (`"Sabrina, 1995"`), a doubled
/// quote inside standing for one; quoted fields cannot span lines.
pub fn fields(line: &str, delimiter: char) -> Vec<Cow<'_, str>> {
    if !line.contains('"') {
        return line
            .split(delimiter)
            .map(|f| Cow::Borrowed(f.trim()))
            .collect();
    }
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == delimiter && !quoted => {
                out.push(Cow::Owned(field.trim().to_owned()));
                field.clear();
            }
            c => field.push(c),
        }
    }
    out.push(Cow::Owned(field.trim().to_owned()));
    out
}

/// An id from a field: a positive integer is itself; any other non-empty text is hashed
/// (SipHash-1-3, fixed keys) to an id with the top bit set, so it cannot meet a source's own
/// numbers below 2^63. Empty text, `null` and `0` are 0, "unknown".
pub fn id(text: &str) -> u64 {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("null") {
        return 0;
    }
    if let Ok(n) = text.parse::<u64>() {
        return n;
    }
    use std::hash::Hasher as _;
    let mut h = SipHasher13::new_with_keys(0x7461_6374_6675_6c21, 0x6c6f_6769_6473_2121);
    h.write(text.as_bytes());
    h.finish() | 1 << 63
}

/// A positive integer id, or an error naming `what`.
pub fn positive(text: &str, file: &str, line: usize, what: &str) -> Result<u64, LoadError> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v != 0)
        .ok_or_else(|| {
            malformed(
                file,
                line,
                format!("{what} {text:?} is not a positive integer"),
            )
        })
}

/// A number of type `T`, or an error naming `what`.
pub fn number<T: std::str::FromStr>(
    text: &str,
    file: &str,
    line: usize,
    what: &str,
) -> Result<T, LoadError> {
    text.trim()
        .parse()
        .map_err(|_| malformed(file, line, format!("{what} {text:?} is not a valid number")))
}

/// A price: empty is 0 (unknown); otherwise a finite number ≥ 0.
pub fn price(text: &str, file: &str, line: usize) -> Result<f32, LoadError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0.0);
    }
    text.parse::<f32>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| malformed(file, line, format!("price {text:?} is not a number ≥ 0")))
}

/// Unix milliseconds of a civil date and time at an offset from UTC, if the date exists.
pub fn civil_ms(
    (y, m, d): (i64, u32, u32),
    (hh, mm, ss, ms): (i64, i64, i64, i64),
    utc_offset_minutes: i32,
) -> Option<i64> {
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d)
        || !(0..24).contains(&hh)
        || !(0..60).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    Some(
        days_from_civil(y, m, d) * DAY_MS + hh * HOUR_MS + mm * MINUTE_MS + ss * SECOND_MS + ms
            - i64::from(utc_offset_minutes) * MINUTE_MS,
    )
}

/// Unix milliseconds of `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.fff]]` or the same with a `T`
/// between, optionally ending in ` UTC` or `Z` (then the offset is ignored: the time is UTC);
/// otherwise the time is local at `utc_offset_minutes`.
pub fn date_time_ms(text: &str, utc_offset_minutes: i32) -> Option<i64> {
    let text = text.trim();
    let (text, offset) = match text.strip_suffix(" UTC").or_else(|| text.strip_suffix('Z')) {
        Some(t) => (t.trim_end(), 0),
        None => (text, utc_offset_minutes),
    };
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t.trim())),
        None => (text, None),
    };
    let mut d = date.split('-');
    let ymd = (
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<u32>().ok()?,
        d.next()?.parse::<u32>().ok()?,
    );
    if d.next().is_some() {
        return None;
    }
    let hms = match time {
        None => (0, 0, 0, 0),
        Some(t) => {
            let (t, frac) = t.split_once('.').unwrap_or((t, ""));
            let mut p = t.split(':');
            let hh = p.next()?.parse::<i64>().ok()?;
            let mm = p.next()?.parse::<i64>().ok()?;
            let ss = p.next().map_or(Some(0), |s| s.parse::<i64>().ok())?;
            if p.next().is_some() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
            (hh, mm, ss, ms)
        }
    };
    civil_ms(ymd, hms, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_plain_and_quoted() {
        assert_eq!(fields(" a, b ,c", ','), vec!["a", "b", "c"]);
        assert_eq!(
            fields(r#"11,"American President, The (1995)",Comedy"#, ','),
            vec!["11", "American President, The (1995)", "Comedy"]
        );
        assert_eq!(
            fields(r#"1,"Say ""Hi"" (2001)",,x"#, ','),
            vec!["1", r#"Say "Hi" (2001)"#, "", "x"]
        );
        assert_eq!(fields("a\tb", '\t'), vec!["a", "b"]);
    }

    #[test]
    fn ids_keep_numbers_and_hash_names() {
        assert_eq!(id("42"), 42);
        assert_eq!((id(""), id("NULL"), id("0")), (0, 0, 0));
        let samsung = id("samsung");
        assert!(samsung >= 1 << 63);
        assert_eq!(samsung, id(" samsung "));
        assert_ne!(samsung, id("apple"));
    }

    #[test]
    fn date_times_parse_at_their_offset() {
        assert_eq!(
            date_time_ms("2019-10-01 00:00:04 UTC", 480),
            Some(1_569_888_004_000)
        );
        assert_eq!(
            date_time_ms("2019-10-01T00:00:04.5Z", 0),
            Some(1_569_888_004_500)
        );
        assert_eq!(
            date_time_ms("2017-12-01", 480),
            Some(1_512_057_600_000),
            "local midnight in UTC+8"
        );
        assert_eq!(
            date_time_ms("2019-10-01 08:00", 480),
            Some(1_569_888_000_000)
        );
        for bad in [
            "2019-02-30",
            "2019-13-01",
            "2019-10-01 24:00",
            "yesterday",
            "",
        ] {
            assert_eq!(date_time_ms(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn prices_and_numbers_name_the_line() {
        assert_eq!(price("", "f", 1).unwrap(), 0.0);
        assert_eq!(price("35.79", "f", 1).unwrap(), 35.79);
        assert_eq!(
            price("-1", "f", 3).unwrap_err().to_string(),
            "f:3: price \"-1\" is not a number ≥ 0"
        );
        assert_eq!(
            positive("0", "f", 2, "user id").unwrap_err().to_string(),
            "f:2: user id \"0\" is not a positive integer"
        );
    }
}
