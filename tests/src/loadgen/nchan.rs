//! nginx + nchan, the C fan-out hub, as a child process for `loadgen --against
//! nchan`: Debian's `nginx` and `libnginx-mod-nchan` (`bash tests/nchan/setup.sh`
//! installs them), run from `tests/nchan/nginx.conf.template` in a temporary
//! prefix directory with `nginx -p <dir> -c <dir>/nginx.conf -g 'daemon off;'`.
//!
//! Events enter through [`Publisher`]: one keep-alive HTTP/1.1 connection from
//! the load generator that POSTs each event body to `/pub` and reads the answer
//! before the next. Subscribers are the load generator's usual SSE client on
//! `/sub` (EventSource). CPU and RSS are the sums over the master and its
//! workers, read from `/proc`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::sys::{self, ProcSample};

/// The config template, with `@PREFIX@`, `@PORT@`, `@NCHAN_MODULE@` and
/// `@WORKER_CONNECTIONS@` to fill in.
pub const TEMPLATE: &str = include_str!("../../nchan/nginx.conf.template");

const SETUP_HINT: &str = "install them with `bash tests/nchan/setup.sh`";

/// Where nginx and the nchan module are.
#[derive(Clone, Debug)]
pub struct NchanSetup {
    /// The nginx binary (`NGINX_BIN`, else `nginx` on PATH, else /usr/sbin/nginx).
    pub nginx: PathBuf,
    /// `ngx_nchan_module.so` (`NCHAN_MODULE`, else Debian's path).
    pub module: PathBuf,
    /// `nginx -v`.
    pub version: String,
}

impl NchanSetup {
    /// Finds nginx and the module, or says how to install them.
    pub fn find() -> io::Result<NchanSetup> {
        let nginx = std::env::var_os("NGINX_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join("nginx"))
                        .find(|p| p.is_file())
                })
            })
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
        if !nginx.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("nginx not found ({}): {SETUP_HINT}", nginx.display()),
            ));
        }
        let module = std::env::var_os("NCHAN_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/nginx/modules/ngx_nchan_module.so"));
        if !module.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "nchan module not found ({}): {SETUP_HINT}",
                    module.display()
                ),
            ));
        }
        let out = Command::new(&nginx).arg("-v").output()?;
        let version = String::from_utf8_lossy(&out.stderr)
            .trim()
            .trim_start_matches("nginx version: ")
            .to_owned();
        let nchan = Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", "libnginx-mod-nchan"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                format!(
                    ", libnginx-mod-nchan {}",
                    String::from_utf8_lossy(&o.stdout)
                )
            })
            .unwrap_or_default();
        Ok(NchanSetup {
            nginx,
            module,
            version: format!("{version}{nchan}"),
        })
    }
}

/// A running nginx master (the child) and its workers.
pub struct NchanProc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its prefix directory (config, pid, error.log).
    pub dir: PathBuf,
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl NchanProc {
    /// Writes the config for a free loopback port and starts nginx; waits until
    /// it answers HTTP.
    pub fn start(setup: &NchanSetup, log_dir: &Path, nofile: u64) -> io::Result<NchanProc> {
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let dir = log_dir.join(format!("relay-loadgen-nchan-{port}"));
            fs::create_dir_all(dir.join("tmp"))?;
            let conf = TEMPLATE
                .replace("@PREFIX@", &dir.display().to_string())
                .replace("@PORT@", &port.to_string())
                .replace("@NCHAN_MODULE@", &setup.module.display().to_string())
                .replace(
                    "@WORKER_CONNECTIONS@",
                    &nofile.saturating_sub(64).clamp(1024, 65536).to_string(),
                );
            let conf_path = dir.join("nginx.conf");
            fs::write(&conf_path, conf)?;
            let child = Command::new(&setup.nginx)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf_path)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(dir.join("stderr.log"))?)
                .spawn()?;
            let mut proc = NchanProc { child, addr, dir };
            match proc.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(proc),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("nginx did not start")))
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "nginx exited with {status}; see {}",
                    self.dir.join("stderr.log").display()
                )));
            }
            // Any HTTP answer on /pub (a GET asks for the channel's info).
            let answered = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(1)))?;
                    s.write_all(b"GET /pub HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                    let mut b = [0u8; 12];
                    s.read_exact(&mut b)?;
                    Ok(b.starts_with(b"HTTP/1."))
                })
                .unwrap_or(false);
            if answered && !self.workers().is_empty() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "nginx not ready within {timeout:?}; see {}",
            self.dir.display()
        )))
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pids of the master's children (its workers).
    pub fn workers(&self) -> Vec<u32> {
        sys::children(self.pid())
    }

    /// CPU time and RSS summed over the master and its workers; `threads`
    /// counts processes.
    pub fn sample(&self) -> ProcSample {
        let mut total = ProcSample {
            at: Instant::now(),
            cpu_secs: 0.0,
            rss_kib: 0,
            threads: 0,
        };
        for pid in std::iter::once(self.pid()).chain(self.workers()) {
            if let Some(s) = sys::sample(&pid.to_string()) {
                total.cpu_secs += s.cpu_secs;
                total.rss_kib += s.rss_kib;
                total.threads += 1;
            }
        }
        total
    }

    /// PSS summed over the master and its workers, KiB (shared pages split
    /// between the processes that map them, so nothing is counted twice).
    pub fn pss_kib(&self) -> u64 {
        std::iter::once(self.pid())
            .chain(self.workers())
            .filter_map(sys::pss_kib)
            .sum()
    }

    /// Lines of its error.log that tell of a crashed worker or an alert.
    pub fn trouble(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("error.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                (l.contains("[alert]") && !l.contains("setrlimit"))
                    || l.contains("[crit]")
                    || l.contains("[emerg]")
                    || l.contains("exited on signal")
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for NchanProc {
    fn drop(&mut self) {
        // SIGKILL on the master would orphan the workers: ask for a fast
        // shutdown (TERM), then kill whatever is left.
        let workers = self.workers();
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for w in workers {
            if Path::new(&format!("/proc/{w}")).exists() {
                // SAFETY: kill(2) on a worker of our own nginx.
                unsafe {
                    libc::kill(w as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

/// One keep-alive HTTP/1.1 connection that POSTs events to `/pub`.
pub struct Publisher {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Answers other than 201/202, and transport errors.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
}

impl Publisher {
    /// Connects (TCP_NODELAY, 5 s timeouts).
    pub fn connect(addr: SocketAddr) -> io::Result<Publisher> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Publisher {
            stream,
            buf: Vec::with_capacity(4096),
            errors: 0,
            first_error: None,
        })
    }

    /// POSTs `body` and reads the whole answer; counts a failure instead of
    /// returning it.
    pub fn publish(&mut self, body: &str) {
        if let Err(e) = self.try_publish(body) {
            self.errors += 1;
            self.first_error.get_or_insert(e.to_string());
        }
    }

    fn try_publish(&mut self, body: &str) -> io::Result<()> {
        let req = format!(
            "POST /pub HTTP/1.1\r\nHost: nchan\r\nContent-Type: application/json\r\n\
             Accept: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(req.as_bytes())?;
        // Read the head, then Content-Length bytes of body.
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::other("nchan closed the publisher connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while self.buf.len() < end + len {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::other("nchan closed the publisher connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        if status == 201 || status == 202 {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "/pub answered {status}: {}",
                String::from_utf8_lossy(&self.buf[end..]).trim()
            )))
        }
    }
}

/// An event body for nchan: relay's own `data` for a probe (`sample`, as a
/// relay subscriber received it) with the probe's content put in, so both hubs
/// carry the same bytes; a stand-in of the same shape when there is none.
pub fn body_template(sample: Option<&str>) -> (String, String) {
    const KEY: &str = "\"content\":\"";
    if let Some(s) = sample {
        if let Some(i) = s.find(KEY) {
            let start = i + KEY.len();
            if let Some(len) = s[start..].find('"') {
                return (s[..start].to_owned(), s[start + len..].to_owned());
            }
        }
    }
    (
        r#"{"version":"1.0","event":"messageCreate","data":{"id":"1","channelId":"100","guildId":"1","author":{"id":"9","username":"tester","avatar":null,"bot":false},"content":""#.to_owned(),
        r#"","timestamp":"2026-01-01T00:00:00.000Z"}}"#.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::subscribers::{parse_probe, probe_content};

    #[test]
    fn template_has_its_placeholders() {
        for p in [
            "@PREFIX@",
            "@PORT@",
            "@NCHAN_MODULE@",
            "@WORKER_CONNECTIONS@",
        ] {
            assert!(TEMPLATE.contains(p), "{p}");
        }
    }

    #[test]
    fn bodies_carry_the_probe() {
        let sample = r#"{"event":"messageCreate","data":{"content":"lg 0 0 5","x":1}}"#;
        for s in [Some(sample), None] {
            let (a, b) = body_template(s);
            let body = format!("{a}{}{b}", probe_content(1, 7, 99));
            let p = parse_probe(&body).expect("probe");
            assert_eq!((p.phase, p.seq, p.sent_ns), (1, 7, 99));
        }
    }
}
