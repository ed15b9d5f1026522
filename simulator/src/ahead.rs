//! Payers' routes searched by the workers, a few workload payments ahead.
//!
//! The workload draws each payment eight arrivals before it is due (`PLANNED_AHEAD` in
//! `sim.rs`), so the loop knows who will pay whom, and how much, ahead of time. It asks the
//! payer for its route query then ([`hoplite_node::Node::route_query`]) and hands it to the
//! workers ([`crate::workers`]); when the payment is due, it waits for the answer and offers
//! it to the payer ([`hoplite_node::Node::offer_route`]), which takes it only if nothing the
//! search depended on changed meanwhile (see [`hoplite_node::ahead`]). So a run is the same,
//! byte for byte, with or without workers: only where the searches ran differs. The payee
//! makes the payment's invoice when it is drawn too, and a worker recovers its signature
//! meanwhile ([`crate::recovery`]).

use crate::workers::Workers;
use hoplite_node::ahead::{FoundRoute, RouteQuery};
use hoplite_routing::Router;
use std::cell::RefCell;
use std::sync::mpsc::{self, Receiver};

thread_local! {
    /// Each worker's search memory (about as large as the graph), kept between searches.
    static ROUTER: RefCell<Router> = RefCell::new(Router::default());
}

/// Hands route searches to the workers.
pub struct Searcher {
    workers: Workers,
    /// Searches handed over.
    pub submitted: u64,
}

/// A search handed over; [`Self::wait`] for its answer.
pub struct Search(Receiver<FoundRoute>);

impl Searcher {
    /// Searches on `workers` (none: [`Self::submit`] hands nothing over).
    pub fn new(workers: Workers) -> Self {
        Self {
            workers,
            submitted: 0,
        }
    }

    /// Whether there are workers to search (else there is no point in asking a payer).
    pub fn active(&self) -> bool {
        self.workers.any()
    }

    /// Hands `query` to the workers; `None` if there are none.
    pub fn submit(&mut self, query: RouteQuery) -> Option<Search> {
        let (answer, receiver) = mpsc::channel();
        let handed = self.workers.run(move || {
            let found = ROUTER.with(|router| query.search(&mut router.borrow_mut()));
            // The loop may have dropped the search (an end went down meanwhile).
            let _ = answer.send(found);
        });
        self.submitted += u64::from(handed);
        handed.then_some(Search(receiver))
    }
}

impl Search {
    /// The answer (`None` only if the search panicked, and then the payer searches itself).
    pub fn wait(self) -> Option<FoundRoute> {
        self.0.recv().ok()
    }
}
