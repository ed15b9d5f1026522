//! Routes searched ahead of a payment, on another thread.
//!
//! Finding a route is most of what starting a payment costs a payer. A driver that knows a
//! payment is coming (the simulator draws its workload a few payments ahead) asks the payer
//! what it would search ([`Node::route_query`](crate::Node::route_query)), runs the search on
//! another thread ([`RouteQuery::search`]), and hands the answer to the payer just before the
//! payment ([`Node::offer_route`](crate::Node::offer_route)). The payer takes the answer only
//! if its own search at that moment has the same inputs: payee, amount, limits and excluded
//! channels, the same view with its graph unchanged since ([`NetworkGraph::generation`]), and
//! the same scorer (the same node instance: a restored node's scorer counts its generations
//! from the start again) at the same time and generation
//! ([`ProbabilisticScorer::generation`]). Otherwise it
//! searches itself. Either way the route is the one its own search finds (a search is a pure
//! function of those inputs), so nothing a node decides depends on whether, or where, a search
//! ran ahead.
//!
//! [`NetworkGraph::generation`]: hoplite_routing::NetworkGraph::generation

use crate::view::SharedView;
use hoplite_routing::{NodeId, ProbabilisticScorer, Route, RouteError, RouteParams, Router};
use std::sync::Arc;
use std::time::Duration;

/// Tells one node instance (and so one scorer) from every other, a restored node included.
/// A query holds its payer's, which keeps the allocation alive: no other instance can have
/// the same address while the query or its answer exists.
#[derive(Clone, Debug, Default)]
pub(crate) struct Instance(Arc<()>);

impl PartialEq for Instance {
    fn eq(&self, other: &Instance) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Instance {}

/// Everything a payer's route search depends on besides the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteInputs {
    pub(crate) payer: NodeId,
    pub(crate) payee: NodeId,
    pub(crate) amount: u128,
    pub(crate) params: RouteParams,
    /// The payer's instance, whose scorer's time and generation follow.
    pub(crate) instance: Instance,
    pub(crate) now: Duration,
    pub(crate) scorer_generation: u64,
}

/// A payer's route search, to run on any thread ([`Self::search`]).
#[derive(Debug)]
pub struct RouteQuery {
    inputs: RouteInputs,
    /// The payer's scorer as it will be at `inputs.now` if it learns nothing meanwhile.
    scorer: ProbabilisticScorer,
    view: SharedView,
}

/// A route searched ahead, to offer its payer ([`crate::Node::offer_route`]).
#[derive(Debug)]
pub struct FoundRoute {
    inputs: RouteInputs,
    view: SharedView,
    graph_generation: u64,
    result: Result<Route, RouteError>,
}

impl RouteQuery {
    pub(crate) fn new(inputs: RouteInputs, scorer: ProbabilisticScorer, view: SharedView) -> Self {
        Self {
            inputs,
            scorer,
            view,
        }
    }

    /// Searches, in `router`'s working memory (a thread keeps one for all its searches).
    pub fn search(self, router: &mut Router) -> FoundRoute {
        let i = &self.inputs;
        let (result, graph_generation) =
            self.view
                .search_in(router, &self.scorer, i.payer, i.payee, i.amount, &i.params);
        FoundRoute {
            inputs: self.inputs,
            view: self.view,
            graph_generation,
            result,
        }
    }
}

impl FoundRoute {
    /// The route found, or why there is none.
    pub fn route(&self) -> Result<&Route, &RouteError> {
        self.result.as_ref()
    }

    /// The answer, if it was searched with `inputs` in `view` with the graph as it is now.
    pub(crate) fn answer(
        self,
        inputs: &RouteInputs,
        view: &SharedView,
    ) -> Option<Result<Route, RouteError>> {
        let same = self.inputs == *inputs
            && self.view.is(view)
            && self.graph_generation == view.read().graph().generation();
        same.then_some(self.result)
    }
}
