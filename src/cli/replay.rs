//! `tactful replay` and `tactful fit`: the offline evaluation of `crate::replay` from the
//! command line. No server is involved: the policies run in this process, over a log file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::EXIT_USAGE;
use crate::rank::Policy;
use crate::replay::{self, Arm, Log, ReplayConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Taobao UserBehavior CSV (`user_id,item_id,category_id,behavior,unix_ts`).
    Taobao,
    /// A MovieLens 100K folder (`u.data`, `u.item`, `u.genre`).
    Movielens,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The log: a Taobao UserBehavior.csv, or a MovieLens 100K folder.
    #[arg(long)]
    pub log: PathBuf,
    /// Its format [default: movielens for a folder, else taobao].
    #[arg(long, value_enum)]
    pub format: Option<LogFormat>,
    /// Where the fitting part ends: a date (YYYY-MM-DD, midnight in the log's local time,
    /// UTC+8 for Taobao) or unix seconds [default: two thirds into the log's time span].
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
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
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
    let format = args.format.unwrap_or(if args.log.is_dir() {
        LogFormat::Movielens
    } else {
        LogFormat::Taobao
    });
    let log = match format {
        LogFormat::Taobao => Log::taobao(&args.log),
        LogFormat::Movielens => Log::movielens(&args.log),
    }
    .map_err(|e| e.to_string())?;
    let (first, last) = match (log.events.first(), log.events.last()) {
        (Some(f), Some(l)) => (f.at_ms, l.at_ms),
        _ => return Err(format!("{}: the log has no events", args.log.display())),
    };
    let until = match &args.fit_until {
        None => first + (last - first) * 2 / 3,
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
    let cfg = ReplayConfig {
        fit_until_ms: until,
        k: args.k,
        warmup: args.warmup,
        progress: !args.quiet,
        ..ReplayConfig::default()
    };
    let report = replay::run(&log, tested, &cfg);
    let command: Vec<String> = std::env::args().skip(1).collect();
    let markdown = report.markdown(&format!("cargo run --release -- {}", command.join(" ")));
    print!("{markdown}");
    for (path, text) in [(&args.out, markdown), (&args.svg, report.svg())] {
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
            fit_until: fit_until.map(str::to_owned),
        }
    }

    #[test]
    fn the_split_is_a_local_date_unix_seconds_or_two_thirds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log.csv");
        std::fs::write(&file, "1,2,3,pv,1512000000\n1,4,3,pv,1512090000\n").unwrap();
        let until = |s| load(&taobao_args(s, &file)).map(|(_, u)| u);
        assert_eq!(until(Some("2017-12-01")), Ok(1_512_057_600_000));
        assert_eq!(until(Some("1512050000")), Ok(1_512_050_000_000));
        assert_eq!(until(None), Ok(1_512_060_000_000));
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
        assert!(super::super::Cli::try_parse_from(["tactful", "fit", "--log", "x.csv"]).is_ok());
    }
}
