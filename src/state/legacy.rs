//! Reading what earlier formats wrote, converted into today's [`UserState`]:
//!
//! - Format 3: the packed buffer before its rows and fixed fields narrowed (byte-wide columns
//!   with a two-byte row count and a width byte per column, 16-bit counters, fixed fields of
//!   fixed width, the cold part encoded whole). Read field by field into [`Parts`]: every
//!   explicit word, time, consent, purchase, sighting and impression time stays exact; the
//!   16-bit counters become 12-bit ones (0.54 % steps instead of 0.034 %).
//! - Format 2: snapshot rows and logged ops from before each user's state became one packed
//!   buffer. The format-2 types are kept here as private copies, field for field and in the
//!   same order, so that their postcard encoding stays what it was whatever today's types
//!   become; each decoded value is then converted into today's.
//!
//! What the format-2 conversion keeps: every explicit word, its time and expiry, consent,
//! interest tags, purchases, sightings, impression times (frequency caps) and activity times
//! exactly. Counters become today's approximate ones: an item's ignored impressions are kept
//! as of its latest touch, a category's or brand's two counters and the session meter's two
//! are brought to one time with the default half-lives (format 2 kept a time per counter), and
//! engagement times are kept to the second. A "fewer like this" is kept by the time it was
//! last asked for (format 2 only ever stored full strength with it).

use serde::Deserialize;

use super::StateConfig;
use super::decay::{Decayed, factor};
use super::event::{Event, EventKind};
use super::op::Op;
use super::user::{
    Cold, ConsentChoices, Explicit, GroupPart, InterestChange, ItemPart, Parts, Undo, UserState,
    WordTimes,
};
use crate::rank::DataDimension;
use crate::rank::DimensionSet;
use crate::rank::user::{Interest, Purchase, SHOWN_TIMES, Sighting, TagKind};

#[derive(Deserialize)]
struct ItemSignal {
    item_id: u64,
    ignored: Decayed,
    engaged_at_ms: i64,
    shown: [u32; SHOWN_TIMES],
}

#[derive(Deserialize)]
struct GroupSignal {
    kind: TagKind,
    id: u64,
    ignored: Decayed,
    engaged: Decayed,
    #[allow(dead_code)]
    engaged_at_ms: i64,
    sources: DimensionSet,
}

#[derive(Deserialize)]
struct SessionMeter {
    impressions: Decayed,
    engagements: Decayed,
}

#[derive(Deserialize)]
struct ConsentChoicesV2 {
    granted: DimensionSet,
    denied: DimensionSet,
    personalization: Option<bool>,
    sensitive: Vec<u64>,
}

#[derive(Deserialize)]
struct ExplicitV2 {
    not_interested: Vec<(u64, i64)>,
    blocked_brands: Vec<u64>,
    blocked_shops: Vec<u64>,
    fewer_categories: Vec<(u64, Decayed)>,
    fewer_brands: Vec<(u64, Decayed)>,
    interests: Vec<Interest>,
}

#[derive(Deserialize)]
struct UserStateV2 {
    items: Vec<ItemSignal>,
    groups: Vec<GroupSignal>,
    session: SessionMeter,
    purchases: Vec<Purchase>,
    sightings: Vec<Sighting>,
    explicit: Option<Box<ExplicitV2>>,
    consent: ConsentChoicesV2,
    first_seen_ms: i64,
    last_active_ms: i64,
}

#[derive(Deserialize)]
struct WordTimesV2 {
    brands: Vec<(u64, i64, bool)>,
    shops: Vec<(u64, i64, bool)>,
}

#[derive(Deserialize)]
struct EventV2 {
    at_ms: i64,
    kind: EventKind,
    item_id: u64,
    category_id: u64,
    brand_id: u64,
    shop_id: u64,
    price: f32,
    source: Option<DataDimension>,
    expires_at_ms: i64,
    title: String,
}

#[derive(Deserialize)]
struct InterestChangeV2 {
    kind: TagKind,
    id: u64,
    weight: f32,
    label: Option<String>,
}

#[derive(Deserialize)]
enum OpV2 {
    Event(EventV2),
    Consent {
        changes: Vec<(DataDimension, bool)>,
        personalization: Option<bool>,
        sensitive: Vec<(u64, bool)>,
        at_ms: i64,
    },
    Forget,
    Restore(Box<UserStateV2>),
    Undo {
        undo: Undo,
        at_ms: i64,
    },
    Interests {
        changes: Vec<InterestChangeV2>,
        at_ms: i64,
    },
    Words(WordTimesV2),
}

// The two decoders are called where rows and records are read (the snapshot and the log),
// by the format change that writes format 3.

/// Columns of format 3's tables: items, impression times, categories, brands.
const V3_COLS: [usize; 4] = [4, 2, 5, 5];
/// Bytes of format 3's fixed fields.
const V3_HEADER: usize = 25;

/// A table of format 3: its shape and where its rows start.
struct TableV3 {
    rows: usize,
    widths: Vec<usize>,
    data: usize,
}

impl TableV3 {
    fn row_len(&self) -> usize {
        self.widths.iter().sum()
    }

    fn get(&self, buf: &[u8], row: usize, col: usize) -> u64 {
        let at = self.data + row * self.row_len() + self.widths[..col].iter().sum::<usize>();
        le(&buf[at..at + self.widths[col]])
    }
}

fn le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

/// A counter of format 3 (16 bits: log2 in steps of 1/2048 around 32,768).
fn count_v3(c: u64) -> f32 {
    if c == 0 {
        0.0
    } else {
        ((c as i64 - 32_768) as f32 / 2048.0).exp2()
    }
}

/// A user's buffer of format 3 (a snapshot row after its format byte), as today's state;
/// refused whole when it is not well formed.
pub(super) fn decode_row_v3(buf: &[u8]) -> Result<UserState, postcard::Error> {
    let bad = || postcard::Error::DeserializeBadEncoding;
    if buf.is_empty() {
        return Ok(UserState::default());
    }
    if buf.len() < V3_HEADER {
        return Err(bad());
    }
    let base = le(&buf[0..4]) as i64;
    let ms = |at: usize| le(&buf[at..at + 6]) as i64;
    let present = buf[24];
    if present >> V3_COLS.len() != 0 {
        return Err(bad());
    }
    let mut tables: [Option<TableV3>; 4] = Default::default();
    let mut at = V3_HEADER;
    for (k, cols) in V3_COLS.iter().enumerate() {
        if present & (1 << k) == 0 {
            continue;
        }
        let head = buf.get(at..at + 2 + cols).ok_or_else(bad)?;
        let rows = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let widths: Vec<usize> = head[2..].iter().map(|w| usize::from(*w)).collect();
        if widths.iter().any(|w| *w > 8) {
            return Err(bad());
        }
        let t = TableV3 {
            rows,
            widths,
            data: at + 2 + cols,
        };
        at = t.data + t.rows * t.row_len();
        if at > buf.len() {
            return Err(bad());
        }
        tables[k] = Some(t);
    }
    let mut cold: Cold = if at < buf.len() {
        postcard::from_bytes(&buf[at..])?
    } else {
        Cold::default()
    };
    // Its times were kept as ms after the base.
    let shift = base * 1000;
    let x = &mut cold.explicit;
    for t in cold
        .purchases
        .iter_mut()
        .map(|p| &mut p.at_ms)
        .chain(cold.sightings.iter_mut().map(|s| &mut s.at_ms))
        .chain(x.not_interested.iter_mut().map(|n| &mut n.1))
        .chain(x.fewer_categories.iter_mut().map(|f| &mut f.1))
        .chain(x.fewer_brands.iter_mut().map(|f| &mut f.1))
        .chain(cold.words.brands.iter_mut().map(|w| &mut w.1))
        .chain(cold.words.shops.iter_mut().map(|w| &mut w.1))
    {
        *t = t.wrapping_add(shift);
    }
    let time_ms = |offset: u64| (base + offset as i64) * 1000;
    let mut items = Vec::new();
    if let Some(t) = &tables[0] {
        for r in 0..t.rows {
            let engaged = t.get(buf, r, 3);
            items.push(ItemPart {
                id: t.get(buf, r, 0),
                touched_ms: time_ms(t.get(buf, r, 1)),
                ignored: count_v3(t.get(buf, r, 2)),
                engaged_ms: if engaged > 0 { time_ms(engaged - 1) } else { 0 },
                shown: [0; SHOWN_TIMES],
            });
        }
    }
    if let Some(t) = &tables[1] {
        // Sorted by item row, newest first.
        let mut n = vec![0usize; items.len()];
        for r in 0..t.rows {
            let row = usize::try_from(t.get(buf, r, 0)).map_err(|_| bad())?;
            let item = items.get_mut(row).ok_or_else(bad)?;
            if n[row] < SHOWN_TIMES {
                item.shown[n[row]] =
                    u32::try_from(base + t.get(buf, r, 1) as i64).map_err(|_| bad())?;
                n[row] += 1;
            }
        }
    }
    let mut groups = Vec::new();
    for (k, kind) in [(2, TagKind::Category), (3, TagKind::Brand)] {
        if let Some(t) = &tables[k] {
            for r in 0..t.rows {
                groups.push(GroupPart {
                    kind,
                    id: t.get(buf, r, 0),
                    touched_ms: time_ms(t.get(buf, r, 1)),
                    ignored: count_v3(t.get(buf, r, 2)),
                    engaged: count_v3(t.get(buf, r, 3)),
                    sources: DimensionSet::from_bits(t.get(buf, r, 4) as u16),
                });
            }
        }
    }
    Ok(UserState::from_parts(Parts {
        first_seen_ms: ms(4),
        last_active_ms: ms(10),
        session: (count_v3(le(&buf[20..22])), count_v3(le(&buf[22..24]))),
        session_at_ms: le(&buf[16..20]) as i64 * 1000,
        items,
        groups,
        cold,
    }))
}

/// A snapshot row of format 2 (`UserState::to_row` before the packed layout: the state's
/// postcard encoding, then the word times when there were any).
pub(super) fn decode_row_v2(bytes: &[u8]) -> Result<UserState, postcard::Error> {
    let (state, rest): (UserStateV2, _) = postcard::take_from_bytes(bytes)?;
    let words = if rest.is_empty() {
        None
    } else {
        Some(postcard::from_bytes::<WordTimesV2>(rest)?)
    };
    Ok(convert(state, words))
}

/// A logged op of format 2 (its postcard encoding, `Op::Restore` carrying a format-2 state).
pub(super) fn decode_op_v2(bytes: &[u8]) -> Result<Op, postcard::Error> {
    Ok(match postcard::from_bytes::<OpV2>(bytes)? {
        OpV2::Event(e) => Op::Event(Event {
            at_ms: e.at_ms,
            kind: e.kind,
            item_id: e.item_id,
            category_id: e.category_id,
            brand_id: e.brand_id,
            shop_id: e.shop_id,
            price: e.price,
            source: e.source,
            expires_at_ms: e.expires_at_ms,
            title: e.title,
        }),
        OpV2::Consent {
            changes,
            personalization,
            sensitive,
            at_ms,
        } => Op::Consent {
            changes,
            personalization,
            sensitive,
            at_ms,
        },
        OpV2::Forget => Op::Forget,
        OpV2::Restore(state) => Op::Restore(Box::new(convert(*state, None))),
        OpV2::Undo { undo, at_ms } => Op::Undo { undo, at_ms },
        OpV2::Interests { changes, at_ms } => Op::Interests {
            changes: changes
                .into_iter()
                .map(|c| InterestChange {
                    kind: c.kind,
                    id: c.id,
                    weight: c.weight,
                    label: c.label,
                })
                .collect(),
            at_ms,
        },
        OpV2::Words(w) => Op::Words(words(w)),
    })
}

fn words(w: WordTimesV2) -> WordTimes {
    WordTimes {
        brands: w.brands,
        shops: w.shops,
    }
}

/// `d` as of `at_ms` (a later time: decayed; an earlier one: as it is).
fn decayed_to(d: Decayed, at_ms: i64, half_life_ms: i64) -> f32 {
    d.value * factor(at_ms - d.at_ms, half_life_ms)
}

fn convert(s: UserStateV2, w: Option<WordTimesV2>) -> UserState {
    // Format 2 kept a time per counter; where two counters now share one, the half-lives
    // the older one is decayed with are the defaults.
    let cfg = StateConfig::default();
    let items = s
        .items
        .into_iter()
        .map(|i| {
            let touched_ms = i
                .ignored
                .at_ms
                .max(i.engaged_at_ms)
                .max(i64::from(i.shown[0]) * 1000);
            ItemPart {
                id: i.item_id,
                touched_ms,
                ignored: decayed_to(i.ignored, touched_ms, cfg.exposure_half_life_ms),
                engaged_ms: i.engaged_at_ms,
                shown: i.shown,
            }
        })
        .collect();
    let groups = s
        .groups
        .into_iter()
        .map(|g| {
            let touched_ms = g.ignored.at_ms.max(g.engaged.at_ms);
            GroupPart {
                kind: g.kind,
                id: g.id,
                touched_ms,
                ignored: decayed_to(g.ignored, touched_ms, cfg.exposure_half_life_ms),
                engaged: decayed_to(g.engaged, touched_ms, cfg.interest_half_life_ms),
                sources: g.sources,
            }
        })
        .collect();
    let session_at_ms = s.session.impressions.at_ms.max(s.session.engagements.at_ms);
    let hl = cfg.session_half_life_ms;
    // Full strength at a time: the time it would have had full strength.
    let fhl = cfg.fewer_like_this_half_life_ms as f64;
    let fewer = |v: Vec<(u64, Decayed)>| -> Vec<(u64, i64)> {
        v.into_iter()
            .filter(|(_, d)| d.value > 0.0)
            .map(|(id, d)| {
                let back = (f64::from(d.value.min(1.0)).log2() * fhl).round() as i64;
                (id, d.at_ms.saturating_add(back))
            })
            .collect()
    };
    let explicit = s.explicit.map_or_else(Explicit::default, |x| Explicit {
        not_interested: x.not_interested,
        blocked_brands: x.blocked_brands,
        blocked_shops: x.blocked_shops,
        fewer_categories: fewer(x.fewer_categories),
        fewer_brands: fewer(x.fewer_brands),
        interests: x.interests,
    });
    UserState::from_parts(Parts {
        first_seen_ms: s.first_seen_ms,
        last_active_ms: s.last_active_ms,
        session: (
            decayed_to(s.session.impressions, session_at_ms, hl),
            decayed_to(s.session.engagements, session_at_ms, hl),
        ),
        session_at_ms,
        items,
        groups,
        cold: Cold {
            consent: ConsentChoices {
                granted: s.consent.granted,
                denied: s.consent.denied,
                personalization: s.consent.personalization,
                sensitive: s.consent.sensitive,
            },
            explicit,
            words: w.map(words).unwrap_or_default(),
            purchases: s.purchases,
            sightings: s.sightings,
        },
    })
}

#[cfg(test)]
pub(super) mod fixtures {
    //! The histories behind the files in `tests/fixtures/state-v2/`, which the second format's
    //! code wrote: a test reads the files back and compares them with the same histories
    //! applied by the code of today.

    use super::super::event::{Event, EventKind};
    use super::super::op::Op;
    use super::super::user::{InterestChange, Undo};
    use crate::rank::DataDimension;
    use crate::rank::user::TagKind;

    /// When the histories end (unix milliseconds).
    pub const NOW: i64 = 1_780_000_000_000;

    fn event(kind: EventKind, at_ms: i64, item: u64, category: u64, brand: u64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.item_id = item;
        e.category_id = category;
        e.brand_id = brand;
        e
    }

    /// A typical user of the sizing page: 20 impressions over 10 items, 5 clicks, 2
    /// purchases, a blocked brand, a "not interested", a "fewer like this", and more of what
    /// a user can say (consent, tags, a shop blocked then unblocked, a sighting elsewhere).
    fn typical() -> Vec<Op> {
        let base = NOW - 3_600_000;
        let mut ops = Vec::new();
        for i in 0..20 {
            let item = 700 + i % 10;
            ops.push(Op::Event(event(
                EventKind::Impression,
                base + i as i64 * 1500,
                item,
                1 + item % 7,
                40 + item % 3,
            )));
        }
        for i in 0..5 {
            let item = 700 + i;
            ops.push(Op::Event(event(
                EventKind::Click,
                base + 60_000 + i as i64 * 700,
                item,
                1 + item % 7,
                40 + item % 3,
            )));
        }
        for i in 0..2 {
            let item = 701 + i;
            let mut e = event(
                EventKind::Purchase,
                base + 90_000 + i as i64,
                item,
                1 + item % 7,
                40 + item % 3,
            );
            e.price = 199.5;
            e.title = format!("Item {item}");
            ops.push(Op::Event(e));
        }
        ops.push(Op::Event(event(
            EventKind::BlockBrand,
            base + 100_000,
            0,
            0,
            41,
        )));
        ops.push(Op::Event(event(
            EventKind::NotInterested,
            base + 101_000,
            709,
            3,
            0,
        )));
        ops.push(Op::Event(event(
            EventKind::FewerLikeThis,
            base + 102_000,
            0,
            3,
            0,
        )));
        let mut shop = event(EventKind::BlockShop, base + 103_000, 0, 0, 0);
        shop.shop_id = 900;
        ops.push(Op::Event(shop.clone()));
        shop.kind = EventKind::UnblockShop;
        shop.at_ms += 1000;
        ops.push(Op::Event(shop));
        let mut elsewhere = event(EventKind::Click, base + 104_000, 5_000, 9, 0);
        elsewhere.source = Some(DataDimension::CrossPlatform);
        ops.push(Op::Event(elsewhere));
        ops.push(Op::Consent {
            changes: vec![
                (DataDimension::Location, true),
                (DataDimension::Search, false),
            ],
            personalization: None,
            sensitive: vec![(77, true)],
            at_ms: base + 105_000,
        });
        ops.push(Op::Interests {
            changes: vec![
                InterestChange {
                    kind: TagKind::Category,
                    id: 12,
                    weight: 0.8,
                    label: Some("trail running".into()),
                },
                InterestChange {
                    kind: TagKind::Brand,
                    id: 42,
                    weight: 0.0,
                    label: None,
                },
            ],
            at_ms: base + 106_000,
        });
        ops
    }

    /// A user with many items and groups, and every kind of explicit word, some taken back.
    fn heavy() -> Vec<Op> {
        let base = NOW - 2 * 86_400_000;
        let mut ops = Vec::new();
        for i in 0..300u64 {
            let item = 1_000_000_007 * (i + 1);
            let at = base + i as i64 * 400;
            ops.push(Op::Event(event(
                EventKind::Impression,
                at,
                item,
                1 + i % 90,
                5_000 + i % 70,
            )));
            if i % 7 == 0 {
                ops.push(Op::Event(event(
                    EventKind::Cart,
                    at + 200,
                    item,
                    1 + i % 90,
                    5_000 + i % 70,
                )));
            }
        }
        for b in 0..5 {
            ops.push(Op::Event(event(
                EventKind::BlockBrand,
                base + 200_000 + b,
                0,
                0,
                5_000 + b as u64,
            )));
        }
        ops.push(Op::Undo {
            undo: Undo::BlockedBrand(5_001),
            at_ms: base + 210_000,
        });
        let mut late = event(EventKind::BlockBrand, base + 205_000, 0, 0, 5_001);
        late.source = Some(DataDimension::Browsing);
        // Said before the unblock, arrives after it: changes nothing.
        ops.push(Op::Event(late));
        let mut until = event(
            EventKind::NotInterested,
            base + 220_000,
            1_000_000_007,
            1,
            0,
        );
        until.expires_at_ms = NOW + 86_400_000;
        ops.push(Op::Event(until));
        ops.push(Op::Event(event(
            EventKind::FewerLikeThis,
            base + 230_000,
            0,
            4,
            5_003,
        )));
        ops.push(Op::Consent {
            changes: vec![],
            personalization: Some(false),
            sensitive: vec![],
            at_ms: base + 240_000,
        });
        ops
    }

    /// A user who only set consent.
    fn consent_only() -> Vec<Op> {
        vec![Op::Consent {
            changes: vec![(DataDimension::Purchases, false)],
            personalization: None,
            sensitive: vec![(3, true), (1, true)],
            at_ms: NOW - 5_000,
        }]
    }

    /// The users written as snapshot rows, by name.
    pub fn users() -> Vec<(&'static str, Vec<Op>)> {
        vec![
            ("typical", typical()),
            ("heavy", heavy()),
            ("consent-only", consent_only()),
        ]
    }

    /// The ops written as log records, by name (a `Restore` of each user is added apart).
    pub fn ops() -> Vec<(&'static str, Op)> {
        let mut purchase = event(EventKind::Purchase, NOW - 1000, 31, 4, 8);
        purchase.price = 12.25;
        purchase.title = "Kettle".into();
        purchase.source = Some(DataDimension::Purchases);
        let mut not_interested = event(EventKind::NotInterested, NOW - 900, 32, 0, 0);
        not_interested.expires_at_ms = NOW + 1000;
        let mut shop = event(EventKind::BlockShop, NOW - 800, 0, 0, 0);
        shop.shop_id = 66;
        vec![
            (
                "impression",
                Op::Event(event(EventKind::Impression, NOW - 1100, 30, 4, 8)),
            ),
            ("purchase", Op::Event(purchase)),
            ("not-interested", Op::Event(not_interested)),
            ("block-shop", Op::Event(shop)),
            (
                "consent",
                Op::Consent {
                    changes: vec![(DataDimension::Social, true)],
                    personalization: Some(true),
                    sensitive: vec![(9, true), (10, false)],
                    at_ms: NOW - 700,
                },
            ),
            ("forget", Op::Forget),
            (
                "undo",
                Op::Undo {
                    undo: Undo::FewerCategory(4),
                    at_ms: NOW - 600,
                },
            ),
            (
                "interests",
                Op::Interests {
                    changes: vec![InterestChange {
                        kind: TagKind::Brand,
                        id: 8,
                        weight: 0.5,
                        label: Some("tea".into()),
                    }],
                    at_ms: NOW - 500,
                },
            ),
        ]
    }

    pub fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v2")
    }
}

#[cfg(test)]
mod tests {
    use super::super::StateConfig;
    use super::super::op::Op;
    use super::super::user::UserState;
    use super::*;
    use crate::rank::{Consent, UserView};

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(fixtures::dir().join(name)).expect("fixture")
    }

    fn replayed(ops: &[Op]) -> UserState {
        let cfg = StateConfig::default();
        let mut u = UserState::default();
        for op in ops {
            op.apply(&mut u, &cfg).unwrap();
        }
        u
    }

    /// The user's words and what caps count must be the same; counters nearly.
    fn assert_same_view(name: &str, a: &UserView, b: &UserView) {
        assert_eq!(a.not_interested, b.not_interested, "{name}");
        assert_eq!(a.blocked_brands, b.blocked_brands, "{name}");
        assert_eq!(a.blocked_shops, b.blocked_shops, "{name}");
        assert_eq!(a.sensitive_opt_in, b.sensitive_opt_in, "{name}");
        for (x, y) in [
            (&a.fewer_categories, &b.fewer_categories),
            (&a.fewer_brands, &b.fewer_brands),
        ] {
            assert_eq!(x.len(), y.len(), "{name}");
            for ((i, s), (j, t)) in x.iter().zip(y) {
                assert!(i == j && (s - t).abs() < 1e-4, "{name}: {x:?} {y:?}");
            }
        }
        assert_eq!(a.shown, b.shown, "{name}");
        assert_eq!(a.engaged, b.engaged, "{name}");
        assert_eq!(a.purchases, b.purchases, "{name}");
        assert_eq!(a.sightings, b.sightings, "{name}");
        assert_eq!(a.first_seen_ms, b.first_seen_ms, "{name}");
        assert_eq!(a.last_active_ms, b.last_active_ms, "{name}");
        let user_tags = |v: &UserView| {
            v.tags
                .iter()
                .filter(|t| t.source == crate::rank::user::TagSource::User)
                .map(|t| (t.kind, t.id, t.label.clone(), t.weight))
                .collect::<Vec<_>>()
        };
        assert_eq!(user_tags(a), user_tags(b), "{name}");
        let close = |x: &[(u64, f32)], y: &[(u64, f32)]| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((i, s), (j, t))| i == j && (s - t).abs() <= 0.01 + 0.01 * s.abs())
        };
        assert!(
            close(&a.ignored, &b.ignored),
            "{name}: {:?} {:?}",
            a.ignored,
            b.ignored
        );
        assert!(
            close(&a.ignored_categories, &b.ignored_categories),
            "{name}"
        );
        assert!(
            (a.recent_impressions - b.recent_impressions).abs() < 0.05,
            "{name}"
        );
        assert!(
            (a.recent_engagements - b.recent_engagements).abs() < 0.05,
            "{name}"
        );
    }

    #[test]
    fn rows_of_format_2_read_as_the_same_users() {
        let cfg = StateConfig::default();
        for (name, ops) in fixtures::users() {
            let old = decode_row_v2(&read(&format!("row-{name}.bin"))).unwrap();
            let new = replayed(&ops);
            assert_eq!(old.consent(), new.consent(), "{name}");
            assert_eq!(old.words(), new.words(), "{name}");
            assert_eq!(old.interests(), new.interests(), "{name}");
            let now = fixtures::NOW;
            assert_eq!(
                old.not_interested_until(now),
                new.not_interested_until(now),
                "{name}"
            );
            for at in [now, now + 3_600_000, now + 40 * 86_400_000] {
                let consent = old.consent().apply_to(Consent::privacy_default());
                let (a, b) = (old.view(at, consent, &cfg), new.view(at, consent, &cfg));
                if name == "heavy" {
                    // Past the caps, format 2 chose what to forget by the millisecond and
                    // today by the second: the same number of entries, and the same words.
                    assert_eq!(a.shown.len(), b.shown.len());
                    assert_eq!(a.blocked_brands, b.blocked_brands);
                    assert_eq!(a.not_interested, b.not_interested);
                    assert_eq!(a.fewer_brands.len(), b.fewer_brands.len());
                    continue;
                }
                assert_same_view(name, &a, &b);
            }
            // And the converted state is whole: it survives today's row format.
            let row = old.to_row().unwrap();
            assert_eq!(UserState::from_row(&row).unwrap(), old);
        }
        assert!(decode_row_v2(&[0xff; 3]).is_err());
    }

    #[test]
    fn ops_of_format_2_read_as_the_same_ops() {
        for (name, op) in fixtures::ops() {
            let bytes = read(&format!("op-{name}.bin"));
            assert_eq!(decode_op_v2(&bytes).unwrap(), op, "{name}");
        }
        for (name, _) in fixtures::users() {
            let row = decode_row_v2(&read(&format!("row-{name}.bin"))).unwrap();
            let Op::Restore(state) =
                decode_op_v2(&read(&format!("op-restore-{name}.bin"))).unwrap()
            else {
                panic!("{name}: not a restore");
            };
            // A restore does not carry the word times: an `Op::Words` follows it.
            let mut restored = *state;
            assert!(restored.words().is_empty(), "{name}");
            let Op::Words(words) = decode_op_v2(&read(&format!("op-words-{name}.bin"))).unwrap()
            else {
                panic!("{name}: not the word times");
            };
            restored.set_words(words);
            assert_eq!(restored, row, "{name}");
        }
    }
}
