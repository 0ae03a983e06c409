//! Reasons: each item says in plain words why it is shown, in the request's locale (English and
//! Simplified Chinese), with the data dimensions it relied on. A reason only ever cites
//! dimensions the user has consented to: evidence from anything else is invisible here.
//!
//! Priority, strongest cause first: an exploration slot ("something new for you": the item
//! is there because it is outside the user's usual categories); a complement of a recent
//! purchase ("goes with your new X"); the user's own item that led here ("because you favourited X", "people who bought X
//! also bought this"); the strongest boost a stage offered (an interest tag, a context rule,
//! popularity for a new user); a diversity promotion ("a change from similar items"); nearby or
//! social popularity; other personal activity; trending; editorial; plain relevance.
//!
//! A dropped candidate gets its words here too ([`drop_detail`], English only: it is for the
//! platform's engineers, not the user); the policy hands them to the pipeline.

use super::cooling_off;
use crate::rank::stage::{Cause, Deadline, Interrupted, Pick, Slate, Stage};
use crate::rank::types::{
    Candidate, Consent, DataDimension as D, DimensionSet, DropRule, Locale, RankInput, Reason,
    ReasonCode,
};
use crate::rank::user::UserView;

pub struct Explain;

impl Stage for Explain {
    fn name(&self) -> &'static str {
        "explain"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (input, consent) = (slate.input, slate.user.consent);
        slate.reasons = slate
            .picks
            .iter()
            .map(|pick| {
                let c = &input.candidates[pick.index];
                let cause = slate.causes[pick.index].as_ref();
                reason_with(c, pick, cause, consent, input.locale)
            })
            .collect();
        Ok(())
    }
}

/// The anchor dimensions, strongest signal of intent first.
const ANCHORS: [(D, ReasonCode); 5] = [
    (D::Purchases, ReasonCode::BecauseYouBought),
    (D::Cart, ReasonCode::BecauseYouCarted),
    (D::Favorites, ReasonCode::BecauseYouFavorited),
    (D::Browsing, ReasonCode::BecauseYouViewed),
    (D::Search, ReasonCode::BecauseYouSearched),
];

/// The reason for a pick, given the strongest boost's cause a stage offered for it.
pub fn reason_with(
    c: &Candidate,
    pick: &Pick,
    cause: Option<&Cause>,
    consent: Consent,
    locale: Locale,
) -> Reason {
    let as_reason = |cause: &Cause| Reason {
        code: cause.code,
        text: cause.text.clone().into_owned(),
        // Defence in depth: a stage offers only consented dimensions.
        dimensions: consent.allowed(cause.dimensions),
    };
    match cause {
        _ if pick.explored => Reason {
            code: ReasonCode::Exploration,
            text: fixed_text(ReasonCode::Exploration, locale).to_owned(),
            dimensions: DimensionSet::EMPTY,
        },
        Some(cause) if cause.code == ReasonCode::Complement => as_reason(cause),
        Some(cause) if !has_usable_anchor(c, consent) => as_reason(cause),
        _ => reason_for(c, pick, consent, locale),
    }
}

fn has_usable_anchor(c: &Candidate, consent: Consent) -> bool {
    let has_anchor = c.anchor_item_id != 0 || !c.anchor_title.is_empty();
    has_anchor
        && ANCHORS
            .iter()
            .any(|(d, _)| consent.allowed(c.evidence).contains(*d))
}

/// The reason for a pick from its evidence alone.
pub fn reason_for(c: &Candidate, pick: &Pick, consent: Consent, locale: Locale) -> Reason {
    let usable = consent.allowed(c.evidence);
    let has_anchor = c.anchor_item_id != 0 || !c.anchor_title.is_empty();
    if has_anchor && let Some((dim, code)) = ANCHORS.into_iter().find(|(d, _)| usable.contains(*d))
    {
        return Reason {
            code,
            text: anchor_text(code, &c.anchor_title, locale),
            dimensions: DimensionSet::of([dim]),
        };
    }
    // A promotion is "a change from similar items" only if diversity lifted the item: one
    // whose own diversity term is negative was placed despite it (the items passed over were
    // penalised more), and the breakdown would contradict the reason.
    let (code, dimensions) = if pick.promoted && pick.diversity >= 0.0 {
        (ReasonCode::Diversity, DimensionSet::EMPTY)
    } else if usable.contains(D::Location) {
        (ReasonCode::Nearby, DimensionSet::of([D::Location]))
    } else if usable.contains(D::Social) {
        (ReasonCode::Social, DimensionSet::of([D::Social]))
    } else if usable.has_personal() {
        (ReasonCode::BasedOnActivity, usable.personal())
    } else if usable.contains(D::Trending) {
        (ReasonCode::Trending, DimensionSet::of([D::Trending]))
    } else if usable.contains(D::Editorial) {
        (ReasonCode::Editorial, DimensionSet::of([D::Editorial]))
    } else {
        (ReasonCode::Relevant, DimensionSet::EMPTY)
    };
    let text = match code {
        ReasonCode::BasedOnActivity => activity_text(dimensions, locale),
        _ => fixed_text(code, locale).to_owned(),
    };
    Reason {
        code,
        text,
        dimensions,
    }
}

/// The reason of an item returned in upstream order (identity policy, fail-open).
pub fn upstream_reason(locale: Locale) -> Reason {
    Reason {
        code: ReasonCode::Upstream,
        text: fixed_text(ReasonCode::Upstream, locale).to_owned(),
        dimensions: DimensionSet::EMPTY,
    }
}

fn fixed_text(code: ReasonCode, locale: Locale) -> &'static str {
    use ReasonCode as R;
    match (locale, code) {
        (Locale::En, R::Exploration) => "Something new for you",
        (Locale::En, R::Diversity) => "A change from similar items",
        (Locale::En, R::Nearby) => "Popular in your region",
        (Locale::En, R::Social) => "Popular with people you follow",
        (Locale::En, R::Trending) => "Popular right now",
        (Locale::En, R::Editorial) => "Picked by our editors",
        (Locale::En, _) => "Recommended for you",
        (Locale::ZhCn, R::Exploration) => "给你点新鲜的",
        (Locale::ZhCn, R::Diversity) => "换换口味",
        (Locale::ZhCn, R::Nearby) => "你所在地区的热门",
        (Locale::ZhCn, R::Social) => "你关注的人喜欢",
        (Locale::ZhCn, R::Trending) => "当下热门",
        (Locale::ZhCn, R::Editorial) => "编辑精选",
        (Locale::ZhCn, _) => "为你推荐",
    }
}

fn anchor_text(code: ReasonCode, title: &str, locale: Locale) -> String {
    use ReasonCode as R;
    let title = title.trim();
    if title.is_empty() {
        let generic = match (locale, code) {
            (Locale::En, R::BecauseYouBought) => {
                "People who bought what you bought also bought this"
            }
            (Locale::En, R::BecauseYouCarted) => "Because of an item in your cart",
            (Locale::En, R::BecauseYouFavorited) => "Because of an item you favourited",
            (Locale::En, R::BecauseYouViewed) => "Because of an item you viewed",
            (Locale::En, _) => "Because of your searches",
            (Locale::ZhCn, R::BecauseYouBought) => "买过同款的人也买了",
            (Locale::ZhCn, R::BecauseYouCarted) => "因为你购物车里的商品",
            (Locale::ZhCn, R::BecauseYouFavorited) => "因为你收藏的商品",
            (Locale::ZhCn, R::BecauseYouViewed) => "因为你浏览过的商品",
            (Locale::ZhCn, _) => "因为你的搜索记录",
        };
        return generic.to_owned();
    }
    match (locale, code) {
        (Locale::En, R::BecauseYouBought) => {
            format!("People who bought {title} also bought this")
        }
        (Locale::En, R::BecauseYouCarted) => format!("Because you added {title} to your cart"),
        (Locale::En, R::BecauseYouFavorited) => format!("Because you favourited {title}"),
        (Locale::En, R::BecauseYouViewed) => format!("Because you viewed {title}"),
        (Locale::En, _) => format!("Because you searched for {title}"),
        (Locale::ZhCn, R::BecauseYouBought) => format!("买了{title}的人也买了"),
        (Locale::ZhCn, R::BecauseYouCarted) => format!("因为你把{title}加入了购物车"),
        (Locale::ZhCn, R::BecauseYouFavorited) => format!("因为你收藏了{title}"),
        (Locale::ZhCn, R::BecauseYouViewed) => format!("因为你浏览过{title}"),
        (Locale::ZhCn, _) => format!("因为你搜索过{title}"),
    }
}

fn dimension_words(d: D, locale: Locale) -> &'static str {
    match (locale, d) {
        (Locale::En, D::Search) => "searches",
        (Locale::En, D::Browsing) => "browsing",
        (Locale::En, D::Favorites) => "favourites",
        (Locale::En, D::Cart) => "cart",
        (Locale::En, D::Purchases) => "purchases",
        (Locale::En, D::Location) => "location",
        (Locale::En, D::Social) => "social connections",
        (Locale::En, D::CrossPlatform) => "activity on other apps",
        (Locale::En, D::Trending) => "trends",
        (Locale::En, D::Editorial) => "editors' picks",
        (Locale::ZhCn, D::Search) => "搜索记录",
        (Locale::ZhCn, D::Browsing) => "浏览记录",
        (Locale::ZhCn, D::Favorites) => "收藏",
        (Locale::ZhCn, D::Cart) => "购物车",
        (Locale::ZhCn, D::Purchases) => "购买记录",
        (Locale::ZhCn, D::Location) => "位置",
        (Locale::ZhCn, D::Social) => "社交关系",
        (Locale::ZhCn, D::CrossPlatform) => "其他应用中的活动",
        (Locale::ZhCn, D::Trending) => "热门趋势",
        (Locale::ZhCn, D::Editorial) => "编辑精选",
    }
}

fn activity_text(dims: DimensionSet, locale: Locale) -> String {
    let words: Vec<&str> = dims.iter().map(|d| dimension_words(d, locale)).collect();
    match locale {
        Locale::En => {
            let list = match words.as_slice() {
                [] => String::new(),
                [one] => (*one).to_owned(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
            };
            format!("Based on your {list}")
        }
        Locale::ZhCn => format!("根据你的{}", words.join("、")),
    }
}

/// Plain words for a dropped candidate, shown only when a request asks to explain.
pub fn drop_detail(rule: DropRule, c: &Candidate, user: &UserView, input: &RankInput) -> String {
    match rule {
        DropRule::NotInterested => format!("the user said not interested in item {}", c.item_id),
        DropRule::BlockedBrand => format!("the user blocked brand {}", c.brand_id),
        DropRule::BlockedShop => format!("the user blocked shop {}", c.shop_id),
        DropRule::Consent => {
            let denied: Vec<&str> = c
                .evidence
                .iter()
                .filter(|d| !user.consent.allows(*d))
                .map(|d| d.name())
                .collect();
            format!(
                "all evidence comes from data the user has not consented to: {}",
                denied.join(", ")
            )
        }
        DropRule::FrequencyCap => format!(
            "item {} was shown {} times lately: more than the {} surface allows",
            c.item_id,
            user.shown_since(c.item_id, 0),
            if input.surface.is_empty() {
                "default"
            } else {
                &input.surface
            }
        ),
        DropRule::CoolingOff => cooling_off::detail(c, user),
        DropRule::Sensitive => format!(
            "category {} is sensitive and the user has not opted in",
            c.category_id
        ),
        DropRule::Overload => {
            "a sponsored item held back while the user skims without engaging".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(promoted: bool) -> Pick {
        Pick {
            promoted,
            ..Pick::plain(0, 1.0)
        }
    }

    fn candidate(evidence: &[D], anchor_title: &str) -> Candidate {
        Candidate {
            item_id: 1,
            evidence: evidence.iter().copied().collect(),
            anchor_item_id: if anchor_title.is_empty() { 0 } else { 9 },
            anchor_title: anchor_title.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn an_anchor_names_the_users_own_item_with_the_strongest_dimension() {
        let c = candidate(&[D::Browsing, D::Favorites], "robot vacuum");
        let r = reason_for(&c, &pick(false), Consent::privacy_default(), Locale::En);
        assert_eq!(r.code, ReasonCode::BecauseYouFavorited);
        assert_eq!(r.text, "Because you favourited robot vacuum");
        assert_eq!(r.dimensions, DimensionSet::of([D::Favorites]));
        let zh = reason_for(&c, &pick(false), Consent::privacy_default(), Locale::ZhCn);
        assert_eq!(zh.text, "因为你收藏了robot vacuum");
    }

    #[test]
    fn a_reason_never_cites_a_dimension_without_consent() {
        let c = candidate(&[D::CrossPlatform, D::Browsing], "");
        let r = reason_for(&c, &pick(false), Consent::privacy_default(), Locale::En);
        assert_eq!(r.code, ReasonCode::BasedOnActivity);
        assert_eq!(r.dimensions, DimensionSet::of([D::Browsing]));
        assert_eq!(r.text, "Based on your browsing");

        let anchored = candidate(&[D::CrossPlatform], "running shoes");
        let r = reason_for(
            &anchored,
            &pick(false),
            Consent::privacy_default(),
            Locale::En,
        );
        assert_eq!(r.code, ReasonCode::Relevant);
        assert!(r.dimensions.is_empty());
        assert!(!r.text.contains("running shoes"));
    }

    #[test]
    fn diversity_promotions_and_non_personal_evidence_have_their_own_words() {
        let consent = Consent::privacy_default();
        let plain = candidate(&[D::Trending], "");
        assert_eq!(
            reason_for(&plain, &pick(true), consent, Locale::En).code,
            ReasonCode::Diversity
        );
        let penalised = Pick {
            diversity: -0.18,
            ..pick(true)
        };
        assert_eq!(
            reason_for(&plain, &penalised, consent, Locale::En).code,
            ReasonCode::Trending,
            "a reason that agrees with the breakdown's negative diversity"
        );
        let trending = reason_for(&plain, &pick(false), consent, Locale::ZhCn);
        assert_eq!(
            (trending.code, trending.text.as_str()),
            (ReasonCode::Trending, "当下热门")
        );
        let many = candidate(&[D::Search, D::Cart, D::Purchases], "");
        assert_eq!(
            reason_for(&many, &pick(false), consent, Locale::En).text,
            "Based on your searches, cart and purchases"
        );
        assert_eq!(
            reason_for(&many, &pick(false), consent, Locale::ZhCn).text,
            "根据你的搜索记录、购物车、购买记录"
        );
    }

    #[test]
    fn a_complement_outranks_an_anchor_and_a_boost_outranks_plain_evidence() {
        let consent = Consent::privacy_default();
        let complement = Cause {
            code: ReasonCode::Complement,
            text: "Goes with your new phone".into(),
            dimensions: DimensionSet::of([D::Purchases]),
            strength: f32::INFINITY,
        };
        let anchored = candidate(&[D::Favorites], "robot vacuum");
        let r = reason_with(
            &anchored,
            &pick(false),
            Some(&complement),
            consent,
            Locale::En,
        );
        assert_eq!(r.code, ReasonCode::Complement);

        let interest = Cause {
            code: ReasonCode::Interest,
            text: "Matches your interest in tea".into(),
            dimensions: DimensionSet::EMPTY,
            strength: 0.2,
        };
        let r = reason_with(
            &anchored,
            &pick(false),
            Some(&interest),
            consent,
            Locale::En,
        );
        assert_eq!(
            r.code,
            ReasonCode::BecauseYouFavorited,
            "the user's own item comes first"
        );
        let plain = candidate(&[D::Browsing], "");
        let r = reason_with(&plain, &pick(true), Some(&interest), consent, Locale::En);
        assert_eq!(r.text, "Matches your interest in tea");
        let bought = candidate(&[D::Purchases], "a kettle");
        let r = reason_for(&bought, &pick(false), consent, Locale::En);
        assert_eq!(r.text, "People who bought a kettle also bought this");
    }
}
