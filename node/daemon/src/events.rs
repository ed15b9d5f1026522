//! The API's event log: what the node reported, numbered, served as Server-Sent Events and by
//! long polls.
//!
//! An event gets its id when the node reports it, is written to the store, and is published
//! (seen by clients) only once that write committed: an id a client saw is never reused for
//! another event after a crash, and a client that resumes with `Last-Event-ID` after a
//! reconnect or a restart of the daemon gets every event after it. A database put back from
//! a backup numbers on from what it holds, so ids are given again: a client beyond the newest
//! is told (`reset`), but one that comes back after the restored node has caught up to its id
//! is not. The newest
//! [`EVENTS_KEPT`] are kept; a client asking for older ones is told where the log begins.

use crate::store::EVENTS_KEPT;
use crate::views::EventEntry;
use axum::response::sse::Event as SseEvent;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The most events one SSE write or long poll carries.
const PAGE: usize = 1_000;

/// The published events, shared by the node's task (which publishes) and the API (which
/// reads); the newest id is watched, so readers wait without polling.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Published>>,
    newest: Arc<watch::Sender<u64>>,
    closed: Arc<watch::Sender<bool>>,
}

#[derive(Default)]
struct Published {
    /// Oldest first, ids consecutive.
    events: VecDeque<(u64, Arc<str>)>,
}

impl EventLog {
    /// A log holding `stored` (id and JSON, oldest first, as the store kept them).
    pub fn new(stored: Vec<(u64, String)>) -> Self {
        let newest = stored.last().map_or(0, |(id, _)| *id);
        let events = stored
            .into_iter()
            .map(|(id, body)| (id, Arc::from(body)))
            .collect();
        Self {
            inner: Arc::new(Mutex::new(Published { events })),
            newest: Arc::new(watch::Sender::new(newest)),
            closed: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The newest published id (0 before any).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// Publishes `id` (the next id) with its JSON.
    pub fn publish(&self, id: u64, body: String) {
        {
            let mut inner = self.inner.lock().expect("not poisoned");
            if inner.events.len() as u64 >= EVENTS_KEPT {
                inner.events.pop_front();
            }
            inner.events.push_back((id, Arc::from(body)));
        }
        self.newest.send_replace(id);
    }

    /// Up to [`PAGE`] events after `after`, oldest first; and, if events after `after` were
    /// dropped already, the oldest id kept.
    fn page(&self, after: u64) -> (Vec<(u64, Arc<str>)>, Option<u64>) {
        let inner = self.inner.lock().expect("not poisoned");
        let oldest = inner.events.front().map(|(id, _)| *id);
        let gap = oldest.filter(|oldest| after.saturating_add(1) < *oldest);
        let start = oldest.map_or(0, |oldest| after.saturating_add(1).saturating_sub(oldest));
        let page = inner
            .events
            .iter()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take(PAGE)
            .cloned()
            .collect();
        (page, gap)
    }

    /// Ends every stream (the node stops: the API can then shut down).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Waits until an event after `after` is published (true), or the log closes (false).
    async fn wait_after(&self, after: u64) -> bool {
        let mut newest = self.newest.subscribe();
        let mut closed = self.closed.subscribe();
        tokio::select! {
            published = newest.wait_for(|id| *id > after) => published.is_ok(),
            _ = closed.wait_for(|closed| *closed) => false,
        }
    }

    /// The events after `after` (at most [`PAGE`]), waiting up to `wait` for one: the long
    /// poll's answer, `[{"id", "event"}]`. A notice of id 0 comes first when the log can't
    /// answer for what the client asks: a `gap` (events after `after` were dropped) or a
    /// `reset` (`after` is beyond the newest id: the database was put back from a backup).
    pub async fn poll(&self, after: u64, wait: std::time::Duration) -> Value {
        let mut entries = Vec::new();
        // One reading of the newest for the check and the page: a publish between two
        // would skip or repeat an event.
        let newest = self.newest();
        if let Some(reset) = reset_notice(after, newest) {
            entries.push(EventEntry {
                id: 0,
                event: reset,
            });
        } else {
            let _ = tokio::time::timeout(wait, self.wait_after(after)).await;
        }
        let (page, gap) = self.page(after.min(newest));
        if let Some(oldest) = gap {
            entries.push(EventEntry {
                id: 0,
                event: gap_notice(oldest, after),
            });
        }
        entries.extend(page.into_iter().map(|(id, body)| EventEntry {
            id,
            event: serde_json::from_str(&body).unwrap_or(Value::Null),
        }));
        serde_json::to_value(entries).expect("events serialize")
    }

    /// The events after `after` as SSE, then each new one as it is published, until the node
    /// stops. Each carries its id (`id:`) and its JSON (`data:`). A `gap` event (no id) says
    /// events after the reader's position were dropped before it read them; a `reset` event
    /// says `after` is beyond the newest id (the database was put back from a backup), and
    /// the stream goes on from the newest.
    pub fn stream(&self, after: u64) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
        let log = self.clone();
        let newest = self.newest();
        let reset = reset_notice(after, newest);
        let after = after.min(newest);
        futures::stream::unfold((log, after, reset), |(log, after, reset)| async move {
            loop {
                let (page, gap) = log.page(after);
                if !page.is_empty() || gap.is_some() || reset.is_some() {
                    let mut out = Vec::with_capacity(page.len() + 2);
                    if let Some(reset) = reset {
                        out.push(Ok(SseEvent::default()
                            .event("reset")
                            .data(reset.to_string())));
                    }
                    if let Some(oldest) = gap {
                        out.push(Ok(SseEvent::default()
                            .event("gap")
                            .data(gap_notice(oldest, after).to_string())));
                    }
                    // Past a gap, the reader is at the oldest kept.
                    let start = gap.map_or(after, |oldest| after.max(oldest - 1));
                    let next = page.last().map_or(start, |(id, _)| *id);
                    out.extend(
                        page.into_iter().map(|(id, body)| {
                            Ok(SseEvent::default().id(id.to_string()).data(&*body))
                        }),
                    );
                    return Some((futures::stream::iter(out), (log, next, None)));
                }
                if !log.wait_after(after).await {
                    return None;
                }
            }
        })
        .flatten()
    }
}

/// The `reset` notice for a client beyond the newest id, if it is.
fn reset_notice(after: u64, newest: u64) -> Option<Value> {
    (after > newest).then(|| json!({"type": "reset", "newest": newest, "after": after}))
}

fn gap_notice(oldest: u64, after: u64) -> Value {
    json!({"type": "gap", "oldest": oldest, "after": after})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_gets_what_follows_its_id_and_hears_of_a_gap() {
        let log = EventLog::new(vec![(5, "{\"n\":5}".into()), (6, "{\"n\":6}".into())]);
        assert_eq!(log.newest(), 6);
        let answer = log.poll(5, std::time::Duration::ZERO).await;
        assert_eq!(answer, json!([{"id": 6, "event": {"n": 6}}]));
        let mut stream = Box::pin(log.stream(2));
        // Events 3 and 4 are gone: the reader is told, then gets 5 and 6.
        let gap = format!("{:?}", stream.next().await.unwrap().unwrap());
        assert!(
            gap.contains("gap") && gap.contains("\\\"oldest\\\":5"),
            "{gap}"
        );
        for id in [5, 6] {
            let event = format!("{:?}", stream.next().await.unwrap().unwrap());
            assert!(event.contains(&format!("\"n\\\":{id}")), "{event}");
        }
        let later = log.clone();
        tokio::spawn(async move { later.publish(7, "{\"n\":7}".into()) });
        let event = format!("{:?}", stream.next().await.unwrap().unwrap());
        assert!(event.contains("\"n\\\":7"), "{event}");
        assert_eq!(
            log.poll(7, std::time::Duration::from_millis(10)).await,
            json!([])
        );
        // Beyond the newest (a database put back): told so, and given nothing newer.
        let answer = log.poll(9, std::time::Duration::from_secs(60)).await;
        assert_eq!(answer[0]["event"]["type"], "reset", "{answer}");
        assert_eq!(answer[0]["event"]["newest"], 7, "{answer}");
        let mut stream = Box::pin(log.stream(9));
        let reset = format!("{:?}", stream.next().await.unwrap().unwrap());
        assert!(reset.contains("reset"), "{reset}");
        // The long poll says when it skips.
        let answer = log.poll(2, std::time::Duration::ZERO).await;
        assert_eq!(answer[0]["event"]["type"], "gap", "{answer}");
        assert_eq!(answer[1]["id"], 5);
    }
}
