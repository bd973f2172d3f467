//! `wormhole forward`: forward TCP connections over a dilated wormhole, wire-compatible
//! with fowl 26.8.0 (`fowl`/`fowld`, application id `meejah.ca/wormhole/forward`). The
//! messages are in the library's `forward_wire` (`src/forward/wire.rs`, fuzzed).
//!
//! ```text
//! wormhole [--relay-url URL] [--transit-helper tcp:HOST:PORT] [--appid ID] forward
//!     [-L NAME[:LISTEN-PORT][:bind=ADDR][:remote-connect=PORT]]...
//!     [-R NAME[:CONNECT-PORT][:listen=PORT][:address=ADDR]]...
//!     [-c N] [--no-listen] [CODE]
//! ```
//!
//! Services have names, as in fowl. For each one, the side whose server runs there says
//! `-R NAME[:PORT]` (fowl's `--remote`/`--service`): it asks the peer to listen for NAME,
//! and connects each connection the peer forwards to 127.0.0.1:PORT. The other side says
//! `-L NAME[:PORT]` (fowl's `--local`/`--client`): it allows the peer to ask, listens on
//! 127.0.0.1:PORT when asked, and forwards each connection it accepts there to the peer.
//! A port left out is chosen free and printed. A side asked to listen for a name it did
//! not allow, on a port it did not choose, or to connect for a service it did not ask
//! for, refuses with a reason, which the asking side prints.
//!
//! Without CODE a code is allocated and printed (`Wormhole code is: …` on stderr), as
//! `wormhole send` does. It runs until Ctrl-C (or SIGTERM) or the peer closes. Either end
//! closes gracefully as fowl does: the mailbox message `{"closing": PHASE}`, a short wait
//! for the peer's, then the wormhole's close.
//!
//! Each forwarded TCP connection is one `fowl` subchannel (see [`wormhole_cli::forward_wire`]). Bytes move with
//! backpressure both ways: a record is read from the socket only once the previous one fits
//! the Dilation write window, and a record is taken from the subchannel only once the
//! previous one is written to the socket. The end of a TCP stream (a half-close too)
//! closes the subchannel; the peer's close ends the TCP connection once what arrived
//! before it is written.

mod pump;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use wormhole_core::dilation::handle::{Dilated, DilationEvent, DilationOptions, Subchannel};
use wormhole_core::{Options, Wormhole};

use crate::args::ForwardArgs;
use crate::common::Server;
use crate::display::terminal_safe;
use crate::failure::Failure;
use spec::{LocalSpec, RemoteSpec};
use wormhole_cli::forward_wire::{
    Command, Connected, FrameReader, ListenerResponse, Open, RequestListener, WireError, decode,
    frame,
};

/// fowl's application id (the default of `wormhole forward`).
pub const APPID: &str = "meejah.ca/wormhole/forward";
/// The subprotocol of service requests.
const COMMANDS: &str = "fowl-commands";
/// The subprotocol of forwarded connections.
const CONNECTIONS: &str = "fowl";
/// How long we wait for the peer's `closing` after sending ours.
const CLOSING_WAIT: Duration = Duration::from_secs(3);
/// How long a local connection to a service's server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What both sides' tasks share.
struct Shared {
    dilated: Dilated,
    /// `-L`: the services the peer may ask us to listen for.
    allowed: HashMap<String, LocalSpec>,
    /// Services we listen for now (on the peer's request).
    listening: Mutex<HashSet<String>>,
    /// `-R` services: where the connections the peer forwards go once it listens.
    services: watch::Sender<HashMap<String, Service>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state of one of our `-R` services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// Asked for; the peer's answer has not been read yet.
    Asked,
    /// The peer listens; its connections go here.
    Ready(SocketAddr),
    /// Refused, or withdrawn.
    Gone,
}

/// How the session ended.
enum End {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The peer sent `closing`.
    PeerClosing,
    /// The wormhole failed.
    Failed(Failure),
}

/// Run `wormhole forward`.
pub async fn run(server: &Server, args: &ForwardArgs) -> Result<(), Failure> {
    let mut names = HashSet::new();
    for name in args
        .local
        .iter()
        .map(|s| &s.name)
        .chain(args.remote.iter().map(|s| &s.name))
    {
        if !names.insert(name) {
            return Err(Failure::Other(format!(
                "service \"{name}\" is named twice: each service needs a unique name"
            )));
        }
    }
    let options = Options {
        proxy: server.proxy.clone(),
        tor: server.tor.clone(),
        dilation: true,
        app_versions: json!({"fowl": {"features": ["core-v1"]}}),
        ..Options::default()
    };
    let w = Wormhole::create(&server.appid, &server.relay_url, options)?;
    let dilated = w.dilate(DilationOptions {
        relay: Some(server.transit_helper.clone()),
        no_listen: args.no_listen,
        ..DilationOptions::default()
    })?;
    let commands = dilated.listen(COMMANDS)?;
    let connections = dilated.listen(CONNECTIONS)?;
    let shared = Arc::new(Shared {
        dilated,
        allowed: args
            .local
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect(),
        listening: Mutex::default(),
        services: watch::Sender::new(
            args.remote
                .iter()
                .map(|s| (s.name.clone(), Service::Asked))
                .collect(),
        ),
    });

    // The peer's `closing` (and the end of the wormhole) from its messages.
    let (closing_tx, mut closing_rx) = mpsc::channel::<Result<(), Failure>>(1);
    {
        let w = w.clone();
        tokio::spawn(async move {
            loop {
                match w.get_message().await {
                    Ok(m) => {
                        if is_closing(&m) {
                            let _ = closing_tx.send(Ok(())).await;
                            return;
                        }
                        tracing::debug!("ignoring a message from the peer that is not closing");
                    }
                    Err(e) => {
                        let _ = closing_tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(serve_commands(shared.clone(), commands));
    tasks.spawn(serve_connections(shared.clone(), connections));
    tasks.spawn(report_dilation(shared.clone()));

    let peer_seen = std::cell::Cell::new(false);
    let session = async {
        match &args.code {
            Some(code) => w.set_code(code)?,
            None => {
                w.allocate_code(args.code_length)?;
                eprintln!("Wormhole code is: {}", w.get_code().await?);
            }
        }
        server.show_welcome(&w.get_welcome().await?);
        w.get_verifier().await?;
        peer_seen.set(true);
        eprintln!("Peer connected.");
        for spec in &args.remote {
            tasks.spawn(request_service(shared.clone(), spec.clone()));
        }
        std::future::pending::<Result<(), Failure>>().await
    };
    let end = tokio::select! {
        r = session => match r {
            Err(f) => End::Failed(f),
            Ok(()) => End::Interrupted,
        },
        r = closing_rx.recv() => match r {
            Some(Ok(())) => End::PeerClosing,
            Some(Err(f)) => End::Failed(f),
            None => End::Failed(Failure::Other("the wormhole closed".into())),
        },
        () = interrupted() => End::Interrupted,
    };
    // Stop listening and serving before saying `closing` (fowl does the same).
    tasks.abort_all();
    let peer_seen = peer_seen.get();
    match end {
        End::Failed(f) => {
            w.cancel();
            let _ = tokio::time::timeout(CLOSING_WAIT, w.close()).await;
            Err(f)
        }
        End::PeerClosing => {
            eprintln!("The peer closed the session.");
            send_closing(&w);
            let _ = tokio::time::timeout(CLOSING_WAIT, w.close()).await;
            Ok(())
        }
        End::Interrupted => {
            eprintln!("Closing the session.");
            if peer_seen {
                send_closing(&w);
                tokio::select! {
                    _ = tokio::time::timeout(CLOSING_WAIT, closing_rx.recv()) => {}
                    () = interrupted() => {}
                }
            }
            let _ = tokio::time::timeout(CLOSING_WAIT, w.close()).await;
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Whether a mailbox message is fowl's `{"closing": PHASE}`.
fn is_closing(msg: &[u8]) -> bool {
    serde_json::from_slice::<Value>(msg)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("closing")))
        .unwrap_or(false)
}

/// Tell the peer we are done: `{"closing": PHASE}`, PHASE being the phase number of this
/// message among our application messages (fowl's `_next_tx_phase`). It is our only one.
fn send_closing(w: &Wormhole) {
    let _ = w.send_message(json!({"closing": 0}).to_string());
}

/// Print the first connection to the peer and any failure of Dilation.
async fn report_dilation(shared: Arc<Shared>) {
    let mut connected = false;
    while let Some(ev) = shared.dilated.next_event().await {
        match ev {
            DilationEvent::Connected { path, .. } if !connected => {
                connected = true;
                let how = if path.relay {
                    "through the relay"
                } else {
                    "directly"
                };
                eprintln!("Connected to the peer {how}.");
            }
            DilationEvent::Failed(e) => eprintln!("Dilation failed: {e}"),
            other => tracing::debug!("dilation: {other:?}"),
        }
    }
}

/// `-R`: ask the peer to listen for `spec`'s service, then take its connections to our
/// server while the peer keeps the request's subchannel open (closing it withdraws the
/// service on both sides, as in fowl).
async fn request_service(shared: Arc<Shared>, spec: RemoteSpec) {
    let name = spec.name.clone();
    if let Err(e) = request_service_inner(&shared, spec).await {
        eprintln!("Service \"{name}\": {e}");
    }
    set_service(&shared, &name, Service::Gone);
}

async fn request_service_inner(shared: &Shared, spec: RemoteSpec) -> Result<(), WireError> {
    let failed = |e: wormhole_core::Error| WireError(format!("the subchannel failed: {e}"));
    let mut sub = shared.dilated.connect(COMMANDS).await.map_err(failed)?;
    sub.send(frame(&RequestListener {
        kind: "request-listener",
        unique_name: &spec.name,
        listen_port: spec.listen,
    })?)
    .await
    .map_err(failed)?;
    let mut reader = FrameReader::default();
    let Some(body) = reader.next(&mut sub).await? else {
        return Err(WireError("the peer closed the request unanswered".into()));
    };
    let reply: Command = decode(&body)?;
    if reply.kind != "listener-response" {
        return Err(WireError(format!(
            "unexpected answer \"{}\" from the peer",
            terminal_safe(&reply.kind)
        )));
    }
    if reply.listening != Some(true) {
        let reason = reply.reason.as_deref().unwrap_or("no reason given");
        return Err(WireError(format!(
            "the peer refused to listen: {}",
            terminal_safe(reason)
        )));
    }
    let port = match (spec.connect_port, reply.desired_port) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            let _ = sub.close();
            return Err(WireError(format!(
                "the peer wants connections to go to port {theirs}, but our server is on \
                 port {ours}"
            )));
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => free_port(spec.address)
            .map_err(|e| WireError(format!("cannot find a free port: {e}")))?,
    };
    let addr = SocketAddr::new(spec.address, port);
    set_service(shared, &spec.name, Service::Ready(addr));
    let asked = match spec.listen {
        Some(p) => format!(" on port {p}"),
        None => String::new(),
    };
    eprintln!(
        "Service \"{}\": the peer listens for it{asked}; its connections come to {addr}.",
        spec.name
    );
    // Hold the request open; further messages on it mean nothing.
    while let Ok(Some(_)) = sub.recv().await {}
    eprintln!(
        "Service \"{}\": the peer stopped listening for it.",
        spec.name
    );
    Ok(())
}

fn set_service(shared: &Shared, name: &str, state: Service) {
    shared.services.send_modify(|m| {
        m.insert(name.to_owned(), state);
    });
}

/// A port nothing listens on at `ip` now (bind port 0, read it, let it go), as fowl
/// chooses one for a `--remote` service without a port.
fn free_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// `-L`: answer the peer's `fowl-commands` subchannels.
async fn serve_commands(
    shared: Arc<Shared>,
    mut listener: wormhole_core::dilation::handle::SubchannelListener,
) {
    let mut each = JoinSet::new();
    while let Some(sub) = listener.accept().await {
        each.spawn(serve_requests(shared.clone(), sub));
        // Reap finished ones so the set does not grow.
        while each.try_join_next().is_some() {}
    }
}

/// One `fowl-commands` subchannel: each `request-listener` on it opens a listener, which
/// lives as long as the subchannel (fowl stops listening when it closes).
async fn serve_requests(shared: Arc<Shared>, mut sub: Subchannel) {
    let mut opened: Vec<String> = Vec::new();
    let mut listeners = JoinSet::new();
    let mut reader = FrameReader::default();
    loop {
        let body = match reader.next(&mut sub).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                eprintln!("A request from the peer: {e}");
                break;
            }
        };
        let cmd: Command = match decode(&body) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("A request from the peer: {e}");
                break;
            }
        };
        if cmd.kind != "request-listener" {
            eprintln!(
                "Ignoring an unknown request \"{}\" from the peer.",
                terminal_safe(&cmd.kind)
            );
            continue;
        }
        let name = cmd.unique_name.unwrap_or_default();
        let answer = match open_listener(&shared, &name, cmd.listen_port).await {
            Ok((listener, spec)) => {
                let addr = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                eprintln!(
                    "Service \"{}\": listening on {addr}; connections there go to the peer.",
                    terminal_safe(&name)
                );
                opened.push(name.clone());
                listeners.spawn(accept_local(shared.clone(), name.clone(), listener));
                ListenerResponse {
                    kind: "listener-response",
                    unique_name: &name,
                    listening: true,
                    desired_port: spec.remote_connect,
                    reason: None,
                }
            }
            Err(reason) => {
                eprintln!(
                    "Service \"{}\": refused the peer's request to listen: {}",
                    terminal_safe(&name),
                    terminal_safe(&reason)
                );
                ListenerResponse {
                    kind: "listener-response",
                    unique_name: &name,
                    listening: false,
                    desired_port: None,
                    reason: Some(reason),
                }
            }
        };
        let sent = match frame(&answer) {
            Ok(f) => sub.send(f).await.is_ok(),
            Err(e) => {
                eprintln!("Cannot answer the peer: {e}");
                false
            }
        };
        if !sent {
            break;
        }
    }
    let _ = sub.close();
    listeners.abort_all();
    let mut listening = lock(&shared.listening);
    for name in opened {
        listening.remove(&name);
    }
}

/// The policy check of a `request-listener`, then the listener.
async fn open_listener(
    shared: &Shared,
    name: &str,
    port: Option<u16>,
) -> Result<(TcpListener, LocalSpec), String> {
    let Some(spec) = shared.allowed.get(name) else {
        return Err(format!("No service permitted for name: {name}"));
    };
    let port = match (spec.listen_port, port) {
        (_, Some(0)) => return Err("Port 0 is out of range".into()),
        (Some(ours), Some(theirs)) if ours != theirs => {
            return Err(format!("Desired port {theirs} does not match {ours}"));
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => 0,
    };
    if !lock(&shared.listening).insert(name.to_owned()) {
        return Err(format!("Already listening for {name}"));
    }
    match TcpListener::bind((spec.bind, port)).await {
        Ok(l) => Ok((l, spec.clone())),
        Err(e) => {
            lock(&shared.listening).remove(name);
            Err(format!("Cannot listen on {}:{port}: {e}", spec.bind))
        }
    }
}

/// Accept local connections for a service and forward each to the peer.
async fn accept_local(shared: Arc<Shared>, name: String, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                // Connections outlive the listener (as in fowl); they end with the process.
                tokio::spawn(forward_local(shared.clone(), name.clone(), tcp));
            }
            Err(e) => {
                tracing::debug!("accept on a forward listener: {e}");
                // EMFILE and the like: give the system a moment instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One local connection: open a `fowl` subchannel, wait for the peer's answer, then
/// forward.
async fn forward_local(shared: Arc<Shared>, name: String, tcp: TcpStream) {
    let mut sub = match shared.dilated.connect(CONNECTIONS).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "Service \"{}\": cannot open a subchannel: {e}",
                terminal_safe(&name)
            );
            return;
        }
    };
    match open_remote(&mut sub, &name).await {
        Ok(()) => pump::pump(tcp, sub).await,
        Err(e) => {
            eprintln!("Service \"{}\": {e}", terminal_safe(&name));
            let _ = sub.close();
        }
    }
}

async fn open_remote(sub: &mut Subchannel, name: &str) -> Result<(), WireError> {
    let open = frame(&Open {
        unique_name: name.to_owned(),
        listen_port: None,
    })?;
    sub.send(open)
        .await
        .map_err(|e| WireError(format!("the subchannel failed: {e}")))?;
    let mut reader = FrameReader::default();
    let Some(body) = reader.next(sub).await? else {
        return Err(WireError(
            "the peer closed the connection unanswered".into(),
        ));
    };
    if reader.leftover() > 0 {
        return Err(WireError("the peer sent data with its answer".into()));
    }
    let answer: Connected = decode(&body)?;
    if !answer.connected {
        let reason = answer.reason.as_deref().unwrap_or("no reason given");
        return Err(WireError(format!(
            "the peer refused a connection: {}",
            terminal_safe(reason)
        )));
    }
    Ok(())
}

/// `-R`: the peer's forwarded connections (`fowl` subchannels).
async fn serve_connections(
    shared: Arc<Shared>,
    mut listener: wormhole_core::dilation::handle::SubchannelListener,
) {
    while let Some(sub) = listener.accept().await {
        tokio::spawn(forward_remote(shared.clone(), sub));
    }
}

/// One forwarded connection from the peer: check it, connect to our server, answer,
/// forward.
async fn forward_remote(shared: Arc<Shared>, mut sub: Subchannel) {
    let mut reader = FrameReader::default();
    let open: Result<Open, WireError> = async {
        let body = reader
            .next(&mut sub)
            .await?
            .ok_or_else(|| WireError("closed before its opening message".into()))?;
        if reader.leftover() > 0 {
            return Err(WireError("data before our answer".into()));
        }
        decode(&body)
    }
    .await;
    let open = match open {
        Ok(o) => o,
        Err(e) => {
            eprintln!("A connection from the peer: {e}");
            let _ = refuse(&mut sub, &e.0).await;
            return;
        }
    };
    let name = terminal_safe(&open.unique_name);
    // The peer may forward a connection as soon as it has answered our request, before
    // our request's task has read the answer: wait for that (briefly).
    let mut services = shared.services.subscribe();
    let target = {
        let settled = tokio::time::timeout(
            CONNECT_TIMEOUT,
            services.wait_for(|m| m.get(&open.unique_name) != Some(&Service::Asked)),
        )
        .await;
        match settled {
            Ok(Ok(m)) => match m.get(&open.unique_name) {
                Some(Service::Ready(a)) => Some(*a),
                _ => None,
            },
            _ => None,
        }
    };
    let addr = match (target, open.listen_port) {
        (None, _) => {
            let reason = format!("No service \"{}\"", open.unique_name);
            eprintln!("Service \"{name}\": refused a connection from the peer: not ours");
            let _ = refuse(&mut sub, &reason).await;
            return;
        }
        (Some(a), Some(p)) if p != a.port() => {
            let reason = format!(
                "Remote specified {p} for service {} but we have {} here.",
                open.unique_name,
                a.port()
            );
            eprintln!(
                "Service \"{name}\": refused a connection from the peer: {}",
                terminal_safe(&reason)
            );
            let _ = refuse(&mut sub, &reason).await;
            return;
        }
        (Some(a), _) => a,
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let reason = format!("Connection to {addr} failed: {e}");
            eprintln!("Service \"{name}\": {reason}");
            let _ = refuse(&mut sub, &reason).await;
            return;
        }
        Err(_) => {
            let reason = format!("Connection to {addr} timed out");
            eprintln!("Service \"{name}\": {reason}");
            let _ = refuse(&mut sub, &reason).await;
            return;
        }
    };
    let yes = match frame(&Connected {
        connected: true,
        reason: None,
    }) {
        Ok(f) => f,
        Err(_) => return,
    };
    if sub.send(yes).await.is_err() {
        return;
    }
    pump::pump(tcp, sub).await;
}

/// Answer `{"connected": false, "reason": …}` and close.
async fn refuse(sub: &mut Subchannel, reason: &str) -> Result<(), WireError> {
    // Keep the answer within a frame whatever the reason's length.
    let reason: String = reason.chars().take(1000).collect();
    let no = frame(&Connected {
        connected: false,
        reason: Some(reason),
    })?;
    let sent = sub.send(no).await;
    let _ = sub.close();
    sent.map_err(|e| WireError(e.to_string()))
}
