//! Draws what diversity selection does to one real user's feed: a MovieLens 100K user with a
//! strong genre preference, 200 candidates from a simple genre-based recommender, ranked by
//! relevance alone and by tactful's diversified selections, side by side with the diversity
//! metrics of each top 20.
//!
//! ```text
//! cargo run --release --example diversity_picture -- [DATA_DIR] [OUT.svg]
//! ```
//! Defaults: `../shared/data/movielens-100k` and `docs/diversity-movielens.svg`. Prints the
//! metrics as a Markdown table. The output is the same on every run: every choice below is a
//! fixed rule, ties are broken by id, and the ranking runs sequentially.
//!
//! The request:
//! - the user is the one whose ratings are most concentrated in one genre (share of their
//!   rated movies carrying that genre's flag) among users with at least 100 ratings; ties go
//!   to the lower id;
//! - the upstream score of a movie the user has not rated is
//!   `0.7 · cos(profile, genres) + 0.3 · ln(1 + n) / ln(1 + n_max)`, where `profile` sums the
//!   genre vectors of the movies the user rated 4 or 5, `genres` is the movie's 0/1 genre
//!   vector and `n` its number of ratings: taste first, popularity to order movies of the same
//!   genres. The 200 best are the candidates, in that order;
//! - each candidate's category is its first genre flag (0, "unknown", for none), its
//!   embedding its genre vector (so selection measures similarity by genre cosine), its
//!   popularity its number of ratings;
//! - the user is seen as active (first seen 30 days ago, active an hour ago), so the lifecycle
//!   rules for new users (a popularity boost, stronger diversity) stay out, and holds the
//!   interest tags tactful would have learned from their likes (the first genres of the
//!   movies they rated 4 or 5, strongest five): they decide the user's dominant categories
//!   (exploration slots) and calibration target;
//! - the columns: relevance only (score order, no long-tail boost, no exploration), the
//!   default policy (MMR, exploration slots, long tail), and the default policy with DPP.
//!
//! The SVG is written by hand: it is a few rectangles and lines of text, and a plotting crate
//! would add a dependency to draw no chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ndarray::Array2;
use tactful::datasets::movielens::{Movie, MovieLens};
use tactful::rank::metrics;
use tactful::rank::policy::Selection;
use tactful::rank::user::{Tag, TagKind, TagSource};
use tactful::rank::{
    Candidate, Consent, DataDimension, Deadline, DimensionSet, Parallelism, Policies, Policy,
    RankInput, UserView,
};

/// The lists compared, left to right: (column title, policy name, how that policy differs
/// from the default one). Another column is one more line here. The first column is the
/// baseline the relevance row is measured against.
/// (column title, policy name, how the policy differs from the default).
type Column = (&'static str, &'static str, fn(&mut Policy));

const COLUMNS: &[Column] = &[
    ("Relevance only", "relevance", |p| {
        p.selection = Selection::Score;
        p.long_tail.weight = 0.0;
        p.exploration.share = 0.0;
    }),
    ("Default policy (MMR)", "default", |_| {}),
    ("DPP", "dpp", |p| p.selection = Selection::Dpp),
];

const DEFAULT_DATA: &str = "../shared/data/movielens-100k";
const DEFAULT_OUT: &str = "docs/diversity-movielens.svg";
/// Users with fewer ratings say too little about their taste to be "concentrated".
const MIN_RATINGS: usize = 100;
/// Ratings of 4 and 5 stars count as liking a movie.
const LIKED: u8 = 4;
const CANDIDATES: usize = 200;
const TOP: usize = 20;
/// Share of the upstream score that comes from popularity rather than genre taste.
const POPULARITY_BLEND: f64 = 0.3;
use tactful::time::DAY_MS;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().unwrap_or_else(|| DEFAULT_DATA.into()));
    let out = PathBuf::from(args.next().unwrap_or_else(|| DEFAULT_OUT.into()));
    match run(&data, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diversity_picture: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(data: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let ml = MovieLens::load(data)?;
    let user = pick_user(&ml).ok_or("no user has enough ratings")?;
    let request = build_request(&ml, &user);

    let configured: BTreeMap<String, Policy> = COLUMNS
        .iter()
        .map(|&(_, name, adjust)| {
            let mut policy = Policy::default();
            adjust(&mut policy);
            (name.to_owned(), policy)
        })
        .collect();
    let policies = Policies::build(&configured, Parallelism::SEQUENTIAL)?;
    let mut view = UserView::unknown(Consent::privacy_default());
    view.first_seen_ms = Some(request.input.now_ms - 30 * DAY_MS);
    view.last_active_ms = Some(request.input.now_ms - DAY_MS / 24);
    view.tags = learned_tags(&ml, &user);

    let mut lists = Vec::new();
    for (_, name, _) in COLUMNS {
        let pipeline = policies
            .get(name)
            .ok_or_else(|| format!("policy {name} was not built"))?;
        let ranking = pipeline.run(&request.input, &view, &Deadline::none())?;
        let picks: Vec<usize> = ranking.items.iter().map(|item| item.index).collect();
        lists.push(picks);
    }
    let measured: Vec<Metrics> = lists
        .iter()
        .map(|list| measure(&ml, &user, &request, list, &lists[0]))
        .collect();

    print!("{}", markdown(&ml, &user, &request, &measured));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, svg(&ml, &user, &request, &lists, &measured))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The user the picture is about, and what their ratings say.
struct Subject {
    id: u32,
    ratings: usize,
    /// The genre their rated movies carry most often, and the share that carry it.
    genre: usize,
    share: f64,
    /// Users with at least [`MIN_RATINGS`] ratings, among whom this one was chosen.
    eligible: usize,
    /// Sum of the genre vectors of the movies the user liked.
    profile: Vec<f64>,
    /// The user's genre distribution for calibration: each liked movie spreads weight 1 over
    /// its genres (Steck's p(g|u) with equal weights).
    distribution: Vec<(u64, f64)>,
    rated: Vec<u32>,
    last_rated_s: i64,
}

fn pick_user(ml: &MovieLens) -> Option<Subject> {
    let genre_count = ml.genres.len();
    let mut per_user: BTreeMap<u32, (usize, Vec<usize>)> = BTreeMap::new();
    for r in &ml.ratings {
        let genres = ml.movie(r.item_id).map(|m| m.genres).unwrap_or_default();
        let (n, counts) = per_user
            .entry(r.user_id)
            .or_insert_with(|| (0, vec![0; genre_count]));
        *n += 1;
        for g in genres.iter() {
            counts[g] += 1;
        }
    }
    let eligible: Vec<(u32, usize, usize, f64)> = per_user
        .iter()
        .filter(|(_, (n, _))| *n >= MIN_RATINGS)
        .map(|(&id, (n, counts))| {
            // The most frequent genre; ties to the lower genre index.
            let (genre, &top) = counts
                .iter()
                .enumerate()
                .rev()
                .max_by_key(|(_, c)| **c)
                .unwrap_or((0, &0));
            (id, *n, genre, top as f64 / *n as f64)
        })
        .collect();
    // Highest share; ties to the lower user id (the map iterates in id order).
    let &(id, ratings, genre, share) = eligible.iter().rev().max_by(|a, b| a.3.total_cmp(&b.3))?;

    let mut profile = vec![0.0; genre_count];
    let mut distribution = Vec::new();
    let mut rated = Vec::new();
    let mut last_rated_s = 0;
    for r in ml.ratings.iter().filter(|r| r.user_id == id) {
        rated.push(r.item_id);
        last_rated_s = last_rated_s.max(r.timestamp);
        let Some(movie) = ml.movie(r.item_id).filter(|_| r.rating >= LIKED) else {
            continue;
        };
        for g in movie.genres.iter() {
            profile[g] += 1.0;
        }
        distribution.extend(spread(movie));
    }
    rated.sort_unstable();
    Some(Subject {
        id,
        ratings,
        genre,
        share,
        eligible: eligible.len(),
        profile,
        distribution,
        rated,
        last_rated_s,
    })
}

/// The interest tags tactful would learn from the user's likes: the categories (first genres)
/// of the movies they rated 4 or 5, weighted by their share, the strongest five.
fn learned_tags(ml: &MovieLens, user: &Subject) -> Vec<Tag> {
    let mut counts: BTreeMap<u64, f32> = BTreeMap::new();
    for r in ml
        .ratings
        .iter()
        .filter(|r| r.user_id == user.id && r.rating >= LIKED)
    {
        if let Some(g) = ml.movie(r.item_id).and_then(|m| m.genres.first()) {
            *counts.entry(g as u64).or_default() += 1.0;
        }
    }
    let total: f32 = counts.values().sum();
    let mut tags: Vec<Tag> = counts
        .into_iter()
        .map(|(id, n)| Tag {
            kind: TagKind::Category,
            id,
            label: ml.genres[id as usize].clone(),
            weight: n / total,
            source: TagSource::Learned(DimensionSet::of([DataDimension::Favorites])),
        })
        .collect();
    tags.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.id.cmp(&b.id)));
    tags.truncate(5);
    tags.sort_by_key(|t| t.id);
    tags
}

/// A movie as (genre, weight) pairs that sum to 1.
fn spread(movie: &Movie) -> impl Iterator<Item = (u64, f64)> + '_ {
    let weight = 1.0 / movie.genres.len().max(1) as f64;
    movie.genres.iter().map(move |g| (g as u64, weight))
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let n = norm(a) * norm(b);
    if n > 0.0 { dot / n } else { 0.0 }
}

/// The request sent to tactful, and the movie behind each candidate.
struct Request {
    input: RankInput,
    movies: Vec<u32>,
    /// Number of ratings of every movie, indexed by id (0 unused).
    popularity: Vec<u32>,
}

fn build_request(ml: &MovieLens, user: &Subject) -> Request {
    let genre_count = ml.genres.len();
    let max_id = ml.movies.last().map_or(0, |m| m.id as usize);
    let mut popularity = vec![0_u32; max_id + 1];
    for r in &ml.ratings {
        popularity[r.item_id as usize] += 1;
    }
    let most = f64::from(popularity.iter().copied().max().unwrap_or(0));
    let log_popularity = |n: u32| (1.0 + f64::from(n)).ln() / (1.0 + most).ln();

    let mut scored: Vec<(f64, &Movie)> = ml
        .movies
        .iter()
        .filter(|m| user.rated.binary_search(&m.id).is_err())
        .map(|m| {
            let genres: Vec<f64> = (0..genre_count)
                .map(|g| f64::from(u8::from(m.genres.contains(g))))
                .collect();
            let taste = cosine(&user.profile, &genres);
            let score = (1.0 - POPULARITY_BLEND) * taste
                + POPULARITY_BLEND * log_popularity(popularity[m.id as usize]);
            (score, m)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    scored.truncate(CANDIDATES);

    let candidates: Vec<Candidate> = scored
        .iter()
        .map(|&(score, m)| Candidate {
            item_id: u64::from(m.id),
            score: score as f32,
            category_id: m.genres.first().map_or(0, |g| g as u64),
            popularity: popularity[m.id as usize] as f32,
            // Ratings are the user's stated likes: the nearest of tactful's dimensions.
            evidence: DimensionSet::of([DataDimension::Favorites]),
            title: m.title.clone(),
            ..Default::default()
        })
        .collect();
    let embeddings = Array2::from_shape_fn((candidates.len(), genre_count), |(i, g)| {
        f32::from(u8::from(scored[i].1.genres.contains(g)))
    });
    Request {
        input: RankInput {
            candidates,
            embeddings: Some(embeddings),
            k: TOP,
            now_ms: (user.last_rated_s + 3_600) * 1_000,
            ..Default::default()
        },
        movies: scored.iter().map(|(_, m)| m.id).collect(),
        popularity,
    }
}

/// The metrics of one top list, from `rank::metrics`.
struct Metrics {
    genres: usize,
    /// Distinct first genres among all the candidates.
    offered: usize,
    coverage: f64,
    diversity: f64,
    calibration: f64,
    long_tail: f64,
    /// Mean upstream score, relative to the baseline list's.
    relevance: f64,
    /// Items the upstream order had below its own top of the same length.
    from_below: usize,
}

fn measure(
    ml: &MovieLens,
    user: &Subject,
    request: &Request,
    list: &[usize],
    baseline: &[usize],
) -> Metrics {
    let candidates = &request.input.candidates;
    let movie = |i: usize| {
        ml.movie(request.movies[i])
            .expect("candidates are listed movies")
    };
    let categories: Vec<u64> = list.iter().map(|&i| candidates[i].category_id).collect();
    let all: Vec<u64> = candidates.iter().map(|c| c.category_id).collect();
    let mut distinct = categories.clone();
    distinct.retain(|c| *c != 0);
    distinct.sort_unstable();
    distinct.dedup();
    let mut offered = all.clone();
    offered.retain(|c| *c != 0);
    offered.sort_unstable();
    offered.dedup();

    let genre_count = ml.genres.len();
    let vectors: Vec<Vec<f64>> = list
        .iter()
        .map(|&i| {
            let g = movie(i).genres;
            (0..genre_count)
                .map(|k| f64::from(u8::from(g.contains(k))))
                .collect()
        })
        .collect();
    let diversity =
        metrics::intra_list_diversity(list.len(), |a, b| cosine(&vectors[a], &vectors[b]) as f32);

    let list_genres: Vec<(u64, f64)> = list.iter().flat_map(|&i| spread(movie(i))).collect();
    let calibration = metrics::calibration_kl_weighted(
        &user.distribution,
        &list_genres,
        metrics::DEFAULT_CALIBRATION_ALPHA,
    );

    let head = metrics::head_threshold(&request.popularity[1..], metrics::DEFAULT_HEAD_SHARE);
    let popularity: Vec<f32> = list.iter().map(|&i| candidates[i].popularity).collect();

    let mean_score = |l: &[usize]| {
        l.iter()
            .map(|&i| f64::from(candidates[i].score))
            .sum::<f64>()
            / l.len().max(1) as f64
    };
    Metrics {
        genres: distinct.len(),
        offered: offered.len(),
        coverage: metrics::category_coverage(&categories, &all),
        diversity,
        calibration,
        long_tail: metrics::long_tail_share(&popularity, head),
        relevance: mean_score(list) / mean_score(baseline),
        from_below: list.iter().filter(|&&i| i >= list.len()).count(),
    }
}

fn genre_name(ml: &MovieLens, genre: usize) -> &str {
    ml.genres.get(genre).map_or("?", String::as_str)
}

/// The candidates' first genres, most frequent first: "190 Comedy, 9 Action, 1 Children's".
fn pool_mix(ml: &MovieLens, request: &Request) -> String {
    let mut counts = vec![0_usize; ml.genres.len().max(1)];
    for c in &request.input.candidates {
        counts[c.category_id as usize] += 1;
    }
    let mut mix: Vec<(usize, usize)> = counts
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .collect();
    mix.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let parts: Vec<String> = mix
        .iter()
        .map(|&(g, n)| format!("{n} {}", genre_name(ml, g)))
        .collect();
    parts.join(", ")
}

/// Rows of the metrics table: label, then the value for each column.
fn rows(measured: &[Metrics]) -> Vec<(String, Vec<String>)> {
    let offered = measured.first().map_or(0, |m| m.offered);
    let row = |label: String, value: &dyn Fn(&Metrics) -> String| {
        (label, measured.iter().map(value).collect::<Vec<_>>())
    };
    vec![
        row(
            format!("distinct genres (of the candidates' {offered})"),
            &|m| format!("{} ({:.0}%)", m.genres, 100.0 * m.coverage),
        ),
        row("intra-list diversity (genre cosine)".into(), &|m| {
            format!("{:.3}", m.diversity)
        }),
        row("calibration KL to the user's genres".into(), &|m| {
            format!("{:.3}", m.calibration)
        }),
        row(
            "long-tail share (outside the top 20% by ratings)".into(),
            &|m| format!("{:.0}%", 100.0 * m.long_tail),
        ),
        row("mean upstream relevance (vs relevance only)".into(), &|m| {
            format!("{:.1}%", 100.0 * m.relevance)
        }),
        row(format!("items from below the upstream top {TOP}"), &|m| {
            m.from_below.to_string()
        }),
    ]
}

fn markdown(ml: &MovieLens, user: &Subject, request: &Request, measured: &[Metrics]) -> String {
    let mut s = format!(
        "MovieLens 100K user {}: {} ratings, {:.0}% of the movies they rated tagged {}. Top \
         {TOP} of {} candidates; by first genre: {}.\n\n",
        user.id,
        user.ratings,
        100.0 * user.share,
        genre_name(ml, user.genre),
        request.input.candidates.len(),
        pool_mix(ml, request),
    );
    s.push_str("| metric (top 20) |");
    for (title, _, _) in COLUMNS.iter() {
        let _ = write!(s, " {title} |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(COLUMNS.len()));
    s.push('\n');
    for (label, values) in rows(measured) {
        let _ = write!(s, "| {label} |");
        for v in values {
            let _ = write!(s, " {v} |");
        }
        s.push('\n');
    }
    s
}

/// Chip colours per genre index of MovieLens 100K ("unknown" first); other genre lists reuse
/// them in turn.
const GENRE_COLOURS: [&str; 19] = [
    "#9aa0a6", // unknown
    "#c0392b", // Action
    "#e67e22", // Adventure
    "#16a085", // Animation
    "#f49ac2", // Children's
    "#f1c40f", // Comedy
    "#34495e", // Crime
    "#7f8c8d", // Documentary
    "#2e86c1", // Drama
    "#8e44ad", // Fantasy
    "#1c1c1c", // Film-Noir
    "#6e2c00", // Horror
    "#a3d13a", // Musical
    "#5b2c6f", // Mystery
    "#e84393", // Romance
    "#00a8c6", // Sci-Fi
    "#7b241c", // Thriller
    "#556b2f", // War
    "#c19a6b", // Western
];

fn colour(genre: usize) -> &'static str {
    GENRE_COLOURS[genre % GENRE_COLOURS.len()]
}

/// Dark text on light chips, white on dark ones (by relative luminance).
fn ink(background: &str) -> &'static str {
    let channel = |i: usize| {
        let v = u8::from_str_radix(&background[i..i + 2], 16).unwrap_or(0);
        f64::from(v) / 255.0
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    if luminance > 0.55 {
        "#1a1a1a"
    } else {
        "#ffffff"
    }
}

fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            c => s.push(c),
        }
    }
    s
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max_chars - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

const MARGIN: i32 = 36;
const COLUMN_WIDTH: i32 = 580;
const GAP: i32 = 44;
const ROW: i32 = 28;
const CHIP_WIDTH: i32 = 100;
const TITLE_CHARS: usize = 38;
/// Room right of each row for its "#n" label.
const POSITION_WIDTH: i32 = 44;
const FONT: &str = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif";

fn chip(s: &mut String, x: i32, y: i32, genre: usize, name: &str) {
    let fill = colour(genre);
    let _ = write!(
        s,
        r#"<rect x="{x}" y="{}" width="{CHIP_WIDTH}" height="20" rx="10" fill="{fill}"/><text x="{}" y="{}" font-size="11.5" text-anchor="middle" fill="{}">{}</text>"#,
        y - 15,
        x + CHIP_WIDTH / 2,
        y - 1,
        ink(fill),
        escape(name),
    );
    s.push('\n');
}

fn svg(
    ml: &MovieLens,
    user: &Subject,
    request: &Request,
    lists: &[Vec<usize>],
    measured: &[Metrics],
) -> String {
    let columns = COLUMNS.len() as i32;
    let width = 2 * MARGIN + columns * COLUMN_WIDTH + (columns - 1) * GAP;
    let candidates = &request.input.candidates;
    let genre_of = |i: usize| candidates[i].category_id as usize;
    let movie = |i: usize| {
        ml.movie(request.movies[i])
            .expect("candidates are listed movies")
    };
    let genre_name = |g: usize| genre_name(ml, g);
    let table = rows(measured);

    let list_top = 196;
    let metrics_top = list_top + ROW * TOP as i32 + 26;
    let legend_top = metrics_top + 24 * table.len() as i32 + 30;
    let notes_top = legend_top + 66;
    let height = notes_top + 4 * 18 + 16;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT}">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="44" font-size="22" font-weight="bold" fill="#1a1a1a">One MovieLens user's top {TOP}: relevance only vs diversified</text>"##
    );
    let subtitle = [
        format!(
            "User {}: {} ratings, {:.0}% of the movies they rated are tagged {}: the most concentrated on one genre of the {} users with {MIN_RATINGS}+ ratings.",
            user.id,
            user.ratings,
            100.0 * user.share,
            genre_name(user.genre),
            user.eligible,
        ),
        format!(
            "Candidates: the {} movies they have not rated with the best upstream score, {:.1} × genre cosine to their 4–5★ ratings + {:.1} × log popularity.",
            candidates.len(),
            1.0 - POPULARITY_BLEND,
            POPULARITY_BLEND,
        ),
        format!("The candidates by first genre: {}.", pool_mix(ml, request)),
        "An active user with the interest tags learned from their likes; only the selection differs.".to_owned(),
    ];
    for (i, line) in subtitle.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{MARGIN}" y="{}" font-size="13.5" fill="#555555">{}</text>"##,
            72 + 20 * i as i32,
            escape(line)
        );
    }

    for (c, (title, _, _)) in COLUMNS.iter().enumerate() {
        let x = MARGIN + c as i32 * (COLUMN_WIDTH + GAP);
        let _ = writeln!(
            s,
            r##"<text x="{x}" y="{}" font-size="17" font-weight="bold" fill="#1a1a1a">{}</text>"##,
            list_top - 22,
            escape(title)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="#cccccc"/>"##,
            list_top - 12,
            x + COLUMN_WIDTH,
            list_top - 12
        );
        for (row, &i) in lists[c].iter().enumerate() {
            let y = list_top + 8 + ROW * row as i32;
            if row % 2 == 1 {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x}" y="{}" width="{COLUMN_WIDTH}" height="{ROW}" fill="#f5f5f5"/>"##,
                    y - 19
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{y}" font-size="13" text-anchor="end" fill="#777777">{}</text>"##,
                x + 26,
                row + 1
            );
            chip(&mut s, x + 36, y, genre_of(i), genre_name(genre_of(i)));
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{y}" font-size="14" fill="#1a1a1a">{}</text>"##,
                x + 48 + CHIP_WIDTH,
                escape(&truncate(&candidates[i].title, TITLE_CHARS))
            );
            // The movie's other genres as dots, right-aligned before its upstream position.
            let others: Vec<usize> = movie(i).genres.iter().skip(1).collect();
            for (k, &g) in others.iter().rev().enumerate() {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{}" cy="{}" r="5.5" fill="{}"/>"##,
                    x + COLUMN_WIDTH - POSITION_WIDTH - 8 - 15 * k as i32,
                    y - 5,
                    colour(g)
                );
            }
            // Where the upstream recommender had this item; from below its top 20 in bold.
            let from_below = i >= TOP;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{y}" font-size="12" text-anchor="end" fill="{}"{}>#{}</text>"##,
                x + COLUMN_WIDTH - 6,
                if from_below { "#1f4e9c" } else { "#999999" },
                if from_below {
                    r#" font-weight="bold""#
                } else {
                    ""
                },
                i + 1
            );
        }
        for (r, (label, values)) in table.iter().enumerate() {
            let y = metrics_top + 24 * r as i32;
            let _ = writeln!(
                s,
                r##"<text x="{x}" y="{y}" font-size="13" fill="#444444">{}</text><text x="{}" y="{y}" font-size="13.5" font-weight="bold" text-anchor="end" fill="#1a1a1a">{}</text>"##,
                escape(label),
                x + COLUMN_WIDTH - 6,
                escape(&values[c])
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="#cccccc"/>"##,
            metrics_top - 20,
            x + COLUMN_WIDTH,
            metrics_top - 20
        );
    }

    // Legend: the genres that appear in any list, as a chip or a dot, in genre order.
    let mut shown: Vec<usize> = lists
        .iter()
        .flatten()
        .flat_map(|&i| movie(i).genres.iter().chain([genre_of(i)]))
        .collect();
    shown.sort_unstable();
    shown.dedup();
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="{legend_top}" font-size="13" fill="#444444">Chip: the movie's first genre (its category); dots: its other genres.</text>"##
    );
    for (k, &g) in shown.iter().enumerate() {
        chip(
            &mut s,
            MARGIN + k as i32 * (CHIP_WIDTH + 10),
            legend_top + 30,
            g,
            genre_name(g),
        );
    }

    let notes = [
        "#n: the item's position in the upstream order (bold: from below the upstream top 20). Genre cosine and calibration use all of a movie's genres;",
        "calibration is Steck's KL(p ‖ 0.99·q + 0.01·p) between the user's 4–5★ genre mix p and the list's q (0 = same mix); long tail: fewer ratings than the top 20% of movies.",
        "Data: MovieLens 100K, GroupLens Research. F. M. Harper and J. A. Konstan, \"The MovieLens Datasets: History and Context\", ACM TiiS 5(4), 2015.",
        "cargo run --release --example diversity_picture",
    ];
    for (i, line) in notes.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{MARGIN}" y="{}" font-size="12" fill="#666666">{}</text>"##,
            notes_top + 18 * i as i32,
            escape(line)
        );
    }
    s.push_str("</svg>\n");
    s
}
