//! The channel store: nameplates, claims, mailboxes, sides and messages in SQLite.
//!
//! One dedicated thread owns the [`rusqlite::Connection`] and the in-memory list of
//! subscribed connections. Connection tasks send it [`Request`]s over a channel. The thread
//! takes every request that is waiting (up to [`BATCH`]), runs them in one transaction,
//! commits, and only then answers them and delivers the `message` broadcasts they caused:
//! nothing a client sees depends on uncommitted state, so a crash (even `kill -9`) after an
//! echo never loses that message.
//!
//! Requests are handled strictly in arrival order, which makes `open` (subscribe + replay)
//! atomic with respect to `add` (store + broadcast): a subscriber sees every message exactly
//! once, replayed or broadcast.
//!
//! Message fields that clients may send as any JSON value (`phase`, `body`, the `add`'s
//! `id`) are stored as JSON text and sent back verbatim, like the reference server does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc, oneshot};

/// A server frame without its trailing `, "server_tx": …}`: the connection that sends it
/// appends the send time (see `conn::finish`).
pub(crate) type Frame = Arc<str>;

/// One connection's queue of `message` broadcasts: the store fills it, the connection
/// empties it into its socket.
///
/// Broadcasts are never dropped on the way: a connection that lets more than `budget`
/// bytes of them wait (its client does not read, so writes to it stall) is marked
/// overflowed and notified. It gets nothing more and closes, and its client, on
/// reconnecting, has `open` replay the whole mailbox. A connection that saw a gap would
/// instead wait forever for the missing message.
pub(crate) struct Queue {
    /// Bytes of the frames sent and not yet taken by the connection.
    queued: AtomicUsize,
    /// Most bytes that may wait (one frame always may, however large).
    budget: usize,
    /// Set once, on overflow; from then on nothing is queued.
    overflowed: AtomicBool,
    /// Notified on overflow.
    overflow: Notify,
}

impl Queue {
    /// An empty queue holding at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Queue {
        Queue {
            queued: AtomicUsize::new(0),
            budget,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
        }
    }

    /// Completes once the queue has overflowed (at once if it already has).
    pub(crate) async fn overflowed(&self) {
        self.overflow.notified().await;
    }

    /// The connection took `frame` out of the queue.
    pub(crate) fn taken(&self, frame: &Frame) {
        self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
    }
}

/// The store's end of a connection's broadcast [`Queue`].
#[derive(Clone)]
pub(crate) struct Outlet {
    /// The frames themselves.
    pub(crate) tx: mpsc::UnboundedSender<Frame>,
    /// What is queued, and the overflow signal.
    pub(crate) queue: Arc<Queue>,
}

impl Outlet {
    /// Queues a broadcast, or overflows the queue when it is over its budget.
    fn push(&self, frame: &Frame) {
        let q = &*self.queue;
        if q.overflowed.load(Ordering::Relaxed) {
            return;
        }
        let len = frame.len();
        let before = q.queued.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before.saturating_add(len) > q.budget {
            q.overflowed.store(true, Ordering::Relaxed);
            q.overflow.notify_one();
        } else {
            // A closed channel: the connection is gone and unsubscribes on its way out.
            let _ = self.tx.send(frame.clone());
        }
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Most requests run in one transaction.
const BATCH: usize = 512;

/// Prepared statements kept (rusqlite keeps 16 by default, fewer than the store uses: the
/// least recently used one was evicted and parsed again on nearly every query).
const STATEMENT_CACHE: usize = 64;

/// Why the store refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A third side on a nameplate or mailbox.
    Crowded,
    /// A side claimed a nameplate it had released.
    Reclaimed,
    /// `max_mailboxes_per_app` reached.
    TooManyMailboxes,
    /// `max_messages_per_mailbox` reached.
    TooManyMessages,
    /// No nameplate left to allocate.
    NoFreeNameplate,
    /// The database failed; the connection is dropped.
    Internal,
}

/// One request to the store thread. Every reply is sent after the commit.
pub(crate) enum Request {
    /// Nameplates of an app id, sorted as strings.
    List {
        app: Arc<str>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Allocate the smallest free nameplate and claim it for `side`.
    Allocate {
        app: Arc<str>,
        side: Arc<str>,
        now: f64,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    /// Claim a nameplate; the reply is its mailbox id.
    Claim {
        app: Arc<str>,
        side: Arc<str>,
        nameplate: String,
        now: f64,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    /// Release a side's claim.
    Release {
        app: Arc<str>,
        side: Arc<str>,
        nameplate: String,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Open a mailbox for a side and subscribe `conn`; the reply is the stored messages.
    Open {
        app: Arc<str>,
        side: Arc<str>,
        mailbox: String,
        conn: u64,
        outlet: Outlet,
        now: f64,
        reply: oneshot::Sender<Result<Vec<Frame>, Refusal>>,
    },
    /// Store a message and broadcast it to the mailbox's subscribers.
    Add {
        app: Arc<str>,
        side: Arc<str>,
        mailbox: String,
        /// JSON text of the `phase` value.
        phase: String,
        /// JSON text of the `body` value.
        body: String,
        /// JSON text of the `add` frame's `id` (`null` when absent).
        id: String,
        now: f64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Close a side of a mailbox (opening it first if needed) and unsubscribe `conn`.
    Close {
        app: Arc<str>,
        side: Arc<str>,
        mailbox: String,
        mood: Option<String>,
        conn: u64,
        now: f64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A connection went away while subscribed.
    Unsubscribe {
        app: Arc<str>,
        mailbox: String,
        conn: u64,
    },
    /// Delete mailboxes untouched since `now - expiry` (subscribed ones count as touched).
    Prune { now: f64, expiry: f64 },
    /// Commit, checkpoint, close the database and answer.
    Shutdown { done: oneshot::Sender<()> },
}

/// Opens (or creates) the database and its tables.
pub(crate) fn open(database: &super::Database) -> rusqlite::Result<Connection> {
    let db = match database {
        super::Database::Memory => Connection::open_in_memory()?,
        super::Database::File(path) => {
            let db = Connection::open(path)?;
            // WAL survives a killed process without fsync per commit; NORMAL keeps
            // commits cheap (only a power loss can lose the last transactions).
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "NORMAL")?;
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            db
        }
    };
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS nameplates (
            app_id TEXT NOT NULL, name TEXT NOT NULL, num INTEGER, mailbox_id TEXT NOT NULL,
            PRIMARY KEY (app_id, name)) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS nameplates_by_num ON nameplates (app_id, num);
         CREATE INDEX IF NOT EXISTS nameplates_by_mailbox ON nameplates (app_id, mailbox_id);
         CREATE TABLE IF NOT EXISTS nameplate_sides (
            app_id TEXT NOT NULL, name TEXT NOT NULL, side TEXT NOT NULL,
            claimed INTEGER NOT NULL,
            PRIMARY KEY (app_id, name, side)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS mailboxes (
            app_id TEXT NOT NULL, id TEXT NOT NULL, updated REAL NOT NULL,
            messages INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (app_id, id)) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS mailboxes_by_updated ON mailboxes (updated);
         CREATE TABLE IF NOT EXISTS mailbox_sides (
            app_id TEXT NOT NULL, mailbox_id TEXT NOT NULL, side TEXT NOT NULL,
            opened INTEGER NOT NULL, mood TEXT,
            PRIMARY KEY (app_id, mailbox_id, side)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS messages (
            app_id TEXT NOT NULL, mailbox_id TEXT NOT NULL, side TEXT NOT NULL,
            phase TEXT NOT NULL, body TEXT NOT NULL, server_rx REAL NOT NULL,
            msg_id TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS messages_by_mailbox ON messages (app_id, mailbox_id, server_rx);",
    )?;
    Ok(db)
}

/// Limits the store enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreLimits {
    pub(crate) max_messages_per_mailbox: usize,
    pub(crate) max_mailboxes_per_app: usize,
}

/// A subscribed connection.
struct Subscriber {
    conn: u64,
    outlet: Outlet,
}

/// Work to do once the batch is committed.
enum Delivery {
    Reply(Box<dyn FnOnce() + Send>),
    Broadcast(Vec<Outlet>, Frame),
}

/// The store thread's state.
pub(crate) struct Store {
    db: Connection,
    limits: StoreLimits,
    /// Subscribers per (app id, mailbox id).
    subs: HashMap<(Arc<str>, String), Vec<Subscriber>>,
    /// Live mailboxes per app id (mirrors the `mailboxes` table).
    mailbox_counts: HashMap<String, usize>,
    /// Numbers of the live numeric nameplates per app id (mirrors `nameplates.num`), so
    /// that `allocate` finds the smallest free one without reading every row.
    nameplate_nums: HashMap<String, BTreeSet<i64>>,
    outbox: Vec<Delivery>,
}

type Sql<T> = rusqlite::Result<T>;

impl Store {
    /// Wraps an open database.
    pub(crate) fn new(db: Connection, limits: StoreLimits) -> Sql<Store> {
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = Store {
            db,
            limits,
            subs: HashMap::new(),
            mailbox_counts: HashMap::new(),
            nameplate_nums: HashMap::new(),
            outbox: Vec::new(),
        };
        store.load_mirrors()?;
        Ok(store)
    }

    /// (Re)reads the in-memory mirrors of the tables from the database.
    fn load_mirrors(&mut self) -> Sql<()> {
        self.mailbox_counts.clear();
        self.nameplate_nums.clear();
        let mut st = self
            .db
            .prepare("SELECT app_id, COUNT(*) FROM mailboxes GROUP BY app_id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (app, n) = row?;
            self.mailbox_counts
                .insert(app, usize::try_from(n).unwrap_or(0));
        }
        let mut st = self
            .db
            .prepare("SELECT app_id, num FROM nameplates WHERE num IS NOT NULL")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (app, num) = row?;
            self.nameplate_nums.entry(app).or_default().insert(num);
        }
        Ok(())
    }

    /// A nameplate row is gone: forget its number.
    fn forget_num(&mut self, app: &str, num: Option<i64>) {
        if let (Some(num), Some(nums)) = (num, self.nameplate_nums.get_mut(app)) {
            nums.remove(&num);
            if nums.is_empty() {
                self.nameplate_nums.remove(app);
            }
        }
    }

    /// Runs until [`Request::Shutdown`] or until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            if let Err(e) = self.exec_cached("BEGIN") {
                tracing::error!("mailbox database: cannot begin a transaction: {e}");
            }
            let mut next = Some(first);
            let mut handled = 0;
            let mut shutdown = None;
            while let Some(req) = next.take() {
                match req {
                    Request::Shutdown { done } => {
                        shutdown = Some(done);
                        break;
                    }
                    req => self.handle(req),
                }
                handled += 1;
                if handled < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            match self.exec_cached("COMMIT") {
                Ok(_) => {
                    for d in self.outbox.drain(..) {
                        match d {
                            Delivery::Reply(f) => f(),
                            Delivery::Broadcast(outlets, frame) => {
                                for outlet in outlets {
                                    outlet.push(&frame);
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("mailbox database: commit failed: {e}");
                    let _ = self.db.execute_batch("ROLLBACK");
                    // Dropping the replies makes the waiting connections close.
                    self.outbox.clear();
                    if let Err(e) = self.load_mirrors() {
                        tracing::error!("mailbox database: cannot re-read after a rollback: {e}");
                    }
                }
            }
            if let Some(done) = shutdown {
                self.close();
                let _ = done.send(());
                return;
            }
        }
        self.close();
    }

    /// Runs a parameterless statement, kept prepared.
    fn exec_cached(&self, sql: &str) -> Sql<usize> {
        self.db.prepare_cached(sql)?.execute([])
    }

    fn close(self) {
        let _ = self
            .db
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        if let Err((_, e)) = self.db.close() {
            tracing::warn!("mailbox database: close failed: {e}");
        }
    }

    fn reply<T: Send + 'static>(&mut self, tx: oneshot::Sender<T>, value: T) {
        self.outbox.push(Delivery::Reply(Box::new(move || {
            let _ = tx.send(value);
        })));
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::List { app, reply } => {
                let r = self.list(&app).unwrap_or_else(|e| {
                    tracing::error!("mailbox database: list: {e}");
                    Vec::new()
                });
                self.reply(reply, r);
            }
            Request::Allocate {
                app,
                side,
                now,
                reply,
            } => {
                let r = flatten(self.allocate(&app, &side, now));
                self.reply(reply, r);
            }
            Request::Claim {
                app,
                side,
                nameplate,
                now,
                reply,
            } => {
                let r = flatten(self.claim(&app, &side, &nameplate, now));
                self.reply(reply, r);
            }
            Request::Release {
                app,
                side,
                nameplate,
                reply,
            } => {
                let r = flatten(self.release(&app, &side, &nameplate).map(Ok));
                self.reply(reply, r);
            }
            Request::Open {
                app,
                side,
                mailbox,
                conn,
                outlet,
                now,
                reply,
            } => {
                let r = flatten(self.open(&app, &side, &mailbox, conn, outlet, now));
                self.reply(reply, r);
            }
            Request::Add {
                app,
                side,
                mailbox,
                phase,
                body,
                id,
                now,
                reply,
            } => {
                let r = flatten(self.add(&app, &side, &mailbox, &phase, &body, &id, now));
                self.reply(reply, r);
            }
            Request::Close {
                app,
                side,
                mailbox,
                mood,
                conn,
                now,
                reply,
            } => {
                let r = flatten(self.close_side(&app, &side, &mailbox, mood.as_deref(), conn, now));
                self.reply(reply, r);
            }
            Request::Unsubscribe { app, mailbox, conn } => {
                self.unsubscribe(app, mailbox, conn);
            }
            Request::Prune { now, expiry } => match self.prune(now, expiry) {
                Ok(0) => {}
                Ok(n) => tracing::info!("mailbox: pruned {n} stale mailboxes"),
                Err(e) => tracing::error!("mailbox database: prune: {e}"),
            },
            Request::Shutdown { .. } => {}
        }
    }

    fn list(&mut self, app: &str) -> Sql<Vec<String>> {
        let mut st = self
            .db
            .prepare_cached("SELECT name FROM nameplates WHERE app_id = ?1")?;
        let mut names = st
            .query_map([app], |r| r.get::<_, String>(0))?
            .collect::<Sql<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    fn allocate(&mut self, app: &str, side: &str, now: f64) -> Sql<Result<String, Refusal>> {
        let mut smallest: i64 = 1;
        for &n in self.nameplate_nums.get(app).into_iter().flatten() {
            if n > smallest {
                break;
            }
            if n == smallest {
                smallest = match smallest.checked_add(1) {
                    Some(s) => s,
                    None => return Ok(Err(Refusal::NoFreeNameplate)),
                };
            }
        }
        let name = smallest.to_string();
        Ok(self.claim(app, side, &name, now)?.map(|_| name))
    }

    fn claim(
        &mut self,
        app: &str,
        side: &str,
        name: &str,
        now: f64,
    ) -> Sql<Result<String, Refusal>> {
        let existing: Option<String> = self
            .db
            .prepare_cached("SELECT mailbox_id FROM nameplates WHERE app_id = ?1 AND name = ?2")?
            .query_row([app, name], |r| r.get(0))
            .optional()?;
        let Some(mailbox) = existing else {
            if self.at_mailbox_limit(app) {
                return Ok(Err(Refusal::TooManyMailboxes));
            }
            let mailbox = self.fresh_mailbox_id(app)?;
            self.create_mailbox(app, &mailbox, now)?;
            self.db
                .prepare_cached(
                    "INSERT INTO nameplates (app_id, name, num, mailbox_id) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![app, name, canonical_number(name), mailbox])?;
            if let Some(num) = canonical_number(name) {
                self.nameplate_nums
                    .entry(app.to_owned())
                    .or_default()
                    .insert(num);
            }
            self.db
                .prepare_cached(
                    "INSERT INTO nameplate_sides (app_id, name, side, claimed) VALUES (?1, ?2, ?3, 1)",
                )?
                .execute([app, name, side])?;
            if let Err(r) = self.ensure_side(app, &mailbox, side, now, false)? {
                return Ok(Err(r));
            }
            return Ok(Ok(mailbox));
        };
        let claimed: Option<bool> = self
            .db
            .prepare_cached(
                "SELECT claimed FROM nameplate_sides WHERE app_id = ?1 AND name = ?2 AND side = ?3",
            )?
            .query_row([app, name, side], |r| r.get(0))
            .optional()?;
        match claimed {
            Some(false) => return Ok(Err(Refusal::Reclaimed)),
            Some(true) => {}
            None => {
                let others: i64 = self
                    .db
                    .prepare_cached(
                        "SELECT COUNT(*) FROM nameplate_sides WHERE app_id = ?1 AND name = ?2",
                    )?
                    .query_row([app, name], |r| r.get(0))?;
                if others >= 2 {
                    return Ok(Err(Refusal::Crowded));
                }
            }
        }
        if let Err(r) = self.ensure_side(app, &mailbox, side, now, true)? {
            return Ok(Err(r));
        }
        if claimed.is_none() {
            self.db
                .prepare_cached(
                    "INSERT INTO nameplate_sides (app_id, name, side, claimed) VALUES (?1, ?2, ?3, 1)",
                )?
                .execute([app, name, side])?;
        }
        Ok(Ok(mailbox))
    }

    fn release(&mut self, app: &str, side: &str, name: &str) -> Sql<()> {
        let changed = self
            .db
            .prepare_cached(
                "UPDATE nameplate_sides SET claimed = 0 WHERE app_id = ?1 AND name = ?2 AND side = ?3",
            )?
            .execute([app, name, side])?;
        if changed == 0 {
            return Ok(());
        }
        let still: i64 = self
            .db
            .prepare_cached(
                "SELECT COUNT(*) FROM nameplate_sides WHERE app_id = ?1 AND name = ?2 AND claimed = 1",
            )?
            .query_row([app, name], |r| r.get(0))?;
        if still == 0 {
            self.delete_nameplate(app, name)?;
        }
        Ok(())
    }

    /// Deletes a nameplate and its sides.
    fn delete_nameplate(&mut self, app: &str, name: &str) -> Sql<()> {
        self.db
            .prepare_cached("DELETE FROM nameplate_sides WHERE app_id = ?1 AND name = ?2")?
            .execute([app, name])?;
        let deleted = self
            .db
            .prepare_cached("DELETE FROM nameplates WHERE app_id = ?1 AND name = ?2")?
            .execute([app, name])?;
        if deleted > 0 {
            self.forget_num(app, canonical_number(name));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        app: &Arc<str>,
        side: &str,
        mailbox: &str,
        conn: u64,
        outlet: Outlet,
        now: f64,
    ) -> Sql<Result<Vec<Frame>, Refusal>> {
        if let Err(r) = self.ensure_side(app, mailbox, side, now, true)? {
            return Ok(Err(r));
        }
        let subs = self
            .subs
            .entry((app.clone(), mailbox.to_owned()))
            .or_default();
        subs.retain(|s| s.conn != conn && !s.outlet.is_closed());
        subs.push(Subscriber { conn, outlet });
        let mut st = self.db.prepare_cached(
            "SELECT side, phase, body, server_rx, msg_id FROM messages
             WHERE app_id = ?1 AND mailbox_id = ?2 ORDER BY server_rx, rowid",
        )?;
        let frames = st
            .query_map([&**app, mailbox], |r| {
                Ok(message_frame(
                    &r.get::<_, String>(0)?,
                    &r.get::<_, String>(1)?,
                    &r.get::<_, String>(2)?,
                    r.get(3)?,
                    &r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Sql<Vec<_>>>()?;
        Ok(Ok(frames))
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        app: &Arc<str>,
        side: &str,
        mailbox: &str,
        phase: &str,
        body: &str,
        id: &str,
        now: f64,
    ) -> Sql<Result<(), Refusal>> {
        let count: Option<i64> = self
            .db
            .prepare_cached("SELECT messages FROM mailboxes WHERE app_id = ?1 AND id = ?2")?
            .query_row([&**app, mailbox], |r| r.get(0))
            .optional()?;
        // The mailbox was deleted under this connection (closed by every side, or
        // pruned): the message goes nowhere, as with the reference server.
        let Some(count) = count else {
            return Ok(Ok(()));
        };
        if usize::try_from(count).unwrap_or(usize::MAX) >= self.limits.max_messages_per_mailbox {
            return Ok(Err(Refusal::TooManyMessages));
        }
        self.db
            .prepare_cached(
                "INSERT INTO messages (app_id, mailbox_id, side, phase, body, server_rx, msg_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![&**app, mailbox, side, phase, body, now, id])?;
        self.db
            .prepare_cached(
                "UPDATE mailboxes SET messages = messages + 1, updated = ?3
                 WHERE app_id = ?1 AND id = ?2",
            )?
            .execute(params![&**app, mailbox, now])?;
        let frame = message_frame(side, phase, body, now, id);
        if let Some(subs) = self.subs.get(&(app.clone(), mailbox.to_owned())) {
            let outlets = subs.iter().map(|s| s.outlet.clone()).collect();
            self.outbox.push(Delivery::Broadcast(outlets, frame));
        }
        Ok(Ok(()))
    }

    fn close_side(
        &mut self,
        app: &Arc<str>,
        side: &str,
        mailbox: &str,
        mood: Option<&str>,
        conn: u64,
        now: f64,
    ) -> Sql<Result<(), Refusal>> {
        if let Err(r) = self.ensure_side(app, mailbox, side, now, false)? {
            return Ok(Err(r));
        }
        self.unsubscribe(app.clone(), mailbox.to_owned(), conn);
        self.db
            .prepare_cached(
                "UPDATE mailbox_sides SET opened = 0, mood = ?4
                 WHERE app_id = ?1 AND mailbox_id = ?2 AND side = ?3",
            )?
            .execute(params![&**app, mailbox, side, mood])?;
        let open: i64 = self
            .db
            .prepare_cached(
                "SELECT COUNT(*) FROM mailbox_sides WHERE app_id = ?1 AND mailbox_id = ?2 AND opened = 1",
            )?
            .query_row([&**app, mailbox], |r| r.get(0))?;
        if open == 0 {
            self.delete_mailbox(app, mailbox)?;
        }
        Ok(Ok(()))
    }

    fn unsubscribe(&mut self, app: Arc<str>, mailbox: String, conn: u64) {
        let key = (app, mailbox);
        if let Some(subs) = self.subs.get_mut(&key) {
            subs.retain(|s| s.conn != conn);
            if subs.is_empty() {
                self.subs.remove(&key);
            }
        }
    }

    fn prune(&mut self, now: f64, expiry: f64) -> Sql<usize> {
        self.subs.retain(|_, subs| {
            subs.retain(|s| !s.outlet.is_closed());
            !subs.is_empty()
        });
        {
            let mut touch = self.db.prepare_cached(
                "UPDATE mailboxes SET updated = ?3 WHERE app_id = ?1 AND id = ?2",
            )?;
            for (app, mailbox) in self.subs.keys() {
                touch.execute(params![&**app, mailbox, now])?;
            }
        }
        let old = self
            .db
            .prepare_cached("SELECT app_id, id FROM mailboxes WHERE updated < ?1")?
            .query_map([now - expiry], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Sql<Vec<_>>>()?;
        for (app, mailbox) in &old {
            self.delete_mailbox(app, mailbox)?;
        }
        // Nameplates whose mailbox is gone (none are expected) go too.
        self.db.execute(
            "DELETE FROM nameplate_sides WHERE NOT EXISTS (SELECT 1 FROM nameplates n
               WHERE n.app_id = nameplate_sides.app_id AND n.name = nameplate_sides.name)",
            [],
        )?;
        Ok(old.len())
    }

    /// Makes sure `mailbox` exists and `side` has opened it (a previously closed side stays
    /// closed, like the reference), and touches it.
    fn ensure_side(
        &mut self,
        app: &str,
        mailbox: &str,
        side: &str,
        now: f64,
        enforce_limit: bool,
    ) -> Sql<Result<(), Refusal>> {
        let exists = self
            .db
            .prepare_cached("UPDATE mailboxes SET updated = ?3 WHERE app_id = ?1 AND id = ?2")?
            .execute(params![app, mailbox, now])?
            > 0;
        if !exists {
            if enforce_limit && self.at_mailbox_limit(app) {
                return Ok(Err(Refusal::TooManyMailboxes));
            }
            self.create_mailbox(app, mailbox, now)?;
        }
        let sides = self
            .db
            .prepare_cached("SELECT side FROM mailbox_sides WHERE app_id = ?1 AND mailbox_id = ?2")?
            .query_map([app, mailbox], |r| r.get::<_, String>(0))?
            .collect::<Sql<Vec<_>>>()?;
        if !sides.iter().any(|s| s == side) {
            if sides.len() >= 2 {
                return Ok(Err(Refusal::Crowded));
            }
            self.db
                .prepare_cached(
                    "INSERT INTO mailbox_sides (app_id, mailbox_id, side, opened) VALUES (?1, ?2, ?3, 1)",
                )?
                .execute([app, mailbox, side])?;
        }
        Ok(Ok(()))
    }

    fn at_mailbox_limit(&self, app: &str) -> bool {
        self.mailbox_counts.get(app).copied().unwrap_or(0) >= self.limits.max_mailboxes_per_app
    }

    fn create_mailbox(&mut self, app: &str, mailbox: &str, now: f64) -> Sql<()> {
        self.db
            .prepare_cached("INSERT INTO mailboxes (app_id, id, updated) VALUES (?1, ?2, ?3)")?
            .execute(params![app, mailbox, now])?;
        *self.mailbox_counts.entry(app.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    fn fresh_mailbox_id(&mut self, app: &str) -> Sql<String> {
        loop {
            let mut bytes = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut bytes);
            let id = data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase();
            let taken: bool = self
                .db
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE app_id = ?1 AND id = ?2)",
                )?
                .query_row([app, &id], |r| r.get(0))?;
            if !taken {
                return Ok(id);
            }
        }
    }

    /// Deletes a mailbox, its sides, its messages and any nameplate pointing at it.
    fn delete_mailbox(&mut self, app: &str, mailbox: &str) -> Sql<()> {
        self.db
            .prepare_cached("DELETE FROM messages WHERE app_id = ?1 AND mailbox_id = ?2")?
            .execute([app, mailbox])?;
        self.db
            .prepare_cached("DELETE FROM mailbox_sides WHERE app_id = ?1 AND mailbox_id = ?2")?
            .execute([app, mailbox])?;
        // Usually none left (both sides released it); statements without a subquery or
        // RETURNING, which would each build a temporary table.
        let names = self
            .db
            .prepare_cached("SELECT name FROM nameplates WHERE app_id = ?1 AND mailbox_id = ?2")?
            .query_map([app, mailbox], |r| r.get::<_, String>(0))?
            .collect::<Sql<Vec<_>>>()?;
        for name in names {
            self.delete_nameplate(app, &name)?;
        }
        let deleted = self
            .db
            .prepare_cached("DELETE FROM mailboxes WHERE app_id = ?1 AND id = ?2")?
            .execute([app, mailbox])?;
        if let Some(n) = self.mailbox_counts.get_mut(app).filter(|_| deleted > 0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.mailbox_counts.remove(app);
            }
        }
        // Subscribers of a deleted mailbox hear nothing more (the reference stops its
        // listeners the same way).
        self.subs.remove(&(Arc::from(app), mailbox.to_owned()));
        Ok(())
    }
}

/// Logs a database failure and turns it into [`Refusal::Internal`].
fn flatten<T>(r: Sql<Result<T, Refusal>>) -> Result<T, Refusal> {
    r.unwrap_or_else(|e| {
        tracing::error!("mailbox database: {e}");
        Err(Refusal::Internal)
    })
}

/// The numeric value of a nameplate written without leading zeros, for allocation.
fn canonical_number(name: &str) -> Option<i64> {
    if name.starts_with('0') {
        return None;
    }
    name.parse::<i64>().ok().filter(|n| *n > 0)
}

/// A `message` frame (without `server_tx`); `phase`, `body` and `id` are JSON text.
fn message_frame(side: &str, phase: &str, body: &str, server_rx: f64, id: &str) -> Frame {
    let side = serde_json::to_string(side).unwrap_or_else(|_| "null".to_owned());
    format!(
        "{{\"side\": {side}, \"phase\": {phase}, \"body\": {body}, \"server_rx\": {}, \"id\": {id}, \"type\": \"message\"",
        super::conn::py_float(server_rx)
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StoreLimits {
        StoreLimits {
            max_messages_per_mailbox: 10,
            max_mailboxes_per_app: 10,
        }
    }

    fn allocate(store: &mut Store, side: &str) -> String {
        store.allocate("app", side, 1.0).unwrap().unwrap()
    }

    /// The in-memory list of used nameplate numbers follows claims, releases and mailbox
    /// deletions, and is rebuilt from the file when the store is reopened.
    #[test]
    fn allocation_follows_the_tables_and_survives_reopening() {
        let path = std::env::temp_dir().join(format!(
            "wormhole-store-test-{}-{:?}.sqlite",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let db = super::super::Database::File(path.clone());
        let mut store = Store::new(open(&db).unwrap(), limits()).unwrap();
        assert_eq!(allocate(&mut store, "a"), "1");
        assert_eq!(allocate(&mut store, "b"), "2");
        // A claimed non-canonical nameplate does not take a number.
        store.claim("app", "c", "03", 1.0).unwrap().unwrap();
        assert_eq!(allocate(&mut store, "d"), "3");
        // Released by its only side: "1" is free again.
        store.release("app", "a", "1").unwrap();
        assert_eq!(allocate(&mut store, "e"), "1");
        // The mailbox of "2" deleted (closed by every side, or pruned): "2" is free.
        let mailbox = store.claim("app", "b", "2", 1.0).unwrap().unwrap();
        store.delete_mailbox("app", &mailbox).unwrap();
        drop(store);

        let mut store = Store::new(open(&db).unwrap(), limits()).unwrap();
        assert_eq!(allocate(&mut store, "f"), "2");
        assert_eq!(allocate(&mut store, "g"), "4");
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
