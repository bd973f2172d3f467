//! Outbound connections through a SOCKS5 proxy: the mailbox WebSocket (`ws://` and
//! `wss://`) and every Transit connection use [`Socks5`] when one is set
//! ([`crate::Options::proxy`], [`crate::transit::TransitConfig::proxy`]).
//!
//! Names are resolved by the proxy (SOCKS5 with a domain-name target, what curl calls
//! `--socks5-hostname`), so no DNS lookup of the server, the relay or the peer leaves this
//! machine. Only the proxy's own address is resolved here.

use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

use crate::error::{Error, Result};

/// A SOCKS5 proxy, optionally with a user name and password (RFC 1929).
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5 {
    /// `HOST:PORT` of the proxy.
    pub server: String,
    /// User name and password.
    pub auth: Option<(String, String)>,
}

impl std::fmt::Debug for Socks5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5")
            .field("server", &self.server)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl Socks5 {
    /// Parse `HOST:PORT`, `USER:PASSWORD@HOST:PORT`, or either after `socks5://` or
    /// `socks5h://` (both resolve names at the proxy). IPv6 hosts go in brackets.
    pub fn parse(s: &str) -> Result<Socks5> {
        let bad = |why: &str| Error::InvalidArgument(format!("bad SOCKS5 proxy {s:?}: {why}"));
        let rest = s
            .strip_prefix("socks5h://")
            .or_else(|| s.strip_prefix("socks5://"))
            .unwrap_or(s);
        if rest.contains("://") {
            return Err(bad("only socks5:// and socks5h:// proxies are supported"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, server) = match rest.rsplit_once('@') {
            Some((creds, server)) => {
                let (user, pass) = creds
                    .split_once(':')
                    .ok_or_else(|| bad("credentials must be USER:PASSWORD"))?;
                if user.is_empty() || user.len() > 255 || pass.len() > 255 {
                    return Err(bad("user name and password must be 1-255 bytes"));
                }
                (Some((user.to_owned(), pass.to_owned())), server)
            }
            None => (None, rest),
        };
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("expected HOST:PORT"));
        }
        Ok(Socks5 {
            server: server.to_owned(),
            auth,
        })
    }

    /// Connect to `host:port` through the proxy; the name is resolved by the proxy.
    pub(crate) async fn connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let target = (host, port);
        let r = match &self.auth {
            None => Socks5Stream::connect(self.server.as_str(), target).await,
            Some((user, pass)) => {
                Socks5Stream::connect_with_password(self.server.as_str(), target, user, pass).await
            }
        };
        r.map(Socks5Stream::into_inner)
            .map_err(|e| std::io::Error::other(format!("SOCKS5 proxy {}: {e}", self.server)))
    }
}

/// Connect to `host:port`, through `proxy` when there is one.
pub(crate) async fn connect(
    proxy: Option<&Socks5>,
    host: &str,
    port: u16,
) -> std::io::Result<TcpStream> {
    match proxy {
        Some(p) => p.connect(host, port).await,
        None => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            TcpStream::connect((host, port)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        for (s, server, auth) in [
            ("127.0.0.1:1080", "127.0.0.1:1080", None),
            ("socks5://proxy.example:1080", "proxy.example:1080", None),
            ("socks5h://[::1]:9050/", "[::1]:9050", None),
            ("socks5://u:p@h:1", "h:1", Some(("u", "p"))),
            ("a:b:c@h:2", "h:2", Some(("a", "b:c"))),
        ] {
            let p = Socks5::parse(s).unwrap();
            assert_eq!(p.server, server, "{s}");
            assert_eq!(
                p.auth,
                auth.map(|(u, p): (&str, &str)| (u.to_owned(), p.to_owned())),
                "{s}"
            );
        }
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:0",
            "host:99999",
            "http://h:1",
            "u@h:1",
            ":p@h:1",
            "h :1",
        ] {
            assert!(Socks5::parse(bad).is_err(), "{bad:?}");
        }
        let p = Socks5::parse("user:secret@h:1").unwrap();
        assert!(!format!("{p:?}").contains("secret"));
    }
}
