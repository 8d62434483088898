//! The edge under load runs as a child process (the release `relay` binary), so
//! its CPU time and RSS are its own, apart from the load generator's. A Drop
//! guard kills it, also when a scenario panics.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use relay::auth::SessionKeys;
use relay::secret::Secret;
use relay_runtime::clock;

use super::sys::{self, ProcSample};

/// The link token of every load run.
pub const LINK_TOKEN: &str = "loadgen-link-token";
/// The session secret of every load run.
pub const SESSION_SECRET: &str = "loadgen-session-secret";

/// Where the `relay` binary should be: beside the loadgen executable.
pub fn relay_binary() -> io::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("relay");
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: build it first with `cargo build --release -p relay-server --bin relay` \
                 (same CARGO_TARGET_DIR as the loadgen)",
                path.display()
            ),
        ))
    }
}

/// A running `relay edge` child.
pub struct EdgeProc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr (JSON log lines, at warn and above unless `RUST_LOG` says otherwise).
    pub log: PathBuf,
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl EdgeProc {
    /// Starts `relay edge` against `gateway_url` with rate limits raised out of
    /// the way, and waits until `/readyz` answers 200 (the link is up).
    pub fn start(binary: &Path, gateway_url: &str, log_dir: &Path) -> io::Result<EdgeProc> {
        Self::start_with(binary, gateway_url, log_dir, &[])
    }

    /// [`EdgeProc::start`] with `env` set on top of (and over) the defaults,
    /// e.g. `ACCESS=discord` or a more verbose `RUST_LOG`.
    pub fn start_with(
        binary: &Path,
        gateway_url: &str,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> io::Result<EdgeProc> {
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = log_dir.join(format!("relay-loadgen-edge-{port}.log"));
            let mut command = Command::new(binary);
            command
                .arg("edge")
                .env("BIND", addr.to_string())
                .env("GATEWAY_WS_URL", gateway_url)
                .env("LINK_TOKEN", LINK_TOKEN)
                .env("SESSION_SECRET", SESSION_SECRET)
                .env("RATE_LIMIT_BURST", "1000000")
                .env("RATE_LIMIT_REFILL", "1000000")
                .env("RATE_LIMIT_WINDOW_MS", "1000")
                .env("QUEUE_CAPACITY", "100000")
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log)?);
            let child = command.spawn()?;
            let mut edge = EdgeProc { child, addr, log };
            match edge.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(edge),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("edge did not start")))
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let url = format!("http://{}/readyz", self.addr);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "relay edge exited with {status}; see {}",
                    self.log.display()
                )));
            }
            if let Ok(resp) = agent.get(&url).call() {
                if resp.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "relay edge not ready within {timeout:?}; see {}",
            self.log.display()
        )))
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time and RSS now.
    pub fn sample(&self) -> ProcSample {
        sys::sample(&self.pid().to_string()).unwrap_or(ProcSample {
            at: Instant::now(),
            cpu_secs: 0.0,
            rss_kib: 0,
            threads: 0,
        })
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issues session tokens with the run's secret, as `relay token` would.
pub struct Tokens(SessionKeys);

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokens {
    /// Keys for [`SESSION_SECRET`].
    pub fn new() -> Self {
        Tokens(SessionKeys::new(&Secret::new(SESSION_SECRET)))
    }

    /// A one-hour token for `sub` with `roles`.
    pub fn issue(&self, sub: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        self.0.issue(
            sub,
            None,
            &roles,
            Duration::from_secs(3600),
            clock::unix_secs(),
        )
    }
}
