//! The `relay` binary.

// The edge and gateway handlers that call these modules are wired in
// separately; until then their API has no caller in the binary.
#[allow(dead_code)]
mod auth;
#[allow(dead_code)]
mod logging;
#[allow(dead_code)]
mod metrics;
#[allow(dead_code)]
mod secret;

fn main() {
    eprintln!("relay: subcommands arrive with the edge and gateway work");
    std::process::exit(2);
}
