//! The command line: `tactful serve` runs the sidecar; `rank`, `event`, `profile` and
//! `catalog` are a client for trying it by hand and scripting it; `replay`, `fit` and `tune` evaluate policies offline
//! on real logs, with no server. Exit codes follow sysexits: 64 for bad usage
//! or configuration, 69 when the server cannot be reached, 1 when a call fails.

mod access;
mod catalog;
mod client;
mod keys;
mod load;
mod load_events;
mod payload;
mod proc_usage;
mod replay;
mod serve;
mod table;
mod ticker;
mod tune;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::pb;
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
    /// Fill the server's item catalog, so that Rank requests can carry ids and scores only.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Load-test Rank with synthetic requests (closed or open loop, bounded, loopback by
    /// default).
    Bench(load::BenchArgs),
    /// Replay a real log offline: the identity baseline against a policy, on relevance and
    /// avoidance (no server needed).
    Replay(replay::ReplayArgs),
    /// Fit a policy's durable categories and complements from a log's earlier part.
    Fit(replay::FitArgs),
    /// Choose a policy's main knobs on a log's earlier part (relevance kept against avoidance
    /// removed) and write the pick as a policy file.
    Tune(tune::TuneArgs),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the keys that encrypt user state at rest (rotate the master key).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the pseudonym a user id has in audit records and logs (needs the server's
    /// TACTFUL_USER_HASH_KEY in the environment).
    UserHash {
        /// The user id whose pseudonym to print.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: TACTFUL_LISTEN] [default: 127.0.0.1:50051].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Address of the admin HTTP server (/metrics, /live, /ready), or off
    /// [env: TACTFUL_ADMIN_LISTEN] [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|off")]
    pub admin_listen: Option<String>,
    #[command(flatten)]
    pub state_args: StateArgs,
}

/// The configuration file and where user state is kept: what `serve` and `keys rotate` both
/// read, the same way.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// TOML configuration file [env: TACTFUL_CONFIG].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where user state is kept: disk, memory, redis://host:port/db, or a Redis Cluster as
    /// redis-cluster://host:port,host:port; rediss://… and rediss-cluster://… over TLS
    /// [env: TACTFUL_STATE] [default: disk].
    #[arg(long)]
    pub state: Option<String>,
    /// Data directory of the disk state [env: TACTFUL_DATA_DIR] [default: tactful-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl StateArgs {
    /// These flags as configuration overrides (the rest left unset).
    pub fn overrides(self) -> crate::config::Overrides {
        crate::config::Overrides {
            config_file: self.config,
            state: self.state,
            data_dir: self.data_dir,
            ..crate::config::Overrides::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct Target {
    /// Server address: host:port (plain HTTP/2, as grpcurl takes it) or an http:// or
    /// https:// URL.
    #[arg(long, env = "TACTFUL_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Give up after this many milliseconds (sent as the call's deadline).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub access: Access,
}

/// What a server with TLS or tokens asks of its clients.
#[derive(Debug, Clone, Default, Args)]
pub struct Access {
    /// Bearer token, for servers that ask for one (prefer the environment variable: command
    /// lines show in `ps`).
    #[arg(long, env = "TACTFUL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's; needed for https:// addresses.
    #[arg(long, env = "TACTFUL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(long, env = "TACTFUL_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "TACTFUL_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must carry, if not the address's host.
    #[arg(long)]
    pub tls_domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct RankArgs {
    #[command(flatten)]
    pub target: Target,
    /// The user to rank for.
    #[arg(long)]
    pub user: String,
    /// JSON file: {"candidates": [...], "surface": ..., "locale": ..., "region": ...,
    /// "utc_offset_minutes": ...} or a bare list; or a RankRequest (or a list of Candidate) in
    /// the protobuf JSON mapping, as grpcurl -d @ and ghz take it (--user, --k and the other
    /// flags win over the file).
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
    /// Where the list is shown, e.g. home_feed or post_purchase (overrides the file).
    #[arg(long)]
    pub surface: Option<String>,
    /// The caller's region, e.g. CN-31 (overrides the file).
    #[arg(long)]
    pub region: Option<String>,
    /// The user's offset from UTC in minutes, e.g. 480 for UTC+8 (overrides the file).
    #[arg(long, allow_negative_numbers = true)]
    pub utc_offset: Option<i32>,
    /// Return an error instead of the upstream order when ranking cannot finish in time.
    #[arg(long)]
    pub strict: bool,
    /// Record the first N items of the answer as shown to the user (impressions).
    #[arg(long, default_value_t = 0, conflicts_with = "all_shown")]
    pub shown: u32,
    /// Record every item of the answer as shown to the user.
    #[arg(long)]
    pub all_shown: bool,
    /// Data dimensions not to use for this request only (e.g. cross-platform).
    #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
    pub deny: Vec<DataDimension>,
    /// Diversity method for this request instead of the policy's.
    #[arg(long, value_enum)]
    pub method: Option<DiversityMethod>,
    /// Weight of the similarity term (0 to 2) instead of the policy's.
    #[arg(long)]
    pub diversity_weight: Option<f32>,
    /// Share of positions for exploration (0 to 0.5) instead of the policy's.
    #[arg(long)]
    pub explore: Option<f32>,
    /// Calibration weight (0 to 1) instead of the policy's.
    #[arg(long)]
    pub calibration: Option<f32>,
    /// Long-tail boost (0 to 0.5) instead of the policy's.
    #[arg(long)]
    pub long_tail: Option<f32>,
}

/// How the final order is chosen (see the README's "Diversity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiversityMethod {
    Mmr,
    Dpp,
    Score,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub target: Target,
    /// The user the event is about (an opaque id, at most 256 bytes).
    #[arg(long)]
    pub user: String,
    /// impression, click, cart, favorite, purchase, search, not-interested, fewer-like-this,
    /// block-brand, unblock-brand, block-shop, unblock-shop.
    #[arg(value_parser = parse_event_kind)]
    pub kind: EventKind,
    /// The item (0 = none); impression, click, cart, favorite, purchase and not-interested need one.
    #[arg(long, default_value_t = 0)]
    pub item: u64,
    /// The item's category (0 = unknown); fewer-like-this needs it or --brand.
    #[arg(long, default_value_t = 0)]
    pub category: u64,
    /// The brand (0 = unknown); block-brand and unblock-brand need one.
    #[arg(long, default_value_t = 0)]
    pub brand: u64,
    /// The shop (0 = unknown); block-shop and unblock-shop need one.
    #[arg(long, default_value_t = 0)]
    pub shop: u64,
    /// For purchase: the price paid (cooling-off holds back cheaper offers of it).
    #[arg(long, default_value_t = 0.0)]
    pub price: f32,
    /// Where the event was observed (e.g. cross-platform).
    #[arg(long, value_parser = parse_dimension)]
    pub source: Option<DataDimension>,
    /// For purchase: the item's title, used in "goes with your new …".
    #[arg(long, default_value = "")]
    pub title: String,
    /// Repeat the event this many times (e.g. several impressions), a second apart, the last
    /// at the time given by --ago-minutes.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Stamp the event this many minutes in the past (0 = now). An impression counts as
    /// ignored once the next request comes or a few minutes pass without a click.
    #[arg(long, default_value_t = 0)]
    pub ago_minutes: u32,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE (with the TACTFUL_* environment on top, as `serve` would) and print the
    /// effective configuration as TOML; exit code 64 and the setting at fault if it is bad.
    Check {
        /// The TOML configuration file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Show what tactful holds about a user.
    Get {
        #[command(flatten)]
        target: Target,
        /// The user (an opaque id, at most 256 bytes).
        #[arg(long)]
        user: String,
    },
    /// Erase everything tactful holds about a user (memory, log, snapshots, Redis).
    Forget {
        #[command(flatten)]
        target: Target,
        /// The user (an opaque id, at most 256 bytes).
        #[arg(long)]
        user: String,
    },
    /// Grant or withdraw consent per data dimension, or switch personalisation.
    Consent {
        #[command(flatten)]
        target: Target,
        /// The user (an opaque id, at most 256 bytes).
        #[arg(long)]
        user: String,
        /// Dimensions to allow, comma-separated (e.g. location,social).
        #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
        grant: Vec<DataDimension>,
        /// Dimensions to withdraw, comma-separated (e.g. browsing).
        #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
        deny: Vec<DataDimension>,
        /// Switch personalisation on or off (on|off, also true|false).
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        personalization: Option<bool>,
        /// Sensitive categories to opt in to (ids; repeatable or comma-separated).
        #[arg(long, value_name = "ID", value_delimiter = ',')]
        sensitive_opt_in: Vec<u64>,
        /// Sensitive categories to opt out of (ids; repeatable or comma-separated).
        #[arg(long, value_name = "ID", value_delimiter = ',')]
        sensitive_opt_out: Vec<u64>,
    },
    /// Add, re-weight or remove interest tags (all in one change).
    ///
    /// A tag is KIND:ID, KIND being category or brand. --add takes KIND:ID[:LABEL][=WEIGHT]
    /// with WEIGHT in [0, 1] (default 1; the label may not contain '='), e.g.
    /// --add category:5:tea=0.8 --add brand:103 --remove category:7
    #[command(group(ArgGroup::new("changes").required(true).multiple(true).args(["add", "remove"])))]
    Interests {
        #[command(flatten)]
        target: Target,
        /// The user (an opaque id, at most 256 bytes).
        #[arg(long)]
        user: String,
        /// A tag to add or re-weight: KIND:ID[:LABEL][=WEIGHT] (repeatable).
        #[arg(
            long,
            value_name = "KIND:ID[:LABEL][=WEIGHT]",
            value_parser = parse_interest
        )]
        add: Vec<pb::InterestUpdate>,
        /// A tag to remove: KIND:ID (repeatable). A learned tag removed stays hidden.
        #[arg(long, value_name = "KIND:ID", value_parser = parse_interest_removal)]
        remove: Vec<pb::InterestUpdate>,
    },
    /// Take back a block, a "not interested" or a "fewer like this" (one per call).
    Undo {
        #[command(flatten)]
        target: Target,
        /// The user (an opaque id, at most 256 bytes).
        #[arg(long)]
        user: String,
        #[command(flatten)]
        what: UndoArgs,
    },
}

/// What `profile undo` takes back: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UndoArgs {
    /// Unblock this brand.
    #[arg(long, value_name = "ID")]
    pub block_brand: Option<u64>,
    /// Unblock this shop.
    #[arg(long, value_name = "ID")]
    pub block_shop: Option<u64>,
    /// Forget the "not interested" in this item.
    #[arg(long, value_name = "ITEM")]
    pub not_interested: Option<u64>,
    /// End "fewer like this" for this category.
    #[arg(long, value_name = "ID")]
    pub fewer_category: Option<u64>,
    /// End "fewer like this" for this brand.
    #[arg(long, value_name = "ID")]
    pub fewer_brand: Option<u64>,
}

impl UndoArgs {
    /// The kind and id to send.
    pub fn kind_and_id(&self) -> (pb::UndoKind, u64) {
        use pb::UndoKind as K;
        [
            (K::BlockBrand, self.block_brand),
            (K::BlockShop, self.block_shop),
            (K::NotInterested, self.not_interested),
            (K::FewerLikeThisCategory, self.fewer_category),
            (K::FewerLikeThisBrand, self.fewer_brand),
        ]
        .into_iter()
        .find_map(|(kind, id)| id.map(|id| (kind, id)))
        .unwrap_or((K::Unspecified, 0))
    }
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

/// `KIND:ID`, KIND being category or brand.
fn parse_tag(s: &str) -> Result<(pb::TagKind, u64), String> {
    let (kind, id) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not KIND:ID (e.g. category:5 or brand:103)"))?;
    tag_of(kind, id)
}

fn tag_of(kind: &str, id: &str) -> Result<(pb::TagKind, u64), String> {
    let kind = match kind {
        "category" => pb::TagKind::Category,
        "brand" => pb::TagKind::Brand,
        _ => return Err(format!("unknown tag kind {kind:?}; one of category, brand")),
    };
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .ok_or_else(|| format!("{id:?} is not an id (a number above 0)"))?;
    Ok((kind, id))
}

/// `KIND:ID[:LABEL][=WEIGHT]`: an interest tag to add or re-weight (weight 1 by default).
fn parse_interest(s: &str) -> Result<pb::InterestUpdate, String> {
    let (tag, weight) = match s.rsplit_once('=') {
        Some((tag, w)) => {
            let weight = w
                .parse::<f32>()
                .ok()
                .filter(|w| (0.0..=1.0).contains(w))
                .ok_or_else(|| format!("weight {w:?} is not a number in [0, 1]"))?;
            (tag, weight)
        }
        None => (s, 1.0),
    };
    let mut parts = tag.splitn(3, ':');
    let (kind, id) = match (parts.next(), parts.next()) {
        (Some(kind), Some(id)) => tag_of(kind, id)?,
        _ => {
            return Err(format!(
                "{s:?} is not KIND:ID[:LABEL][=WEIGHT] (e.g. category:5:tea=0.8)"
            ));
        }
    };
    Ok(pb::InterestUpdate {
        kind: kind.into(),
        id,
        weight,
        label: parts.next().map(str::to_owned),
    })
}

/// `KIND:ID`: an interest tag to remove.
fn parse_interest_removal(s: &str) -> Result<pb::InterestUpdate, String> {
    let (kind, id) = parse_tag(s)?;
    Ok(pb::InterestUpdate {
        kind: kind.into(),
        id,
        weight: 0.0,
        label: None,
    })
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{s:?} is not on or off")),
    }
}

/// `tactful config check FILE`.
fn check_config(file: &std::path::Path) -> ExitCode {
    use crate::config::{Config, Overrides, ProcessEnv};
    let overrides = Overrides {
        config_file: Some(file.to_owned()),
        ..Overrides::default()
    };
    let checked = Config::load(&ProcessEnv, &overrides).and_then(|config| {
        crate::grpc::check_tls(&config)?;
        // The catalog's file is read whole, as `serve` would, so a bad line is found here.
        let catalog = crate::app::open_catalog(&config)?;
        // The file parsed as a Config, so it is a TOML table.
        let raw: Option<toml::Table> = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.parse().ok());
        let policies = raw.as_ref().and_then(|t| t.get("policies"));
        let mut text = config.to_toml(policies)?;
        if let Some(path) = &config.catalog.path {
            text.push_str(&format!(
                "# catalog.path {}: {} items, all valid\n",
                path.display(),
                catalog.0.len()
            ));
        }
        // Read-only: the check never creates, locks for long or changes the data directory;
        // it says whether a server owns it (a second `serve` there would exit 64).
        if let crate::state::StateBackend::Disk(dir) = config.state_backend()?
            && dir.is_dir()
        {
            let owner = match crate::state::lock::DirLock::holder(&dir) {
                Some(0) => "in use by another process (pid unknown)".to_owned(),
                Some(pid) => format!("in use by pid {pid}"),
                None => "not in use".to_owned(),
            };
            text.push_str(&format!("# state.data_dir {}: {owner}\n", dir.display()));
        }
        // The key store as `serve` will open it: a wrong or missing master key is refused
        // here as it would be there.
        if let crate::state::StateBackend::Disk(dir) = config.state_backend()? {
            let keys = crate::state::describe_key_store(&dir, &config.state_config().keys)
                .map_err(|e| crate::config::ConfigError {
                    setting: "state.master_key_file".to_owned(),
                    message: e.to_string(),
                })?;
            text.push_str(&format!("# state.key_dir {keys}\n"));
        }
        Ok(text)
    });
    match checked {
        Ok(text) => {
            println!(
                "# {}: valid. Effective configuration (defaults <- file <- TACTFUL_* environment):",
                file.display()
            );
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tactful: configuration error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `tactful user-hash`: the pseudonym of `user` under the configured key.
fn user_hash(user: &str) -> ExitCode {
    let key = std::env::var(crate::config::ENV_USER_HASH_KEY).unwrap_or_default();
    if key.is_empty() {
        eprintln!(
            "tactful: {} is not set: without the server's key a pseudonym cannot be computed \
             (a server without one draws a random key per run)",
            crate::config::ENV_USER_HASH_KEY
        );
        return ExitCode::from(EXIT_USAGE);
    }
    println!("{}", crate::pseudonym::Pseudonyms::new(Some(&key)).of(user));
    ExitCode::SUCCESS
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Replay(args) => replay::run_replay(args),
        Command::Fit(args) => replay::run_fit(args),
        Command::Tune(args) => tune::run_tune(args),
        Command::UserHash { user } => user_hash(&user),
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Keys(command) => keys::run(command),
        other => client::run(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none()
                    && arg.get_long_help().is_none()
                    && !["help", "version"].contains(&id)
                {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "tactful", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }

    #[test]
    fn interest_tags_parse() {
        let t = parse_interest("category:5:trail running=0.8").unwrap();
        assert_eq!(t.kind(), pb::TagKind::Category);
        assert_eq!((t.id, t.weight), (5, 0.8));
        assert_eq!(t.label.as_deref(), Some("trail running"));
        let t = parse_interest("brand:103").unwrap();
        assert_eq!(
            (t.kind(), t.id, t.weight, t.label),
            (pb::TagKind::Brand, 103, 1.0, None)
        );
        let t = parse_interest("category:7:a:b").unwrap();
        assert_eq!(t.label.as_deref(), Some("a:b"));
        assert!(parse_interest("category:5=2").is_err());
        assert!(parse_interest("shop:5").is_err());
        assert!(parse_interest("category:0").is_err());
        assert!(parse_interest("5").is_err());
        let r = parse_interest_removal("category:7").unwrap();
        assert_eq!((r.id, r.weight), (7, 0.0));
        assert!(parse_interest_removal("category:7:tea").is_err());
    }

    #[test]
    fn the_profile_commands_parse() {
        let cli = Cli::try_parse_from([
            "tactful",
            "profile",
            "undo",
            "--user",
            "u",
            "--fewer-category",
            "4",
        ])
        .unwrap();
        let Command::Profile(ProfileCommand::Undo { what, .. }) = cli.command else {
            panic!("not undo");
        };
        assert_eq!(what.kind_and_id(), (pb::UndoKind::FewerLikeThisCategory, 4));
        for bad in [
            vec!["tactful", "profile", "undo", "--user", "u"],
            vec![
                "tactful",
                "profile",
                "undo",
                "--user",
                "u",
                "--block-brand",
                "1",
                "--block-shop",
                "2",
            ],
            vec!["tactful", "profile", "interests", "--user", "u"],
        ] {
            assert!(Cli::try_parse_from(bad.iter()).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "tactful",
            "profile",
            "interests",
            "--user",
            "u",
            "--remove",
            "brand:3",
        ]);
        assert!(cli.is_ok());
        let cli = Cli::try_parse_from([
            "tactful",
            "profile",
            "consent",
            "--user",
            "u",
            "--sensitive-opt-in",
            "40,41",
            "--sensitive-opt-out",
            "42",
        ])
        .unwrap();
        let Command::Profile(ProfileCommand::Consent {
            sensitive_opt_in,
            sensitive_opt_out,
            ..
        }) = cli.command
        else {
            panic!("not consent");
        };
        assert_eq!(
            (sensitive_opt_in, sensitive_opt_out),
            (vec![40, 41], vec![42])
        );
    }
}
