//! The `relay` binary: parses the command line (CONTRACT.md §1), validates
//! the settings, and starts the chosen subcommand.
//!
//! A bad or missing setting exits with status 2 and one line on stderr,
//! `relay: <what is wrong, naming the variable>`.

use std::fmt::Display;
use std::process::exit;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::error::ErrorKind;
use clap::Parser;

use relay::config::{self, Cli, Command, LogConfig};
use relay::{auth, demo, edge, gateway, logging, metrics};

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
            let signal = shutdown_signal();
            let opts = demo::DemoOptions {
                bind: cfg.bind,
                seed: cfg.seed.unwrap_or_else(rand::random),
                enable_ws_bridge: cfg.enable_ws_bridge,
                control: cfg.demo_control,
                role_period: None,
                replay_capacity: None,
            };
            let running = demo::Demo::start_with_secret(opts, cfg.session_secret)
                .unwrap_or_else(|e| fail(format!("cannot start the demo on {}: {e}", cfg.bind)));
            println!("relay demo is running: open http://{}/", running.addr());
            println!("session token (user Ada, chat:write + voice:moderate):");
            println!("{}", running.token);
            let _ = signal.recv();
            log::info!("shutting down");
            running.shutdown();
        }
        Command::Edge(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.log);
            let settings = edge::EdgeSettings::from_config(&cfg);
            let metrics = Arc::new(metrics::Metrics::new());
            // The handler goes in first: a SIGTERM right after start must still
            // shut down cleanly, not kill the process mid-way.
            let signal = shutdown_signal();
            let edge = edge::Edge::start(settings, metrics)
                .unwrap_or_else(|e| fail(format!("cannot start the edge on {}: {e}", cfg.bind)));
            let _ = signal.recv();
            log::info!("shutting down");
            edge.shutdown();
        }
        Command::Gateway(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.log);
            let metrics = Arc::new(metrics::Metrics::new());
            let signal = shutdown_signal();
            let gw = gateway::Gateway::start(gateway::Settings::from_config(&cfg), metrics)
                .unwrap_or_else(|e| stop(e));
            // Runs until Ctrl-C / SIGTERM, or until Discord ends the session for good
            // (bad token, disallowed intents): then exit non-zero with that one line.
            crossbeam_channel::select! {
                recv(signal) -> _ => {
                    log::info!("shutting down");
                    gw.shutdown();
                }
                recv(gw.fatal()) -> fatal => {
                    let line = fatal.map_or_else(|_| "the Discord session ended".to_owned(), |e| e.to_string());
                    gw.shutdown();
                    stop(line);
                }
            }
        }
        Command::All(args) => {
            let cfg = args.validate().unwrap_or_else(|e| fail(e));
            start_logging(&cfg.edge.log);
            // One registry, so the edge's /metrics shows the gateway's series too.
            let metrics = Arc::new(metrics::Metrics::new());
            let signal = shutdown_signal();
            let gw = gateway::Gateway::start(
                gateway::Settings::from_config(&cfg.gateway),
                metrics.clone(),
            )
            .unwrap_or_else(|e| stop(e));
            let edge = edge::Edge::start(edge::EdgeSettings::from_config(&cfg.edge), metrics)
                .unwrap_or_else(|e| {
                    fail(format!("cannot start the edge on {}: {e}", cfg.edge.bind))
                });
            crossbeam_channel::select! {
                recv(signal) -> _ => {
                    log::info!("shutting down");
                    edge.shutdown();
                    gw.shutdown();
                }
                recv(gw.fatal()) -> fatal => {
                    let line = fatal.map_or_else(|_| "the Discord session ended".to_owned(), |e| e.to_string());
                    edge.shutdown();
                    gw.shutdown();
                    stop(line);
                }
            }
        }
    }
}

/// A channel that receives on Ctrl-C or SIGTERM. `ctrlc`'s `termination` feature
/// adds SIGTERM (what `docker stop`, systemd and Kubernetes send), so a managed
/// process also closes its Discord session with 1000 and its sockets cleanly.
/// Call once per process.
fn shutdown_signal() -> crossbeam_channel::Receiver<()> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })
    .unwrap_or_else(|e| fail(format!("cannot install the signal handler: {e}")));
    rx
}

fn start_logging(log: &LogConfig) {
    if let Err(e) = logging::init(log.format, &log.spec) {
        fail(e);
    }
}

/// Prints `relay: <msg>` and exits with status 1: the settings were fine, but
/// running failed (the port is taken, Discord refused the bot).
fn stop(msg: impl Display) -> ! {
    eprintln!("relay: {msg}");
    exit(1)
}

/// Prints `relay: <msg>` and exits with status 2.
fn fail(msg: impl Display) -> ! {
    eprintln!("relay: {msg}");
    exit(2)
}
