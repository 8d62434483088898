//! The `relay` binary.
fn main() {
    eprintln!("relay: subcommands arrive with the edge and gateway work");
    std::process::exit(2);
}
