//! The channel store on PostgreSQL, for several server processes sharing one database.
//!
//! It answers the same [`Request`]s as the SQLite store (`store`), with the same
//! refusals, and keeps its promise: nothing is answered or broadcast before it is
//! committed. What differs is where state lives. Another process may change any row at any
//! time, so nothing the database holds is mirrored in memory: only the subscribed
//! connections of this process, and the bytes each client address added through it.
//!
//! - **Batches.** One task owns one database connection. It takes every request waiting
//!   (up to [`BATCH`]) and runs them in one transaction, which first takes a
//!   transaction-level advisory lock per app id of the batch, in a fixed order. Requests on
//!   one app id are thereby serialized across processes, exactly as the single SQLite
//!   thread serializes them: a nameplate is never allocated twice, the smallest free
//!   number is still preferred, a third side is refused, and the limits hold. The locks
//!   go with the transaction, so a process that dies holds nothing.
//! - **Broadcasts.** An `add` sends a `NOTIFY` with the message's sequence number (a global
//!   `bigserial`, increasing in commit order within an app id, because of the lock) and,
//!   when it fits in a notification, the frame. PostgreSQL delivers notifications after
//!   the commit, in commit order, to every process, this one included: each process
//!   delivers to its own subscribers whatever is newer than what they have seen (the
//!   replay of an `open` counts as seen). A notification too large to carry its frame is
//!   completed from the table.
//! - **Outages.** When the connection fails, the batch waits: the store reconnects with
//!   backoff and runs it again, for at most [`OUTAGE_WAIT`]; then its requests are refused
//!   (`database error`). Whether a batch whose `COMMIT` was cut off did commit is read back
//!   from a row the batch wrote (`committed_batches`), so it is never run twice. The
//!   listening connection reconnects the same way, then every subscriber is brought up to
//!   date from the table, so nothing notified during the outage is missed.
//! - **Pruning.** Every process keeps the mailboxes its connections are subscribed to
//!   touched; one process at a time (a transaction-level advisory lock, tried, not waited
//!   for) deletes the stale ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::RngCore;
use tokio::sync::{mpsc, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::request::{Frame, Outlet, Refusal, Request};
use super::store::{StoreLimits, canonical_number, message_cost, message_frame};

/// Most requests run in one transaction.
const BATCH: usize = 256;

/// How long a batch waits for an unreachable database before its requests are refused.
const OUTAGE_WAIT: Duration = Duration::from_secs(30);

/// Pauses between reconnection attempts: the first, and the longest.
const RECONNECT_PAUSE: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_millis(1000));

/// How often an idle store checks that the database still answers (so an outage is
/// reported, and the health check fails, even when no client asks anything).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The notification channel.
const CHANNEL: &str = "wormhole_mailbox";

/// Advisory lock (two-key form, apart from the app-id locks) held while creating tables.
const SCHEMA_LOCK: (i32, i32) = (0x776f_726d, 1);
/// Advisory lock (two-key form) of the process that prunes.
const PRUNE_LOCK: (i32, i32) = (0x776f_726d, 2);

/// How long `committed_batches` rows are kept (they only answer "did my commit land?"
/// right after a lost connection).
const BATCH_RECORD_KEEP: f64 = 3600.0;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS nameplates (
        app_id TEXT NOT NULL, name TEXT NOT NULL, num BIGINT, mailbox_id TEXT NOT NULL,
        PRIMARY KEY (app_id, name));
    CREATE INDEX IF NOT EXISTS nameplates_by_num ON nameplates (app_id, num);
    CREATE INDEX IF NOT EXISTS nameplates_by_mailbox ON nameplates (app_id, mailbox_id);
    CREATE TABLE IF NOT EXISTS nameplate_sides (
        app_id TEXT NOT NULL, name TEXT NOT NULL, side TEXT NOT NULL, claimed BOOLEAN NOT NULL,
        PRIMARY KEY (app_id, name, side));
    CREATE TABLE IF NOT EXISTS mailboxes (
        app_id TEXT NOT NULL, id TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL,
        messages BIGINT NOT NULL DEFAULT 0, bytes BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (app_id, id));
    CREATE INDEX IF NOT EXISTS mailboxes_by_updated ON mailboxes (updated);
    CREATE TABLE IF NOT EXISTS mailbox_sides (
        app_id TEXT NOT NULL, mailbox_id TEXT NOT NULL, side TEXT NOT NULL,
        opened BOOLEAN NOT NULL, mood TEXT,
        PRIMARY KEY (app_id, mailbox_id, side));
    CREATE TABLE IF NOT EXISTS messages (
        seq BIGSERIAL PRIMARY KEY, app_id TEXT NOT NULL, mailbox_id TEXT NOT NULL,
        side TEXT NOT NULL, phase TEXT NOT NULL, body TEXT NOT NULL,
        server_rx DOUBLE PRECISION NOT NULL, msg_id TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS messages_by_mailbox ON messages (app_id, mailbox_id, seq);
    CREATE TABLE IF NOT EXISTS stored_bytes (
        id INTEGER PRIMARY KEY CHECK (id = 1), bytes BIGINT NOT NULL);
    INSERT INTO stored_bytes (id, bytes) VALUES (1, 0) ON CONFLICT DO NOTHING;
    CREATE TABLE IF NOT EXISTS committed_batches (
        token BIGINT PRIMARY KEY, at DOUBLE PRECISION NOT NULL);
";

/// One function per request, so that a request is one round trip. A refusal comes back as
/// its [`refusal`] code (`NULL`: none). They run inside the batch's transaction, under the
/// app id's lock, exactly like the SQLite store's methods of the same names.
const FUNCTIONS: &str = r#"
-- Makes sure the mailbox exists (refusing a new one over max_mailboxes, unless that is
-- NULL) and that the side has opened it (a third side is refused); touches it.
CREATE OR REPLACE FUNCTION wh_ensure_side(p_app TEXT, p_mailbox TEXT, p_side TEXT,
    p_now DOUBLE PRECISION, p_max_mailboxes BIGINT) RETURNS TEXT
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes SET updated = p_now WHERE app_id = p_app AND id = p_mailbox;
    IF NOT FOUND THEN
        IF p_max_mailboxes IS NOT NULL
           AND (SELECT COUNT(*) FROM mailboxes WHERE app_id = p_app) >= p_max_mailboxes THEN
            RETURN 'too_many_mailboxes';
        END IF;
        INSERT INTO mailboxes (app_id, id, updated) VALUES (p_app, p_mailbox, p_now)
            ON CONFLICT DO NOTHING;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM mailbox_sides
                   WHERE app_id = p_app AND mailbox_id = p_mailbox AND side = p_side) THEN
        IF (SELECT COUNT(*) FROM mailbox_sides
            WHERE app_id = p_app AND mailbox_id = p_mailbox) >= 2 THEN
            RETURN 'crowded';
        END IF;
        INSERT INTO mailbox_sides (app_id, mailbox_id, side, opened)
            VALUES (p_app, p_mailbox, p_side, TRUE);
    END IF;
    RETURN NULL;
END $$;

-- Claims a nameplate (creating it and its mailbox, with the id p_fresh_id, if missing).
CREATE OR REPLACE FUNCTION wh_claim(p_app TEXT, p_side TEXT, p_name TEXT, p_num BIGINT,
    p_fresh_id TEXT, p_now DOUBLE PRECISION, p_max_mailboxes BIGINT,
    OUT mailbox TEXT, OUT refusal TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    was_claimed BOOLEAN;
BEGIN
    SELECT mailbox_id INTO mailbox FROM nameplates WHERE app_id = p_app AND name = p_name;
    IF NOT FOUND THEN
        IF (SELECT COUNT(*) FROM mailboxes WHERE app_id = p_app) >= p_max_mailboxes THEN
            refusal := 'too_many_mailboxes';
            RETURN;
        END IF;
        mailbox := p_fresh_id;
        INSERT INTO mailboxes (app_id, id, updated) VALUES (p_app, mailbox, p_now)
            ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'mailbox id % is taken', mailbox;
        END IF;
        INSERT INTO nameplates (app_id, name, num, mailbox_id)
            VALUES (p_app, p_name, p_num, mailbox);
        INSERT INTO nameplate_sides (app_id, name, side, claimed)
            VALUES (p_app, p_name, p_side, TRUE);
        refusal := wh_ensure_side(p_app, mailbox, p_side, p_now, NULL);
        RETURN;
    END IF;
    SELECT claimed INTO was_claimed FROM nameplate_sides
        WHERE app_id = p_app AND name = p_name AND side = p_side;
    IF was_claimed IS NOT NULL AND NOT was_claimed THEN
        refusal := 'reclaimed';
        RETURN;
    END IF;
    IF was_claimed IS NULL AND (SELECT COUNT(*) FROM nameplate_sides
                                WHERE app_id = p_app AND name = p_name) >= 2 THEN
        refusal := 'crowded';
        RETURN;
    END IF;
    refusal := wh_ensure_side(p_app, mailbox, p_side, p_now, p_max_mailboxes);
    IF refusal IS NULL AND was_claimed IS NULL THEN
        INSERT INTO nameplate_sides (app_id, name, side, claimed)
            VALUES (p_app, p_name, p_side, TRUE);
    END IF;
END $$;

-- Claims the smallest free numeric nameplate.
CREATE OR REPLACE FUNCTION wh_allocate(p_app TEXT, p_side TEXT, p_fresh_id TEXT,
    p_now DOUBLE PRECISION, p_max_mailboxes BIGINT, OUT name TEXT, OUT refusal TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
    unused TEXT;
BEGIN
    SELECT c.n INTO n FROM (SELECT 1::BIGINT AS n UNION ALL
            SELECT num + 1 FROM nameplates WHERE app_id = p_app AND num IS NOT NULL) AS c
        WHERE NOT EXISTS (SELECT 1 FROM nameplates p WHERE p.app_id = p_app AND p.num = c.n)
        ORDER BY c.n LIMIT 1;
    IF n IS NULL THEN
        refusal := 'no_free_nameplate';
        RETURN;
    END IF;
    name := n::TEXT;
    SELECT w.mailbox, w.refusal INTO unused, refusal
        FROM wh_claim(p_app, p_side, name, n, p_fresh_id, p_now, p_max_mailboxes) AS w;
END $$;

-- Releases a side's claim; the nameplate goes when no side claims it any more.
CREATE OR REPLACE FUNCTION wh_release(p_app TEXT, p_side TEXT, p_name TEXT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE nameplate_sides SET claimed = FALSE
        WHERE app_id = p_app AND name = p_name AND side = p_side;
    IF FOUND AND NOT EXISTS (SELECT 1 FROM nameplate_sides
                             WHERE app_id = p_app AND name = p_name AND claimed) THEN
        DELETE FROM nameplate_sides WHERE app_id = p_app AND name = p_name;
        DELETE FROM nameplates WHERE app_id = p_app AND name = p_name;
    END IF;
END $$;

-- Deletes a mailbox, its sides, its messages (giving their bytes back) and any
-- nameplate pointing at it.
CREATE OR REPLACE FUNCTION wh_delete_mailbox(p_app TEXT, p_mailbox TEXT) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    freed BIGINT;
BEGIN
    DELETE FROM mailboxes WHERE app_id = p_app AND id = p_mailbox RETURNING bytes INTO freed;
    DELETE FROM messages WHERE app_id = p_app AND mailbox_id = p_mailbox;
    DELETE FROM mailbox_sides WHERE app_id = p_app AND mailbox_id = p_mailbox;
    DELETE FROM nameplate_sides s USING nameplates n
        WHERE n.app_id = p_app AND n.mailbox_id = p_mailbox
          AND s.app_id = n.app_id AND s.name = n.name;
    DELETE FROM nameplates WHERE app_id = p_app AND mailbox_id = p_mailbox;
    IF freed > 0 THEN
        UPDATE stored_bytes SET bytes = GREATEST(bytes - freed, 0) WHERE id = 1;
    END IF;
END $$;

-- Stores a message (cost: its accounted bytes) and notifies every process:
-- [seq, app id, mailbox id, frame], the frame left out (null) when too large.
-- stored is false when the mailbox is gone (the message goes nowhere).
CREATE OR REPLACE FUNCTION wh_add(p_app TEXT, p_mailbox TEXT, p_side TEXT, p_phase TEXT,
    p_body TEXT, p_now DOUBLE PRECISION, p_msg_id TEXT, p_cost BIGINT,
    p_max_messages BIGINT, p_max_bytes BIGINT, p_frame TEXT,
    OUT stored BOOLEAN, OUT refusal TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    count BIGINT;
    new_seq BIGINT;
    payload TEXT;
BEGIN
    stored := FALSE;
    SELECT messages INTO count FROM mailboxes WHERE app_id = p_app AND id = p_mailbox;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF count >= p_max_messages THEN
        refusal := 'too_many_messages';
        RETURN;
    END IF;
    UPDATE stored_bytes SET bytes = bytes + p_cost WHERE id = 1 AND bytes + p_cost <= p_max_bytes;
    IF NOT FOUND THEN
        refusal := 'storage_full';
        RETURN;
    END IF;
    INSERT INTO messages (app_id, mailbox_id, side, phase, body, server_rx, msg_id)
        VALUES (p_app, p_mailbox, p_side, p_phase, p_body, p_now, p_msg_id)
        RETURNING seq INTO new_seq;
    UPDATE mailboxes SET messages = messages + 1, bytes = bytes + p_cost, updated = p_now
        WHERE app_id = p_app AND id = p_mailbox;
    payload := json_build_array(new_seq, p_app, p_mailbox, p_frame)::TEXT;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_array(new_seq, p_app, p_mailbox, NULL)::TEXT;
    END IF;
    PERFORM pg_notify('wormhole_mailbox', payload);
    stored := TRUE;
END $$;

-- Closes a side of a mailbox (opening it first if needed); the mailbox goes when no side
-- has it open.
CREATE OR REPLACE FUNCTION wh_close(p_app TEXT, p_side TEXT, p_mailbox TEXT, p_mood TEXT,
    p_now DOUBLE PRECISION, OUT deleted BOOLEAN, OUT refusal TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    deleted := FALSE;
    refusal := wh_ensure_side(p_app, p_mailbox, p_side, p_now, NULL);
    IF refusal IS NOT NULL THEN
        RETURN;
    END IF;
    UPDATE mailbox_sides SET opened = FALSE, mood = p_mood
        WHERE app_id = p_app AND mailbox_id = p_mailbox AND side = p_side;
    IF NOT EXISTS (SELECT 1 FROM mailbox_sides
                   WHERE app_id = p_app AND mailbox_id = p_mailbox AND opened) THEN
        PERFORM wh_delete_mailbox(p_app, p_mailbox);
        deleted := TRUE;
    END IF;
END $$;
"#;

/// Connects to `url` and creates the tables that are missing (several processes may do
/// this at once). Errors are worded for the operator.
pub(crate) async fn open(url: &str) -> Result<Client, String> {
    let client = connect(url)
        .await
        .map_err(|e| format!("cannot connect to the mailbox database: {e}"))?;
    let create = async {
        client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&SCHEMA_LOCK.0, &SCHEMA_LOCK.1],
            )
            .await?;
        let mut created = client.batch_execute(SCHEMA).await;
        if created.is_ok() {
            created = client.batch_execute(FUNCTIONS).await;
        }
        client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&SCHEMA_LOCK.0, &SCHEMA_LOCK.1],
            )
            .await?;
        created
    };
    create
        .await
        .map_err(|e| format!("cannot create the mailbox tables: {e}"))?;
    Ok(client)
}

/// How long PostgreSQL lets a session of ours sit in an open transaction without a
/// statement before it ends the session. A batch never waits between its statements, so
/// only a process that stopped (SIGSTOP, a frozen VM, a lost network) hits this: its
/// transaction is rolled back and its app-id locks released, instead of blocking every
/// other process for as long as it is stopped. When it resumes it finds its connection
/// gone and runs the batch again.
const STALLED_TRANSACTION: &str = "5s";

/// A new connection, its I/O driven by a task of its own.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("mailbox database connection ended: {e}");
        }
    });
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '{STALLED_TRANSACTION}'"
        ))
        .await?;
    Ok(client)
}

/// What the listening task tells the store.
enum Event {
    /// LISTEN is (re)established: bring every subscriber up to date from the table.
    Resync,
    /// A message was committed (by any process).
    Message {
        seq: i64,
        app: String,
        mailbox: String,
        frame: Option<Frame>,
    },
}

/// A subscribed connection and the newest message it has.
struct Subscriber {
    conn: u64,
    outlet: Outlet,
    seen: i64,
}

type MailboxKey = (Arc<str>, String);

/// A request's answer, before it is sent.
enum Answer {
    Names(Vec<String>),
    Name(String),
    Frames(Vec<Frame>),
    Done,
}

/// Changes to the in-memory state, applied only once the batch has committed.
enum Effect {
    Subscribe {
        key: MailboxKey,
        conn: u64,
        outlet: Outlet,
        seen: i64,
    },
    Unsubscribe {
        key: MailboxKey,
        conn: u64,
    },
    Charge {
        key: MailboxKey,
        client: IpAddr,
        cost: u64,
    },
    Deleted {
        key: MailboxKey,
    },
}

/// Why a transaction did not commit.
enum Failed {
    /// The connection is gone (or the server is shutting down): reconnect and retry.
    Lost(tokio_postgres::Error),
    /// Run it again on the same connection (deadlock or serialization failure).
    Retry,
    /// The statement failed: the batch is refused.
    Refused(Refusal, tokio_postgres::Error),
    /// The statements of request `.0` of the batch failed because of what it asked (such
    /// as a NUL character, which PostgreSQL's text cannot hold): that request is refused,
    /// the others run again without it.
    Culprit(usize, tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Failed {
        // A FATAL error ends the session (the server shut down, or ended an idle
        // transaction of a stopped process): like a closed connection.
        let fatal = e
            .as_db_error()
            .is_some_and(|d| matches!(d.severity(), "FATAL" | "PANIC"));
        if e.is_closed() || fatal {
            return Failed::Lost(e);
        }
        let code = e.code().cloned();
        match code {
            None => Failed::Lost(e),
            Some(c)
                if c == SqlState::ADMIN_SHUTDOWN
                    || c == SqlState::CRASH_SHUTDOWN
                    || c == SqlState::CANNOT_CONNECT_NOW
                    || c.code().starts_with("08") =>
            {
                Failed::Lost(e)
            }
            Some(c)
                if c == SqlState::T_R_DEADLOCK_DETECTED
                    || c == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                Failed::Retry
            }
            Some(c) if c == SqlState::DISK_FULL || c.code().starts_with("53") => {
                Failed::Refused(Refusal::StorageFull, e)
            }
            Some(_) => Failed::Refused(Refusal::DatabaseError, e),
        }
    }
}

type Pg<T> = Result<T, Failed>;

/// The PostgreSQL store's task state.
pub(crate) struct PgStore {
    url: String,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    limits: StoreLimits,
    subs: HashMap<MailboxKey, Vec<Subscriber>>,
    /// Bytes of stored messages added through this process, per client address.
    stored_by_client: HashMap<IpAddr, u64>,
    /// The same, per mailbox (to release them when the mailbox goes).
    charges: HashMap<MailboxKey, Vec<(IpAddr, u64)>>,
    /// Effects of the transaction being run.
    effects: Vec<Effect>,
    /// Answers of the transaction being run, one per request handled so far.
    answers: Vec<Result<Answer, Refusal>>,
    /// When the database stopped answering, while it does not.
    down_since: Option<Instant>,
    /// Whether the database answers (for the health check).
    healthy: watch::Sender<bool>,
    /// Subscribers may have missed notifications: bring them up to date.
    resync_pending: bool,
}

impl PgStore {
    /// Wraps a connection [`open`] made.
    pub(crate) fn new(
        url: String,
        client: Client,
        limits: StoreLimits,
        healthy: watch::Sender<bool>,
    ) -> PgStore {
        PgStore {
            url,
            client: Some(client),
            statements: HashMap::new(),
            limits,
            subs: HashMap::new(),
            stored_by_client: HashMap::new(),
            charges: HashMap::new(),
            effects: Vec::new(),
            answers: Vec::new(),
            down_since: None,
            healthy,
            resync_pending: false,
        }
    }

    /// Serves requests until [`Request::Shutdown`] or until every sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let listener = tokio::spawn(listen(self.url.clone(), events_tx));
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ok = Instant::now();
        loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => {
                    self.event(event).await;
                }
                req = rx.recv() => {
                    let Some(first) = req else { break };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if let Some(done) = self.serve(batch).await {
                        listener.abort();
                        let _ = done.send(());
                        return;
                    }
                    last_ok = Instant::now();
                }
                _ = heartbeat.tick() => {
                    if self.resync_pending || last_ok.elapsed() >= HEARTBEAT {
                        self.check().await;
                        last_ok = Instant::now();
                    }
                }
            }
        }
        listener.abort();
    }

    /// Pings the database (reconnecting if needed) and catches subscribers up if they
    /// may have missed something.
    async fn check(&mut self) {
        if self.connected().await.is_err() {
            return;
        }
        let ping = match &self.client {
            Some(c) => c.simple_query("SELECT 1").await.map(|_| ()),
            None => return,
        };
        match ping {
            Ok(()) => self.up(),
            Err(e) => self.lost(e),
        }
        if self.resync_pending && self.client.is_some() {
            self.resync().await;
        }
    }

    /// Runs a batch of requests; returns the shutdown acknowledgement if one came.
    async fn serve(&mut self, batch: Vec<Request>) -> Option<tokio::sync::oneshot::Sender<()>> {
        let mut work = Vec::with_capacity(batch.len());
        let mut shutdown = None;
        let mut prune = None;
        for req in batch {
            match req {
                Request::Shutdown { done } => shutdown = Some(done),
                Request::Unsubscribe { app, mailbox, conn } => {
                    self.apply(Effect::Unsubscribe {
                        key: (app, mailbox),
                        conn,
                    });
                }
                Request::Prune { now, expiry } => prune = Some((now, expiry)),
                req if shutdown.is_none() => work.push(req),
                _ => {}
            }
        }
        if !work.is_empty() {
            self.run_batch(work).await;
        }
        if let Some((now, expiry)) = prune {
            self.prune(now, expiry).await;
        }
        shutdown
    }

    /// Marks the database reachable.
    fn up(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::warn!(
                "mailbox database: reachable again after {:.1} s",
                since.elapsed().as_secs_f64()
            );
        }
        self.healthy.send_replace(true);
    }

    /// The connection failed: drop it (the next use reconnects).
    fn lost(&mut self, e: tokio_postgres::Error) {
        if self.down_since.is_none() {
            tracing::error!(
                "mailbox database unreachable: {e}; requests wait (at most {} s) while \
                 the server reconnects",
                OUTAGE_WAIT.as_secs()
            );
            self.down_since = Some(Instant::now());
        }
        self.healthy.send_replace(false);
        self.client = None;
        self.statements.clear();
        self.resync_pending = true;
    }

    /// Makes sure there is a connection (one attempt).
    async fn connected(&mut self) -> Result<(), ()> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        self.statements.clear();
        match connect(&self.url).await {
            Ok(c) => {
                self.client = Some(c);
                Ok(())
            }
            Err(e) => {
                if self.down_since.is_none() {
                    self.lost(e);
                } else {
                    tracing::debug!("mailbox database: reconnecting failed: {e}");
                }
                Err(())
            }
        }
    }

    /// Runs `work` in one transaction until it commits, is refused, or the outage lasts
    /// too long; then answers every request.
    async fn run_batch(&mut self, mut work: Vec<Request>) {
        let started = Instant::now();
        let token = (rand::thread_rng().next_u64() >> 1) as i64;
        let mut pause = RECONNECT_PAUSE.0;
        let outcome = loop {
            if self.connected().await.is_ok() {
                self.effects.clear();
                self.answers.clear();
                match self.transaction(&work, token).await {
                    Ok(()) => break Ok(std::mem::take(&mut self.answers)),
                    Err(Failed::Refused(r, e)) => {
                        self.rollback().await;
                        tracing::error!("mailbox database: {e}; {} requests refused", work.len());
                        break Err(r);
                    }
                    Err(Failed::Retry) => {
                        self.rollback().await;
                        continue;
                    }
                    Err(Failed::Culprit(i, e)) => {
                        self.rollback().await;
                        tracing::warn!("mailbox database: a request refused: {e}");
                        if i < work.len() {
                            reply(work.remove(i), Err(Refusal::DatabaseError));
                        }
                        continue;
                    }
                    Err(Failed::Lost(e)) => {
                        self.lost(e);
                        // Did the COMMIT land before the connection went?
                        if self.committed_after_all(token, started).await {
                            break Ok(std::mem::take(&mut self.answers));
                        }
                    }
                }
            }
            if started.elapsed() >= OUTAGE_WAIT {
                tracing::error!(
                    "mailbox database: unreachable for {} s; {} requests refused",
                    OUTAGE_WAIT.as_secs(),
                    work.len()
                );
                break Err(Refusal::DatabaseError);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECONNECT_PAUSE.1);
        };
        match outcome {
            Ok(answers) => {
                self.up();
                for effect in std::mem::take(&mut self.effects) {
                    self.apply(effect);
                }
                for (req, answer) in work.into_iter().zip(answers) {
                    reply(req, answer);
                }
            }
            Err(refusal) => {
                self.effects.clear();
                for req in work {
                    reply(req, Err(refusal));
                }
            }
        }
    }

    /// After a lost connection: reconnects (within the outage limit, counted from
    /// `started`) and reads whether the batch `token` committed.
    async fn committed_after_all(&mut self, token: i64, started: Instant) -> bool {
        let mut pause = RECONNECT_PAUSE.0;
        loop {
            if self.connected().await.is_ok() {
                let Some(client) = &self.client else {
                    return false;
                };
                match client
                    .query_opt(
                        "SELECT 1 FROM committed_batches WHERE token = $1",
                        &[&token],
                    )
                    .await
                {
                    Ok(found) => return found.is_some(),
                    Err(e) => self.lost(e),
                }
            }
            if started.elapsed() >= OUTAGE_WAIT {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECONNECT_PAUSE.1);
        }
    }

    async fn rollback(&mut self) {
        if let Some(c) = &self.client {
            if let Err(e) = c.batch_execute("ROLLBACK").await {
                tracing::debug!("mailbox database: rollback failed: {e}");
            }
        }
    }

    /// One attempt at the batch: every answer goes to `self.answers`, every effect to
    /// `self.effects`.
    async fn transaction(&mut self, work: &[Request], token: i64) -> Pg<()> {
        let Some(client) = self.client.take() else {
            return Err(Failed::Retry);
        };
        let result = self.transaction_on(&client, work, token).await;
        self.client = Some(client);
        result
    }

    async fn transaction_on(&mut self, c: &Client, work: &[Request], token: i64) -> Pg<()> {
        let apps = lock_keys(work.iter().filter_map(app_of));
        // Each pair of statements goes in one round trip (pipelined): the transaction
        // starts and takes its locks, and later records itself and commits. A COMMIT
        // after a failed statement only rolls back, and the error is the statement's.
        let lock = self.st(c, LOCK_APPS).await?;
        let record = self
            .st(
                c,
                "INSERT INTO committed_batches (token, at) VALUES ($1, $2)",
            )
            .await?;
        let (begun, locked) =
            futures_util::future::join(c.batch_execute("BEGIN"), c.execute(&lock, &[&apps])).await;
        begun?;
        locked?;
        // Every request's statements, pipelined in order: one round trip for the batch.
        // They run one after the other in the transaction, as if awaited one by one; after
        // a failed one the rest fail too, and the batch with them.
        let mut pending = HashMap::new();
        let mut plans = Vec::with_capacity(work.len());
        for req in work {
            plans.push(self.plan(c, req, &mut pending).await?);
        }
        let params: Vec<Vec<Vec<&(dyn ToSql + Sync)>>> = plans
            .iter()
            .map(|plan| match plan {
                Ok(calls) => calls
                    .iter()
                    .map(|call| call.params.iter().map(|p| &**p as _).collect())
                    .collect(),
                Err(_) => Vec::new(),
            })
            .collect();
        let queries = plans.iter().zip(&params).flat_map(|(plan, params)| {
            let calls: &[Call] = plan.as_deref().unwrap_or_default();
            calls
                .iter()
                .zip(params)
                .map(|(call, p)| c.query(&call.st, p))
        });
        let mut results = futures_util::future::join_all(queries).await.into_iter();
        for (i, (req, plan)) in work.iter().zip(&plans).enumerate() {
            let answer = match plan {
                Err(r) => Err(*r),
                Ok(calls) => {
                    let mut rows = Vec::with_capacity(calls.len());
                    for _ in calls {
                        match results.next() {
                            Some(Ok(r)) => rows.push(r),
                            // The first error is this request's own, unless it is the
                            // storage or the connection failing.
                            Some(Err(e)) => {
                                return Err(match Failed::from(e) {
                                    Failed::Refused(Refusal::DatabaseError, e) => {
                                        Failed::Culprit(i, e)
                                    }
                                    other => other,
                                });
                            }
                            None => return Err(Failed::Retry),
                        }
                    }
                    self.answer(req, rows)
                }
            };
            self.answers.push(answer);
        }
        let (recorded, committed) = futures_util::future::join(
            c.execute(&record, &[&token, &now()]),
            c.batch_execute("COMMIT"),
        )
        .await;
        recorded?;
        committed?;
        Ok(())
    }

    /// A prepared statement (kept per connection).
    async fn st(&mut self, c: &Client, sql: &'static str) -> Pg<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql).await?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    async fn q(
        &mut self,
        c: &Client,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Pg<Vec<tokio_postgres::Row>> {
        let st = self.st(c, sql).await?;
        Ok(c.query(&st, params).await?)
    }

    async fn q_opt(
        &mut self,
        c: &Client,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Pg<Option<tokio_postgres::Row>> {
        let st = self.st(c, sql).await?;
        Ok(c.query_opt(&st, params).await?)
    }

    async fn x(
        &mut self,
        c: &Client,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Pg<u64> {
        let st = self.st(c, sql).await?;
        Ok(c.execute(&st, params).await?)
    }

    /// The statements that carry out `req` (one function call, two for `open`), or the
    /// refusal it gets without asking the database. `pending` is the bytes this batch's
    /// earlier adds charge to each client address.
    async fn plan(
        &mut self,
        c: &Client,
        req: &Request,
        pending: &mut HashMap<IpAddr, u64>,
    ) -> Pg<Result<Vec<Call>, Refusal>> {
        let max_mailboxes = i64::try_from(self.limits.max_mailboxes_per_app).unwrap_or(i64::MAX);
        let text = |s: &str| -> Param { Box::new(s.to_owned()) };
        Ok(Ok(match req {
            Request::List { app, .. } => vec![Call {
                st: self
                    .st(c, "SELECT name FROM nameplates WHERE app_id = $1")
                    .await?,
                params: vec![text(app)],
            }],
            Request::Allocate { app, side, now, .. } => vec![Call {
                st: self
                    .st(
                        c,
                        "SELECT name, refusal FROM wh_allocate($1, $2, $3, $4, $5)",
                    )
                    .await?,
                params: vec![
                    text(app),
                    text(side),
                    Box::new(fresh_mailbox_id()),
                    Box::new(*now),
                    Box::new(max_mailboxes),
                ],
            }],
            Request::Claim {
                app,
                side,
                nameplate,
                now,
                ..
            } => vec![Call {
                st: self
                    .st(
                        c,
                        "SELECT mailbox, refusal FROM wh_claim($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .await?,
                params: vec![
                    text(app),
                    text(side),
                    text(nameplate),
                    Box::new(canonical_number(nameplate)),
                    Box::new(fresh_mailbox_id()),
                    Box::new(*now),
                    Box::new(max_mailboxes),
                ],
            }],
            Request::Release {
                app,
                side,
                nameplate,
                ..
            } => vec![Call {
                st: self.st(c, "SELECT wh_release($1, $2, $3)").await?,
                params: vec![text(app), text(side), text(nameplate)],
            }],
            Request::Open {
                app,
                side,
                mailbox,
                now,
                ..
            } => vec![
                Call {
                    st: self
                        .st(c, "SELECT wh_ensure_side($1, $2, $3, $4, $5)")
                        .await?,
                    params: vec![
                        text(app),
                        text(mailbox),
                        text(side),
                        Box::new(*now),
                        Box::new(max_mailboxes),
                    ],
                },
                // The replay, thrown away if the side was refused.
                Call {
                    st: self
                        .st(
                            c,
                            "SELECT seq, side, phase, body, server_rx, msg_id FROM messages
                             WHERE app_id = $1 AND mailbox_id = $2 ORDER BY seq",
                        )
                        .await?,
                    params: vec![text(app), text(mailbox)],
                },
            ],
            Request::Add {
                app,
                side,
                client,
                mailbox,
                phase,
                body,
                id,
                now,
                ..
            } => {
                let cost = message_cost(app, mailbox, side, phase, body, id);
                // This process's share of the address's bytes, with the batch's earlier
                // adds (counted even if one of them finds its mailbox gone).
                let from_client = self.stored_by_client.get(client).copied().unwrap_or(0)
                    + pending.get(client).copied().unwrap_or(0);
                if from_client.saturating_add(cost) > self.limits.max_stored_bytes_per_ip {
                    return Ok(Err(Refusal::AddressStorageFull));
                }
                *pending.entry(*client).or_insert(0) += cost;
                let int = |n: u64| -> Param { Box::new(i64::try_from(n).unwrap_or(i64::MAX)) };
                vec![Call {
                    st: self
                        .st(
                            c,
                            "SELECT stored, refusal
                             FROM wh_add($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        )
                        .await?,
                    params: vec![
                        text(app),
                        text(mailbox),
                        text(side),
                        text(phase),
                        text(body),
                        Box::new(*now),
                        text(id),
                        int(cost),
                        int(self.limits.max_messages_per_mailbox as u64),
                        int(self.limits.max_stored_bytes),
                        text(&message_frame(side, phase, body, *now, id)),
                    ],
                }]
            }
            Request::Close {
                app,
                side,
                mailbox,
                mood,
                now,
                ..
            } => vec![Call {
                st: self
                    .st(
                        c,
                        "SELECT deleted, refusal FROM wh_close($1, $2, $3, $4, $5)",
                    )
                    .await?,
                params: vec![
                    text(app),
                    text(side),
                    text(mailbox),
                    Box::new(mood.clone()),
                    Box::new(*now),
                ],
            }],
            Request::Unsubscribe { .. } | Request::Prune { .. } | Request::Shutdown { .. } => {
                Vec::new()
            }
        }))
    }

    /// The answer to `req` from the rows of its [`plan`](Self::plan)'s statements; records
    /// the request's effects.
    fn answer(
        &mut self,
        req: &Request,
        rows: Vec<Vec<tokio_postgres::Row>>,
    ) -> Result<Answer, Refusal> {
        let first = rows.first().and_then(|r| r.first());
        // A function call returns one row; its last column is the refusal, if any.
        let one = || first.ok_or(Refusal::DatabaseError);
        match req {
            Request::List { .. } => {
                let mut names: Vec<String> = rows
                    .first()
                    .map(|r| r.iter().map(|r| r.get(0)).collect())
                    .unwrap_or_default();
                names.sort();
                Ok(Answer::Names(names))
            }
            Request::Allocate { .. } | Request::Claim { .. } => {
                let row = one()?;
                refusal(row.get(1))?;
                Ok(Answer::Name(row.get(0)))
            }
            Request::Release { .. } => Ok(Answer::Done),
            Request::Open {
                app,
                mailbox,
                conn,
                outlet,
                ..
            } => {
                refusal(one()?.get(0))?;
                let replay = rows.get(1).ok_or(Refusal::DatabaseError)?;
                self.effects.push(Effect::Subscribe {
                    key: (app.clone(), mailbox.clone()),
                    conn: *conn,
                    outlet: outlet.clone(),
                    seen: replay.last().map_or(0, |r| r.get(0)),
                });
                Ok(Answer::Frames(replay.iter().map(row_frame).collect()))
            }
            Request::Add {
                app,
                client,
                mailbox,
                side,
                phase,
                body,
                id,
                ..
            } => {
                let row = one()?;
                refusal(row.get(1))?;
                if row.get::<_, bool>(0) {
                    self.effects.push(Effect::Charge {
                        key: (app.clone(), mailbox.clone()),
                        client: *client,
                        cost: message_cost(app, mailbox, side, phase, body, id),
                    });
                }
                Ok(Answer::Done)
            }
            Request::Close {
                app, mailbox, conn, ..
            } => {
                let row = one()?;
                refusal(row.get(1))?;
                let key = (app.clone(), mailbox.clone());
                self.effects.push(Effect::Unsubscribe {
                    key: key.clone(),
                    conn: *conn,
                });
                if row.get::<_, bool>(0) {
                    self.effects.push(Effect::Deleted { key });
                }
                Ok(Answer::Done)
            }
            Request::Unsubscribe { .. } | Request::Prune { .. } | Request::Shutdown { .. } => {
                Ok(Answer::Done)
            }
        }
    }

    /// Touches the mailboxes this process's connections are subscribed to and, if no
    /// other process is pruning, deletes the stale ones.
    async fn prune(&mut self, now: f64, expiry: f64) {
        self.subs.retain(|_, subs| {
            subs.retain(|s| !s.outlet.is_closed());
            !subs.is_empty()
        });
        if self.connected().await.is_err() {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        self.effects.clear();
        let result = self.prune_on(&client, now, expiry).await;
        let result = match result {
            Ok(n) => self.reconcile_charges(&client).await.map(|()| n),
            Err(e) => Err(e),
        };
        self.client = Some(client);
        match result {
            Ok(n) => {
                for effect in std::mem::take(&mut self.effects) {
                    self.apply(effect);
                }
                if n > 0 {
                    tracing::info!("mailbox: pruned {n} stale mailboxes");
                }
            }
            Err(failed) => {
                self.effects.clear();
                self.rollback().await;
                match failed {
                    Failed::Lost(e) => self.lost(e),
                    Failed::Refused(_, e) | Failed::Culprit(_, e) => {
                        tracing::warn!("mailbox: pruning failed: {e}")
                    }
                    Failed::Retry => {}
                }
            }
        }
    }

    async fn prune_on(&mut self, c: &Client, now: f64, expiry: f64) -> Pg<usize> {
        c.batch_execute("BEGIN").await?;
        let (apps, ids): (Vec<&str>, Vec<&str>) =
            self.subs.keys().map(|(a, m)| (&**a, m.as_str())).unzip();
        let apps: Vec<String> = apps.into_iter().map(str::to_owned).collect();
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        self.x(
            c,
            "UPDATE mailboxes SET updated = $3 WHERE (app_id, id) IN
             (SELECT * FROM unnest($1::TEXT[], $2::TEXT[]))",
            &[&apps, &ids, &now],
        )
        .await?;
        let mine: bool = self
            .q(
                c,
                "SELECT pg_try_advisory_xact_lock($1, $2)",
                &[&PRUNE_LOCK.0, &PRUNE_LOCK.1],
            )
            .await?
            .first()
            .is_some_and(|r| r.get(0));
        let mut pruned = 0;
        if mine {
            let cutoff = now - expiry;
            let stale: Vec<(String, String)> = self
                .q(
                    c,
                    "SELECT app_id, id FROM mailboxes WHERE updated < $1",
                    &[&cutoff],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            if !stale.is_empty() {
                let keys = lock_keys(stale.iter().map(|(a, _)| a.as_str()));
                self.x(c, LOCK_APPS, &[&keys]).await?;
                for (app, mailbox) in &stale {
                    // Touched since (under the app's lock now)?
                    let still = self
                        .q_opt(
                            c,
                            "SELECT 1 FROM mailboxes WHERE app_id = $1 AND id = $2 AND updated < $3",
                            &[app, mailbox, &cutoff],
                        )
                        .await?
                        .is_some();
                    if still {
                        self.x(c, "SELECT wh_delete_mailbox($1, $2)", &[app, mailbox])
                            .await?;
                        self.effects.push(Effect::Deleted {
                            key: (Arc::from(app.as_str()), mailbox.clone()),
                        });
                        pruned += 1;
                    }
                }
            }
            self.x(
                c,
                "DELETE FROM nameplate_sides s WHERE NOT EXISTS (SELECT 1 FROM nameplates n
                   WHERE n.app_id = s.app_id AND n.name = s.name)",
                &[],
            )
            .await?;
            self.x(
                c,
                "DELETE FROM committed_batches WHERE at < $1",
                &[&(now - BATCH_RECORD_KEEP)],
            )
            .await?;
        }
        c.batch_execute("COMMIT").await?;
        Ok(pruned)
    }

    /// Forgets the bytes charged to client addresses for mailboxes that no longer exist
    /// (deleted by another process).
    async fn reconcile_charges(&mut self, c: &Client) -> Pg<()> {
        if self.charges.is_empty() {
            return Ok(());
        }
        let (apps, ids): (Vec<String>, Vec<String>) = self
            .charges
            .keys()
            .map(|(a, m)| (a.to_string(), m.clone()))
            .unzip();
        let live: std::collections::HashSet<(String, String)> = self
            .q(
                c,
                "SELECT app_id, id FROM mailboxes WHERE (app_id, id) IN
                 (SELECT * FROM unnest($1::TEXT[], $2::TEXT[]))",
                &[&apps, &ids],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let gone: Vec<MailboxKey> = self
            .charges
            .keys()
            .filter(|(a, m)| !live.contains(&(a.to_string(), m.clone())))
            .cloned()
            .collect();
        for key in gone {
            self.release_charges(&key);
        }
        Ok(())
    }

    fn release_charges(&mut self, key: &MailboxKey) {
        for (client, cost) in self.charges.remove(key).unwrap_or_default() {
            if let Some(n) = self.stored_by_client.get_mut(&client) {
                *n = n.saturating_sub(cost);
                if *n == 0 {
                    self.stored_by_client.remove(&client);
                }
            }
        }
    }

    /// Applies a committed change to the in-memory state.
    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Subscribe {
                key,
                conn,
                outlet,
                seen,
            } => {
                let subs = self.subs.entry(key).or_default();
                subs.retain(|s| s.conn != conn && !s.outlet.is_closed());
                subs.push(Subscriber { conn, outlet, seen });
            }
            Effect::Unsubscribe { key, conn } => {
                if let Some(subs) = self.subs.get_mut(&key) {
                    subs.retain(|s| s.conn != conn);
                    if subs.is_empty() {
                        self.subs.remove(&key);
                    }
                }
            }
            Effect::Charge { key, client, cost } => {
                *self.stored_by_client.entry(client).or_insert(0) += cost;
                let charges = self.charges.entry(key).or_default();
                match charges.iter_mut().find(|(c, _)| *c == client) {
                    Some((_, n)) => *n += cost,
                    None => charges.push((client, cost)),
                }
            }
            Effect::Deleted { key } => {
                // Subscribers of a deleted mailbox hear nothing more (as with the
                // reference, and the SQLite store).
                self.subs.remove(&key);
                self.release_charges(&key);
            }
        }
    }

    /// A notification or a resync request from the listening task.
    async fn event(&mut self, event: Event) {
        match event {
            Event::Resync => {
                self.resync_pending = true;
                if self.connected().await.is_ok() {
                    self.resync().await;
                }
            }
            Event::Message {
                seq,
                app,
                mailbox,
                frame,
            } => {
                // While subscribers may have missed something, the table (not the
                // notifications) is the source: a resync delivers this one too.
                if self.resync_pending {
                    return;
                }
                let key: MailboxKey = (Arc::from(app), mailbox);
                let Some(subs) = self.subs.get(&key) else {
                    return;
                };
                if subs.iter().all(|s| s.seen >= seq) {
                    return;
                }
                let frame = match frame {
                    Some(f) => f,
                    None => match self.fetch(seq).await {
                        Ok(Some(f)) => f,
                        Ok(None) => return,
                        Err(()) => {
                            self.resync_pending = true;
                            return;
                        }
                    },
                };
                self.deliver(&key, seq, &frame);
            }
        }
    }

    /// Pushes `frame` (message `seq`) to the subscribers of `key` that do not have it.
    fn deliver(&mut self, key: &MailboxKey, seq: i64, frame: &Frame) {
        if let Some(subs) = self.subs.get_mut(key) {
            for s in subs.iter_mut().filter(|s| s.seen < seq) {
                s.outlet.push(frame);
                s.seen = seq;
            }
        }
    }

    /// Reads the frame of message `seq` (`None`: deleted since).
    async fn fetch(&mut self, seq: i64) -> Result<Option<Frame>, ()> {
        if self.connected().await.is_err() {
            return Err(());
        }
        let Some(client) = self.client.take() else {
            return Err(());
        };
        let row = self
            .q_opt(
                &client,
                "SELECT seq, side, phase, body, server_rx, msg_id FROM messages WHERE seq = $1",
                &[&seq],
            )
            .await;
        self.client = Some(client);
        match row {
            Ok(row) => Ok(row.as_ref().map(row_frame)),
            Err(Failed::Lost(e)) => {
                self.lost(e);
                Err(())
            }
            Err(_) => Err(()),
        }
    }

    /// Delivers to every subscriber what the table holds beyond what it has seen.
    async fn resync(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let keys: Vec<(MailboxKey, i64)> = self
            .subs
            .iter()
            .map(|(k, subs)| (k.clone(), subs.iter().map(|s| s.seen).min().unwrap_or(0)))
            .collect();
        let mut result = Ok(());
        for (key, seen) in keys {
            let app: &str = &key.0;
            let rows = self
                .q(
                    &client,
                    "SELECT seq, side, phase, body, server_rx, msg_id FROM messages
                     WHERE app_id = $1 AND mailbox_id = $2 AND seq > $3 ORDER BY seq",
                    &[&app, &key.1, &seen],
                )
                .await;
            match rows {
                Ok(rows) => {
                    for r in &rows {
                        self.deliver(&key, r.get(0), &row_frame(r));
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.client = Some(client);
        match result {
            Ok(()) => self.resync_pending = false,
            Err(Failed::Lost(e)) => self.lost(e),
            Err(_) => {}
        }
    }
}

/// Takes the advisory locks of an array of keys ([`lock_keys`]), in the array's order.
const LOCK_APPS: &str = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::BIGINT[]) AS k";

/// The advisory-lock keys of some app ids, sorted and without repeats, so that two
/// transactions always take their locks in the same order and never wait for each other.
/// A key is the CRC-32 of the app id: the same in every process and every version, and
/// computed here rather than in SQL so that an app id PostgreSQL cannot hold (a NUL
/// character) fails only its own request. Two app ids with one key only share a lock.
fn lock_keys<'a>(apps: impl Iterator<Item = &'a str>) -> Vec<i64> {
    let mut keys: Vec<i64> = apps
        .map(|a| i64::from(crc32fast::hash(a.as_bytes())))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A statement parameter.
type Param = Box<dyn ToSql + Sync + Send>;

/// A prepared statement and its parameters.
struct Call {
    st: Statement,
    params: Vec<Param>,
}

/// A refusal code from one of the SQL functions (`None`: no refusal).
fn refusal(code: Option<&str>) -> Result<(), Refusal> {
    match code {
        None => Ok(()),
        Some("crowded") => Err(Refusal::Crowded),
        Some("reclaimed") => Err(Refusal::Reclaimed),
        Some("too_many_mailboxes") => Err(Refusal::TooManyMailboxes),
        Some("too_many_messages") => Err(Refusal::TooManyMessages),
        Some("no_free_nameplate") => Err(Refusal::NoFreeNameplate),
        Some("storage_full") => Err(Refusal::StorageFull),
        Some(other) => {
            tracing::error!("mailbox database: unknown refusal {other:?}");
            Err(Refusal::DatabaseError)
        }
    }
}

/// A new random mailbox id, like the SQLite store's (13 lowercase base32 characters).
fn fresh_mailbox_id() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

/// The app id a request works on.
fn app_of(req: &Request) -> Option<&str> {
    match req {
        Request::List { app, .. }
        | Request::Allocate { app, .. }
        | Request::Claim { app, .. }
        | Request::Release { app, .. }
        | Request::Open { app, .. }
        | Request::Add { app, .. }
        | Request::Close { app, .. } => Some(app),
        _ => None,
    }
}

/// A `message` frame from a `messages` row (seq, side, phase, body, server_rx, msg_id).
fn row_frame(r: &tokio_postgres::Row) -> Frame {
    message_frame(
        r.get::<_, &str>(1),
        r.get::<_, &str>(2),
        r.get::<_, &str>(3),
        r.get(4),
        r.get::<_, &str>(5),
    )
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sends a request its answer.
fn reply(req: Request, answer: Result<Answer, Refusal>) {
    fn names(a: Answer) -> Result<Vec<String>, Refusal> {
        match a {
            Answer::Names(n) => Ok(n),
            _ => Err(Refusal::DatabaseError),
        }
    }
    fn name(a: Answer) -> Result<String, Refusal> {
        match a {
            Answer::Name(n) => Ok(n),
            _ => Err(Refusal::DatabaseError),
        }
    }
    fn frames(a: Answer) -> Result<Vec<Frame>, Refusal> {
        match a {
            Answer::Frames(f) => Ok(f),
            _ => Err(Refusal::DatabaseError),
        }
    }
    match req {
        Request::List { reply, .. } => {
            let _ = reply.send(answer.and_then(names));
        }
        Request::Allocate { reply, .. } | Request::Claim { reply, .. } => {
            let _ = reply.send(answer.and_then(name));
        }
        Request::Open { reply, .. } => {
            let _ = reply.send(answer.and_then(frames));
        }
        Request::Release { reply, .. }
        | Request::Add { reply, .. }
        | Request::Close { reply, .. } => {
            let _ = reply.send(answer.map(|_| ()));
        }
        Request::Unsubscribe { .. } | Request::Prune { .. } | Request::Shutdown { .. } => {}
    }
}

/// Keeps a connection listening for notifications, reconnecting when it fails, and
/// passes them to the store (after a [`Event::Resync`] each time LISTEN is in place).
async fn listen(url: String, events: mpsc::UnboundedSender<Event>) {
    let mut pause = RECONNECT_PAUSE.0;
    loop {
        match listen_once(&url, &events).await {
            Ok(()) => pause = RECONNECT_PAUSE.0,
            Err(e) => tracing::debug!("mailbox database: listening failed: {e}"),
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_PAUSE.1);
    }
}

/// One listening connection, until it fails.
async fn listen_once(
    url: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("mailbox database: listening connection ended: {e}");
                    break;
                }
            }
        }
    });
    let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    if events.send(Event::Resync).is_err() {
        driver.abort();
        return Ok(());
    }
    while let Some(n) = rx.recv().await {
        match parse_payload(n.payload()) {
            Some(event) => {
                if events.send(event).is_err() {
                    break;
                }
            }
            None => tracing::warn!("mailbox database: ignoring a malformed notification"),
        }
    }
    driver.abort();
    drop(client);
    Ok(())
}

/// Reads a notification's payload: `[seq, app id, mailbox id, frame or null]`.
fn parse_payload(payload: &str) -> Option<Event> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let a = v.as_array().filter(|a| a.len() == 4)?;
    Some(Event::Message {
        seq: a[0].as_i64()?,
        app: a[1].as_str()?.to_owned(),
        mailbox: a[2].as_str()?.to_owned(),
        frame: match &a[3] {
            serde_json::Value::String(s) => Some(Frame::from(s.as_str())),
            serde_json::Value::Null => None,
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_back() {
        let frame = message_frame("s", "\"0\"", "\"b\"", 1.5, "null");
        let payload = serde_json::json!([7, "app", "mb", &*frame]).to_string();
        match parse_payload(&payload) {
            Some(Event::Message {
                seq,
                app,
                mailbox,
                frame: Some(f),
            }) => {
                assert_eq!((seq, app.as_str(), mailbox.as_str()), (7, "app", "mb"));
                assert_eq!(f, frame);
            }
            _ => panic!("not read back"),
        }
        assert!(matches!(
            parse_payload("[8, \"a\", \"m\", null]"),
            Some(Event::Message { frame: None, .. })
        ));
        for bad in [
            "",
            "[]",
            "[1, 2, 3, 4]",
            "{\"a\": 1}",
            "[1, \"a\", \"m\", 5]",
        ] {
            assert!(parse_payload(bad).is_none(), "{bad}");
        }
    }
}
