//! The item catalog: a bounded cache of what the platform knows about its items (category,
//! brand, shop, price, popularity, embedding, title, complement categories), so that Rank
//! requests (and events) can carry ids only. Filled by `Catalog.Upsert` streams and by a
//! JSON-lines file at start-up; read by the Rank conversion (one lookup per candidate), by
//! the Events conversion (one per behavioural event) and by the engine (the complement
//! categories of what a user bought).
//!
//! - **Bounded.** At most `catalog.max_items` items, each with an embedding of exactly
//!   `catalog.dim` values (or none), a title of at most [`MAX_TITLE_BYTES`] and at most
//!   [`MAX_COMPLEMENTS`] complement categories. A change that would pass the item limit is
//!   refused whole; room is never made by evicting items, which would then rank without their
//!   attributes with nobody noticing.
//! - **All or nothing.** A stream or a file is checked item by item before anything is
//!   applied, and applied whole. Writers are serialised so that the limit check and the
//!   apply are one step; readers never wait for a whole stream, only (briefly) for the one
//!   item being swapped in their shard.
//! - **Immutable records.** An item is replaced whole, never edited in place, so a reader
//!   sees either the old item or the new one.
//! - **Not durable.** It caches the platform's catalogue: after a restart it holds what the
//!   start-up file holds, and upserts since then must be sent again.
//!
//! The file format is protobuf's JSON form of `CatalogItem`, one item per line (JSON lines):
//! `snake_case` or `lowerCamelCase` names, 64-bit ids as numbers or strings, floats as numbers
//! or the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (refused by the checks, but with the
//! field named rather than as a syntax error), unknown fields refused. Blank lines are
//! skipped. Errors name the line.
//!
//! Its settings are its own ([`CatalogSettings`], `[catalog]` in the configuration), so it
//! imports nothing from the configuration that embeds them.
//!
//! Must not: know tonic, prost or the ranking core's types (the edge and the engine convert);
//! hold a lock longer than one item's copy; panic on any input.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// Bytes of an item's title, as of an event's: a product name (60 Chinese characters are 180
/// bytes of UTF-8), not a description.
pub const MAX_TITLE_BYTES: usize = 200;
/// The largest magnitude of an embedding value: the ranking's own bound
/// (`rank::MAX_EMBEDDING_VALUE`, which a test of the edge checks is the same), so a cached row
/// is as safe to rank as a request's.
pub const MAX_EMBEDDING_VALUE: f32 = 1.0e6;

/// Within ±[`MAX_EMBEDDING_VALUE`] (which no NaN or infinity is).
fn within_bound(v: f32) -> bool {
    v.abs() <= MAX_EMBEDDING_VALUE
}
/// Complement categories of one item: an item goes with a few categories, not a catalogue.
pub const MAX_COMPLEMENTS: usize = 64;

/// The catalog's settings, `[catalog]` in the configuration file (`TACTFUL_CATALOG_*` in the
/// environment; [`crate::config`] reads them and checks the bounds).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// Items held at most; a change that would pass it is refused whole (RESOURCE_EXHAUSTED
    /// for an Upsert, exit code 64 for the start-up file), never made room for by evicting
    /// items, which would then rank without their attributes unnoticed. 1,000,000 holds the
    /// live assortment of a large shop; each item takes about 150 bytes plus 4 per embedding
    /// value plus its title (≈ 0.45 GB for a million items at dim 64), so size the pod for it.
    pub max_items: usize,
    /// Length of every embedding the catalog holds; an item whose embedding has another length
    /// is refused, naming this setting. 0 (the default): the catalog holds attributes only,
    /// because the length is the platform's model's and a guess would refuse every item.
    pub dim: usize,
    /// A JSON-lines file of `CatalogItem`s (protobuf's JSON form, one per line) loaded before
    /// the port opens; a bad line stops the start (exit code 64) naming the line. None: the
    /// catalog starts empty.
    pub path: Option<PathBuf>,
}

/// The most items `catalog.max_items` may allow: far beyond one pod's memory, so only a typo
/// reaches it.
pub const MAX_CATALOG_ITEMS: usize = 100_000_000;

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            max_items: 1_000_000,
            dim: 0,
            path: None,
        }
    }
}

/// One item as the catalog holds it. Immutable: an upsert replaces it whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    pub popularity: f32,
    /// Empty, or `catalog.dim` finite values.
    pub embedding: Box<[f32]>,
    pub title: Box<str>,
    /// Categories that go with this item, for the complements boost after it is bought.
    pub complements: Box<[u64]>,
}

/// Memory of one map entry besides its heap parts (the key, the record and the map's
/// control byte); the map's spare slots come on top.
const ENTRY_BYTES: usize = std::mem::size_of::<(u64, Item)>() + 1;

impl Item {
    /// Fills each of these attributes that the caller left at its zero value from this item:
    /// what a request or an event carries wins, field by field. Rank candidates and behavioural
    /// events both go through here, so they complete an item the same way.
    pub fn fill_unset(
        &self,
        category_id: &mut u64,
        brand_id: &mut u64,
        shop_id: &mut u64,
        price: &mut f32,
    ) {
        for (mine, cached) in [
            (category_id, self.category_id),
            (brand_id, self.brand_id),
            (shop_id, self.shop_id),
        ] {
            if *mine == 0 {
                *mine = cached;
            }
        }
        if *price == 0.0 {
            *price = self.price;
        }
    }

    /// The memory the item takes: its entry and its heap parts.
    fn bytes(&self) -> usize {
        ENTRY_BYTES
            + std::mem::size_of_val(&*self.embedding)
            + self.title.len()
            + std::mem::size_of_val(&*self.complements)
    }
}

/// An item as a client or a file sends it, before it is checked: the fields of the
/// `CatalogItem` message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemFields {
    pub item_id: u64,
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    pub popularity: f32,
    pub embedding: Vec<f32>,
    pub title: String,
    pub complement_categories: Vec<u64>,
    /// A tombstone: remove the item.
    pub deleted: bool,
}

/// One checked change to the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put(u64, Item),
    Delete(u64),
}

impl Change {
    pub fn item_id(&self) -> u64 {
        match self {
            Self::Put(id, _) | Self::Delete(id) => *id,
        }
    }
}

/// An item that cannot be held: the field at fault (relative to the item, e.g.
/// `embedding[3]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A change the catalog refuses as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "catalog.max_items: this change would leave {after} items in the catalog, the limit is \
         {max} (it holds {held}); delete items (`deleted: true`) or raise catalog.max_items"
    )]
    Full {
        held: usize,
        after: usize,
        max: usize,
    },
}

/// A start-up file that cannot be loaded, with the line at fault (0 when it is the file as a
/// whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{} line {}: {}",
                self.path.display(),
                self.line,
                self.message
            )
        }
    }
}

impl std::error::Error for FileError {}

/// What one applied change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Put messages (an id sent twice counts twice).
    pub upserted: usize,
    /// Tombstones (whether or not the item was held).
    pub deleted: usize,
    /// Items held afterwards.
    pub items: usize,
}

/// What the catalog counts, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CatalogStats {
    pub items: usize,
    /// Approximate memory of the items (entries and heap parts; not the map's spare slots).
    pub bytes: usize,
    pub max_items: usize,
    /// Items put since start (upserts and the start-up file).
    pub upserted: u64,
    /// Tombstones applied since start.
    pub deleted: u64,
    /// Items received in changes that were refused (bad items, the limit, cut-off streams).
    pub rejected: u64,
    /// Rank candidates found in the catalog.
    pub hits: u64,
    /// Rank candidates looked up and not found.
    pub misses: u64,
    /// Rank requests in which some candidates had an embedding and others none, ranked
    /// without embeddings.
    pub partial_embeddings: u64,
}

#[derive(Debug, Default)]
struct Counts {
    upserted: AtomicU64,
    deleted: AtomicU64,
    rejected: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    partial_embeddings: AtomicU64,
}

pub struct Catalog {
    items: DashMap<u64, Item>,
    max_items: usize,
    dim: usize,
    /// Items held, kept by the writers: read on every Rank to skip lookups while empty, where
    /// the map's own count would lock every shard.
    len: AtomicUsize,
    bytes: AtomicUsize,
    /// Serialises writers, so that a change's limit check and its apply are one step.
    writer: Mutex<()>,
    counts: Counts,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("items", &self.len())
            .field("max_items", &self.max_items)
            .field("dim", &self.dim)
            .finish()
    }
}

impl Catalog {
    /// An empty catalog of at most `max_items` items with `dim`-long embeddings (0 = none).
    pub fn new(max_items: usize, dim: usize) -> Self {
        Self {
            items: DashMap::new(),
            max_items,
            dim,
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            writer: Mutex::new(()),
            counts: Counts::default(),
        }
    }

    /// The configured catalog, with `settings.path` loaded if set. Returns how many items the
    /// file held.
    pub fn open(settings: &CatalogSettings) -> Result<(Self, usize), FileError> {
        let catalog = Self::new(settings.max_items, settings.dim);
        let loaded = match &settings.path {
            Some(path) => catalog.load_file(path)?,
            None => 0,
        };
        Ok((catalog, loaded))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The length of the embeddings it holds; 0 = none.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_items(&self) -> usize {
        self.max_items
    }

    /// Whether a Rank candidate without an embedding may find one here.
    pub fn supplies_embeddings(&self) -> bool {
        self.dim > 0 && !self.is_empty()
    }

    /// The item, read in place: the caller holds its shard's read lock until the guard is
    /// dropped, so it must not look up another item (or write) meanwhile.
    pub fn get(&self, item_id: u64) -> Option<impl Deref<Target = Item> + '_> {
        self.items.get(&item_id)
    }

    /// The item's title, if it is held and has one.
    pub fn title_of(&self, item_id: u64) -> Option<String> {
        let item = self.items.get(&item_id)?;
        (!item.title.is_empty()).then(|| item.title.to_string())
    }

    /// The item's complement categories, if it is held and has some.
    pub fn complements_of(&self, item_id: u64) -> Option<Vec<u64>> {
        let item = self.items.get(&item_id)?;
        (!item.complements.is_empty()).then(|| item.complements.to_vec())
    }

    /// Counts one Rank request's lookups: `hits` candidates found, `misses` not, and whether
    /// its embeddings were dropped because only some candidates had one.
    pub fn count_lookups(&self, hits: usize, misses: usize, partial_embeddings: bool) {
        let c = &self.counts;
        if hits > 0 {
            c.hits.fetch_add(hits as u64, Ordering::Relaxed);
        }
        if misses > 0 {
            c.misses.fetch_add(misses as u64, Ordering::Relaxed);
        }
        if partial_embeddings {
            c.partial_embeddings.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `n` items of a change that was refused.
    pub fn count_rejected(&self, n: usize) {
        self.counts.rejected.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CatalogStats {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CatalogStats {
            items: self.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            max_items: self.max_items,
            upserted: get(&c.upserted),
            deleted: get(&c.deleted),
            rejected: get(&c.rejected),
            hits: get(&c.hits),
            misses: get(&c.misses),
            partial_embeddings: get(&c.partial_embeddings),
        }
    }

    /// Checks an item as a client or a file sent it, the way Rank checks a candidate.
    pub fn check(&self, f: ItemFields) -> Result<Change, Invalid> {
        if f.item_id == 0 {
            return Err(Invalid::new("item_id", "is required (0 is not an item id)"));
        }
        if f.deleted {
            return Ok(Change::Delete(f.item_id));
        }
        for (field, v) in [("price", f.price), ("popularity", f.popularity)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Invalid::new(field, "must be a finite number >= 0"));
            }
        }
        let n = f.embedding.len();
        if n > 0 && n != self.dim {
            let message = if self.dim == 0 {
                format!(
                    "has {n} values, but the catalog holds no embeddings (catalog.dim = 0): set \
                     catalog.dim to your embeddings' length, or send none"
                )
            } else {
                format!(
                    "has {n} values, the catalog holds embeddings of {} (catalog.dim); send \
                     {} values or none",
                    self.dim, self.dim
                )
            };
            return Err(Invalid::new("embedding", message));
        }
        if let Some(j) = f.embedding.iter().position(|v| !within_bound(*v)) {
            return Err(Invalid::new(
                format!("embedding[{j}]"),
                format!("must be a finite number within ±{MAX_EMBEDDING_VALUE:e}"),
            ));
        }
        if f.title.len() > MAX_TITLE_BYTES {
            return Err(Invalid::new(
                "title",
                format!(
                    "is {} bytes, the maximum is {MAX_TITLE_BYTES}",
                    f.title.len()
                ),
            ));
        }
        let k = f.complement_categories.len();
        if k > MAX_COMPLEMENTS {
            return Err(Invalid::new(
                "complement_categories",
                format!("{k} categories, the maximum is {MAX_COMPLEMENTS}"),
            ));
        }
        if let Some(j) = f.complement_categories.iter().position(|c| *c == 0) {
            return Err(Invalid::new(
                format!("complement_categories[{j}]"),
                "must not be 0 (0 is not a category id)",
            ));
        }
        Ok(Change::Put(
            f.item_id,
            Item {
                category_id: f.category_id,
                brand_id: f.brand_id,
                shop_id: f.shop_id,
                price: f.price,
                popularity: f.popularity,
                embedding: f.embedding.into_boxed_slice(),
                title: f.title.into_boxed_str(),
                complements: f.complement_categories.into_boxed_slice(),
            },
        ))
    }

    /// Applies checked changes whole, or none of them if the result would pass
    /// `max_items`. For an id changed more than once, the last change wins (the earlier ones
    /// are not applied even for a moment). Deletes go first, so the catalog never holds more
    /// than `max_items` items, not even halfway.
    pub fn apply(&self, changes: Vec<Change>) -> Result<Applied, CatalogError> {
        let _one_writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let received = changes.len();
        let mut last: HashMap<u64, usize> = HashMap::with_capacity(received);
        for (i, c) in changes.iter().enumerate() {
            last.insert(c.item_id(), i);
        }
        let held = self.len();
        let mut after = held;
        for (&id, &i) in &last {
            match (&changes[i], self.items.contains_key(&id)) {
                (Change::Put(..), false) => after += 1,
                (Change::Delete(_), true) => after -= 1,
                _ => {}
            }
        }
        if after > self.max_items {
            self.count_rejected(received);
            return Err(CatalogError::Full {
                held,
                after,
                max: self.max_items,
            });
        }
        let mut applied = Applied::default();
        let mut puts = Vec::with_capacity(last.len());
        for (i, change) in changes.into_iter().enumerate() {
            let latest = last.get(&change.item_id()) == Some(&i);
            match change {
                Change::Delete(id) => {
                    applied.deleted += 1;
                    if latest {
                        self.remove(id);
                    }
                }
                Change::Put(id, item) => {
                    applied.upserted += 1;
                    if latest {
                        puts.push((id, item));
                    }
                }
            }
        }
        for (id, item) in puts {
            self.put(id, item);
        }
        let c = &self.counts;
        c.upserted
            .fetch_add(applied.upserted as u64, Ordering::Relaxed);
        c.deleted
            .fetch_add(applied.deleted as u64, Ordering::Relaxed);
        applied.items = self.len();
        Ok(applied)
    }

    /// Holds `item`, replacing any earlier one. Writers only (under `writer`, or while the
    /// catalog is not shared yet).
    fn put(&self, id: u64, item: Item) {
        let bytes = item.bytes();
        match self.items.insert(id, item) {
            Some(old) => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                self.bytes.fetch_sub(old.bytes(), Ordering::Relaxed);
            }
            None => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the item, if held. Writers only.
    fn remove(&self, id: u64) {
        if let Some((_, old)) = self.items.remove(&id) {
            self.bytes.fetch_sub(old.bytes(), Ordering::Relaxed);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Loads a JSON-lines file of items (see the module's doc) into this catalog, which is
    /// not serving yet: items are put as they are read, and a bad line (or one that would
    /// pass `max_items`) is an error naming it; the caller then discards the catalog. Returns
    /// the number of items read.
    pub fn load_file(&self, path: &Path) -> Result<usize, FileError> {
        let at = |line: usize, message: String| FileError {
            path: path.to_owned(),
            line,
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| at(0, format!("cannot read: {e}")))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let _one_writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let mut line = 0;
        let mut read = 0;
        loop {
            text.clear();
            line += 1;
            match reader.read_line(&mut text) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(at(line, format!("cannot read: {e}"))),
            }
            let json = text.trim_start_matches('\u{feff}').trim();
            if json.is_empty() {
                continue;
            }
            let fields = parse_line(json).map_err(|m| at(line, m))?;
            let change = self.check(fields).map_err(|e| at(line, e.to_string()))?;
            match change {
                Change::Put(id, item) => {
                    if !self.items.contains_key(&id) && self.len() >= self.max_items {
                        return Err(at(
                            line,
                            format!(
                                "item {id} would be item {} of the catalog: past catalog.max_items \
                                 ({}); raise it or load fewer items",
                                self.max_items + 1,
                                self.max_items
                            ),
                        ));
                    }
                    self.put(id, item);
                    self.counts.upserted.fetch_add(1, Ordering::Relaxed);
                }
                Change::Delete(id) => {
                    self.remove(id);
                    self.counts.deleted.fetch_add(1, Ordering::Relaxed);
                }
            }
            read += 1;
        }
        Ok(read)
    }
}

/// One line of a catalog file as item fields, or what is wrong with it (without serde's
/// "at line 1" for a line parsed alone: the caller names the file's line).
pub fn parse_line(json: &str) -> Result<ItemFields, String> {
    // serde would also read a struct from an array of its fields in order; protobuf's JSON
    // form is an object only.
    if !json.starts_with('{') {
        return Err("expected a JSON object (one CatalogItem per line)".into());
    }
    let item: ItemJson = serde_json::from_str(json).map_err(|e| {
        let text = e.to_string();
        let message = text
            .rfind(" at line ")
            .map_or(text.as_str(), |at| &text[..at]);
        format!("{message} (column {})", e.column())
    })?;
    Ok(item.into())
}

/// `CatalogItem` in protobuf's JSON form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemJson {
    #[serde(default, alias = "itemId")]
    item_id: JsonU64,
    #[serde(default, alias = "categoryId")]
    category_id: JsonU64,
    #[serde(default, alias = "brandId")]
    brand_id: JsonU64,
    #[serde(default, alias = "shopId")]
    shop_id: JsonU64,
    #[serde(default)]
    price: JsonF32,
    #[serde(default)]
    popularity: JsonF32,
    #[serde(default)]
    embedding: Option<Vec<JsonF32>>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default, alias = "complementCategories")]
    complement_categories: Option<Vec<JsonU64>>,
    #[serde(default)]
    deleted: Option<bool>,
}

impl From<ItemJson> for ItemFields {
    fn from(j: ItemJson) -> Self {
        Self {
            item_id: j.item_id.0,
            category_id: j.category_id.0,
            brand_id: j.brand_id.0,
            shop_id: j.shop_id.0,
            price: j.price.0,
            popularity: j.popularity.0,
            embedding: j
                .embedding
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.0)
                .collect(),
            title: j.title.unwrap_or_default(),
            complement_categories: j
                .complement_categories
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.0)
                .collect(),
            deleted: j.deleted.unwrap_or(false),
        }
    }
}

/// A 64-bit id in protobuf's JSON form: a number or a decimal string (JSON numbers lose
/// precision past 2^53 in many languages, so protobuf writers emit strings); null is 0.
#[derive(Default)]
struct JsonU64(u64);

impl<'de> Deserialize<'de> for JsonU64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = JsonU64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned 64-bit integer, as a number or a decimal string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonU64, E> {
                Ok(JsonU64(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonU64, E> {
                u64::try_from(v)
                    .map(JsonU64)
                    .map_err(|_| E::custom(format!("{v} is negative: ids are unsigned")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonU64, E> {
                // `1e3` is a JSON number that is an integer.
                if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                    Ok(JsonU64(v as u64))
                } else {
                    Err(E::custom(format!("{v} is not an unsigned 64-bit integer")))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonU64, E> {
                v.parse()
                    .map(JsonU64)
                    .map_err(|_| E::custom(format!("{v:?} is not an unsigned 64-bit integer")))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<JsonU64, E> {
                Ok(JsonU64(0))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A float in protobuf's JSON form: a number, a numeric string, or "NaN", "Infinity",
/// "-Infinity"; null is 0.
#[derive(Default)]
struct JsonF32(f32);

impl<'de> Deserialize<'de> for JsonF32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = JsonF32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonF32, E> {
                // Past f32's range this is infinite, which the checks then refuse by name.
                Ok(JsonF32(v as f32))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonF32, E> {
                Ok(JsonF32(v as f32))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonF32, E> {
                Ok(JsonF32(v as f32))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonF32, E> {
                match v {
                    "NaN" => Ok(JsonF32(f32::NAN)),
                    "Infinity" => Ok(JsonF32(f32::INFINITY)),
                    "-Infinity" => Ok(JsonF32(f32::NEG_INFINITY)),
                    _ => v
                        .parse()
                        .map(JsonF32)
                        .map_err(|_| E::custom(format!("{v:?} is not a number"))),
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<JsonF32, E> {
                Ok(JsonF32(0.0))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn fields(item_id: u64) -> ItemFields {
        ItemFields {
            item_id,
            category_id: 10,
            brand_id: 7,
            shop_id: 70,
            price: 699.0,
            popularity: 3.0,
            embedding: vec![1.0, 0.0],
            title: "Nova X phone".into(),
            complement_categories: vec![13, 14],
            deleted: false,
        }
    }

    fn put(catalog: &Catalog, f: ItemFields) -> Result<Applied, CatalogError> {
        let change = catalog.check(f).unwrap();
        catalog.apply(vec![change])
    }

    fn field_of(catalog: &Catalog, f: ItemFields) -> String {
        catalog.check(f).unwrap_err().field
    }

    #[test]
    fn every_rule_names_its_field() {
        let c = Catalog::new(10, 2);
        assert_eq!(field_of(&c, fields(0)), "item_id");
        for (price, popularity) in [(f32::NAN, 0.0), (-1.0, 0.0), (0.0, f32::INFINITY)] {
            let f = ItemFields {
                price,
                popularity,
                ..fields(1)
            };
            let want = if price != 0.0 { "price" } else { "popularity" };
            assert_eq!(field_of(&c, f), want);
        }
        let f = ItemFields {
            embedding: vec![1.0, 2.0, 3.0],
            ..fields(1)
        };
        let err = c.check(f).unwrap_err();
        assert_eq!(err.field, "embedding");
        assert!(err.message.contains("catalog.dim"), "{err}");
        let f = ItemFields {
            embedding: vec![1.0, f32::NAN],
            ..fields(1)
        };
        assert_eq!(field_of(&c, f), "embedding[1]");
        let f = ItemFields {
            title: "x".repeat(MAX_TITLE_BYTES + 1),
            ..fields(1)
        };
        assert_eq!(field_of(&c, f), "title");
        let f = ItemFields {
            complement_categories: vec![5; MAX_COMPLEMENTS + 1],
            ..fields(1)
        };
        assert_eq!(field_of(&c, f), "complement_categories");
        let f = ItemFields {
            complement_categories: vec![5, 0],
            ..fields(1)
        };
        assert_eq!(field_of(&c, f), "complement_categories[1]");
        // Without a dim, an embedding says how to fix it.
        let none = Catalog::new(10, 0);
        let err = none.check(fields(1)).unwrap_err();
        assert!(err.message.contains("catalog.dim = 0"), "{err}");
        // No embedding is always fine, and a tombstone needs only its id.
        let f = ItemFields {
            embedding: Vec::new(),
            ..fields(1)
        };
        assert!(none.check(f).is_ok());
        let tombstone = ItemFields {
            item_id: 4,
            price: f32::NAN,
            deleted: true,
            ..ItemFields::default()
        };
        assert_eq!(c.check(tombstone).unwrap(), Change::Delete(4));
    }

    #[test]
    fn items_are_held_replaced_and_deleted_with_their_memory() {
        let c = Catalog::new(10, 2);
        assert!(c.is_empty() && !c.supplies_embeddings());
        let a = put(&c, fields(1)).unwrap();
        assert_eq!((a.upserted, a.deleted, a.items), (1, 0, 1));
        assert!(c.supplies_embeddings());
        let item = c.get(1).unwrap();
        assert_eq!(
            (item.category_id, &*item.embedding, &*item.title),
            (10, &[1.0, 0.0][..], "Nova X phone")
        );
        drop(item);
        let one = c.stats().bytes;
        assert_eq!(one, ENTRY_BYTES + 8 + 12 + 16);
        put(
            &c,
            ItemFields {
                title: String::new(),
                complement_categories: Vec::new(),
                ..fields(1)
            },
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats().bytes, ENTRY_BYTES + 8);
        assert_eq!(c.title_of(1), None);
        assert_eq!(c.complements_of(1), None);
        let tombstone = c
            .check(ItemFields {
                item_id: 1,
                deleted: true,
                ..Default::default()
            })
            .unwrap();
        let a = c.apply(vec![tombstone.clone(), tombstone]).unwrap();
        assert_eq!((a.deleted, a.items), (2, 0));
        assert_eq!(c.stats().bytes, 0);
        assert!(c.get(1).is_none());
    }

    #[test]
    fn within_a_change_the_last_message_for_an_id_wins() {
        let c = Catalog::new(10, 2);
        let first = c.check(fields(1)).unwrap();
        let second = c
            .check(ItemFields {
                category_id: 99,
                ..fields(1)
            })
            .unwrap();
        let gone = Change::Delete(2);
        let back = c.check(fields(2)).unwrap();
        let a = c.apply(vec![first, gone, second, back]).unwrap();
        assert_eq!((a.upserted, a.deleted, a.items), (3, 1, 2));
        assert_eq!(c.get(1).unwrap().category_id, 99);
        assert!(c.get(2).is_some());
        let s = c.stats();
        assert_eq!((s.upserted, s.deleted), (3, 1));
    }

    #[test]
    fn the_limit_refuses_a_change_whole_and_deletes_make_room() {
        let c = Catalog::new(3, 2);
        let puts = |ids: &[u64]| -> Vec<Change> {
            ids.iter().map(|&i| c.check(fields(i)).unwrap()).collect()
        };
        c.apply(puts(&[1, 2])).unwrap();
        let err = c.apply(puts(&[3, 4])).unwrap_err();
        assert_eq!(
            err,
            CatalogError::Full {
                held: 2,
                after: 4,
                max: 3
            }
        );
        assert!(err.to_string().starts_with("catalog.max_items"), "{err}");
        assert!(c.get(3).is_none(), "nothing of a refused change is applied");
        assert_eq!(c.stats().rejected, 2);
        // Replacing held items adds nothing; a delete in the same change makes room.
        let mut change = puts(&[1, 2, 3, 4]);
        change.insert(0, Change::Delete(1));
        change.remove(1);
        let a = c.apply(change).unwrap();
        assert_eq!(a.items, 3);
        assert!(c.get(1).is_none() && c.get(4).is_some());
    }

    #[test]
    fn readers_see_the_old_item_or_the_new_one_while_a_writer_replaces_it() {
        let c = std::sync::Arc::new(Catalog::new(10, 2));
        put(&c, fields(1)).unwrap();
        let writer = {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    let v = (i % 2) as f32;
                    put(
                        &c,
                        ItemFields {
                            category_id: i % 2,
                            embedding: vec![v, v],
                            ..fields(1)
                        },
                    )
                    .unwrap();
                }
            })
        };
        for _ in 0..20_000 {
            let item = c.get(1).unwrap();
            let consistent = match item.category_id {
                10 => *item.embedding == [1.0, 0.0],
                k => *item.embedding == [k as f32, k as f32],
            };
            assert!(consistent, "{:?}", *item);
        }
        writer.join().unwrap();
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn a_file_in_protobufs_json_form_loads() {
        let f = file(concat!(
            "\u{feff}{\"item_id\": 1, \"category_id\": 10, \"price\": 699, \"embedding\": [1, 0], \"title\": \"Nova X\"}\n",
            "\n",
            "{\"itemId\": \"18446744073709551615\", \"brandId\": \"7\", \"complementCategories\": [\"13\", 14], \"popularity\": \"2.5\", \"embedding\": null}\n",
            "{\"item_id\": 5, \"shop_id\": 1e3}\n",
            "{\"item_id\": 5, \"deleted\": true}\n",
        ));
        let c = Catalog::new(10, 2);
        assert_eq!(c.load_file(f.path()).unwrap(), 4);
        assert_eq!(c.len(), 2);
        assert_eq!(c.title_of(1).as_deref(), Some("Nova X"));
        let big = c.get(u64::MAX).unwrap();
        assert_eq!(
            (big.brand_id, big.popularity, &*big.complements),
            (7, 2.5, &[13, 14][..])
        );
        assert!(big.embedding.is_empty());
        drop(big);
        assert!(c.get(5).is_none());
        let s = c.stats();
        assert_eq!((s.upserted, s.deleted), (3, 1));
    }

    #[test]
    fn a_bad_file_names_the_line_and_what_is_wrong() {
        let err_of = |text: &str, max: usize| {
            let f = file(text);
            Catalog::new(max, 2).load_file(f.path()).unwrap_err()
        };
        let good = "{\"item_id\": 1}\n";
        for (text, line, says) in [
            ("{\"item_id\": 1, \"brand\": 3}", 1, "unknown field `brand`"),
            ("{\"item_id\": 1", 1, "EOF"),
            ("[1, 2]", 1, "expected a JSON object"),
            ("{\"item_id\": [1]}", 1, "invalid type"),
            ("{\"item_id\": -3}", 1, "negative"),
            (
                "{\"item_id\": \"x1\"}",
                1,
                "\"x1\" is not an unsigned 64-bit integer",
            ),
            (
                "{\"item_id\": 1, \"price\": \"NaN\"}",
                1,
                "price: must be a finite number",
            ),
            (
                "{\"item_id\": 1, \"price\": 1e39}",
                1,
                "price: must be a finite number",
            ),
            ("{\"category_id\": 1}", 1, "item_id: is required"),
            (
                "{\"item_id\": 1, \"embedding\": [1]}",
                1,
                "embedding: has 1 values",
            ),
            (
                "{\"item_id\": 1, \"embedding\": [1, \"Infinity\"]}",
                1,
                "embedding[1]",
            ),
        ] {
            let err = err_of(&format!("{good}\n{text}\n"), 10);
            assert_eq!(err.line, line + 2, "{text}: {err}");
            assert!(err.message.contains(says), "{text}: {err}");
            assert!(!err.message.contains("at line"), "{err}");
            assert!(
                err.to_string().contains(&format!("line {}: ", line + 2)),
                "{err}"
            );
        }
        let err = err_of("{\"item_id\": 1}\n{\"item_id\": 1}\n{\"item_id\": 2}\n", 1);
        assert_eq!(err.line, 3);
        assert!(err.message.contains("catalog.max_items (1)"), "{err}");
        let missing = Catalog::new(1, 0)
            .load_file(Path::new("/nonexistent/items.jsonl"))
            .unwrap_err();
        assert_eq!(missing.line, 0);
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let not_utf8 = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            not_utf8.path(),
            b"{\"item_id\": 1}\n{\"title\": \"\xff\"}\n",
        )
        .unwrap();
        let err = Catalog::new(5, 0).load_file(not_utf8.path()).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn open_loads_the_configured_file() {
        let f = file("{\"item_id\": 1, \"embedding\": [0.5, 0.5]}\n");
        let settings = CatalogSettings {
            max_items: 5,
            dim: 2,
            path: Some(f.path().to_owned()),
        };
        let (c, loaded) = Catalog::open(&settings).unwrap();
        assert_eq!((loaded, c.len(), c.max_items(), c.dim()), (1, 1, 5, 2));
        let (empty, loaded) = Catalog::open(&CatalogSettings::default()).unwrap();
        assert_eq!((loaded, empty.len()), (0, 0));
    }
}
