//! `wormhole`: send and receive text, files and directories through a Magic Wormhole.
//!
//! Driven like the reference Python CLI (magic-wormhole 0.24):
//!
//! ```text
//! wormhole [--relay-url URL] [--transit-helper tcp:HOST:PORT] [--appid ID] send [--text TEXT | FILE | DIR]
//!          [--code CODE] [--code-length N] [--verify] [--no-listen] [--hide-progress] [--no-qr]
//!          [--ignore-unsendable-files]
//! wormhole [--relay-url URL] [--transit-helper tcp:HOST:PORT] [--appid ID] receive [--only-text]
//!          [--accept-file] [-o FILE|DIR] [--verify] [--no-listen] [--hide-progress] [CODE]
//! ```
//!
//! Progress goes to stderr, the received text to stdout. Every failure prints one
//! `ERROR: ` line on stderr and exits with status 1.

mod failure;
mod files;
mod input;
mod qr;
mod receive;
mod send;

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use wormhole_core::{Options, PUBLIC_RELAY_URL, TRANSFER_APPID, Wormhole};

use crate::failure::Failure;

/// The reference CLI's default transit relay.
const DEFAULT_TRANSIT_HELPER: &str = "tcp:transit.magic-wormhole.io:4001";

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "wormhole",
    version,
    about = "Create a Magic Wormhole and communicate through it."
)]
struct Cli {
    /// Mailbox (rendezvous) server to use.
    #[arg(long, value_name = "URL", env = "WORMHOLE_RELAY_URL", default_value = PUBLIC_RELAY_URL)]
    relay_url: String,
    /// Transit relay to use.
    #[arg(long, value_name = "tcp:HOST:PORT", env = "WORMHOLE_TRANSIT_HELPER", default_value = DEFAULT_TRANSIT_HELPER)]
    transit_helper: String,
    /// Application id to use.
    #[arg(long, value_name = "APPID", default_value = TRANSFER_APPID)]
    appid: String,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send a text message, file, or directory.
    #[command(visible_alias = "tx")]
    Send(SendArgs),
    /// Receive a text message, file, or directory (from `wormhole send`).
    #[command(visible_alias = "rx", alias = "recv", alias = "recieve")]
    Receive(ReceiveArgs),
}

/// Arguments of `wormhole send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Text message to send ("-" reads it from stdin).
    #[arg(long, value_name = "MESSAGE")]
    pub text: Option<String>,
    /// Human-generated code phrase (default: allocate one).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Number of words in an allocated code.
    #[arg(short = 'c', long, value_name = "NUMWORDS", default_value_t = 2)]
    pub code_length: usize,
    /// Display the verification string and wait for approval.
    #[arg(short = 'v', long)]
    pub verify: bool,
    /// Don't show the QR code of `wormhole-transfer:CODE`.
    #[arg(long, overrides_with = "qr")]
    pub no_qr: bool,
    /// Show the QR code of `wormhole-transfer:CODE` (default).
    #[arg(long, overrides_with = "no_qr")]
    pub qr: bool,
    /// Suppress progress-bar display.
    #[arg(long)]
    pub hide_progress: bool,
    /// (debug) Don't open a listening socket for Transit.
    #[arg(long, overrides_with = "listen")]
    pub no_listen: bool,
    /// Open a listening socket for Transit (default).
    #[arg(long, overrides_with = "no_listen")]
    pub listen: bool,
    /// Don't raise an error if a file can't be read.
    #[arg(long)]
    pub ignore_unsendable_files: bool,
    /// The file or directory to send.
    #[arg(value_name = "WHAT")]
    pub what: Option<String>,
}

/// Arguments of `wormhole receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Refuse file transfers, only accept text transfers.
    #[arg(short = 't', long)]
    pub only_text: bool,
    /// Accept a file transfer without asking for confirmation.
    #[arg(long, env = "WORMHOLE_ACCEPT_FILE")]
    pub accept_file: bool,
    /// The file or directory to create, overriding the name suggested by the sender. If
    /// the directory exists already, the incoming transfer is put inside it.
    #[arg(short = 'o', long, value_name = "FILENAME|DIRNAME")]
    pub output_file: Option<String>,
    /// (debug) Don't open a listening socket for Transit.
    #[arg(long, overrides_with = "listen")]
    pub no_listen: bool,
    /// Open a listening socket for Transit (default).
    #[arg(long, overrides_with = "no_listen")]
    pub listen: bool,
    /// Display the verification string.
    #[arg(short = 'v', long)]
    pub verify: bool,
    /// Suppress progress-bar display.
    #[arg(long)]
    pub hide_progress: bool,
    /// The code from the sender; asked for interactively when omitted.
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
}

/// Where to meet the peer: the global options every subcommand uses.
#[derive(Debug, Clone)]
pub struct Server {
    /// Mailbox server URL.
    pub relay_url: String,
    /// Application id.
    pub appid: String,
    /// Transit relay, `tcp:HOST:PORT`.
    pub transit_helper: String,
}

impl Server {
    /// Create a wormhole on this server; it starts connecting at once.
    pub fn create(&self) -> Result<Wormhole, Failure> {
        Ok(Wormhole::create(
            &self.appid,
            &self.relay_url,
            Options::default(),
        )?)
    }

    /// Print the server's message of the day, if any, like the reference.
    pub fn show_welcome(&self, welcome: &Map<String, Value>) {
        if let Some(motd) = welcome.get("motd").and_then(Value::as_str) {
            // The operator's lines, each indented; nothing in them may drive the terminal.
            let lines: Vec<String> = motd.lines().map(receive::terminal_safe).collect();
            eprintln!(
                "Server (at {}) says:\n {}",
                self.relay_url,
                lines.join("\n ")
            );
        }
    }
}

/// Run `exchange` on `w` and then close `w`, giving up on both at Ctrl-C.
///
/// The exchange's error wins over a closing error; after a successful exchange a closing
/// error is ignored (the peer has what it needed).
pub async fn run_and_close<F>(w: &Wormhole, exchange: F) -> Result<(), Failure>
where
    F: Future<Output = Result<(), Failure>>,
{
    let run = async {
        let outcome = exchange.await;
        let _ = w.close().await;
        outcome
    };
    tokio::select! {
        outcome = run => outcome,
        _ = tokio::signal::ctrl_c() => {
            w.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), w.close()).await;
            Err(Failure::Interrupted)
        }
    }
}

/// Await `fut`; if it takes longer than a second, print `notice` on stderr meanwhile.
pub async fn with_notice<T>(fut: impl Future<Output = T>, notice: &str) -> T {
    tokio::pin!(fut);
    match tokio::time::timeout(Duration::from_secs(1), &mut fut).await {
        Ok(v) => v,
        Err(_) => {
            eprintln!("{notice}");
            fut.await
        }
    }
}

fn main() {
    let cli = Cli::parse();
    // Diagnostics (ours and the library's) only when asked for: RUST_LOG=debug, =trace, …
    // No log line carries the code, a key or a message (tests/tests/secrets_not_logged.rs).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let server = Server {
        relay_url: cli.relay_url,
        appid: cli.appid,
        transit_helper: cli.transit_helper,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Send(args) => send::run(&server, args).await,
            Command::Receive(args) => receive::run(&server, args).await,
        }
    });
    let status = match result {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("ERROR: {failure}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // Don't wait for a thread still blocked reading the terminal (after Ctrl-C).
    runtime.shutdown_background();
    std::process::exit(status);
}
