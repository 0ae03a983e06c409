//! The Rank request into the engine's call, and the engine's outcome back into the answer.
//! Each candidate is checked, completed from the catalog and its embedding row written into
//! the request's one matrix in a single pass.

use std::mem;

use ndarray::Array2;

use super::{
    MAX_NAME_BYTES, MAX_UTC_OFFSET_MINUTES, dimension, dimensions, finite_non_negative, lifecycle,
    max_bytes, user_id,
};
use crate::catalog::{Catalog, Item};
use crate::config::Limits;
use crate::engine::{Degraded, Outcome, RankCall};
use crate::grpc::error::ApiError;
use crate::pb;
use crate::rank::{
    Candidate, DimensionSet, DiversityRequest, DropRule, Locale, Method, RankInput, ReasonCode,
    kernel,
};

/// Bytes of a request's `request_id`, echoed in the answer: an id, not a payload.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// Bytes of a candidate's `title` and `anchor_title` (as for the catalog's titles).
pub const MAX_TITLE_BYTES: usize = crate::catalog::MAX_TITLE_BYTES;
/// Bytes of a request's `policy` name and `context.locale` tag.
pub const MAX_TAG_BYTES: usize = 64;
/// The largest magnitude of an embedding value ([`crate::rank::MAX_EMBEDDING_VALUE`]).
pub const MAX_EMBEDDING_VALUE: f32 = crate::rank::MAX_EMBEDDING_VALUE;

/// The `request_id` rule: echoed in the answer, so bounded.
pub fn request_id(id: &str) -> Result<(), ApiError> {
    max_bytes(id, MAX_REQUEST_ID_BYTES, || "request_id".into())
}

/// The embedding length of a Rank request, and the candidate that set it.
#[derive(Debug, Clone, Copy)]
struct Width {
    len: usize,
    index: usize,
    from_catalog: bool,
}

impl Width {
    /// Why an embedding of `len` values (the request's own, or else the catalog's for `item`)
    /// cannot join this request's.
    fn conflict(self, len: usize, from_catalog: bool, item: u64) -> String {
        let first = if self.from_catalog {
            format!("the catalog's embedding of candidates[{}]", self.index)
        } else {
            format!("candidates[{}]", self.index)
        };
        let this = if from_catalog {
            format!("is empty, and the catalog's embedding of item {item} has {len} values")
        } else {
            format!("has {len} values")
        };
        format!(
            "{this} but {first} has {}: the embeddings of a request, its own and the \
             catalog's (catalog.dim), have one length",
            self.len
        )
    }
}

/// Takes from the catalog's item every attribute the request left at its zero value.
fn fill_from_catalog(c: &mut Candidate, item: &Item) {
    item.fill_unset(
        &mut c.category_id,
        &mut c.brand_id,
        &mut c.shop_id,
        &mut c.price,
    );
    if c.popularity == 0.0 {
        c.popularity = item.popularity;
    }
}

/// Validates a Rank request and builds the engine's call, without a catalog. `now_ms` is the
/// server's clock, used when the request's context carries none.
pub fn rank_call(
    req: pb::RankRequest,
    limits: &Limits,
    now_ms: i64,
    caller_timeout: Option<std::time::Duration>,
) -> Result<RankCall, ApiError> {
    rank_call_with_catalog(req, limits, None, now_ms, caller_timeout)
}

/// [`rank_call`], filling candidates from the item catalog: each candidate is looked up once,
/// and every attribute the request leaves at its zero value (category, brand, shop, price,
/// popularity, embedding) is taken from the catalog's item, so what the request carries wins
/// field by field. (Protobuf cannot tell an unset field from a zero one, so a price of 0
/// cannot override a cached price.) An item the catalog does not hold is ranked with what the
/// request has. The core reads titles only as anchors ("because you viewed X"), so the
/// catalog's titles name the anchor of a candidate that gives `anchor_item_id` without
/// `anchor_title` (one more lookup, for those candidates only).
///
/// Embeddings: a request's candidates either all have one (inline or cached) and the request
/// is ranked with them, or the request is ranked without embeddings (similarity then comes
/// from category, brand and shop for every candidate; counted in
/// `tactful_catalog_partial_embeddings_total`). Treating the missing rows as zero vectors was
/// not chosen: a zero vector is "unlike everything", which would lift the items nobody
/// described above the others and give DPP a direction it can never pick. While the catalog
/// cannot supply embeddings (empty, or `catalog.dim` = 0), a request's embeddings must be all
/// or none, as they always had to be: a missing one can only be the client's mistake. Inline
/// and cached embeddings of different lengths in one request are INVALID_ARGUMENT.
///
/// One pass over the candidates: each is checked, completed from the catalog, and its row
/// written into the request's matrix as it is checked ([`Rows`]); item ids are checked for
/// duplicates once, by sorting ([`duplicate_id`]). A rejection names the first rule broken, in
/// the order of [`candidate`], [`Rows::add`], then duplicates.
pub fn rank_call_with_catalog(
    mut req: pb::RankRequest,
    limits: &Limits,
    catalog: Option<&Catalog>,
    now_ms: i64,
    caller_timeout: Option<std::time::Duration>,
) -> Result<RankCall, ApiError> {
    user_id(&req.user_id, "user_id", limits)?;
    request_id(&req.request_id)?;
    let n = req.candidates.len();
    if n > limits.max_candidates {
        return Err(ApiError::invalid(
            "candidates",
            format!("{n} candidates, the maximum is {}", limits.max_candidates),
        ));
    }
    if req.k as usize > limits.max_k {
        return Err(ApiError::invalid(
            "k",
            format!("{} is above the maximum of {}", req.k, limits.max_k),
        ));
    }
    max_bytes(&req.surface, MAX_NAME_BYTES, || "surface".into())?;
    max_bytes(&req.policy, MAX_TAG_BYTES, || "policy".into())?;
    let mut context = req.context.take().unwrap_or_default();
    check_context(&context)?;
    let consent = req.consent.take().unwrap_or_default();
    let mut denied = DimensionSet::EMPTY;
    for (i, &d) in consent.denied.iter().enumerate() {
        denied.insert(dimension(d, || format!("consent.denied[{i}]"))?);
    }

    // Lookups are skipped while the catalog is empty: a server without one pays nothing.
    let catalog = catalog.filter(|c| !c.is_empty());
    let decoded = req.take_rows();
    let evidence = req.take_evidence();
    let mut rows = Rows::new(
        n,
        catalog.is_some_and(Catalog::supplies_embeddings),
        match &decoded {
            Some(m) => m.width,
            None => req.candidates.first().map_or(0, embedding_len),
        },
        limits.max_embedding_dim,
    );
    if let Some(m) = decoded {
        rows.decoded(m);
    }
    let (mut hits, mut misses) = (0, 0);
    let mut candidates = Vec::with_capacity(n);
    for (i, c) in req.candidates.iter_mut().enumerate() {
        let mut candidate = candidate(i, c, evidence.of(i))?;
        {
            // Holds the item's shard for reading until the end of this block: no other
            // lookup may happen inside it.
            let cached = catalog.and_then(|catalog| catalog.get(c.item_id));
            match &cached {
                Some(item) => {
                    hits += 1;
                    fill_from_catalog(&mut candidate, item);
                }
                None if catalog.is_some() => misses += 1,
                None => {}
            }
            rows.add(i, c, cached.as_deref())?;
        }
        if candidate.anchor_item_id != 0
            && candidate.anchor_title.is_empty()
            && let Some(title) = catalog.and_then(|c| c.title_of(candidate.anchor_item_id))
        {
            candidate.anchor_title = title;
        }
        candidates.push(candidate);
    }
    duplicate_id(&candidates)?;
    if let Some(catalog) = catalog {
        catalog.count_lookups(hits, misses, rows.partial());
    }
    let diversity = diversity_request(req.diversity.take().unwrap_or_default())?;
    Ok(RankCall {
        user_id: req.user_id,
        policy: req.policy,
        input: RankInput {
            candidates,
            embeddings: rows.into_matrix()?,
            k: req.k as usize,
            explain: req.explain,
            locale: Locale::from_tag(&context.locale),
            now_ms: if context.now_ms > 0 {
                context.now_ms
            } else {
                now_ms
            },
            surface: req.surface,
            region: mem::take(&mut context.region),
            utc_offset_minutes: context.utc_offset_minutes,
            diversity,
        },
        denied,
        personalization_off: consent.personalization_off,
        caller_timeout,
        strict: req.strict,
    })
}

fn check_context(context: &pb::Context) -> Result<(), ApiError> {
    if context.now_ms < 0 {
        return Err(ApiError::invalid("context.now_ms", "must not be negative"));
    }
    max_bytes(&context.region, MAX_NAME_BYTES, || "context.region".into())?;
    max_bytes(&context.locale, MAX_TAG_BYTES, || "context.locale".into())?;
    if !(-MAX_UTC_OFFSET_MINUTES..=MAX_UTC_OFFSET_MINUTES).contains(&context.utc_offset_minutes) {
        return Err(ApiError::invalid(
            "context.utc_offset_minutes",
            format!(
                "{} is not a UTC offset: it must be within ±{MAX_UTC_OFFSET_MINUTES} minutes",
                context.utc_offset_minutes
            ),
        ));
    }
    if let Some(loc) = &context.location {
        let ok =
            (-90.0..=90.0).contains(&loc.latitude) && (-180.0..=180.0).contains(&loc.longitude);
        if !ok {
            return Err(ApiError::invalid(
                "context.location",
                "latitude must be within ±90 and longitude within ±180",
            ));
        }
    }
    Ok(())
}

/// Candidate `i`'s own fields, checked, as the core's candidate (its titles moved, not
/// copied); its evidence is `held` (what decoding held apart, [`pb::bulk::DecodedEvidence`])
/// followed by its own. Its embedding is [`Rows::add`]'s.
fn candidate(i: usize, c: &mut pb::Candidate, held: &[i32]) -> Result<Candidate, ApiError> {
    let field = |name: &str| format!("candidates[{i}].{name}");
    if c.item_id == 0 {
        return Err(ApiError::invalid(
            field("item_id"),
            "is required (0 is not an item id)",
        ));
    }
    if !c.score.is_finite() {
        return Err(ApiError::invalid(field("score"), "must be a finite number"));
    }
    if !finite_non_negative(c.price) {
        return Err(not_finite_non_negative(field("price")));
    }
    if !finite_non_negative(c.popularity) {
        return Err(not_finite_non_negative(field("popularity")));
    }
    if c.cross_platform_seen_ms < 0 {
        return Err(ApiError::invalid(
            field("cross_platform_seen_ms"),
            "must not be negative (0 = unknown)",
        ));
    }
    max_bytes(&c.title, MAX_TITLE_BYTES, || field("title"))?;
    max_bytes(&c.anchor_title, MAX_TITLE_BYTES, || field("anchor_title"))?;
    let mut evidence = DimensionSet::EMPTY;
    add_evidence(&mut evidence, i, 0, held)?;
    add_evidence(&mut evidence, i, held.len(), &c.evidence)?;
    Ok(Candidate {
        item_id: c.item_id,
        score: c.score,
        category_id: c.category_id,
        brand_id: c.brand_id,
        shop_id: c.shop_id,
        price: c.price,
        popularity: c.popularity,
        evidence,
        sponsored: c.sponsored,
        title: mem::take(&mut c.title),
        anchor_item_id: c.anchor_item_id,
        anchor_title: mem::take(&mut c.anchor_title),
        cross_platform_seen_ms: c.cross_platform_seen_ms,
    })
}

/// Adds candidate `i`'s evidence `values` to `set`, the first being its `evidence[first]`.
#[inline(always)]
fn add_evidence(
    set: &mut DimensionSet,
    i: usize,
    first: usize,
    values: &[i32],
) -> Result<(), ApiError> {
    for (j, &d) in values.iter().enumerate() {
        set.insert(dimension(d, || {
            format!("candidates[{i}].evidence[{}]", first + j)
        })?);
    }
    Ok(())
}

#[cold]
fn not_finite_non_negative(field: String) -> ApiError {
    ApiError::invalid(field, "must be a finite number >= 0")
}

/// The first candidate whose item id an earlier one already has, naming both. Sorting the
/// (id, index) pairs costs less than hashing each id, and no choice of ids can make it slow.
fn duplicate_id(candidates: &[Candidate]) -> Result<(), ApiError> {
    let mut ids: Vec<(u64, u32)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.item_id, i as u32))
        .collect();
    ids.sort_unstable();
    // In each run of one id, the second entry is its first repeat; the earliest repeat of
    // all is the one a scan in order meets first.
    let first_repeat = ids
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .min_by_key(|w| w[1].1);
    match first_repeat {
        Some(w) => Err(ApiError::invalid(
            format!("candidates[{}].item_id", w[1].1),
            format!("{} duplicates candidates[{}]", w[0].0, w[0].1),
        )),
        None => Ok(()),
    }
}

/// How many values a candidate's own embedding has, in whichever form it came.
fn embedding_len(c: &pb::Candidate) -> usize {
    if c.embedding_f32le.is_empty() {
        c.embedding.len()
    } else {
        c.embedding_f32le.len() / 4
    }
}

/// A candidate's own embedding, in the form it came in.
#[derive(Clone, Copy)]
enum Own<'a> {
    None,
    Floats(&'a [f32]),
    /// Little-endian float32, a multiple of 4 bytes.
    Bytes(&'a [u8]),
}

impl Own<'_> {
    fn len(self) -> usize {
        match self {
            Own::None => 0,
            Own::Floats(v) => v.len(),
            Own::Bytes(b) => b.len() / 4,
        }
    }

    fn field(self) -> &'static str {
        match self {
            Own::Bytes(_) => "embedding_f32le",
            _ => "embedding",
        }
    }
}

/// The request's embedding matrix, written row by row as the candidates are checked: each
/// candidate's own values are checked (finite, within ±[`MAX_EMBEDDING_VALUE`]) in the same
/// pass that copies them, and the catalog's rows (checked when they were upserted) are copied.
struct Rows {
    flat: Vec<f32>,
    /// The request's embedding length, from the first candidate that had one.
    width: Option<Width>,
    /// Rows of the leading candidates that all had an embedding; once one has none, the
    /// request will be ranked without, and nothing more is copied.
    rows: usize,
    n: usize,
    /// The catalog can supply embeddings; without it every candidate has candidates[0]'s
    /// length.
    cached: bool,
    first_len: usize,
    max_dim: usize,
    /// Every candidate's own row is already in `flat`, as the request was decoded
    /// ([`pb::bulk::DecodedRows`]), sent in this field: rows are checked where they are, not
    /// copied.
    in_place: Option<&'static str>,
    /// The rows in place are all within the bound, checked in one pass over the matrix (a
    /// hundred short calls cost four times as much); otherwise each is checked as it comes,
    /// to name the first value at fault.
    in_place_in_bound: bool,
}

impl Rows {
    fn new(n: usize, cached: bool, first_len: usize, max_dim: usize) -> Self {
        Self {
            flat: Vec::new(),
            width: None,
            rows: 0,
            n,
            cached,
            first_len,
            max_dim,
            in_place: None,
            in_place_in_bound: false,
        }
    }

    /// The candidates' rows as the request was decoded: `n` rows of `width` values.
    fn decoded(&mut self, m: pb::bulk::Matrix) {
        debug_assert_eq!(m.flat.len(), self.n * m.width);
        self.in_place_in_bound = all_in_bound(&m.flat);
        self.flat = m.flat;
        self.in_place = Some(m.field);
    }

    /// [`Rows::add`] for a row already in place: every candidate has its own, of one length,
    /// so only the length's limit and the values' bound are left to check.
    fn check_in_place(&mut self, i: usize, field: &str) -> Result<(), ApiError> {
        let len = self.first_len;
        if len > self.max_dim {
            return Err(ApiError::invalid(
                format!("candidates[{i}].{field}"),
                format!("has {len} values, the maximum is {}", self.max_dim),
            ));
        }
        self.width.get_or_insert(Width {
            len,
            index: i,
            from_catalog: false,
        });
        let row = &self.flat[i * len..(i + 1) * len];
        if !self.in_place_in_bound && !all_in_bound(row) {
            let j = row.iter().position(|x| !in_bound(*x)).unwrap_or(0);
            return Err(out_of_bound(i, field, j));
        }
        self.rows += 1;
        Ok(())
    }

    /// Checks candidate `i`'s embedding (its own, else the catalog's `item`'s) and writes its
    /// row while the rows so far are complete.
    fn add(&mut self, i: usize, c: &pb::Candidate, item: Option<&Item>) -> Result<(), ApiError> {
        if let Some(field) = self.in_place {
            return self.check_in_place(i, field);
        }
        let own = match (c.embedding.is_empty(), c.embedding_f32le.is_empty()) {
            (true, true) => Own::None,
            (false, true) => Own::Floats(&c.embedding),
            (true, false) => Own::Bytes(&c.embedding_f32le),
            (false, false) => {
                return Err(ApiError::invalid(
                    format!("candidates[{i}].embedding_f32le"),
                    "set embedding or embedding_f32le, not both",
                ));
            }
        };
        let field = || format!("candidates[{i}].{}", own.field());
        if let Own::Bytes(b) = own
            && !b.len().is_multiple_of(4)
        {
            return Err(ApiError::invalid(
                field(),
                format!(
                    "is {} bytes, not a whole number of little-endian float32 values (4 bytes each)",
                    b.len()
                ),
            ));
        }
        let len = own.len();
        if len > self.max_dim {
            return Err(ApiError::invalid(
                field(),
                format!("has {len} values, the maximum is {}", self.max_dim),
            ));
        }
        if !self.cached && len != self.first_len {
            return Err(ApiError::invalid(
                field(),
                format!(
                    "has {len} values but candidates[0] has {}: all embeddings of a request have \
                     the same length, or none has one",
                    self.first_len
                ),
            ));
        }
        let (row_len, from_catalog) = match item {
            _ if len > 0 => (len, false),
            Some(item) => (item.embedding.len(), true),
            None => (0, false),
        };
        if row_len > 0 {
            match self.width {
                None => {
                    self.width = Some(Width {
                        len: row_len,
                        index: i,
                        from_catalog,
                    });
                    if i == 0 {
                        self.flat.reserve_exact(self.n * row_len);
                    }
                }
                Some(w) if w.len != row_len => {
                    return Err(ApiError::invalid(
                        format!("candidates[{i}].embedding"),
                        w.conflict(row_len, from_catalog, c.item_id),
                    ));
                }
                Some(_) => {}
            }
        }
        let copy = row_len > 0 && self.rows == i;
        let start = self.flat.len();
        let in_bounds = match own {
            Own::None => {
                if copy && let Some(item) = item {
                    self.flat.extend_from_slice(&item.embedding);
                }
                true
            }
            // Copied, then checked while the row is in cache: two tight loops the compiler
            // vectorises, where one loop doing both stayed scalar.
            Own::Floats(v) if copy => {
                self.flat.extend_from_slice(v);
                all_in_bound(&self.flat[start..])
            }
            Own::Bytes(b) if copy => {
                pb::bulk::extend_f32le(&mut self.flat, b);
                all_in_bound(&self.flat[start..])
            }
            Own::Floats(v) => all_in_bound(v),
            Own::Bytes(b) => f32le(b).fold(true, |ok, x| ok & in_bound(x)),
        };
        if !in_bounds {
            let j = match own {
                Own::Bytes(b) => f32le(b).position(|x| !in_bound(x)),
                _ => c.embedding.iter().position(|x| !in_bound(*x)),
            }
            .unwrap_or(0);
            self.flat.truncate(start);
            return Err(out_of_bound(i, own.field(), j));
        }
        if copy {
            self.rows += 1;
        }
        Ok(())
    }

    /// Some candidates had an embedding and others none: the request ranks without.
    fn partial(&self) -> bool {
        self.width.is_some() && self.rows < self.n
    }

    /// The matrix, when every candidate had a row.
    fn into_matrix(self) -> Result<Option<Array2<f32>>, ApiError> {
        match self.width {
            Some(w) if self.rows == self.n => Array2::from_shape_vec((self.n, w.len), self.flat)
                .map(Some)
                .map_err(|e| ApiError::invalid("candidates", format!("embeddings: {e}"))),
            _ => Ok(None),
        }
    }
}

/// Value `j` of candidate `i`'s embedding (in `field`) is not a finite number within the bound.
fn out_of_bound(i: usize, field: &str, j: usize) -> ApiError {
    ApiError::invalid(
        format!("candidates[{i}].{field}[{j}]"),
        format!("must be a finite number within ±{MAX_EMBEDDING_VALUE:e}"),
    )
}

/// Within the bound (which no NaN or infinity is).
fn in_bound(x: f32) -> bool {
    x.abs() <= MAX_EMBEDDING_VALUE
}

/// The little-endian float32 values of `bytes`.
fn f32le(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Every value within the bound ([`kernel::all_within`]: vector compares, no early exit).
fn all_in_bound(values: &[f32]) -> bool {
    kernel::all_within(values, MAX_EMBEDDING_VALUE)
}

/// How many of the answer's items a Rank request asks to record as shown (0: none).
pub fn shown_to_record(req: &pb::RankRequest) -> Result<usize, ApiError> {
    match (req.shown, req.all_shown) {
        (0, false) => Ok(0),
        (n, false) => Ok(n as usize),
        (0, true) => Ok(usize::MAX),
        (_, true) => Err(ApiError::invalid(
            "shown",
            "set shown or all_shown, not both",
        )),
    }
}

/// The request's diversity adjustments, checked against their bounds.
fn diversity_request(d: pb::DiversityOptions) -> Result<DiversityRequest, ApiError> {
    let method = match pb::DiversityMethod::try_from(d.method) {
        Ok(pb::DiversityMethod::Unspecified) => None,
        Ok(pb::DiversityMethod::Mmr) => Some(Method::Mmr),
        Ok(pb::DiversityMethod::Dpp) => Some(Method::Dpp),
        Ok(pb::DiversityMethod::Score) => Some(Method::Score),
        Err(_) => {
            return Err(ApiError::invalid(
                "diversity.method",
                format!("{} is not a DiversityMethod", d.method),
            ));
        }
    };
    let request = DiversityRequest {
        method,
        weight: d.weight,
        exploration_share: d.exploration_share,
        calibration: d.calibration,
        long_tail: d.long_tail,
    };
    request
        .check()
        .map_err(|(field, message)| ApiError::invalid(format!("diversity.{field}"), message))?;
    Ok(request)
}

fn reason_code(code: ReasonCode) -> pb::ReasonCode {
    use pb::ReasonCode as P;
    match code {
        ReasonCode::Relevant => P::Relevant,
        ReasonCode::BecauseYouViewed => P::BecauseYouViewed,
        ReasonCode::BecauseYouFavorited => P::BecauseYouFavorited,
        ReasonCode::BecauseYouCarted => P::BecauseYouCarted,
        ReasonCode::BecauseYouBought => P::BecauseYouBought,
        ReasonCode::BecauseYouSearched => P::BecauseYouSearched,
        ReasonCode::BasedOnActivity => P::BasedOnActivity,
        ReasonCode::Trending => P::Trending,
        ReasonCode::Editorial => P::Editorial,
        ReasonCode::Diversity => P::Diversity,
        ReasonCode::Upstream => P::Upstream,
        ReasonCode::Nearby => P::Nearby,
        ReasonCode::Social => P::Social,
        ReasonCode::Complement => P::Complement,
        ReasonCode::Interest => P::Interest,
        ReasonCode::Context => P::Context,
        ReasonCode::Exploration => P::Exploration,
    }
}

fn drop_rule(rule: DropRule) -> pb::DropRule {
    match rule {
        DropRule::NotInterested => pb::DropRule::NotInterested,
        DropRule::BlockedBrand => pb::DropRule::BlockedBrand,
        DropRule::BlockedShop => pb::DropRule::BlockedShop,
        DropRule::Consent => pb::DropRule::Consent,
        DropRule::FrequencyCap => pb::DropRule::FrequencyCap,
        DropRule::CoolingOff => pb::DropRule::CoolingOff,
        DropRule::Sensitive => pb::DropRule::Sensitive,
        DropRule::Overload => pb::DropRule::Overload,
    }
}

fn degraded_reason(d: Degraded) -> pb::DegradedReason {
    match d {
        Degraded::Deadline => pb::DegradedReason::Deadline,
        Degraded::Budget => pb::DegradedReason::Budget,
        Degraded::Overload => pb::DegradedReason::Overload,
        Degraded::Internal => pb::DegradedReason::Internal,
        Degraded::State => pb::DegradedReason::State,
    }
}

pub fn rank_response(outcome: Outcome, request_id: String) -> pb::RankResponse {
    let r = outcome.ranking;
    pb::RankResponse {
        items: r
            .items
            .into_iter()
            .map(|item| pb::RankedItem {
                item_id: item.item_id,
                score: item.score,
                upstream_position: item.index as u32,
                reason: Some(pb::Reason {
                    code: reason_code(item.reason.code).into(),
                    text: item.reason.text,
                    dimensions: dimensions(item.reason.dimensions),
                }),
                breakdown: item
                    .breakdown
                    .into_iter()
                    .map(|(c, value)| pb::ScoreComponent {
                        name: c.name().to_owned(),
                        value,
                    })
                    .collect(),
            })
            .collect(),
        dropped: r
            .dropped
            .into_iter()
            .map(|d| pb::DroppedItem {
                item_id: d.item_id,
                rule: drop_rule(d.rule).into(),
                detail: d.detail,
            })
            .collect(),
        degraded: outcome.degraded.is_some(),
        degraded_reason: outcome
            .degraded
            .map_or(pb::DegradedReason::Unspecified, degraded_reason)
            .into(),
        suggested_k: r.suggested_k as u32,
        lifecycle_stage: lifecycle(r.lifecycle).into(),
        policy_version: outcome.policy_version,
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ItemFields;
    use crate::rank::DataDimension;

    fn request(candidates: Vec<pb::Candidate>) -> pb::RankRequest {
        pb::RankRequest {
            user_id: "u".into(),
            candidates,
            ..Default::default()
        }
    }

    fn candidate(item_id: u64, score: f32) -> pb::Candidate {
        pb::Candidate {
            item_id,
            score,
            ..Default::default()
        }
    }

    fn field_of(req: pb::RankRequest) -> String {
        match rank_call(req, &Limits::default(), 1, None) {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn evidence_held_apart_converts_and_is_refused_as_evidence_in_the_candidate() {
        use prost::Message;
        let mut req = request(
            (1..=4)
                .map(|i| pb::Candidate {
                    evidence: (1..=i as i32).collect(),
                    ..candidate(i, 1.0 / i as f32)
                })
                .collect(),
        );
        let both = |req: &pb::RankRequest| {
            let bytes = req.encode_to_vec();
            [
                pb::RankRequest::decode(bytes.as_slice()).unwrap(),
                pb::RankRequest::decode_rows(bytes.as_slice()).unwrap(),
            ]
            .map(|r| rank_call(r, &Limits::default(), 1, None))
        };
        let [a, b] = both(&req);
        let (a, b) = (a.unwrap().input, b.unwrap().input);
        assert_eq!(a.candidates, b.candidates);
        assert_eq!(b.candidates[3].evidence.len(), 4);
        // The first value at fault is named, in a run held apart or in one that is not.
        req.candidates[2].evidence[1] = 11;
        for got in both(&req) {
            match got {
                Err(ApiError::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "candidates[2].evidence[1]")
                }
                other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
            }
        }
        // Held apart [1], then the candidate's own unpacked value 0: index 1 either way.
        let mut body = candidate(9, 0.5).encode_to_vec();
        body.extend_from_slice(&[0x4a, 1, 1, 0x48, 0]);
        let mut bytes = Vec::new();
        prost::encoding::bytes::encode(5, &body, &mut bytes);
        prost::encoding::string::encode(1, &"u".to_owned(), &mut bytes);
        for r in [
            pb::RankRequest::decode(bytes.as_slice()).unwrap(),
            pb::RankRequest::decode_rows(bytes.as_slice()).unwrap(),
        ] {
            assert_eq!(field_of(r), "candidates[0].evidence[1]");
        }
    }

    #[test]
    fn rows_decoded_in_place_convert_as_rows_decoded_per_candidate() {
        use prost::Message;
        let mut req = request(
            (0..6)
                .map(|i| pb::Candidate {
                    embedding: (0..8).map(|j| (i * 8 + j) as f32 / 100.0).collect(),
                    ..candidate(i as u64 + 1, 1.0 - i as f32 / 10.0)
                })
                .collect(),
        );
        // Each request as floats and in the bytes form, each decoded both ways.
        let both = |req: &pb::RankRequest, limits: &Limits| {
            let mut as_bytes = req.clone();
            as_bytes
                .candidates
                .iter_mut()
                .for_each(pb::Candidate::use_embedding_bytes);
            [req.encode_to_vec(), as_bytes.encode_to_vec()].map(|bytes| {
                let per_candidate = pb::RankRequest::decode(bytes.as_slice()).unwrap();
                let in_place = pb::RankRequest::decode_rows(bytes.as_slice()).unwrap();
                assert!(
                    in_place
                        .candidates
                        .iter()
                        .all(|c| c.embedding.is_empty() && c.embedding_f32le.is_empty())
                );
                [per_candidate, in_place].map(|r| rank_call(r, limits, 1, None))
            })
        };
        let [[a, b], [c, d]] = both(&req, &Limits::default());
        let a = a.unwrap().input;
        assert!(a.embeddings.is_some());
        for other in [b, c, d] {
            let other = other.unwrap().input;
            assert_eq!(a.candidates, other.candidates);
            assert_eq!(a.embeddings, other.embeddings);
        }
        // The same rule, naming the same field.
        req.candidates[3].embedding[5] = f32::NAN;
        let small = Limits {
            max_embedding_dim: 4,
            ..Limits::default()
        };
        for (limits, field) in [
            (Limits::default(), "candidates[3].{}[5]"),
            (small, "candidates[0].{}"),
        ] {
            for (got, form) in both(&req, &limits)
                .into_iter()
                .zip(["embedding", "embedding_f32le"])
            {
                for got in got {
                    match got {
                        Err(ApiError::InvalidArgument { field: f, .. }) => {
                            assert_eq!(f, field.replace("{}", form))
                        }
                        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
                    }
                }
            }
        }
        // A rule of a candidate before the bad row still comes first.
        req.candidates[1].score = f32::INFINITY;
        for got in both(&req, &Limits::default()).into_iter().flatten() {
            assert!(
                matches!(got, Err(ApiError::InvalidArgument { field, .. }) if field == "candidates[1].score")
            );
        }
    }

    #[test]
    fn every_rule_names_its_field() {
        assert_eq!(field_of(pb::RankRequest::default()), "user_id");
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), candidate(2, f32::NAN)])),
            "candidates[1].score"
        );
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), candidate(1, 2.0)])),
            "candidates[1].item_id"
        );
        let mut c = candidate(1, 1.0);
        c.price = f32::INFINITY;
        assert_eq!(field_of(request(vec![c])), "candidates[0].price");
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 0.0];
        let mut b = candidate(2, 1.0);
        b.embedding = vec![1.0];
        assert_eq!(
            field_of(request(vec![a.clone(), b])),
            "candidates[1].embedding"
        );
        let mut nan = candidate(3, 1.0);
        nan.embedding = vec![0.0, f32::NAN];
        assert_eq!(
            field_of(request(vec![a, nan])),
            "candidates[1].embedding[1]"
        );
        let mut e = candidate(1, 1.0);
        e.evidence = vec![0];
        assert_eq!(field_of(request(vec![e])), "candidates[0].evidence[0]");
        let mut big = request(vec![]);
        big.k = 1001;
        assert_eq!(field_of(big), "k");
        let many = request((1..=5001).map(|i| candidate(i, 0.0)).collect());
        assert_eq!(field_of(many), "candidates");
    }

    #[test]
    fn every_avoidance_rule_names_its_field() {
        let mut r = request(vec![candidate(1, 1.0)]);
        r.surface = "s".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(field_of(r), "surface");
        let with_context = |context: pb::Context| pb::RankRequest {
            context: Some(context),
            ..request(vec![candidate(1, 1.0)])
        };
        assert_eq!(
            field_of(with_context(pb::Context {
                region: "r".repeat(MAX_NAME_BYTES + 1),
                ..Default::default()
            })),
            "context.region"
        );
        for offset in [841, -841, i32::MIN] {
            assert_eq!(
                field_of(with_context(pb::Context {
                    utc_offset_minutes: offset,
                    ..Default::default()
                })),
                "context.utc_offset_minutes"
            );
        }
        let mut c = candidate(2, 1.0);
        c.cross_platform_seen_ms = -1;
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), c])),
            "candidates[1].cross_platform_seen_ms"
        );
    }

    #[test]
    fn a_valid_request_becomes_one_embedding_matrix() {
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 2.0];
        a.title = "phone".into();
        let mut b = candidate(2, 0.5);
        b.embedding = vec![3.0, 4.0];
        b.evidence = vec![pb::DataDimension::Browsing as i32];
        let call = rank_call(request(vec![a, b]), &Limits::default(), 77, None).unwrap();
        let e = call.input.embeddings.unwrap();
        assert_eq!(e.shape(), &[2, 2]);
        assert_eq!(e[[1, 0]], 3.0);
        assert_eq!(call.input.now_ms, 77);
        assert_eq!(call.input.candidates[0].title, "phone");
        assert!(
            call.input.candidates[1]
                .evidence
                .contains(DataDimension::Browsing)
        );
    }

    /// A catalog of 2-dim items: 1 a phone, 2 a case.
    fn shop_catalog() -> Catalog {
        let catalog = Catalog::new(10, 2);
        let phone = ItemFields {
            item_id: 1,
            category_id: 10,
            brand_id: 7,
            shop_id: 70,
            price: 699.0,
            popularity: 3.0,
            embedding: vec![1.0, 0.0],
            title: "Nova X phone".into(),
            ..Default::default()
        };
        let case = ItemFields {
            item_id: 2,
            category_id: 13,
            embedding: vec![0.0, 1.0],
            ..Default::default()
        };
        let changes = vec![catalog.check(phone).unwrap(), catalog.check(case).unwrap()];
        catalog.apply(changes).unwrap();
        catalog
    }

    fn call_with(catalog: &Catalog, candidates: Vec<pb::Candidate>) -> Result<RankCall, ApiError> {
        rank_call_with_catalog(
            request(candidates),
            &Limits::default(),
            Some(catalog),
            1,
            None,
        )
    }

    #[test]
    fn ids_and_scores_are_filled_from_the_catalog() {
        let catalog = shop_catalog();
        let call = call_with(&catalog, vec![candidate(1, 0.9), candidate(2, 0.8)]).unwrap();
        let phone = &call.input.candidates[0];
        assert_eq!(
            (phone.category_id, phone.brand_id, phone.shop_id),
            (10, 7, 70)
        );
        assert_eq!((phone.price, phone.popularity), (699.0, 3.0));
        let e = call.input.embeddings.unwrap();
        assert_eq!(e.shape(), &[2, 2]);
        assert_eq!(e.row(0).to_vec(), vec![1.0, 0.0]);
        assert_eq!(e.row(1).to_vec(), vec![0.0, 1.0]);
        let s = catalog.stats();
        assert_eq!((s.hits, s.misses, s.partial_embeddings), (2, 0, 0));
    }

    #[test]
    fn what_the_request_carries_wins_field_by_field() {
        let catalog = shop_catalog();
        let mut own = candidate(1, 0.9);
        own.brand_id = 5;
        own.price = 10.0;
        own.embedding = vec![0.6, 0.8];
        let call = call_with(&catalog, vec![own, candidate(2, 0.8)]).unwrap();
        let phone = &call.input.candidates[0];
        assert_eq!(
            (phone.category_id, phone.brand_id, phone.shop_id),
            (10, 5, 70)
        );
        assert_eq!((phone.price, phone.popularity), (10.0, 3.0));
        let e = call.input.embeddings.unwrap();
        assert_eq!(e.row(0).to_vec(), vec![0.6, 0.8]);
        assert_eq!(e.row(1).to_vec(), vec![0.0, 1.0]);
    }

    #[test]
    fn unknown_items_rank_with_what_the_request_has_and_without_embeddings() {
        let catalog = shop_catalog();
        for order in [[1, 3, 2], [3, 1, 2]] {
            let candidates = order.iter().map(|&i| candidate(i, 0.5)).collect();
            let call = call_with(&catalog, candidates).unwrap();
            assert!(call.input.embeddings.is_none(), "{order:?}");
            let unknown = call
                .input
                .candidates
                .iter()
                .find(|c| c.item_id == 3)
                .unwrap();
            assert_eq!((unknown.category_id, unknown.price), (0, 0.0));
            let phone = call
                .input
                .candidates
                .iter()
                .find(|c| c.item_id == 1)
                .unwrap();
            assert_eq!(
                phone.category_id, 10,
                "attributes still come from the catalog"
            );
        }
        let s = catalog.stats();
        assert_eq!((s.hits, s.misses, s.partial_embeddings), (4, 2, 2));
        // An unknown item with its own embedding completes the matrix.
        let mut own = candidate(3, 0.5);
        own.embedding = vec![0.0, -1.0];
        let call = call_with(&catalog, vec![candidate(1, 0.9), own]).unwrap();
        assert_eq!(
            call.input.embeddings.unwrap().row(1).to_vec(),
            vec![0.0, -1.0]
        );
    }

    #[test]
    fn embeddings_of_two_lengths_are_refused_naming_the_candidate() {
        let catalog = shop_catalog();
        let mut long = candidate(3, 0.5);
        long.embedding = vec![1.0, 2.0, 3.0];
        let err = call_with(&catalog, vec![candidate(1, 0.9), long.clone()]).unwrap_err();
        let ApiError::InvalidArgument { field, message } = err else {
            panic!("{err:?}");
        };
        assert_eq!(field, "candidates[1].embedding");
        assert!(
            message.contains("the catalog's embedding of candidates[0]"),
            "{message}"
        );
        let err = call_with(&catalog, vec![long, candidate(2, 0.9)]).unwrap_err();
        let ApiError::InvalidArgument { field, message } = err else {
            panic!("{err:?}");
        };
        assert_eq!(field, "candidates[1].embedding");
        assert!(
            message.contains("catalog's embedding of item 2 has 2"),
            "{message}"
        );
    }

    #[test]
    fn a_catalog_without_embeddings_keeps_them_all_or_none() {
        let catalog = Catalog::new(10, 0);
        let item = ItemFields {
            item_id: 1,
            category_id: 4,
            ..Default::default()
        };
        catalog.apply(vec![catalog.check(item).unwrap()]).unwrap();
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 0.0];
        let err = call_with(&catalog, vec![a, candidate(2, 0.5)]).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "candidates[1].embedding")
        );
        let call = call_with(&catalog, vec![candidate(1, 1.0), candidate(2, 0.5)]).unwrap();
        assert_eq!(call.input.candidates[0].category_id, 4);
        assert!(call.input.embeddings.is_none());
    }

    #[test]
    fn an_anchor_without_a_title_is_named_from_the_catalog() {
        let catalog = shop_catalog();
        let mut case = candidate(2, 0.8);
        case.anchor_item_id = 1;
        let mut titled = candidate(3, 0.7);
        titled.anchor_item_id = 1;
        titled.anchor_title = "my phone".into();
        let mut unknown_anchor = candidate(4, 0.6);
        unknown_anchor.anchor_item_id = 99;
        let call = call_with(&catalog, vec![case, titled, unknown_anchor]).unwrap();
        let titles: Vec<&str> = call
            .input
            .candidates
            .iter()
            .map(|c| c.anchor_title.as_str())
            .collect();
        assert_eq!(titles, ["Nova X phone", "my phone", ""]);
    }

    #[test]
    fn surface_region_offset_and_cross_platform_time_reach_the_core() {
        let mut c = candidate(1, 1.0);
        c.cross_platform_seen_ms = 1234;
        let req = pb::RankRequest {
            surface: "post_purchase".into(),
            context: Some(pb::Context {
                region: "CN-31".into(),
                utc_offset_minutes: -840,
                ..Default::default()
            }),
            ..request(vec![c])
        };
        let call = rank_call(req, &Limits::default(), 1, None).unwrap();
        assert_eq!(call.input.surface, "post_purchase");
        assert_eq!(call.input.region, "CN-31");
        assert_eq!(call.input.utc_offset_minutes, -840);
        assert_eq!(call.input.candidates[0].cross_platform_seen_ms, 1234);
    }

    fn f32le(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn every_string_is_bounded_and_names_its_field() {
        assert_eq!(request_id(&"r".repeat(MAX_REQUEST_ID_BYTES)), Ok(()));
        assert!(matches!(
            request_id(&"r".repeat(MAX_REQUEST_ID_BYTES + 1)),
            Err(ApiError::InvalidArgument { ref field, .. }) if field == "request_id"
        ));
        let mut r = request(vec![candidate(1, 1.0)]);
        r.request_id = "r".repeat(1 << 20);
        assert_eq!(field_of(r), "request_id");
        let mut r = request(vec![candidate(1, 1.0)]);
        r.policy = "p".repeat(MAX_TAG_BYTES + 1);
        assert_eq!(field_of(r), "policy");
        let r = pb::RankRequest {
            context: Some(pb::Context {
                locale: "l".repeat(MAX_TAG_BYTES + 1),
                ..Default::default()
            }),
            ..request(vec![candidate(1, 1.0)])
        };
        assert_eq!(field_of(r), "context.locale");
        let mut titled = candidate(2, 1.0);
        titled.title = "t".repeat(MAX_TITLE_BYTES + 1);
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), titled])),
            "candidates[1].title"
        );
        let mut anchored = candidate(2, 1.0);
        anchored.anchor_title = "t".repeat(MAX_TITLE_BYTES + 1);
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), anchored])),
            "candidates[1].anchor_title"
        );
        let mut at_bounds = candidate(1, 1.0);
        at_bounds.title = "t".repeat(MAX_TITLE_BYTES);
        at_bounds.anchor_title = "t".repeat(MAX_TITLE_BYTES);
        let mut r = request(vec![at_bounds]);
        r.request_id = "r".repeat(MAX_REQUEST_ID_BYTES);
        r.context = Some(pb::Context {
            locale: "zh-Hant-TW".into(),
            ..Default::default()
        });
        assert!(rank_call(r, &Limits::default(), 1, None).is_ok());
    }

    #[test]
    fn extreme_embedding_values_are_refused_naming_the_value() {
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 0.0];
        for bad in [
            3.0e38,
            -3.0e38,
            MAX_EMBEDDING_VALUE * 1.5,
            f32::INFINITY,
            f32::NAN,
        ] {
            let mut b = candidate(2, 1.0);
            b.embedding = vec![0.5, bad];
            assert_eq!(
                field_of(request(vec![a.clone(), b])),
                "candidates[1].embedding[1]",
                "{bad}"
            );
            let mut b = candidate(2, 1.0);
            b.embedding_f32le = f32le(&[0.5, bad]);
            assert_eq!(
                field_of(request(vec![a.clone(), b])),
                "candidates[1].embedding_f32le[1]",
                "{bad}"
            );
        }
        let mut b = candidate(2, 1.0);
        b.embedding = vec![MAX_EMBEDDING_VALUE, -MAX_EMBEDDING_VALUE];
        assert!(rank_call(request(vec![a, b]), &Limits::default(), 1, None).is_ok());
    }

    #[test]
    fn the_bytes_form_ranks_as_the_float_form_and_not_both() {
        let rows = [[0.6f32, 0.8], [-1.0, 0.25]];
        let floats: Vec<pb::Candidate> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| pb::Candidate {
                embedding: r.to_vec(),
                ..candidate(i as u64 + 1, 1.0)
            })
            .collect();
        // One candidate in each form: a request may mix them.
        let mut mixed = floats.clone();
        mixed[1].embedding_f32le = f32le(&mixed[1].embedding);
        mixed[1].embedding.clear();
        let want = rank_call(request(floats), &Limits::default(), 1, None)
            .unwrap()
            .input
            .embeddings
            .unwrap();
        let got = rank_call(request(mixed.clone()), &Limits::default(), 1, None)
            .unwrap()
            .input
            .embeddings
            .unwrap();
        assert_eq!(got, want);

        let mut both = mixed.clone();
        both[1].embedding = rows[1].to_vec();
        assert_eq!(field_of(request(both)), "candidates[1].embedding_f32le");
        let mut ragged = mixed.clone();
        ragged[1].embedding_f32le.push(0);
        assert_eq!(field_of(request(ragged)), "candidates[1].embedding_f32le");
        let mut short = mixed;
        short[1].embedding_f32le.truncate(4);
        assert_eq!(field_of(request(short)), "candidates[1].embedding_f32le");
    }

    #[test]
    fn a_duplicate_names_its_first_repeat_and_the_original() {
        let ids = [5, 9, 7, 9, 5, 7];
        let req = request(ids.iter().map(|&id| candidate(id, 1.0)).collect());
        match rank_call(req, &Limits::default(), 1, None) {
            Err(ApiError::InvalidArgument { field, message }) => {
                assert_eq!(field, "candidates[3].item_id");
                assert!(message.contains("9 duplicates candidates[1]"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
