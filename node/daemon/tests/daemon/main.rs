//! The daemon's tests: real `hoplite` processes on loopback over a real anvil (installed by
//! `scripts/install-tools.sh`, as `hoplite_chain::testing::Anvil` does). One test binary, so
//! the heavy dependencies link once; `common::Localnet` runs one network at a time.

// Real processes run on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

mod api;
mod backup;
mod cli;
mod crash;
mod dashboard;
mod dispute;
mod hostile;
mod line;
mod localnet;
mod reorg;
mod restart;
mod restarts;
