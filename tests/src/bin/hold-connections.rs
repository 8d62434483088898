//! Opens N idle TCP connections to an address and holds them until its standard
//! input closes (or a line arrives), then exits, closing them all at once.
//!
//! `hold-connections ADDR N` prints `ready OPENED LIMIT` once every connect has
//! been tried (OPENED may be below N if the descriptor limit, LIMIT, is lower).
//! The hostile-HTTP suite runs it as a child so the 10,000 client sockets do
//! not count against the test process's own descriptor limit, where the edge's
//! 10,000 server-side sockets live.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: hold-connections ADDR N");
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: hold-connections ADDR N");
    let limit = relay_tests::hostile::raise_nofile_limit();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("hold-connections: connect failed after {}: {e}", held.len());
                break;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {} {limit}", held.len());
    let _ = out.flush();
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(held);
}
