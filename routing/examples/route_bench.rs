//! Routes benchmark payments on a Lightning graph snapshot and reports, per configuration,
//! routes found, median and p99 latency per query, and median fee.
//!
//! `cargo run --release -p hoplite-routing --example route_bench -- [--nodes FILE] [--edges FILE]
//! [--queries FILE | --count N --seed S] [--write-queries FILE] [--results FILE]
//! [--max-parts N] [--training N]`
//!
//! Configurations: single path with the zero-penalty scorer; single path with the probabilistic
//! scorer; multi-path (up to `--max-parts`, default 4) with the probabilistic scorer. The
//! probabilistic scorer is first trained as LDK's router benchmark trains its own: `--training`
//! payments (default 1,000, from seed S+1, never the measured ones) are routed, and each route
//! is reported as a success or as failed at its middle hop, by a seeded coin. Limits are LDK's
//! defaults (`RouteParams::for_amount`). As a speed reference measured in the same run, a plain
//! Dijkstra by fee (petgraph's, no limits) runs over the same queries.
//!
//! Columns: routes found / queries; median and p99 latency per query; median total fee and
//! median hop count (of the longest part) over the routes found; `split`, payments sent in more
//! than one part; `relaxed`, routes not proven cheapest (see `Route::cheapest`).
//!
//! `--results FILE` writes one row per configuration and query: configuration, query number,
//! ok, latency µs, fee msat, hops, parts, error.

use hoplite_routing::queries::{self, Query};
use hoplite_routing::snapshot::{self, Snapshot};
use hoplite_routing::{
    NodeId, ProbabilisticParams, ProbabilisticScorer, RouteParams, Router, Scorer, SplitParams,
    ZeroPenalty,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const DEFAULT: &str = "../shared/data/ln-graph/ln-graph-2026-02-03";

struct Args {
    nodes: PathBuf,
    edges: PathBuf,
    queries: Option<PathBuf>,
    count: usize,
    seed: u64,
    write_queries: Option<PathBuf>,
    results: Option<PathBuf>,
    max_parts: usize,
    training: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: format!("{DEFAULT}.nodes.tsv.gz").into(),
        edges: format!("{DEFAULT}.edges.tsv.gz").into(),
        queries: None,
        count: 10_000,
        seed: 1,
        write_queries: None,
        results: None,
        max_parts: 4,
        training: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} takes a non-negative integer, not {v:?}"))
        };
        match flag.as_str() {
            "--nodes" => args.nodes = value.into(),
            "--edges" => args.edges = value.into(),
            "--queries" => args.queries = Some(value.into()),
            "--count" => args.count = number(&value)? as usize,
            "--seed" => args.seed = number(&value)?,
            "--write-queries" => args.write_queries = Some(value.into()),
            "--results" => args.results = Some(value.into()),
            "--max-parts" => args.max_parts = number(&value)?.clamp(1, 64) as usize,
            "--training" => args.training = number(&value)? as usize,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (known: --nodes, --edges, --queries, --count, \
                     --seed, --write-queries, --results, --max-parts, --training)"
                ));
            }
        }
    }
    Ok(args)
}

/// A routed payment, as reported.
#[derive(Clone, Copy)]
struct Row {
    fee: u128,
    /// Of the longest part.
    hops: usize,
    parts: usize,
    /// Proven cheapest (see `Route::cheapest`).
    cheapest: bool,
}

/// One query's outcome under one configuration.
struct Outcome {
    latency: Duration,
    result: Result<Row, String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn now() -> Instant {
    Instant::now()
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let rss_before = resident_kib();
    let start = now();
    let snapshot = snapshot::load(&args.nodes, &args.edges).map_err(|e| e.to_string())?;
    let load = start.elapsed();
    let rss_after = resident_kib();
    println!(
        "snapshot   {} ({} nodes, {} channels)",
        args.nodes.display(),
        snapshot.graph.node_count(),
        snapshot.graph.channel_count()
    );
    print!("load       {:.0} ms", load.as_secs_f64() * 1e3);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        print!(
            ", {:+.1} MiB resident",
            (after as f64 - before as f64) / 1024.0
        );
    }
    println!();

    let queries = match &args.queries {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            queries::read(&snapshot, std::io::BufReader::new(file))
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => queries::generate(&snapshot, args.count, args.seed),
    };
    println!("queries    {}", queries.len());
    if let Some(path) = &args.write_queries {
        let mut out = std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        queries::write(&snapshot, &queries, &mut out)
            .and_then(|()| out.flush())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote queries to {}", path.display());
    }

    let mut scorer = ProbabilisticScorer::new(ProbabilisticParams::default(), args.seed);
    let trained = train(
        &snapshot,
        &mut scorer,
        args.training,
        args.seed.wrapping_add(1),
    );
    println!(
        "training   {} payments routed, {trained} reported; scorer knows {} directions",
        args.training,
        scorer.known_directions()
    );
    println!();
    println!(
        "{:<30} {:>15} {:>11} {:>11} {:>12} {:>6} {:>6} {:>8}",
        "configuration", "found", "median µs", "p99 µs", "median fee", "hops", "split", "relaxed"
    );

    let mut rows = Vec::new();
    let baseline = measure("plain dijkstra (reference)", &queries, |q| {
        plain_dijkstra(&snapshot, q)
    });
    report("plain dijkstra (reference)", &baseline, None);
    let base_median = median_latency(&baseline);

    let mut router = Router::default();
    let single = SplitParams {
        max_parts: 1,
        ..SplitParams::default()
    };
    let multi = SplitParams {
        max_parts: args.max_parts,
        ..SplitParams::default()
    };
    let configs: [(&str, &dyn Scorer, SplitParams); 3] = [
        ("single path, zero penalty", &ZeroPenalty, single),
        ("single path, probabilistic", &scorer, single),
        ("multi-path, probabilistic", &scorer, multi),
    ];
    for (name, scorer, split) in configs {
        let mut labels = 0;
        let outcomes = measure(name, &queries, |q| {
            let payment = router.find_payment(
                &snapshot.graph,
                scorer,
                snapshot.nodes[q.payer],
                snapshot.nodes[q.payee],
                q.amount_msat,
                &RouteParams::for_amount(q.amount_msat),
                &split,
            );
            labels += router.stats().labels;
            payment
                .map(|p| Row {
                    fee: p.fee(),
                    hops: p
                        .parts
                        .iter()
                        .map(|part| part.hops.len())
                        .max()
                        .unwrap_or(0),
                    parts: p.parts.len(),
                    cheapest: p.parts.iter().all(|part| part.cheapest),
                })
                .map_err(|e| e.to_string())
        });
        report(name, &outcomes, Some(base_median));
        println!(
            "{:<30} labels per query (last search) {:.0}",
            "",
            labels as f64 / queries.len().max(1) as f64
        );
        rows.push((name, outcomes));
    }

    if let Some(path) = &args.results {
        write_results(path, &rows).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("\nwrote per-query results to {}", path.display());
    }
    Ok(())
}

/// Routes `count` generated payments and reports each found route as a success or as failed
/// at its middle hop, by a seeded coin, a second apart.
fn train(snapshot: &Snapshot, scorer: &mut ProbabilisticScorer, count: usize, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut router = Router::default();
    let mut reported = 0;
    for (i, q) in queries::generate(snapshot, count, seed)
        .into_iter()
        .enumerate()
    {
        let route = router.find_route(
            &snapshot.graph,
            &*scorer,
            snapshot.nodes[q.payer],
            snapshot.nodes[q.payee],
            q.amount_msat,
            &RouteParams::for_amount(q.amount_msat),
        );
        if let Ok(route) = route {
            let now = Duration::from_secs(i as u64);
            if rng.random_bool(0.5) {
                scorer.report_success(&route.hops, now);
            } else {
                scorer.report_failure(&route.hops, route.hops.len() / 2, now);
            }
            reported += 1;
        }
    }
    reported
}

/// Runs `route` on every query, timing each, with a progress line on stderr.
fn measure(
    name: &str,
    queries: &[Query],
    mut route: impl FnMut(&Query) -> Result<Row, String>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let start = now();
        let result = route(q);
        outcomes.push(Outcome {
            latency: start.elapsed(),
            result,
        });
        if i % 100 == 0 || i + 1 == queries.len() {
            eprint!("\r{name}: {}/{}", i + 1, queries.len());
        }
    }
    eprint!("\r{:60}\r", "");
    outcomes
}

fn median_latency(outcomes: &[Outcome]) -> f64 {
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .map(|o| o.latency.as_secs_f64() * 1e6)
        .collect();
    percentile(&mut latencies, 0.5)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, outcomes: &[Outcome], baseline: Option<f64>) {
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .map(|o| o.latency.as_secs_f64() * 1e6)
        .collect();
    let ok: Vec<Row> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().copied())
        .collect();
    let mut fees: Vec<f64> = ok.iter().map(|r| r.fee as f64).collect();
    let mut hops: Vec<f64> = ok.iter().map(|r| r.hops as f64).collect();
    let split = ok.iter().filter(|r| r.parts > 1).count();
    let relaxed = ok.iter().filter(|r| !r.cheapest).count();
    let median = percentile(&mut latencies, 0.5);
    let found = format!(
        "{}/{} {:.1}%",
        ok.len(),
        outcomes.len(),
        100.0 * ok.len() as f64 / outcomes.len().max(1) as f64
    );
    print!(
        "{name:<30} {found:>15} {median:>11.0} {:>11.0} {:>12.0} {:>6.1}",
        percentile(&mut latencies, 0.99),
        percentile(&mut fees, 0.5),
        percentile(&mut hops, 0.5),
    );
    print!(" {split:>6} {relaxed:>8}");
    if let Some(base) = baseline {
        print!("   {:.3}× reference", median / base);
    }
    println!();
}

/// The reference: petgraph's Dijkstra from the payer by each enabled edge's fee at the payment
/// amount, no other limit. Not a router; it shows what one plain search costs on this machine.
fn plain_dijkstra(snapshot: &Snapshot, q: &Query) -> Result<Row, String> {
    let g = snapshot.graph.graph();
    let index = |id: &NodeId| snapshot.graph.node_index(id).ok_or("unknown node");
    let (from, to) = (
        index(&snapshot.nodes[q.payer])?,
        index(&snapshot.nodes[q.payee])?,
    );
    let distances = petgraph::algo::dijkstra(g, from, Some(to), |e| {
        let channel = e.weight();
        if channel.policy.enabled && channel.capacity >= q.amount_msat {
            channel.policy.fee(q.amount_msat).unwrap_or(u128::MAX / 4)
        } else {
            u128::MAX / 4
        }
    });
    match distances.get(&to) {
        Some(&fee) if fee < u128::MAX / 4 => Ok(Row {
            fee,
            hops: 0,
            parts: 1,
            cheapest: true,
        }),
        _ => Err("unreachable".into()),
    }
}

fn write_results(path: &PathBuf, rows: &[(&str, Vec<Outcome>)]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "configuration\tquery\tok\tlatency_us\tfee_msat\thops\tparts\terror"
    )?;
    for (name, outcomes) in rows {
        for (i, o) in outcomes.iter().enumerate() {
            let latency = o.latency.as_secs_f64() * 1e6;
            match &o.result {
                Ok(row) => writeln!(
                    out,
                    "{name}\t{i}\ttrue\t{latency:.1}\t{}\t{}\t{}\t",
                    row.fee, row.hops, row.parts
                )?,
                Err(error) => writeln!(out, "{name}\t{i}\tfalse\t{latency:.1}\t\t\t\t{error}")?,
            }
        }
    }
    out.flush()
}

/// VmRSS of this process, in KiB (Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
