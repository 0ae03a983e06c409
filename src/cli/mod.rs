//! The command line: `tactful serve` runs the sidecar; `rank`, `event` and `profile` are a
//! client for trying it by hand and scripting it. Exit codes follow sysexits: 64 for bad usage
//! or configuration, 69 when the server cannot be reached, 1 when a call fails.

mod client;
mod load;
mod serve;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::rank::DataDimension;
use crate::state::EventKind;

pub const EXIT_USAGE: u8 = 64;
pub const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "tactful",
    version,
    about = "A re-ranking sidecar that keeps users from tuning out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gRPC server (defaults built in: no file or other server needed).
    Serve(ServeArgs),
    /// Re-rank a JSON file of candidates for a user and print the result.
    Rank(RankArgs),
    /// Record one event for a user (impression, click, block-brand, ...).
    Event(EventArgs),
    /// Show or change a user's preference centre.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Load-test Rank with synthetic requests (closed loop, bounded, loopback by default).
    Bench(load::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: TACTFUL_LISTEN] [default: 127.0.0.1:50051].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// TOML configuration file [env: TACTFUL_CONFIG].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where user state is kept: disk, memory or redis://host:port/db [env: TACTFUL_STATE]
    /// [default: disk].
    #[arg(long)]
    pub state: Option<String>,
    /// Data directory of the disk state [env: TACTFUL_DATA_DIR] [default: tactful-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Target {
    /// Server address.
    #[arg(long, env = "TACTFUL_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Give up after this many milliseconds (sent as the call's deadline).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct RankArgs {
    #[command(flatten)]
    pub target: Target,
    /// The user to rank for.
    #[arg(long)]
    pub user: String,
    /// JSON file: {"candidates": [...], "surface": ..., "locale": ...} or a bare list.
    #[arg(long)]
    pub candidates: PathBuf,
    /// How many items to return (0 = all survivors).
    #[arg(long, default_value_t = 0)]
    pub k: u32,
    /// Show each item's score breakdown and the dropped items.
    #[arg(long)]
    pub explain: bool,
    /// Named policy (default, identity, or one from the server's configuration).
    #[arg(long, default_value = "")]
    pub policy: String,
    /// Locale of the reasons, e.g. en or zh-CN (overrides the file).
    #[arg(long)]
    pub locale: Option<String>,
    /// Return an error instead of the upstream order when ranking cannot finish in time.
    #[arg(long)]
    pub strict: bool,
    /// Data dimensions not to use for this request only (e.g. cross-platform).
    #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
    pub deny: Vec<DataDimension>,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long)]
    pub user: String,
    /// impression, click, cart, favorite, purchase, search, not-interested, fewer-like-this,
    /// block-brand, unblock-brand, block-shop, unblock-shop.
    #[arg(value_parser = parse_event_kind)]
    pub kind: EventKind,
    #[arg(long, default_value_t = 0)]
    pub item: u64,
    #[arg(long, default_value_t = 0)]
    pub category: u64,
    #[arg(long, default_value_t = 0)]
    pub brand: u64,
    #[arg(long, default_value_t = 0)]
    pub shop: u64,
    #[arg(long, default_value_t = 0.0)]
    pub price: f32,
    /// Where the event was observed (e.g. cross-platform).
    #[arg(long, value_parser = parse_dimension)]
    pub source: Option<DataDimension>,
    /// Repeat the event this many times (e.g. several impressions).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Show what tactful holds about a user.
    Get {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
    },
    /// Erase everything tactful holds about a user (memory, log, snapshots, Redis).
    Forget {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
    },
    /// Grant or withdraw consent per data dimension, or switch personalisation.
    Consent {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        /// Dimensions to allow, comma-separated (e.g. location,social).
        #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
        grant: Vec<DataDimension>,
        /// Dimensions to withdraw, comma-separated (e.g. browsing).
        #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
        deny: Vec<DataDimension>,
        /// Switch personalisation on or off.
        #[arg(long, value_parser = parse_on_off)]
        personalization: Option<bool>,
    },
}

fn parse_dimension(s: &str) -> Result<DataDimension, String> {
    DataDimension::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = DataDimension::ALL.iter().map(|d| d.name()).collect();
        format!("unknown data dimension {s:?}; one of {}", names.join(", "))
    })
}

fn parse_event_kind(s: &str) -> Result<EventKind, String> {
    EventKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown event {s:?}; one of {}", names.join(", "))
    })
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{s:?} is not on or off")),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        other => client::run(other),
    }
}
