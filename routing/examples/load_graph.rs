//! Loads a Lightning graph snapshot and reports load time (median of 5 loads), resident memory
//! and the graph's counts, checked against the figures in the snapshot's SOURCE.md.
//!
//! `cargo run --release -p hoplite-routing --example load_graph -- [--nodes FILE] [--edges FILE]`
//!
//! Defaults: `../shared/data/ln-graph/ln-graph-2026-02-03.{nodes,edges}.tsv.gz`.

use hoplite_routing::snapshot;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const DEFAULT: &str = "../shared/data/ln-graph/ln-graph-2026-02-03";

fn main() -> ExitCode {
    let mut nodes = PathBuf::from(format!("{DEFAULT}.nodes.tsv.gz"));
    let mut edges = PathBuf::from(format!("{DEFAULT}.edges.tsv.gz"));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let target = match flag.as_str() {
            "--nodes" => &mut nodes,
            "--edges" => &mut edges,
            other => {
                eprintln!("error: unknown argument {other:?} (known: --nodes FILE, --edges FILE)");
                return ExitCode::from(2);
            }
        };
        let Some(value) = args.next() else {
            eprintln!("error: {flag} needs a file");
            return ExitCode::from(2);
        };
        *target = value.into();
    }

    let rss_before = resident_kib();
    let mut rss_after = None;
    let mut times = Vec::new();
    let mut loaded = None;
    for _ in 0..5 {
        #[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
        let start = Instant::now();
        match snapshot::load(&nodes, &edges) {
            Ok(s) => loaded = Some(s),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
        // Memory of one graph: measured while only the first is alive.
        rss_after = rss_after.or_else(resident_kib);
    }
    let s = loaded.expect("loaded five times");
    times.sort_by(f64::total_cmp);
    let g = &s.graph;
    let enabled = g
        .graph()
        .edge_weights()
        .filter(|e| e.policy.enabled)
        .count();
    println!("snapshot        {}", nodes.display());
    println!(
        "load            median {:.1} ms (min {:.1}, max {:.1}; 5 loads, gunzip + parse + graph)",
        times[2], times[0], times[4]
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "resident memory {:.1} MiB after the first load ({:+.1} MiB)",
            after as f64 / 1024.0,
            (after as f64 - before as f64) / 1024.0
        );
    }
    println!("nodes           {}", g.node_count());
    println!("channels        {}", g.channel_count());
    println!("directed edges  {} ({enabled} enabled)", g.edge_count());
    // SOURCE.md's counts for the primary snapshot: a different reader must agree with ours.
    if nodes.to_string_lossy().contains("2026-02-03") {
        let expected = (17_324, 50_808, 101_616, 65_809);
        let found = (g.node_count(), g.channel_count(), g.edge_count(), enabled);
        if found != expected {
            eprintln!("error: counts {found:?} differ from SOURCE.md's {expected:?}");
            return ExitCode::FAILURE;
        }
        println!("counts match SOURCE.md");
    }
    ExitCode::SUCCESS
}

/// VmRSS of this process, in KiB (Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
