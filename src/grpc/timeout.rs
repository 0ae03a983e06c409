//! The caller's deadline, from the `grpc-timeout` request header (gRPC over HTTP/2 spec:
//! 1 to 8 ASCII digits followed by a unit, H M S m u n), counted from the call's arrival.
//!
//! The arrival is when the request's headers reached the server ([`Arrived`], stamped by
//! [`super::wire`]), which is also when tonic starts its own timer for the same header: a
//! handler that counted from when it started (after the body was received and decoded)
//! would find tonic's timer firing first, and the caller would get CANCELLED instead of a
//! fail-open answer.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// When the call's request headers arrived (in the request's extensions).
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// What is left at this moment of a caller's `timeout` counted from `arrived` (the whole of
/// it when the arrival is unknown); zero once it has passed.
pub fn left(timeout: Option<Duration>, arrived: Option<Arrived>) -> Option<Duration> {
    let timeout = timeout?;
    Some(match arrived {
        Some(Arrived(at)) => timeout.saturating_sub(at.elapsed()),
        None => timeout,
    })
}

pub fn caller_timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse(metadata.get("grpc-timeout")?.to_str().ok()?)
}

pub fn parse(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_malformed_values() {
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "12x", "-1m", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_time_left_counts_from_the_arrival() {
        let t = Some(Duration::from_millis(8));
        assert_eq!(left(t, None), t);
        assert_eq!(left(None, Some(Arrived(Instant::now()))), None);
        let long_ago = Instant::now() - Duration::from_millis(50);
        assert_eq!(left(t, Some(Arrived(long_ago))), Some(Duration::ZERO));
        let just_now = left(Some(Duration::from_secs(60)), Some(Arrived(Instant::now())));
        assert!(just_now.unwrap() > Duration::from_secs(59));
    }
}
