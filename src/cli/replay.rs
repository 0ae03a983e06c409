//! `tactful replay` and `tactful fit`: the offline evaluation of `crate::replay` from the
//! command line. No server is involved: the policies run in this process, over a log file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::EXIT_USAGE;
use crate::datasets::Format;
use crate::datasets::generic::Mapping;
use crate::rank::Policy;
use crate::replay::feedback::Simulation;
use crate::replay::fit::Fitted;
use crate::replay::{self, Arm, Log, ReplayConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Taobao UserBehavior CSV (`user_id,item_id,category_id,behavior,unix_ts`).
    Taobao,
    /// REES46 / Open CDP `events.csv` (`event_time,event_type,product_id,...`).
    Rees46,
    /// Tmall IJCAI-15 `user_log_format1.csv`, or its 11-column variant.
    Tmall,
    /// A MovieLens 100K folder (`u.data`, `u.item`, `u.genre`).
    Movielens,
    /// A MovieLens "latest" folder (`ratings.csv`, `movies.csv`).
    MovielensLatest,
    /// The platform's own CSV, read through `--columns` or `--mapping`.
    Csv,
}

impl From<LogFormat> for Format {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Taobao => Self::Taobao,
            LogFormat::Rees46 => Self::Rees46,
            LogFormat::Tmall => Self::Tmall,
            LogFormat::Movielens => Self::MovieLens100k,
            LogFormat::MovielensLatest => Self::MovieLensLatest,
            LogFormat::Csv => Self::Csv,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The log: a file, or a folder holding one (docs/logs.md lists the formats).
    #[arg(long)]
    pub log: PathBuf,
    /// Its format [default: told from the path and the first line; csv with a mapping].
    #[arg(long, value_enum)]
    pub format: Option<LogFormat>,
    /// The columns of a platform's own CSV:
    /// `user=COL,item=COL,time=COL[,category=..][,brand=..][,shop=..][,price=..][,action=..][,time_format=unix|unix_ms|datetime][,delimiter=..][,header=false][,utc_offset_minutes=N]`.
    #[arg(long, conflicts_with = "mapping")]
    pub columns: Option<String>,
    /// The same as a TOML file, which may also list the action words (docs/logs.md).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Where the fitting part ends: a date (YYYY-MM-DD, midnight in the log's local time,
    /// UTC+8 for Taobao) or unix seconds [default: the time two thirds of the events precede,
    /// a quantile of the timestamps, so a stray early or late row does not move it].
    #[arg(long)]
    pub fit_until: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The policy compared with `identity`: `fitted` (the default policy plus what `fit`
    /// learns from the fitting part), `default` (built in, nothing fitted), or a policy TOML
    /// file (the format `tactful fit` writes).
    #[arg(long, default_value = "fitted")]
    pub policy: String,
    /// Items shown per decision.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Views a user needs before their next one is a decision point.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Write the Markdown report here (it is printed either way).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the results as JSON here (schema in docs/logs.md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Simulate explicit feedback: on this share (0 to 1] of the shown items a user ignores,
    /// the user says "not interested", "fewer like this" or blocks the brand, heard by a third
    /// arm (the policy again); reports its violations and the relevance it costs.
    #[arg(long, value_name = "SHARE")]
    pub simulate_feedback: Option<f64>,
    /// The seed of the simulated feedback: the same seed gives the same words.
    #[arg(long, default_value_t = 0, requires = "simulate_feedback")]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Write the policy TOML here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub(super) fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tactful: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// The log and the fitting part's end (unix ms).
pub(super) fn load(args: &LogArgs) -> Result<(Log, i64), String> {
    let mapping = match (&args.columns, &args.mapping) {
        (Some(spec), _) => Some(Mapping::from_spec(spec).map_err(|e| format!("--columns: {e}"))?),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("--mapping {}: {e}", file.display()))?;
            Some(Mapping::from_toml(&text).map_err(|e| format!("{}: {e}", file.display()))?)
        }
        (None, None) => None,
    };
    let format = args.format.map(Format::from);
    match (format, &mapping) {
        (Some(Format::Csv), None) => {
            return Err("--format csv needs --columns or --mapping (see docs/logs.md)".into());
        }
        (Some(f), Some(_)) if f != Format::Csv => {
            return Err(format!(
                "--columns and --mapping read a platform's own CSV, not a {} log",
                f.name()
            ));
        }
        _ => {}
    }
    let log = Log::open(&args.log, format, mapping.as_ref()).map_err(|e| e.to_string())?;
    let Some(quantile) = log.quantile_ms(replay::DEFAULT_FIT_SHARE) else {
        return Err(format!("{}: the log has no events", args.log.display()));
    };
    let until = match &args.fit_until {
        None => quantile,
        Some(s) => match s.parse::<i64>() {
            Ok(secs) => secs * 1000,
            Err(_) => replay::local_midnight_ms(s, log.utc_offset_minutes)
                .ok_or_else(|| format!("--fit-until {s:?}: expected YYYY-MM-DD or unix seconds"))?,
        },
    };
    Ok((log, until))
}

pub(super) fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A fit that found nothing makes "fitted" the built-in default: say so, or a comparison of
/// the two would look like a finding.
fn warn_if_nothing_learned(fitted: &Fitted, log: &Log, until: i64) {
    if fitted.learned_nothing() {
        eprintln!(
            "tactful: warning: the fit learned nothing from the {} events before {} ({} purchases by {} users): no durable category, no complement pair; a fitted policy is the built-in default",
            log.split(until),
            crate::time::date_time_minutes(until, log.utc_offset_minutes),
            fitted.purchases,
            fitted.buyers
        );
    }
}

/// `tactful replay`.
pub fn run_replay(args: ReplayArgs) -> ExitCode {
    let (log, until) = match load(&args.log) {
        Ok(x) => x,
        Err(e) => return usage(e),
    };
    let tested = match args.policy.as_str() {
        "fitted" => None,
        "default" => Some(Arm {
            name: "default".into(),
            policy: Policy::default(),
        }),
        file => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => return usage(format!("--policy {file}: {e}")),
            };
            let policy: Policy = match toml::from_str(&text) {
                Ok(p) => p,
                Err(e) => return usage(format!("{file}: {e}")),
            };
            if let Err(e) = policy.validate("file") {
                return usage(format!("{file}: {e}"));
            }
            let name = Path::new(file)
                .file_stem()
                .map_or("policy".into(), |s| s.to_string_lossy().into_owned());
            Some(Arm { name, policy })
        }
    };
    if !(1..=100).contains(&args.k) {
        return usage("--k must be from 1 to 100");
    }
    if let Some(share) = args.simulate_feedback
        && !(share > 0.0 && share <= 1.0)
    {
        return usage("--simulate-feedback must be a share above 0 and at most 1");
    }
    let cfg = ReplayConfig {
        fit_until_ms: until,
        k: args.k,
        warmup: args.warmup,
        progress: !args.quiet,
        feedback: args.simulate_feedback.map(|share| Simulation {
            share,
            seed: args.seed,
        }),
        ..ReplayConfig::default()
    };
    let report = replay::run(&log, tested, &cfg);
    warn_if_nothing_learned(&report.fitted, &log, until);
    let command: Vec<String> = std::env::args().skip(1).collect();
    let markdown = report.markdown(&format!("cargo run --release -- {}", command.join(" ")));
    print!("{markdown}");
    let json = format!(
        "{}\n",
        serde_json::to_string_pretty(&report.json()).expect("a JSON value serialises")
    );
    for (path, text) in [
        (&args.out, markdown),
        (&args.svg, report.svg()),
        (&args.json, json),
    ] {
        if let Some(path) = path
            && let Err(e) = write(path, &text)
        {
            return usage(e);
        }
    }
    ExitCode::SUCCESS
}

/// `tactful fit`.
pub fn run_fit(args: FitArgs) -> ExitCode {
    let (log, until) = match load(&args.log) {
        Ok(x) => x,
        Err(e) => return usage(e),
    };
    let cfg = replay::ReplayConfig {
        fit_until_ms: until,
        ..Default::default()
    };
    let fitted = replay::fit_log(&log, &cfg);
    warn_if_nothing_learned(&fitted, &log, until);
    let about = format!(
        "{} before unix time {} ({} events)",
        log.name,
        until / 1000,
        log.split(until)
    );
    let text = fitted.to_toml(&about);
    match &args.out {
        Some(path) => {
            if let Err(e) = write(path, &text) {
                return usage(e);
            }
            eprintln!(
                "tactful: {} durable categories, {} complement pairs written to {}",
                fitted.durables.len(),
                fitted.complements.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taobao_args(fit_until: Option<&str>, file: &Path) -> LogArgs {
        LogArgs {
            log: file.to_owned(),
            format: None,
            columns: None,
            mapping: None,
            fit_until: fit_until.map(str::to_owned),
        }
    }

    #[test]
    fn the_split_is_a_local_date_unix_seconds_or_the_two_thirds_quantile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log.csv");
        std::fs::write(&file, "1,2,3,pv,1512000000\n1,4,3,pv,1512090000\n").unwrap();
        let until = |s| load(&taobao_args(s, &file)).map(|(_, u)| u);
        assert_eq!(until(Some("2017-12-01")), Ok(1_512_057_600_000));
        assert_eq!(until(Some("1512050000")), Ok(1_512_050_000_000));
        // Two events: the one at index ⌊2 · 2/3⌋ = 1 starts the measured part.
        assert_eq!(until(None), Ok(1_512_090_000_000));

        // Nine days of one event an hour; a stray row two months early moves the default
        // split by at most one event, where a split between the first and last times moved
        // by weeks.
        let mut text = String::new();
        for h in 0..9 * 24 {
            text += &format!("1,{},3,pv,{}\n", 10 + h, 1_511_539_200 + h * 3600);
        }
        std::fs::write(&file, &text).unwrap();
        let (log, clean) = load(&taobao_args(None, &file)).unwrap();
        assert_eq!(log.split(clean), 9 * 24 * 2 / 3);
        text += "1,9,3,pv,1506268800\n";
        std::fs::write(&file, &text).unwrap();
        let (log, stray) = load(&taobao_args(None, &file)).unwrap();
        assert!((stray - clean).abs() <= 3_600_000, "{stray} vs {clean}");
        assert!(log.split(stray).abs_diff(log.split(clean)) <= 1);
        assert!(
            until(Some("12/01/2017"))
                .unwrap_err()
                .contains("YYYY-MM-DD")
        );
        std::fs::write(&file, "1,2,3,look,1512000000\n").unwrap();
        assert!(
            until(None)
                .unwrap_err()
                .ends_with("log.csv:1: behavior \"look\" is not one of pv, cart, fav, buy")
        );
    }

    #[test]
    fn a_platform_csv_is_read_through_its_mapping_and_never_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.csv");
        std::fs::write(
            &file,
            "visitor,sku,ts,maker\nv1,A,1700000000,acme\nv2,B,1700000100,\n",
        )
        .unwrap();
        let mut args = taobao_args(None, &file);
        let err = load(&args).unwrap_err();
        assert!(
            err.contains("mine.csv: cannot tell the log's format"),
            "{err}"
        );
        args.columns = Some("user=visitor,item=sku,time=ts,brand=maker".into());
        let (log, _) = load(&args).unwrap();
        assert_eq!(log.events.len(), 2);
        assert!(log.has_brands);
        args.format = Some(LogFormat::Taobao);
        assert!(load(&args).unwrap_err().contains("not a taobao log"));
        args.columns = None;
        args.format = Some(LogFormat::Csv);
        assert!(
            load(&args)
                .unwrap_err()
                .contains("--format csv needs --columns or --mapping")
        );
        let mapping = dir.path().join("mine.toml");
        std::fs::write(
            &mapping,
            "user = \"visitor\"\nitem = \"sku\"\ntime = \"ts\"\n",
        )
        .unwrap();
        args.mapping = Some(mapping);
        assert_eq!(load(&args).unwrap().0.events.len(), 2);
        args.columns = Some("user=visitor".into());
        assert!(
            load(&args)
                .unwrap_err()
                .starts_with("--columns: missing field")
        );
    }

    #[test]
    fn replay_writes_its_results_as_json() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.csv");
        let mut text = String::new();
        for n in 0..60i64 {
            text += &format!(
                "{},{},{},pv,{}\n",
                1 + n % 3,
                10 + n % 7,
                1 + n % 2,
                1_512_000_000 + n * 60
            );
        }
        std::fs::write(&log, text).unwrap();
        let out = dir.path().join("r.json");
        let cli = super::super::Cli::try_parse_from([
            "tactful",
            "replay",
            "--log",
            log.to_str().unwrap(),
            "--quiet",
            "--json",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let super::super::Command::Replay(args) = cli.command else {
            panic!("not replay");
        };
        assert_eq!(run_replay(args), ExitCode::SUCCESS);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(json["log"], log.display().to_string());
        assert!(json["decisions"].as_u64().unwrap() > 0);
        for arm in ["identity", "policy"] {
            assert!(json["arms"][arm]["hit_rate"].is_f64(), "{json}");
        }
    }

    #[test]
    fn the_commands_parse() {
        use clap::Parser;
        let cli = super::super::Cli::try_parse_from([
            "tactful",
            "replay",
            "--log",
            "x.csv",
            "--fit-until",
            "2017-12-01",
            "--policy",
            "default",
            "--svg",
            "a.svg",
        ])
        .unwrap();
        let super::super::Command::Replay(args) = cli.command else {
            panic!("not replay");
        };
        assert_eq!((args.policy.as_str(), args.k), ("default", 10));
        assert_eq!(args.simulate_feedback, None);
        let cli = super::super::Cli::try_parse_from([
            "tactful",
            "replay",
            "--log",
            "x.csv",
            "--simulate-feedback",
            "0.05",
            "--seed",
            "7",
        ])
        .unwrap();
        let super::super::Command::Replay(args) = cli.command else {
            panic!("not replay");
        };
        assert_eq!((args.simulate_feedback, args.seed), (Some(0.05), 7));
        assert!(
            super::super::Cli::try_parse_from(["tactful", "replay", "--log", "x", "--seed", "7"])
                .is_err(),
            "a seed without a simulation is a mistake"
        );
        assert!(super::super::Cli::try_parse_from(["tactful", "fit", "--log", "x.csv"]).is_ok());
    }
}
