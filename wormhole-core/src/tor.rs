//! Tor: hide this machine's address by making every connection (the mailbox and Transit)
//! through a Tor SOCKS port. [`Tor::connect`] finds a running tor the way the reference
//! does, or launches one; the result goes into [`crate::Options::tor`].
//!
//! Finding a tor ([`TorOptions`]):
//! - `control` given (the CLI's `--tor-control-port`): that control port;
//! - otherwise the reference's order: `unix:/var/run/tor/control`, `tcp:127.0.0.1:9051`,
//!   `tcp:127.0.0.1:9151`, then, with no control port, SOCKS only on 127.0.0.1:9050 and
//!   9150;
//! - `launch` (`--launch-tor`): a private `tor` process on automatic ports, in a temporary
//!   data directory, stopped when the last [`Tor`] handle is dropped (and, through
//!   `__OwningControllerProcess`, when this process dies).
//!
//! On a control port the client reads `PROTOCOLINFO`, authenticates (no auth, the cookie
//! file, or the password given), and asks for the SOCKS listener (`GETINFO
//! net/listeners/socks`).
//!
//! In Tor mode ([`crate::transit::TransitConfig::tor`]) Transit behaves as the reference:
//! no listener and no direct hints of our own; the peer's `direct-tcp-v1` and `tor-tcp-v1`
//! hints, and the relays, are dialled through Tor; numeric hints that are IPv6 or not public
//! IPv4 are dropped, never dialled. With a control port, a mailbox URL whose host is such an
//! address is refused (`'127.0.0.1' isn't going to work over Tor`), as the reference does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::proxy::Socks5;

/// How to find (or start) a tor.
#[derive(Debug, Clone, Default)]
pub struct TorOptions {
    /// The control port: `tcp:HOST:PORT`, `unix:PATH` or `HOST:PORT` (the CLI's
    /// `--tor-control-port`). `None`: the reference's default places.
    pub control: Option<String>,
    /// The control port's password (`HashedControlPassword`), if it wants one.
    pub password: Option<String>,
    /// Start a private tor instead (`--launch-tor`).
    pub launch: bool,
    /// Extra torrc lines for a launched tor (for example a private test network's
    /// `DirAuthority` lines).
    pub launch_config: Vec<String>,
    /// How long a launched tor may take to bootstrap (default 120 s when zero).
    pub launch_timeout: Duration,
    /// Publish an ephemeral onion service for each Transit (`ADD_ONION`, needs the control
    /// port) and send its `tor-tcp-v1` hint, so that two Tor-mode peers can connect without
    /// a relay (the CLI's `--tor-onion`; not something the reference does).
    pub onion: bool,
}

/// A tor to connect through. Cheap to share in an `Arc`; a launched tor stops when the
/// last handle is dropped.
#[derive(Debug)]
pub struct Tor {
    socks: Socks5,
    controlled: bool,
    found: Found,
    /// The control port and its password, to publish onion services.
    control: Option<(Endpoint, Option<String>)>,
    onion: bool,
    /// A tor we started (taken by [`Tor::stop`]).
    launched: std::sync::Mutex<Option<Launched>>,
}

/// How a [`Tor`] was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Started by [`Tor::connect`] (`launch`).
    Launched,
    /// Through the control port given.
    ControlPort(String),
    /// Through one of the default control ports.
    DefaultControlPort,
    /// No control port: only a SOCKS port.
    SocksOnly,
}

impl Tor {
    /// Find or launch a tor as `opts` says. Blocking (control-port I/O, and for a launch
    /// the bootstrap wait): call it from a blocking context or `spawn_blocking`.
    pub fn connect(opts: &TorOptions) -> Result<Tor> {
        let mut tor = Self::find(opts)?;
        if opts.onion && tor.control.is_none() {
            return Err(tor_err(
                "publishing an onion service needs a control port, and none was found",
            ));
        }
        tor.onion = opts.onion;
        Ok(tor)
    }

    fn find(opts: &TorOptions) -> Result<Tor> {
        if opts.launch {
            return launch(opts);
        }
        let password = opts.password.clone();
        if let Some(c) = &opts.control {
            let endpoint = Endpoint::parse(c)?;
            let mut ctl = Control::open(&endpoint)?;
            ctl.authenticate(opts.password.as_deref())?;
            return Ok(Tor {
                socks: ctl.socks_listener()?,
                controlled: true,
                found: Found::ControlPort(c.clone()),
                control: Some((endpoint, password)),
                onion: false,
                launched: std::sync::Mutex::new(None),
            });
        }
        let mut failures = Vec::new();
        for c in [
            "unix:/var/run/tor/control",
            "tcp:127.0.0.1:9051",
            "tcp:127.0.0.1:9151",
        ] {
            let found = Endpoint::parse(c).and_then(|e| {
                let mut ctl = Control::open(&e)?;
                ctl.authenticate(opts.password.as_deref())?;
                Ok((ctl.socks_listener()?, e))
            });
            match found {
                Ok((socks, endpoint)) => {
                    return Ok(Tor {
                        socks,
                        controlled: true,
                        found: Found::DefaultControlPort,
                        control: Some((endpoint, password)),
                        onion: false,
                        launched: std::sync::Mutex::new(None),
                    });
                }
                Err(e) => failures.push(format!("{c}: {e}")),
            }
        }
        for port in [9050u16, 9150] {
            let addr = (Ipv4Addr::LOCALHOST, port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
                return Ok(Tor {
                    socks: Socks5 {
                        server: format!("127.0.0.1:{port}"),
                        auth: None,
                    },
                    controlled: false,
                    found: Found::SocksOnly,
                    control: None,
                    onion: false,
                    launched: std::sync::Mutex::new(None),
                });
            }
        }
        Err(Error::InvalidArgument(format!(
            "no Tor found: no control port ({}) and no SOCKS port on 127.0.0.1:9050 or 9150",
            failures.join("; ")
        )))
    }

    /// A tor already listening for SOCKS at `server` (`HOST:PORT`), used without a control
    /// port (the reference's SOCKS-only mode).
    pub fn socks_only(server: &str) -> Result<Tor> {
        Ok(Tor {
            socks: Socks5::parse(server)?,
            controlled: false,
            found: Found::SocksOnly,
            control: None,
            onion: false,
            launched: std::sync::Mutex::new(None),
        })
    }

    /// Whether Transit publishes an onion service through this tor
    /// ([`TorOptions::onion`]).
    pub fn publishes_onions(&self) -> bool {
        self.onion
    }

    /// Publish an ephemeral onion service whose port `port` leads to 127.0.0.1:`port`.
    /// It exists as long as the returned [`Onion`] (its control connection) does.
    /// Blocking.
    pub(crate) fn add_onion(&self, port: u16) -> Result<Onion> {
        let (endpoint, password) = self
            .control
            .as_ref()
            .ok_or_else(|| tor_err("no control port to publish an onion service"))?;
        let mut ctl = Control::open(endpoint)?;
        ctl.authenticate(password.as_deref())?;
        ctl.command("SETEVENTS HS_DESC")?;
        let reply = ctl.command(&format!(
            "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port={port},127.0.0.1:{port}"
        ))?;
        let valid = |id: &&str| {
            id.len() == 56
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        };
        let id = reply
            .iter()
            .find_map(|l| l.strip_prefix("ServiceID="))
            .filter(valid)
            .ok_or_else(|| tor_err("ADD_ONION gave no valid service id"))?
            .to_owned();
        // Advertise it only once its descriptor is uploaded, and give the directories a
        // moment: a peer (the reference) that dials it only once must find it.
        ctl.wait_for_upload(&id, Instant::now() + ONION_PUBLISH_TIMEOUT)?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Onion {
            host: format!("{id}.onion"),
            port,
            _control: ctl,
        })
    }

    /// How it was found.
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// Stop a tor that [`Tor::connect`] launched, and remove its data directory, now,
    /// whoever still holds this `Tor` (their connections through it fail from then on).
    /// An application about to exit calls it; otherwise that happens when the last handle
    /// is dropped. Does nothing for a tor that was found rather than launched.
    pub fn stop(&self) {
        let launched = self
            .launched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(launched);
    }

    /// The SOCKS proxy every connection goes through.
    pub fn socks(&self) -> &Socks5 {
        &self.socks
    }

    /// Whether it was found through a control port (or launched).
    pub fn controlled(&self) -> bool {
        self.controlled
    }

    /// With a control port, refuse a mailbox URL whose host is an address Tor would not
    /// carry, with the reference's message.
    pub(crate) fn check_mailbox_url(&self, url: &str) -> Result<()> {
        if !self.controlled {
            return Ok(());
        }
        let uri: tokio_tungstenite::tungstenite::http::Uri = url
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("invalid relay URL: {e}")))?;
        let bare = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() && !allows(bare) {
            return Err(Error::InvalidArgument(format!(
                "'{bare}' isn't going to work over Tor"
            )));
        }
        Ok(())
    }
}

/// Whether a hint's host may be dialled through Tor: any name, and public IPv4 addresses;
/// never IPv6 literals, nor private, loopback, link-local, shared, documentation,
/// multicast or unspecified IPv4 (the reference drops those hints).
pub fn allows(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Err(_) => !host.is_empty(),
        Ok(IpAddr::V6(_)) => false,
        Ok(IpAddr::V4(ip)) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || ip.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
    }
}

/// An ephemeral onion service published by [`Tor::add_onion`]: removed by tor when this
/// (its control connection) is dropped.
pub struct Onion {
    /// `<id>.onion`.
    pub host: String,
    /// The virtual port (the same as the local one).
    pub port: u16,
    _control: Control,
}

impl std::fmt::Debug for Onion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Onion")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A control-port address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl Endpoint {
    fn parse(s: &str) -> Result<Endpoint> {
        if let Some(p) = s.strip_prefix("unix:") {
            let p = p.strip_prefix("path=").unwrap_or(p);
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        let rest = s.strip_prefix("tcp:").unwrap_or(s);
        // `tcp:HOST:PORT` or `tcp:host=HOST:port=PORT`.
        let rest = rest.replace("host=", "").replace("port=", "");
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(Endpoint::Tcp(rest))
            }
            _ => Err(Error::InvalidArgument(format!(
                "bad Tor control port {s:?}: expected tcp:HOST:PORT or unix:PATH"
            ))),
        }
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A control-port connection (tor's control protocol, text lines).
struct Control {
    reader: BufReader<Box<dyn Stream>>,
    /// Event lines (`650`) read while waiting for a reply.
    events: Vec<String>,
}

const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long publishing an onion service may take.
const ONION_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

fn tor_err(what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("Tor control port: {what}"))
}

impl Control {
    fn open(e: &Endpoint) -> Result<Control> {
        let stream: Box<dyn Stream> = match e {
            Endpoint::Tcp(addr) => {
                let addrs: Vec<std::net::SocketAddr> =
                    std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
                        .map_err(tor_err)?
                        .collect();
                let first = addrs.first().ok_or_else(|| tor_err("no address"))?;
                let s = TcpStream::connect_timeout(first, CONTROL_TIMEOUT).map_err(tor_err)?;
                s.set_read_timeout(Some(CONTROL_TIMEOUT)).map_err(tor_err)?;
                Box::new(s)
            }
            #[cfg(unix)]
            Endpoint::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p).map_err(tor_err)?;
                s.set_read_timeout(Some(CONTROL_TIMEOUT)).map_err(tor_err)?;
                Box::new(s)
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => return Err(tor_err("unix sockets are not supported here")),
        };
        Ok(Control {
            reader: BufReader::new(stream),
            events: Vec::new(),
        })
    }

    /// Send one command; return the reply's lines (without the status code and
    /// separator) if it is `250`, else the error.
    fn command(&mut self, line: &str) -> Result<Vec<String>> {
        let w = self.reader.get_mut();
        w.write_all(line.as_bytes()).map_err(tor_err)?;
        w.write_all(b"\r\n").map_err(tor_err)?;
        w.flush().map_err(tor_err)?;
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = (&mut self.reader)
                .take(64 * 1024)
                .read_line(&mut l)
                .map_err(tor_err)?;
            if n == 0 {
                return Err(tor_err("tor closed the connection"));
            }
            let l = l.trim_end_matches(['\r', '\n']);
            if l.len() < 4 {
                return Err(tor_err(format!("malformed reply {l:?}")));
            }
            let (code, sep, text) = (&l[..3], &l[3..4], &l[4..]);
            if code == "650" {
                // An asynchronous event (see `wait_for_upload`), not part of the reply.
                self.events.push(text.to_owned());
                continue;
            }
            if code != "250" {
                return Err(tor_err(format!("{code} {text}")));
            }
            lines.push(text.to_owned());
            match sep {
                " " => return Ok(lines),
                "-" => {}
                // A data reply ("250+"): its lines until ".".
                "+" => loop {
                    let mut d = String::new();
                    if (&mut self.reader)
                        .take(64 * 1024)
                        .read_line(&mut d)
                        .map_err(tor_err)?
                        == 0
                    {
                        return Err(tor_err("tor closed the connection"));
                    }
                    if d.trim_end_matches(['\r', '\n']) == "." {
                        break;
                    }
                },
                _ => return Err(tor_err(format!("malformed reply {l:?}"))),
            }
            if lines.len() > 1000 {
                return Err(tor_err("reply too long"));
            }
        }
    }

    /// `PROTOCOLINFO`, then `AUTHENTICATE` with what it offers: nothing, the cookie file,
    /// or `password`.
    fn authenticate(&mut self, password: Option<&str>) -> Result<()> {
        let info = self.command("PROTOCOLINFO 1")?;
        let auth = info
            .iter()
            .find_map(|l| l.strip_prefix("AUTH "))
            .ok_or_else(|| tor_err("PROTOCOLINFO has no AUTH line"))?;
        let methods: Vec<&str> = auth
            .split(' ')
            .find_map(|f| f.strip_prefix("METHODS="))
            .unwrap_or("")
            .split(',')
            .collect();
        let cookie_file = auth
            .split_once("COOKIEFILE=")
            .map(|(_, rest)| unquote(rest));
        let line = if methods.contains(&"NULL") {
            "AUTHENTICATE".to_owned()
        } else if let (Some(p), true) = (password, methods.contains(&"HASHEDPASSWORD")) {
            format!("AUTHENTICATE {}", quote(p))
        } else if let (Some(f), true) = (&cookie_file, methods.contains(&"COOKIE")) {
            // The path comes from the control port: read a bounded amount, never a whole
            // file (or device) it names.
            let mut cookie = Vec::with_capacity(33);
            std::fs::File::open(f)
                .and_then(|file| file.take(33).read_to_end(&mut cookie))
                .map_err(|e| tor_err(format!("cannot read the cookie file {f}: {e}")))?;
            if cookie.len() != 32 {
                return Err(tor_err(format!("the cookie file {f} is not 32 bytes")));
            }
            format!("AUTHENTICATE {}", hex::encode(cookie))
        } else if methods.contains(&"HASHEDPASSWORD") {
            return Err(tor_err("it wants a password"));
        } else {
            return Err(tor_err(format!(
                "no usable authentication method in {auth}"
            )));
        };
        self.command(&line).map(drop)
    }

    /// The first SOCKS listener (`GETINFO net/listeners/socks`), else the configured
    /// `SocksPort` (`GETCONF`, what the reference reads; a tor whose network is disabled
    /// lists no listeners).
    fn socks_listener(&mut self) -> Result<Socks5> {
        let reply = self.command("GETINFO net/listeners/socks")?;
        let value = reply
            .iter()
            .find_map(|l| l.strip_prefix("net/listeners/socks="))
            .unwrap_or("");
        let mut first = value.split(' ').map(unquote).find(|a| !a.is_empty());
        if first.is_none() {
            let conf = self.command("GETCONF SocksPort")?;
            first = conf
                .iter()
                .filter_map(|l| l.strip_prefix("SocksPort="))
                .map(|v| unquote(v.trim()))
                .find(|v| !v.is_empty() && v != "0" && !v.starts_with("auto"))
                .map(|v| {
                    if v.bytes().all(|b| b.is_ascii_digit()) {
                        format!("127.0.0.1:{v}")
                    } else {
                        v
                    }
                });
        }
        let addr = first.ok_or_else(|| tor_err("tor has no SOCKS port"))?;
        if addr.starts_with("unix:") {
            return Err(tor_err(format!("its SOCKS port {addr} is not a TCP port")));
        }
        Socks5::parse(&addr)
    }

    /// Wait (until `deadline`) for an `HS_DESC UPLOADED` event of service `id` (after
    /// `SETEVENTS HS_DESC`).
    fn wait_for_upload(&mut self, id: &str, deadline: Instant) -> Result<()> {
        let uploaded = |e: &str| {
            let mut f = e.split(' ');
            f.next() == Some("HS_DESC") && f.next() == Some("UPLOADED") && f.next() == Some(id)
        };
        loop {
            if self.events.iter().any(|e| uploaded(e)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(tor_err("the onion service was not published in time"));
            }
            let mut l = String::new();
            match (&mut self.reader).take(64 * 1024).read_line(&mut l) {
                Ok(0) => return Err(tor_err("tor closed the connection")),
                Ok(_) => {
                    if let Some(e) = l.trim_end_matches(['\r', '\n']).strip_prefix("650 ") {
                        self.events.push(e.to_owned());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(tor_err(e)),
            }
            if self.events.len() > 1000 {
                self.events.drain(..500);
            }
        }
    }

    /// `GETINFO status/bootstrap-phase`: its progress in percent.
    fn bootstrap_progress(&mut self) -> Result<u32> {
        let reply = self.command("GETINFO status/bootstrap-phase")?;
        Ok(reply
            .iter()
            .flat_map(|l| l.split(' '))
            .find_map(|f| f.strip_prefix("PROGRESS="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0))
    }
}

/// A control-protocol quoted string (`"…"` with `\` escapes), or the text up to a space.
fn unquote(s: &str) -> String {
    let Some(rest) = s.strip_prefix('"') else {
        return s.split(' ').next().unwrap_or("").to_owned();
    };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A tor this process started: killed and its data directory removed on drop. It also
/// owns a control connection that sent `TAKEOWNERSHIP`, so tor exits as soon as this
/// process does, however it ends (a `kill -9` or `exit` runs no destructor).
struct Launched {
    child: std::process::Child,
    dir: PathBuf,
    owner: Option<std::sync::Mutex<Control>>,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("pid", &self.child.id())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.owner = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn launch(opts: &TorOptions) -> Result<Tor> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!("cannot launch tor: {what}: {e}"))
    };
    let dir = std::env::temp_dir().join(format!(
        "wormhole-tor-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    std::fs::create_dir(&dir).map_err(|e| failed("data directory", &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let control_file = dir.join("control-port");
    let mut torrc = vec![
        format!("DataDirectory {}", dir.join("data").display()),
        "SocksPort 127.0.0.1:auto".to_owned(),
        "ControlPort 127.0.0.1:auto".to_owned(),
        format!("ControlPortWriteToFile {}", control_file.display()),
        "CookieAuthentication 1".to_owned(),
        format!("__OwningControllerProcess {}", std::process::id()),
        "Log notice file /dev/null".to_owned(),
    ];
    torrc.extend(opts.launch_config.iter().cloned());
    let rc = dir.join("torrc");
    std::fs::write(&rc, torrc.join("\n") + "\n").map_err(|e| failed("torrc", &e))?;
    let child = std::process::Command::new("tor")
        .arg("-f")
        .arg(&rc)
        .arg("--ignore-missing-torrc")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(failed("cannot run `tor`", &e));
        }
    };
    let mut launched = Launched {
        child,
        dir,
        owner: None,
    };
    let limit = if opts.launch_timeout.is_zero() {
        Duration::from_secs(120)
    } else {
        opts.launch_timeout
    };
    let deadline = Instant::now() + limit;
    let endpoint = loop {
        if let Ok(text) = std::fs::read_to_string(&control_file) {
            // "PORT=127.0.0.1:PORT"
            if let Some(addr) = text.trim().strip_prefix("PORT=") {
                break Endpoint::Tcp(addr.to_owned());
            }
        }
        if let Ok(Some(status)) = launched.child.try_wait() {
            return Err(failed("tor exited", &status));
        }
        if Instant::now() > deadline {
            return Err(failed("no control port", &"timed out"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut ctl = Control::open(&endpoint)?;
    ctl.authenticate(None)?;
    ctl.command("TAKEOWNERSHIP")?;
    while ctl.bootstrap_progress()? < 100 {
        if Instant::now() > deadline {
            return Err(failed("bootstrap", &"timed out"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let socks = ctl.socks_listener()?;
    launched.owner = Some(std::sync::Mutex::new(ctl));
    Ok(Tor {
        socks,
        controlled: true,
        found: Found::Launched,
        control: Some((endpoint, None)),
        onion: false,
        launched: std::sync::Mutex::new(Some(launched)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_hosts_go_through_tor() {
        for ok in [
            "example.org",
            "xyz.onion",
            "8.8.8.8",
            "198.51.99.1",
            "100.128.0.1",
        ] {
            assert!(allows(ok), "{ok}");
        }
        for no in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.2",
            "172.16.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.2.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
            "2606:4700::1",
            "",
        ] {
            assert!(!allows(no), "{no}");
        }
    }

    #[test]
    fn mailbox_urls_in_tor_mode() {
        let t = Tor {
            socks: Socks5::parse("127.0.0.1:9050").unwrap(),
            controlled: true,
            found: Found::DefaultControlPort,
            control: None,
            onion: false,
            launched: std::sync::Mutex::new(None),
        };
        for ok in [
            "ws://relay.magic-wormhole.io:4000/v1",
            "wss://example.org/v1",
            "ws://8.8.8.8:4000/v1",
            "ws://abc.onion/v1",
        ] {
            t.check_mailbox_url(ok).unwrap();
        }
        for (bad, host) in [
            ("ws://127.0.0.1:4000/v1", "127.0.0.1"),
            ("ws://[::1]:4000/v1", "::1"),
            ("ws://10.1.2.3/v1", "10.1.2.3"),
        ] {
            let e = t.check_mailbox_url(bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("'{host}' isn't going to work over Tor")),
                "{e}"
            );
        }
        // SOCKS-only mode has no such check.
        Tor::socks_only("127.0.0.1:9050")
            .unwrap()
            .check_mailbox_url("ws://127.0.0.1:4000/v1")
            .unwrap();
    }

    #[test]
    fn control_port_endpoints_and_strings() {
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:9051").unwrap(),
            Endpoint::Tcp("127.0.0.1:9051".into())
        );
        assert_eq!(
            Endpoint::parse("tcp:host=localhost:port=9151").unwrap(),
            Endpoint::Tcp("localhost:9151".into())
        );
        assert_eq!(
            Endpoint::parse("unix:/run/tor/control").unwrap(),
            Endpoint::Unix("/run/tor/control".into())
        );
        for bad in ["tcp:", "9051", "tcp:host:0", "tcp:host:x"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(unquote(r#""/a \"b\"\\c" rest"#), r#"/a "b"\c"#);
        assert_eq!(unquote("plain rest"), "plain");
        assert_eq!(quote(r#"p"w\d"#), r#""p\"w\\d""#);
    }

    /// A scripted control port: replies to each command in turn and records them.
    fn fake_control(replies: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut seen = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                seen.push(line.trim_end().to_owned());
                w.write_all(reply.as_bytes()).unwrap();
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn cookie_authentication_and_the_socks_listener() {
        let dir = std::env::temp_dir().join(format!("wh-tor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cookie = dir.join("control_auth_cookie");
        std::fs::write(&cookie, [0xab; 32]).unwrap();
        let info: &'static str = Box::leak(
            format!(
                "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"{}\"\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n",
                cookie.display()
            )
            .into_boxed_str(),
        );
        let (addr, h) = fake_control(vec![
            info,
            "250 OK\r\n",
            "250-net/listeners/socks=\"127.0.0.1:39050\" \"unix:/x\"\r\n250 OK\r\n",
        ]);
        let tor = Tor::connect(&TorOptions {
            control: Some(format!("tcp:{addr}")),
            ..TorOptions::default()
        })
        .unwrap();
        assert_eq!(tor.socks().server, "127.0.0.1:39050");
        assert!(tor.controlled());
        let seen = h.join().unwrap();
        assert_eq!(seen[0], "PROTOCOLINFO 1");
        assert_eq!(seen[1], format!("AUTHENTICATE {}", "ab".repeat(32)));
        assert_eq!(seen[2], "GETINFO net/listeners/socks");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cookie_file_that_is_not_a_cookie_is_refused() {
        let (addr, _h) = fake_control(vec![
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE COOKIEFILE=\"/dev/zero\"\r\n250 OK\r\n",
        ]);
        let e = Tor::connect(&TorOptions {
            control: Some(addr),
            ..TorOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("is not 32 bytes"), "{e}");
    }

    #[test]
    fn password_and_refusals() {
        let (addr, h) = fake_control(vec![
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n",
            "515 Authentication failed: Password did not match\r\n",
        ]);
        let e = Tor::connect(&TorOptions {
            control: Some(addr),
            password: Some("s\"ecret".into()),
            ..TorOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("515 Authentication failed"), "{e}");
        assert_eq!(h.join().unwrap()[1], r#"AUTHENTICATE "s\"ecret""#);

        let (addr, _h) = fake_control(vec![
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n",
        ]);
        let e = Tor::connect(&TorOptions {
            control: Some(addr),
            ..TorOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("wants a password"), "{e}");

        let (addr, _h) = fake_control(vec![
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n",
            "250 OK\r\n",
            "250-net/listeners/socks=\r\n250 OK\r\n",
            "250 SocksPort=0\r\n",
        ]);
        let e = Tor::connect(&TorOptions {
            control: Some(addr),
            ..TorOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("no SOCKS port"), "{e}");
    }

    #[test]
    fn an_onion_is_advertised_once_uploaded() {
        let id = "a".repeat(56);
        let added: &'static str =
            Box::leak(format!("250-ServiceID={id}\r\n250 OK\r\n").into_boxed_str());
        let event: &'static str = Box::leak(
            format!("650 HS_DESC UPLOAD {id} UNKNOWN x\r\n650 HS_DESC UPLOADED {id} UNKNOWN x\r\n")
                .into_boxed_str(),
        );
        let (addr, h) = fake_control(vec![
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n",
            "250 OK\r\n",
            "250 OK\r\n",
            // The reply to ADD_ONION, then the events (sent without a command).
            Box::leak(format!("{added}{event}").into_boxed_str()),
        ]);
        let tor = Tor {
            socks: Socks5::parse("127.0.0.1:9050").unwrap(),
            controlled: true,
            found: Found::DefaultControlPort,
            control: Some((Endpoint::Tcp(addr), None)),
            onion: true,
            launched: std::sync::Mutex::new(None),
        };
        let onion = tor.add_onion(4321).unwrap();
        assert_eq!(onion.host, format!("{id}.onion"));
        assert_eq!(onion.port, 4321);
        let seen = h.join().unwrap();
        assert_eq!(seen[2], "SETEVENTS HS_DESC");
        assert_eq!(
            seen[3],
            "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=4321,127.0.0.1:4321"
        );
    }
}
