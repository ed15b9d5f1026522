//! The threads beside the loop, one pool for all the work handed to them (signatures
//! recovered in flight, [`crate::recovery`]; payers' routes searched ahead, [`crate::ahead`]).
//!
//! One pool, so that there are never more busy threads than `--threads`: a thread beyond the
//! cores would take turns with the loop, which may be waiting on the job it preempted.
//! Jobs run in the order they are handed over; what they compute is a pure function of their
//! inputs, so which thread runs a job, and when, changes no result.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A handle on the pool (cheap to clone); the threads stop once every handle is dropped and
/// the jobs handed over are done.
#[derive(Clone, Default)]
pub struct Workers(Option<Arc<Pool>>);

struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Workers {
    /// `count` threads (none: every job is left to the loop).
    pub fn new(count: usize) -> Self {
        if count == 0 {
            return Self(None);
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..count)
            .map(|n| {
                let queue = Arc::clone(&queue);
                std::thread::Builder::new()
                    .name(format!("hoplite-sim-worker-{n}"))
                    .spawn(move || work(&queue))
                    .expect("the OS starts a thread")
            })
            .collect();
        Self(Some(Arc::new(Pool {
            jobs: Some(jobs),
            threads,
        })))
    }

    /// Whether there is any thread to hand work to.
    pub fn any(&self) -> bool {
        self.0.is_some()
    }

    /// Hands `job` to the threads; `false` (and the job dropped) if there are none.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let Some(jobs) = self.0.as_ref().and_then(|pool| pool.jobs.as_ref()) else {
            return false;
        };
        // The threads stop only when this sender is dropped: the send cannot fail.
        jobs.send(Box::new(job)).is_ok()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take a job, never while running one.
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Workers;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_on_the_threads_and_none_without() {
        assert!(!Workers::new(0).run(|| panic!("no thread to run it")));
        let workers = Workers::new(2);
        let (done, results) = mpsc::channel();
        for n in 0..100u32 {
            let done = done.clone();
            assert!(workers.run(move || done.send(n * n).expect("the test waits")));
        }
        drop(done);
        let mut squares: Vec<u32> = results.iter().collect();
        squares.sort_unstable();
        assert_eq!(squares, (0..100u32).map(|n| n * n).collect::<Vec<_>>());
    }
}
