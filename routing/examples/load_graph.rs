//! Loads a Lightning graph snapshot and reports load time (median of 5 loads), resident memory
//! and the graph's counts, checked against the figures in the snapshot's SOURCE.md; optionally
//! writes benchmark queries generated from a seed.
//!
//! `cargo run --release -p hoplite-routing --example load_graph -- [--nodes FILE] [--edges FILE]
//! [--write-queries FILE [--count N] [--seed S]]`
//!
//! Defaults: `../shared/data/ln-graph/ln-graph-2026-02-03.{nodes,edges}.tsv.gz`.

use hoplite_routing::{queries, snapshot};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const DEFAULT: &str = "../shared/data/ln-graph/ln-graph-2026-02-03";

fn main() -> ExitCode {
    let mut nodes = PathBuf::from(format!("{DEFAULT}.nodes.tsv.gz"));
    let mut edges = PathBuf::from(format!("{DEFAULT}.edges.tsv.gz"));
    let mut write_queries: Option<PathBuf> = None;
    let (mut count, mut seed) = (String::from("10000"), String::from("1"));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("error: {flag} needs a value");
            return ExitCode::from(2);
        };
        match flag.as_str() {
            "--nodes" => nodes = value.into(),
            "--edges" => edges = value.into(),
            "--write-queries" => write_queries = Some(value.into()),
            "--count" => count = value,
            "--seed" => seed = value,
            other => {
                eprintln!(
                    "error: unknown argument {other:?} (known: --nodes FILE, --edges FILE, \
                     --write-queries FILE, --count N, --seed S)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (Ok(count), Ok(seed)) = (count.parse::<usize>(), seed.parse::<u64>()) else {
        eprintln!("error: --count and --seed take non-negative integers");
        return ExitCode::from(2);
    };

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
    if let Some(path) = write_queries {
        let generated = queries::generate(&s, count, seed);
        let written = std::fs::File::create(&path)
            .map(std::io::BufWriter::new)
            .and_then(|mut out| {
                queries::write(&s, &generated, &mut out)?;
                std::io::Write::flush(&mut out)
            });
        if let Err(error) = written {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!(
            "wrote {} queries (seed {seed}) to {}",
            generated.len(),
            path.display()
        );
    }
    ExitCode::SUCCESS
}

/// VmRSS of this process, in KiB (Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
