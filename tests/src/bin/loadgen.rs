//! `loadgen`: drives a `relay edge` child process with SSE subscribers and
//! command calls from a test gateway in this process, and prints markdown
//! tables of latency, throughput, CPU and RSS. A benchmark, not a test.
//!
//! ```text
//! cargo build --release -p relay-server --bin relay
//! cargo run --release -p relay-tests --bin loadgen -- [--scenario NAME|all] [--duration-secs N] [--quick]
//! bash tests/nchan/setup.sh && cargo run --release -p relay-tests --bin loadgen -- --against nchan
//! ```
//! Scenarios, in the order `all` runs them: fanout, max-rate, commands,
//! commands-max, sc005, idle-rss, access (`ACCESS=roles` beside
//! `ACCESS=discord`, and the access recompute on 10,000 streams). After fanout or compare it writes
//! `docs/latency-vs-subscribers.svg`.
//! `--against nchan` (the `compare` scenario, not part of `all`) runs relay and
//! nginx + nchan side by side.

use std::path::Path;
use std::process::exit;
use std::time::Instant;

use relay_tests::loadgen::edge_proc::{relay_binary, Tokens};
use relay_tests::loadgen::nchan::NchanSetup;
use relay_tests::loadgen::scenarios::{self, Ctx, Report};
use relay_tests::loadgen::{now_ns, plot, sys};

const SCENARIOS: [&str; 7] = [
    "fanout",
    "max-rate",
    "commands",
    "commands-max",
    "sc005",
    "idle-rss",
    "access",
];

const USAGE: &str = "usage: loadgen [--scenario fanout|max-rate|commands|commands-max|sc005|idle-rss|access|access-fanout|access-recompute|redis|compare|all] [--against nchan] [--duration-secs N] [--quick]

  --scenario       which scenario to run (default: all, which leaves out compare);
                   access-fanout and access-recompute are the two halves of access
  --against nchan  the compare scenario: every fan-out row against relay and then
                   against nginx + nchan (install them first: bash tests/nchan/setup.sh)
  --duration-secs  measured seconds of each fanout size, of each compare row, of
                   of each commands rate, of sc005 and of each access fan-out row
                   (defaults 15, 10, 10, 60 and 10; with --quick 4, 3, 3, 10 and 4)
                   (commands-max steps are 4 s, 2 s with --quick)

After fanout or compare, the latency-vs-subscribers chart goes to
docs/latency-vs-subscribers.svg.
  --quick          everything shorter (~1 min in all), for smoke runs

Build the edge first: cargo build --release -p relay-server --bin relay";

fn main() {
    let _ = now_ns(); // fix the clock's origin
    let argv: Vec<String> = std::env::args().collect();
    let mut scenario = "all".to_owned();
    let mut duration = None;
    let mut quick = false;
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scenario" => scenario = args.next().cloned().unwrap_or_default(),
            "--duration-secs" => {
                duration = match args.next().and_then(|v| v.parse::<u64>().ok()) {
                    Some(d) if d > 0 => Some(d),
                    _ => usage_error("--duration-secs needs a whole number of seconds ≥ 1"),
                }
            }
            "--quick" => quick = true,
            "--against" => match args.next().map(String::as_str) {
                Some("nchan") => scenario = "compare".to_owned(),
                other => usage_error(&format!("--against takes nchan, not {other:?}")),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => usage_error(&format!("unknown argument {other}")),
        }
    }
    let chosen: Vec<&str> = if scenario == "all" {
        SCENARIOS.to_vec()
    } else if SCENARIOS.contains(&scenario.as_str())
        || ["compare", "access-fanout", "access-recompute", "redis"].contains(&scenario.as_str())
    {
        vec![scenario.as_str()]
    } else {
        usage_error(&format!("unknown scenario {scenario:?}"))
    };
    let relay = relay_binary().unwrap_or_else(|e| {
        eprintln!("loadgen: {e}");
        exit(2)
    });
    let nofile = sys::raise_nofile();
    let nchan = if chosen.contains(&"compare") {
        match NchanSetup::find() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("loadgen: {e}");
                exit(2)
            }
        }
    } else {
        None
    };
    let mut ctx = Ctx {
        relay,
        log_dir: std::env::temp_dir(),
        quick,
        duration,
        tokens: Tokens::new(),
        report: Report::default(),
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    for name in &chosen {
        let result = match *name {
            "fanout" => scenarios::fanout(&mut ctx),
            "max-rate" => scenarios::max_rate(&mut ctx),
            "commands" => scenarios::commands(&mut ctx),
            "commands-max" => scenarios::commands_max(&mut ctx),
            "sc005" => scenarios::sc005(&mut ctx),
            "access" => scenarios::access::run(&mut ctx),
            "access-fanout" => scenarios::access::fanout(&mut ctx),
            "access-recompute" => scenarios::access::recompute(&mut ctx),
            "redis" => scenarios::redis::run(&mut ctx),
            "compare" => match &nchan {
                Some(setup) => scenarios::compare(&mut ctx, setup, nofile),
                None => unreachable!("nchan is found before any scenario runs"),
            },
            _ => scenarios::idle_rss(&mut ctx),
        };
        if let Err(e) = result {
            eprintln!("loadgen: {name} failed: {e}");
            failures.push(format!("{name}: {e}"));
        }
    }
    let r = &ctx.report;
    let series = r.latency_series();
    let chart = if series.is_empty() {
        None
    } else {
        // The workspace root is the parent of this crate's directory.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root
            .parent()
            .unwrap_or(root)
            .join("docs/latency-vs-subscribers.svg");
        let title = if r.compare.is_empty() {
            "relay: SSE latency vs subscribers"
        } else {
            "relay vs nginx + nchan: SSE latency vs subscribers"
        };
        match plot::write_latency_svg(&path, title, &series) {
            Ok(()) => {
                eprintln!("loadgen: wrote {}", path.display());
                Some(path)
            }
            Err(e) => {
                eprintln!("loadgen: could not write {}: {e}", path.display());
                failures.push(format!("plot: {e}"));
                None
            }
        }
    };
    let shown: Vec<String> = argv.iter().skip(1).map(|a| a.to_owned()).collect();
    println!("## relay edge under load\n");
    println!("- machine: {}", sys::machine());
    println!(
        "- command: `cargo run --release -p relay-tests --bin loadgen --{}{}`",
        if shown.is_empty() { "" } else { " " },
        shown.join(" ")
    );
    println!(
        "- setup: the release `relay edge` as a child process (its CPU/RSS from /proc/<pid>), the test gateway and all clients in the loadgen process on the same machine (loopback); RATE_LIMIT_* raised; open-files limit {nofile}; wall time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("- latency: gateway send → subscriber's parse of the complete event (one monotonic clock); warm-up excluded; edge CPU % is of one core");
    if let Some(path) = &chart {
        println!("- chart: {}", path.display());
    }
    println!();
    if let Some(setup) = &nchan {
        println!("### relay beside nginx + nchan\n");
        println!("- nchan: nginx {} with `worker_processes auto` (one worker per core: relay's edge may use both cores too), config `tests/nchan/nginx.conf.template`; its CPU and RSS are summed over the master and every worker", setup.version);
        println!("- same client for both: the loadgen's SSE subscribers on {} `polling` threads, one after the other connected; relay's on `/api/stream` (ready at `voice.snapshot`), nchan's on `/sub` as EventSource (ready at the response head)", 2);
        println!("- same probes: relay's come in as `messageCreate` link frames from the test gateway over its WebSocket; nchan's are POSTed to `/pub` over one keep-alive HTTP/1.1 connection from the loadgen, each body the very JSON relay wrote for a probe (so nchan's CPU includes parsing the publisher's HTTP request; relay's its link frame and the event's JSON encoding)");
        println!("- latency: the probe's send (just before the link frame or the POST) → the subscriber's parse; µs CPU/delivery = hub CPU seconds in the measured window / deliveries; goals (issue \"Proof under load\"): p99 and µs/delivery ≤ 1× nchan's, idle KiB/subscriber ≤ 5×\n");
        println!("{}", r.compare_table());
    }
    if !r.sse.is_empty() {
        println!("### SSE delivery\n\n{}", r.sse_table());
    }
    if !r.cmd.is_empty() {
        println!("### Commands\n\n{}", r.cmd_table());
    }
    if !r.access.is_empty() {
        println!("### ACCESS=roles beside ACCESS=discord\n");
        println!("- the test gateway sends a guild in `ready` ({} text channels: 9 only role A may view, 9 only role B, 2 both; the bot has ADMINISTRATOR) and answers each `fetchMember` with a `guild.member`; subscriber `sub` = a member's user id, role A if even, B if odd", scenarios::access::CHANNELS);
        println!("- probes go round the channels: under `discord` each reaches the subscribers who may view its channel (55 % on average), under `roles` all of them; missed = what each subscriber should have received and did not; µs CPU/delivery = edge CPU seconds in the measured window / deliveries made; goal (issue \"As fast as before\"): discord/roles ≤ 1.10× for p99 and for µs CPU/delivery\n");
        println!("{}", r.access_table());
    }
    if !r.recompute.is_empty() {
        println!("### Access recompute after a role change\n");
        println!("- idle `ACCESS=discord` streams, one distinct member each (half role A, half role B); the test gateway sends a `guild.state` changing roles A's and B's permissions, which changes every member's view, so every stream is rescoped and gets a new `access` event");
        println!("- end to end: the `guild.state` send → each stream's parse of its new `access` event (loadgen clock); edge recompute: the edge's own `access recomputed: N streams rescoped in X µs` debug line (`RUST_LOG=warn,relay::edge::access=debug`), the time under its access lock: all views computed, every stream rescoped with its `access` event and personal voice snapshot queued\n");
        println!("{}", r.recompute_table());
    }
    if !r.idle.is_empty() {
        println!("### Idle subscribers\n\n| subscribers | edge RSS MiB | edge threads |\n|---:|---:|---:|");
        for l in &r.idle {
            println!("{l}\n");
        }
    }
    if !r.notes.is_empty() {
        println!("### Notes\n");
        for n in &r.notes {
            println!("- {n}");
        }
    }
    if !failures.is_empty() {
        println!("\n### Failed scenarios\n");
        for f in &failures {
            println!("- {f}");
        }
        exit(1);
    }
}

fn usage_error(msg: &str) -> ! {
    eprintln!("loadgen: {msg}\n\n{USAGE}");
    exit(2)
}
