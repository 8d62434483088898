//! The `relay` binary: parses the command line (CONTRACT.md §1), validates
//! the settings, and starts the chosen subcommand.
//!
//! A bad or missing setting exits with status 2 and one line on stderr,
//! `relay: <what is wrong, naming the variable>`.

// The edge and gateway handlers that call most of these modules are wired in
// separately; until then parts of their API have no caller in the binary.
#[allow(dead_code)]
mod auth;
#[allow(dead_code)]
mod config;
#[allow(dead_code)]
mod logging;
#[allow(dead_code)]
mod metrics;
#[allow(dead_code)]
mod secret;

use std::fmt::Display;
use std::process::exit;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::error::ErrorKind;
use clap::Parser;

use crate::config::{Cli, Command, LogConfig};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => fail(config::error_line(&e)),
        },
    };
    match cli.command {
        Command::Token(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let keys = auth::SessionKeys::new(&cfg.session_secret);
            println!(
                "{}",
                keys.issue(&cfg.sub, cfg.name.as_deref(), &cfg.roles, cfg.ttl, now)
            );
        }
        Command::Demo(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.log);
            not_built("demo");
        }
        Command::Edge(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.log);
            not_built("edge");
        }
        Command::Gateway(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.log);
            not_built("gateway");
        }
        Command::All(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.edge.log);
            not_built("all");
        }
    }
}

fn start_logging(log: &LogConfig) {
    if let Err(e) = logging::init(log.format, &log.spec) {
        fail(e);
    }
}

fn not_built(subcommand: &str) -> ! {
    fail(format!("{subcommand} is not built yet"))
}

/// Prints `relay: <msg>` and exits with status 2.
fn fail(msg: impl Display) -> ! {
    eprintln!("relay: {msg}");
    exit(2)
}
