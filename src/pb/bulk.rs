//! The wire messages that carry embeddings, `Candidate` and `CatalogItem`, and the
//! `RankRequest` that holds candidates, written out by hand so that their vectors decode in
//! bulk. prost's generated decoder reads a packed `repeated float` one value at a time into a
//! vector it never reserves: for a Rank request of 100 candidates × 64 dimensions that was 57%
//! of the server's instructions per call. Here a packed run is reserved once and converted
//! straight from the buffer's chunks, and the `embedding_f32le` bytes form (the same vector as
//! little-endian float32) is one copy. The server decodes a Rank request with
//! [`RankRequest::decode_rows`], which goes one step further: while every candidate has one
//! embedding of one length in one form, the rows go straight into one buffer that becomes the
//! ranking's matrix ([`DecodedRows`]), with no vector per candidate and no second copy, and the
//! candidates' evidence goes into one buffer for the request ([`DecodedEvidence`]). A
//! candidate's fields are read from its bytes in number order as a straight run while they
//! come in that order (as every encoder writes them), then by a loop over whatever is left.
//!
//! Everything else is what prost would generate: the same fields, tags and encoding (proto3:
//! zero values are not written), so clients, the reflection descriptors and the JSON mapping
//! are unchanged. `build.rs` maps `tactful.v1.Candidate`, `tactful.v1.CatalogItem` and
//! `tactful.v1.RankRequest` here (`extern_path`); the test at the end checks that every field
//! of the proto's descriptor round-trips through these types, so a field added to the proto
//! and not here fails it.
//!
//! Holds wire types only: validation is the edge's (`grpc::convert`), which names the field at
//! fault for every value these accept.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// Merges a `repeated float` field: packed (what every proto3 encoder writes) in bulk,
/// unpacked one value at a time as prost does.
pub fn merge_floats(
    wire_type: WireType,
    values: &mut Vec<f32>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    if wire_type != WireType::LengthDelimited {
        return encoding::float::merge_repeated(wire_type, values, buf, ctx);
    }
    let len = encoding::decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(malformed("buffer underflow"));
    }
    let len = len as usize;
    if !len.is_multiple_of(4) {
        return Err(malformed(
            "a packed float field's length is not a multiple of 4",
        ));
    }
    values.reserve(len / 4);
    let mut left = len;
    while left > 0 {
        let chunk = buf.chunk();
        let whole = chunk.len().min(left) & !3;
        if whole == 0 {
            // A value split between two of the buffer's chunks.
            values.push(buf.get_f32_le());
            left -= 4;
            continue;
        }
        extend_f32le(values, &chunk[..whole]);
        buf.advance(whole);
        left -= whole;
    }
    Ok(())
}

/// Merges a `bytes` field into `value`, copied once straight from the buffer (prost's own
/// merge goes through an intermediate `Bytes`).
pub fn merge_bytes(
    wire_type: WireType,
    value: &mut Vec<u8>,
    buf: &mut impl Buf,
) -> Result<(), DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = encoding::decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(malformed("buffer underflow"));
    }
    let mut left = len as usize;
    value.clear();
    value.reserve_exact(left);
    while left > 0 {
        let chunk = buf.chunk();
        let take = chunk.len().min(left);
        value.extend_from_slice(&chunk[..take]);
        buf.advance(take);
        left -= take;
    }
    Ok(())
}

/// The most candidates reserved for from a guess (a request's list grows past it as usual).
const MAX_GUESSED_CANDIDATES: usize = 1024;

/// The little-endian float32 values of `bytes` (a multiple of 4 long), in a vector of their
/// exact size.
fn floats_of(bytes: &[u8]) -> Vec<f32> {
    let mut values = Vec::with_capacity(bytes.len() / 4);
    extend_f32le(&mut values, bytes);
    values
}

/// Appends the little-endian float32 values of `bytes` (a multiple of 4 long) to `values`:
/// on a little-endian machine one copy of the bytes (every bit pattern is an `f32`), which
/// the iterator form below becomes only where the compiler sees it so.
#[inline(always)]
pub fn extend_f32le(values: &mut Vec<f32>, bytes: &[u8]) {
    debug_assert!(bytes.len().is_multiple_of(4));
    let n = bytes.len() / 4;
    if cfg!(target_endian = "little") {
        values.reserve(n);
        let spare = &mut values.spare_capacity_mut()[..n];
        // SAFETY: `spare` has room for `n` floats, that is `4 n` bytes, which `bytes` holds,
        // and the two do not overlap (one is borrowed shared, the other is `values`' own
        // spare capacity); any 4 bytes are a valid `f32`, in this machine's byte order.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), spare.as_mut_ptr().cast::<u8>(), n * 4);
            values.set_len(values.len() + n);
        }
    } else {
        values.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
}

#[allow(deprecated)] // the constructor prost's own generated code uses for a message's errors
#[cold]
fn malformed(why: &'static str) -> DecodeError {
    DecodeError::new(why)
}

/// Runs a field's merge and, on error, names the field the way prost's generated code does.
pub(super) fn field<T>(
    message: &'static str,
    name: &'static str,
    merged: Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    merged.map_err(|mut e| {
        e.push(message, name);
        e
    })
}

/// A candidate of a Rank request (see `ranker.proto`).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Candidate {
    pub item_id: u64,
    pub score: f32,
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    pub popularity: f32,
    pub embedding: Vec<f32>,
    /// `DataDimension` numbers.
    pub evidence: Vec<i32>,
    pub sponsored: bool,
    pub title: String,
    pub anchor_item_id: u64,
    pub anchor_title: String,
    pub cross_platform_seen_ms: i64,
    /// The embedding as little-endian float32, 4 bytes per value (instead of `embedding`).
    pub embedding_f32le: Vec<u8>,
}

impl Candidate {
    /// The default candidate as a constant: a new candidate of the list is copied from it,
    /// where `Default::default()` was first built field by field on the stack and then copied
    /// (2,200 fewer instructions for 100 candidates).
    const EMPTY: Candidate = Candidate {
        item_id: 0,
        score: 0.0,
        category_id: 0,
        brand_id: 0,
        shop_id: 0,
        price: 0.0,
        popularity: 0.0,
        embedding: Vec::new(),
        evidence: Vec::new(),
        sponsored: false,
        title: String::new(),
        anchor_item_id: 0,
        anchor_title: String::new(),
        cross_platform_seen_ms: 0,
        embedding_f32le: Vec::new(),
    };

    /// Moves the candidate's `embedding` into its bytes form, `embedding_f32le` (the same
    /// values as little-endian float32), as a client sending that form sets it; a candidate
    /// that already has the bytes form, or no embedding, is left as it is.
    pub fn use_embedding_bytes(&mut self) {
        if self.embedding_f32le.is_empty() && !self.embedding.is_empty() {
            self.embedding_f32le = self
                .embedding
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            self.embedding = Vec::new();
        }
    }
}

impl Message for Candidate {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        use encoding::*;
        if self.item_id != 0 {
            uint64::encode(1, &self.item_id, buf);
        }
        if self.score != 0.0 {
            float::encode(2, &self.score, buf);
        }
        if self.category_id != 0 {
            uint64::encode(3, &self.category_id, buf);
        }
        if self.brand_id != 0 {
            uint64::encode(4, &self.brand_id, buf);
        }
        if self.shop_id != 0 {
            uint64::encode(5, &self.shop_id, buf);
        }
        if self.price != 0.0 {
            float::encode(6, &self.price, buf);
        }
        if self.popularity != 0.0 {
            float::encode(7, &self.popularity, buf);
        }
        float::encode_packed(8, &self.embedding, buf);
        int32::encode_packed(9, &self.evidence, buf);
        if self.sponsored {
            bool::encode(10, &self.sponsored, buf);
        }
        if !self.title.is_empty() {
            string::encode(11, &self.title, buf);
        }
        if self.anchor_item_id != 0 {
            uint64::encode(12, &self.anchor_item_id, buf);
        }
        if !self.anchor_title.is_empty() {
            string::encode(13, &self.anchor_title, buf);
        }
        if self.cross_platform_seen_ms != 0 {
            int64::encode(14, &self.cross_platform_seen_ms, buf);
        }
        if !self.embedding_f32le.is_empty() {
            bytes::encode(15, &self.embedding_f32le, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use encoding::*;
        const M: &str = "Candidate";
        match tag {
            1 => field(
                M,
                "item_id",
                uint64::merge(wire_type, &mut self.item_id, buf, ctx),
            ),
            2 => field(
                M,
                "score",
                float::merge(wire_type, &mut self.score, buf, ctx),
            ),
            3 => field(
                M,
                "category_id",
                uint64::merge(wire_type, &mut self.category_id, buf, ctx),
            ),
            4 => field(
                M,
                "brand_id",
                uint64::merge(wire_type, &mut self.brand_id, buf, ctx),
            ),
            5 => field(
                M,
                "shop_id",
                uint64::merge(wire_type, &mut self.shop_id, buf, ctx),
            ),
            6 => field(
                M,
                "price",
                float::merge(wire_type, &mut self.price, buf, ctx),
            ),
            7 => field(
                M,
                "popularity",
                float::merge(wire_type, &mut self.popularity, buf, ctx),
            ),
            8 => field(
                M,
                "embedding",
                merge_floats(wire_type, &mut self.embedding, buf, ctx),
            ),
            9 => field(
                M,
                "evidence",
                int32::merge_repeated(wire_type, &mut self.evidence, buf, ctx),
            ),
            10 => field(
                M,
                "sponsored",
                bool::merge(wire_type, &mut self.sponsored, buf, ctx),
            ),
            11 => field(
                M,
                "title",
                string::merge(wire_type, &mut self.title, buf, ctx),
            ),
            12 => field(
                M,
                "anchor_item_id",
                uint64::merge(wire_type, &mut self.anchor_item_id, buf, ctx),
            ),
            13 => field(
                M,
                "anchor_title",
                string::merge(wire_type, &mut self.anchor_title, buf, ctx),
            ),
            14 => field(
                M,
                "cross_platform_seen_ms",
                int64::merge(wire_type, &mut self.cross_platform_seen_ms, buf, ctx),
            ),
            15 => field(
                M,
                "embedding_f32le",
                merge_bytes(wire_type, &mut self.embedding_f32le, buf),
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use encoding::*;
        let mut n = 0;
        if self.item_id != 0 {
            n += uint64::encoded_len(1, &self.item_id);
        }
        if self.score != 0.0 {
            n += float::encoded_len(2, &self.score);
        }
        if self.category_id != 0 {
            n += uint64::encoded_len(3, &self.category_id);
        }
        if self.brand_id != 0 {
            n += uint64::encoded_len(4, &self.brand_id);
        }
        if self.shop_id != 0 {
            n += uint64::encoded_len(5, &self.shop_id);
        }
        if self.price != 0.0 {
            n += float::encoded_len(6, &self.price);
        }
        if self.popularity != 0.0 {
            n += float::encoded_len(7, &self.popularity);
        }
        n += float::encoded_len_packed(8, &self.embedding);
        n += int32::encoded_len_packed(9, &self.evidence);
        if self.sponsored {
            n += bool::encoded_len(10, &self.sponsored);
        }
        if !self.title.is_empty() {
            n += string::encoded_len(11, &self.title);
        }
        if self.anchor_item_id != 0 {
            n += uint64::encoded_len(12, &self.anchor_item_id);
        }
        if !self.anchor_title.is_empty() {
            n += string::encoded_len(13, &self.anchor_title);
        }
        if self.cross_platform_seen_ms != 0 {
            n += int64::encoded_len(14, &self.cross_platform_seen_ms);
        }
        if !self.embedding_f32le.is_empty() {
            n += bytes::encoded_len(15, &self.embedding_f32le);
        }
        n
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// An item of a Catalog Upsert stream (see `catalog.proto`).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct CatalogItem {
    pub item_id: u64,
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    pub popularity: f32,
    pub embedding: Vec<f32>,
    pub title: String,
    pub complement_categories: Vec<u64>,
    pub deleted: bool,
    /// The embedding as little-endian float32, 4 bytes per value (instead of `embedding`).
    pub embedding_f32le: Vec<u8>,
}

impl Message for CatalogItem {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        use encoding::*;
        if self.item_id != 0 {
            uint64::encode(1, &self.item_id, buf);
        }
        if self.category_id != 0 {
            uint64::encode(3, &self.category_id, buf);
        }
        if self.brand_id != 0 {
            uint64::encode(4, &self.brand_id, buf);
        }
        if self.shop_id != 0 {
            uint64::encode(5, &self.shop_id, buf);
        }
        if self.price != 0.0 {
            float::encode(6, &self.price, buf);
        }
        if self.popularity != 0.0 {
            float::encode(7, &self.popularity, buf);
        }
        float::encode_packed(8, &self.embedding, buf);
        if !self.title.is_empty() {
            string::encode(11, &self.title, buf);
        }
        uint64::encode_packed(15, &self.complement_categories, buf);
        if self.deleted {
            bool::encode(16, &self.deleted, buf);
        }
        if !self.embedding_f32le.is_empty() {
            bytes::encode(17, &self.embedding_f32le, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use encoding::*;
        const M: &str = "CatalogItem";
        match tag {
            1 => field(
                M,
                "item_id",
                uint64::merge(wire_type, &mut self.item_id, buf, ctx),
            ),
            3 => field(
                M,
                "category_id",
                uint64::merge(wire_type, &mut self.category_id, buf, ctx),
            ),
            4 => field(
                M,
                "brand_id",
                uint64::merge(wire_type, &mut self.brand_id, buf, ctx),
            ),
            5 => field(
                M,
                "shop_id",
                uint64::merge(wire_type, &mut self.shop_id, buf, ctx),
            ),
            6 => field(
                M,
                "price",
                float::merge(wire_type, &mut self.price, buf, ctx),
            ),
            7 => field(
                M,
                "popularity",
                float::merge(wire_type, &mut self.popularity, buf, ctx),
            ),
            8 => field(
                M,
                "embedding",
                merge_floats(wire_type, &mut self.embedding, buf, ctx),
            ),
            11 => field(
                M,
                "title",
                string::merge(wire_type, &mut self.title, buf, ctx),
            ),
            15 => field(
                M,
                "complement_categories",
                uint64::merge_repeated(wire_type, &mut self.complement_categories, buf, ctx),
            ),
            16 => field(
                M,
                "deleted",
                bool::merge(wire_type, &mut self.deleted, buf, ctx),
            ),
            17 => field(
                M,
                "embedding_f32le",
                merge_bytes(wire_type, &mut self.embedding_f32le, buf),
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use encoding::*;
        let mut n = 0;
        if self.item_id != 0 {
            n += uint64::encoded_len(1, &self.item_id);
        }
        if self.category_id != 0 {
            n += uint64::encoded_len(3, &self.category_id);
        }
        if self.brand_id != 0 {
            n += uint64::encoded_len(4, &self.brand_id);
        }
        if self.shop_id != 0 {
            n += uint64::encoded_len(5, &self.shop_id);
        }
        if self.price != 0.0 {
            n += float::encoded_len(6, &self.price);
        }
        if self.popularity != 0.0 {
            n += float::encoded_len(7, &self.popularity);
        }
        n += float::encoded_len_packed(8, &self.embedding);
        if !self.title.is_empty() {
            n += string::encoded_len(11, &self.title);
        }
        n += uint64::encoded_len_packed(15, &self.complement_categories);
        if self.deleted {
            n += bool::encoded_len(16, &self.deleted);
        }
        if !self.embedding_f32le.is_empty() {
            n += bytes::encoded_len(17, &self.embedding_f32le);
        }
        n
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A Rank request (see `ranker.proto`). Written by hand for one reason: each candidate is
/// decoded from a plain byte slice of the received message, where prost's generated code
/// reads every field and varint through tonic's buffer wrapper (a bounds check and an
/// indirection per byte read: about 15% of a call's instructions at 100 candidates).
#[derive(Clone, Debug, Default)]
pub struct RankRequest {
    pub user_id: String,
    pub request_id: String,
    pub surface: String,
    pub context: Option<super::Context>,
    pub candidates: Vec<Candidate>,
    pub k: u32,
    pub policy: String,
    pub explain: bool,
    pub strict: bool,
    pub consent: Option<super::ConsentOverride>,
    pub diversity: Option<super::DiversityOptions>,
    pub shown: u32,
    pub all_shown: bool,
    /// Not a field of the message: where [`RankRequest::decode_rows`] put the candidates'
    /// embeddings. Empty in every request made or decoded otherwise; readers that are not the
    /// Rank service's conversion never see it set.
    #[doc(hidden)]
    pub decoded_rows: DecodedRows,
    /// Not a field of the message: where [`RankRequest::decode_rows`] put the candidates'
    /// packed `evidence` (see [`DecodedEvidence`]); as `decoded_rows`, only the Rank service's
    /// conversion sees it set.
    #[doc(hidden)]
    pub decoded_evidence: DecodedEvidence,
}

/// The packed `evidence` runs of a decoded Rank request's candidates, one after the other in
/// one buffer, instead of a vector per candidate (an allocation and a free each: 6% of the
/// decoding of 100 candidates). A candidate's evidence is what is here for it followed by its
/// own `evidence`, in the order they came: a run is taken here only while the candidate has
/// none of its own (an unpacked value before it keeps every later run in the candidate).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedEvidence {
    values: Vec<i32>,
    /// `ends[j]`: where candidate `j`'s values end (they start where `j - 1`'s end);
    /// candidates from `ends.len()` on have none here.
    ends: Vec<usize>,
    /// Set while a request is decoded for the Rank service.
    active: bool,
}

impl DecodedEvidence {
    /// Takes candidate `index`'s packed run `packed` if it can: `Some(true)` when it did,
    /// `Some(false)` when the caller is to decode it into the candidate as usual, `None` when
    /// the run is malformed (nothing is kept; the caller's decoder says why).
    #[inline(always)]
    fn take_run(
        &mut self,
        index: usize,
        c: &Candidate,
        packed: &[u8],
        hint: usize,
    ) -> Option<bool> {
        if !self.active || !c.evidence.is_empty() || index + 1 < self.ends.len() {
            return Some(false);
        }
        if self.ends.is_empty() {
            self.ends.reserve(hint.max(1));
            self.values
                .reserve((hint.max(1) * packed.len()).min(MAX_GUESSED_CANDIDATES * 16));
        }
        push_packed_int32(&mut self.values, packed)?;
        let end = self.values.len();
        // Candidates between the last one here and this one have none here.
        let last = self.ends.last().copied().unwrap_or(0);
        self.ends.resize(index, last);
        if self.ends.len() == index {
            self.ends.push(end);
        } else {
            self.ends[index] = end;
        }
        Some(true)
    }

    /// Candidate `index`'s values held here (before its own).
    pub fn of(&self, index: usize) -> &[i32] {
        match self.ends.get(index) {
            Some(&end) => &self.values[index.checked_sub(1).map_or(0, |j| self.ends[j])..end],
            None => &[],
        }
    }

    fn is_set(&self) -> bool {
        !self.ends.is_empty()
    }
}

/// Appends the int32 values of a packed run (varints, the low 32 bits of each, as prost reads
/// them); `None`, with nothing appended, when a varint is malformed.
#[inline(always)]
fn push_packed_int32(out: &mut Vec<i32>, mut packed: &[u8]) -> Option<()> {
    let before = out.len();
    while !packed.is_empty() {
        match read_varint(packed) {
            Some((v, more)) => {
                out.push(v as i32);
                packed = more;
            }
            None => {
                out.truncate(before);
                return None;
            }
        }
    }
    Some(())
}

/// Puts every candidate's evidence held in `pool` back into the candidate, in front of its own.
fn give_back_evidence(pool: &mut DecodedEvidence, candidates: &mut [Candidate]) {
    let pool = std::mem::take(pool);
    for (j, c) in candidates.iter_mut().enumerate().take(pool.ends.len()) {
        let held = pool.of(j);
        if !held.is_empty() {
            c.evidence.splice(0..0, held.iter().copied());
        }
    }
}

/// The embeddings of a decoded Rank request's candidates, written straight from the wire
/// into one row-major buffer of `rows` × `width` values, in candidate order, instead of one
/// vector per candidate: the ranking's matrix itself, so the rows are neither allocated one by
/// one nor copied again. Only while every candidate so far has one embedding of the same
/// length in the same form (a packed `embedding`, or `embedding_f32le`); anything else (a
/// missing embedding, another length or form, a second run, unpacked values, bytes that are
/// not whole values) puts the rows back into their candidates when the request is decoded, and
/// it is decoded as any request is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedRows {
    flat: Vec<f32>,
    width: usize,
    /// The first `rows` candidates have their embedding here (and none of their own).
    rows: usize,
    /// The rows came as `embedding_f32le` (else as packed `embedding`).
    bytes_form: bool,
    /// Set while a request is decoded for the Rank service.
    active: bool,
    /// Pooling gave up for this request.
    broken: bool,
}

/// The embedding rows of a request, taken from its [`DecodedRows`].
#[derive(Debug)]
pub struct Matrix {
    /// `n` rows of `width` values, one per candidate in order.
    pub flat: Vec<f32>,
    pub width: usize,
    /// The field the candidates sent them in: `embedding` or `embedding_f32le`.
    pub field: &'static str,
}

impl DecodedRows {
    /// Takes candidate `index`'s embedding, `values` (little-endian float32, from a packed
    /// `embedding` or from `embedding_f32le` as `bytes_form` says), into the buffer if it can;
    /// false when the caller is to decode it into the candidate as usual (after its row, if it
    /// had one here, was given back: a second run of the last candidate taken).
    #[inline(always)]
    fn take_row(
        &mut self,
        index: usize,
        c: &mut Candidate,
        values: &[u8],
        bytes_form: bool,
        hint: usize,
    ) -> bool {
        if !self.active || self.broken {
            return false;
        }
        if index < self.rows {
            debug_assert_eq!(index + 1, self.rows);
            let row = self.flat.split_off(index * self.width);
            self.rows -= 1;
            give_back(c, &row, self.bytes_form);
            self.broken = true;
            return false;
        }
        let d = values.len() / 4;
        let fits = index == self.rows
            && c.embedding.is_empty()
            && c.embedding_f32le.is_empty()
            && d > 0
            && values.len().is_multiple_of(4)
            && (self.rows == 0 || (d == self.width && bytes_form == self.bytes_form));
        if !fits {
            self.broken = true;
            return false;
        }
        if self.rows == 0 {
            self.width = d;
            self.bytes_form = bytes_form;
            self.flat.reserve_exact(hint.max(1) * d);
        }
        extend_f32le(&mut self.flat, values);
        self.rows += 1;
        true
    }

    /// The rows (the request keeps none).
    fn take(&mut self) -> Option<Matrix> {
        if self.rows == 0 {
            return None;
        }
        let rows = std::mem::take(self);
        Some(Matrix {
            flat: rows.flat,
            width: rows.width,
            field: if rows.bytes_form {
                "embedding_f32le"
            } else {
                "embedding"
            },
        })
    }

    fn is_set(&self) -> bool {
        self.rows > 0
    }
}

/// Puts a row back into its candidate, in the form it came in, in front of whatever the
/// candidate got after it.
fn give_back(c: &mut Candidate, row: &[f32], bytes_form: bool) {
    if bytes_form {
        let mut own = Vec::with_capacity(row.len() * 4 + c.embedding_f32le.len());
        own.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        own.extend_from_slice(&c.embedding_f32le);
        c.embedding_f32le = own;
    } else {
        let mut own = Vec::with_capacity(row.len() + c.embedding.len());
        own.extend_from_slice(row);
        own.extend_from_slice(&c.embedding);
        c.embedding = own;
    }
}

/// Puts every row held in `rows` back into its candidate.
fn give_back_each_row(rows: &mut DecodedRows, candidates: &mut [Candidate]) {
    let rows = std::mem::take(rows);
    if rows.rows == 0 {
        return;
    }
    for (c, row) in candidates
        .iter_mut()
        .zip(rows.flat.chunks_exact(rows.width))
        .take(rows.rows)
    {
        give_back(c, row, rows.bytes_form);
    }
}

impl RankRequest {
    /// Decodes a request for the Rank service: as [`Message::decode`] does, except that the
    /// candidates' embeddings go into [`RankRequest::decoded_rows`] when they all can (see
    /// [`DecodedRows`]); a request that cannot is decoded exactly as `decode` would.
    pub fn decode_rows(buf: impl Buf) -> Result<Self, DecodeError> {
        let mut req = RankRequest {
            decoded_rows: DecodedRows {
                active: true,
                ..Default::default()
            },
            decoded_evidence: DecodedEvidence {
                active: true,
                ..Default::default()
            },
            ..Default::default()
        };
        req.merge(buf)?;
        req.decoded_rows.active = false;
        req.decoded_evidence.active = false;
        let whole = !req.decoded_rows.broken
            && req.decoded_rows.rows == req.candidates.len()
            && req
                .candidates
                .iter()
                .all(|c| c.embedding.is_empty() && c.embedding_f32le.is_empty());
        if !whole {
            give_back_each_row(&mut req.decoded_rows, &mut req.candidates);
        }
        Ok(req)
    }

    /// The candidates' embeddings as one matrix, if the request was decoded so (see
    /// [`DecodedRows`]) and still has one row per candidate; otherwise `None`, every
    /// embedding being in its candidate.
    pub fn take_rows(&mut self) -> Option<Matrix> {
        if self.decoded_rows.rows != self.candidates.len() {
            give_back_each_row(&mut self.decoded_rows, &mut self.candidates);
        }
        self.decoded_rows.take()
    }

    /// The candidates' evidence held apart as the request was decoded (see
    /// [`DecodedEvidence`]): candidate `i`'s evidence is `of(i)` followed by its own.
    pub fn take_evidence(&mut self) -> DecodedEvidence {
        std::mem::take(&mut self.decoded_evidence)
    }

    /// Whether anything of the candidates is held apart from them.
    fn holds_apart(&self) -> bool {
        self.decoded_rows.is_set() || self.decoded_evidence.is_set()
    }

    /// Puts everything held in [`RankRequest::decoded_rows`] and
    /// [`RankRequest::decoded_evidence`] back into the candidates.
    fn give_back_held(&mut self) {
        give_back_each_row(&mut self.decoded_rows, &mut self.candidates);
        give_back_evidence(&mut self.decoded_evidence, &mut self.candidates);
    }

    /// The request with every embedding and all evidence in its candidate.
    fn with_held_given_back(&self) -> Self {
        let mut req = self.clone();
        req.give_back_held();
        req
    }
}

/// Field by field, embeddings compared where they are: a request whose rows were decoded into
/// one buffer equals the same request decoded the usual way.
impl PartialEq for RankRequest {
    fn eq(&self, other: &Self) -> bool {
        if self.holds_apart() || other.holds_apart() {
            return self.with_held_given_back() == other.with_held_given_back();
        }
        self.user_id == other.user_id
            && self.request_id == other.request_id
            && self.surface == other.surface
            && self.context == other.context
            && self.candidates == other.candidates
            && self.k == other.k
            && self.policy == other.policy
            && self.explain == other.explain
            && self.strict == other.strict
            && self.consent == other.consent
            && self.diversity == other.diversity
            && self.shown == other.shown
            && self.all_shown == other.all_shown
    }
}

/// Merges one length-delimited candidate: from the buffer's current chunk as a slice when it
/// holds the whole candidate (a received message is one chunk), else from a copy.
fn merge_candidate(
    wire_type: WireType,
    candidates: &mut Vec<Candidate>,
    rows: &mut DecodedRows,
    evidence: &mut DecodedEvidence,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = encoding::decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(malformed("buffer underflow"));
    }
    let len = len as usize;
    before_candidate(candidates, rows, len, buf.remaining());
    let chunk = buf.chunk();
    if chunk.len() >= len {
        push_candidate(candidates, rows, evidence, &chunk[..len], ctx)?;
        buf.advance(len);
        return Ok(());
    }
    let mut candidate = Candidate::default();
    let mut bytes = buf.copy_to_bytes(len);
    while bytes.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(&mut bytes)?;
        candidate.merge_field(tag, wire_type, &mut bytes, ctx.clone())?;
    }
    candidates.push(candidate);
    Ok(())
}

/// What comes before a candidate of `len` bytes is merged, `remaining` bytes (its own
/// included) being left in the message.
#[inline(always)]
fn before_candidate(
    candidates: &mut Vec<Candidate>,
    rows: &mut DecodedRows,
    len: usize,
    remaining: usize,
) {
    if candidates.is_empty() {
        // Guessed from the first candidate's size, so the list is not regrown (and its
        // candidates copied) seven times on the way to 100; bounded, since the guess trusts
        // the client.
        candidates.reserve((remaining / (len + 2)).clamp(1, MAX_GUESSED_CANDIDATES));
    }
    if rows.is_set() && !rows.active {
        // More merged into a request whose rows were decoded apart: they go back first.
        give_back_each_row(rows, candidates);
    }
}

/// Appends the candidate whose bytes are `s` (all of them), decoded where it will stay rather
/// than moved into the list (200 bytes each).
#[inline(always)]
fn push_candidate(
    candidates: &mut Vec<Candidate>,
    rows: &mut DecodedRows,
    evidence: &mut DecodedEvidence,
    s: &[u8],
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let index = candidates.len();
    let hint = candidates.capacity();
    candidates.push(Candidate::EMPTY);
    let candidate = candidates.last_mut().expect("just pushed");
    let mut apart = InRequest {
        rows,
        evidence,
        index,
        hint,
    };
    if let Err(e) = decode_candidate(candidate, s, &mut apart, ctx) {
        candidates.pop();
        return Err(e);
    }
    Ok(())
}

/// A varint at the start of `s`, and what follows it; `None` when `s` does not start with a
/// well-formed one (the caller then lets prost's own decoder say why). Values below 2^14 (ids
/// of most catalogs, lengths, enums) take one or two bytes and are read without a loop.
#[inline(always)]
pub(super) fn read_varint(s: &[u8]) -> Option<(u64, &[u8])> {
    match *s {
        [b0, ref rest @ ..] if b0 < 0x80 => Some((u64::from(b0), rest)),
        [b0, b1, ref rest @ ..] if b1 < 0x80 => {
            Some((u64::from(b0 & 0x7f) | u64::from(b1) << 7, rest))
        }
        _ => read_long_varint(s),
    }
}

/// [`read_varint`] for a varint of three bytes or more (or a malformed one).
#[inline(never)]
fn read_long_varint(s: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = s.split_first()?;
    let mut value = u64::from(first & 0x7f);
    for (i, &b) in rest.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * (i + 1));
        if b < 0x80 {
            // The tenth byte holds the 64th bit only.
            return (i < 8 || b <= 1).then(|| (value, &rest[i + 1..]));
        }
    }
    None
}

/// A length-delimited field's payload at the start of `s`, and what follows it.
#[inline(always)]
pub(super) fn read_len(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = read_varint(s)?;
    let len = usize::try_from(len).ok().filter(|&n| n <= rest.len())?;
    Some(rest.split_at(len))
}

#[inline(always)]
pub(super) fn read_f32(s: &[u8]) -> Option<(f32, &[u8])> {
    let (bytes, rest) = s.split_first_chunk::<4>()?;
    Some((f32::from_le_bytes(*bytes), rest))
}

/// Where [`decode_candidate`] may put a candidate's vectors rather than in the candidate.
trait Apart {
    /// Takes the candidate's embedding `values` (little-endian float32, from a packed
    /// `embedding` or from `embedding_f32le` as `bytes_form` says); false when it is to go
    /// into the candidate.
    fn row(&mut self, c: &mut Candidate, values: &[u8], bytes_form: bool) -> bool;
    /// Takes a packed `evidence` run: `Some(false)` when it is to go into the candidate,
    /// `None` when it is malformed.
    fn evidence(&mut self, c: &Candidate, packed: &[u8]) -> Option<bool>;
}

/// Candidate `index` of a request decoded for the Rank service: its embedding row and its
/// evidence go into the request's [`DecodedRows`] and [`DecodedEvidence`] when they can.
struct InRequest<'a> {
    rows: &'a mut DecodedRows,
    evidence: &'a mut DecodedEvidence,
    index: usize,
    /// How many candidates the request's list has room for.
    hint: usize,
}

impl Apart for InRequest<'_> {
    #[inline(always)]
    fn row(&mut self, c: &mut Candidate, values: &[u8], bytes_form: bool) -> bool {
        self.rows
            .take_row(self.index, c, values, bytes_form, self.hint)
    }

    #[inline(always)]
    fn evidence(&mut self, c: &Candidate, packed: &[u8]) -> Option<bool> {
        self.evidence.take_run(self.index, c, packed, self.hint)
    }
}

/// Decodes one candidate from `s`, which holds exactly its bytes. The fields clients send
/// (each with a one-byte key) are read straight from the slice: no buffer trait, no per-field
/// error wrapping, the packed vectors reserved once. Anything else (strings, an unknown or
/// unpacked field, a malformed value) goes to [`Candidate::merge_field`], which decodes it, or
/// refuses it with the error prost's generated code gives, from the field's key on. Merging
/// follows protobuf's rules as `merge_field` does: the last scalar wins, packed runs append.
fn decode_candidate(
    c: &mut Candidate,
    mut s: &[u8],
    apart: &mut impl Apart,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    s = fields_in_order(c, s, apart);
    while let Some((&key, rest)) = s.split_first() {
        match read_field(key, rest, c, apart) {
            Some(r) => s = r,
            None => {
                let (tag, wire_type) = encoding::decode_key(&mut s)?;
                c.merge_field(tag, wire_type, &mut s, ctx.clone())?;
            }
        }
    }
    Ok(())
}

/// The fields clients send, in the order every protobuf encoder writes them (by number), each
/// read if it is the one that comes next: a straight run with no dispatch per field (a field
/// left out, as proto3 leaves out zeros, costs one compare). It stops at the first field out
/// of that order or malformed and returns what is left, which [`decode_candidate`]'s loop then
/// reads; that loop would have read each field taken here the same way, in the same order.
#[inline(always)]
fn fields_in_order<'a>(c: &mut Candidate, mut s: &'a [u8], apart: &mut impl Apart) -> &'a [u8] {
    macro_rules! in_order {
        ($($key:literal),*) => {$(
            if let Some((&$key, rest)) = s.split_first() {
                match read_field($key, rest, c, apart) {
                    Some(r) => s = r,
                    None => return s,
                }
            }
        )*};
    }
    in_order!(
        0x08, 0x15, 0x18, 0x20, 0x28, 0x35, 0x3d, 0x42, 0x4a, 0x50, 0x60, 0x70, 0x7a
    );
    s
}

/// Reads the field whose one-byte key is `key` from `rest` (what follows the key) into the
/// candidate, if it is one clients send and well-formed; returns what follows it. `None` for
/// any other key, or a malformed value: [`Candidate::merge_field`] decodes it, or refuses it
/// with prost's error.
#[inline(always)]
fn read_field<'a>(
    key: u8,
    rest: &'a [u8],
    c: &mut Candidate,
    apart: &mut impl Apart,
) -> Option<&'a [u8]> {
    match key {
        0x08 => read_varint(rest).map(|(v, r)| {
            c.item_id = v;
            r
        }),
        0x15 => read_f32(rest).map(|(v, r)| {
            c.score = v;
            r
        }),
        0x18 => read_varint(rest).map(|(v, r)| {
            c.category_id = v;
            r
        }),
        0x20 => read_varint(rest).map(|(v, r)| {
            c.brand_id = v;
            r
        }),
        0x28 => read_varint(rest).map(|(v, r)| {
            c.shop_id = v;
            r
        }),
        0x35 => read_f32(rest).map(|(v, r)| {
            c.price = v;
            r
        }),
        0x3d => read_f32(rest).map(|(v, r)| {
            c.popularity = v;
            r
        }),
        // Written as statements rather than closures, which the compiler left out of line.
        0x42 => {
            let (packed, r) = read_len(rest)?;
            if !packed.len().is_multiple_of(4) {
                return None;
            }
            if apart.row(c, packed, false) {
                // Written into the request's rows (`DecodedRows`).
            } else if c.embedding.is_empty() {
                // Allocated once at its size: the common case, one run per candidate.
                c.embedding = floats_of(packed);
            } else {
                c.embedding.reserve_exact(packed.len() / 4);
                extend_f32le(&mut c.embedding, packed);
            }
            Some(r)
        }
        0x4a => {
            let (packed, r) = read_len(rest)?;
            if !apart.evidence(c, packed)? {
                if c.evidence.capacity() == 0 {
                    c.evidence = Vec::with_capacity(packed.len().min(16));
                }
                push_packed_int32(&mut c.evidence, packed)?;
            }
            Some(r)
        }
        0x50 => read_varint(rest).map(|(v, r)| {
            c.sponsored = v != 0;
            r
        }),
        0x60 => read_varint(rest).map(|(v, r)| {
            c.anchor_item_id = v;
            r
        }),
        0x70 => read_varint(rest).map(|(v, r)| {
            c.cross_platform_seen_ms = v as i64;
            r
        }),
        0x7a => read_len(rest).map(|(bytes, r)| {
            if !apart.row(c, bytes, true) {
                c.embedding_f32le.clear();
                c.embedding_f32le.extend_from_slice(bytes);
            }
            r
        }),
        _ => None,
    }
}

impl Message for RankRequest {
    /// prost's own loop, over a plain slice when the buffer is one chunk (as a received
    /// message is), so each candidate's key and length are read without the buffer's
    /// indirection.
    fn merge(&mut self, mut buf: impl Buf) -> Result<(), DecodeError> {
        let ctx = DecodeContext::default();
        let whole = buf.remaining();
        if buf.chunk().len() == whole {
            let mut s = buf.chunk();
            while let Some((&key, rest)) = s.split_first() {
                // A candidate (field 5, length-delimited) read without the generic key and
                // field dispatch; anything else, or a malformed length, goes the usual way.
                if key == 0x2a
                    && let Some((candidate, after)) = read_len(rest)
                {
                    before_candidate(
                        &mut self.candidates,
                        &mut self.decoded_rows,
                        candidate.len(),
                        candidate.len() + after.len(),
                    );
                    field(
                        "RankRequest",
                        "candidates",
                        push_candidate(
                            &mut self.candidates,
                            &mut self.decoded_rows,
                            &mut self.decoded_evidence,
                            candidate,
                            ctx.clone(),
                        ),
                    )?;
                    s = after;
                    continue;
                }
                let (tag, wire_type) = encoding::decode_key(&mut s)?;
                self.merge_field(tag, wire_type, &mut s, ctx.clone())?;
            }
            buf.advance(whole);
            return Ok(());
        }
        while buf.has_remaining() {
            let (tag, wire_type) = encoding::decode_key(&mut buf)?;
            self.merge_field(tag, wire_type, &mut buf, ctx.clone())?;
        }
        Ok(())
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        use encoding::*;
        if self.holds_apart() {
            return self.with_held_given_back().encode_raw(buf);
        }
        if !self.user_id.is_empty() {
            string::encode(1, &self.user_id, buf);
        }
        if !self.request_id.is_empty() {
            string::encode(2, &self.request_id, buf);
        }
        if !self.surface.is_empty() {
            string::encode(3, &self.surface, buf);
        }
        if let Some(context) = &self.context {
            message::encode(4, context, buf);
        }
        for c in &self.candidates {
            message::encode(5, c, buf);
        }
        if self.k != 0 {
            uint32::encode(6, &self.k, buf);
        }
        if !self.policy.is_empty() {
            string::encode(7, &self.policy, buf);
        }
        if self.explain {
            bool::encode(8, &self.explain, buf);
        }
        if self.strict {
            bool::encode(9, &self.strict, buf);
        }
        if let Some(consent) = &self.consent {
            message::encode(10, consent, buf);
        }
        if let Some(diversity) = &self.diversity {
            message::encode(11, diversity, buf);
        }
        if self.shown != 0 {
            uint32::encode(12, &self.shown, buf);
        }
        if self.all_shown {
            bool::encode(13, &self.all_shown, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use encoding::*;
        const M: &str = "RankRequest";
        match tag {
            1 => field(
                M,
                "user_id",
                string::merge(wire_type, &mut self.user_id, buf, ctx),
            ),
            2 => field(
                M,
                "request_id",
                string::merge(wire_type, &mut self.request_id, buf, ctx),
            ),
            3 => field(
                M,
                "surface",
                string::merge(wire_type, &mut self.surface, buf, ctx),
            ),
            4 => field(
                M,
                "context",
                message::merge(
                    wire_type,
                    self.context.get_or_insert_with(Default::default),
                    buf,
                    ctx,
                ),
            ),
            5 => field(
                M,
                "candidates",
                merge_candidate(
                    wire_type,
                    &mut self.candidates,
                    &mut self.decoded_rows,
                    &mut self.decoded_evidence,
                    buf,
                    ctx,
                ),
            ),
            6 => field(M, "k", uint32::merge(wire_type, &mut self.k, buf, ctx)),
            7 => field(
                M,
                "policy",
                string::merge(wire_type, &mut self.policy, buf, ctx),
            ),
            8 => field(
                M,
                "explain",
                bool::merge(wire_type, &mut self.explain, buf, ctx),
            ),
            9 => field(
                M,
                "strict",
                bool::merge(wire_type, &mut self.strict, buf, ctx),
            ),
            10 => field(
                M,
                "consent",
                message::merge(
                    wire_type,
                    self.consent.get_or_insert_with(Default::default),
                    buf,
                    ctx,
                ),
            ),
            11 => field(
                M,
                "diversity",
                message::merge(
                    wire_type,
                    self.diversity.get_or_insert_with(Default::default),
                    buf,
                    ctx,
                ),
            ),
            12 => field(
                M,
                "shown",
                uint32::merge(wire_type, &mut self.shown, buf, ctx),
            ),
            13 => field(
                M,
                "all_shown",
                bool::merge(wire_type, &mut self.all_shown, buf, ctx),
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use encoding::*;
        if self.holds_apart() {
            return self.with_held_given_back().encoded_len();
        }
        let mut n = 0;
        if !self.user_id.is_empty() {
            n += string::encoded_len(1, &self.user_id);
        }
        if !self.request_id.is_empty() {
            n += string::encoded_len(2, &self.request_id);
        }
        if !self.surface.is_empty() {
            n += string::encoded_len(3, &self.surface);
        }
        if let Some(context) = &self.context {
            n += message::encoded_len(4, context);
        }
        n += message::encoded_len_repeated(5, &self.candidates);
        if self.k != 0 {
            n += uint32::encoded_len(6, &self.k);
        }
        if !self.policy.is_empty() {
            n += string::encoded_len(7, &self.policy);
        }
        if self.explain {
            n += bool::encoded_len(8, &self.explain);
        }
        if self.strict {
            n += bool::encoded_len(9, &self.strict);
        }
        if let Some(consent) = &self.consent {
            n += message::encoded_len(10, consent);
        }
        if let Some(diversity) = &self.diversity {
            n += message::encoded_len(11, diversity);
        }
        if self.shown != 0 {
            n += uint32::encoded_len(12, &self.shown);
        }
        if self.all_shown {
            n += bool::encoded_len(13, &self.all_shown);
        }
        n
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost::bytes::Buf as _;
    use prost_reflect::{DescriptorPool, DynamicMessage, Kind, ReflectMessage, Value};

    use super::*;

    /// A message of the proto's type `name` with every field set to a value other than its
    /// default (repeated fields get two values, messages every field set in turn).
    fn every_field_set(name: &str) -> DynamicMessage {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        filled(pool.get_message_by_name(name).unwrap())
    }

    fn filled(desc: prost_reflect::MessageDescriptor) -> DynamicMessage {
        let mut m = DynamicMessage::new(desc.clone());
        for f in desc.fields() {
            let n = f.number();
            let one = match f.kind() {
                Kind::Uint64 => Value::U64(1000 + u64::from(n)),
                Kind::Uint32 => Value::U32(100 + n),
                Kind::Int64 => Value::I64(2000 + i64::from(n)),
                Kind::Int32 => Value::I32(-3 - n as i32),
                Kind::Float => Value::F32(0.5 + n as f32),
                Kind::Double => Value::F64(0.25 + f64::from(n)),
                Kind::Bool => Value::Bool(true),
                Kind::String => Value::String(format!("field {n}")),
                Kind::Bytes => Value::Bytes(vec![1, 2, 3, 4, 5, 6, 7, n as u8].into()),
                Kind::Enum(_) => Value::EnumNumber(2),
                Kind::Message(inner) => Value::Message(filled(inner)),
                other => panic!(
                    "{}.{}: a {other:?} field is not handled here",
                    desc.name(),
                    f.name()
                ),
            };
            let value = if f.is_list() {
                Value::List(vec![one.clone(), one])
            } else {
                one
            };
            m.set_field(&f, value);
        }
        m
    }

    /// Every field of the proto survives a trip through the hand-written type, and the type
    /// writes what prost's generated code would.
    fn round_trips<T: Message + Default + PartialEq + std::fmt::Debug>(name: &str) {
        let full = every_field_set(name);
        let wire = full.encode_to_vec();
        let ours = T::decode(wire.as_slice()).unwrap();
        let again =
            DynamicMessage::decode(full.descriptor(), ours.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, full, "{name}: a field was lost or changed");
        assert_eq!(ours.encoded_len(), ours.encode_to_vec().len());
        assert_eq!(T::decode(&[][..]).unwrap(), T::default());
    }

    #[test]
    fn every_field_of_the_proto_round_trips() {
        round_trips::<Candidate>("tactful.v1.Candidate");
        assert_eq!(Candidate::EMPTY, Candidate::default());
        round_trips::<CatalogItem>("tactful.v1.CatalogItem");
        round_trips::<RankRequest>("tactful.v1.RankRequest");
        round_trips::<crate::pb::Event>("tactful.v1.Event");
    }

    #[test]
    fn floats_decode_packed_unpacked_and_across_chunks() {
        let values: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
        let packed = Candidate {
            item_id: 7,
            embedding: values.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        // The same bytes in two chunks split inside a value, as a network buffer may be.
        for cut in [1, 6, 9, packed.len() / 2, packed.len() - 1] {
            let (a, b) = packed.split_at(cut);
            let got = Candidate::decode(a.chain(b)).unwrap();
            assert_eq!(got.embedding, values, "cut at {cut}");
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let request = RankRequest {
            candidates: vec![
                Candidate {
                    item_id: 7,
                    embedding_f32le: bytes.clone(),
                    ..Default::default()
                };
                3
            ],
            ..Default::default()
        }
        .encode_to_vec();
        for cut in [1, 9, 300, request.len() / 2, request.len() - 1] {
            let (a, b) = request.split_at(cut);
            let got = RankRequest::decode(a.chain(b)).unwrap();
            assert_eq!(got.candidates.len(), 3, "cut at {cut}");
            assert!(got.candidates.iter().all(|c| c.embedding_f32le == bytes));
        }
        // Unpacked: each value its own fixed32 field (legal, if unusual, in proto3).
        let mut unpacked = Vec::new();
        encoding::uint64::encode(1, &7, &mut unpacked);
        for v in &values {
            encoding::float::encode(8, v, &mut unpacked);
        }
        assert_eq!(
            Candidate::decode(unpacked.as_slice()).unwrap().embedding,
            values
        );
    }

    /// A request of `n` candidates whose embeddings `shape` chooses (None: no embedding).
    fn request_of(n: usize, shape: impl Fn(usize) -> Option<Vec<f32>>) -> RankRequest {
        RankRequest {
            user_id: "u".into(),
            candidates: (0..n)
                .map(|i| Candidate {
                    item_id: i as u64 + 1,
                    score: 1.0 - i as f32 * 0.01,
                    evidence: vec![1],
                    embedding: shape(i).unwrap_or_default(),
                    ..Default::default()
                })
                .collect(),
            k: 3,
            ..Default::default()
        }
    }

    fn row(i: usize, d: usize) -> Vec<f32> {
        (0..d).map(|j| (i * d + j) as f32 * 0.5).collect()
    }

    #[test]
    fn rows_decode_into_one_buffer_when_every_candidate_has_one_of_one_length() {
        let req = request_of(5, |i| Some(row(i, 4)));
        let bytes = req.encode_to_vec();
        let mut got = RankRequest::decode_rows(bytes.as_slice()).unwrap();
        assert!(got.candidates.iter().all(|c| c.embedding.is_empty()));
        assert_eq!(got, req, "equal to the request, rows and all");
        assert_eq!(got.encode_to_vec(), bytes, "and encoded as it was");
        // Merged with more, the rows go back to their candidates first.
        let mut more = got.clone();
        more.merge(
            request_of(1, |_| Some(row(9, 4)))
                .encode_to_vec()
                .as_slice(),
        )
        .unwrap();
        assert!(!more.decoded_rows.is_set());
        assert_eq!(more.candidates[0].embedding, row(0, 4));
        assert_eq!(more.candidates[5].embedding, row(9, 4));
        // A list changed after decoding gets its rows back, not a matrix.
        let mut fewer = got.clone();
        fewer.candidates.pop();
        assert!(fewer.take_rows().is_none());
        assert_eq!(fewer.candidates[3].embedding, row(3, 4));
        let m = got.take_rows().unwrap();
        assert_eq!((m.width, m.field), (4, "embedding"));
        assert_eq!(m.flat, (0..5).flat_map(|i| row(i, 4)).collect::<Vec<_>>());
        assert!(got.take_rows().is_none(), "taken once");
        // The bytes form too.
        let mut req = req;
        req.candidates
            .iter_mut()
            .for_each(Candidate::use_embedding_bytes);
        let bytes = req.encode_to_vec();
        let mut got = RankRequest::decode_rows(bytes.as_slice()).unwrap();
        assert!(got.candidates.iter().all(|c| c.embedding_f32le.is_empty()));
        assert_eq!(got, req);
        assert_eq!(got.encode_to_vec(), bytes);
        let m = got.take_rows().unwrap();
        assert_eq!((m.width, m.field), (4, "embedding_f32le"));
        assert_eq!(m.flat, (0..5).flat_map(|i| row(i, 4)).collect::<Vec<_>>());
        // Decoded the usual way, nothing is pooled.
        let plain = RankRequest::decode(bytes.as_slice()).unwrap();
        assert!(!plain.decoded_rows.is_set());
    }

    #[test]
    fn any_other_request_decodes_as_it_always_did() {
        let packed = |v: &[f32]| {
            let mut b = Vec::new();
            encoding::float::encode_packed(8, v, &mut b);
            b
        };
        let unpacked = |v: &[f32]| {
            let mut b = Vec::new();
            for x in v {
                encoding::float::encode(8, x, &mut b);
            }
            b
        };
        // Candidate bytes with extra embedding fields appended after their own.
        let with_extra = |req: &RankRequest, at: usize, extra: Vec<u8>| {
            let mut out = Vec::new();
            for (i, c) in req.candidates.iter().enumerate() {
                let mut body = c.encode_to_vec();
                if i == at {
                    body.extend_from_slice(&extra);
                }
                encoding::bytes::encode(5, &body, &mut out);
            }
            encoding::string::encode(1, &req.user_id, &mut out);
            out
        };
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "a candidate without",
                request_of(4, |i| (i != 2).then(|| row(i, 4))).encode_to_vec(),
            ),
            (
                "the first without",
                request_of(4, |i| (i != 0).then(|| row(i, 4))).encode_to_vec(),
            ),
            (
                "the last without",
                request_of(4, |i| (i != 3).then(|| row(i, 4))).encode_to_vec(),
            ),
            (
                "two lengths",
                request_of(4, |i| Some(row(i, if i == 3 { 5 } else { 4 }))).encode_to_vec(),
            ),
            ("none at all", request_of(4, |_| None).encode_to_vec()),
            ("no candidates", request_of(0, |_| None).encode_to_vec()),
            (
                "empty runs",
                request_of(3, |_| Some(Vec::new())).encode_to_vec(),
            ),
        ];
        let base = request_of(4, |i| Some(row(i, 4)));
        cases.push((
            "a second packed run, last",
            with_extra(&base, 3, packed(&[9.0, 8.0])),
        ));
        cases.push((
            "a second packed run, first",
            with_extra(&base, 0, packed(&[9.0])),
        ));
        cases.push((
            "unpacked values after the run",
            with_extra(&base, 1, unpacked(&[7.0, 6.0])),
        ));
        let mut bytes_form = base.clone();
        bytes_form.candidates[2].embedding_f32le = vec![0, 0, 128, 63];
        cases.push(("the bytes form beside", bytes_form.encode_to_vec()));
        let mut as_bytes = base.clone();
        as_bytes
            .candidates
            .iter_mut()
            .for_each(Candidate::use_embedding_bytes);
        let mut mixed = as_bytes.clone();
        mixed.candidates[1].embedding = row(1, 4);
        mixed.candidates[1].embedding_f32le.clear();
        cases.push(("the two forms in turn", mixed.encode_to_vec()));
        let mut torn = as_bytes.clone();
        torn.candidates[2].embedding_f32le.pop();
        cases.push(("bytes not whole values", torn.encode_to_vec()));
        let mut both_forms = as_bytes.clone();
        both_forms.candidates[3].embedding = row(3, 4);
        cases.push(("both forms in one candidate", both_forms.encode_to_vec()));
        let mut bytes = Vec::new();
        encoding::bytes::encode(15, &vec![1u8; 8], &mut bytes);
        cases.push((
            "a second bytes field, last",
            with_extra(&as_bytes, 3, bytes.clone()),
        ));
        cases.push((
            "a second bytes field, first",
            with_extra(&as_bytes, 0, bytes),
        ));
        cases.push((
            "floats after the bytes",
            with_extra(&as_bytes, 2, packed(&[1.0])),
        ));
        for (name, bytes) in cases {
            let want = RankRequest::decode(bytes.as_slice()).unwrap();
            let got = RankRequest::decode_rows(bytes.as_slice()).unwrap();
            assert!(!got.decoded_rows.is_set(), "{name}: rows given back");
            // (Evidence stays held apart whatever the rows do.)
            assert_eq!(
                got.with_held_given_back().candidates,
                want.candidates,
                "{name}"
            );
            assert_eq!(got.encode_to_vec(), want.encode_to_vec(), "{name}");
        }
        // Malformed bytes fail alike.
        let mut bad = base.encode_to_vec();
        bad.truncate(bad.len() - 3);
        assert_eq!(
            RankRequest::decode_rows(bad.as_slice())
                .unwrap_err()
                .to_string(),
            RankRequest::decode(bad.as_slice()).unwrap_err().to_string()
        );
    }

    /// Everything stays in the candidate (as outside a request decoded for the Rank service).
    struct InCandidate;

    impl Apart for InCandidate {
        fn row(&mut self, _: &mut Candidate, _: &[u8], _: bool) -> bool {
            false
        }

        fn evidence(&mut self, _: &Candidate, _: &[u8]) -> Option<bool> {
            Some(false)
        }
    }

    /// The generic decoder: prost's loop over `merge_field`, which the slice path must match.
    fn generic(bytes: &[u8]) -> Result<Candidate, DecodeError> {
        let mut c = Candidate::default();
        let mut s = bytes;
        while !s.is_empty() {
            let (tag, wire_type) = encoding::decode_key(&mut s)?;
            c.merge_field(tag, wire_type, &mut s, DecodeContext::default())?;
        }
        Ok(c)
    }

    fn sliced(bytes: &[u8]) -> Result<Candidate, DecodeError> {
        let mut c = Candidate::default();
        decode_candidate(&mut c, bytes, &mut InCandidate, DecodeContext::default()).map(|()| c)
    }

    #[test]
    fn the_slice_path_decodes_as_prost_does_even_when_malformed() {
        let mut full = every_field_set("tactful.v1.Candidate").encode_to_vec();
        // Repeated scalars and runs, a ten-byte varint and an unknown field on top.
        full.extend_from_slice(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        full.extend_from_slice(&[0x42, 8, 0, 0, 128, 63, 0, 0, 0, 64, 0x4a, 2, 0x83, 0x01]);
        full.extend_from_slice(&[0xa8, 0x01, 5, 0x70, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
        full.extend_from_slice(&[0xff, 0xff, 0xff, 0x01]);
        assert!(sliced(&full).is_ok());
        assert_eq!(sliced(&full).unwrap(), generic(&full).unwrap());
        // Fields out of number order, and one taken in order then repeated: the straight run
        // stops at the first out of order and the loop reads the rest.
        let shuffled = [
            0x3d, 0, 0, 128, 63, 0x08, 5, 0x4a, 1, 2, 0x42, 4, 0, 0, 0, 64, 0x15, 0, 0, 0, 63,
            0x08, 6, 0x4a, 1, 3,
        ];
        let c = sliced(&shuffled).unwrap();
        assert_eq!(c, generic(&shuffled).unwrap());
        assert_eq!((c.item_id, c.evidence.as_slice()), (6, &[2, 3][..]));
        // Every prefix (truncated values), and every byte changed in a few ways.
        let mut cases: Vec<Vec<u8>> = (0..full.len()).map(|n| full[..n].to_vec()).collect();
        for i in 0..full.len() {
            for x in [0x00, 0x01, 0x7f, 0x80, 0xff, full[i] ^ 0x08] {
                let mut b = full.clone();
                b[i] = x;
                cases.push(b);
            }
        }
        // An eleven-byte varint, and a tenth byte above 1.
        cases.push(vec![
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ]);
        cases.push(vec![
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
        ]);
        for b in &cases {
            match (sliced(b), generic(b)) {
                // Compared as printed: a changed byte may make a NaN.
                (Ok(a), Ok(g)) => assert_eq!(format!("{a:?}"), format!("{g:?}"), "{b:?}"),
                (Err(a), Err(g)) => assert_eq!(a.to_string(), g.to_string(), "{b:?}"),
                (a, g) => panic!("{b:?}: slice path {a:?}, prost {g:?}"),
            }
        }
    }

    #[test]
    fn the_request_slice_path_decodes_as_the_generic_loop_even_when_malformed() {
        let mut req = request_of(3, |i| Some(row(i, 4)));
        req.candidates[1].evidence = vec![2, 3];
        req.k = 2;
        let full = req.encode_to_vec();
        // The same bytes in two chunks take prost's loop over `merge_field` (and the
        // candidates' copying path), which the whole-slice path must match.
        let chunked = |b: &[u8]| {
            let (a, z) = b.split_at(b.len() / 2);
            let mut req = RankRequest {
                decoded_rows: DecodedRows {
                    active: true,
                    ..Default::default()
                },
                ..Default::default()
            };
            req.merge(a.chain(z)).map(|()| {
                req.decoded_rows.active = false;
                req.with_held_given_back()
            })
        };
        let sliced = |b: &[u8]| RankRequest::decode_rows(b).map(|r| r.with_held_given_back());
        assert_eq!(sliced(&full).unwrap(), req);
        let mut cases: Vec<Vec<u8>> = (0..full.len()).map(|n| full[..n].to_vec()).collect();
        for i in 0..full.len() {
            for x in [0x00, 0x01, 0x2a, 0x7f, 0x80, 0xff, full[i] ^ 0x08] {
                let mut b = full.clone();
                b[i] = x;
                cases.push(b);
            }
        }
        for b in &cases {
            match (sliced(b), chunked(b)) {
                (Ok(a), Ok(g)) => assert_eq!(format!("{a:?}"), format!("{g:?}"), "{b:?}"),
                (Err(a), Err(g)) => assert_eq!(a.to_string(), g.to_string(), "{b:?}"),
                (a, g) => panic!("{b:?}: slice path {a:?}, generic {g:?}"),
            }
        }
    }

    #[test]
    fn evidence_runs_are_held_apart_in_order_and_given_back_in_front() {
        let mut req = request_of(4, |i| Some(row(i, 2)));
        req.candidates[0].evidence = vec![2, 3];
        req.candidates[1].evidence = vec![];
        req.candidates[3].evidence = vec![-1, 9, 300];
        let bytes = req.encode_to_vec();
        let mut got = RankRequest::decode_rows(bytes.as_slice()).unwrap();
        assert!(got.candidates.iter().all(|c| c.evidence.is_empty()));
        assert_eq!(got, req, "equal to the request, evidence and all");
        assert_eq!(got.encode_to_vec(), bytes, "and encoded as it was");
        let held = got.take_evidence();
        assert_eq!(held.of(0), [2, 3]);
        assert_eq!(held.of(1), [] as [i32; 0]);
        assert_eq!(held.of(2), [1]);
        assert_eq!(held.of(3), [-1, 9, 300]);
        assert_eq!(held.of(4), [] as [i32; 0]);

        // A second packed run appends; an unpacked value keeps every later run in the
        // candidate, after what is held: the order on the wire is kept.
        let mut body = Candidate {
            item_id: 1,
            evidence: vec![2],
            ..Default::default()
        }
        .encode_to_vec();
        body.extend_from_slice(&[0x4a, 1, 3, 0x48, 4, 0x4a, 2, 5, 6]);
        let mut bytes = Vec::new();
        encoding::bytes::encode(5, &body, &mut bytes);
        let generic = RankRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(generic.candidates[0].evidence, [2, 3, 4, 5, 6]);
        let mut got = RankRequest::decode_rows(bytes.as_slice()).unwrap();
        assert_eq!(
            got.candidates[0].evidence,
            [4, 5, 6],
            "its own, after the held"
        );
        assert_eq!(got, generic);
        assert_eq!(got.take_evidence().of(0), [2, 3]);

        // A malformed run is refused as prost refuses it.
        let mut bad = Vec::new();
        encoding::bytes::encode(5, &vec![0x4a, 2, 0x80, 0x80], &mut bad);
        assert_eq!(
            RankRequest::decode_rows(bad.as_slice())
                .unwrap_err()
                .to_string(),
            RankRequest::decode(bad.as_slice()).unwrap_err().to_string()
        );
    }

    #[test]
    fn malformed_packed_floats_are_refused() {
        // Field 8, length 5: not a whole number of floats.
        let ragged = [0x42, 5, 0, 0, 128, 63, 0];
        assert!(Candidate::decode(&ragged[..]).is_err());
        // Length 8 with 4 bytes left.
        let short = [0x42, 8, 0, 0, 128, 63];
        assert!(Candidate::decode(&short[..]).is_err());
    }
}
