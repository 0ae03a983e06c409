//! Readers for interaction logs, used to evaluate rankings offline (`tactful replay`, `tactful
//! fit`) and to draw pictures of what tactful does: the public logs under `../shared/data`
//! (relative to the project root) and a platform's own log in a mapped CSV. Never used at
//! request time: the server knows nothing of these files, and nothing here is needed to run it.
//!
//! Each reader parses its source's own vocabulary into rows ([`taobao`], [`rees46`],
//! [`tmall`], [`movielens`], [`generic`]) and converts them into the one form the replay
//! consumes, [`LogEvent`]. Which reader a path needs is decided in one place, [`detect`].
//! [`load`] does both.
//!
//! Invariants:
//! - malformed input is an error naming the file and the 1-based line, never a panic or a
//!   silent skip: a replay over a damaged file must not quietly measure something else (rows a
//!   format defines as carrying no interaction, like REES46 `remove_from_cart`, are the only
//!   rows left out, and each reader says which);
//! - rows stay in file order; sorting by time is the caller's choice;
//! - ids that are not positive integers in the source (REES46 brand names, a platform's string
//!   keys) become 64-bit ids through [`text::id`], the same text always the same id.
//!
//! The public data stays outside the repository (its licences allow research use, not
//! redistribution); readers take the path as an argument.

pub mod detect;
pub mod generic;
pub mod movielens;
pub mod rees46;
pub mod taobao;
pub mod text;
pub mod tmall;

use std::fmt;
use std::path::{Path, PathBuf};

pub use detect::{Format, detect};

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `line` is 1-based; 0 means the file as a whole.
    #[error("{}", Located(file, *line, message))]
    Malformed {
        file: String,
        line: usize,
        message: String,
    },
}

/// "file:line: message", or "file: message" for the whole file.
struct Located<'a>(&'a String, usize, &'a String);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            0 => write!(f, "{}: {}", self.0, self.2),
            line => write!(f, "{}:{line}: {}", self.0, self.2),
        }
    }
}

/// A [`LoadError::Malformed`]; `line` 0 is the file as a whole.
pub fn malformed(file: &str, line: usize, message: impl Into<String>) -> LoadError {
    LoadError::Malformed {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// What a user did, in the replay's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Opened an item (a page view, a click, a rating): the interaction decisions predict.
    #[default]
    View,
    Cart,
    Favorite,
    Buy,
}

/// One interaction of any log, in the form the replay consumes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LogEvent {
    pub user: u64,
    pub item: u64,
    /// 0 = unknown.
    pub category: u64,
    /// 0 = unknown, or the log has no brands.
    pub brand: u64,
    /// The seller; 0 = unknown, or the log has no shops.
    pub shop: u64,
    /// 0 = unknown.
    pub price: f32,
    pub action: Action,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A log read from disk, its events in file order.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub format: Format,
    /// The path it was read from, for reports.
    pub name: String,
    pub events: Vec<LogEvent>,
    /// The platform's offset from UTC, for requests' local time.
    pub utc_offset_minutes: i32,
}

/// Reads the log at `path`: in `format` if given, else in the format [`detect`] finds. A
/// generic CSV needs its `mapping` (and a mapping means a generic CSV).
pub fn load(
    path: &Path,
    format: Option<Format>,
    mapping: Option<&generic::Mapping>,
) -> Result<Loaded, LoadError> {
    let format = match (format, mapping) {
        (Some(f), _) => f,
        (None, Some(_)) => Format::Csv,
        (None, None) => detect(path)?,
    };
    // MovieLens is a folder; its ratings file stands for it.
    let folder = || {
        if path.is_dir() {
            path.to_owned()
        } else {
            path.parent().map_or_else(PathBuf::new, Path::to_owned)
        }
    };
    // The others are one file; a folder stands for its file of the known name.
    let file = |name: &str| {
        if path.is_dir() {
            path.join(name)
        } else {
            path.to_owned()
        }
    };
    let (events, utc_offset_minutes) = match format {
        Format::Taobao => (
            taobao::events(&taobao::load(&file(taobao::FILE_NAME))?),
            (taobao::UTC_OFFSET_SECONDS / 60) as i32,
        ),
        Format::Rees46 => (rees46::events(&rees46::load(&file(rees46::FILE_NAME))?), 0),
        Format::Tmall => (
            tmall::events(&tmall::load(&file(tmall::FILE_NAME))?),
            tmall::UTC_OFFSET_MINUTES,
        ),
        Format::MovieLens100k => (movielens::MovieLens::load(&folder())?.events(), 0),
        Format::MovieLensLatest => (movielens::Latest::load(&folder())?.events(), 0),
        Format::Csv => {
            let Some(mapping) = mapping else {
                return Err(malformed(
                    &path.display().to_string(),
                    0,
                    "a generic CSV needs its column mapping (--columns or --mapping, see docs/logs.md)",
                ));
            };
            (generic::load(path, mapping)?, mapping.utc_offset_minutes)
        }
    };
    Ok(Loaded {
        format,
        name: path.display().to_string(),
        events,
        utc_offset_minutes,
    })
}
