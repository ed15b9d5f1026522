//! The node's records in SQLite: one table per kind, one transaction per group of `Persist`
//! batches, `synchronous=FULL` (a record that lets a peer's signature go out must survive a
//! power loss, not only a killed process).
//!
//! [`Store::open`] reads everything back for `Node::restore`; [`Store::spawn_writer`] moves
//! the connection to a writer thread that drains its queue into one transaction, commits
//! (one fsync for every batch in it), then reports each batch durable. Tables:
//! - `channels`: the latest `Channel` record of each channel;
//! - `entries`: the latest value of each bookkeeping entry (a `None` deletes it);
//! - `log`: `Invoice`, `InvoiceRevealed`, `Finished` and `LockChange` records in the order
//!   written (a `ChannelForgotten` deletes the channel's lock changes with it);
//! - `gossip`: the announcements and updates the node accepted, so a restarted node routes
//!   at once;
//! - `chain_events`: the logs of both contracts the node was fed, and `checkpoint`: the last
//!   block processed and its hash. A restart feeds the node these (`Node::restore` wants
//!   every event from the deployment on) and reads the chain only after the checkpoint;
//! - `meta`: a commit counter (`generation`), which a backup's marker is checked against;
//! - `api_events`: the events the API serves (SSE and long polls), by id, the newest
//!   [`EVENTS_KEPT`]: a client resuming with `Last-Event-ID`, even across a restart, misses
//!   none of them;
//! - `history`: the API's payments and invoices (JSON by kind and id), the newest
//!   [`HISTORY_KEPT`] of each kind (trimmed to that every [`HISTORY_TRIM_EVERY`] writes of
//!   a kind, and when the writer starts).

use crate::history::Change;
use alloy_primitives::{B256, Bytes, Log, LogData};
use hoplite_chain::backend::BlockLog;
use hoplite_htlc::ChannelId;
use hoplite_node::{EntryKey, EntryValue, PersistId, Record};
use rusqlite::backup::StepResult;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

/// The schema this build writes; older ones are migrated at open, newer ones refused.
pub const SCHEMA_VERSION: i64 = 4;

/// The most accepted gossip messages kept (the oldest go first).
const MAX_GOSSIP_KEPT: i64 = 100_000;

/// The most API events kept (the oldest go first).
pub const EVENTS_KEPT: u64 = 10_000;

/// The most payments, and the most invoices, kept for the API (the oldest go first).
pub const HISTORY_KEPT: usize = 10_000;

/// History rows of one kind written between two trims to [`HISTORY_KEPT`] (and one trim of
/// every kind when the writer starts): a trim walks the kind's newest rows, so it is not done
/// at every commit. The table holds at most `HISTORY_KEPT + HISTORY_TRIM_EVERY` of a kind;
/// what the API serves is the newest `HISTORY_KEPT`.
const HISTORY_TRIM_EVERY: usize = 1_000;

/// The most jobs committed in one transaction.
const MAX_GROUP: usize = 4_096;

/// Why the store can't go on; the node stops (the next batches would build on a lost one).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row does not decode: the database is not what this node wrote.
    #[error("corrupt {table} row: {error}")]
    Corrupt {
        /// Where.
        table: &'static str,
        /// What postcard said.
        error: postcard::Error,
    },
    /// A stored row is not in the shape this build writes.
    #[error("malformed {0} row")]
    Malformed(&'static str),
    /// Written by a newer hoplite.
    #[error("database schema {found} is newer than this build's {SCHEMA_VERSION}")]
    NewerSchema {
        /// Its version.
        found: i64,
    },
}

/// An open database, before its writer thread starts.
pub struct Store {
    conn: Connection,
}

/// What the node had persisted.
pub struct Stored {
    /// The records, in the order `Node::restore` takes them.
    pub records: Vec<Record>,
    /// The gossip it had accepted, oldest first.
    pub gossip: Vec<Vec<u8>>,
    /// The chain logs it was fed, oldest first.
    pub chain_events: Vec<BlockLog>,
    /// The last block it processed, and its hash.
    pub checkpoint: Option<Checkpoint>,
    /// Commits so far.
    pub generation: u64,
    /// The API's events (id, JSON), oldest first.
    pub events: Vec<(u64, String)>,
    /// The API's payments and invoices (kind, JSON), oldest first.
    pub history: Vec<(HistoryKind, String)>,
}

/// What a `history` row is; each kind is bounded on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryKind {
    /// A payment we made.
    Sent,
    /// A payment we received (its id may be any, the payer's choice).
    Received,
    /// An invoice we made.
    Invoice,
}

impl HistoryKind {
    const ALL: [Self; 3] = [Self::Sent, Self::Received, Self::Invoice];

    fn name(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
            Self::Invoice => "invoice",
        }
    }
}

/// A processed block: its number and hash.
pub type Checkpoint = (u64, B256);

impl Store {
    /// Opens (or creates) the database at `path`, WAL with full sync, migrated to
    /// [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found: version });
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE channels (id BLOB PRIMARY KEY, record BLOB NOT NULL);
                 CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB NOT NULL);
                 CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel BLOB,
                                   record BLOB NOT NULL);
                 CREATE INDEX log_channel ON log (channel) WHERE channel IS NOT NULL;
                 CREATE TABLE gossip (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                      hash BLOB NOT NULL UNIQUE, bytes BLOB NOT NULL);
                 CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if version < 2 {
            // Version 1 kept a last block but not the events before it: dropping it makes
            // the next start read the chain from the deployment once.
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE chain_events (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                            block INTEGER NOT NULL, address BLOB NOT NULL,
                                            topics BLOB NOT NULL, data BLOB NOT NULL);
                 CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0),
                                          block INTEGER NOT NULL, hash BLOB NOT NULL);
                 DELETE FROM meta WHERE key = 'last_block';
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if version < 3 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE api_events (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
                 CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                       kind TEXT NOT NULL, id TEXT NOT NULL,
                                       body TEXT NOT NULL, UNIQUE (kind, id));
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
        }
        if version < 4 {
            // Trimming a kind to its newest rows walks them in this order: without the index
            // it sorted every row of the kind, at every commit.
            conn.execute_batch(
                "BEGIN;
                 CREATE INDEX history_kind_seq ON history (kind, seq);
                 PRAGMA user_version = 4;
                 COMMIT;",
            )?;
        }
        Ok(Self { conn })
    }

    /// Everything kept: the records as [`hoplite_node::MemoryStore::records`] orders them
    /// (channels, the log, entries), the gossip and the last block.
    pub fn load(&self) -> Result<Stored, StoreError> {
        let mut records = Vec::new();
        let decode = |table, bytes: Vec<u8>| {
            postcard::from_bytes::<Record>(&bytes)
                .map_err(|error| StoreError::Corrupt { table, error })
        };
        let mut rows = self
            .conn
            .prepare("SELECT record FROM channels ORDER BY id")?;
        for bytes in rows.query_map([], |row| row.get(0))? {
            records.push(decode("channels", bytes?)?);
        }
        let mut rows = self.conn.prepare("SELECT record FROM log ORDER BY seq")?;
        for bytes in rows.query_map([], |row| row.get(0))? {
            records.push(decode("log", bytes?)?);
        }
        let mut rows = self
            .conn
            .prepare("SELECT key, value FROM entries ORDER BY key")?;
        for row in rows.query_map([], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })? {
            let (key, value) = row?;
            let corrupt = |error| StoreError::Corrupt {
                table: "entries",
                error,
            };
            records.push(Record::Entry {
                key: postcard::from_bytes::<EntryKey>(&key).map_err(corrupt)?,
                value: Some(postcard::from_bytes::<EntryValue>(&value).map_err(corrupt)?),
            });
        }
        let mut rows = self.conn.prepare("SELECT bytes FROM gossip ORDER BY seq")?;
        let gossip = rows
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut rows = self
            .conn
            .prepare("SELECT block, address, topics, data FROM chain_events ORDER BY seq")?;
        let chain_events = rows
            .query_map([], |row| {
                Ok(stored_log(
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                ))
            })?
            .collect::<Result<Option<Vec<_>>, _>>()?
            .ok_or(StoreError::Malformed("chain_events"))?;
        let checkpoint = self
            .conn
            .query_row("SELECT block, hash FROM checkpoint", [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?
            .map(|(block, hash)| {
                B256::try_from(hash.as_slice())
                    .map(|hash| (block as u64, hash))
                    .map_err(|_| StoreError::Malformed("checkpoint"))
            })
            .transpose()?;
        let mut rows = self
            .conn
            .prepare("SELECT id, body FROM api_events ORDER BY id")?;
        let events = rows
            .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut rows = self
            .conn
            .prepare("SELECT kind, body FROM history ORDER BY seq")?;
        let history = rows
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .map(|row| {
                let (kind, body) = row?;
                let kind = HistoryKind::ALL
                    .into_iter()
                    .find(|k| k.name() == kind)
                    .ok_or(StoreError::Malformed("history"))?;
                Ok((kind, body))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Stored {
            records,
            gossip,
            chain_events,
            checkpoint,
            generation: self.meta("generation")?.unwrap_or(0) as u64,
            events,
            history,
        })
    }

    /// Forgets the chain logs and the checkpoint: the next start reads the chain from the
    /// deployment (after a reorg below the checkpoint).
    pub fn forget_chain(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN; DELETE FROM chain_events; DELETE FROM checkpoint; COMMIT;")?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Starts the writer thread; each group it commits is reported on `done`, and how long
    /// it took in `commit_seconds`.
    pub fn spawn_writer(
        self,
        done: UnboundedSender<Committed>,
        commit_seconds: prometheus_client::metrics::histogram::Histogram,
    ) -> Writer {
        let (jobs, queue) = mpsc::channel();
        let stats = Arc::new(StoreStats {
            commits: AtomicU64::default(),
            batches: AtomicU64::default(),
            commit_seconds,
        });
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("hoplite-store".into())
            .spawn(move || write_loop(self.conn, &queue, &done, &thread_stats))
            .expect("spawning the store's writer thread");
        Writer {
            jobs,
            thread: Some(thread),
            stats,
        }
    }
}

/// The file in the data directory that records the generation of the last backup.
pub const BACKUP_MARKER: &str = "backup-marker";

/// Copies the database at `database` (in use or not) to the new file `to` with SQLite's
/// online backup, in one read transaction, then records the copy's generation in the
/// data directory's [`BACKUP_MARKER`]. Returns that generation.
pub fn backup(database: &Path, to: &Path) -> Result<u64, BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.to_owned()));
    }
    let source = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut copy = Connection::open(&partial)?;
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        // -1: every page in one step, so the copy is one consistent state even while the
        // node writes; busy (a checkpoint in progress) is retried for up to 5 s.
        let mut tries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                _ if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => return Err(BackupError::Busy),
            }
        }
    }
    let generation: i64 = Connection::open(&partial)?
        .query_row(
            "SELECT value FROM meta WHERE key = 'generation'",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, to)?;
    let dir = database.parent().unwrap_or(Path::new("."));
    let marker = dir.join(BACKUP_MARKER);
    let written = dir.join(format!("{BACKUP_MARKER}.partial"));
    std::fs::write(&written, format!("{generation}\n"))?;
    std::fs::File::open(&written)?.sync_all()?;
    std::fs::rename(&written, &marker)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(generation as u64)
}

/// Refuses a database older than the last backup taken of this data directory: it is a
/// stale copy put back, and a stale channel state can lose funds.
pub fn check_backup_marker(data_dir: &Path, generation: u64) -> Result<(), BackupError> {
    let path = data_dir.join(BACKUP_MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let marker: u64 = text
        .trim()
        .parse()
        .map_err(|_| BackupError::BadMarker(path.clone()))?;
    if generation < marker {
        return Err(BackupError::Stale { generation, marker });
    }
    Ok(())
}

/// Why a backup, or a start after one, was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup would overwrite a file.
    #[error("{0} exists: choose a new file for the backup")]
    Exists(std::path::PathBuf),
    /// SQLite refused.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading or writing a file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The database stayed locked.
    #[error("the database stayed busy for 5 s")]
    Busy,
    /// The marker is not a number.
    #[error("{} is not a generation number", .0.display())]
    BadMarker(std::path::PathBuf),
    /// The database is older than the last backup.
    #[error(
        "the database (generation {generation}) is older than the last backup taken of it \
         (generation {marker}): a stale state was put back, and signing on from it can lose \
         funds. Restore the newest backup, or remove the marker if you know better"
    )]
    Stale {
        /// The database's generation.
        generation: u64,
        /// The last backup's.
        marker: u64,
    },
}

/// Counters of the writer, for logs, metrics and benchmarks.
#[derive(Debug)]
pub struct StoreStats {
    /// Transactions committed (each one fsync of the WAL).
    pub commits: AtomicU64,
    /// Persist batches written.
    pub batches: AtomicU64,
    /// Seconds each commit took.
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
}

/// One thing for the writer to do.
enum Job {
    Batch(PersistId, Vec<Record>),
    Gossip(Vec<u8>),
    ChainEvents(Vec<BlockLog>, Checkpoint),
    Checkpoint(Checkpoint),
    Event(u64, String),
    History(Change),
}

/// What the writer reports after a commit.
#[derive(Debug)]
pub enum Committed {
    /// Every batch up to `batch`, and every API event up to `event`, is durable.
    Group {
        /// The highest batch id committed so far, if this group had one.
        batch: Option<PersistId>,
        /// The highest event id committed so far, if this group had one.
        event: Option<u64>,
    },
    /// The commit failed: stop the node.
    Failed(StoreError),
}

/// The queue into the writer thread. Dropping it (or [`Writer::close`]) lets the writer
/// finish what is queued, then stop.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<StoreStats>,
}

impl Writer {
    /// Queues a `Persist` batch.
    pub fn persist(&self, id: PersistId, records: Vec<Record>) {
        self.send(Job::Batch(id, records));
    }

    /// Queues a gossip message the node accepted.
    pub fn gossip(&self, bytes: Vec<u8>) {
        self.send(Job::Gossip(bytes));
    }

    /// Queues chain logs the node was fed, with the checkpoint they reach (written together).
    pub fn chain_events(&self, logs: Vec<BlockLog>, checkpoint: Checkpoint) {
        self.send(Job::ChainEvents(logs, checkpoint));
    }

    /// Queues the last block processed: every log up to it was queued before.
    pub fn checkpoint(&self, checkpoint: Checkpoint) {
        self.send(Job::Checkpoint(checkpoint));
    }

    /// Queues an API event (ids grow by one); reported in [`Committed::Group`] once durable.
    pub fn event(&self, id: u64, body: String) {
        self.send(Job::Event(id, body));
    }

    /// Queues the newest state of a payment or invoice for the API.
    pub fn history(&self, change: Change) {
        self.send(Job::History(change));
    }

    fn send(&self, job: Job) {
        // The writer stops only after a failed commit, which it reported: the node is
        // stopping, and what it queues now has nowhere to go.
        let _ = self.jobs.send(job);
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }

    /// Waits until everything queued is committed, then stops the thread.
    pub fn close(mut self) {
        self.join();
    }

    fn join(&mut self) {
        let (jobs, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, jobs));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.join();
    }
}

fn write_loop(
    mut conn: Connection,
    queue: &mpsc::Receiver<Job>,
    done: &UnboundedSender<Committed>,
    stats: &StoreStats,
) {
    // A restarted writer does not know how much was written since the last trim.
    if let Err(error) = HistoryKind::ALL
        .into_iter()
        .try_for_each(|kind| trim_history(&conn, kind))
    {
        let _ = done.send(Committed::Failed(error));
        return;
    }
    // Every statement the writer runs stays prepared (`execute`).
    conn.set_prepared_statement_cache_capacity(32);
    let mut untrimmed = [0; 3];
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches = group.iter().filter(|j| matches!(j, Job::Batch(..))).count() as u64;
        #[allow(clippy::disallowed_methods)] // The daemon measures its commits.
        let started = std::time::Instant::now();
        match commit(&mut conn, group, &mut untrimmed) {
            Ok((batch, event)) => {
                stats
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.batches.fetch_add(batches, Ordering::Relaxed);
                if batch.is_some() || event.is_some() {
                    let _ = done.send(Committed::Group { batch, event });
                }
            }
            Err(error) => {
                let _ = done.send(Committed::Failed(error));
                return;
            }
        }
    }
}

/// Writes a group in one transaction; the highest batch id and event id in it, if any.
/// `untrimmed` counts the history rows of each kind written since its last trim.
fn commit(
    conn: &mut Connection,
    group: Vec<Job>,
    untrimmed: &mut [usize; 3],
) -> Result<(Option<PersistId>, Option<u64>), StoreError> {
    let tx = conn.transaction()?;
    let mut persisted = None;
    let mut event = None;
    for job in group {
        match job {
            Job::Batch(id, records) => {
                for record in records {
                    write_record(&tx, record)?;
                }
                persisted = persisted.max(Some(id));
            }
            Job::Gossip(bytes) => {
                let hash = alloy_primitives::keccak256(&bytes);
                execute(
                    &tx,
                    "INSERT OR IGNORE INTO gossip (hash, bytes) VALUES (?1, ?2)",
                    params![hash.as_slice(), bytes],
                )?;
                execute(
                    &tx,
                    "DELETE FROM gossip WHERE seq <= (SELECT MAX(seq) FROM gossip) - ?1",
                    [MAX_GOSSIP_KEPT],
                )?;
            }
            Job::ChainEvents(logs, (block, hash)) => {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO chain_events (block, address, topics, data) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for entry in logs {
                    let topics: Vec<u8> = entry.log.topics().iter().flat_map(|t| t.0).collect();
                    insert.execute(params![
                        entry.block as i64,
                        entry.log.address.as_slice(),
                        topics,
                        entry.log.data.data.as_ref(),
                    ])?;
                }
                write_checkpoint(&tx, block, hash)?;
            }
            Job::Checkpoint((block, hash)) => write_checkpoint(&tx, block, hash)?,
            Job::Event(id, body) => {
                execute(
                    &tx,
                    "INSERT OR REPLACE INTO api_events (id, body) VALUES (?1, ?2)",
                    params![id as i64, body],
                )?;
                event = event.max(Some(id));
            }
            Job::History(Change {
                kind,
                id,
                body,
                new,
            }) => {
                // Rows are in the order the list has its records, so that a trim drops what
                // the list dropped: a record new to the list gets a new row, last (replacing
                // the row of a record the list dropped and a trim has not yet), an update
                // keeps its row's place.
                let sql = if new {
                    "INSERT OR REPLACE INTO history (kind, id, body) VALUES (?1, ?2, ?3)"
                } else {
                    "INSERT INTO history (kind, id, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body"
                };
                execute(&tx, sql, params![kind.name(), id, body])?;
                untrimmed[kind as usize] += 1;
            }
        }
    }
    if let Some(newest) = event {
        execute(
            &tx,
            "DELETE FROM api_events WHERE id <= ?1",
            [newest.saturating_sub(EVENTS_KEPT) as i64],
        )?;
    }
    for kind in HistoryKind::ALL {
        if untrimmed[kind as usize] >= HISTORY_TRIM_EVERY {
            trim_history(&tx, kind)?;
            untrimmed[kind as usize] = 0;
        }
    }
    execute(
        &tx,
        "INSERT INTO meta (key, value) VALUES ('generation', 1)
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
        [],
    )?;
    tx.commit()?;
    Ok((persisted, event))
}

/// Runs one statement, prepared once per connection: the writer runs the same few for every
/// record, and parsing them again took a fifth of its time.
fn execute(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Deletes all but the newest [`HISTORY_KEPT`] history rows of `kind`.
fn trim_history(conn: &Connection, kind: HistoryKind) -> Result<(), StoreError> {
    execute(
        conn,
        "DELETE FROM history WHERE kind = ?1 AND seq <= (SELECT seq FROM history
         WHERE kind = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![kind.name(), HISTORY_KEPT as i64],
    )
    .map(drop)
}

fn write_checkpoint(tx: &Transaction<'_>, block: u64, hash: B256) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO checkpoint (id, block, hash) VALUES (0, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET block = excluded.block, hash = excluded.hash",
        params![block as i64, hash.as_slice()],
    )?;
    Ok(())
}

fn write_record(tx: &Transaction<'_>, record: Record) -> Result<(), StoreError> {
    let key = |id: &ChannelId| postcard::to_allocvec(id).expect("ids encode");
    match &record {
        Record::Channel(channel) => {
            execute(
                tx,
                "INSERT INTO channels (id, record) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                params![key(&channel.id()), encode(&record)],
            )?;
        }
        Record::ChannelForgotten(channel) => {
            execute(tx, "DELETE FROM channels WHERE id = ?1", [key(channel)])?;
            execute(tx, "DELETE FROM log WHERE channel = ?1", [key(channel)])?;
        }
        Record::Entry { key: entry, value } => {
            let entry = postcard::to_allocvec(entry).expect("keys encode");
            match value {
                Some(value) => execute(
                    tx,
                    "INSERT INTO entries (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![entry, postcard::to_allocvec(value).expect("values encode")],
                )?,
                None => execute(tx, "DELETE FROM entries WHERE key = ?1", [entry])?,
            };
        }
        Record::LockChange { channel, .. } => {
            execute(
                tx,
                "INSERT INTO log (channel, record) VALUES (?1, ?2)",
                params![key(channel), encode(&record)],
            )?;
        }
        Record::Invoice(_) | Record::InvoiceRevealed { .. } | Record::Finished { .. } => {
            execute(
                tx,
                "INSERT INTO log (record) VALUES (?1)",
                [encode(&record)],
            )?;
        }
    }
    Ok(())
}

/// A stored chain log; `None` if its columns are not what [`commit`] writes.
fn stored_log(block: i64, address: Vec<u8>, topics: Vec<u8>, data: Vec<u8>) -> Option<BlockLog> {
    let address = alloy_primitives::Address::try_from(address.as_slice()).ok()?;
    if !topics.len().is_multiple_of(32) || topics.len() > 4 * 32 {
        return None;
    }
    let topics = topics.chunks(32).map(B256::from_slice).collect();
    let data = LogData::new(topics, Bytes::from(data))?;
    Some(BlockLog {
        block: u64::try_from(block).ok()?,
        log: Log { address, data },
    })
}

fn encode(record: &Record) -> Vec<u8> {
    postcard::to_allocvec(record).expect("records encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoplite_node::MemoryStore;
    use hoplite_node::testkit::create_network;
    use prometheus_client::metrics::histogram::Histogram;

    /// A database path in a folder that goes when the first is dropped.
    fn temp_db(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hoplite-store-{name}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().join("node.sqlite");
        (dir, path)
    }

    /// Real records from a two-hop payment, written in batches as the node made them: the
    /// database gives back what the in-memory store does.
    #[test]
    fn the_database_restores_what_memory_would() {
        let mut net = create_network(3);
        net.record_batches(1);
        net.open_channel(0, 1, [5_000, 5_000]);
        net.open_channel(1, 2, [5_000, 5_000]);
        let payment = net.send_payment(0, 2, 1_000);
        net.claim_payment(&[0, 1, 2], payment);
        let batches = net.recorded_batches(1);
        assert!(batches.len() > 3, "a mediator persists several batches");
        let (_dir, path) = temp_db("restore");
        let (done, mut committed) = tokio::sync::mpsc::unbounded_channel();
        let writer = Store::open(&path)
            .unwrap()
            .spawn_writer(done, Histogram::new([1.0]));
        let mut memory = MemoryStore::new();
        let mut last = None;
        for (id, records) in batches {
            memory.write(records.clone());
            writer.persist(id, records);
            last = Some(id);
        }
        writer.gossip(vec![1, 2, 3]);
        writer.gossip(vec![1, 2, 3]);
        let log = BlockLog {
            block: 41,
            log: Log {
                address: alloy_primitives::Address::repeat_byte(9),
                data: LogData::new_unchecked(
                    vec![B256::repeat_byte(7), B256::repeat_byte(8)],
                    Bytes::from(vec![1, 2, 3]),
                ),
            },
        };
        writer.chain_events(vec![log.clone()], (41, B256::repeat_byte(3)));
        writer.checkpoint((42, B256::repeat_byte(4)));
        writer.close();
        let mut reported = None;
        while let Ok(Committed::Group { batch, .. }) = committed.try_recv() {
            assert!(reported < batch, "reported in order");
            reported = batch;
        }
        assert_eq!(reported, last);
        let stored = Store::open(&path).unwrap().load().unwrap();
        assert_eq!(stored.records, memory.records().collect::<Vec<_>>());
        assert_eq!(stored.gossip, vec![vec![1, 2, 3]]);
        assert_eq!(stored.chain_events, vec![log]);
        assert_eq!(stored.checkpoint, Some((42, B256::repeat_byte(4))));
        assert!(stored.generation > 0);
    }

    #[test]
    fn history_is_trimmed_to_the_newest_of_each_kind() {
        let (_dir, path) = temp_db("history");
        let rows = |kind: HistoryKind| -> Vec<i64> {
            let conn = Connection::open(&path).unwrap();
            let mut select = conn
                .prepare("SELECT id FROM history WHERE kind = ?1 ORDER BY seq")
                .unwrap();
            select
                .query_map([kind.name()], |row| row.get::<_, String>(0))
                .unwrap()
                .map(|id| id.unwrap().parse().unwrap())
                .collect()
        };
        let change = |kind, id: usize, new| Change {
            kind,
            id: id.to_string(),
            body: "{}".into(),
            new,
        };
        // Starts a writer (which trims), runs `write` with it, and waits until all is committed.
        let with_writer = |write: &dyn Fn(&Writer)| {
            let (done, mut committed) = tokio::sync::mpsc::unbounded_channel();
            let writer = Store::open(&path)
                .unwrap()
                .spawn_writer(done, Histogram::new([1.0]));
            write(&writer);
            writer.close();
            while let Ok(report) = committed.try_recv() {
                if let Committed::Failed(error) = report {
                    panic!("{error}");
                }
            }
        };
        let written = HISTORY_KEPT + HISTORY_TRIM_EVERY + HISTORY_TRIM_EVERY / 2;
        with_writer(&|writer| {
            for n in 0..written {
                writer.history(change(HistoryKind::Sent, n, true));
            }
            writer.history(change(HistoryKind::Invoice, 7, true));
        });
        let sent = rows(HistoryKind::Sent);
        assert!(
            (HISTORY_KEPT..HISTORY_KEPT + HISTORY_TRIM_EVERY).contains(&sent.len()),
            "{} rows",
            sent.len()
        );
        assert_eq!(sent.last(), Some(&(written as i64 - 1)));
        assert!(
            sent.windows(2).all(|w| w[0] + 1 == w[1]),
            "the oldest go first"
        );

        // Rows written behind the writer's back: one that starts trims every kind, whatever
        // was written before; each kind is bounded on its own.
        let conn = Connection::open(&path).unwrap();
        for n in written..written + 500 {
            conn.execute(
                "INSERT INTO history (kind, id, body) VALUES ('sent', ?1, '{}')",
                [n.to_string()],
            )
            .unwrap();
        }
        drop(conn);
        let newest = written + 500;
        with_writer(&|_| {});
        let sent = rows(HistoryKind::Sent);
        assert_eq!(sent.len(), HISTORY_KEPT);
        assert_eq!(sent.first(), Some(&((newest - HISTORY_KEPT) as i64)));
        assert_eq!(rows(HistoryKind::Invoice), vec![7]);

        // Then not at every commit: ten rows in ten commits are all still there (checked
        // below).
        let (done, mut committed) = tokio::sync::mpsc::unbounded_channel();
        let writer = Store::open(&path)
            .unwrap()
            .spawn_writer(done, Histogram::new([1.0]));
        for n in 0..10 {
            writer.history(change(HistoryKind::Sent, newest + n, true));
            writer.persist(PersistId(n as u64), Vec::new());
            loop {
                match committed.blocking_recv() {
                    Some(Committed::Group {
                        batch: Some(PersistId(b)),
                        ..
                    }) if b == n as u64 => break,
                    Some(Committed::Failed(error)) => panic!("{error}"),
                    None => panic!("the writer stopped"),
                    Some(_) => {}
                }
            }
        }
        // The ten oldest rows are those the list dropped. One of them coming again is new to
        // the list: its row moves last, and the next trim keeps it. An update of the oldest
        // row the list keeps leaves it where it is, so that trim drops it.
        let (dropped, oldest_kept) = (newest - HISTORY_KEPT, newest - HISTORY_KEPT + 10);
        writer.history(change(HistoryKind::Sent, dropped, true));
        writer.history(change(HistoryKind::Sent, oldest_kept, false));
        writer.close();
        let sent = rows(HistoryKind::Sent);
        assert_eq!(sent.len(), HISTORY_KEPT + 10);
        assert_eq!(sent.last(), Some(&(dropped as i64)));
        assert_eq!(sent[9], oldest_kept as i64);
        with_writer(&|_| {});
        let sent = rows(HistoryKind::Sent);
        assert_eq!(sent.len(), HISTORY_KEPT);
        assert_eq!(sent.last(), Some(&(dropped as i64)));
        assert!(!sent.contains(&(oldest_kept as i64)));
    }

    #[test]
    fn a_backup_copies_the_database_and_an_older_one_is_refused() {
        let (_dir, path) = temp_db("backup");
        let dir = path.parent().unwrap().to_owned();
        let (done, mut committed) = tokio::sync::mpsc::unbounded_channel();
        let writer = Store::open(&path)
            .unwrap()
            .spawn_writer(done, Histogram::new([1.0]));
        writer.gossip(vec![1]);
        writer.persist(PersistId(1), Vec::new());
        assert!(matches!(
            committed.blocking_recv(),
            Some(Committed::Group {
                batch: Some(PersistId(1)),
                ..
            })
        ));
        let copy = dir.join("copy.sqlite");
        // Taken while the writer has the database open.
        let generation = backup(&path, &copy).unwrap();
        assert!(generation >= 1);
        assert!(matches!(backup(&path, &copy), Err(BackupError::Exists(_))));
        writer.gossip(vec![2]);
        writer.close();
        let stored = Store::open(&copy).unwrap().load().unwrap();
        assert_eq!(
            (stored.gossip, stored.generation),
            (vec![vec![1]], generation)
        );
        check_backup_marker(&dir, generation).unwrap();
        check_backup_marker(&dir, generation + 1).unwrap();
        assert!(matches!(
            check_backup_marker(&dir, generation - 1),
            Err(BackupError::Stale { marker, .. }) if marker == generation
        ));
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let (_dir, path) = temp_db("newer");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::NewerSchema { found }) if found == SCHEMA_VERSION + 1
        ));
    }
}
