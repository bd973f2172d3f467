//! `wormhole`: send and receive text, files and directories through a Magic Wormhole.
//!
//! Driven like the reference Python CLI (magic-wormhole 0.24), plus `send-many` and
//! `completion` from wormhole-rs:
//!
//! ```text
//! wormhole [--relay-url URL] [--transit-helper tcp:HOST:PORT] [--appid ID] [--dump-timing F]
//!          [--socks5 [USER:PASSWORD@]HOST:PORT]
//!   send [--text TEXT | PATH...] [--code CODE | -0] [--code-length N] [--verify]
//!        [--no-listen] [--hide-progress] [--qr/--no-qr] [--ignore-unsendable-files]
//!        [--debug-state [MACHINES]] [TOR]
//!   receive [--only-text] [--accept-file] [-o FILE|DIR] [--verify] [--no-listen]
//!        [--hide-progress] [--no-resume] [--debug-state [MACHINES]] [TOR]
//!        [CODE | --allocate [--code-length N] | -0]
//!   (TOR: --tor, --launch-tor, --tor-control-port ENDPOINT, --tor-onion; also on
//!   send-many and ssh)
//!   send-many [-n TRIES] [--timeout MINUTES] [--code CODE] PATH...
//!   ssh invite [-c N] [-u USER] | ssh accept CODE [-F KEYFILE] [-y]
//!   forward [-L NAME[:PORT][:bind=ADDR][:remote-connect=PORT]]...
//!        [-R NAME[:PORT][:listen=PORT][:address=ADDR]]... [-c N] [--no-listen] [TOR] [CODE]
//!        (TOR without --tor-onion)
//!   completion SHELL
//! ```
//!
//! Progress goes to stderr, the received text to stdout. Every failure prints one
//! `ERROR: ` line on stderr and exits with status 1; a usage error exits with status 2.

mod args;
mod common;
mod display;
mod failure;
mod files;
mod forward;
mod input;
mod qr;
mod receive;
mod send;
mod send_many;
mod ssh;
mod timing;

use std::io::Write;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use wormhole_core::TRANSFER_APPID;

use crate::args::{Cli, Command, SshCommand};
use crate::common::Server;
use crate::failure::Failure;
use crate::timing::Timing;

fn main() {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "wormhole",
            &mut std::io::stdout(),
        );
        return;
    }
    // Diagnostics (ours and the library's) only when asked for: RUST_LOG=debug, =trace, …
    // No log line carries the code, a key or a message (tests/tests/secrets_not_logged.rs).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let default_appid = match cli.command {
        Command::Ssh(_) => ssh::APPID,
        Command::Forward(_) => forward::APPID,
        _ => TRANSFER_APPID,
    };
    let tor_args = match &cli.command {
        Command::Send(a) => Some(&a.tor),
        Command::Receive(a) => Some(&a.tor),
        Command::SendMany(a) => Some(&a.tor),
        Command::Ssh(SshCommand::Invite { tor, .. } | SshCommand::Accept { tor, .. }) => Some(tor),
        Command::Forward(a) => Some(&a.tor),
        Command::Completion { .. } => None,
    }
    .filter(|t| t.wanted())
    .cloned();
    let mut server = Server {
        relay_url: cli.relay_url,
        appid: cli.appid.unwrap_or_else(|| default_appid.to_owned()),
        transit_helper: cli.transit_helper,
        timing: Arc::new(Timing::new(cli.dump_timing)),
        proxy: cli.socks5,
        tor: None,
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
        if let Command::Forward(a) = &cli.command
            && a.tor.tor_onion
        {
            // Dilation through Tor only dials out (the two sides meet at the relay): an
            // onion service would go unused.
            return Err(Failure::Other(
                "--tor-onion is for transfers: forward through Tor uses the relay \
                 (--transit-helper)"
                    .into(),
            ));
        }
        if let Some(t) = tor_args {
            server.tor = Some(common::find_tor(&t).await?);
        }
        let server = &server;
        match &cli.command {
            Command::Send(args) => send::run(server, args).await,
            Command::Receive(args) => receive::run(server, args).await,
            Command::SendMany(args) => send_many::run(server, args).await,
            Command::Ssh(cmd) => ssh::run(server, cmd).await,
            Command::Forward(args) => forward::run(server, args).await,
            Command::Completion { .. } => Ok(()),
        }
    });
    let timing = server.timing.write();
    let status = match (result, timing) {
        (Ok(()), Ok(())) => 0,
        (Err(failure), _) => {
            eprintln!("ERROR: {failure}");
            1
        }
        (Ok(()), Err(e)) => {
            eprintln!("ERROR: cannot write the timing data: {e}");
            1
        }
    };
    // A tor we launched stops now, and its directory goes (the tor alone would also stop
    // when this process exits: it took ownership through its control connection).
    if let Some(tor) = &server.tor {
        tor.stop();
    }
    let _ = std::io::stdout().flush();
    // Don't wait for a thread still blocked reading the terminal (after Ctrl-C).
    runtime.shutdown_background();
    std::process::exit(status);
}
