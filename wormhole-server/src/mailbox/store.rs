//! The channel store: nameplates, claims, mailboxes, sides and messages in SQLite.
//!
//! One dedicated thread owns the [`rusqlite::Connection`] and the in-memory list of
//! subscribed connections. Connection tasks send it [`Request`]s over a channel (their
//! types are in `request`, which both sides import). The thread takes every request that
//! is waiting (up to [`BATCH`]), runs them in one transaction, commits, and only then
//! answers them and delivers the `message` broadcasts they caused: nothing a client sees
//! depends on uncommitted state, so a crash (even `kill -9`) after an echo never loses
//! that message.
//!
//! Requests are handled strictly in arrival order, which makes `open` (subscribe + replay)
//! atomic with respect to `add` (store + broadcast): a subscriber sees every message exactly
//! once, replayed or broadcast.
//!
//! A batch is all or nothing. When a statement or the commit fails (typically `SQLITE_FULL`:
//! the disk or `max_database_bytes` is full), the transaction is rolled back, the in-memory
//! state the batch changed is restored from an undo log, and every request of the batch is
//! answered with [`Refusal::StorageFull`] or [`Refusal::DatabaseError`]; requests after
//! the failure are not run. The next batch starts afresh, so the server serves again as
//! soon as there is space.
//!
//! Stored messages are accounted in bytes (see [`message_cost`]): in total, per mailbox,
//! and per client address ([`client_key`](super::request::client_key)) for the messages
//! added since the server started (addresses are kept in memory only, never in the
//! database).
//!
//! Message fields that clients may send as any JSON value (`phase`, `body`, the `add`'s
//! `id`) are stored as JSON text and sent back verbatim, like the reference server does.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::request::{Frame, Outlet, Refusal, Request, py_float};

/// Most requests run in one transaction.
const BATCH: usize = 512;

/// Prepared statements kept (rusqlite keeps 16 by default, fewer than the store uses: the
/// least recently used one was evicted and parsed again on nearly every query).
const STATEMENT_CACHE: usize = 64;

/// Opens (or creates) the database and its tables: in memory, or in the file `path`.
pub(crate) fn open(path: Option<&std::path::Path>) -> rusqlite::Result<Connection> {
    let db = match path {
        None => Connection::open_in_memory()?,
        Some(path) => {
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
    pub(crate) max_stored_bytes: u64,
    pub(crate) max_stored_bytes_per_ip: u64,
    pub(crate) max_database_bytes: Option<u64>,
}

/// A subscribed connection.
#[derive(Clone)]
struct Subscriber {
    conn: u64,
    outlet: Outlet,
}

/// Work to do once the batch is over.
enum Delivery {
    /// Answers a request: with its result when the batch was committed, with the given
    /// refusal when it failed.
    Reply(Box<dyn FnOnce(Option<Refusal>) + Send>),
    /// Sent only when the batch was committed.
    Broadcast(Vec<Outlet>, Frame),
}

/// The key of a mailbox in the in-memory maps.
type MailboxKey = (Arc<str>, String);

/// The bytes of one mailbox's stored messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stored {
    /// All of them.
    total: u64,
    /// Those added since the server started, per client address.
    by_client: Vec<(IpAddr, u64)>,
}

/// How to undo a change to the in-memory state, should the batch fail.
enum Undo {
    /// `cost` bytes from `client` were added to the mailbox.
    Charge {
        app: Arc<str>,
        mailbox: String,
        client: IpAddr,
        cost: u64,
    },
    /// The mailbox's messages were deleted.
    Release {
        app: String,
        mailbox: String,
        stored: Stored,
    },
    /// The mailbox's subscribers were these.
    Subscribers {
        key: MailboxKey,
        before: Vec<Subscriber>,
    },
}

/// The store thread's state.
pub(crate) struct Store {
    db: Connection,
    limits: StoreLimits,
    /// Subscribers per (app id, mailbox id).
    subs: HashMap<MailboxKey, Vec<Subscriber>>,
    /// Live mailboxes per app id (mirrors the `mailboxes` table).
    mailbox_counts: HashMap<String, usize>,
    /// Numbers of the live numeric nameplates per app id (mirrors `nameplates.num`), so
    /// that `allocate` finds the smallest free one without reading every row.
    nameplate_nums: HashMap<String, BTreeSet<i64>>,
    /// Bytes of all stored messages.
    stored: u64,
    /// Bytes of the stored messages per client address (those added since the start).
    stored_by_client: HashMap<IpAddr, u64>,
    /// Bytes of the stored messages per app id and mailbox id.
    stored_by_mailbox: HashMap<String, HashMap<String, Stored>>,
    outbox: Vec<Delivery>,
    /// The in-memory changes of the current batch, to undo if it fails.
    undo: Vec<Undo>,
    /// Set when a statement of the current batch failed: the batch is lost.
    failure: Option<Refusal>,
    /// Batches failed in a row (to log a failure once, and the recovery).
    failed_batches: u64,
}

type Sql<T> = rusqlite::Result<T>;

impl Store {
    /// Wraps an open database.
    pub(crate) fn new(db: Connection, limits: StoreLimits) -> Sql<Store> {
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        if let Some(bytes) = limits.max_database_bytes {
            let page: u64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (bytes / page.max(1)).max(1);
            let set: u64 = db.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
            if set > pages {
                tracing::warn!(
                    "mailbox database: already {} bytes, more than the {bytes} allowed; \
                     it cannot grow",
                    set * page
                );
            }
        }
        let mut store = Store {
            db,
            limits,
            subs: HashMap::new(),
            mailbox_counts: HashMap::new(),
            nameplate_nums: HashMap::new(),
            stored: 0,
            stored_by_client: HashMap::new(),
            stored_by_mailbox: HashMap::new(),
            outbox: Vec::new(),
            undo: Vec::new(),
            failure: None,
            failed_batches: 0,
        };
        store.load_mirrors()?;
        store.load_stored()?;
        Ok(store)
    }

    /// Reads the bytes of the stored messages per mailbox (see [`message_cost`]).
    fn load_stored(&mut self) -> Sql<()> {
        self.stored = 0;
        self.stored_by_client.clear();
        self.stored_by_mailbox.clear();
        let mut st = self.db.prepare(
            "SELECT app_id, mailbox_id, SUM(2 * (length(CAST(app_id AS BLOB))
                 + length(CAST(mailbox_id AS BLOB))) + length(CAST(side AS BLOB))
                 + length(CAST(phase AS BLOB)) + length(CAST(body AS BLOB))
                 + length(CAST(msg_id AS BLOB)) + ?1)
             FROM messages GROUP BY app_id, mailbox_id",
        )?;
        let rows = st.query_map([MESSAGE_OVERHEAD], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (app, mailbox, bytes) = row?;
            let total = u64::try_from(bytes).unwrap_or(0);
            self.stored += total;
            self.stored_by_mailbox.entry(app).or_default().insert(
                mailbox,
                Stored {
                    total,
                    by_client: Vec::new(),
                },
            );
        }
        Ok(())
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
            self.begin_batch();
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
            self.finish_batch(handled);
            if let Some(done) = shutdown {
                self.close();
                let _ = done.send(());
                return;
            }
        }
        self.close();
    }

    /// Starts a batch's transaction.
    fn begin_batch(&mut self) {
        if let Err(e) = self.exec_cached("BEGIN") {
            self.fail(e);
        }
    }

    /// Commits the batch and delivers its replies and broadcasts or, if it failed, rolls
    /// it back and answers every request with the failure.
    fn finish_batch(&mut self, handled: usize) {
        if self.failure.is_none() {
            if let Err(e) = self.exec_cached("COMMIT") {
                self.fail(e);
            }
        }
        let Some(refusal) = self.failure.take() else {
            if self.failed_batches > 0 {
                tracing::warn!(
                    "mailbox database: writable again after {} failed batches",
                    self.failed_batches
                );
                self.failed_batches = 0;
            }
            self.undo.clear();
            for d in self.outbox.drain(..) {
                match d {
                    Delivery::Reply(f) => f(None),
                    Delivery::Broadcast(outlets, frame) => {
                        for outlet in outlets {
                            outlet.push(&frame);
                        }
                    }
                }
            }
            return;
        };
        self.failed_batches += 1;
        tracing::debug!("mailbox database: {handled} requests refused ({refusal:?})");
        // SQLite may have rolled back already (it does on SQLITE_FULL).
        if !self.db.is_autocommit() {
            if let Err(e) = self.db.execute_batch("ROLLBACK") {
                tracing::error!("mailbox database: rollback failed: {e}");
            }
        }
        while let Some(undo) = self.undo.pop() {
            self.undo_one(undo);
        }
        if let Err(e) = self.load_mirrors() {
            tracing::error!("mailbox database: cannot re-read after a rollback: {e}");
        }
        for d in self.outbox.drain(..) {
            if let Delivery::Reply(f) = d {
                f(Some(refusal));
            }
        }
    }

    /// Records that the batch failed with `e` (once per batch) and returns the refusal
    /// its requests get.
    fn fail(&mut self, e: rusqlite::Error) -> Refusal {
        if let Some(r) = self.failure {
            return r;
        }
        let r = if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            Refusal::StorageFull
        } else {
            Refusal::DatabaseError
        };
        // Once per run of failures, not once per batch.
        if self.failed_batches == 0 {
            tracing::error!(
                "mailbox database: {e}; the requests being handled are refused, and so \
                 is every request until a batch succeeds again"
            );
        }
        self.failure = Some(r);
        r
    }

    /// Runs `op` unless the batch already failed; a database error fails the batch.
    fn attempt<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Sql<Result<T, Refusal>>,
    ) -> Result<T, Refusal> {
        if let Some(r) = self.failure {
            return Err(r);
        }
        op(self).unwrap_or_else(|e| Err(self.fail(e)))
    }

    /// Reverts one in-memory change of a failed batch.
    fn undo_one(&mut self, undo: Undo) {
        match undo {
            Undo::Charge {
                app,
                mailbox,
                client,
                cost,
            } => {
                self.stored = self.stored.saturating_sub(cost);
                self.uncharge_client(client, cost);
                if let Some(apps) = self.stored_by_mailbox.get_mut(&*app) {
                    if let Some(stored) = apps.get_mut(&mailbox) {
                        stored.total = stored.total.saturating_sub(cost);
                        if let Some(i) = stored.by_client.iter().position(|(c, _)| *c == client) {
                            stored.by_client[i].1 = stored.by_client[i].1.saturating_sub(cost);
                            if stored.by_client[i].1 == 0 {
                                stored.by_client.swap_remove(i);
                            }
                        }
                        if stored.total == 0 {
                            apps.remove(&mailbox);
                        }
                    }
                    if apps.is_empty() {
                        self.stored_by_mailbox.remove(&*app);
                    }
                }
            }
            Undo::Release {
                app,
                mailbox,
                stored,
            } => {
                self.stored += stored.total;
                for (client, n) in &stored.by_client {
                    *self.stored_by_client.entry(*client).or_insert(0) += n;
                }
                self.stored_by_mailbox
                    .entry(app)
                    .or_default()
                    .insert(mailbox, stored);
            }
            Undo::Subscribers { key, before } => {
                if before.is_empty() {
                    self.subs.remove(&key);
                } else {
                    self.subs.insert(key, before);
                }
            }
        }
    }

    /// Takes `cost` bytes off a client address's account.
    fn uncharge_client(&mut self, client: IpAddr, cost: u64) {
        if let Some(n) = self.stored_by_client.get_mut(&client) {
            *n = n.saturating_sub(cost);
            if *n == 0 {
                self.stored_by_client.remove(&client);
            }
        }
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

    fn reply<T: Send + 'static>(
        &mut self,
        tx: oneshot::Sender<Result<T, Refusal>>,
        value: Result<T, Refusal>,
    ) {
        self.outbox
            .push(Delivery::Reply(Box::new(move |failed: Option<Refusal>| {
                let _ = tx.send(match failed {
                    None => value,
                    Some(r) => Err(r),
                });
            })));
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::List { app, reply } => {
                let r = self.attempt(|s| s.list(&app).map(Ok));
                self.reply(reply, r);
            }
            Request::Allocate {
                app,
                side,
                now,
                reply,
            } => {
                let r = self.attempt(|s| s.allocate(&app, &side, now));
                self.reply(reply, r);
            }
            Request::Claim {
                app,
                side,
                nameplate,
                now,
                reply,
            } => {
                let r = self.attempt(|s| s.claim(&app, &side, &nameplate, now));
                self.reply(reply, r);
            }
            Request::Release {
                app,
                side,
                nameplate,
                reply,
            } => {
                let r = self.attempt(|s| s.release(&app, &side, &nameplate).map(Ok));
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
                let r = self.attempt(|s| s.open(&app, &side, &mailbox, conn, outlet, now));
                self.reply(reply, r);
            }
            Request::Add {
                app,
                side,
                client,
                mailbox,
                phase,
                body,
                id,
                now,
                reply,
            } => {
                let message = NewMessage {
                    side: &side,
                    client,
                    phase: &phase,
                    body: &body,
                    id: &id,
                };
                let r = self.attempt(|s| s.add(&app, &mailbox, message, now));
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
                let r = self
                    .attempt(|s| s.close_side(&app, &side, &mailbox, mood.as_deref(), conn, now));
                self.reply(reply, r);
            }
            Request::Unsubscribe { app, mailbox, conn } => {
                // The connection is gone: not undone even if the batch fails.
                self.unsubscribe(app, mailbox, conn, false);
            }
            Request::Prune { now, expiry } => {
                match self.attempt(|s| s.prune(now, expiry).map(Ok)) {
                    Ok(0) | Err(_) => {}
                    Ok(n) => tracing::info!("mailbox: pruned {n} stale mailboxes"),
                }
            }
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
        let key = (app.clone(), mailbox.to_owned());
        let subs = self.subs.entry(key.clone()).or_default();
        let before = subs.clone();
        subs.retain(|s| s.conn != conn && !s.outlet.is_closed());
        subs.push(Subscriber { conn, outlet });
        self.undo.push(Undo::Subscribers { key, before });
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

    fn add(
        &mut self,
        app: &Arc<str>,
        mailbox: &str,
        message: NewMessage<'_>,
        now: f64,
    ) -> Sql<Result<(), Refusal>> {
        let NewMessage {
            side,
            client,
            phase,
            body,
            id,
        } = message;
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
        let cost = message_cost(app, mailbox, side, phase, body, id);
        let from_client = self.stored_by_client.get(&client).copied().unwrap_or(0);
        if from_client.saturating_add(cost) > self.limits.max_stored_bytes_per_ip {
            return Ok(Err(Refusal::AddressStorageFull));
        }
        if self.stored.saturating_add(cost) > self.limits.max_stored_bytes {
            return Ok(Err(Refusal::StorageFull));
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
        self.charge(app, mailbox, client, cost);
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
        self.unsubscribe(app.clone(), mailbox.to_owned(), conn, true);
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

    /// Unsubscribes `conn` from a mailbox; `undoable` when part of the transaction.
    fn unsubscribe(&mut self, app: Arc<str>, mailbox: String, conn: u64, undoable: bool) {
        let key = (app, mailbox);
        let Some(subs) = self.subs.get_mut(&key) else {
            return;
        };
        if !subs.iter().any(|s| s.conn == conn) {
            return;
        }
        let before = undoable.then(|| subs.clone());
        subs.retain(|s| s.conn != conn);
        if subs.is_empty() {
            self.subs.remove(&key);
        }
        if let Some(before) = before {
            self.undo.push(Undo::Subscribers { key, before });
        }
    }

    /// Adds a message's bytes to the accounts.
    fn charge(&mut self, app: &Arc<str>, mailbox: &str, client: IpAddr, cost: u64) {
        self.stored += cost;
        *self.stored_by_client.entry(client).or_insert(0) += cost;
        let stored = self
            .stored_by_mailbox
            .entry(app.to_string())
            .or_default()
            .entry(mailbox.to_owned())
            .or_default();
        stored.total += cost;
        match stored.by_client.iter_mut().find(|(c, _)| *c == client) {
            Some((_, n)) => *n += cost,
            None => stored.by_client.push((client, cost)),
        }
        self.undo.push(Undo::Charge {
            app: app.clone(),
            mailbox: mailbox.to_owned(),
            client,
            cost,
        });
    }

    /// Takes a deleted mailbox's messages off the accounts.
    fn release_stored(&mut self, app: &str, mailbox: &str) {
        let Some(apps) = self.stored_by_mailbox.get_mut(app) else {
            return;
        };
        let Some(stored) = apps.remove(mailbox) else {
            return;
        };
        if apps.is_empty() {
            self.stored_by_mailbox.remove(app);
        }
        self.stored = self.stored.saturating_sub(stored.total);
        for &(client, n) in &stored.by_client {
            self.uncharge_client(client, n);
        }
        self.undo.push(Undo::Release {
            app: app.to_owned(),
            mailbox: mailbox.to_owned(),
            stored,
        });
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
        self.release_stored(app, mailbox);
        // Subscribers of a deleted mailbox hear nothing more (the reference stops its
        // listeners the same way).
        let key = (Arc::from(app), mailbox.to_owned());
        if let Some(before) = self.subs.remove(&key) {
            self.undo.push(Undo::Subscribers { key, before });
        }
        Ok(())
    }
}

/// The fields of an `add` besides its mailbox (JSON text for `phase`, `body` and `id`).
struct NewMessage<'a> {
    side: &'a str,
    client: IpAddr,
    phase: &'a str,
    body: &'a str,
    id: &'a str,
}

/// Bytes counted per stored message besides its strings (row and index bookkeeping).
const MESSAGE_OVERHEAD: u64 = 64;

/// The bytes a stored message is accounted for: its strings (app id and mailbox id twice,
/// as the index repeats them) plus [`MESSAGE_OVERHEAD`]. `load_stored` computes the same
/// in SQL.
pub(crate) fn message_cost(
    app: &str,
    mailbox: &str,
    side: &str,
    phase: &str,
    body: &str,
    id: &str,
) -> u64 {
    let strings =
        2 * (app.len() + mailbox.len()) + side.len() + phase.len() + body.len() + id.len();
    u64::try_from(strings)
        .unwrap_or(u64::MAX)
        .saturating_add(MESSAGE_OVERHEAD)
}

/// The numeric value of a nameplate written without leading zeros, for allocation.
pub(crate) fn canonical_number(name: &str) -> Option<i64> {
    if name.starts_with('0') {
        return None;
    }
    name.parse::<i64>().ok().filter(|n| *n > 0)
}

/// A `message` frame (without `server_tx`); `phase`, `body` and `id` are JSON text.
pub(crate) fn message_frame(
    side: &str,
    phase: &str,
    body: &str,
    server_rx: f64,
    id: &str,
) -> Frame {
    let side = serde_json::to_string(side).unwrap_or_else(|_| "null".to_owned());
    format!(
        "{{\"side\": {side}, \"phase\": {phase}, \"body\": {body}, \"server_rx\": {}, \"id\": {id}, \"type\": \"message\"",
        py_float(server_rx)
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::request::Queue;

    fn limits() -> StoreLimits {
        StoreLimits {
            max_messages_per_mailbox: 10,
            max_mailboxes_per_app: 10,
            max_stored_bytes: 1 << 30,
            max_stored_bytes_per_ip: 1 << 30,
            max_database_bytes: None,
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn outlet() -> (Outlet, mpsc::UnboundedReceiver<Frame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue::new(1 << 20));
        (Outlet { tx, queue }, rx)
    }

    fn add_request(
        mailbox: &str,
        body_len: usize,
    ) -> (Request, oneshot::Receiver<Result<(), Refusal>>) {
        let (reply, rx) = oneshot::channel();
        let req = Request::Add {
            app: "app".into(),
            side: "a".into(),
            client: CLIENT,
            mailbox: mailbox.to_owned(),
            phase: "\"0\"".into(),
            body: format!("\"{}\"", "x".repeat(body_len)),
            id: "null".into(),
            now: 2.0,
            reply,
        };
        (req, rx)
    }

    fn open_request(
        mailbox: &str,
        conn: u64,
        outlet: Outlet,
    ) -> (Request, oneshot::Receiver<Result<Vec<Frame>, Refusal>>) {
        let (reply, rx) = oneshot::channel();
        let req = Request::Open {
            app: "app".into(),
            side: "a".into(),
            mailbox: mailbox.to_owned(),
            conn,
            outlet,
            now: 2.0,
            reply,
        };
        (req, rx)
    }

    fn messages_in_db(store: &Store) -> i64 {
        store
            .db
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap()
    }

    /// A batch in which a statement fails with SQLITE_FULL is lost as a whole: every request
    /// (before and after the failure) is answered `StorageFull`, the database is rolled
    /// back, and so are the subscriptions and byte accounts the batch changed. The next
    /// batch works.
    #[test]
    fn a_failed_batch_is_refused_and_undone() {
        let mut store = Store::new(
            open(None).unwrap(),
            StoreLimits {
                max_database_bytes: Some(256 << 10),
                ..limits()
            },
        )
        .unwrap();
        let mailbox = store.claim("app", "a", "1", 1.0).unwrap().unwrap();
        store.undo.clear();

        // Subscribe, add, then a message too large for the database, then a list.
        let (out7, mut rx7) = outlet();
        let (open7, open7_reply) = open_request(&mailbox, 7, out7);
        let (small, small_reply) = add_request(&mailbox, 100);
        let (huge, huge_reply) = add_request(&mailbox, 1 << 20);
        let (list_reply_tx, list_reply) = oneshot::channel();
        store.begin_batch();
        store.handle(open7);
        store.handle(small);
        store.handle(huge);
        store.handle(Request::List {
            app: "app".into(),
            reply: list_reply_tx,
        });
        store.finish_batch(4);
        assert_eq!(
            open7_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert_eq!(
            small_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert_eq!(
            huge_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert_eq!(
            list_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert!(
            rx7.try_recv().is_err(),
            "a broadcast of a rolled-back message"
        );
        assert_eq!(messages_in_db(&store), 0);
        assert!(store.subs.is_empty());
        assert_eq!(store.stored, 0);
        assert!(store.stored_by_client.is_empty());
        assert!(store.stored_by_mailbox.is_empty());
        assert!(store.undo.is_empty());

        // The next batch is served.
        let (out8, mut rx8) = outlet();
        let (open8, open8_reply) = open_request(&mailbox, 8, out8);
        let (small, small_reply) = add_request(&mailbox, 100);
        store.begin_batch();
        store.handle(open8);
        store.handle(small);
        store.finish_batch(2);
        assert_eq!(open8_reply.blocking_recv().unwrap(), Ok(Vec::new()));
        assert_eq!(small_reply.blocking_recv().unwrap(), Ok(()));
        assert!(rx8.try_recv().is_ok());
        assert_eq!(messages_in_db(&store), 1);
        let cost = store.stored;
        assert!(cost > 100);
        assert_eq!(store.stored_by_client.get(&CLIENT), Some(&cost));

        // Closing deletes the mailbox (messages, accounts, subscribers); a failure later in
        // the same batch brings all of that back.
        let (close_tx, close_reply) = oneshot::channel();
        let (huge, huge_reply) = add_request(&mailbox, 1 << 20);
        store.begin_batch();
        store.handle(Request::Close {
            app: "app".into(),
            side: "a".into(),
            mailbox: mailbox.clone(),
            mood: None,
            conn: 9,
            now: 3.0,
            reply: close_tx,
        });
        assert!(store.subs.is_empty() && store.stored == 0);
        // These two go nowhere (no such mailbox) and fail nothing by themselves; the large
        // message for a fresh mailbox then fails the batch.
        store.handle(huge);
        let (other, other_reply) = add_request("nosuchmailbox", 1 << 20);
        store.handle(other);
        let (open_new, _) = open_request("fresh", 10, outlet().0);
        store.handle(open_new);
        let (huge, _) = add_request("fresh", 1 << 20);
        store.handle(huge);
        store.finish_batch(5);
        assert_eq!(
            close_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert_eq!(
            huge_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert_eq!(
            other_reply.blocking_recv().unwrap(),
            Err(Refusal::StorageFull)
        );
        assert_eq!(messages_in_db(&store), 1);
        assert_eq!(store.stored, cost);
        assert_eq!(store.stored_by_client.get(&CLIENT), Some(&cost));
        let key = (Arc::<str>::from("app"), mailbox.clone());
        assert_eq!(store.subs.get(&key).map(|s| s[0].conn), Some(8));
        assert!(
            !store
                .subs
                .contains_key(&(Arc::from("app"), "fresh".to_owned()))
        );
    }

    /// The bytes counted when a message is added are those `load_stored` computes in SQL
    /// for it after a restart.
    #[test]
    fn stored_bytes_are_the_same_counted_or_reloaded() {
        let mut store = Store::new(open(None).unwrap(), limits()).unwrap();
        let mailbox = store.claim("app", "sidé", "1", 1.0).unwrap().unwrap();
        for (i, body) in ["\"00\"", "{\"ü\": [1, 2]}", "null"].iter().enumerate() {
            let message = NewMessage {
                side: "sidé",
                client: CLIENT,
                phase: &format!("{i}"),
                body,
                id: "\"7f\"",
            };
            store
                .add(&"app".into(), &mailbox, message, 1.0)
                .unwrap()
                .unwrap();
        }
        let counted = store.stored;
        let by_mailbox = store.stored_by_mailbox["app"][&mailbox].total;
        assert_eq!(counted, by_mailbox);
        store.load_stored().unwrap();
        assert_eq!(store.stored, counted);
        assert_eq!(store.stored_by_mailbox["app"][&mailbox].total, counted);
        assert!(store.stored_by_client.is_empty());
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
        let db = Some(path.as_path());
        let mut store = Store::new(open(db).unwrap(), limits()).unwrap();
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

        let mut store = Store::new(open(db).unwrap(), limits()).unwrap();
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
