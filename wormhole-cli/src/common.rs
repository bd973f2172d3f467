//! What both subcommands use: where to meet the peer ([`Server`]), running an exchange
//! and closing the wormhole ([`run_and_close`]), and a notice for slow steps
//! ([`with_notice`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use wormhole_core::proxy::Socks5;
use wormhole_core::tor::{Found, Tor, TorOptions};

use crate::args::TorArgs;
use wormhole_core::trace::{StateTrace, TraceSink};
use wormhole_core::{Options, Wormhole, transfer};

use crate::display::terminal_safe;
use crate::failure::Failure;
use crate::timing::Timing;

/// Where to meet the peer: the global options every subcommand uses.
#[derive(Debug, Clone)]
pub struct Server {
    /// Mailbox server URL.
    pub relay_url: String,
    /// Application id.
    pub appid: String,
    /// Transit relay, `tcp:HOST:PORT`.
    pub transit_helper: String,
    /// `--dump-timing`.
    pub timing: Arc<Timing>,
    /// `--socks5`.
    pub proxy: Option<Socks5>,
    /// `--tor` (found or launched before the command runs).
    pub tor: Option<Arc<Tor>>,
}

/// Find or launch a tor for `--tor`, `--launch-tor` and `--tor-control-port`, saying so on
/// stderr in the reference's words.
pub async fn find_tor(args: &TorArgs) -> Result<Arc<Tor>, Failure> {
    let opts = TorOptions {
        control: args.tor_control_port.clone(),
        launch: args.launch_tor,
        onion: args.tor_onion,
        launch_config: std::env::var("WORMHOLE_TOR_LAUNCH_CONFIG")
            .map(|c| c.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
        ..TorOptions::default()
    };
    if opts.launch {
        eprintln!(" launching a new Tor process, this may take a while..");
    }
    let tor = tokio::task::spawn_blocking(move || Tor::connect(&opts))
        .await
        .map_err(|e| Failure::Other(e.to_string()))??;
    match tor.found() {
        Found::ControlPort(c) => eprintln!(" using Tor via control port at {c}"),
        Found::DefaultControlPort => eprintln!(" using Tor via default control port"),
        Found::SocksOnly => eprintln!(" unable to find default Tor control port, using SOCKS"),
        Found::Launched => {}
    }
    Ok(Arc::new(tor))
}

impl Server {
    /// Create a wormhole on this server; it starts connecting at once. It tells the peer
    /// that it can resume interrupted file transfers (a peer of ours then does).
    pub fn create(&self) -> Result<Wormhole, Failure> {
        self.create_traced(None, "")
    }

    /// [`Server::create`], tracing the state machines named in `debug_state`
    /// (`--debug-state`) on stdout, each line prefixed with `client.` like the reference.
    pub fn create_traced(
        &self,
        debug_state: Option<&str>,
        client: &str,
    ) -> Result<Wormhole, Failure> {
        let mut options = Options {
            proxy: self.proxy.clone(),
            tor: self.tor.clone(),
            ..Options::default()
        };
        transfer::advertise_resume(&mut options.app_versions);
        if let Some(machines) = debug_state {
            let client = client.to_owned();
            let sink: TraceSink = Arc::new(move |line| println!("{client}.{line}"));
            options.state_trace = Some(StateTrace::new(machines, sink)?);
        }
        Ok(Wormhole::create(&self.appid, &self.relay_url, options)?)
    }

    /// Print the server's message of the day, if any, like the reference.
    pub fn show_welcome(&self, welcome: &Map<String, Value>) {
        if let Some(motd) = welcome.get("motd").and_then(Value::as_str) {
            // The operator's lines, each indented; nothing in them may drive the terminal.
            let lines: Vec<String> = motd.lines().map(terminal_safe).collect();
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
pub async fn run_and_close<T, F>(w: &Wormhole, exchange: F) -> Result<T, Failure>
where
    F: Future<Output = Result<T, Failure>>,
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
