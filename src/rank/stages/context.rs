//! Context rules: the policy boosts categories by time of day, day type (weekday, weekend,
//! holiday) and region, e.g. "hot-pot ingredients on winter evenings", "gifts before a
//! holiday". Time is the user's local time (`context.utc_offset_minutes`); the region is
//! location data, so a region rule applies only with the user's location consent.

use ndarray::Array1;
use serde::Deserialize;

use crate::rank::stage::{Cause, Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Component, DataDimension, DimensionSet, Locale, ReasonCode};
use crate::time::{DAY_MS, days_from_civil};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    Weekday,
    Weekend,
    Holiday,
}

/// One rule: when every condition it sets holds, its categories get `boost`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextRule {
    pub categories: Vec<u64>,
    /// On the [0, 1] relevance scale.
    pub boost: f32,
    /// Local hours `[from, to)`, 0-24; `from > to` wraps past midnight. Absent = any time.
    #[serde(default)]
    pub hours: Option<[u8; 2]>,
    /// Empty = any day.
    #[serde(default)]
    pub days: Vec<DayType>,
    /// The request's `context.region` values the rule is for (case-insensitive). Empty =
    /// anywhere; otherwise it needs location consent.
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextParams {
    /// Dates (`YYYY-MM-DD`, the user's local calendar) that count as holidays. None by
    /// default: holidays are the platform's market's.
    pub holidays: Vec<String>,
    /// None by default: which categories suit which moment is the platform's knowledge.
    pub rules: Vec<ContextRule>,
}

fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let days_in_month = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max = if m == 2 && leap {
        29
    } else {
        *days_in_month.get(m.checked_sub(1)? as usize)?
    };
    ((1..=max).contains(&d) && (1..=9999).contains(&y)).then(|| days_from_civil(y, m, d))
}

impl ContextParams {
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, h) in self.holidays.iter().enumerate() {
            if parse_date(h).is_none() {
                return Err((
                    format!("context.holidays[{i}]"),
                    format!("{h:?} is not a date like 2026-10-01"),
                ));
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            let field = |f: &str| format!("context.rules[{i}].{f}");
            if r.categories.is_empty() || r.categories.contains(&0) {
                return Err((field("categories"), "must list category ids (not 0)".into()));
            }
            if !(r.boost.is_finite() && (0.0..=10.0).contains(&r.boost)) {
                return Err((field("boost"), "must be a number from 0 to 10".into()));
            }
            if let Some([from, to]) = r.hours
                && (from > 24 || to > 24 || from == to)
            {
                return Err((
                    field("hours"),
                    "must be two different hours from 0 to 24".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The rules, ready to run.
pub struct Context {
    rules: Vec<ContextRule>,
    /// Sorted day numbers.
    holidays: Vec<i64>,
}

impl Context {
    /// From validated params.
    pub fn new(p: &ContextParams) -> Self {
        let mut holidays: Vec<i64> = p.holidays.iter().filter_map(|h| parse_date(h)).collect();
        holidays.sort_unstable();
        Self {
            rules: p.rules.clone(),
            holidays,
        }
    }

    fn applies(&self, r: &ContextRule, hour: u8, day: DayType, region_ok: bool) -> bool {
        let hour_ok = match r.hours {
            None => true,
            Some([from, to]) if from < to => (from..to).contains(&hour),
            Some([from, to]) => hour >= from || hour < to,
        };
        hour_ok
            && (r.days.is_empty() || r.days.contains(&day))
            && (r.regions.is_empty() || region_ok)
    }
}

impl Stage for Context {
    fn name(&self) -> &'static str {
        "context"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let input = slate.input;
        if self.rules.is_empty() {
            return Ok(());
        }
        let local = input.now_ms + i64::from(input.utc_offset_minutes) * 60_000;
        let day_number = local.div_euclid(DAY_MS);
        let hour = (local.rem_euclid(DAY_MS) / 3_600_000) as u8;
        // 1970-01-01 was a Thursday: day 0 is weekday 4 (0 = Sunday).
        let weekday = (day_number + 4).rem_euclid(7);
        let day = if self.holidays.binary_search(&day_number).is_ok() {
            DayType::Holiday
        } else if weekday == 0 || weekday == 6 {
            DayType::Weekend
        } else {
            DayType::Weekday
        };
        let location = slate.user.consent.allows(DataDimension::Location);
        let region = input.region.trim();
        let mut boost = Array1::<f32>::zeros(input.candidates.len());
        for rule in &self.rules {
            let region_ok = location
                && !region.is_empty()
                && rule.regions.iter().any(|r| r.eq_ignore_ascii_case(region));
            if !self.applies(rule, hour, day, region_ok) {
                continue;
            }
            for (i, c) in input.candidates.iter().enumerate() {
                if c.category_id == 0 || !rule.categories.contains(&c.category_id) {
                    continue;
                }
                if rule.boost > boost[i] {
                    boost[i] = rule.boost;
                }
                slate.offer_cause(i, cause(rule, day, rule.boost, input.locale));
            }
        }
        slate.add_component(Component::Context, boost);
        Ok(())
    }
}

fn cause(rule: &ContextRule, day: DayType, strength: f32, locale: Locale) -> Cause {
    let (code, dims, en, zh) = if !rule.regions.is_empty() {
        (
            ReasonCode::Nearby,
            DimensionSet::of([DataDimension::Location]),
            "Popular in your region",
            "你所在地区的热门",
        )
    } else if rule.hours.is_none() && day == DayType::Holiday {
        (
            ReasonCode::Context,
            DimensionSet::EMPTY,
            "Popular for the holiday",
            "节日热门",
        )
    } else if rule.hours.is_none() && day == DayType::Weekend {
        (
            ReasonCode::Context,
            DimensionSet::EMPTY,
            "Popular at the weekend",
            "周末热门",
        )
    } else {
        (
            ReasonCode::Context,
            DimensionSet::EMPTY,
            "Popular at this time of day",
            "这个时段很受欢迎",
        )
    };
    Cause {
        code,
        text: match locale {
            Locale::En => en,
            Locale::ZhCn => zh,
        }
        .into(),
        dimensions: dims,
        strength,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, RankInput};
    use crate::rank::user::UserView;

    fn run(
        params: &ContextParams,
        now_ms: i64,
        offset: i32,
        region: &str,
        consent: Consent,
    ) -> (Vec<f32>, Option<ReasonCode>) {
        let input = RankInput {
            candidates: [(1, 5), (2, 6)]
                .map(|(item_id, category_id)| Candidate {
                    item_id,
                    category_id,
                    ..Default::default()
                })
                .to_vec(),
            now_ms,
            utc_offset_minutes: offset,
            region: region.into(),
            ..Default::default()
        };
        let user = UserView::unknown(consent);
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Context::new(params)
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        (
            slate.score.to_vec(),
            slate.causes[0].as_ref().map(|c| c.code),
        )
    }

    #[test]
    fn dates_and_weekdays_are_computed_in_local_time() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            parse_date("2026-11-23"),
            Some(days_from_civil(2026, 11, 23))
        );
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        // 2026-11-22 is a Sunday. 20:00 in Shanghai (UTC+8) is 12:00 UTC.
        let sunday_8pm_utc8 = days_from_civil(2026, 11, 22) * DAY_MS + 12 * 3_600_000;
        let evening_weekend = ContextParams {
            rules: vec![ContextRule {
                categories: vec![5],
                boost: 0.2,
                hours: Some([18, 23]),
                days: vec![DayType::Weekend],
                regions: vec![],
            }],
            ..Default::default()
        };
        let consent = Consent::privacy_default();
        let (score, code) = run(&evening_weekend, sunday_8pm_utc8, 480, "", consent);
        assert_eq!((score, code), (vec![0.2, 0.0], Some(ReasonCode::Context)));
        // The same instant in UTC is noon: no boost.
        assert_eq!(
            run(&evening_weekend, sunday_8pm_utc8, 0, "", consent).0,
            vec![0.0, 0.0]
        );
        // Declared a holiday, the Sunday is no longer a weekend day.
        let holiday = ContextParams {
            holidays: vec!["2026-11-22".into()],
            ..evening_weekend
        };
        assert_eq!(
            run(&holiday, sunday_8pm_utc8, 480, "", consent).0,
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn region_rules_need_location_consent() {
        let p = ContextParams {
            rules: vec![ContextRule {
                categories: vec![6],
                boost: 0.1,
                hours: None,
                days: vec![],
                regions: vec!["CN-31".into()],
            }],
            ..Default::default()
        };
        let denied = Consent::privacy_default();
        assert_eq!(run(&p, 0, 0, "cn-31", denied).0, vec![0.0, 0.0]);
        let granted = denied.grant(DataDimension::Location);
        assert_eq!(run(&p, 0, 0, "cn-31", granted).0, vec![0.0, 0.1]);
        assert_eq!(run(&p, 0, 0, "CN-44", granted).0, vec![0.0, 0.0]);
    }

    #[test]
    fn rules_are_validated() {
        let p = ContextParams {
            holidays: vec!["10/01/2026".into()],
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "context.holidays[0]");
    }
}
