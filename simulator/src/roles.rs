//! Who misbehaves, and how. Every node runs the real [`hoplite_node::Node`]; an adversary is a
//! real node whose outgoing messages the simulator filters ([`lets_through`]) or that sends a
//! transaction behind its node's back (the stale closer). Faulty but honest nodes go offline
//! or crash.

use crate::config::SimConfig;
use crate::topology::{Plan, PlannedChannel};
use hoplite_node::wire::{Envelope, Message};
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Honest; its network goes down once for a while.
    Offline,
    /// Honest; crashes once and restarts from what it persisted (the best-connected nodes
    /// are picked first).
    Crashing,
    /// Once, closes a channel with the oldest proof its partner signed.
    StaleCloser,
    /// Holds every lock it should forward until it expires (never forwards, never fails back).
    Griefer,
    /// As a payee never asks for the secret, so never claims: its locks expire. (The workload
    /// pays it by invoice only: a keysend payee holds the secret from the start.)
    SilentPayee,
    /// Never acknowledges a message.
    NonAcker,
    /// Sends many small payments through a hub to its sink, to fill the hub's lock slots.
    Jammer,
    /// A jammer's payee: never claims (as a silent payee).
    JamSink,
}

impl Role {
    /// Follows the protocol (faults of its machine aside).
    pub fn is_honest(self) -> bool {
        matches!(self, Self::Honest | Self::Offline | Self::Crashing)
    }

    /// Takes part in the random workload as payer and payee.
    pub fn pays(self) -> bool {
        !matches!(self, Self::Griefer | Self::Jammer | Self::JamSink)
    }

    /// Every role, in report order.
    pub const ALL: [Role; 9] = [
        Self::Honest,
        Self::Offline,
        Self::Crashing,
        Self::StaleCloser,
        Self::Griefer,
        Self::SilentPayee,
        Self::NonAcker,
        Self::Jammer,
        Self::JamSink,
    ];

    /// Its name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Honest => "honest",
            Self::Offline => "offline",
            Self::Crashing => "crashing",
            Self::StaleCloser => "stale_closer",
            Self::Griefer => "griefer",
            Self::SilentPayee => "silent_payee",
            Self::NonAcker => "non_acker",
            Self::Jammer => "jammer",
            Self::JamSink => "jam_sink",
        }
    }
}

/// Gives each node its role from the config's shares (distinct nodes, picked from the seed;
/// griefers among nodes with two channels or more, so they mediate; crashing nodes the
/// best-connected first), and adds the jamming
/// pairs to the plan: each a jammer and a sink with a channel to the best-connected node.
pub fn assign(config: &SimConfig, plan: &mut Plan, rng: &mut StdRng) -> Vec<Role> {
    let n = plan.nodes;
    let degrees = plan.degrees();
    let mut order: Vec<usize> = (0..n).collect();
    for k in 0..n {
        let pick = rng.random_range(k..n);
        order.swap(k, pick);
    }
    let mut roles = vec![Role::Honest; n];
    let f = &config.faults;
    let count = |share: f64| ((n as f64) * share).round() as usize;
    let wanted = [
        (Role::Griefer, count(f.griefers)),
        (Role::StaleCloser, count(f.stale_closers)),
        (Role::SilentPayee, count(f.silent_payees)),
        (Role::NonAcker, count(f.non_ackers)),
        (Role::Offline, count(f.offline.share)),
        (Role::Crashing, count(f.crashes.share)),
    ];
    // Crashes hit the best-connected nodes first: they mediate the most payments.
    let mut by_degree: Vec<usize> = (0..n).collect();
    by_degree.sort_by_key(|&i| (std::cmp::Reverse(degrees[i]), i));
    for (role, mut left) in wanted {
        let candidates = if role == Role::Crashing {
            &by_degree
        } else {
            &order
        };
        for &i in candidates {
            if left == 0 {
                break;
            }
            if roles[i] == Role::Honest && (role != Role::Griefer || degrees[i] >= 2) {
                roles[i] = role;
                left -= 1;
            }
        }
    }
    let hub = (0..n)
        .max_by_key(|&i| (degrees[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    let j = &f.jamming;
    for _ in 0..j.attackers {
        for role in [Role::Jammer, Role::JamSink] {
            let node = plan.nodes;
            plan.nodes += 1;
            // The jammer funds its locks; the hub funds the way to the sink. The opener funds.
            let (opener, partner) = match role {
                Role::Jammer => (node, hub),
                _ => (hub, node),
            };
            plan.channels.push(PlannedChannel {
                opener,
                partner,
                deposits: [config.node.channel_capacity, 0],
            });
            roles.push(role);
        }
    }
    roles
}

/// The (jammer, sink) pairs, in order.
pub fn jam_pairs(roles: &[Role]) -> Vec<(usize, usize)> {
    roles
        .iter()
        .enumerate()
        .filter(|(_, role)| **role == Role::Jammer)
        .map(|(i, _)| (i, i + 1))
        .collect()
}

/// Whether a node of `role` sends `envelope` (adversaries withhold some messages).
pub fn lets_through(role: Role, envelope: &Envelope) -> bool {
    match (role, envelope) {
        (Role::NonAcker, Envelope::Ack(_)) => false,
        (Role::Griefer, Envelope::Message { message, .. }) => !matches!(
            message,
            Message::Update {
                onward: Some(_),
                ..
            } | Message::Failure { .. }
        ),
        (Role::SilentPayee | Role::JamSink, Envelope::Message { message, .. }) => {
            !matches!(message, Message::SecretRequest { .. })
        }
        _ => true,
    }
}
