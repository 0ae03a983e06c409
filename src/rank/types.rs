//! The vocabulary of the core: data dimensions and consent, candidates, and what a ranking
//! returns. Plain data only; no stage logic lives here.

use std::fmt;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// A kind of user data that evidence for a recommendation can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DataDimension {
    Search = 1,
    Browsing = 2,
    Favorites = 3,
    Cart = 4,
    Purchases = 5,
    Location = 6,
    Social = 7,
    CrossPlatform = 8,
    Trending = 9,
    Editorial = 10,
}

impl DataDimension {
    /// Every dimension, in wire order.
    pub const ALL: [DataDimension; 10] = [
        Self::Search,
        Self::Browsing,
        Self::Favorites,
        Self::Cart,
        Self::Purchases,
        Self::Location,
        Self::Social,
        Self::CrossPlatform,
        Self::Trending,
        Self::Editorial,
    ];

    /// The dimensions made of the user's own data: the ones consent applies to.
    pub const PERSONAL: [DataDimension; 8] = [
        Self::Search,
        Self::Browsing,
        Self::Favorites,
        Self::Cart,
        Self::Purchases,
        Self::Location,
        Self::Social,
        Self::CrossPlatform,
    ];

    /// Trending and editorial evidence uses nobody's personal data, so no consent gates it.
    pub fn is_personal(self) -> bool {
        !matches!(self, Self::Trending | Self::Editorial)
    }

    /// The wire number (the proto enum value).
    pub fn number(self) -> i32 {
        self as i32
    }

    pub fn from_number(n: i32) -> Option<Self> {
        // `ALL` holds the dimensions in the order of their numbers, 1 to 10.
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        Self::ALL.get(i).copied()
    }

    /// The snake_case name used in files, flags and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Browsing => "browsing",
            Self::Favorites => "favorites",
            Self::Cart => "cart",
            Self::Purchases => "purchases",
            Self::Location => "location",
            Self::Social => "social",
            Self::CrossPlatform => "cross_platform",
            Self::Trending => "trending",
            Self::Editorial => "editorial",
        }
    }

    /// Accepts the snake_case name, with `-` for `_`, case-insensitively.
    pub fn from_name(s: &str) -> Option<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL.into_iter().find(|d| d.name() == wanted)
    }
}

impl fmt::Display for DataDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of data dimensions as a bit set: candidates carry one, so it must be small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DimensionSet(u16);

impl DimensionSet {
    pub const EMPTY: DimensionSet = DimensionSet(0);

    pub fn of(dims: impl IntoIterator<Item = DataDimension>) -> Self {
        let mut set = Self::EMPTY;
        for d in dims {
            set.insert(d);
        }
        set
    }

    pub fn insert(&mut self, d: DataDimension) {
        self.0 |= 1 << (d as u8);
    }

    pub fn remove(&mut self, d: DataDimension) {
        self.0 &= !(1 << (d as u8));
    }

    pub fn contains(self, d: DataDimension) -> bool {
        self.0 & (1 << (d as u8)) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bit set, for compact storage.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The set from [`DimensionSet::bits`]; unknown bits are dropped.
    pub fn from_bits(bits: u16) -> Self {
        Self(
            bits & DataDimension::ALL
                .iter()
                .fold(0, |m, d| m | 1 << (*d as u8)),
        )
    }

    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The members in wire order: the set bits, lowest first (a dimension's bit is its wire
    /// number), each a table lookup.
    pub fn iter(self) -> impl Iterator<Item = DataDimension> {
        const BY_BIT: [Option<DataDimension>; 16] = {
            let mut table = [None; 16];
            let mut i = 0;
            while i < DataDimension::ALL.len() {
                let d = DataDimension::ALL[i];
                table[d as usize] = Some(d);
                i += 1;
            }
            table
        };
        let mut bits = self.0;
        std::iter::from_fn(move || {
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(d) = BY_BIT[bit] {
                    return Some(d);
                }
            }
            None
        })
    }

    /// How many members.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The personal members (all but trending and editorial).
    pub fn personal(self) -> Self {
        self.difference(Self::of([
            DataDimension::Trending,
            DataDimension::Editorial,
        ]))
    }

    /// True when any member is a personal dimension.
    pub fn has_personal(self) -> bool {
        !self.personal().is_empty()
    }
}

impl FromIterator<DataDimension> for DimensionSet {
    fn from_iter<I: IntoIterator<Item = DataDimension>>(iter: I) -> Self {
        Self::of(iter)
    }
}

/// The consent in force for one ranking: the user's choices on top of the platform default,
/// restricted by the request's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consent {
    /// Personal dimensions that may be used. Non-personal ones are always usable.
    pub granted: DimensionSet,
    /// The master switch: off means no personal dimension may be used at all.
    pub personalization: bool,
}

impl Consent {
    /// Privacy by default: on-platform signals allowed; location, social and cross-platform
    /// signals need the user's opt-in. Personalisation on.
    pub fn privacy_default() -> Self {
        Self {
            granted: DimensionSet::of([
                DataDimension::Search,
                DataDimension::Browsing,
                DataDimension::Favorites,
                DataDimension::Cart,
                DataDimension::Purchases,
            ]),
            personalization: true,
        }
    }

    /// Whether evidence from `d` may be used now.
    pub fn allows(self, d: DataDimension) -> bool {
        !d.is_personal() || (self.personalization && self.granted.contains(d))
    }

    /// The members of `dims` this consent allows (bit operations: this runs per candidate).
    pub fn allowed(self, dims: DimensionSet) -> DimensionSet {
        let non_personal = DimensionSet::of([DataDimension::Trending, DataDimension::Editorial]);
        let usable = if self.personalization {
            self.granted.union(non_personal)
        } else {
            non_personal
        };
        dims.intersection(usable)
    }

    /// The same consent with `d` granted too.
    pub fn grant(mut self, d: DataDimension) -> Self {
        self.granted.insert(d);
        self
    }

    /// Applies a per-request override; it can only make consent stricter.
    pub fn restrict(self, denied: DimensionSet, personalization_off: bool) -> Self {
        Self {
            granted: self.granted.difference(denied),
            personalization: self.personalization && !personalization_off,
        }
    }
}

/// Where a user is in their relationship with the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    New,
    Active,
    Silent,
    Churned,
}

/// One upstream candidate, as the core sees it. Its embedding lives in
/// [`RankInput::embeddings`] so that all vectors of a request sit in one contiguous matrix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub item_id: u64,
    /// Upstream relevance, finite; higher is better.
    pub score: f32,
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    pub popularity: f32,
    /// Which kinds of user data produced this candidate.
    pub evidence: DimensionSet,
    pub sponsored: bool,
    pub title: String,
    /// The user's item that led here ("because you favourited X"); 0 = none.
    pub anchor_item_id: u64,
    pub anchor_title: String,
    /// When the cross-platform signal behind this candidate was observed, if the recommender
    /// knows; 0 = unknown. Young cross-platform evidence is "too soon" to act on.
    pub cross_platform_seen_ms: i64,
}

/// Reason texts come in these languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    En,
    ZhCn,
}

impl Locale {
    /// Maps a BCP 47 tag to a supported locale; anything unknown falls back to English.
    pub fn from_tag(tag: &str) -> Self {
        let lower = tag.trim().to_ascii_lowercase();
        if lower == "zh" || lower.starts_with("zh-cn") || lower.starts_with("zh-hans") {
            Self::ZhCn
        } else {
            Self::En
        }
    }
}

/// Everything one ranking needs from the request, already validated.
#[derive(Debug, Clone, Default)]
pub struct RankInput {
    /// In the upstream recommender's order.
    pub candidates: Vec<Candidate>,
    /// One row per candidate (same order), or `None` when the request carried no embeddings.
    pub embeddings: Option<Array2<f32>>,
    /// How many items to return; 0 = every survivor.
    pub k: usize,
    /// Record each item's score breakdown and list dropped items.
    pub explain: bool,
    pub locale: Locale,
    /// The request's clock, unix milliseconds.
    pub now_ms: i64,
    /// Where the list is shown, e.g. "home_feed": frequency caps are set per surface.
    pub surface: String,
    /// The caller's region, e.g. "CN-31". Location data: used only with location consent.
    pub region: String,
    /// The user's offset from UTC in minutes, for time-of-day and day-type rules.
    pub utc_offset_minutes: i32,
    /// This request's adjustments of the policy's diversity (validated against
    /// [`DiversityRequest`]'s bounds at the edge).
    pub diversity: DiversityRequest,
}

/// How the final order is chosen among the survivors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Maximal marginal relevance: similarity to the closest item already placed.
    Mmr,
    /// Determinantal point process: similarity to everything already placed, as volume.
    Dpp,
    /// By score alone (list caps and exploration slots still apply; repeats do not decay).
    Score,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mmr => "mmr",
            Self::Dpp => "dpp",
            Self::Score => "score",
        }
    }
}

/// A caller's adjustments of the policy's diversity for one request; `None` keeps the
/// policy's value. The bounds keep a request from asking for something the policy's author
/// never meant (e.g. half the list as exploration).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiversityRequest {
    pub method: Option<Method>,
    /// The diversity weight of MMR or DPP, within [`DiversityRequest::MAX_WEIGHT`].
    pub weight: Option<f32>,
    /// Share of positions for exploration, within [`DiversityRequest::MAX_EXPLORATION`].
    pub exploration_share: Option<f32>,
    /// Calibration weight, within [`DiversityRequest::MAX_CALIBRATION`].
    pub calibration: Option<f32>,
    /// Long-tail boost weight, within [`DiversityRequest::MAX_LONG_TAIL`].
    pub long_tail: Option<f32>,
}

impl DiversityRequest {
    /// Beyond 2 similarity outweighs any relevance difference: the list stops being a ranking.
    pub const MAX_WEIGHT: f32 = 2.0;
    /// Half the list is the most a caller may hand to exploration.
    pub const MAX_EXPLORATION: f32 = 0.5;
    pub const MAX_CALIBRATION: f32 = 1.0;
    /// A long-tail boost past 0.5 would reorder by unpopularity rather than fit.
    pub const MAX_LONG_TAIL: f32 = 0.5;

    /// The field at fault and why, for the first value out of bounds.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value, max) in [
            ("weight", self.weight, Self::MAX_WEIGHT),
            (
                "exploration_share",
                self.exploration_share,
                Self::MAX_EXPLORATION,
            ),
            ("calibration", self.calibration, Self::MAX_CALIBRATION),
            ("long_tail", self.long_tail, Self::MAX_LONG_TAIL),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=max).contains(&v))
            {
                return Err((field, format!("must be a number from 0 to {max}, got {v}")));
            }
        }
        Ok(())
    }
}

impl RankInput {
    /// The number of items the response may hold.
    pub fn limit(&self) -> usize {
        if self.k == 0 {
            self.candidates.len()
        } else {
            self.k.min(self.candidates.len())
        }
    }
}

/// The hard rule that removed a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropRule {
    NotInterested,
    BlockedBrand,
    BlockedShop,
    Consent,
    /// Shown too often on this surface lately.
    FrequencyCap,
    /// A substitute for, or a cheaper offer of, something the user just bought.
    CoolingOff,
    /// A sensitive category the user has not opted in to.
    Sensitive,
    /// A sponsored item held back while the user is overloaded.
    Overload,
}

impl DropRule {
    pub const ALL: [DropRule; 8] = [
        Self::NotInterested,
        Self::BlockedBrand,
        Self::BlockedShop,
        Self::Consent,
        Self::FrequencyCap,
        Self::CoolingOff,
        Self::Sensitive,
        Self::Overload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NotInterested => "not_interested",
            Self::BlockedBrand => "blocked_brand",
            Self::BlockedShop => "blocked_shop",
            Self::Consent => "consent",
            Self::FrequencyCap => "frequency_cap",
            Self::CoolingOff => "cooling_off",
            Self::Sensitive => "sensitive",
            Self::Overload => "overload",
        }
    }
}

/// A named part of an item's final score. Values are signed: penalties are negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// Upstream score, min-max normalised to [0, 1] within the request.
    Relevance,
    /// Ignored exposure of this item.
    Fatigue,
    /// The user asked for fewer items of this category or brand.
    FewerLikeThis,
    /// Similarity to items already placed above (MMR).
    Diversity,
    /// A substitute for something the user just bought (penalty mode of cooling-off).
    CoolingOff,
    /// Goes with something the user just bought.
    Complement,
    /// Part of the candidate's evidence is data the user has not consented to.
    ConsentDiscount,
    /// Cross-platform evidence younger than the policy's delay.
    TooSoon,
    /// Matches one of the user's interest tags.
    Interest,
    /// Popularity, weighted by the user's lifecycle stage (new and returning users).
    Popularity,
    /// A time-of-day, day-type or region rule of the policy.
    Context,
    /// Shown again to a silent or churned user: no repeated pushes.
    Repeat,
    /// A bounded boost for a less popular item that fits the user (against popularity bias).
    LongTail,
    /// Moves the list's category mix toward the user's interests (calibration).
    Calibration,
    /// Lowered to its place in the list: a list cap or an exploration slot put a weaker item
    /// above it, and scores never increase down the list.
    Placement,
}

impl Component {
    /// The components that lower an item: what the avoidance counters count.
    pub const PENALTIES: [Component; 6] = [
        Self::Fatigue,
        Self::FewerLikeThis,
        Self::CoolingOff,
        Self::ConsentDiscount,
        Self::TooSoon,
        Self::Repeat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Relevance => "relevance",
            Self::Fatigue => "fatigue",
            Self::FewerLikeThis => "fewer_like_this",
            Self::Diversity => "diversity",
            Self::CoolingOff => "cooling_off",
            Self::Complement => "complement",
            Self::ConsentDiscount => "consent_discount",
            Self::TooSoon => "too_soon",
            Self::Interest => "interest",
            Self::Popularity => "popularity",
            Self::Context => "context",
            Self::Repeat => "repeat",
            Self::LongTail => "long_tail",
            Self::Calibration => "calibration",
            Self::Placement => "placement",
        }
    }
}

/// The machine code of a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    Relevant,
    BecauseYouViewed,
    BecauseYouFavorited,
    BecauseYouCarted,
    BecauseYouBought,
    BecauseYouSearched,
    BasedOnActivity,
    Trending,
    Editorial,
    Diversity,
    Upstream,
    Nearby,
    Social,
    /// Goes with something the user just bought.
    Complement,
    /// Matches one of the user's interest tags.
    Interest,
    /// A time-of-day or day-type rule ("popular this evening").
    Context,
    /// An exploration slot: a good item outside the user's usual categories.
    Exploration,
}

/// Why an item is shown, in plain words, with the data it relied on.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: ReasonCode,
    pub text: String,
    /// Never holds a dimension the user has not consented to.
    pub dimensions: DimensionSet,
}

/// One item of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedItem {
    /// Position in [`RankInput::candidates`].
    pub index: usize,
    pub item_id: u64,
    /// The value that ordered the list; non-increasing down the list.
    pub score: f32,
    pub reason: Reason,
    /// Empty unless the input asked to explain.
    pub breakdown: Vec<(Component, f32)>,
}

/// A candidate removed by a hard rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub item_id: u64,
    pub rule: DropRule,
    pub detail: String,
}

/// What the avoidance rules did in one ranking: candidates each hard rule removed and
/// candidates each penalty lowered. Kept for every ranking (not only when explaining) so that
/// metrics and the replay evaluation can count avoidance next to relevance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Avoidance {
    /// Indexed like [`DropRule::ALL`].
    pub dropped: [u32; DropRule::ALL.len()],
    /// Indexed like [`Component::PENALTIES`].
    pub penalised: [u32; Component::PENALTIES.len()],
}

impl Avoidance {
    pub fn dropped_by(&self, rule: DropRule) -> u32 {
        let i = DropRule::ALL.iter().position(|r| *r == rule);
        i.map_or(0, |i| self.dropped[i])
    }

    pub fn penalised_by(&self, component: Component) -> u32 {
        let i = Component::PENALTIES.iter().position(|c| *c == component);
        i.map_or(0, |i| self.penalised[i])
    }
}

/// What the pipeline returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub items: Vec<RankedItem>,
    /// Empty unless the input asked to explain.
    pub dropped: Vec<Dropped>,
    /// How many items this user should be shown now.
    pub suggested_k: usize,
    /// `None` when personalisation is off: the stage is derived from the user's activity.
    pub lifecycle: Option<LifecycleStage>,
    pub avoidance: Avoidance,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_lists_its_members_in_wire_order_and_knows_the_personal_ones() {
        for bits in 0..1u16 << DataDimension::ALL.len() {
            let members: Vec<DataDimension> = DataDimension::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, d)| d)
                .collect();
            let set = DimensionSet::of(members.iter().copied());
            assert_eq!(set.iter().collect::<Vec<_>>(), members);
            assert_eq!(set.len(), members.len());
            let personal: Vec<_> = members
                .iter()
                .copied()
                .filter(|d| d.is_personal())
                .collect();
            assert_eq!(set.personal().iter().collect::<Vec<_>>(), personal);
            assert_eq!(set.has_personal(), !personal.is_empty());
        }
    }

    #[test]
    fn dimension_names_and_numbers_round_trip() {
        for d in DataDimension::ALL {
            assert_eq!(DataDimension::from_name(d.name()), Some(d));
            assert_eq!(DataDimension::from_number(d.number()), Some(d));
        }
        assert_eq!(
            DataDimension::from_name("Cross-Platform"),
            Some(DataDimension::CrossPlatform)
        );
        for n in [0, -1, 11, i32::MIN, i32::MAX] {
            assert_eq!(DataDimension::from_number(n), None, "{n}");
        }
    }

    #[test]
    fn privacy_default_denies_off_platform_signals() {
        let c = Consent::privacy_default();
        assert!(c.allows(DataDimension::Browsing));
        assert!(!c.allows(DataDimension::CrossPlatform));
        assert!(!c.allows(DataDimension::Location));
        assert!(c.allows(DataDimension::Trending));
    }

    #[test]
    fn override_only_makes_consent_stricter() {
        let c = Consent::privacy_default();
        let r = c.restrict(DimensionSet::of([DataDimension::Browsing]), false);
        assert!(!r.allows(DataDimension::Browsing));
        assert!(r.allows(DataDimension::Search));
        let off = c.restrict(DimensionSet::EMPTY, true);
        assert!(!off.allows(DataDimension::Search));
        assert!(off.allows(DataDimension::Editorial));
    }

    #[test]
    fn allowed_agrees_with_allows_for_every_dimension() {
        for consent in [
            Consent::privacy_default(),
            Consent::privacy_default().restrict(DimensionSet::EMPTY, true),
        ] {
            let all = DimensionSet::of(DataDimension::ALL);
            let expected: DimensionSet = DataDimension::ALL
                .into_iter()
                .filter(|d| consent.allows(*d))
                .collect();
            assert_eq!(consent.allowed(all), expected);
        }
    }

    #[test]
    fn locale_tags_fall_back_to_english() {
        assert_eq!(Locale::from_tag("zh-CN"), Locale::ZhCn);
        assert_eq!(Locale::from_tag("zh-Hans-CN"), Locale::ZhCn);
        assert_eq!(Locale::from_tag("fr-FR"), Locale::En);
        assert_eq!(Locale::from_tag(""), Locale::En);
    }
}
