//! `wormhole-server`: run a Magic Wormhole mailbox server, a transit relay, or both.
//!
//! ```text
//! wormhole-server mailbox --listen HOST:PORT [--db FILE | --db :memory: | --db postgres://…] [--health-listen HOST:PORT] [--motd TEXT] [--signal-error TEXT] [limits…]
//! wormhole-server relay --listen HOST:PORT [--websocket-listen HOST:PORT]
//! wormhole-server all --mailbox-listen HOST:PORT --relay-listen HOST:PORT [mailbox and relay flags…]
//! ```
//!
//! Each server logs one `… ready: …` line on stderr once it accepts connections, and the
//! process exits with status 0 on SIGTERM or SIGINT after shutting the servers down.
//!
//! At start the soft file-descriptor limit is raised to the hard limit: every connection
//! holds a descriptor, and the usual soft limit (1024) is far below the default connection
//! limits (which are then lowered to fit whatever limit there is; see `Limits`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wormhole_server::{
    Database, Limits, MailboxConfig, MailboxHandle, MailboxServer, RelayConfig, RelayHandle,
    RelayServer, serve_health,
};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "wormhole-server",
    version,
    about = "A Magic Wormhole rendezvous (mailbox) server and transit relay."
)]
struct Cli {
    /// Which server(s) to run.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the rendezvous (mailbox) server.
    Mailbox {
        /// Address to listen on (WebSocket, path /v1).
        #[arg(long, value_name = "HOST:PORT", default_value = "[::]:4000")]
        listen: String,
        #[command(flatten)]
        mailbox: MailboxArgs,
    },
    /// Run the transit relay.
    Relay {
        /// Address to listen on for TCP clients.
        #[arg(long, value_name = "HOST:PORT", default_value = "[::]:4001")]
        listen: String,
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Run both in one process.
    All {
        /// Address for the mailbox server.
        #[arg(long, value_name = "HOST:PORT", default_value = "[::]:4000")]
        mailbox_listen: String,
        /// Address for the relay's TCP clients.
        #[arg(long, value_name = "HOST:PORT", default_value = "[::]:4001")]
        relay_listen: String,
        #[command(flatten)]
        mailbox: MailboxArgs,
        #[command(flatten)]
        relay: RelayArgs,
    },
}

/// Mailbox server options.
#[derive(Debug, Args)]
struct MailboxArgs {
    /// Where the channels are kept: an SQLite file (created if missing), `:memory:`, or a
    /// PostgreSQL URL (`postgres://USER@HOST:PORT/DBNAME`), which several server
    /// processes may share behind a TCP load balancer.
    #[arg(long, value_name = "FILE|URL", default_value = "mailbox.sqlite")]
    db: String,
    /// Answer HTTP health checks on this address: `GET /health` is 200 while the server
    /// can serve (its database answers), 503 otherwise. For a load balancer.
    #[arg(long, value_name = "HOST:PORT")]
    health_listen: Option<String>,
    /// Message of the day, shown by clients.
    #[arg(long, value_name = "TEXT")]
    motd: Option<String>,
    /// Make every client fail with this error (e.g. to retire an old server).
    #[arg(long, value_name = "TEXT")]
    signal_error: Option<String>,
    /// Advertise this as the current CLI version in the welcome.
    #[arg(long, value_name = "VERSION")]
    current_cli_version: Option<String>,
    /// Answer `list` with no nameplates (disables code completion for clients).
    #[arg(long)]
    disallow_list: bool,
    /// Largest accepted frame and message, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_message_bytes: Option<usize>,
    /// Most messages stored in one mailbox.
    #[arg(long, value_name = "N")]
    max_messages_per_mailbox: Option<usize>,
    /// Most mailboxes alive at once for one app id.
    #[arg(long, value_name = "N")]
    max_mailboxes_per_app: Option<usize>,
    /// Most bytes of stored messages, all mailboxes together.
    #[arg(long, value_name = "BYTES")]
    max_stored_bytes: Option<u64>,
    /// Most bytes of stored messages added from one client address (IPv6: one /64).
    #[arg(long, value_name = "BYTES")]
    max_stored_bytes_per_ip: Option<u64>,
    /// Largest size of the database file.
    #[arg(long, value_name = "BYTES")]
    max_db_bytes: Option<u64>,
    /// Most simultaneous client connections.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most simultaneous connections from one client address.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Close a connection that sent nothing for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    idle_timeout: Option<u64>,
    /// Close a connection whose client read nothing we wrote for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    write_timeout: Option<u64>,
    /// Delete a nameplate or mailbox unused for this many seconds (default 660, like the
    /// reference).
    #[arg(long, value_name = "SECONDS")]
    channel_expiry: Option<u64>,
    /// Look for expired channels every this many seconds (default 300).
    #[arg(long, value_name = "SECONDS")]
    prune_interval: Option<u64>,
}

/// Transit relay options.
#[derive(Debug, Args)]
struct RelayArgs {
    /// Also accept WebSocket clients (binary frames) on this address.
    #[arg(long, value_name = "HOST:PORT")]
    websocket_listen: Option<String>,
    /// Most simultaneous relay connections.
    #[arg(long, value_name = "N")]
    relay_max_connections: Option<usize>,
    /// Close a relay connection whose partner has not arrived after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    relay_pairing_timeout: Option<u64>,
    /// Close a relayed pair after this many seconds without traffic.
    #[arg(long, value_name = "SECONDS")]
    relay_idle_timeout: Option<u64>,
}

impl MailboxArgs {
    fn config(&self) -> MailboxConfig {
        let database = if self.db == ":memory:" {
            Database::Memory
        } else if is_postgres_url(&self.db) {
            Database::Postgres(self.db.clone())
        } else {
            Database::File(PathBuf::from(&self.db))
        };
        let d = Limits::default();
        let limits = Limits {
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
            max_messages_per_mailbox: self
                .max_messages_per_mailbox
                .unwrap_or(d.max_messages_per_mailbox),
            max_mailboxes_per_app: self
                .max_mailboxes_per_app
                .unwrap_or(d.max_mailboxes_per_app),
            max_stored_bytes: self.max_stored_bytes.unwrap_or(d.max_stored_bytes),
            max_stored_bytes_per_ip: self
                .max_stored_bytes_per_ip
                .unwrap_or(d.max_stored_bytes_per_ip),
            max_database_bytes: self.max_db_bytes.or(d.max_database_bytes),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(d.max_connections_per_ip),
            idle_timeout: self
                .idle_timeout
                .map(Duration::from_secs)
                .unwrap_or(d.idle_timeout),
            write_timeout: self
                .write_timeout
                .map(Duration::from_secs)
                .unwrap_or(d.write_timeout),
        };
        let dc = MailboxConfig::default();
        let secs = |v: Option<u64>, d: Duration| v.map(Duration::from_secs).unwrap_or(d);
        MailboxConfig {
            database,
            motd: self.motd.clone(),
            signal_error: self.signal_error.clone(),
            current_cli_version: self.current_cli_version.clone(),
            allow_list: !self.disallow_list,
            limits,
            channel_expiry: secs(self.channel_expiry, dc.channel_expiry),
            prune_interval: secs(self.prune_interval, dc.prune_interval),
        }
    }
}

impl RelayArgs {
    fn config(&self) -> RelayConfig {
        let d = RelayConfig::default();
        let secs = |v: Option<u64>, d: Duration| v.map(Duration::from_secs).unwrap_or(d);
        RelayConfig {
            max_connections: self.relay_max_connections.unwrap_or(d.max_connections),
            pairing_timeout: secs(self.relay_pairing_timeout, d.pairing_timeout),
            idle_timeout: secs(self.relay_idle_timeout, d.idle_timeout),
            ..d
        }
    }
}

/// Whether `--db` names a PostgreSQL database rather than an SQLite file.
fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// How the log names the database: a PostgreSQL URL without its password.
fn describe_db(db: &str) -> String {
    if db == ":memory:" {
        return "in memory".to_owned();
    }
    if !is_postgres_url(db) {
        return format!("database {db}");
    }
    match db.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(h, p)| match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "PostgreSQL {} database {}",
                hosts.join(","),
                c.get_dbname().unwrap_or("(default)")
            )
        }
        Err(_) => "PostgreSQL".to_owned(),
    }
}

async fn start_mailbox(listen: &str, args: &MailboxArgs) -> Result<MailboxHandle, String> {
    let health = match &args.health_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for health checks on {addr}: {e}"))?,
        ),
        None => None,
    };
    let server = MailboxServer::bind(listen, args.config())
        .await
        .map_err(|e| format!("cannot start the mailbox server on {listen}: {e}"))?;
    let handle = server.spawn();
    eprintln!(
        "wormhole-server: mailbox ready: {} ({})",
        handle.url(),
        describe_db(&args.db)
    );
    if let Some(listener) = health {
        if let Ok(addr) = listener.local_addr() {
            eprintln!("wormhole-server: health checks on http://{addr}/health");
        }
        tokio::spawn(serve_health(listener, handle.health()));
    }
    Ok(handle)
}

async fn start_relay(listen: &str, args: &RelayArgs) -> Result<RelayHandle, String> {
    let server = RelayServer::bind(listen, args.websocket_listen.as_deref(), args.config())
        .await
        .map_err(|e| format!("cannot start the transit relay on {listen}: {e}"))?;
    let handle = server.spawn();
    match handle.websocket_addr() {
        Some(ws) => eprintln!(
            "wormhole-server: relay ready: tcp:{} ws://{ws}",
            handle.local_addr()
        ),
        None => eprintln!("wormhole-server: relay ready: tcp:{}", handle.local_addr()),
    }
    Ok(handle)
}

/// SIGTERM and SIGINT, watched from before the servers start: a supervisor may send
/// SIGTERM as soon as it reads a `ready` line, and a signal that arrived before the watch
/// existed would kill the process (status "signal 15") instead of shutting it down.
struct Termination {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Termination {
    fn watch() -> Result<Termination, String> {
        Ok(Termination {
            term: signal(SignalKind::terminate())
                .map_err(|e| format!("cannot watch SIGTERM: {e}"))?,
            int: signal(SignalKind::interrupt())
                .map_err(|e| format!("cannot watch SIGINT: {e}"))?,
        })
    }

    /// Wait for SIGTERM or SIGINT.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let termination = Termination::watch()?;
    let (mailbox, relay) = match &cli.command {
        Command::Mailbox { listen, mailbox } => (Some(start_mailbox(listen, mailbox).await?), None),
        Command::Relay { listen, relay } => (None, Some(start_relay(listen, relay).await?)),
        Command::All {
            mailbox_listen,
            relay_listen,
            mailbox,
            relay,
        } => {
            let m = start_mailbox(mailbox_listen, mailbox).await?;
            let r = match start_relay(relay_listen, relay).await {
                Ok(r) => r,
                Err(e) => {
                    m.shutdown().await;
                    return Err(e);
                }
            };
            (Some(m), Some(r))
        }
    };
    termination.wait().await;
    eprintln!("wormhole-server: shutting down");
    if let Some(m) = mailbox {
        m.shutdown().await;
    }
    if let Some(r) = relay {
        r.shutdown().await;
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (logging what it did).
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return; // unlimited already
    };
    if limit.maximum.is_some_and(|hard| hard <= soft) {
        return;
    }
    let hard = limit
        .maximum
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!("file-descriptor limit raised from {soft} to {hard}"),
        Err(e) => {
            tracing::warn!("cannot raise the file-descriptor limit from {soft} to {hard}: {e}")
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wormhole-server: ERROR: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormhole-server: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn postgres_urls_are_logged_without_their_password() {
        let d = super::describe_db("postgres://wormhole:secret@127.0.0.1:5544/mailbox");
        assert_eq!(d, "PostgreSQL 127.0.0.1:5544 database mailbox");
        assert_eq!(super::describe_db(":memory:"), "in memory");
        assert_eq!(super::describe_db("x.sqlite"), "database x.sqlite");
        assert!(!super::describe_db("postgresql://u:pw@h/db").contains("pw"));
    }
}
