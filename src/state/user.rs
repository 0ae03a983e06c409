//! One user's hot state: exposure and engagement counters (per item, category and brand), a
//! short-term meter of impressions against engagement, the times of the latest impressions of
//! each item (exact: frequency caps count them), recent purchases and cross-platform sightings,
//! explicit feedback and interest tags, consent choices and activity times.
//!
//! All of it lives in one exactly sized allocation per user (see [`UserState`] for the layout):
//! a million users must fit in a few hundred megabytes, and the fewer cache lines an event
//! touches, the more events a core applies.
//!
//! This module turns events into state and state into a view; it knows no policy. What a
//! ranking does with the view is the pipeline's business.

use serde::{Deserialize, Serialize};

use crate::rank::user::{Interest, Purchase, SHOWN_TIMES, Sighting, Tag, TagKind, TagSource};
use crate::rank::{Consent, DataDimension, DimensionSet, UserView};

use super::StateConfig;
use super::decay::factor;
use super::event::{Event, EventError, EventKind};
use super::pack::{Bytes, Head, Packed, Table, table_len, table_len_in};

/// Below this decayed count an item's ignored exposure is forgotten when building a view.
const IGNORED_FLOOR: f32 = 0.05;
/// Below this decayed strength a "fewer like this" signal no longer applies.
const FEWER_FLOOR: f32 = 0.01;
/// Purchases kept per user: enough for every cooling-off window a policy runs at once.
pub const MAX_PURCHASES: usize = 32;
/// Cross-platform sightings kept per user: only young ones matter ("too soon").
pub const MAX_SIGHTINGS: usize = 32;
/// Interest tags a user can set.
pub const MAX_INTERESTS: usize = 64;
/// Categories and brands with counters per user; past it the least recently touched is
/// forgotten.
pub const MAX_GROUPS: usize = 128;
/// Learned interest tags shown and used: the user's strongest few, not a long tail.
const LEARNED_TAGS: usize = 5;
/// Decayed engagement a category or brand needs before it becomes a learned tag: two clicks.
const LEARNED_MIN: f32 = 2.0;
/// A learned tag's weight approaches this as engagement grows: below a tag the user set
/// (1.0 by default), because the user's own words outrank inference.
const LEARNED_MAX_WEIGHT: f32 = 0.6;
/// Impressions older than this cannot count toward any frequency cap: they are not copied
/// into a view, and are forgotten.
const SHOWN_HORIZON_MS: i64 = 7 * 24 * 3_600_000;
/// Purchases are kept this long: the longest cooling-off window a policy may set.
pub const PURCHASE_RETENTION_MS: i64 = 365 * 24 * 3_600_000;
/// The first byte of a snapshot row ([`UserState::to_row`]): the row format. Rows of the
/// formats before it (3, and 2 with no leading byte) are read by `legacy`.
pub const ROW_FORMAT: u8 = 4;
/// The row format before this one: read (and converted) by `legacy`, never written.
pub const ROW_FORMAT_V3: u8 = 3;

/// The unix second an impression is kept at (0 marks an empty slot, so at least 1).
fn shown_second(at_ms: i64) -> u32 {
    u32::try_from(at_ms.div_euclid(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// Steps of a counter's logarithm per doubling.
const COUNT_STEPS: f32 = 128.0;
/// The code of 1.0.
const COUNT_ONE: i64 = 2048;

/// A non-negative counter in 12 bits: 0 is zero; otherwise log2 of the value in steps of
/// 1/128 around 2,048 (0.54 % apart, from 2^-16 to 2^16; adding 1 still counts up to about
/// 370). Approximate on purpose: the counters decay anyway, and exactness is kept for what
/// must be exact.
pub(super) fn encode_count(v: f32) -> u64 {
    // NaN included.
    if v.is_nan() || v < 1.0 / 65_536.0 {
        return 0;
    }
    ((v.log2() * COUNT_STEPS).round() as i64 + COUNT_ONE).clamp(1, 4_095) as u64
}

fn decode_count(c: u64) -> f32 {
    if c == 0 {
        0.0
    } else {
        ((c as i64 - COUNT_ONE) as f32 / COUNT_STEPS).exp2()
    }
}

/// `encode_count(decode_count(c) + amount)`, looked up for the amounts nearly every event adds
/// (0 and 1, in the second the counter was last brought up to date): the same values without
/// a power of two and a logarithm per counter.
fn add_count(c: u64, amount: f32) -> u64 {
    static PLUS: std::sync::LazyLock<Box<[[u16; 2]]>> = std::sync::LazyLock::new(|| {
        (0..4096)
            .map(|c| [0.0, 1.0].map(|a| encode_count(decode_count(c) + a) as u16))
            .collect()
    });
    let computed = || encode_count(decode_count(c) + amount);
    let col = if amount == 0.0 {
        0
    } else if amount == 1.0 {
        1
    } else {
        return computed();
    };
    usize::try_from(c)
        .ok()
        .and_then(|c| PLUS.get(c))
        .map_or_else(computed, |p| u64::from(p[col]))
}

/// A count as of `elapsed_ms` after it was brought up to date: one power of two for the
/// logarithm and the decay together.
fn decayed(c: u64, elapsed_ms: i64, half_life_ms: i64) -> f32 {
    if c == 0 {
        return 0.0;
    }
    let log = (c as f64 - COUNT_ONE as f64) / f64::from(COUNT_STEPS)
        - elapsed_ms.max(0) as f64 / half_life_ms as f64;
    log.exp2() as f32
}

/// Where the fixed fields are in a user's buffer.
mod at {
    /// Unix second all times count from (u32).
    pub const BASE: usize = 0;
    /// Which tables follow (one bit each).
    pub const PRESENT: usize = 4;
    /// Where the one-row table of the other fixed fields starts ([`super::fixed`]).
    pub const FIXED: usize = 5;
    /// Bytes of a buffer with nothing in it: the base, the table bits and the fixed table's
    /// widths (all 0).
    pub const BLANK: usize = FIXED + 3;
}

/// The fixed fields after the base, one row of a table of their own, so that each takes the
/// nibbles its value needs.
mod fixed {
    /// First event of any kind, ms after the base plus one (0 = none yet).
    pub const FIRST_SEEN: usize = 0;
    /// Latest engagement or explicit action, ms after the base plus one (0 = none yet).
    pub const LAST_ACTIVE: usize = 1;
    /// When the session meter was last brought up to date, seconds after the base.
    pub const SESSION_AT: usize = 2;
    /// Impressions over the last minutes, decayed (a count).
    pub const SESSION_IMPRESSIONS: usize = 3;
    /// Engagements over the last minutes, decayed (a count).
    pub const SESSION_ENGAGEMENTS: usize = 4;
    pub const COLS: usize = 5;
}

/// The tables, in buffer order, and their columns.
const ITEMS: usize = 0;
const SHOWN: usize = 1;
const CATEGORIES: usize = 2;
const BRANDS: usize = 3;
const COLS: [usize; 4] = [4, 2, 5, 5];
/// Items, sorted by id: id, when last touched (a time), ignored impressions decayed to then
/// (a count), latest engagement (how many seconds before the touch, plus one; 0 = never).
const ID: usize = 0;
const AT: usize = 1;
const IGNORED: usize = 2;
const ENGAGED: usize = 3;
/// Impressions, sorted by item row then newest first: the item's row, the second shown (a
/// time). At most [`SHOWN_TIMES`] per item, none older than [`SHOWN_HORIZON_MS`].
const ROW: usize = 0;
const SECOND: usize = 1;
/// Categories and brands, sorted by id: id, when last touched, ignored impressions and
/// engagement decayed to then (counts; `ENGAGED` is the engagement's column here too), and
/// the data dimensions of the engagement (bits).
const SOURCES: usize = 4;

fn get_u(buf: &[u8], at: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..width].copy_from_slice(&buf[at..at + width]);
    u64::from_le_bytes(b)
}

fn put_u(buf: &mut [u8], at: usize, width: usize, v: u64) {
    buf[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

/// The table of the fixed fields ([`fixed`]).
fn fixed_table(buf: &[u8]) -> Table {
    Table::parse_single(buf, at::FIXED, fixed::COLS).expect("a user's buffer is well formed")
}

fn get_fixed(buf: &[u8], field: usize) -> u64 {
    if buf.is_empty() {
        return 0;
    }
    fixed_table(buf).get(buf, 0, field)
}

fn put_fixed(buf: &mut Bytes, field: usize, v: u64) {
    let mut t = fixed_table(buf);
    t.set(buf, 0, field, v);
}

/// Unix ms as kept in the fixed fields: after the base, plus one (0 = none).
fn put_ms(buf: &mut Bytes, field: usize, ms: i64) {
    let v = if ms <= 0 {
        0
    } else {
        (ms - base(buf) * 1000).max(0) as u64 + 1
    };
    put_fixed(buf, field, v);
}

fn get_ms(buf: &[u8], field: usize) -> i64 {
    match get_fixed(buf, field) {
        0 => 0,
        v => (base(buf) * 1000).saturating_add(i64::try_from(v - 1).unwrap_or(i64::MAX)),
    }
}

/// Where the tables start: after the fixed fields.
fn tables_start(buf: &[u8]) -> usize {
    at::FIXED + table_len_in(buf, at::FIXED, fixed::COLS, true)
}

/// The tables present in a buffer, and where the cold part starts.
#[derive(Clone, Copy)]
struct Layout {
    tables: [Option<Table>; 4],
    cold: usize,
}

/// Reads a buffer's layout; `None` when it is malformed.
fn parse(buf: &[u8]) -> Option<Layout> {
    let mut l = Layout {
        tables: [None; 4],
        cold: 0,
    };
    if buf.is_empty() {
        return Some(l);
    }
    let present = *buf.get(at::PRESENT)?;
    if present >> COLS.len() != 0 {
        return None;
    }
    l.cold = Table::parse_single(buf, at::FIXED, fixed::COLS)?.end();
    for (k, cols) in COLS.iter().enumerate() {
        if present & (1 << k) != 0 {
            let t = Table::parse(buf, l.cold, *cols)?;
            l.cold = t.end();
            l.tables[k] = Some(t);
        }
    }
    Some(l)
}

fn layout(buf: &[u8]) -> Layout {
    parse(buf).expect("a user's buffer is well formed")
}

/// Table `k` of a well-formed buffer, reading only the tables before it; when absent, where
/// it would start.
fn find(buf: &[u8], k: usize) -> Result<Table, usize> {
    if buf.is_empty() {
        return Err(0);
    }
    let present = buf[at::PRESENT];
    let mut start = tables_start(buf);
    for (j, cols) in COLS.iter().enumerate().take(k) {
        if present & (1 << j) != 0 {
            start += table_len_in(buf, start, *cols, false);
        }
    }
    if present & (1 << k) != 0 {
        return Ok(Table::parse(buf, start, COLS[k]).expect("a user's buffer is well formed"));
    }
    Err(start)
}

/// Table `k`, if present.
fn get_table(buf: &[u8], k: usize) -> Option<Table> {
    find(buf, k).ok()
}

fn base(buf: &[u8]) -> i64 {
    get_u(buf, at::BASE, 4) as i64
}

/// A unix second as kept in a time column: seconds after the user's base. Times before the
/// base move the base first ([`rebase`]).
fn offset(buf: &[u8], s: u32) -> u64 {
    (i64::from(s) - base(buf)).max(0) as u64
}

fn second(buf: &[u8], v: u64) -> u32 {
    u32::try_from(base(buf) + v as i64).unwrap_or(u32::MAX)
}

/// Moves the base back to `s` when `s` is before it, so every time column stays a
/// non-negative offset (an event older than any the user had: rare).
fn rebase(buf: &mut Bytes, s: u32) {
    let old = base(buf);
    if i64::from(s) >= old {
        return;
    }
    let delta = old - i64::from(s);
    let c = cold(buf);
    put_u(buf, at::BASE, 4, u64::from(s));
    let mut f = fixed_table(buf);
    for (field, step) in [
        (fixed::FIRST_SEEN, 1000),
        (fixed::LAST_ACTIVE, 1000),
        (fixed::SESSION_AT, 1),
    ] {
        let v = f.get(buf, 0, field);
        // 0 is "none" for the times in ms; the session's time is always a time.
        if v > 0 || step == 1 {
            f.set(buf, 0, field, v.saturating_add((delta * step) as u64));
        }
    }
    // An item's engagement counts back from its touch, which moves with it.
    for (k, col, from) in [
        (ITEMS, AT, 0),
        (SHOWN, SECOND, 0),
        (CATEGORIES, AT, 0),
        (BRANDS, AT, 0),
    ] {
        if let Some(mut t) = get_table(buf, k) {
            t.shift(buf, col, from, delta);
        }
    }
    set_cold(buf, c);
}

/// The table, made if absent.
fn table(buf: &mut Bytes, k: usize) -> Table {
    match find(buf, k) {
        Ok(t) => t,
        Err(at) => create(buf, k, at),
    }
}

/// Makes table `k`, absent until now, at `at`.
fn create(buf: &mut Bytes, k: usize, at: usize) -> Table {
    buf[at::PRESENT] |= 1 << k;
    let mut t = Table::create(buf, at, COLS[k]);
    // A counter takes 3 nibbles as soon as it holds anything, which it soon does: room for it
    // from the start spares the table a widening per counter column.
    let one = encode_count(1.0);
    match k {
        ITEMS => t.fit(buf, IGNORED, one),
        CATEGORIES | BRANDS => {
            t.fit(buf, IGNORED, one);
            t.fit(buf, ENGAGED, one);
        }
        _ => {}
    }
    t
}

/// A buffer's tables, found once for a change: a step that changes one of them moves the
/// ones after it by what it added or removed ([`Tables::with`]), instead of each step finding
/// its table again by walking the headers from the fixed fields. Good until the fixed fields
/// change (they come before every table).
struct Tables {
    t: [Option<Table>; 4],
    /// Where the tables end (the cold part starts).
    end: usize,
}

impl Tables {
    fn of(buf: &[u8]) -> Self {
        let l = layout(buf);
        Tables {
            t: l.tables,
            end: l.cold,
        }
    }

    fn get(&self, k: usize) -> Option<Table> {
        self.t[k]
    }

    /// Runs `f` on table `k` (made if absent), then moves the tables after it by what the
    /// buffer grew or shrank.
    fn with<R>(
        &mut self,
        buf: &mut Bytes,
        k: usize,
        f: impl FnOnce(&mut Bytes, &mut Table) -> R,
    ) -> R {
        let before = buf.len();
        let mut t = match self.t[k] {
            Some(t) => t,
            None => {
                // Where the next table present starts: the tables are contiguous.
                let at = self.t[k + 1..]
                    .iter()
                    .flatten()
                    .next()
                    .map_or(self.end, |t| t.start);
                create(buf, k, at)
            }
        };
        let out = f(buf, &mut t);
        self.t[k] = Some(t);
        let delta = buf.len() as isize - before as isize;
        if delta != 0 {
            for t in self.t[k + 1..].iter_mut().flatten() {
                t.moved(delta);
            }
            self.end = self.end.wrapping_add_signed(delta);
        }
        out
    }
}

fn drop_empty_tables(buf: &mut Bytes) {
    for k in (0..COLS.len()).rev() {
        if let Some(t) = get_table(buf, k)
            && t.rows == 0
        {
            buf.drain(t.start..t.end());
            buf[at::PRESENT] &= !(1 << k);
        }
    }
}

/// The rows of `SHOWN` that belong to item row `row`: (first, count).
fn shown_rows(buf: &[u8], shown: &Table, row: usize) -> (usize, usize) {
    let first = shown.lower_bound(buf, row as u64);
    let mut n = 0;
    while first + n < shown.rows && shown.get(buf, first + n, ROW) == row as u64 {
        n += 1;
    }
    (first, n)
}

/// Decays the row's counters (`decays`: column and half-life) to `s` if it is later than the
/// row's time, then adds each of `adds` (column and amount) as of `s`.
fn bump(
    buf: &mut Bytes,
    t: &mut Table,
    row: usize,
    s: u32,
    decays: &[(usize, i64)],
    adds: &[(usize, f32)],
) {
    let at = second(buf, t.get(buf, row, AT));
    if s > at {
        let elapsed = i64::from(s - at) * 1000;
        for &(col, hl) in decays {
            let v = decode_count(t.get(buf, row, col)) * factor(elapsed, hl);
            t.set(buf, row, col, encode_count(v));
        }
        let o = offset(buf, s);
        t.set(buf, row, AT, o);
    }
    for &(col, amount) in adds {
        let hl = decays.iter().find(|d| d.0 == col).map_or(1, |d| d.1);
        let f = factor(i64::from(at.saturating_sub(s)) * 1000, hl);
        let c = t.get(buf, row, col);
        let v = if f == 1.0 {
            add_count(c, amount)
        } else {
            encode_count(decode_count(c) + amount * f)
        };
        t.set(buf, row, col, v);
    }
}

/// The session meter's counters as of `now_s`, and the second they are kept at.
fn session(buf: &[u8], now_s: u32, hl: i64) -> (f32, f32) {
    if buf.is_empty() {
        return (0.0, 0.0);
    }
    let f = fixed_table(buf);
    let at = second(buf, f.get(buf, 0, fixed::SESSION_AT));
    let decay = factor(i64::from(now_s.saturating_sub(at)) * 1000, hl);
    (
        decode_count(f.get(buf, 0, fixed::SESSION_IMPRESSIONS)) * decay,
        decode_count(f.get(buf, 0, fixed::SESSION_ENGAGEMENTS)) * decay,
    )
}

fn add_session(buf: &mut Bytes, s: u32, impressions: f32, engagements: f32, hl: i64) {
    let mut f = fixed_table(buf);
    let at = second(buf, f.get(buf, 0, fixed::SESSION_AT));
    let (ci, ce) = (
        f.get(buf, 0, fixed::SESSION_IMPRESSIONS),
        f.get(buf, 0, fixed::SESSION_ENGAGEMENTS),
    );
    let (i, e) = (decode_count(ci), decode_count(ce));
    let (i, e) = if s >= at {
        let decay = factor(i64::from(s - at) * 1000, hl);
        let o = offset(buf, s);
        f.set(buf, 0, fixed::SESSION_AT, o);
        if decay == 1.0 {
            (add_count(ci, impressions), add_count(ce, engagements))
        } else {
            (
                encode_count(i * decay + impressions),
                encode_count(e * decay + engagements),
            )
        }
    } else {
        let decay = factor(i64::from(at - s) * 1000, hl);
        (
            encode_count(i + impressions * decay),
            encode_count(e + engagements * decay),
        )
    };
    f.set(buf, 0, fixed::SESSION_IMPRESSIONS, i);
    f.set(buf, 0, fixed::SESSION_ENGAGEMENTS, e);
}

/// An item's latest engagement (a unix second), if any: its `ENGAGED` counts back from its
/// touch.
fn engaged_at(buf: &[u8], items: &Table, row: usize) -> Option<u32> {
    let e = items.get(buf, row, ENGAGED);
    (e > 0).then(|| {
        let at = second(buf, items.get(buf, row, AT));
        at.saturating_sub(u32::try_from(e - 1).unwrap_or(u32::MAX))
    })
}

/// Sets an item's latest engagement to `e`, no later than its touch.
fn set_engaged_at(buf: &mut Bytes, items: &mut Table, row: usize, e: u32) {
    let at = second(buf, items.get(buf, row, AT));
    items.set(buf, row, ENGAGED, u64::from(at.saturating_sub(e)) + 1);
}

/// What rarely changes and must stay exact: encoded after the tables ([`Cold::encode`]: only
/// the fields that hold something), and decoded when read or changed. Consent comes first,
/// so that it can be read alone. Its derived postcard encoding is format 3's cold part, which
/// `legacy` reads: its fields and their order stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Cold {
    pub consent: ConsentChoices,
    pub explicit: Explicit,
    pub words: WordTimes,
    /// Oldest first, at most [`MAX_PURCHASES`].
    pub purchases: Vec<Purchase>,
    /// Oldest first, at most [`MAX_SIGHTINGS`].
    pub sightings: Vec<Sighting>,
}

fn cold(buf: &[u8]) -> Cold {
    let l = layout(buf);
    if l.cold >= buf.len() {
        return Cold::default();
    }
    let mut c = Cold::decode(&buf[l.cold..]).expect("a user's cold part is well formed");
    c.shift_times(base(buf) * 1000);
    c
}

/// Mask bits of the cold part's fields ([`Cold::encode`]). The fields a user most often holds
/// have the seven low bits, so that their mask takes one byte; the order of the fields
/// themselves is the order of [`Cold::decode`], consent first.
mod cold_field {
    pub const BLOCKED_BRANDS: u16 = 1 << 0;
    pub const WORD_BRANDS: u16 = 1 << 1;
    pub const NOT_INTERESTED: u16 = 1 << 2;
    pub const FEWER_CATEGORIES: u16 = 1 << 3;
    pub const FEWER_BRANDS: u16 = 1 << 4;
    pub const PURCHASES: u16 = 1 << 5;
    pub const DENIED: u16 = 1 << 6;
    pub const GRANTED: u16 = 1 << 7;
    pub const PERSONALIZATION: u16 = 1 << 8;
    pub const SENSITIVE: u16 = 1 << 9;
    pub const BLOCKED_SHOPS: u16 = 1 << 10;
    pub const INTERESTS: u16 = 1 << 11;
    pub const WORD_SHOPS: u16 = 1 << 12;
    pub const SIGHTINGS: u16 = 1 << 13;
    /// Every field.
    pub const ALL: u16 = (1 << 14) - 1;
}

/// Reads the cold part's fields one by one, each present only when its mask bit says so.
struct ColdReader<'a> {
    mask: u16,
    rest: &'a [u8],
}

impl<'a> ColdReader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, postcard::Error> {
        let (mask, rest) = postcard::take_from_bytes::<u16>(bytes)?;
        if mask & !cold_field::ALL != 0 {
            return Err(postcard::Error::DeserializeBadEncoding);
        }
        Ok(ColdReader { mask, rest })
    }

    /// The field of `bit`, or its default when absent.
    fn field<T: Deserialize<'a> + Default>(&mut self, bit: u16) -> Result<T, postcard::Error> {
        if self.mask & bit == 0 {
            return Ok(T::default());
        }
        let (v, rest) = postcard::take_from_bytes(self.rest)?;
        self.rest = rest;
        Ok(v)
    }

    fn consent(&mut self) -> Result<ConsentChoices, postcard::Error> {
        use cold_field as f;
        Ok(ConsentChoices {
            granted: self.field(f::GRANTED)?,
            denied: self.field(f::DENIED)?,
            personalization: self.field::<Option<bool>>(f::PERSONALIZATION)?,
            sensitive: self.field(f::SENSITIVE)?,
        })
    }
}

/// Appends a field and sets its mask bit, unless it holds nothing.
fn put_field<T: Serialize>(out: &mut Vec<u8>, mask: &mut u16, bit: u16, v: &T, empty: bool) {
    if !empty {
        *mask |= bit;
        *out = postcard::to_extend(v, std::mem::take(out)).expect("encodable");
    }
}

impl Cold {
    /// The cold part as stored: a mask of the fields that hold something (postcard, one or
    /// two bytes), then each of those fields (postcard), consent first so that it can be read
    /// alone. An empty field costs nothing.
    fn encode(&self) -> Vec<u8> {
        use cold_field as f;
        let (c, x, w) = (&self.consent, &self.explicit, &self.words);
        let mut mask = 0u16;
        let mut out = Vec::new();
        put_field(
            &mut out,
            &mut mask,
            f::GRANTED,
            &c.granted,
            c.granted.is_empty(),
        );
        put_field(
            &mut out,
            &mut mask,
            f::DENIED,
            &c.denied,
            c.denied.is_empty(),
        );
        let p = &c.personalization;
        put_field(&mut out, &mut mask, f::PERSONALIZATION, p, p.is_none());
        put_field(
            &mut out,
            &mut mask,
            f::SENSITIVE,
            &c.sensitive,
            c.sensitive.is_empty(),
        );
        let v = &x.not_interested;
        put_field(&mut out, &mut mask, f::NOT_INTERESTED, v, v.is_empty());
        let v = &x.blocked_brands;
        put_field(&mut out, &mut mask, f::BLOCKED_BRANDS, v, v.is_empty());
        let v = &x.blocked_shops;
        put_field(&mut out, &mut mask, f::BLOCKED_SHOPS, v, v.is_empty());
        let v = &x.fewer_categories;
        put_field(&mut out, &mut mask, f::FEWER_CATEGORIES, v, v.is_empty());
        let v = &x.fewer_brands;
        put_field(&mut out, &mut mask, f::FEWER_BRANDS, v, v.is_empty());
        let v = &x.interests;
        put_field(&mut out, &mut mask, f::INTERESTS, v, v.is_empty());
        put_field(
            &mut out,
            &mut mask,
            f::WORD_BRANDS,
            &w.brands,
            w.brands.is_empty(),
        );
        put_field(
            &mut out,
            &mut mask,
            f::WORD_SHOPS,
            &w.shops,
            w.shops.is_empty(),
        );
        let v = &self.purchases;
        put_field(&mut out, &mut mask, f::PURCHASES, v, v.is_empty());
        let v = &self.sightings;
        put_field(&mut out, &mut mask, f::SIGHTINGS, v, v.is_empty());
        let mut whole = postcard::to_allocvec(&mask).expect("encodable");
        whole.extend_from_slice(&out);
        whole
    }

    /// The cold part from [`Cold::encode`]'s bytes (which it must use up).
    fn decode(bytes: &[u8]) -> Result<Cold, postcard::Error> {
        use cold_field as f;
        let mut r = ColdReader::new(bytes)?;
        let consent = r.consent()?;
        let cold = Cold {
            consent,
            explicit: Explicit {
                not_interested: r.field(f::NOT_INTERESTED)?,
                blocked_brands: r.field(f::BLOCKED_BRANDS)?,
                blocked_shops: r.field(f::BLOCKED_SHOPS)?,
                fewer_categories: r.field(f::FEWER_CATEGORIES)?,
                fewer_brands: r.field(f::FEWER_BRANDS)?,
                interests: r.field(f::INTERESTS)?,
            },
            words: WordTimes {
                brands: r.field(f::WORD_BRANDS)?,
                shops: r.field(f::WORD_SHOPS)?,
            },
            purchases: r.field(f::PURCHASES)?,
            sightings: r.field(f::SIGHTINGS)?,
        };
        if r.rest.is_empty() {
            Ok(cold)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    }

    /// Adds `ms` to every time held (wrapping, so that adding it back gives each time back).
    fn shift_times(&mut self, ms: i64) {
        let x = &mut self.explicit;
        let times = self
            .purchases
            .iter_mut()
            .map(|p| &mut p.at_ms)
            .chain(self.sightings.iter_mut().map(|s| &mut s.at_ms))
            .chain(x.not_interested.iter_mut().map(|n| &mut n.1))
            .chain(x.fewer_categories.iter_mut().map(|f| &mut f.1))
            .chain(x.fewer_brands.iter_mut().map(|f| &mut f.1))
            .chain(self.words.brands.iter_mut().map(|w| &mut w.1))
            .chain(self.words.shops.iter_mut().map(|w| &mut w.1));
        for t in times {
            *t = t.wrapping_add(ms);
        }
    }

    fn is_empty(&self) -> bool {
        let (c, x) = (&self.consent, &self.explicit);
        c.granted.is_empty()
            && c.denied.is_empty()
            && c.personalization.is_none()
            && c.sensitive.is_empty()
            && x.not_interested.is_empty()
            && x.blocked_brands.is_empty()
            && x.blocked_shops.is_empty()
            && x.fewer_categories.is_empty()
            && x.fewer_brands.is_empty()
            && x.interests.is_empty()
            && self.words.is_empty()
            && self.purchases.is_empty()
            && self.sightings.is_empty()
    }
}

/// Replaces the cold part. Its times are kept as milliseconds after the user's base: a few
/// bytes each instead of six.
fn set_cold(buf: &mut Bytes, mut cold: Cold) {
    let l = layout(buf);
    buf.truncate(l.cold);
    if !cold.is_empty() {
        cold.shift_times((base(buf) * 1000).wrapping_neg());
        let bytes = cold.encode();
        buf.reserve_exact(bytes.len());
        buf.extend_from_slice(&bytes);
    }
}

/// Bytes an allocation of `len` takes: mimalloc's size classes (8-byte steps up to 64, then
/// four classes per doubling).
fn allocated(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let words = len.div_ceil(8);
    if words <= 8 {
        return words * 8;
    }
    let b = usize::BITS - 1 - (words - 1).leading_zeros();
    let step = 1 << (b - 2);
    words.div_ceil(step) * step * 8
}

/// The user's own consent choices; anything not chosen follows the platform default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsentChoices {
    pub granted: DimensionSet,
    pub denied: DimensionSet,
    pub personalization: Option<bool>,
    /// Sorted sensitive categories the user opted in to (all others stay hidden).
    pub sensitive: Vec<u64>,
}

impl ConsentChoices {
    pub fn apply_to(&self, default: Consent) -> Consent {
        Consent {
            granted: default.granted.union(self.granted).difference(self.denied),
            personalization: self.personalization.unwrap_or(default.personalization),
        }
    }

    /// Applies a consent change; refused whole when it would leave the user opted in to too
    /// many sensitive categories.
    fn change(
        &mut self,
        changes: &[(DataDimension, bool)],
        personalization: Option<bool>,
        sensitive: &[(u64, bool)],
    ) -> Result<(), EventError> {
        let mut opted = self.sensitive.clone();
        for &(category, granted) in sensitive {
            if granted {
                insert_sorted(&mut opted, category, usize::MAX, "sensitive_categories")?;
            } else {
                remove_sorted(&mut opted, category);
            }
        }
        // Checked on the outcome, so that the message says what the request would do.
        if opted.len() > MAX_INTERESTS {
            return Err(EventError::new(
                "sensitive_categories",
                format!(
                    "this change would leave the user opted in to {} sensitive categories; at \
                     most {MAX_INTERESTS} are kept (the user has {} now)",
                    opted.len(),
                    self.sensitive.len()
                ),
            ));
        }
        self.sensitive = opted;
        for &(d, granted) in changes {
            self.set(d, granted);
        }
        if personalization.is_some() {
            self.personalization = personalization;
        }
        Ok(())
    }

    pub fn set(&mut self, dimension: DataDimension, granted: bool) {
        if granted {
            self.granted.insert(dimension);
            self.denied.remove(dimension);
        } else {
            self.denied.insert(dimension);
            self.granted.remove(dimension);
        }
    }
}

/// A change to the user's interest tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterestChange {
    pub kind: TagKind,
    pub id: u64,
    /// In [0, 1]; 0 removes the tag (and keeps a learned one of the same subject hidden).
    pub weight: f32,
    /// `None` keeps the current label.
    pub label: Option<String>,
}

/// What the user takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Undo {
    BlockedBrand(u64),
    BlockedShop(u64),
    NotInterested(u64),
    FewerCategory(u64),
    FewerBrand(u64),
}

/// The user's explicit words, kept exactly as said (in the user's cold part, see
/// [`UserState`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Explicit {
    /// Sorted by item id: (item, shown again from).
    pub not_interested: Vec<(u64, i64)>,
    /// Sorted.
    pub blocked_brands: Vec<u64>,
    /// Sorted.
    pub blocked_shops: Vec<u64>,
    /// Sorted by category id: (category, when it was last asked for, at full strength).
    pub fewer_categories: Vec<(u64, i64)>,
    /// Sorted by brand id: (brand, when it was last asked for, at full strength).
    pub fewer_brands: Vec<(u64, i64)>,
    /// Sorted by (kind, id).
    pub interests: Vec<Interest>,
}

impl Explicit {
    fn apply(&mut self, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
        use EventKind as K;
        let cap = cfg.max_explicit_per_kind;
        match e.kind {
            K::NotInterested => {
                let until = if e.expires_at_ms > 0 {
                    e.expires_at_ms
                } else {
                    e.at_ms.saturating_add(cfg.not_interested_ms)
                };
                let entry = upsert(
                    &mut self.not_interested,
                    e.item_id,
                    |(k, _)| *k,
                    || (e.item_id, until),
                    cap,
                )
                .ok_or_else(|| full("item_id", cap))?;
                entry.1 = until;
            }
            K::FewerLikeThis => {
                for (v, id, field) in [
                    (&mut self.fewer_categories, e.category_id, "category_id"),
                    (&mut self.fewer_brands, e.brand_id, "brand_id"),
                ] {
                    if id == 0 {
                        continue;
                    }
                    let entry = upsert(v, id, |(k, _)| *k, || (id, e.at_ms), cap)
                        .ok_or_else(|| full(field, cap))?;
                    // Each request for "fewer" restores full strength; it never exceeds 1.
                    entry.1 = e.at_ms.max(entry.1);
                }
            }
            K::BlockBrand => insert_sorted(&mut self.blocked_brands, e.brand_id, cap, "brand_id")?,
            K::UnblockBrand => remove_sorted(&mut self.blocked_brands, e.brand_id),
            K::BlockShop => insert_sorted(&mut self.blocked_shops, e.shop_id, cap, "shop_id")?,
            K::UnblockShop => remove_sorted(&mut self.blocked_shops, e.shop_id),
            K::Impression | K::Click | K::Cart | K::Favorite | K::Purchase | K::Search => {}
        }
        Ok(())
    }

    fn undo(&mut self, undo: Undo) {
        let remove_keyed = |v: &mut Vec<(u64, i64)>, id: u64| {
            if let Ok(i) = v.binary_search_by_key(&id, |(k, _)| *k) {
                v.remove(i);
            }
        };
        match undo {
            Undo::BlockedBrand(id) => remove_sorted(&mut self.blocked_brands, id),
            Undo::BlockedShop(id) => remove_sorted(&mut self.blocked_shops, id),
            Undo::NotInterested(id) => {
                if let Ok(i) = self.not_interested.binary_search_by_key(&id, |(k, _)| *k) {
                    self.not_interested.remove(i);
                }
            }
            Undo::FewerCategory(id) => remove_keyed(&mut self.fewer_categories, id),
            Undo::FewerBrand(id) => remove_keyed(&mut self.fewer_brands, id),
        }
    }

    fn update_interests(&mut self, changes: &[InterestChange]) -> Result<(), EventError> {
        // All or nothing: a batch that would overflow changes nothing.
        let mut next = self.interests.clone();
        for c in changes {
            match next.binary_search_by(|i| (i.kind, i.id).cmp(&(c.kind, c.id))) {
                Ok(i) => {
                    next[i].weight = c.weight;
                    if let Some(label) = &c.label {
                        next[i].label = label.clone();
                    }
                }
                Err(i) => {
                    if next.len() >= MAX_INTERESTS {
                        return Err(full("interests", MAX_INTERESTS));
                    }
                    next.insert(
                        i,
                        Interest {
                            kind: c.kind,
                            id: c.id,
                            weight: c.weight,
                            label: c.label.clone().unwrap_or_default(),
                        },
                    );
                }
            }
        }
        self.interests = next;
        Ok(())
    }
}

/// The time of the user's latest word on each brand and shop they blocked or unblocked, so
/// that blocks and unblocks resolve by when the user said them (`at_ms`), not by when they
/// arrived: a retried or delayed older event never overrides a newer one. Ties go to the
/// later arrival. Sorted by id; at most `max_explicit_per_kind` unblocked entries per list
/// are remembered (the oldest go first; blocked ones are bounded by the blocks' own cap).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WordTimes {
    /// (brand, at_ms, blocked).
    pub(super) brands: Vec<(u64, i64, bool)>,
    /// (shop, at_ms, blocked).
    pub(super) shops: Vec<(u64, i64, bool)>,
}

impl WordTimes {
    fn list(&mut self, shop: bool) -> &mut Vec<(u64, i64, bool)> {
        if shop {
            &mut self.shops
        } else {
            &mut self.brands
        }
    }

    /// Whether a word at `at_ms` on `id` is the newest (or as new as the newest) so far.
    fn is_newest(&self, shop: bool, id: u64, at_ms: i64) -> bool {
        let list = if shop { &self.shops } else { &self.brands };
        match list.binary_search_by_key(&id, |w| w.0) {
            Ok(i) => at_ms >= list[i].1,
            Err(_) => true,
        }
    }

    /// Notes a word; returns the time it is noted at (never earlier than the last one).
    fn note(&mut self, shop: bool, id: u64, at_ms: i64, blocked: bool, cap: usize) {
        let list = self.list(shop);
        match list.binary_search_by_key(&id, |w| w.0) {
            Ok(i) => list[i] = (id, at_ms.max(list[i].1), blocked),
            Err(i) => list.insert(i, (id, at_ms, blocked)),
        }
        let unblocked = list.iter().filter(|w| !w.2).count();
        if unblocked > cap
            && let Some(oldest) = list
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.2)
                .min_by_key(|(_, w)| w.1)
                .map(|(i, _)| i)
        {
            list.remove(oldest);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.brands.is_empty() && self.shops.is_empty()
    }
}

/// Inserts or finds `key` in a vector sorted by key; refuses to grow past `cap`.
fn upsert<T, K: Ord>(
    v: &mut Vec<T>,
    key: K,
    key_of: impl Fn(&T) -> K,
    make: impl FnOnce() -> T,
    cap: usize,
) -> Option<&mut T> {
    match v.binary_search_by(|x| key_of(x).cmp(&key)) {
        Ok(i) => Some(&mut v[i]),
        Err(_) if v.len() >= cap => None,
        Err(i) => {
            v.insert(i, make());
            Some(&mut v[i])
        }
    }
}

fn insert_sorted(
    v: &mut Vec<u64>,
    key: u64,
    cap: usize,
    field: &'static str,
) -> Result<(), EventError> {
    if let Err(i) = v.binary_search(&key) {
        if v.len() >= cap {
            return Err(full(field, cap));
        }
        v.insert(i, key);
    }
    Ok(())
}

fn remove_sorted(v: &mut Vec<u64>, key: u64) {
    if let Ok(i) = v.binary_search(&key) {
        v.remove(i);
    }
}

/// How much an engagement says about interest, and which kind of data it is.
fn engagement(kind: EventKind) -> Option<(f32, DataDimension)> {
    match kind {
        EventKind::Click => Some((1.0, DataDimension::Browsing)),
        EventKind::Cart => Some((2.0, DataDimension::Cart)),
        EventKind::Favorite => Some((2.0, DataDimension::Favorites)),
        EventKind::Purchase => Some((3.0, DataDimension::Purchases)),
        EventKind::Search => Some((1.0, DataDimension::Search)),
        _ => None,
    }
}

/// Keeps a vector sorted by time and at most `cap` long, dropping the oldest.
fn push_recent<T>(v: &mut Vec<T>, item: T, cap: usize, at: impl Fn(&T) -> i64) {
    let pos = v.partition_point(|x| at(x) <= at(&item));
    v.insert(pos, item);
    if v.len() > cap {
        v.remove(0);
    }
}

/// Everything tactful holds about one user, in one allocation: what the memory cap counts,
/// and (as [`UserState::to_row`]) what snapshots and the log carry.
///
/// The buffer (empty for a user tactful holds nothing about):
/// - fixed fields: the user's time base, first and latest activity, the session meter, and
///   which tables follow;
/// - tables of integers, each column as wide as its largest value needs: items (id, when
///   touched, ignored impressions, latest engagement), the latest impression times of each
///   item, categories and brands (id, when touched, ignored impressions, engagement, sources).
///   Times are seconds after the user's base (one to three bytes), counts are 16-bit
///   logarithms;
/// - the cold part, exact and rarely changed: consent choices, explicit words and their
///   times, purchases, sightings (postcard).
///
/// In memory the buffer sits behind a thin pointer ([`Packed`]), after the length of its
/// cold part (the rest says its own length: one byte for most users), so that a map slot
/// holds 8 bytes for it; rows carry the buffer without that byte.
///
/// Exact: impression times (frequency caps), explicit words, consent, purchases, sightings,
/// first and latest activity. Approximate: decayed counters (0.034 % steps, times to the
/// second) and engagement times (to the second).
#[derive(Clone, Default, PartialEq)]
pub struct UserState {
    buf: Packed<UserBytes>,
}

/// Bytes in front of a user's buffer that the map keeps for itself: when the user was last
/// used, which data dimensions rankings relied on, and whether they changed since a snapshot
/// wrote them out (kept there rather than in the map's slot, which holds the key and the
/// pointer only).
pub(super) const LEAD: usize = 4;

/// A user's buffer, as [`Packed`] holds it: what follows the tables (the cold part) is what
/// does not describe its own length.
pub(super) struct UserBytes;

impl Head for UserBytes {
    /// The map's own record of the user ([`UserState::lead`]).
    const LEAD: usize = LEAD;

    unsafe fn head_len(bytes: *const u8) -> usize {
        // SAFETY: the caller's word: a whole, well-formed buffer, so the fixed fields and
        // every table header it names are there.
        let present = unsafe { *bytes.add(at::PRESENT) };
        let mut end = at::FIXED + unsafe { table_len(bytes.add(at::FIXED), fixed::COLS, true) };
        for (k, cols) in COLS.iter().enumerate() {
            if present & (1 << k) != 0 {
                end += unsafe { table_len(bytes.add(end), *cols, false) };
            }
        }
        end
    }
}

impl std::fmt::Debug for UserState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = layout(&self.buf);
        let rows = l.tables.map(|t| t.map_or(0, |t| t.rows));
        f.debug_struct("UserState")
            .field("bytes", &self.buf.len())
            .field("items", &rows[ITEMS])
            .field("shown", &rows[SHOWN])
            .field("categories", &rows[CATEGORIES])
            .field("brands", &rows[BRANDS])
            .field("cold", &cold(&self.buf))
            .finish()
    }
}

impl Serialize for UserState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_row().map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for UserState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> serde::de::Visitor<'de> for Row {
            type Value = UserState;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a user's state row")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<UserState, E> {
                UserState::from_row(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UserState, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(Row)
    }
}

/// What a user's history was made of, field by field: how a state written in an older format
/// becomes one of today ([`UserState::from_parts`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Parts {
    pub first_seen_ms: i64,
    pub last_active_ms: i64,
    /// Session impressions and engagements, decayed to `session_at_ms`.
    pub session: (f32, f32),
    pub session_at_ms: i64,
    /// Sorted by id.
    pub items: Vec<ItemPart>,
    /// Sorted by (kind, id).
    pub groups: Vec<GroupPart>,
    pub cold: Cold,
}

#[derive(Debug, Clone, Default)]
pub(super) struct ItemPart {
    pub id: u64,
    pub touched_ms: i64,
    /// Decayed to `touched_ms`.
    pub ignored: f32,
    /// 0 = never.
    pub engaged_ms: i64,
    /// Newest first, 0 = none.
    pub shown: [u32; SHOWN_TIMES],
}

#[derive(Debug, Clone)]
pub(super) struct GroupPart {
    pub kind: TagKind,
    pub id: u64,
    pub touched_ms: i64,
    /// Both decayed to `touched_ms`.
    pub ignored: f32,
    pub engaged: f32,
    pub sources: DimensionSet,
}

fn sec_of(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000)).unwrap_or(if ms < 0 { 0 } else { u32::MAX })
}

impl UserState {
    /// Runs `f` on the user's buffer (made with its fixed fields if empty), then stores it
    /// back at its exact size: a buffer with nothing in it is dropped.
    fn edit<R>(&mut self, at_ms: i64, f: impl FnOnce(&mut Bytes) -> R) -> R {
        let mut buf = std::mem::take(&mut self.buf).into_bytes();
        let s = shown_second(at_ms);
        if buf.is_empty() {
            // And a byte for the length written in front when it is closed.
            buf.reserve_exact(at::BLANK + 1);
            buf.resize(at::BLANK, 0);
            put_u(&mut buf, at::BASE, 4, u64::from(s));
        } else {
            rebase(&mut buf, s);
        }
        let out = f(&mut buf);
        // Every growth was exact, so this reallocates only after something was removed. A
        // buffer with nothing in it is emptied (its lead, if it had one, is kept).
        if blank(&buf) {
            buf.truncate(0);
        }
        self.buf = buf.finish::<UserBytes>();
        out
    }

    /// Changes the cold part; nothing changes when `f` fails.
    fn change_cold<R>(
        buf: &mut Bytes,
        f: impl FnOnce(&mut Cold) -> Result<R, EventError>,
    ) -> Result<R, EventError> {
        let mut c = cold(buf);
        let out = f(&mut c)?;
        set_cold(buf, c);
        Ok(out)
    }

    /// Applies a checked event. Explicit feedback beyond the per-user caps is refused, never
    /// silently dropped; counters beyond their caps forget the least recently touched entry
    /// instead.
    pub fn apply(&mut self, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
        self.edit(e.at_ms, |buf| apply(buf, e, cfg))
    }

    /// Takes back a block, a "not interested" or a "fewer like this".
    pub fn undo(&mut self, undo: Undo, at_ms: i64) {
        self.edit(at_ms, |buf| {
            let mut c = cold(buf);
            c.undo(undo, at_ms);
            set_cold(buf, c);
            seen(buf, at_ms);
            active(buf, at_ms);
        });
    }

    /// Adds, re-weights or removes interest tags (all or nothing).
    pub fn update_interests(
        &mut self,
        changes: &[InterestChange],
        at_ms: i64,
    ) -> Result<(), EventError> {
        self.edit(at_ms, |buf| {
            Self::change_cold(buf, |c| c.explicit.update_interests(changes))?;
            seen(buf, at_ms);
            active(buf, at_ms);
            Ok(())
        })
    }

    /// Sets the user's consent choices; dimensions and categories not named keep their
    /// setting.
    pub fn set_consent(
        &mut self,
        changes: &[(DataDimension, bool)],
        personalization: Option<bool>,
        sensitive: &[(u64, bool)],
        now_ms: i64,
    ) -> Result<(), EventError> {
        self.edit(now_ms, |buf| {
            Self::change_cold(buf, |c| {
                c.consent.change(changes, personalization, sensitive)
            })?;
            seen(buf, now_ms);
            Ok(())
        })
    }

    /// The user's own consent choices.
    pub fn consent(&self) -> ConsentChoices {
        let l = layout(&self.buf);
        if l.cold >= self.buf.len() {
            return ConsentChoices::default();
        }
        ColdReader::new(&self.buf[l.cold..])
            .and_then(|mut r| r.consent())
            .expect("a user's cold part is well formed")
    }

    /// The snapshot a ranking at `now_ms` reads. With personalisation off it holds only the
    /// user's explicit words: nothing learned from behaviour (see
    /// [`UserView::explicit_only`]).
    pub fn view(&self, now_ms: i64, consent: Consent, cfg: &StateConfig) -> UserView {
        let buf = &self.buf[..];
        let Cold {
            consent: choices,
            explicit: mut x,
            purchases,
            sightings,
            ..
        } = cold(buf);
        let fhl = cfg.fewer_like_this_half_life_ms;
        let fewer = |v: &[(u64, i64)]| {
            v.iter()
                .map(|(k, at)| (*k, factor(now_ms - at, fhl)))
                .filter(|(_, s)| *s >= FEWER_FLOOR)
                .collect()
        };
        let mut view = UserView {
            not_interested: x
                .not_interested
                .iter()
                .filter(|(_, until)| *until > now_ms)
                .map(|(item, _)| *item)
                .collect(),
            blocked_brands: std::mem::take(&mut x.blocked_brands),
            blocked_shops: std::mem::take(&mut x.blocked_shops),
            sensitive_opt_in: choices.sensitive,
            ..UserView::unknown(consent)
        };
        view.fewer_categories = fewer(&x.fewer_categories);
        view.fewer_brands = fewer(&x.fewer_brands);
        if !consent.personalization || buf.is_empty() {
            return view;
        }
        let l = layout(buf);
        let hl = cfg.exposure_half_life_ms;
        let now_s = shown_second(now_ms);
        let last_active_ms = get_ms(buf, fixed::LAST_ACTIVE);
        if let Some(items) = l.tables[ITEMS] {
            let shown = l.tables[SHOWN];
            let newest = shown.map_or(0, |t| {
                if t.rows == 0 {
                    0
                } else {
                    second(buf, t.max_value(buf, SECOND))
                }
            });
            let latest_s = newest
                .max(shown_second(last_active_ms))
                // The ranking request itself comes after what was shown in an earlier second.
                .max(now_s);
            let shown_from = (now_ms - SHOWN_HORIZON_MS).div_euclid(1000);
            view.ignored.reserve(items.rows);
            let mut cursor = 0;
            for r in 0..items.rows {
                // Its impression times, newest first: the rows of `SHOWN` are in item order.
                let mut times = [0u32; SHOWN_TIMES];
                if let Some(t) = shown {
                    let mut n = 0;
                    while cursor < t.rows && t.get(buf, cursor, ROW) == r as u64 {
                        if n < SHOWN_TIMES {
                            times[n] = second(buf, t.get(buf, cursor, SECOND));
                        }
                        n += 1;
                        cursor += 1;
                    }
                }
                let id = items.get(buf, r, ID);
                let at_s = second(buf, items.get(buf, r, AT));
                let engaged_s = engaged_at(buf, &items, r);
                let after_engaged = |t: u32| engaged_s.is_none_or(|e| t > e);
                let stored = decayed(
                    items.get(buf, r, IGNORED),
                    now_ms - i64::from(at_s) * 1000,
                    hl,
                );
                // An impression may still be engaged with, so it does not count yet, while it
                // is younger than the ignore window *and* nothing of the user's came after
                // it: once the user's next event or next ranking request arrives in a later
                // second, the item was seen and passed over.
                let pending: f32 = if stored > 0.0 && times[0] >= latest_s {
                    times
                        .iter()
                        .take_while(|t| **t >= latest_s && **t > 0)
                        .map(|t| i64::from(*t) * 1000)
                        .take_while(|t| now_ms - *t < cfg.ignore_window_ms)
                        .filter(|t| after_engaged((*t / 1000) as u32) && *t <= now_ms)
                        .map(|t| factor(now_ms - t, hl))
                        .sum()
                } else {
                    0.0
                };
                let ignored = (stored - pending).max(0.0);
                if ignored >= IGNORED_FLOOR {
                    view.ignored.push((id, ignored));
                }
                if let Some(e) = engaged_s {
                    view.engaged.push((id, i64::from(e) * 1000));
                }
                if times[0] > 0 && i64::from(times[0]) >= shown_from {
                    // Engaging with an item restarts its frequency count: restraint is for
                    // what the user does not respond to.
                    for t in &mut times {
                        if !after_engaged(*t) {
                            *t = 0;
                        }
                    }
                    view.shown.push((id, times));
                }
            }
        }
        let ignored_groups = |k: usize| {
            l.tables[k].map_or_else(Vec::new, |t| {
                (0..t.rows)
                    .map(|r| {
                        let at_s = second(buf, t.get(buf, r, AT));
                        let elapsed = now_ms - i64::from(at_s) * 1000;
                        (
                            t.get(buf, r, ID),
                            decayed(t.get(buf, r, IGNORED), elapsed, hl),
                        )
                    })
                    .filter(|(_, n)| *n >= IGNORED_FLOOR)
                    .collect()
            })
        };
        view.ignored_categories = ignored_groups(CATEGORIES);
        view.ignored_brands = ignored_groups(BRANDS);
        (view.recent_impressions, view.recent_engagements) =
            session(buf, now_s, cfg.session_half_life_ms);
        view.purchases = purchases;
        view.sightings = sightings;
        view.tags = tags(buf, &l, &x.interests, now_ms, consent, cfg);
        let first_seen_ms = get_ms(buf, fixed::FIRST_SEEN);
        view.first_seen_ms = (first_seen_ms > 0).then_some(first_seen_ms);
        view.last_active_ms = (last_active_ms > 0).then_some(last_active_ms);
        view
    }

    /// True when nothing is held: such a user need not be stored.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the state holds nothing but the times it was seen and markers of removed
    /// tags: what a change that changed nothing (an undo of nothing, an empty consent change,
    /// removing a tag never set) leaves on a new user, who has no learned tag to hide.
    pub fn holds_nothing_but_times(&self) -> bool {
        let buf = &self.buf[..];
        if buf.is_empty() {
            return true;
        }
        let mut c = cold(buf);
        c.explicit.interests.retain(|i| i.weight > 0.0);
        c == Cold::default()
            && buf[at::PRESENT] == 0
            && get_fixed(buf, fixed::SESSION_IMPRESSIONS) == 0
            && get_fixed(buf, fixed::SESSION_ENGAGEMENTS) == 0
    }

    /// The bytes the map keeps in front of the buffer ([`LEAD`]), as atomics: `None` until
    /// [`UserState::keep_lead`] made room for them in an empty state.
    pub(super) fn lead(&self) -> Option<&[std::sync::atomic::AtomicU8]> {
        self.buf.lead()
    }

    /// Makes room for the lead even while the state is empty.
    pub(super) fn keep_lead(&mut self) {
        self.buf.keep_lead();
    }

    /// Bytes this state holds on the heap: its one allocation, as the allocator sizes it, so
    /// that the memory cap is close to what the process really holds.
    pub fn heap_bytes(&self) -> usize {
        allocated(self.buf.allocation_len())
    }

    /// The state as a snapshot row: the row format's byte, then the buffer as it is (every
    /// time in it counts from the user's own base, so it is whole on its own).
    pub fn to_row(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut row = Vec::with_capacity(1 + self.buf.len());
        row.push(ROW_FORMAT);
        row.extend_from_slice(&self.buf);
        Ok(row)
    }

    /// A state from a snapshot row ([`UserState::to_row`]); a row of another format, or one
    /// that is not whole, is refused.
    pub fn from_row(bytes: &[u8]) -> Result<Self, postcard::Error> {
        let bad = || postcard::Error::DeserializeBadEncoding;
        let (&format, buf) = bytes.split_first().ok_or_else(bad)?;
        if format == ROW_FORMAT_V3 {
            return super::legacy::decode_row_v3(buf);
        }
        if format != ROW_FORMAT || (!buf.is_empty() && buf.len() < at::BLANK) {
            return Err(bad());
        }
        let l = parse(buf).ok_or_else(bad)?;
        if l.cold < buf.len() {
            Cold::decode(&buf[l.cold..])?;
        }
        let items = l.tables[ITEMS].map_or(0, |t| t.rows) as u64;
        if let Some(t) = l.tables[SHOWN]
            && (0..t.rows).any(|r| t.get(buf, r, ROW) >= items)
        {
            return Err(bad());
        }
        Ok(Self {
            buf: Packed::copy_of(buf),
        })
    }

    /// The word times, for a backend that stores them apart.
    pub fn words(&self) -> WordTimes {
        cold(&self.buf).words
    }

    pub fn set_words(&mut self, words: WordTimes) {
        if self.buf.is_empty() && words.is_empty() {
            return;
        }
        let at_ms = get_ms(&self.buf, fixed::FIRST_SEEN).max(1);
        self.edit(at_ms, |buf| {
            let mut c = cold(buf);
            c.words = words;
            set_cold(buf, c);
        });
    }

    /// Forgets what no ranking at `now_ms` or later can use: counters untouched for longer
    /// than the retention, impressions past every frequency cap's window, purchases older
    /// than any cooling-off window, "not interested" past its end, "fewer like this" faded
    /// out. Returns true when something was removed.
    pub fn expire(&mut self, now_ms: i64, cfg: &StateConfig) -> bool {
        if self.buf.is_empty() || !self.has_expired(now_ms, cfg) {
            return false;
        }
        let at_ms = get_ms(&self.buf, fixed::FIRST_SEEN).max(1);
        self.edit(at_ms, |buf| expire(buf, now_ms, cfg));
        true
    }

    /// Whether [`UserState::expire`] would remove anything (cheaper than doing it).
    fn has_expired(&self, now_ms: i64, cfg: &StateConfig) -> bool {
        let buf = &self.buf[..];
        let l = layout(buf);
        let cutoff = sec_of(now_ms.saturating_sub(cfg.counter_retention_ms));
        let horizon = sec_of(now_ms.saturating_sub(SHOWN_HORIZON_MS));
        let older = |k: usize, col: usize, than: u32| {
            l.tables[k].is_some_and(|t| (0..t.rows).any(|r| second(buf, t.get(buf, r, col)) < than))
        };
        older(ITEMS, AT, cutoff)
            || older(CATEGORIES, AT, cutoff)
            || older(BRANDS, AT, cutoff)
            || older(SHOWN, SECOND, horizon)
            || l.cold < buf.len() && cold(buf).expire(now_ms, cfg)
    }

    /// "Not interested" entries still in force, with when each ends.
    pub fn not_interested_until(&self, now_ms: i64) -> Vec<(u64, i64)> {
        cold(&self.buf)
            .explicit
            .not_interested
            .into_iter()
            .filter(|(_, until)| *until > now_ms)
            .collect()
    }

    /// The user's own interest entries, including removed ones (weight 0).
    pub fn interests(&self) -> Vec<Interest> {
        cold(&self.buf).explicit.interests
    }

    /// The state holding what `parts` says (times before 1970 or after 2106 are clamped).
    pub(super) fn from_parts(p: Parts) -> Self {
        let mut state = Self::default();
        let times = p
            .items
            .iter()
            .flat_map(|i| [i.touched_ms, i.engaged_ms])
            .chain(p.groups.iter().map(|g| g.touched_ms))
            .chain(
                p.items
                    .iter()
                    .flat_map(|i| i.shown.map(|t| i64::from(t) * 1000)),
            )
            .chain([p.first_seen_ms, p.session_at_ms])
            .filter(|t| *t > 0);
        let start = times.min().unwrap_or(1000);
        state.edit(start, |buf| {
            put_ms(buf, fixed::FIRST_SEEN, p.first_seen_ms);
            put_ms(buf, fixed::LAST_ACTIVE, p.last_active_ms);
            let session_at = offset(buf, sec_of(p.session_at_ms));
            put_fixed(buf, fixed::SESSION_AT, session_at);
            put_fixed(buf, fixed::SESSION_IMPRESSIONS, encode_count(p.session.0));
            put_fixed(buf, fixed::SESSION_ENGAGEMENTS, encode_count(p.session.1));
            if !p.items.is_empty() {
                let mut items = table(buf, ITEMS);
                for (r, i) in p.items.iter().enumerate() {
                    // The touch is never before the engagement it counts back from.
                    let engaged_s = (i.engaged_ms > 0).then(|| sec_of(i.engaged_ms));
                    let at_s = sec_of(i.touched_ms).max(engaged_s.unwrap_or(0));
                    let engaged = engaged_s.map_or(0, |e| u64::from(at_s - e) + 1);
                    let row = [i.id, offset(buf, at_s), encode_count(i.ignored), engaged];
                    items.insert_row(buf, r, &row);
                }
                let mut shown = table(buf, SHOWN);
                for (r, i) in p.items.iter().enumerate() {
                    for t in i.shown.iter().take_while(|t| **t > 0) {
                        let o = offset(buf, *t);
                        shown.insert_row(buf, shown.rows, &[r as u64, o]);
                    }
                }
            }
            for (k, kind) in [(CATEGORIES, TagKind::Category), (BRANDS, TagKind::Brand)] {
                let of_kind: Vec<&GroupPart> = p.groups.iter().filter(|g| g.kind == kind).collect();
                if of_kind.is_empty() {
                    continue;
                }
                let mut t = table(buf, k);
                for (r, g) in of_kind.iter().enumerate() {
                    let row = [
                        g.id,
                        offset(buf, sec_of(g.touched_ms)),
                        encode_count(g.ignored),
                        encode_count(g.engaged),
                        u64::from(g.sources.bits()),
                    ];
                    t.insert_row(buf, r, &row);
                }
            }
            drop_empty_tables(buf);
            set_cold(buf, p.cold);
        });
        state
    }
}

/// Nothing held: no tables, no cold part, no activity.
fn blank(buf: &[u8]) -> bool {
    buf[at::PRESENT] == 0
        && tables_start(buf) == buf.len()
        && [
            fixed::FIRST_SEEN,
            fixed::LAST_ACTIVE,
            fixed::SESSION_IMPRESSIONS,
            fixed::SESSION_ENGAGEMENTS,
        ]
        .iter()
        .all(|f| get_fixed(buf, *f) == 0)
}

fn seen(buf: &mut Bytes, at_ms: i64) {
    let first = get_ms(buf, fixed::FIRST_SEEN);
    if first == 0 || at_ms < first {
        put_ms(buf, fixed::FIRST_SEEN, at_ms.max(1));
    }
}

fn active(buf: &mut Bytes, at_ms: i64) {
    if at_ms > get_ms(buf, fixed::LAST_ACTIVE) {
        put_ms(buf, fixed::LAST_ACTIVE, at_ms);
    }
}

fn apply(buf: &mut Bytes, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
    use EventKind as K;
    let browsing = matches!(
        e.kind,
        K::Impression | K::Click | K::Cart | K::Favorite | K::Search
    );
    if browsing && e.source == Some(DataDimension::CrossPlatform) {
        // Seen elsewhere: not an exposure here, and not engagement with this platform. It
        // is kept only to know how young cross-platform evidence is. (Purchases and the
        // user's explicit words count wherever they were observed.)
        if e.item_id != 0 || e.category_id != 0 {
            let s = Sighting {
                item_id: e.item_id,
                category_id: e.category_id,
                at_ms: e.at_ms,
            };
            UserState::change_cold(buf, |c| {
                push_recent(&mut c.sightings, s, MAX_SIGHTINGS, |s| s.at_ms);
                Ok(())
            })?;
        }
        seen(buf, e.at_ms);
        return Ok(());
    }
    let s = shown_second(e.at_ms);
    match e.kind {
        K::Impression => {
            if impression(buf, &mut Tables::of(buf), e, cfg) {
                add_session(buf, s, 1.0, 0.0, cfg.session_half_life_ms);
            }
        }
        K::Click | K::Cart | K::Favorite | K::Purchase | K::Search => {
            if e.kind == K::Purchase {
                let p = Purchase {
                    item_id: e.item_id,
                    category_id: e.category_id,
                    brand_id: e.brand_id,
                    price: e.price,
                    at_ms: e.at_ms,
                    title: e.title.clone(),
                };
                UserState::change_cold(buf, |c| {
                    push_recent(&mut c.purchases, p, MAX_PURCHASES, |p| p.at_ms);
                    Ok(())
                })?;
            }
            // Engagement with the item ends its fatigue, and is remembered: restraint learned
            // from logs treats an item the user came back to apart from one they never
            // touched.
            let mut tables = Tables::of(buf);
            if e.item_id != 0 {
                let row = item_row(buf, &mut tables, e.item_id, s, cfg);
                tables.with(buf, ITEMS, |buf, items| {
                    if engaged_at(buf, items, row).is_none_or(|e| s >= e) {
                        items.set(buf, row, IGNORED, 0);
                        if s > second(buf, items.get(buf, row, AT)) {
                            let o = offset(buf, s);
                            items.set(buf, row, AT, o);
                        }
                        set_engaged_at(buf, items, row, s);
                    }
                });
            }
            if let Some((amount, source)) = engagement(e.kind) {
                engage(buf, &mut tables, e, s, amount, source, cfg);
            }
            add_session(buf, s, 0.0, 1.0, cfg.session_half_life_ms);
        }
        K::BlockBrand | K::UnblockBrand | K::BlockShop | K::UnblockShop => {
            UserState::change_cold(buf, |c| c.block(e, cfg))?;
        }
        K::NotInterested | K::FewerLikeThis => {
            UserState::change_cold(buf, |c| c.explicit.apply(e, cfg))?;
        }
    }
    seen(buf, e.at_ms);
    if e.kind != K::Impression {
        active(buf, e.at_ms);
    }
    Ok(())
}

/// The item's row, made room for if new. Past the per-user cap the least recently touched
/// sixteenth of the items is forgotten at once, with their impression times: a heavy user's
/// every new item would otherwise pay a pass over all items and all impression times.
fn item_row(buf: &mut Bytes, tables: &mut Tables, id: u64, s: u32, cfg: &StateConfig) -> usize {
    let added = tables.with(buf, ITEMS, |buf, items| {
        let mut at = match items.search(buf, id) {
            Ok(r) => return Err(r),
            Err(at) => at,
        };
        // Sorted rows of the items forgotten.
        let mut evicted: Vec<u64> = Vec::new();
        if items.rows >= cfg.max_items_per_user && items.rows > 0 {
            let n = (cfg.max_items_per_user / 16).clamp(1, items.rows);
            let mut ages: Vec<(u64, usize)> = (0..items.rows)
                .map(|r| (items.get(buf, r, AT), r))
                .collect();
            ages.select_nth_unstable(n - 1);
            evicted = ages[..n].iter().map(|(_, r)| *r as u64).collect();
            evicted.sort_unstable();
            for r in evicted.iter().rev() {
                items.remove(buf, *r as usize);
            }
            at -= evicted.partition_point(|r| *r < at as u64);
        }
        let o = offset(buf, s);
        items.insert_row(buf, at, &[id, o, 0, 0]);
        Ok((at, evicted))
    });
    let (at, evicted) = match added {
        Ok(added) => added,
        Err(row) => return row,
    };
    // The impression times follow their items' rows.
    // (They come after the items: changing them moves no item.)
    if tables.get(SHOWN).is_none() {
        return at;
    }
    tables.with(buf, SHOWN, |buf, shown| {
        if evicted.is_empty() {
            // Only the rows of the items after the new one move up, and they are the
            // table's tail (its rows are in item order): the rest is not even read.
            let from = shown.lower_bound(buf, at as u64);
            if from < shown.rows {
                let last = shown.get(buf, shown.rows - 1, ROW);
                shown.fit(buf, ROW, last + 1);
                shown.add_from(buf, ROW, from, 1);
            }
            return;
        }
        // After an eviction, in one pass: the forgotten items' go.
        let renumber = |row: u64| {
            let below = match evicted.binary_search(&row) {
                Ok(_) => return None,
                Err(below) => below as u64,
            };
            let row = row - below;
            Some(if row >= at as u64 { row + 1 } else { row })
        };
        if shown.rows > 0
            && let Some(last) = renumber(shown.get(buf, shown.rows - 1, ROW))
        {
            shown.fit(buf, ROW, last);
        }
        shown.retain_map(buf, ROW, renumber);
    });
    at
}

/// Records an impression; false when the item was already recorded as shown in the same
/// second (a host that reports impressions and also asks Rank to record its answer must not
/// count one showing twice).
fn impression(buf: &mut Bytes, tables: &mut Tables, e: &Event, cfg: &StateConfig) -> bool {
    let hl = cfg.exposure_half_life_ms;
    let s = shown_second(e.at_ms);
    let row = item_row(buf, tables, e.item_id, s, cfg);
    let recorded = tables.with(buf, SHOWN, |buf, shown| {
        let (first, n) = shown_rows(buf, shown, row);
        let mut newer = 0;
        for r in first..first + n {
            let t = second(buf, shown.get(buf, r, SECOND));
            if t == s {
                return false;
            }
            if t > s {
                newer += 1;
            }
        }
        // Kept newest first; a late impression goes to its place in time, and one older
        // than the item's latest few is not kept.
        if newer < SHOWN_TIMES {
            if n >= SHOWN_TIMES {
                shown.remove(buf, first + n - 1);
            }
            let o = offset(buf, s);
            shown.insert_row(buf, first + newer, &[row as u64, o]);
        }
        true
    });
    if !recorded {
        return false;
    }
    tables.with(buf, ITEMS, |buf, items| {
        let engaged = engaged_at(buf, items, row);
        let counted = engaged.is_none_or(|e| s > e);
        let adds: &[(usize, f32)] = if counted { &[(IGNORED, 1.0)] } else { &[] };
        bump(buf, items, row, s, &[(IGNORED, hl)], adds);
        if let Some(e) = engaged {
            // The touch may have moved: the engagement keeps its time.
            set_engaged_at(buf, items, row, e);
        }
    });
    for (k, id) in [(CATEGORIES, e.category_id), (BRANDS, e.brand_id)] {
        if let Some(r) = group_row(buf, tables, k, id, s) {
            let decays = [(IGNORED, hl), (ENGAGED, cfg.interest_half_life_ms)];
            tables.with(buf, k, |buf, t| {
                bump(buf, t, r, s, &decays, &[(IGNORED, 1.0)]);
            });
        }
    }
    true
}

fn engage(
    buf: &mut Bytes,
    tables: &mut Tables,
    e: &Event,
    s: u32,
    amount: f32,
    source: DataDimension,
    cfg: &StateConfig,
) {
    for (k, id) in [(CATEGORIES, e.category_id), (BRANDS, e.brand_id)] {
        if let Some(r) = group_row(buf, tables, k, id, s) {
            tables.with(buf, k, |buf, t| {
                // The group's latest event: its ignored impressions end here.
                let latest = s >= second(buf, t.get(buf, r, AT));
                let decays = [
                    (IGNORED, cfg.exposure_half_life_ms),
                    (ENGAGED, cfg.interest_half_life_ms),
                ];
                bump(buf, t, r, s, &decays, &[(ENGAGED, amount)]);
                if latest {
                    t.set(buf, r, IGNORED, 0);
                }
                let mut sources = DimensionSet::from_bits(t.get(buf, r, SOURCES) as u16);
                sources.insert(source);
                t.set(buf, r, SOURCES, u64::from(sources.bits()));
            });
        }
    }
}

/// The row of a category or brand, made room for if new (0 = unknown: none). Past
/// [`MAX_GROUPS`] of both kinds, the least recently touched of either is forgotten.
fn group_row(buf: &mut Bytes, tables: &mut Tables, k: usize, id: u64, s: u32) -> Option<usize> {
    if id == 0 {
        return None;
    }
    let mut at = match tables.with(buf, k, |buf, t| t.search(buf, id)) {
        Ok(r) => return Some(r),
        Err(at) => at,
    };
    let other = if k == CATEGORIES { BRANDS } else { CATEGORIES };
    let rows = |k: usize| tables.get(k).map_or(0, |t| t.rows);
    if rows(k) + rows(other) >= MAX_GROUPS {
        let stalest = [CATEGORIES, BRANDS]
            .into_iter()
            .filter_map(|g| {
                let t = tables.get(g)?;
                (t.rows > 0).then(|| {
                    let r = t.min_row(buf, AT);
                    (t.get(buf, r, AT), g, r)
                })
            })
            .min()?;
        let (_, g, r) = stalest;
        tables.with(buf, g, |buf, t| t.remove(buf, r));
        if g == k && r < at {
            at -= 1;
        }
    }
    let o = offset(buf, s);
    tables.with(buf, k, |buf, t| t.insert_row(buf, at, &[id, o, 0, 0, 0]));
    Some(at)
}

fn expire(buf: &mut Bytes, now_ms: i64, cfg: &StateConfig) {
    let cutoff = sec_of(now_ms.saturating_sub(cfg.counter_retention_ms));
    let horizon = sec_of(now_ms.saturating_sub(SHOWN_HORIZON_MS));
    if let Some(mut items) = get_table(buf, ITEMS) {
        for r in (0..items.rows).rev() {
            if second(buf, items.get(buf, r, AT)) < cutoff {
                items.remove(buf, r);
                if let Some(mut shown) = get_table(buf, SHOWN) {
                    shown.retain(buf, |b, t, x| t.get(b, x, ROW) != r as u64);
                    shown.shift(buf, ROW, r as u64 + 1, -1);
                }
            }
        }
    }
    if let Some(mut shown) = get_table(buf, SHOWN) {
        shown.retain(buf, |b, t, r| second(b, t.get(b, r, SECOND)) >= horizon);
    }
    for k in [CATEGORIES, BRANDS] {
        if let Some(mut t) = get_table(buf, k) {
            t.retain(buf, |b, t, r| second(b, t.get(b, r, AT)) >= cutoff);
        }
    }
    drop_empty_tables(buf);
    let mut c = cold(buf);
    if c.expire(now_ms, cfg) {
        set_cold(buf, c);
    }
}

/// The user's own tags, plus the strongest few learned from engagement the user has
/// consented to (a tag the user set or removed hides the learned one), sorted by subject.
fn tags(
    buf: &[u8],
    l: &Layout,
    own: &[Interest],
    now_ms: i64,
    consent: Consent,
    cfg: &StateConfig,
) -> Vec<Tag> {
    let mut learned: Vec<Tag> = Vec::new();
    for (k, kind) in [(CATEGORIES, TagKind::Category), (BRANDS, TagKind::Brand)] {
        let Some(t) = l.tables[k] else { continue };
        for r in 0..t.rows {
            let id = t.get(buf, r, ID);
            if own
                .binary_search_by(|i| (i.kind, i.id).cmp(&(kind, id)))
                .is_ok()
            {
                continue;
            }
            let sources = consent.allowed(DimensionSet::from_bits(t.get(buf, r, SOURCES) as u16));
            let at_s = second(buf, t.get(buf, r, AT));
            let value = decayed(
                t.get(buf, r, ENGAGED),
                now_ms - i64::from(at_s) * 1000,
                cfg.interest_half_life_ms,
            );
            if !sources.is_empty() && value >= LEARNED_MIN {
                learned.push(Tag {
                    kind,
                    id,
                    label: String::new(),
                    weight: LEARNED_MAX_WEIGHT * value / (value + 2.0 * LEARNED_MIN),
                    source: TagSource::Learned(sources),
                });
            }
        }
    }
    learned.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    learned.truncate(LEARNED_TAGS);
    let mut tags: Vec<Tag> = own
        .iter()
        .filter(|i| i.weight > 0.0)
        .map(|i| Tag {
            kind: i.kind,
            id: i.id,
            label: i.label.clone(),
            weight: i.weight,
            source: TagSource::User,
        })
        .chain(learned)
        .collect();
    tags.sort_by_key(|t| (t.kind, t.id));
    tags
}

impl Cold {
    /// A block or unblock: an older word than the last one on this brand or shop changes
    /// nothing.
    fn block(&mut self, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
        use EventKind as K;
        let shop = matches!(e.kind, K::BlockShop | K::UnblockShop);
        let id = if shop { e.shop_id } else { e.brand_id };
        if self.words.is_newest(shop, id, e.at_ms) {
            self.explicit.apply(e, cfg)?;
            let blocked = matches!(e.kind, K::BlockBrand | K::BlockShop);
            self.words
                .note(shop, id, e.at_ms, blocked, cfg.max_explicit_per_kind);
        }
        Ok(())
    }

    fn undo(&mut self, undo: Undo, at_ms: i64) {
        let unblocked = match undo {
            Undo::BlockedBrand(id) => Some((false, id)),
            Undo::BlockedShop(id) => Some((true, id)),
            _ => None,
        };
        let was_blocked = unblocked.is_some_and(|(shop, id)| {
            let list = if shop {
                &self.explicit.blocked_shops
            } else {
                &self.explicit.blocked_brands
            };
            list.binary_search(&id).is_ok()
        });
        self.explicit.undo(undo);
        // An unblock from the preference centre is the user's newest word on it: a block sent
        // earlier that arrives later must not undo it. (Nothing is noted for a brand or shop
        // that was never blocked: nothing to store.)
        if let Some((shop, id)) = unblocked
            && (was_blocked || self.words.list(shop).iter().any(|w| w.0 == id))
        {
            self.words.note(shop, id, at_ms, false, usize::MAX);
        }
    }

    /// Drops what has run out; true when something was dropped.
    fn expire(&mut self, now_ms: i64, cfg: &StateConfig) -> bool {
        let before = self.len();
        let cutoff = now_ms.saturating_sub(cfg.counter_retention_ms);
        self.sightings.retain(|s| s.at_ms >= cutoff);
        let bought_cutoff = now_ms.saturating_sub(PURCHASE_RETENTION_MS);
        self.purchases.retain(|p| p.at_ms >= bought_cutoff);
        let fhl = cfg.fewer_like_this_half_life_ms;
        let x = &mut self.explicit;
        x.not_interested.retain(|(_, until)| *until > now_ms);
        x.fewer_categories
            .retain(|(_, at)| factor(now_ms - at, fhl) >= FEWER_FLOOR);
        x.fewer_brands
            .retain(|(_, at)| factor(now_ms - at, fhl) >= FEWER_FLOOR);
        before != self.len()
    }

    fn len(&self) -> usize {
        let x = &self.explicit;
        self.purchases.len()
            + self.sightings.len()
            + x.not_interested.len()
            + x.fewer_categories.len()
            + x.fewer_brands.len()
    }
}

fn full(field: &'static str, cap: usize) -> EventError {
    EventError::new(
        field,
        format!("the user already has the maximum of {cap} entries of this kind"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn cfg() -> StateConfig {
        StateConfig::default()
    }

    fn event(kind: EventKind, at_ms: i64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.item_id = 1;
        e.brand_id = 10;
        e.shop_id = 100;
        e.category_id = 5;
        e
    }

    #[test]
    fn ignored_impressions_accumulate_decay_and_reset_on_engagement() {
        // Counted at once (no ignore window) to follow the arithmetic.
        let cfg = StateConfig {
            ignore_window_ms: 0,
            ..cfg()
        };
        let mut u = UserState::default();
        for t in 0..4 {
            u.apply(&event(EventKind::Impression, HOUR + t * 1000), &cfg)
                .unwrap();
        }
        // The same showing reported twice (same item, same second) counts once.
        u.apply(&event(EventKind::Impression, HOUR + 3500), &cfg)
            .unwrap();
        let consent = Consent::privacy_default();
        let v = u.view(HOUR + 10_000, consent, &cfg);
        assert!((v.ignored_impressions(1) - 4.0).abs() < 1e-3);
        let later = u.view(HOUR + cfg.exposure_half_life_ms, consent, &cfg);
        assert!((later.ignored_impressions(1) - 2.0).abs() < 1e-2);

        u.apply(&event(EventKind::Click, 2 * HOUR), &cfg).unwrap();
        assert_eq!(u.view(2 * HOUR, consent, &cfg).ignored_impressions(1), 0.0);
        // An impression stamped before the click arrives late: it was not ignored.
        u.apply(&event(EventKind::Impression, HOUR + 100), &cfg)
            .unwrap();
        assert_eq!(u.view(2 * HOUR, consent, &cfg).ignored_impressions(1), 0.0);
    }

    #[test]
    fn explicit_feedback_and_its_undo() {
        let cfg = cfg();
        let mut u = UserState::default();
        u.apply(&event(EventKind::BlockBrand, HOUR), &cfg).unwrap();
        u.apply(&event(EventKind::BlockShop, HOUR), &cfg).unwrap();
        u.apply(&event(EventKind::NotInterested, HOUR), &cfg)
            .unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert!(v.is_brand_blocked(10) && v.is_shop_blocked(100) && v.is_not_interested(1));
        let expired = u.view(
            HOUR + cfg.not_interested_ms,
            Consent::privacy_default(),
            &cfg,
        );
        assert!(!expired.is_not_interested(1));
        u.apply(&event(EventKind::UnblockBrand, HOUR), &cfg)
            .unwrap();
        u.apply(&event(EventKind::UnblockShop, HOUR), &cfg).unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert!(!v.is_brand_blocked(10) && !v.is_shop_blocked(100));
        assert_eq!(v.last_active_ms, Some(HOUR));
    }

    #[test]
    fn explicit_feedback_past_the_cap_is_refused_not_dropped() {
        let cfg = StateConfig {
            max_explicit_per_kind: 2,
            ..cfg()
        };
        let mut u = UserState::default();
        for brand in 1..=2 {
            let mut e = event(EventKind::BlockBrand, HOUR);
            e.brand_id = brand;
            u.apply(&e, &cfg).unwrap();
        }
        let mut e = event(EventKind::BlockBrand, HOUR);
        e.brand_id = 3;
        assert_eq!(u.apply(&e, &cfg).unwrap_err().field, "brand_id");
        e.brand_id = 2;
        assert!(u.apply(&e, &cfg).is_ok(), "repeating a block is not growth");
    }

    #[test]
    fn exposure_past_the_cap_forgets_the_faintest_item() {
        let cfg = StateConfig {
            max_items_per_user: 3,
            ignore_window_ms: 0,
            ..cfg()
        };
        let mut u = UserState::default();
        for (item, times) in [(1, 3), (2, 1), (3, 2), (4, 2)] {
            for t in 0..times {
                let mut e = event(EventKind::Impression, HOUR + t * 1000);
                e.item_id = item;
                u.apply(&e, &cfg).unwrap();
            }
        }
        let v = u.view(HOUR + 10, Consent::privacy_default(), &cfg);
        let items: Vec<u64> = v.ignored.iter().map(|(i, _)| *i).collect();
        assert_eq!(items, vec![1, 3, 4]);
        // The impression times went with their items.
        let shown: Vec<(u64, usize)> = v
            .shown
            .iter()
            .map(|(i, _)| (*i, v.shown_since(*i, HOUR)))
            .collect();
        assert_eq!(shown, vec![(1, 3), (3, 2), (4, 2)]);
    }

    #[test]
    fn fewer_like_this_fades_with_its_half_life() {
        let cfg = cfg();
        let mut u = UserState::default();
        u.apply(&event(EventKind::FewerLikeThis, HOUR), &cfg)
            .unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert_eq!(v.fewer_like_this(5, 0), 1.0);
        assert_eq!(v.fewer_like_this(0, 10), 1.0);
        let later = u.view(
            HOUR + cfg.fewer_like_this_half_life_ms,
            Consent::privacy_default(),
            &cfg,
        );
        assert!((later.fewer_like_this(5, 0) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn consent_choices_override_the_default_one_dimension_at_a_time() {
        let mut c = ConsentChoices::default();
        c.set(DataDimension::Location, true);
        c.set(DataDimension::Browsing, false);
        let eff = c.apply_to(Consent::privacy_default());
        assert!(eff.allows(DataDimension::Location));
        assert!(!eff.allows(DataDimension::Browsing));
        assert!(eff.allows(DataDimension::Search));
        c.personalization = Some(false);
        assert!(
            !c.apply_to(Consent::privacy_default())
                .allows(DataDimension::Search)
        );
    }

    fn at(kind: EventKind, at_ms: i64, item: u64, category: u64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.item_id = item;
        e.category_id = category;
        e
    }

    #[test]
    fn an_impression_is_pending_until_the_next_request_or_event() {
        let cfg = cfg();
        let consent = Consent::privacy_default();
        let mut u = UserState::default();
        u.apply(&at(EventKind::Impression, HOUR, 1, 5), &cfg)
            .unwrap();
        u.apply(&at(EventKind::Impression, HOUR + 10, 2, 5), &cfg)
            .unwrap();
        // A ranking in the same second: the list was just shown, nothing is ignored yet.
        assert_eq!(
            u.view(HOUR + 500, consent, &cfg).ignored_impressions(1),
            0.0
        );
        // The next ranking request, a second later: seen and passed over.
        assert!(u.view(HOUR + 1000, consent, &cfg).ignored_impressions(1) > 0.99);
        // Engaging with item 2 in the same second as the impressions leaves item 1 pending for
        // that second, and item 2 engaged, not ignored.
        u.apply(&at(EventKind::Click, HOUR + 20, 2, 5), &cfg)
            .unwrap();
        let v = u.view(HOUR + 900, consent, &cfg);
        assert_eq!(v.ignored_impressions(1), 0.0);
        // Engagement times are kept to the second.
        assert_eq!(v.engaged_at(2), Some(HOUR));
        let next = u.view(HOUR + 2000, consent, &cfg);
        assert!(next.ignored_impressions(1) > 0.99);
        assert_eq!(next.ignored_impressions(2), 0.0);
        // A later event of the user passes it over too, whatever the ranking's clock says.
        u.apply(&at(EventKind::Impression, HOUR + 3000, 3, 5), &cfg)
            .unwrap();
        assert!(u.view(HOUR + 1000, consent, &cfg).ignored_impressions(1) > 0.99);
        // Frequency caps count every showing at once.
        assert_eq!(u.view(HOUR + 500, consent, &cfg).shown_since(1, HOUR), 1);
    }

    #[test]
    fn categories_collect_ignored_exposure_and_engagement_resets_it() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..5 {
            u.apply(&at(EventKind::Impression, HOUR + t, 10 + t as u64, 5), &cfg)
                .unwrap();
        }
        let consent = Consent::privacy_default();
        let v = u.view(2 * HOUR, consent, &cfg);
        assert!(v.ignored_group(5, 0) > 4.0);
        u.apply(&at(EventKind::Click, 2 * HOUR, 99, 5), &cfg)
            .unwrap();
        assert_eq!(u.view(2 * HOUR, consent, &cfg).ignored_group(5, 0), 0.0);
    }

    #[test]
    fn engagement_becomes_a_learned_tag_only_with_consent_and_unless_removed() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..3 {
            u.apply(&at(EventKind::Click, HOUR + t, 1, 7), &cfg)
                .unwrap();
        }
        let consent = Consent::privacy_default();
        let tags = u.view(2 * HOUR, consent, &cfg).tags;
        assert_eq!(tags.len(), 1);
        assert_eq!((tags[0].kind, tags[0].id), (TagKind::Category, 7));
        assert_eq!(
            tags[0].source,
            TagSource::Learned(DimensionSet::of([DataDimension::Browsing]))
        );
        let no_browsing = consent.restrict(DimensionSet::of([DataDimension::Browsing]), false);
        assert!(u.view(2 * HOUR, no_browsing, &cfg).tags.is_empty());
        // The user removes it: it stays removed, whatever is learned later.
        let remove = InterestChange {
            kind: TagKind::Category,
            id: 7,
            weight: 0.0,
            label: None,
        };
        u.update_interests(&[remove], 2 * HOUR).unwrap();
        u.apply(&at(EventKind::Click, 3 * HOUR, 1, 7), &cfg)
            .unwrap();
        assert!(u.view(3 * HOUR, consent, &cfg).tags.is_empty());
        // And a tag the user adds is theirs, with their label.
        let add = InterestChange {
            kind: TagKind::Brand,
            id: 70,
            weight: 0.8,
            label: Some("tea".into()),
        };
        u.update_interests(&[add], 3 * HOUR).unwrap();
        let tags = u.view(3 * HOUR, consent, &cfg).tags;
        assert_eq!(tags.len(), 1);
        assert_eq!(
            (tags[0].label.as_str(), tags[0].source),
            ("tea", TagSource::User)
        );
        // Personalisation off: no tags at all.
        let off = consent.restrict(DimensionSet::EMPTY, true);
        assert!(u.view(3 * HOUR, off, &cfg).tags.is_empty());
    }

    #[test]
    fn too_many_interests_change_nothing() {
        let mut u = UserState::default();
        let changes: Vec<InterestChange> = (1..=MAX_INTERESTS as u64 + 1)
            .map(|id| InterestChange {
                kind: TagKind::Category,
                id,
                weight: 1.0,
                label: None,
            })
            .collect();
        assert_eq!(
            u.update_interests(&changes, HOUR).unwrap_err().field,
            "interests"
        );
        assert!(u.interests().is_empty());
    }

    #[test]
    fn purchases_and_cross_platform_sightings_are_kept_in_time_order() {
        let cfg = cfg();
        let mut u = UserState::default();
        let mut buy = at(EventKind::Purchase, 2 * HOUR, 1, 12);
        buy.title = "Pixel 9".into();
        buy.price = 999.0;
        u.apply(&buy, &cfg).unwrap();
        u.apply(&at(EventKind::Purchase, HOUR, 2, 30), &cfg)
            .unwrap();
        let mut elsewhere = at(EventKind::Click, 3 * HOUR, 5, 0);
        elsewhere.source = Some(DataDimension::CrossPlatform);
        u.apply(&elsewhere, &cfg).unwrap();
        let v = u.view(4 * HOUR, Consent::privacy_default(), &cfg);
        let bought: Vec<u64> = v.purchases.iter().map(|p| p.item_id).collect();
        assert_eq!(bought, vec![2, 1]);
        assert_eq!(v.purchases[1].title, "Pixel 9");
        assert_eq!(v.sightings.len(), 1);
        // A sighting elsewhere is not an exposure here.
        assert!(v.shown.is_empty());
        for t in 0..(MAX_PURCHASES as i64 + 5) {
            u.apply(
                &at(EventKind::Purchase, 5 * HOUR + t, 100 + t as u64, 30),
                &cfg,
            )
            .unwrap();
        }
        let v = u.view(6 * HOUR, Consent::privacy_default(), &cfg);
        assert_eq!(v.purchases.len(), MAX_PURCHASES);
        assert!(v.purchases.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn explicit_words_count_wherever_they_were_observed() {
        let cfg = cfg();
        let mut u = UserState::default();
        let mut block = event(EventKind::BlockBrand, HOUR);
        block.source = Some(DataDimension::CrossPlatform);
        u.apply(&block, &cfg).unwrap();
        let mut bought = at(EventKind::Purchase, HOUR, 3, 12);
        bought.source = Some(DataDimension::CrossPlatform);
        u.apply(&bought, &cfg).unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert!(v.is_brand_blocked(10));
        assert_eq!(v.purchases.len(), 1);
        assert!(v.sightings.is_empty());
    }

    #[test]
    fn undo_takes_back_each_kind_of_feedback() {
        let cfg = cfg();
        let mut u = UserState::default();
        for kind in [
            EventKind::BlockBrand,
            EventKind::BlockShop,
            EventKind::NotInterested,
            EventKind::FewerLikeThis,
        ] {
            u.apply(&event(kind, HOUR), &cfg).unwrap();
        }
        for undo in [
            Undo::BlockedBrand(10),
            Undo::BlockedShop(100),
            Undo::NotInterested(1),
            Undo::FewerCategory(5),
            Undo::FewerBrand(10),
        ] {
            u.undo(undo, 2 * HOUR);
        }
        let v = u.view(2 * HOUR, Consent::privacy_default(), &cfg);
        assert!(v.blocked_brands.is_empty() && v.blocked_shops.is_empty());
        assert!(v.not_interested.is_empty());
        assert_eq!(v.fewer_like_this(5, 10), 0.0);
    }

    #[test]
    fn the_overload_meter_follows_the_session() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..40 {
            u.apply(
                &at(EventKind::Impression, HOUR + t * 1000, 1 + t as u64, 0),
                &cfg,
            )
            .unwrap();
        }
        let v = u.view(HOUR + 40_000, Consent::privacy_default(), &cfg);
        assert!(v.recent_impressions > 35.0 && v.recent_engagements == 0.0);
        let hour_later = u.view(2 * HOUR, Consent::privacy_default(), &cfg);
        assert!(hour_later.recent_impressions < 0.01);
    }

    /// Frequency caps and the user's words are what must not be approximate: after a long
    /// history in random order (late arrivals, repeats, engagement, blocks and unblocks),
    /// the view holds exactly what a plain model of the rules says.
    #[test]
    fn frequency_caps_and_explicit_words_stay_exact() {
        use std::collections::BTreeMap;
        let cfg = cfg();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let start = 1_780_000_000_000;
        let mut u = UserState::default();
        let mut shows: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut engaged: BTreeMap<u64, u32> = BTreeMap::new();
        let mut words: BTreeMap<u64, (i64, bool)> = BTreeMap::new();
        let mut not_interested: BTreeMap<u64, i64> = BTreeMap::new();
        let mut fewer: BTreeMap<u64, i64> = BTreeMap::new();
        let mut latest = start;
        for _ in 0..6000 {
            let at_ms = start + next(3 * 86_400_000) as i64;
            latest = latest.max(at_ms);
            // Wide ids, so that columns widen along the way.
            let item = 1 + next(60) * 1_000_003_000_000;
            let roll = next(100);
            let mut e = event(EventKind::Impression, at_ms);
            e.item_id = item;
            e.category_id = 1 + next(5);
            e.brand_id = 1 + next(20);
            let s = shown_second(at_ms);
            match roll {
                0..80 => {
                    let t = shows.entry(item).or_default();
                    if !t.contains(&s) {
                        t.push(s);
                    }
                }
                80..88 => {
                    e.kind = EventKind::Click;
                    let t = engaged.entry(item).or_default();
                    *t = (*t).max(s);
                }
                88..94 => {
                    e.kind = if next(2) == 0 {
                        EventKind::BlockBrand
                    } else {
                        EventKind::UnblockBrand
                    };
                    let blocked = e.kind == EventKind::BlockBrand;
                    let w = words.entry(e.brand_id).or_insert((at_ms, blocked));
                    if at_ms >= w.0 {
                        *w = (at_ms, blocked);
                    }
                }
                94..97 => {
                    e.kind = EventKind::NotInterested;
                    e.expires_at_ms = at_ms + next(2 * 86_400_000) as i64;
                    not_interested.insert(item, e.expires_at_ms);
                }
                _ => {
                    e.kind = EventKind::FewerLikeThis;
                    e.brand_id = 0;
                    let t = fewer.entry(e.category_id).or_insert(at_ms);
                    *t = (*t).max(at_ms);
                }
            }
            u.apply(&e, &cfg).unwrap();
        }
        let now = latest + 1000;
        let consent = Consent::privacy_default();
        let restored = UserState::from_row(&u.to_row().unwrap()).unwrap();
        // Expiry forgets only what no ranking from now on can use.
        let mut expired = u.clone();
        expired.expire(now, &cfg);
        for u in [&u, &restored, &expired] {
            let v = u.view(now, consent, &cfg);
            let expected: Vec<(u64, [u32; SHOWN_TIMES])> = shows
                .iter()
                .map(|(item, times)| {
                    let mut times = times.clone();
                    times.sort_unstable_by(|a, b| b.cmp(a));
                    let mut kept = [0; SHOWN_TIMES];
                    for (k, t) in kept.iter_mut().zip(&times) {
                        *k = if engaged.get(item).is_some_and(|e| t <= e) {
                            0
                        } else {
                            *t
                        };
                    }
                    (*item, kept)
                })
                .collect();
            assert_eq!(v.shown, expected);
            let engaged_ms: Vec<(u64, i64)> = engaged
                .iter()
                .map(|(i, s)| (*i, i64::from(*s) * 1000))
                .collect();
            assert_eq!(v.engaged, engaged_ms);
            let blocked: Vec<u64> = words.iter().filter(|w| w.1.1).map(|w| *w.0).collect();
            assert_eq!(v.blocked_brands, blocked);
            let in_force: Vec<u64> = not_interested
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(v.not_interested, in_force);
            let strength: Vec<(u64, f32)> = fewer
                .iter()
                .map(|(c, at)| (*c, factor(now - at, cfg.fewer_like_this_half_life_ms)))
                .filter(|(_, s)| *s >= FEWER_FLOOR)
                .collect();
            assert_eq!(v.fewer_categories, strength);
        }
    }

    /// The sizing example's typical user: 20 impressions over 10 items, 5 clicks, 2
    /// purchases, a blocked brand, a "not interested", a "fewer like this".
    fn typical_user(u: u64, now: i64) -> UserState {
        let cfg = cfg();
        let mut state = UserState::default();
        let ev = |kind, at_ms, item: u64, brand| {
            let mut e = Event::new(kind, at_ms);
            (e.item_id, e.brand_id, e.category_id) = (item, brand, 1 + item % 50);
            e
        };
        for i in 0..20 {
            let e = ev(
                EventKind::Impression,
                now - 60_000 + i,
                u * 7 + i as u64 % 10 + 1,
                0,
            );
            state.apply(&e, &cfg).unwrap();
        }
        for i in 0..5 {
            let e = ev(EventKind::Click, now - 30_000 + i, u * 7 + i as u64 + 1, 0);
            state.apply(&e, &cfg).unwrap();
        }
        for i in 0..2 {
            let e = ev(
                EventKind::Purchase,
                now - 20_000 + i,
                u * 7 + 1 + i as u64,
                0,
            );
            state.apply(&e, &cfg).unwrap();
        }
        for e in [
            ev(EventKind::BlockBrand, now - 10_000, 0, 1 + u % 9_999),
            ev(EventKind::NotInterested, now - 9_000, u * 7 + 9, 0),
            ev(EventKind::FewerLikeThis, now - 8_000, u * 7 + 9, 0),
        ] {
            state.apply(&e, &cfg).unwrap();
        }
        state
    }

    #[test]
    fn counts_added_by_lookup_are_the_counts_computed() {
        for c in 0..4200u64 {
            for a in [0.0f32, 1.0, 2.0, 0.5] {
                assert_eq!(
                    add_count(c, a),
                    encode_count(decode_count(c) + a),
                    "{c} + {a}"
                );
            }
        }
    }

    #[test]
    fn a_typical_user_fits_an_allocation_of_224_bytes() {
        // Whether or not the impressions straddle a second (10 impression times or 20), with
        // ids of 3 bytes, and with the map's 4 bytes in front.
        for (now, most) in [(1_796_000_000_000, 214), (1_796_000_000_990, 224)] {
            let state = typical_user(1_000_000, now);
            let len = state.buf.allocation_len();
            assert!(
                len <= most,
                "{len} bytes (with the lead and the length in front): {state:?}"
            );
            assert_eq!(state.heap_bytes(), 224);
            let row = state.to_row().unwrap();
            assert_eq!(UserState::from_row(&row).unwrap(), state);
        }
    }

    #[test]
    fn sensitive_opt_ins_are_kept_sorted_and_can_be_withdrawn() {
        let mut u = UserState::default();
        u.set_consent(&[], None, &[(9, true), (4, true)], HOUR)
            .unwrap();
        assert_eq!(u.consent().sensitive, vec![4, 9]);
        u.set_consent(&[], None, &[(9, false)], HOUR).unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg());
        assert!(v.opted_in_sensitive(4) && !v.opted_in_sensitive(9));
    }
}
