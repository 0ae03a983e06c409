//! MovieLens (GroupLens; Harper & Konstan, "The MovieLens Datasets: History and Context",
//! ACM TiiS 2015), in its two layouts.
//!
//! **100K** ([`MovieLens`]): 1,682 movies with 19 genre flags and 100,000 ratings by 943 users.
//! Three files of the folder are read:
//! - `u.genre`: `name|index`, the genre names in flag order (index 0 is "unknown");
//! - `u.item`: `id|title|release date|video release date|IMDb URL|` then one `0`/`1` flag per
//!   genre. Titles are Latin-1 ("Misérables, Les (1995)" holds the byte 0xE9), so every file
//!   is decoded byte by byte as Latin-1, never as UTF-8;
//! - `u.data`: `user item rating timestamp`, tab-separated, rating 1 to 5, unix seconds.
//!
//! **"Latest"** ([`Latest`]: `ml-latest-small`, `ml-latest`, `ml-25m`…): `movies.csv`
//! (`movieId,title,genres`, genres `|`-separated, titles with a comma in quotes) and
//! `ratings.csv` (`userId,movieId,rating,timestamp`, 0.5 to 5 stars in halves), UTF-8, each
//! with its header. The genre table is the distinct names in ascending order, so it does not
//! depend on the order of the rows.
//!
//! Malformed input is an error naming the file and the line, never a panic or a silent skip:
//! a replay over a damaged file must not quietly measure something else.

use std::path::Path;

pub use super::LoadError;
use super::text::{self, number};
use super::{Action, LogEvent, malformed};

/// The genres of one movie, as a bit set over genre indices (bit `g` set = flag `g` is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Genres(u32);

impl Genres {
    /// The most genres a set can hold; MovieLens 100K has 19.
    pub const MAX: usize = 32;

    pub fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn insert(&mut self, genre: usize) {
        debug_assert!(genre < Self::MAX);
        self.0 |= 1 << genre;
    }

    pub fn contains(self, genre: usize) -> bool {
        genre < Self::MAX && self.0 & (1 << genre) != 0
    }

    /// The lowest genre index set: the movie's "first genre flag".
    pub fn first(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Genre indices in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..Self::MAX).filter(move |&g| self.contains(g))
    }

    /// The flags as a 0/1 vector of `count` values, e.g. an item embedding.
    pub fn to_vector(self, count: usize) -> Vec<f32> {
        (0..count).map(|g| f32::from(self.contains(g))).collect()
    }
}

/// One movie of `u.item`.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    /// The movie id, 1-based, as in `u.data`.
    pub id: u32,
    /// The title as listed, trimmed, usually with the year: "Toy Story (1995)".
    pub title: String,
    /// The year in the title's last "(yyyy)", else the release date's; `None` when neither
    /// has one (movie 267 is "unknown" with no date).
    pub year: Option<u16>,
    pub genres: Genres,
}

/// One line of `u.data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating {
    pub user_id: u32,
    pub item_id: u32,
    /// 1 to 5 stars.
    pub rating: u8,
    /// Unix seconds.
    pub timestamp: i64,
}

/// The whole data set.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieLens {
    /// Genre names, indexed like the flags of [`Genres`].
    pub genres: Vec<String>,
    /// Sorted by id.
    pub movies: Vec<Movie>,
    /// In file order (which is not time order).
    pub ratings: Vec<Rating>,
}

impl MovieLens {
    /// Reads `u.genre`, `u.item` and `u.data` from `dir`, and checks that every rating names
    /// a listed movie.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            let bytes = text::read(&path)?;
            Ok::<_, LoadError>((path.display().to_string(), bytes))
        };
        let (file, bytes) = read("u.genre")?;
        let genres = parse_genres(&bytes, &file)?;
        let (file, bytes) = read("u.item")?;
        let movies = parse_movies(&bytes, &file, genres.len())?;
        let (file, bytes) = read("u.data")?;
        let known = |id: u32| movies.binary_search_by_key(&id, |m| m.id).is_ok();
        let ratings = ratings(&bytes, &file, Some(&known))?;
        Ok(Self {
            genres,
            movies,
            ratings,
        })
    }

    /// The movie with this id.
    pub fn movie(&self, id: u32) -> Option<&Movie> {
        find(&self.movies, id)
    }

    /// The ratings as replay events: each rating is a view of the movie, its category its
    /// first genre (ids from 1: genre index + 1). MovieLens has no purchases, brands or prices.
    pub fn events(&self) -> Vec<LogEvent> {
        rating_events(
            &self.movies,
            self.ratings
                .iter()
                .map(|r| (r.user_id, r.item_id, r.timestamp)),
        )
    }
}

fn find(movies: &[Movie], id: u32) -> Option<&Movie> {
    movies
        .binary_search_by_key(&id, |m| m.id)
        .ok()
        .map(|i| &movies[i])
}

/// Ratings (user, movie, unix seconds) as views of the movie in its first genre.
fn rating_events(
    movies: &[Movie],
    ratings: impl Iterator<Item = (u32, u32, i64)>,
) -> Vec<LogEvent> {
    ratings
        .map(|(user, item, ts)| LogEvent {
            user: u64::from(user),
            item: u64::from(item),
            category: find(movies, item)
                .and_then(|m| m.genres.first())
                .map_or(1, |g| g as u64 + 1),
            action: Action::View,
            at_ms: ts * 1000,
            ..LogEvent::default()
        })
        .collect()
}

/// Parses `u.genre`: `name|index` per line, indices 0, 1, 2… in order; blank lines are
/// skipped. `file` names the source in errors.
pub fn parse_genres(bytes: &[u8], file: &str) -> Result<Vec<String>, LoadError> {
    let mut genres = Vec::new();
    for (line, text) in lines(bytes) {
        let fields: Vec<&str> = text.split('|').collect();
        let [name, index] = fields[..] else {
            return Err(malformed(
                file,
                line,
                format!("expected `name|index`, found {} fields", fields.len()),
            ));
        };
        let index: usize = number(index, file, line, "genre index")?;
        if index != genres.len() {
            return Err(malformed(
                file,
                line,
                format!("genre index {index} where {} was expected", genres.len()),
            ));
        }
        genres.push(name.trim().to_owned());
    }
    if genres.is_empty() || genres.len() > Genres::MAX {
        return Err(malformed(
            file,
            0,
            format!(
                "expected 1 to {} genres, found {}",
                Genres::MAX,
                genres.len()
            ),
        ));
    }
    Ok(genres)
}

/// Parses `u.item` with `genre_count` flags per movie; the result is sorted by id.
pub fn parse_movies(bytes: &[u8], file: &str, genre_count: usize) -> Result<Vec<Movie>, LoadError> {
    const FIXED: usize = 5;
    let mut movies = Vec::new();
    for (line, text) in lines(bytes) {
        let fields: Vec<&str> = text.split('|').collect();
        if fields.len() != FIXED + genre_count {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected {} `|`-separated fields (5 + {genre_count} genre flags), found {}",
                    FIXED + genre_count,
                    fields.len()
                ),
            ));
        }
        let id: u32 = number(fields[0], file, line, "movie id")?;
        let mut genres = Genres::default();
        for (g, flag) in fields[FIXED..].iter().enumerate() {
            match flag.trim() {
                "0" => {}
                "1" => genres.insert(g),
                other => {
                    return Err(malformed(
                        file,
                        line,
                        format!("genre flag {g} is {other:?}, not 0 or 1"),
                    ));
                }
            }
        }
        let title = fields[1].trim().to_owned();
        let year = year_in_title(&title).or_else(|| year_of_date(fields[2]));
        movies.push(Movie {
            id,
            title,
            year,
            genres,
        });
    }
    movies.sort_by_key(|m| m.id);
    if let Some(w) = movies.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(malformed(
            file,
            0,
            format!("movie id {} is listed twice", w[0].id),
        ));
    }
    Ok(movies)
}

/// Parses `u.data`: `user item rating timestamp`, separated by tabs (or spaces).
pub fn parse_ratings(bytes: &[u8], file: &str) -> Result<Vec<Rating>, LoadError> {
    ratings(bytes, file, None)
}

fn ratings(
    bytes: &[u8],
    file: &str,
    known_movie: Option<&dyn Fn(u32) -> bool>,
) -> Result<Vec<Rating>, LoadError> {
    let mut ratings = Vec::with_capacity(bytes.len() / 20);
    for (line, text) in lines(bytes) {
        let mut fields = text.split_ascii_whitespace();
        let (Some(user), Some(item), Some(rating), Some(ts), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(malformed(
                file,
                line,
                "expected 4 tab-separated fields: user item rating timestamp",
            ));
        };
        let user_id = number(user, file, line, "user id")?;
        let item_id = number(item, file, line, "item id")?;
        let rating: u8 = number(rating, file, line, "rating")?;
        if !(1..=5).contains(&rating) {
            return Err(malformed(
                file,
                line,
                format!("rating {rating} is not 1 to 5"),
            ));
        }
        if known_movie.is_some_and(|known| !known(item_id)) {
            return Err(malformed(
                file,
                line,
                format!("item {item_id} is not a movie of u.item"),
            ));
        }
        ratings.push(Rating {
            user_id,
            item_id,
            rating,
            timestamp: number(ts, file, line, "timestamp")?,
        });
    }
    Ok(ratings)
}

/// One line of a "latest" `ratings.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfStarRating {
    pub user_id: u32,
    pub item_id: u32,
    /// 1 to 10 half stars (0.5 to 5 stars).
    pub half_stars: u8,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A MovieLens "latest" folder (`ml-latest-small`, `ml-latest`, `ml-25m`, `ml-32m`).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    /// Genre names in ascending order, indexed like the flags of [`Genres`];
    /// "(no genres listed)" is one of them when a movie says so.
    pub genres: Vec<String>,
    /// Sorted by id.
    pub movies: Vec<Movie>,
    /// In file order.
    pub ratings: Vec<HalfStarRating>,
}

/// The header `movies.csv` must start with.
pub const LATEST_MOVIES_HEADER: &str = "movieId,title,genres";
/// The header `ratings.csv` must start with.
pub const LATEST_RATINGS_HEADER: &str = "userId,movieId,rating,timestamp";

impl Latest {
    /// Reads `movies.csv` and `ratings.csv` from `dir`, and checks that every rating names a
    /// listed movie.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let movies_path = dir.join("movies.csv");
        let file = movies_path.display().to_string();
        let (genres, movies) = parse_latest_movies(&text::read(&movies_path)?, &file)?;
        let ratings_path = dir.join("ratings.csv");
        let file = ratings_path.display().to_string();
        let known = |id: u32| find(&movies, id).is_some();
        let ratings = parse_latest_ratings(&text::read(&ratings_path)?, &file, Some(&known))?;
        Ok(Self {
            genres,
            movies,
            ratings,
        })
    }

    /// The movie with this id.
    pub fn movie(&self, id: u32) -> Option<&Movie> {
        find(&self.movies, id)
    }

    /// The ratings as replay events, as for MovieLens 100K: views of the movie in its first
    /// genre (in ascending name order; ids from 1).
    pub fn events(&self) -> Vec<LogEvent> {
        rating_events(
            &self.movies,
            self.ratings
                .iter()
                .map(|r| (r.user_id, r.item_id, r.timestamp)),
        )
    }
}

/// Checks that the first non-blank line is `header` (its columns, case-insensitively) and
/// returns the lines after it.
fn after_header<'a>(
    text: &'a str,
    file: &str,
    header: &str,
) -> Result<impl Iterator<Item = (usize, &'a str)>, LoadError> {
    let mut lines = text::lines(text);
    let found = lines.next().map_or("", |(_, l)| l);
    let names: Vec<String> = text::fields(found, ',')
        .iter()
        .map(|f| f.to_ascii_lowercase())
        .collect();
    let wanted: Vec<String> = header.split(',').map(str::to_ascii_lowercase).collect();
    if !names.starts_with(&wanted) {
        return Err(malformed(
            file,
            1,
            format!("expected the header `{header}`, found {found:?}"),
        ));
    }
    Ok(lines)
}

/// Parses a "latest" `movies.csv`: the genre names (sorted) and the movies (sorted by id).
pub fn parse_latest_movies(
    bytes: &[u8],
    file: &str,
) -> Result<(Vec<String>, Vec<Movie>), LoadError> {
    let text = text::utf8(bytes, file)?;
    let mut rows = Vec::new();
    for (line, raw) in after_header(text, file, LATEST_MOVIES_HEADER)? {
        let fields = text::fields(raw, ',');
        let [id, title, genres] = &fields[..] else {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected 3 fields (movieId,title,genres; a title with a comma in quotes), found {}",
                    fields.len()
                ),
            ));
        };
        let id: u32 = number(id, file, line, "movie id")?;
        let names: Vec<String> = genres
            .split('|')
            .map(|g| g.trim().to_owned())
            .map(|g| {
                if g.is_empty() {
                    "(no genres listed)".to_owned()
                } else {
                    g
                }
            })
            .collect();
        rows.push((line, id, title.to_string(), names));
    }
    let mut genres: Vec<String> = rows.iter().flat_map(|r| r.3.iter().cloned()).collect();
    genres.sort_unstable();
    genres.dedup();
    if genres.len() > Genres::MAX {
        return Err(malformed(
            file,
            0,
            format!(
                "{} distinct genres, at most {} are supported",
                genres.len(),
                Genres::MAX
            ),
        ));
    }
    let mut movies: Vec<Movie> = rows
        .into_iter()
        .map(|(_, id, title, names)| {
            let mut set = Genres::default();
            for name in &names {
                set.insert(genres.binary_search(name).expect("collected above"));
            }
            Movie {
                id,
                year: year_in_title(&title),
                title,
                genres: set,
            }
        })
        .collect();
    movies.sort_by_key(|m| m.id);
    if let Some(w) = movies.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(malformed(
            file,
            0,
            format!("movie id {} is listed twice", w[0].id),
        ));
    }
    Ok((genres, movies))
}

/// Parses a "latest" `ratings.csv`; with `known_movie`, a rating of an unlisted movie is an
/// error.
pub fn parse_latest_ratings(
    bytes: &[u8],
    file: &str,
    known_movie: Option<&dyn Fn(u32) -> bool>,
) -> Result<Vec<HalfStarRating>, LoadError> {
    let text = text::utf8(bytes, file)?;
    let mut ratings = Vec::with_capacity(bytes.len() / 24);
    for (line, raw) in after_header(text, file, LATEST_RATINGS_HEADER)? {
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        let [user, item, rating, ts] = fields[..] else {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected 4 fields (userId,movieId,rating,timestamp), found {}",
                    fields.len()
                ),
            ));
        };
        let item_id = number(item, file, line, "movie id")?;
        if known_movie.is_some_and(|known| !known(item_id)) {
            return Err(malformed(
                file,
                line,
                format!("movie {item_id} is not listed in movies.csv"),
            ));
        }
        let stars: f64 = number(rating, file, line, "rating")?;
        let half = stars * 2.0;
        if !(1.0..=10.0).contains(&half) || half.fract() != 0.0 {
            return Err(malformed(
                file,
                line,
                format!("rating {rating} is not 0.5 to 5 in half stars"),
            ));
        }
        ratings.push(HalfStarRating {
            user_id: number(user, file, line, "user id")?,
            item_id,
            half_stars: half as u8,
            timestamp: number(ts, file, line, "timestamp")?,
        });
    }
    Ok(ratings)
}

/// Non-blank lines with their 1-based numbers, decoded as Latin-1 (each byte is the code
/// point of the same value), without the line ending.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, String)> + '_ {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            (
                i + 1,
                raw.iter().map(|&b| char::from(b)).collect::<String>(),
            )
        })
        .filter(|(_, text)| !text.trim().is_empty())
}

/// The year of the last "(yyyy)" in a title: "Land Before Time III (1995) (V)" → 1995.
fn year_in_title(title: &str) -> Option<u16> {
    let b = title.as_bytes();
    (0..b.len().saturating_sub(5)).rev().find_map(|i| {
        let digits = &b[i + 1..i + 5];
        (b[i] == b'(' && b[i + 5] == b')' && digits.iter().all(u8::is_ascii_digit))
            .then(|| title[i + 1..i + 5].parse().ok())
            .flatten()
    })
}

/// The year of a release date "01-Jan-1995".
fn year_of_date(date: &str) -> Option<u16> {
    let year = date.trim().rsplit('-').next()?;
    (year.len() == 4).then(|| year.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    //! 1. genres, movies and ratings parse from small inline samples, Latin-1 titles included;
    //! 2. malformed lines are errors naming the file and the line;
    //! 3. the real data set, when present, has 1,682 movies and 100,000 ratings.

    use super::*;

    const GENRES: &[u8] = b"unknown|0\nAction|1\nComedy|2\n\n";

    #[test]
    fn genres_parse_in_flag_order() {
        let g = parse_genres(GENRES, "u.genre").unwrap();
        assert_eq!(g, vec!["unknown", "Action", "Comedy"]);
        let err = parse_genres(b"unknown|0\nAction|2\n", "u.genre").unwrap_err();
        assert_eq!(
            err.to_string(),
            "u.genre:2: genre index 2 where 1 was expected"
        );
        let err = parse_genres(b"\n", "u.genre").unwrap_err();
        assert_eq!(err.to_string(), "u.genre: expected 1 to 32 genres, found 0");
    }

    #[test]
    fn movies_parse_with_latin1_titles_years_and_genres() {
        // 0xE9 is "é" in Latin-1 and an invalid byte in UTF-8.
        let mut bytes = b"543|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x|0|1|1\r\n".to_vec();
        bytes.extend_from_slice(b"267|unknown||||1|0|0\n");
        bytes.extend_from_slice(b"1412|Land Before Time III (1995) (V) |01-Jan-1996||u|0|0|0\n");
        bytes.extend_from_slice(b"9|Untitled|01-Feb-1990||u|0|0|1\n");
        let movies = parse_movies(&bytes, "u.item", 3).unwrap();
        let ids: Vec<u32> = movies.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![9, 267, 543, 1412], "sorted by id");
        let les_mis = &movies[2];
        assert_eq!(les_mis.title, "Misérables, Les (1995)");
        assert_eq!(les_mis.year, Some(1995));
        assert_eq!(les_mis.genres.iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(les_mis.genres.first(), Some(1));
        assert_eq!(les_mis.genres.to_vector(3), vec![0.0, 1.0, 1.0]);
        assert_eq!(movies[1].year, None);
        assert_eq!(movies[1].genres.first(), Some(0));
        assert_eq!(movies[3].title, "Land Before Time III (1995) (V)");
        assert_eq!(movies[3].year, Some(1995), "the title's year wins");
        assert_eq!(movies[0].year, Some(1990), "else the release date's");
        assert!(movies[3].genres.is_empty());
        assert_eq!(movies[3].genres.first(), None);
    }

    #[test]
    fn malformed_movies_name_file_and_line() {
        let err = parse_movies(b"1|A (1995)|d||u|0|1|0\n\n2|B|d||u|0|1\n", "u.item", 3)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "u.item:3: expected 8 `|`-separated fields (5 + 3 genre flags), found 7"
        );
        let err = parse_movies(b"1|A|d||u|0|2|0\n", "u.item", 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "u.item:1: genre flag 1 is \"2\", not 0 or 1"
        );
        let err = parse_movies(b"x|A|d||u|0|0|0\n", "u.item", 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "u.item:1: movie id \"x\" is not a valid number"
        );
        let err = parse_movies(b"1|A|d||u|0|0|0\n1|B|d||u|0|0|0\n", "u.item", 3).unwrap_err();
        assert_eq!(err.to_string(), "u.item: movie id 1 is listed twice");
    }

    #[test]
    fn ratings_parse_and_malformed_ones_name_the_line() {
        let r = parse_ratings(
            b"196\t242\t3\t881250949\n186\t302\t5\t891717742\n",
            "u.data",
        );
        assert_eq!(
            r.unwrap(),
            vec![
                Rating {
                    user_id: 196,
                    item_id: 242,
                    rating: 3,
                    timestamp: 881_250_949
                },
                Rating {
                    user_id: 186,
                    item_id: 302,
                    rating: 5,
                    timestamp: 891_717_742
                },
            ]
        );
        let err = parse_ratings(b"1\t2\t3\t4\n1\t2\t6\t4\n", "u.data").unwrap_err();
        assert_eq!(err.to_string(), "u.data:2: rating 6 is not 1 to 5");
        let err = parse_ratings(b"1\t2\t3\n", "u.data").unwrap_err();
        assert_eq!(
            err.to_string(),
            "u.data:1: expected 4 tab-separated fields: user item rating timestamp"
        );
        let err = parse_ratings(b"1\t2\t3\t4\t5\n", "u.data").unwrap_err();
        assert!(err.to_string().starts_with("u.data:1: expected 4"));
    }

    #[test]
    fn load_checks_that_ratings_name_listed_movies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("u.genre"), GENRES).unwrap();
        std::fs::write(dir.path().join("u.item"), b"1|A (1995)|d||u|0|1|0\n").unwrap();
        std::fs::write(dir.path().join("u.data"), b"7\t1\t4\t10\n7\t2\t4\t11\n").unwrap();
        let err = MovieLens::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("u.data:2: item 2 is not a movie of u.item"),
            "{err}"
        );
        std::fs::write(dir.path().join("u.data"), b"7\t1\t4\t10\n").unwrap();
        let ml = MovieLens::load(dir.path()).unwrap();
        assert_eq!(ml.movie(1).map(|m| m.title.as_str()), Some("A (1995)"));
        assert!(ml.movie(2).is_none());
        let missing = MovieLens::load(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, LoadError::Io { .. }), "{missing}");
    }

    #[test]
    fn a_latest_folder_loads_with_quoted_titles_half_stars_and_genre_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("movies.csv"),
            "movieId,title,genres\n\
             1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n\
             11,\"American President, The (1995)\",Comedy|Drama|Romance\n\
             9,Untitled,(no genres listed)\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ratings.csv"),
            "userId,movieId,rating,timestamp\n1,11,3.5,964982703\n2,1,5.0,964981247\n",
        )
        .unwrap();
        let ml = Latest::load(dir.path()).unwrap();
        assert_eq!(ml.genres[0], "(no genres listed)");
        assert_eq!(ml.genres[1], "Adventure");
        let president = ml.movie(11).unwrap();
        assert_eq!(president.title, "American President, The (1995)");
        assert_eq!(president.year, Some(1995));
        let comedy = ml.genres.iter().position(|g| g == "Comedy").unwrap();
        assert_eq!(president.genres.first(), Some(comedy));
        assert_eq!(ml.ratings[0].half_stars, 7);
        let events = ml.events();
        assert_eq!(events[0].category, comedy as u64 + 1);
        assert_eq!(
            events[1].category, 2,
            "Toy Story's first genre is Adventure"
        );
        assert_eq!(events[0].at_ms, 964_982_703_000);
        assert_eq!(ml.movie(9).unwrap().genres.first(), Some(0));

        std::fs::write(
            dir.path().join("ratings.csv"),
            "userId,movieId,rating,timestamp\n1,11,3.25,1\n",
        )
        .unwrap();
        let err = Latest::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("ratings.csv:2: rating 3.25 is not 0.5 to 5 in half stars"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("ratings.csv"),
            "userId,movieId,rating,timestamp\n1,12,3,1\n",
        )
        .unwrap();
        let err = Latest::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("ratings.csv:2: movie 12 is not listed in movies.csv"),
            "{err}"
        );
        let err = parse_latest_ratings(b"user,movie\n", "r.csv", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "r.csv:1: expected the header `userId,movieId,rating,timestamp`, found \"user,movie\""
        );
    }

    #[test]
    fn the_real_data_set_loads_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/movielens-100k");
        if !dir.is_dir() {
            println!("skipped: no MovieLens 100K at {}", dir.display());
            return;
        }
        let ml = MovieLens::load(&dir).unwrap();
        assert_eq!(ml.genres.len(), 19);
        assert_eq!(ml.genres[0], "unknown");
        assert_eq!(ml.movies.len(), 1_682);
        assert_eq!(ml.ratings.len(), 100_000);
        let toy_story = ml.movie(1).unwrap();
        assert_eq!(toy_story.title, "Toy Story (1995)");
        assert_eq!(toy_story.year, Some(1995));
        let names: Vec<&str> = toy_story
            .genres
            .iter()
            .map(|g| ml.genres[g].as_str())
            .collect();
        assert_eq!(names, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(ml.movie(543).unwrap().title, "Misérables, Les (1995)");
        let mut users: Vec<u32> = ml.ratings.iter().map(|r| r.user_id).collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), 943);
    }
}
