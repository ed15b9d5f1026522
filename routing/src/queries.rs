//! Benchmark queries on a snapshot: `payer<TAB>payee<TAB>amount_msat`, one a line, nodes named
//! by their public key as in the nodes file. Generated from a seed or read from a file.

use crate::snapshot::Snapshot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

/// One payment to route: snapshot node indices and an amount in msat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Who pays (index into [`Snapshot::nodes`]).
    pub payer: usize,
    /// Who is paid.
    pub payee: usize,
    /// How much, in msat.
    pub amount_msat: u128,
}

/// Why a query file was refused; lines count from 1.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Reading failed.
    #[error("line {line}: {source}")]
    Read {
        /// Where.
        line: usize,
        /// What went wrong.
        source: io::Error,
    },
    /// Not three tab-separated fields.
    #[error("line {line}: expected payer<TAB>payee<TAB>amount_msat, found {found} fields")]
    Fields {
        /// Where.
        line: usize,
        /// How many.
        found: usize,
    },
    /// A node that is not in the snapshot.
    #[error("line {line}: node {key:?} is not in the snapshot")]
    UnknownNode {
        /// Where.
        line: usize,
        /// Its public key as written.
        key: String,
    },
    /// An amount that is not a positive integer.
    #[error("line {line}: amount {value:?} is not a positive integer (msat)")]
    Amount {
        /// Where.
        line: usize,
        /// As written.
        value: String,
    },
}

/// The smallest and largest generated amounts, in sat.
pub const AMOUNT_RANGE_SAT: (u64, u64) = (1_000, 1_000_000);

/// `n` queries from `seed`: the payer among nodes with an enabled outgoing edge, the payee among
/// nodes with an enabled incoming edge (never the payer), the amount log-uniform in
/// [`AMOUNT_RANGE_SAT`]. The same seed and snapshot always give the same queries.
pub fn generate(snapshot: &Snapshot, n: usize, seed: u64) -> Vec<Query> {
    let index_of: BTreeMap<_, _> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let graph = snapshot.graph.graph();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for edge in graph.edge_indices() {
        if !graph[edge].policy.enabled {
            continue;
        }
        let (from, to) = graph.edge_endpoints(edge).expect("the edge exists");
        senders.push(index_of[&graph[from].id]);
        receivers.push(index_of[&graph[to].id]);
    }
    for list in [&mut senders, &mut receivers] {
        list.sort_unstable();
        list.dedup();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (low, high) = (
        (AMOUNT_RANGE_SAT.0 as f64).ln(),
        (AMOUNT_RANGE_SAT.1 as f64).ln(),
    );
    let mut queries = Vec::with_capacity(n);
    while queries.len() < n && !senders.is_empty() && receivers.len() > 1 {
        let payer = senders[rng.random_range(0..senders.len())];
        let payee = receivers[rng.random_range(0..receivers.len())];
        if payer == payee {
            continue;
        }
        let sat = rng.random_range(low..=high).exp().round() as u128;
        queries.push(Query {
            payer,
            payee,
            amount_msat: sat * 1000,
        });
    }
    queries
}

/// Writes queries in the file format.
pub fn write(snapshot: &Snapshot, queries: &[Query], mut out: impl Write) -> io::Result<()> {
    for q in queries {
        writeln!(
            out,
            "{}\t{}\t{}",
            snapshot.public_keys[q.payer], snapshot.public_keys[q.payee], q.amount_msat
        )?;
    }
    Ok(())
}

/// Reads queries in the file format; empty lines are skipped.
pub fn read(snapshot: &Snapshot, input: impl BufRead) -> Result<Vec<Query>, QueryError> {
    let index_of: BTreeMap<&str, usize> = snapshot
        .public_keys
        .iter()
        .enumerate()
        .map(|(i, key)| (key.as_str(), i))
        .collect();
    let mut queries = Vec::new();
    for (i, text) in input.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|source| QueryError::Read { line, source })?;
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split('\t').collect();
        let [payer, payee, amount] = fields[..] else {
            return Err(QueryError::Fields {
                line,
                found: fields.len(),
            });
        };
        let node = |key: &str| {
            index_of
                .get(key)
                .copied()
                .ok_or_else(|| QueryError::UnknownNode {
                    line,
                    key: key.to_owned(),
                })
        };
        let amount_msat = amount
            .parse::<u128>()
            .ok()
            .filter(|&a| a > 0)
            .ok_or_else(|| QueryError::Amount {
                line,
                value: amount.to_owned(),
            })?;
        queries.push(Query {
            payer: node(payer)?,
            payee: node(payee)?,
            amount_msat,
        });
    }
    Ok(queries)
}
