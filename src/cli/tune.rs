//! `tactful tune`: chooses the policy's main knobs on a log's fitting part (`crate::replay::tune`)
//! and writes the pick as a policy file for `tactful replay --policy`. No server is involved.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::replay::{LogArgs, load, usage, write};
use crate::replay::ReplayConfig;
use crate::replay::tune::{self, TuneConfig};

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The least share of identity's HitRate@10 the picked policy keeps on the inner
    /// evaluation part (the last 30% of the fitting part's events).
    #[arg(long, default_value_t = tune::DEFAULT_MIN_KEPT)]
    pub min_kept: f64,
    /// Write the picked policy TOML here.
    #[arg(long, default_value = "tuned.toml")]
    pub out: PathBuf,
    /// Write the frontier chart (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the Markdown table here too (it is printed either way).
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Items shown per decision.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Views a user needs before their next one is a decision point.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `tactful tune`.
pub fn run_tune(args: TuneArgs) -> ExitCode {
    let (log, until) = match load(&args.log) {
        Ok(x) => x,
        Err(e) => return usage(e),
    };
    if !(1..=100).contains(&args.k) {
        return usage("--k must be from 1 to 100");
    }
    if !(args.min_kept.is_finite() && (0.0..=1.0).contains(&args.min_kept)) {
        return usage("--min-kept must be a share from 0 to 1, e.g. 0.95");
    }
    let cfg = TuneConfig {
        replay: ReplayConfig {
            fit_until_ms: until,
            k: args.k,
            warmup: args.warmup,
            ..ReplayConfig::default()
        },
        min_kept: args.min_kept,
        progress: !args.quiet,
        ..TuneConfig::default()
    };
    let tuning = match tune::tune(&log, &cfg) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let command: Vec<String> = std::env::args().skip(1).collect();
    let markdown = tuning.markdown(&format!("cargo run --release -- {}", command.join(" ")));
    print!("{markdown}");
    if let Err(e) = write(&args.out, &tuning.toml()) {
        return usage(e);
    }
    for (path, text) in [(&args.table, markdown), (&args.svg, tuning.svg())] {
        if let Some(path) = path
            && let Err(e) = write(path, &text)
        {
            return usage(e);
        }
    }
    if !args.quiet {
        let p = tuning.picked_point();
        eprintln!(
            "tactful: {} written to {} ({} kept, repeated ignored exposure {:+.1}% on the inner evaluation part)",
            p.label(),
            args.out.display(),
            format_args!("{:.1}%", p.measures.kept * 100.0),
            -p.measures.ignored_removed * 100.0
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_parses_with_its_defaults() {
        use clap::Parser;
        let cli = super::super::Cli::try_parse_from([
            "tactful",
            "tune",
            "--log",
            "x.csv",
            "--fit-until",
            "2017-12-01",
            "--svg",
            "frontier.svg",
        ])
        .unwrap();
        let super::super::Command::Tune(args) = cli.command else {
            panic!("not tune");
        };
        assert_eq!(args.min_kept, 0.95);
        assert_eq!(args.out.to_str(), Some("tuned.toml"));
        assert_eq!(args.log.fit_until.as_deref(), Some("2017-12-01"));
        assert_eq!(args.svg.unwrap().to_str(), Some("frontier.svg"));
        assert!(
            super::super::Cli::try_parse_from([
                "tactful",
                "tune",
                "--log",
                "x",
                "--min-kept",
                "0.9"
            ])
            .is_ok()
        );
    }
}
