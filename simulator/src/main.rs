//! `hoplite-sim`: runs a simulation and writes its reports.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hoplite_sim::config::Topology;
use hoplite_sim::{SimConfig, Simulation, Timing};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Hoplite's network simulator: real nodes, the real contract, virtual time.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a simulation: the embedded default, or a TOML config, with flags on top.
    ///
    /// Example: hoplite-sim run --seed 7 --payments 5000 --out target/sim
    Run(RunArgs),
    /// Prints the embedded default config (a starting point for your own).
    DefaultConfig,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A TOML config; fields it leaves out take their defaults. Without it: the embedded
    /// default (`hoplite-sim default-config` prints it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Seeds everything random in the run (keys, topology, workload, latencies, faults).
    #[arg(long)]
    seed: Option<u64>,
    /// Payments of the random workload (metering and jamming come on top).
    #[arg(long)]
    payments: Option<usize>,
    /// Their arrival rate, per virtual second.
    #[arg(long)]
    rate: Option<f64>,
    /// Nodes of a generated scale-free topology (replaces the config's topology).
    #[arg(long, conflicts_with = "snapshot")]
    nodes: Option<usize>,
    /// A real Lightning snapshot instead: the `*.nodes.tsv.gz` file (its `*.edges.tsv.gz`
    /// beside it), e.g. ../shared/data/ln-graph/ln-graph-2026-02-03.nodes.tsv.gz.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// With --snapshot: the whole graph, not only its largest strongly connected component.
    #[arg(long, requires = "snapshot")]
    whole_graph: bool,
    /// With --snapshot: msat per token unit (capacities are divided by it).
    #[arg(long, requires = "snapshot", default_value_t = 1000)]
    msat_per_unit: u64,
    /// Where the reports go (created if missing).
    #[arg(long, short, default_value = "target/sim")]
    out: PathBuf,
    /// Threads in all (the loop and the workers that recover messages' signatures while they
    /// are in flight); the results do not depend on it. Default: one per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::DefaultConfig => {
            print!("{}", hoplite_sim::config::DEFAULT_TOML);
            Ok(())
        }
    }
}

#[allow(clippy::disallowed_methods)] // Wall time goes to timing.json, never into the run.
fn run(args: RunArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SimConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => SimConfig::embedded_default(),
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(payments) = args.payments {
        config.workload.payments = payments;
    }
    if let Some(rate) = args.rate {
        config.workload.rate_per_s = rate;
    }
    if let Some(nodes) = args.nodes {
        let edges_per_node = match config.topology {
            Topology::ScaleFree { edges_per_node, .. } => edges_per_node,
            _ => 2,
        };
        config.topology = Topology::ScaleFree {
            nodes,
            edges_per_node,
        };
    }
    if let Some(nodes_file) = args.snapshot {
        let name = nodes_file
            .to_str()
            .and_then(|s| s.strip_suffix(".nodes.tsv.gz"))
            .map(|stem| PathBuf::from(format!("{stem}.edges.tsv.gz")));
        let Some(edges_file) = name else {
            bail!("--snapshot takes the *.nodes.tsv.gz file of a snapshot");
        };
        config.topology = Topology::Snapshot {
            nodes_file,
            edges_file,
            largest_component: !args.whole_graph,
            msat_per_unit: args.msat_per_unit,
        };
    }
    config.check()?;

    let started = Instant::now();
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let mut sim = Simulation::new(config)?.with_threads(threads);
    eprintln!(
        "hoplite-sim: {} nodes, {} channels; opening channels on-chain...",
        sim.nodes(),
        sim.channels()
    );
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} payments ({per_sec}, eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    // Without a terminal (a log, CI) the bar is hidden: a line every tenth instead.
    let terminal = std::io::stderr().is_terminal();
    let mut tenths = 0;
    let mut first_payment = None;
    let outcome = sim.run(|done, total| {
        first_payment.get_or_insert_with(Instant::now);
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        let tenth = done * 10 / total.max(1);
        if !terminal && !args.quiet && tenth > tenths {
            tenths = tenth;
            eprintln!("hoplite-sim: {done}/{total} payments started");
        }
    });
    bar.finish_and_clear();
    if let Err(violation) = outcome {
        eprint!("{violation}");
        std::process::exit(2);
    }
    let report = sim.report();
    let mut timing = Timing::measure(
        started.elapsed(),
        first_payment.map_or(started.elapsed(), |at| at - started),
        report.payments.total,
        sim.calls(),
        threads,
    );
    timing.routes_ahead = sim.routes_ahead();
    timing.signatures_ahead = sim.signatures_taken();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let results = args.out.join("results.json");
    let timing_file = args.out.join("timing.json");
    std::fs::write(&results, report.to_json())
        .with_context(|| format!("writing {}", results.display()))?;
    std::fs::write(&timing_file, timing.to_json())
        .with_context(|| format!("writing {}", timing_file.display()))?;
    let written = hoplite_sim::plots::write_all(&report, &timing, &args.out)?;
    print!("{}", report.summary(&timing));
    println!("report:  {}", written.html.display());
    println!("results: {}", results.display());
    println!("timing:  {}", timing_file.display());
    println!("plots:   {}", args.out.join("*.svg, *.png").display());
    Ok(())
}
