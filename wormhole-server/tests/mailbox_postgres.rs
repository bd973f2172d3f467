//! The mailbox server's integration tests (`mailbox_suite`) on PostgreSQL: one real
//! PostgreSQL cluster (Debian's package, started on loopback by the harness in
//! `tests/src/postgres.rs`) for the whole binary, and a database of its own per test.

#[path = "../../tests/src/postgres.rs"]
mod postgres;

mod backend {
    use std::path::Path;

    use wormhole_server::Database;

    /// Which backend the suite runs on.
    pub const POSTGRES: bool = true;

    /// A fresh, empty database.
    pub fn fresh() -> Database {
        Database::Postgres(super::postgres::shared_cluster().fresh_database())
    }

    /// A database that outlives the server (a fresh one: PostgreSQL keeps it anyway).
    pub fn persistent(_file: &Path) -> Database {
        fresh()
    }
}

#[path = "mailbox_suite/mod.rs"]
mod suite;

/// Tests that only make sense with several processes on one database: here two servers in
/// this process, each with its own connections to PostgreSQL, as two processes would be.
mod shared_database {
    use std::collections::BTreeSet;

    use serde_json::json;
    use wormhole_server::{Database, MailboxConfig, MailboxHandle};

    use super::postgres::shared_cluster;
    use super::suite::{Client, start};

    /// Two servers on one fresh database, and that database's name.
    async fn two_servers() -> (MailboxHandle, MailboxHandle, String) {
        two_servers_with(MailboxConfig::default()).await
    }

    /// Two servers with `config` on one fresh database, and that database's name.
    async fn two_servers_with(config: MailboxConfig) -> (MailboxHandle, MailboxHandle, String) {
        let url = shared_cluster().fresh_database();
        let dbname = url.rsplit('/').next().expect("a database name").to_owned();
        let config = || MailboxConfig {
            database: Database::Postgres(url.clone()),
            ..config.clone()
        };
        (start(config()).await, start(config()).await, dbname)
    }

    /// Requests PostgreSQL cannot store (an app id with a NUL character, which its text
    /// cannot hold; an app id too long for an index entry) are each answered `server
    /// database error`, and only they: the requests batched with them are served.
    #[tokio::test]
    async fn a_request_postgres_cannot_store_is_refused_alone() {
        let (one, _two, _) = two_servers().await;
        let url = one.url();
        // 8000 characters that do not compress: too long for an index entry (2704 bytes).
        let mut x: u32 = 0x9e37_79b9;
        let long: String = (0..8000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                char::from(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
                        [(x % 64) as usize],
                )
            })
            .collect();
        let mut bad = Vec::new();
        for (i, app) in ["bad\u{0}app", long.as_str()]
            .iter()
            .cycle()
            .take(10)
            .enumerate()
        {
            let (mut c, _) = Client::connect(&url).await;
            c.send(json!({"type": "bind", "appid": app, "side": format!("bad{i}")}))
                .await;
            c.expect_ack().await;
            bad.push(c);
        }
        let mut good = Vec::new();
        for i in 0..10 {
            good.push(Client::bound(&url, &format!("good{i}")).await);
        }
        let allocate = json!({"type": "allocate"});
        let bad_answers = futures_util::future::join_all(bad.iter_mut().map(|c| {
            let allocate = allocate.clone();
            async move {
                c.send(allocate).await;
                c.expect_ack().await;
                c.next().await
            }
        }));
        let good_answers = futures_util::future::join_all(good.iter_mut().map(|c| c.allocate()));
        let (bad_answers, good_answers) = tokio::join!(bad_answers, good_answers);
        for e in bad_answers {
            assert_eq!(e["type"], "error", "{e}");
            assert_eq!(e["error"], "server database error", "{e}");
        }
        let numbers: BTreeSet<String> = good_answers.into_iter().collect();
        assert_eq!(numbers.len(), 10, "{numbers:?}");
        // The refused clients' connections still work.
        for c in &mut bad {
            c.send(json!({"type": "ping", "ping": 1})).await;
            c.expect_ack().await;
            assert_eq!(c.next().await["type"], "pong");
        }
        one.shutdown().await;
    }

    /// Both servers prune (one at a time). A mailbox whose only subscriber is connected to
    /// one server is kept alive by that server, whichever of the two prunes; an abandoned
    /// one is deleted.
    #[tokio::test]
    async fn a_mailbox_subscribed_on_another_process_is_not_pruned() {
        let (one, two, dbname) = two_servers_with(MailboxConfig {
            prune_interval: std::time::Duration::from_millis(50),
            channel_expiry: std::time::Duration::from_millis(300),
            ..MailboxConfig::default()
        })
        .await;
        let mut kept = Client::bound(&two.url(), "k").await;
        let kept_np = kept.allocate().await;
        let kept_mb = kept.claim_ok(&kept_np).await;
        kept.open(&kept_mb).await;
        let mut gone = Client::bound(&one.url(), "g").await;
        let gone_np = gone.allocate().await;
        gone.claim_ok(&gone_np).await;
        drop(gone);
        let mut lister = Client::bound(&one.url(), "l").await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while lister.list().await.contains(&gone_np) {
            assert!(tokio::time::Instant::now() < deadline, "never pruned");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Many expiry periods later, with both servers pruning all along.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert!(lister.list().await.contains(&kept_np));
        assert_eq!(
            sql(&dbname, "SELECT COUNT(*) FROM mailboxes"),
            "1",
            "only the subscribed mailbox is left"
        );
        one.shutdown().await;
        two.shutdown().await;
    }

    fn sql(dbname: &str, query: &str) -> String {
        shared_cluster().psql(dbname, query)
    }

    /// 60 clients allocate at once, half through each server: 60 different nameplates,
    /// 1 to 60. Three are released; three more allocations, again through both servers,
    /// get exactly those three back (the smallest free numbers).
    #[tokio::test]
    async fn allocation_across_processes_is_unique_and_smallest_first() {
        let (one, two, _) = two_servers().await;
        let urls = [one.url(), two.url()];
        let mut clients = Vec::new();
        for i in 0..60 {
            clients.push(Client::bound(&urls[i % 2], &format!("side{i}")).await);
        }
        let names = futures_util::future::join_all(clients.iter_mut().map(|c| c.allocate())).await;
        let numbers: BTreeSet<u32> = names.iter().map(|n| n.parse().expect("numeric")).collect();
        assert_eq!(numbers, (1..=60).collect::<BTreeSet<u32>>(), "{names:?}");
        for freed in ["5", "17", "42"] {
            let i = names.iter().position(|n| n == freed).expect("allocated");
            clients[i].release(freed).await;
        }
        let mut more = Vec::new();
        for i in 0..3 {
            more.push(Client::bound(&urls[i % 2], &format!("more{i}")).await);
        }
        let again = futures_util::future::join_all(more.iter_mut().map(|c| c.allocate())).await;
        let again: BTreeSet<&str> = again.iter().map(String::as_str).collect();
        assert_eq!(again, BTreeSet::from(["5", "17", "42"]));
        one.shutdown().await;
        two.shutdown().await;
    }

    /// Sides on different servers: each message (small, and too large to travel inside a
    /// notification) reaches both sides once, in order, and is in PostgreSQL's table.
    #[tokio::test]
    async fn messages_cross_between_processes() {
        let (one, two, dbname) = two_servers().await;
        let mut a = Client::bound(&one.url(), "a").await;
        let mut b = Client::bound(&two.url(), "b").await;
        let nameplate = a.allocate().await;
        let mailbox = a.claim_ok(&nameplate).await;
        assert_eq!(b.claim_ok(&nameplate).await, mailbox);
        a.open(&mailbox).await;
        b.open(&mailbox).await;
        let large = "x".repeat(20_000);
        for (i, body) in ["aa", large.as_str(), "bb"].into_iter().enumerate() {
            let phase = i.to_string();
            let (sender, other) = if i % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            sender.add(&phase, body, &format!("id{i}")).await;
            for side in [sender, other] {
                let m = side.expect_message().await;
                assert_eq!(
                    (m["phase"].as_str(), m["body"].as_str()),
                    (Some(&*phase), Some(body))
                );
            }
        }
        assert_eq!(sql(&dbname, "SELECT COUNT(*) FROM messages"), "3");
        // Nothing more arrives: a ping's pong comes next on both.
        for c in [&mut a, &mut b] {
            c.send(json!({"type": "ping", "ping": 9})).await;
            c.expect_ack().await;
            assert_eq!(c.next().await["type"], "pong");
        }
        one.shutdown().await;
        two.shutdown().await;
    }

    /// Every connection the servers have to PostgreSQL is cut (pg_terminate_backend): they
    /// reconnect, the listening one too, and messages added afterwards (and while the
    /// listener was away) still reach the subscribers on the other server.
    #[tokio::test]
    async fn servers_reconnect_after_their_database_connections_are_cut() {
        let (one, two, dbname) = two_servers().await;
        let mut a = Client::bound(&one.url(), "a").await;
        let mut b = Client::bound(&two.url(), "b").await;
        let nameplate = a.allocate().await;
        let mailbox = a.claim_ok(&nameplate).await;
        b.claim_ok(&nameplate).await;
        a.open(&mailbox).await;
        b.open(&mailbox).await;
        for round in 0..3 {
            let cut = sql(
                &dbname,
                &format!(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = '{dbname}' AND pid <> pg_backend_pid()"
                ),
            );
            assert!(cut.parse::<u32>().expect("a count") >= 4, "{cut}");
            let phase = format!("after-cut-{round}");
            b.add(&phase, "cd", "x").await;
            assert_eq!(b.expect_message().await["phase"], phase.as_str());
            assert_eq!(a.expect_message().await["phase"], phase.as_str());
        }
        one.shutdown().await;
        two.shutdown().await;
    }
}
