//! [`MemoryStore`]: the driver's side of the persistence contract, kept in memory. The testkit
//! and the simulator keep their nodes' records in it; a database store keeps the same things
//! in tables (the latest `Channel` per id, the latest entry per key, the rest appended).

use crate::api::Record;
use crate::state::{EntryKey, EntryValue};
use hoplite_htlc::{Channel, ChannelId};
use std::collections::BTreeMap;

/// What one node persisted, as [`crate::Node::restore`] needs it back.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    channels: BTreeMap<ChannelId, Channel>,
    entries: BTreeMap<EntryKey, EntryValue>,
    /// Invoice, InvoiceRevealed, Finished and LockChange records, in the order written.
    log: Vec<Record>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one batch (all its records at once, as one transaction would).
    pub fn write(&mut self, records: impl IntoIterator<Item = Record>) {
        for record in records {
            match record {
                Record::Channel(channel) => {
                    self.channels.insert(channel.id(), *channel);
                }
                Record::ChannelForgotten(channel) => {
                    self.channels.remove(&channel);
                    self.log.retain(
                        |r| !matches!(r, Record::LockChange { channel: c, .. } if *c == channel),
                    );
                }
                Record::Entry { key, value } => match value {
                    Some(value) => {
                        self.entries.insert(key, value);
                    }
                    None => {
                        self.entries.remove(&key);
                    }
                },
                record @ (Record::Invoice(_)
                | Record::InvoiceRevealed { .. }
                | Record::Finished { .. }
                | Record::LockChange { .. }) => self.log.push(record),
            }
        }
    }

    /// The latest persisted state of `channel`.
    pub fn channel(&self, channel: ChannelId) -> Option<&Channel> {
        self.channels.get(&channel)
    }

    /// Everything kept, for [`crate::Node::restore`].
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.channels
            .values()
            .map(|channel| Record::Channel(Box::new(channel.clone())))
            .chain(self.log.iter().cloned())
            .chain(self.entries.iter().map(|(key, value)| Record::Entry {
                key: *key,
                value: Some(value.clone()),
            }))
    }

    /// How many records are kept (channels, entries and the log).
    pub fn len(&self) -> usize {
        self.channels.len() + self.entries.len() + self.log.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
