//! Time: the server's clock and the calendar arithmetic that every other module shares.
//!
//! A leaf: it depends on nothing in the crate, so that state, audit, ranking stages, the
//! replay and the command line all take the time from here instead of from each other. Every
//! time in tactful is unix milliseconds (`i64`); dates are proleptic Gregorian, in UTC unless
//! an offset is given.

use std::time::{SystemTime, UNIX_EPOCH};

/// One second in milliseconds.
pub const SECOND_MS: i64 = 1_000;
/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day in milliseconds (civil days: no leap seconds).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The server's clock, unix milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month, day) of a day counted from 1970-01-01: the
/// inverse of [`days_from_civil`], for every place that prints a date.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `2026-11-23T20:39:15.630Z` for unix milliseconds (UTC).
pub fn rfc3339_millis(at_ms: i64) -> String {
    let (days, ms) = (at_ms.div_euclid(DAY_MS), at_ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        ms / HOUR_MS,
        ms / MINUTE_MS % 60,
        ms / SECOND_MS % 60,
        ms % SECOND_MS,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `2017-12-01 00:00`: unix milliseconds as a date and a time to the minute, at an offset
/// from UTC in minutes (0 for UTC), for tables and reports.
pub fn date_time_minutes(at_ms: i64, utc_offset_minutes: i32) -> String {
    let local = at_ms + i64::from(utc_offset_minutes) * MINUTE_MS;
    let (days, ms) = (local.div_euclid(DAY_MS), local.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        ms / HOUR_MS,
        ms / MINUTE_MS % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_415, 800_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_466_355_630),
            "2026-11-23T20:39:15.630Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn minutes_at_an_offset() {
        assert_eq!(date_time_minutes(0, 0), "1970-01-01 00:00");
        assert_eq!(date_time_minutes(1_795_466_355_630, 0), "2026-11-23 20:39");
        assert_eq!(
            date_time_minutes(1_795_466_355_630, 480),
            "2026-11-24 04:39"
        );
        assert_eq!(date_time_minutes(0, -60), "1969-12-31 23:00");
    }
}
