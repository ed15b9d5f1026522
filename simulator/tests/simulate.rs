//! Whole simulations on small networks: determinism, each fault and attack with its expected
//! outcome in figures, the invariant checker catching a planted broken transition, and the
//! embedded default writing every report file.

use hoplite_sim::config::{Amount, Metering, Topology};
use hoplite_sim::report::{Report, RoutesAhead};
use hoplite_sim::roles::Role;
use hoplite_sim::sim::Plant;
use hoplite_sim::{SimConfig, Simulation, Timing};
use std::time::Duration;

/// 30 nodes, 200 payments, 3 metering customers; no faults.
fn small(seed: u64) -> SimConfig {
    let mut config = SimConfig {
        seed,
        topology: Topology::ScaleFree {
            nodes: 30,
            edges_per_node: 2,
        },
        ..SimConfig::default()
    };
    config.workload.payments = 200;
    config.workload.rate_per_s = 20.0;
    config.workload.amount = Amount::LogUniform {
        min: 10,
        max: 50_000,
    };
    config.workload.metering = Metering {
        customers: 3,
        interval_ms: 500,
        amount: 5,
        payments_per_customer: 10,
    };
    config.node.channel_capacity = 1_000_000;
    config
}

/// Runs `config` to its end; a violation fails the test with the seed and config it prints.
fn run(config: SimConfig) -> Report {
    run_on(config, 1)
}

/// [`run`] on `threads` (the loop, and workers recovering signatures in flight and
/// searching routes ahead).
fn run_on(config: SimConfig, threads: usize) -> Report {
    run_searching(config, threads).0
}

/// [`run_on`], and how many routes were searched ahead and taken.
fn run_searching(config: SimConfig, threads: usize) -> (Report, RoutesAhead) {
    let mut sim = Simulation::new(config)
        .expect("the topology builds")
        .with_threads(threads);
    if let Err(violation) = sim.run(|_, _| {}) {
        panic!("{violation}");
    }
    (sim.report(), sim.routes_ahead())
}

fn role(report: &Report, role: Role) -> &hoplite_sim::report::RoleOutcome {
    report
        .roles
        .iter()
        .find(|r| r.role == role)
        .unwrap_or_else(|| panic!("no {role:?} node in the run"))
}

/// Honest nodes end with exactly what their completed payments give them.
fn honest_whole(report: &Report) {
    for r in report.roles.iter().filter(|r| r.role.is_honest()) {
        assert_eq!((r.net, r.worst), (0, 0), "{:?} nodes: {r:?}", r.role);
    }
}

#[test]
fn the_same_seed_gives_the_same_results_file_and_another_seed_differs() {
    let a = run(small(11)).to_json();
    let b = run(small(11)).to_json();
    assert!(a == b, "two runs of seed 11 differ");
    // Signatures recovered and routes searched on other threads change nothing.
    let c = run_on(small(11), 3).to_json();
    assert!(a == c, "seed 11 on 3 threads differs from one thread");
    let d = run(small(12)).to_json();
    assert_ne!(a, d, "seeds 11 and 12 gave the same results");
    let report: serde_json::Value = serde_json::from_str(&a).expect("valid JSON");
    assert_eq!(report["seed"], 11);
    assert!(report["payments"]["succeeded"].as_u64().expect("a count") > 150);
}

#[test]
fn an_invoice_made_when_its_payment_is_drawn_is_still_valid_when_it_is_paid() {
    // Payments are drawn eight arrivals ahead, and their invoices made then: at one payment
    // per 1,000 s an invoice waits about 8,000 s for its payment, longer than its hour.
    let mut config = small(5);
    config.workload.payments = 12;
    config.workload.rate_per_s = 0.001;
    config.workload.metering.customers = 0;
    let report = run_on(config, 2);
    let p = &report.payments;
    assert!(
        !p.failure_reasons.keys().any(|r| r.contains("expired")),
        "{:?}",
        p.failure_reasons
    );
    assert_eq!(p.succeeded, 12, "{:?}", p.failure_reasons);
}

#[test]
fn a_stale_closer_loses_the_dispute_and_its_partner_is_paid_in_full_on_chain() {
    let mut config = small(3);
    // One in thirty: exactly one stale closer.
    config.faults.stale_closers = 1.0 / 30.0;
    config.workload.payments = 300;
    let report = run(config);
    assert_eq!(
        (
            report.counts.stale_closes,
            report.counts.stale_closes_answered
        ),
        (1, 1),
        "the stale close was mined and answered: {}",
        report.to_json()
    );
    // The partner answered inside the window with the closer's newer proof, and the channel
    // settled from the events' balance data.
    let mined = |kind: &str| report.chain.get(kind).map_or(0, |k| k.mined);
    assert!(
        mined("update_non_closing") >= 1 && mined("settle") >= 1,
        "{:?} {:?}",
        report.chain,
        report.incidents
    );
    let closer = role(&report, Role::StaleCloser);
    assert!(closer.net <= 0, "the stale closer gained: {closer:?}");
    // Every honest node holds at least what its payments give it (the run checks it); the
    // partner may hold more: what the closer's stale proof left out.
    for r in report.roles.iter().filter(|r| r.role.is_honest()) {
        assert!(r.worst >= 0, "{r:?}");
    }
}

#[test]
fn griefing_locks_expire_and_every_token_returns_to_the_payer() {
    let mut config = small(5);
    config.faults.griefers = 2.0 / 30.0;
    let report = run(config);
    assert!(report.counts.withheld > 0, "the griefers held no lock");
    assert!(
        report
            .payments
            .failure_reasons
            .keys()
            .any(|r| r.contains("timed out")),
        "no payment was held until it timed out: {:?}",
        report.payments.failure_reasons
    );
    assert_eq!(report.payments.pending, 0);
    honest_whole(&report);
    let griefer = role(&report, Role::Griefer);
    assert_eq!(griefer.nodes, 2);
}

#[test]
fn a_silent_payee_is_never_paid_and_its_payers_lose_nothing() {
    let mut config = small(6);
    config.faults.silent_payees = 3.0 / 30.0;
    let report = run(config);
    assert!(report.counts.withheld > 0);
    assert!(report.payments.failed > 0);
    honest_whole(&report);
    let silent = role(&report, Role::SilentPayee);
    assert!(silent.worst >= 0, "{silent:?}");
    assert_eq!(
        report.received_by_role.get("silent_payee"),
        None,
        "a silent payee was paid"
    );
    assert!(report.received_by_role["honest"] > 100);
}

#[test]
fn a_crashed_mediator_restarts_and_its_payments_complete_or_fail_cleanly() {
    let mut config = small(7);
    // The best-connected node crashes (crashes hit hubs first) for 20 s mid-workload.
    config.faults.crashes.share = 1.0 / 30.0;
    config.faults.crashes.duration_s = 20;
    let report = run(config);
    assert_eq!((report.counts.crashes, report.counts.restarts), (1, 1));
    assert_eq!(report.payments.pending, 0);
    assert!(report.payments.success_rate > 0.5, "{:?}", report.payments);
    honest_whole(&report);
}

#[test]
fn nodes_offline_for_a_while_lose_nothing_and_payments_resolve() {
    let mut config = small(8);
    config.faults.offline.share = 3.0 / 30.0;
    config.faults.offline.duration_s = 15;
    config.network.loss = 0.01;
    let report = run(config);
    assert_eq!(report.payments.pending, 0);
    assert!(report.payments.success_rate > 0.5);
    honest_whole(&report);
}

#[test]
fn a_partner_that_never_acknowledges_leaves_a_bounded_outbox() {
    let mut config = small(9);
    config.faults.non_ackers = 2.0 / 30.0;
    let report = run(config);
    assert!(report.counts.withheld > 0);
    // The node's own bound (`max_unacked`, 1,024 by default) is what holds it.
    assert!(
        report.max_unacknowledged <= 1_024,
        "{}",
        report.max_unacknowledged
    );
    honest_whole(&report);
}

#[test]
fn jamming_is_bounded_by_the_nodes_limits_and_returns_every_token() {
    let mut config = small(10);
    config.faults.jamming.attackers = 1;
    config.faults.jamming.locks = 150;
    config.faults.jamming.amount = 1;
    let report = run(config);
    let (jams, held) = report.payments.by_kind["jam"];
    assert_eq!((jams, held), (150, 0), "jamming locks are never claimed");
    assert!(
        report.max_pending_locks >= 100,
        "the jam held {} locks",
        report.max_pending_locks
    );
    assert!(report.max_pending_locks <= hoplite_htlc::locks::MAX_PENDING_LOCKS);
    // Honest payments still go through the jammed hub.
    assert!(report.payments.success_rate > 0.8, "{:?}", report.payments);
    honest_whole(&report);
    assert_eq!(role(&report, Role::Jammer).net, 0);
}

#[test]
fn the_checker_catches_a_token_minted_into_the_contract() {
    let config = small(13);
    let mut sim = Simulation::new(config).expect("the topology builds");
    sim.plant_broken_transition(Plant::MintIntoContract { after_payments: 50 });
    let violation = sim
        .run(|_, _| {})
        .expect_err("a token minted into the contract");
    assert_eq!(violation.invariant, "conservation");
    let printed = violation.to_string();
    assert!(
        printed.contains("seed 13") || printed.contains("--seed 13"),
        "{printed}"
    );
    assert!(
        printed.contains("[topology]"),
        "the config is printed: {printed}"
    );
}

#[test]
fn the_checker_catches_tokens_taken_from_an_honest_wallet() {
    // A stale close settles a channel, so its partner has tokens in its wallet at the end.
    let mut config = small(3);
    config.faults.stale_closers = 1.0 / 30.0;
    config.workload.payments = 300;
    let mut sim = Simulation::new(config).expect("the topology builds");
    sim.plant_broken_transition(Plant::Theft);
    let violation = sim.run(|_, _| {}).expect_err("an honest node lost a token");
    assert_eq!(violation.invariant, "no honest loss", "{violation}");
}

#[test]
fn a_run_without_random_payments_ends_after_its_metering_streams() {
    let mut config = small(14);
    config.workload.payments = 0;
    let report = run(config);
    assert_eq!(report.payments.by_kind["metering"], (30, 30));
    assert_eq!(report.payments.total, 30);
}

#[test]
fn isps_partitioned_from_each_other_for_a_while_lose_nothing() {
    let mut config = small(15);
    config.topology = Topology::HubAndSpoke {
        isps: 4,
        customers_per_isp: 6,
    };
    config.network.partitions = vec![hoplite_sim::config::Partition {
        start_s: 2,
        duration_s: 5,
        share: 0.3,
    }];
    let report = run(config);
    assert_eq!(report.nodes, 28);
    // A ring with chords across it (6 links among 4 ISPs), and each customer's channel.
    assert_eq!(report.channels, 6 + 24);
    assert_eq!(report.payments.pending, 0);
    assert!(report.payments.success_rate > 0.5, "{:?}", report.payments);
    // Metering customers pay their own ISP over their one channel, through the partition too
    // (what was lost is resent when it heals).
    let (metered, paid) = report.payments.by_kind["metering"];
    assert!(metered == 30 && paid >= 25, "{metered} {paid}");
    honest_whole(&report);
}

#[test]
fn the_embedded_default_finishes_and_writes_every_report_file() {
    let config = SimConfig::embedded_default();
    let mut sim = Simulation::new(config).expect("the default topology builds");
    if let Err(violation) = sim.run(|_, _| {}) {
        panic!("{violation}");
    }
    let report = sim.report();
    let dir = std::env::temp_dir().join(format!("hoplite-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    std::fs::write(dir.join("results.json"), report.to_json()).expect("write");
    let timing = Timing::measure(
        Duration::from_secs(1),
        Duration::from_millis(300),
        report.payments.total,
        sim.calls(),
        1,
    );
    let written = hoplite_sim::plots::write_all(&report, &timing, &dir).expect("the plots draw");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("read"))
            .expect("results.json is JSON");
    assert!(results["payments"]["total"].as_u64().expect("a count") >= 2_000);
    let html = std::fs::read_to_string(&written.html).expect("report.html");
    assert_eq!(written.plots.len(), 10);
    for plot in &written.plots {
        let name = plot
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name");
        assert!(
            html.contains(&format!("href=\"{name}\"")),
            "report.html links {name}"
        );
        let bytes = std::fs::read(plot).expect("the plot file");
        if name.ends_with(".png") {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let reader = decoder.read_info().expect("a PNG that parses");
            assert_eq!((reader.info().width, reader.info().height), (800, 480));
        } else {
            let text = String::from_utf8(bytes).expect("SVG is UTF-8");
            let doc = roxmltree::Document::parse(&text).expect("SVG that parses as XML");
            assert_eq!(doc.root_element().tag_name().name(), "svg");
        }
    }
    // The HTML stands alone: every plot is inline too.
    assert_eq!(html.matches("<svg").count(), 5);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn nodes_sharing_one_view_keep_every_invariant_through_faults_and_attacks() {
    // A seed whose stale closer closed a channel on which it had sent its partner updates, so the
    // partner has a newer proof of the closer's to answer with (with none, as with seed 16
    // since the workload is drawn ahead, there is nothing to answer, and nothing is lost).
    let mut config = small(17);
    config.network.shared_view = Some(true);
    config.workload.payments = 300;
    config.faults.crashes.share = 1.0 / 30.0;
    config.faults.stale_closers = 1.0 / 30.0;
    config.faults.griefers = 1.0 / 30.0;
    let report = run(config.clone());
    assert_eq!((report.counts.crashes, report.counts.restarts), (1, 1));
    assert_eq!(
        (
            report.counts.stale_closes,
            report.counts.stale_closes_answered
        ),
        (1, 1),
        "{:?}",
        report.chain
    );
    assert_eq!(report.payments.pending, 0);
    assert!(report.payments.success_rate > 0.5, "{:?}", report.payments);
    // Nothing is gossiped message by message: each node writes its announcements into the
    // view, and routes over everyone else's.
    assert!(report.counts.gossip > 0);
    // On 2 threads, payers' routes are searched ahead (a search made for a node that then
    // crashed is not taken by the node restored: another instance, another scorer).
    let (on_two, routes) = run_searching(config, 2);
    assert_eq!(
        on_two.to_json(),
        report.to_json(),
        "deterministic, on 2 threads too"
    );
    assert!(routes.searched >= 290, "{routes:?}");
    assert!(
        routes.taken > 0 && routes.taken <= routes.searched,
        "{routes:?}"
    );
}
