//! Loading a real Lightning channel-graph snapshot (`../shared/data/ln-graph/`, format in its
//! SOURCE.md) into a [`NetworkGraph`], for benchmarks and realistic simulations.
//!
//! Lightning nodes are 33-byte public keys; here each becomes the [`NodeId`] made of the last 20
//! bytes of its keccak256 (a stand-in address: only distinctness matters). Amounts are msat.
//! Parsing ([`parse`]) is kept apart from reading files ([`load`]).

use crate::graph::{GraphError, NetworkGraph, NodeId, Policy};
use alloy_primitives::{Address, U256, keccak256};
use flate2::read::GzDecoder;
use hoplite_htlc::ChannelId;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const NODES_HEADER: &str = "idx\tnode_id\talias";
const EDGES_HEADER: &str = "chan_idx\tdir\tsrc\tdst\tcapacity_sat\tenabled\thtlc_min_msat\thtlc_max_msat\tfee_base_msat\tfee_ppm\tcltv_delta";

/// Which of the two files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `*.nodes.tsv.gz`.
    Nodes,
    /// `*.edges.tsv.gz`.
    Edges,
}

/// Why a snapshot could not be loaded; line numbers count from 1 (the header).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read (or is not gzip).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Reading failed mid-stream.
    #[error("{table:?} line {line}: {source}")]
    Read {
        /// Which file.
        table: Table,
        /// Where.
        line: usize,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The header is not the one the format specifies.
    #[error("{table:?}: unexpected header {found:?}")]
    Header {
        /// Which file.
        table: Table,
        /// The first line.
        found: String,
    },
    /// A line has the wrong number of columns.
    #[error("{table:?} line {line}: {found} columns, expected {expected}")]
    Columns {
        /// Which file.
        table: Table,
        /// Where.
        line: usize,
        /// How many it has.
        found: usize,
        /// How many the format has.
        expected: usize,
    },
    /// A field does not parse.
    #[error("{table:?} line {line}: column {column} = {value:?} is not valid")]
    Field {
        /// Which file.
        table: Table,
        /// Where.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// What it holds.
        value: String,
    },
    /// The rows contradict each other (a node index out of order or unknown, a channel's two
    /// rows disagreeing).
    #[error("{table:?} line {line}: {reason}")]
    Inconsistent {
        /// Which file.
        table: Table,
        /// Where.
        line: usize,
        /// What.
        reason: String,
    },
    /// The graph refused a row.
    #[error("edges line {line}: {source}")]
    Graph {
        /// Where.
        line: usize,
        /// Why.
        source: GraphError,
    },
}

/// A loaded snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The graph, amounts in msat.
    pub graph: NetworkGraph,
    /// Node ids by snapshot index (the `idx` column).
    pub nodes: Vec<NodeId>,
    /// Lightning public keys (hex, as in the nodes file) by snapshot index.
    pub public_keys: Vec<String>,
}

/// The [`NodeId`] standing in for a Lightning public key.
pub fn node_id_of(public_key: &[u8]) -> NodeId {
    NodeId(Address::from_slice(&keccak256(public_key)[12..]))
}

/// Reads `nodes` and `edges` (gzip'd TSV) into a [`Snapshot`].
pub fn load(nodes: &Path, edges: &Path) -> Result<Snapshot, SnapshotError> {
    let open = |path: &Path| {
        File::open(path)
            .map(|file| BufReader::new(GzDecoder::new(file)))
            .map_err(|source| SnapshotError::Io {
                path: path.to_owned(),
                source,
            })
    };
    parse(open(nodes)?, open(edges)?)
}

/// Parses the two tables (already decompressed).
pub fn parse(nodes: impl BufRead, edges: impl BufRead) -> Result<Snapshot, SnapshotError> {
    let mut snapshot = Snapshot {
        graph: NetworkGraph::new(),
        nodes: Vec::new(),
        public_keys: Vec::new(),
    };
    for_each_row(nodes, Table::Nodes, NODES_HEADER, |line, fields| {
        let idx: usize = field(Table::Nodes, line, "idx", fields[0])?;
        if idx != snapshot.nodes.len() {
            return Err(SnapshotError::Inconsistent {
                table: Table::Nodes,
                line,
                reason: format!("node index {idx}, expected {}", snapshot.nodes.len()),
            });
        }
        let key = alloy_primitives::hex::decode(fields[1])
            .ok()
            .filter(|key| key.len() == 33)
            .ok_or_else(|| SnapshotError::Field {
                table: Table::Nodes,
                line,
                column: "node_id",
                value: fields[1].to_owned(),
            })?;
        snapshot.nodes.push(node_id_of(&key));
        snapshot.public_keys.push(fields[1].to_owned());
        Ok(())
    })?;
    for_each_row(edges, Table::Edges, EDGES_HEADER, |line, fields| {
        let row = EdgeRow::parse(line, fields)?;
        let node = |idx: usize| {
            snapshot
                .nodes
                .get(idx)
                .copied()
                .ok_or_else(|| SnapshotError::Inconsistent {
                    table: Table::Edges,
                    line,
                    reason: format!("unknown node index {idx}"),
                })
        };
        let (src, dst) = (node(row.src)?, node(row.dst)?);
        let id = ChannelId(U256::from(row.channel));
        let capacity = u128::from(row.capacity_sat) * 1000;
        let graph = &mut snapshot.graph;
        match graph.channel(&id) {
            None => graph
                .add_channel(id, src, dst, capacity)
                .map_err(|source| SnapshotError::Graph { line, source })?,
            Some(known) if known.capacity == capacity && known.ends.contains(&dst) => {}
            Some(_) => {
                return Err(SnapshotError::Inconsistent {
                    table: Table::Edges,
                    line,
                    reason: format!("the two rows of channel {} disagree", row.channel),
                });
            }
        }
        graph
            .update_policy(id, src, row.policy)
            .map_err(|source| SnapshotError::Graph { line, source })
    })?;
    Ok(snapshot)
}

/// One half-channel row.
struct EdgeRow {
    channel: u64,
    src: usize,
    dst: usize,
    capacity_sat: u64,
    policy: Policy,
}

impl EdgeRow {
    fn parse(line: usize, f: &[&str]) -> Result<Self, SnapshotError> {
        let t = Table::Edges;
        let enabled = match f[5] {
            "0" => false,
            "1" => true,
            other => return Err(bad(t, line, "enabled", other)),
        };
        // Column 1 (`dir`) is implied by src and dst.
        Ok(Self {
            channel: field(t, line, "chan_idx", f[0])?,
            src: field(t, line, "src", f[2])?,
            dst: field(t, line, "dst", f[3])?,
            capacity_sat: field(t, line, "capacity_sat", f[4])?,
            policy: Policy {
                min_lock: field(t, line, "htlc_min_msat", f[6])?,
                max_lock: field(t, line, "htlc_max_msat", f[7])?,
                base_fee: field(t, line, "fee_base_msat", f[8])?,
                fee_millionths: field(t, line, "fee_ppm", f[9])?,
                expiry_delta: field(t, line, "cltv_delta", f[10])?,
                enabled,
            },
        })
    }
}

/// Checks the header, then calls `row(line number, fields)` for every line.
fn for_each_row(
    input: impl BufRead,
    table: Table,
    header: &str,
    mut row: impl FnMut(usize, &[&str]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let expected = header.split('\t').count();
    for (i, text) in input.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|source| SnapshotError::Read {
            table,
            line,
            source,
        })?;
        if line == 1 {
            if text != header {
                return Err(SnapshotError::Header { table, found: text });
            }
            continue;
        }
        // The alias (last column of nodes) may be empty but is never missing.
        let fields: Vec<&str> = text.split('\t').collect();
        if fields.len() != expected {
            return Err(SnapshotError::Columns {
                table,
                line,
                found: fields.len(),
                expected,
            });
        }
        row(line, &fields)?;
    }
    Ok(())
}

fn field<T: FromStr>(
    table: Table,
    line: usize,
    column: &'static str,
    value: &str,
) -> Result<T, SnapshotError> {
    value.parse().map_err(|_| bad(table, line, column, value))
}

fn bad(table: Table, line: usize, column: &'static str, value: &str) -> SnapshotError {
    SnapshotError::Field {
        table,
        line,
        column,
        value: value.to_owned(),
    }
}
