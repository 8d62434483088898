//! A real `redis-server` (Debian's package; `valkey-server` works too) for
//! tests and benchmarks: started on a free loopback port in its own temporary
//! directory, with persistence off, and killed when dropped. `.ci/run`
//! installs the package; without it [`RedisServer::start`] panics saying so
//! (a Redis test never skips itself).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// See the module docs.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let binary = find_binary();
        let dir = tempfile::Builder::new()
            .prefix("relay-redis-")
            .tempdir()
            .expect("temp dir for redis-server");
        // The port is free when picked; another process could take it before
        // redis-server binds, so a server that exits at once gets a new port.
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn_and_wait(&binary, port, dir.path()) {
                return RedisServer {
                    child: Some(child),
                    port,
                    dir,
                    binary,
                };
            }
        }
        panic!(
            "redis-server did not start on a loopback port after 5 tries (see its log in {})",
            dir.path().display()
        );
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh client connection, for tests to look inside.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to the test redis-server")
    }

    /// Kills the server at once (SIGKILL: no goodbye to clients), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the server again on the same port, empty (persistence is off),
    /// and waits until it answers. Panics if the port was taken meanwhile.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_and_wait(&self.binary, self.port, self.dir.path());
        assert!(
            self.child.is_some(),
            "redis-server did not restart on port {} (log in {})",
            self.port,
            self.dir.path().display()
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the server on `port` with its files in `dir`; `None` if it exits
/// (the port was taken) or does not answer in time.
fn spawn_and_wait(binary: &Path, port: u16, dir: &Path) -> Option<Child> {
    let log = std::fs::File::create(dir.join("redis.log")).expect("redis log file");
    let mut child = Command::new(binary)
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ])
        .args(["--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let deadline = Instant::now() + READY_WITHIN;
    // Polling PING is the readiness probe: redis-server has no other signal.
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        if ping(port) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn find_binary() -> PathBuf {
    for name in ["redis-server", "valkey-server"] {
        for dir in std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let candidate = dir.join(name);
            if Path::new(&candidate).is_file() {
                return candidate;
            }
        }
    }
    panic!("Redis tests need Debian's redis-server (or valkey-server): `apt-get install redis-server`, as .ci/run does");
}
