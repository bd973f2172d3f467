//! The service specifications of `wormhole forward`, in fowl's syntax:
//!
//! - `-L/--local/--client NAME[:LISTEN-PORT][:bind=ADDR][:remote-connect=PORT]`: we may
//!   listen here for service NAME when the peer asks, and forward each connection to the
//!   peer (the server runs on the peer's side).
//! - `-R/--remote/--service NAME[:CONNECT-PORT][:listen=PORT][:address=ADDR]`: the server
//!   for NAME runs here; we ask the peer to listen for it and connect each forwarded
//!   connection to ADDR:CONNECT-PORT.
//!
//! An empty or missing port means "any": a free port is chosen. Addresses are IP literals
//! or `localhost`; the default is 127.0.0.1. IPv6 literals are not accepted (they contain
//! the separator), as in fowl.

use std::net::{IpAddr, Ipv4Addr};

/// `-L NAME[:LISTEN-PORT][:bind=ADDR][:remote-connect=PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSpec {
    /// The service name (fowl's `unique-name`).
    pub name: String,
    /// The port to listen on (`None`: a free one).
    pub listen_port: Option<u16>,
    /// The address to listen on.
    pub bind: IpAddr,
    /// The port the peer must connect to for this service (sent back as `desired-port`).
    pub remote_connect: Option<u16>,
}

/// `-R NAME[:CONNECT-PORT][:listen=PORT][:address=ADDR]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The service name (fowl's `unique-name`).
    pub name: String,
    /// The port our server listens on (`None`: the peer's `desired-port`, else a free one).
    pub connect_port: Option<u16>,
    /// The port we ask the peer to listen on (`None`: its choice).
    pub listen: Option<u16>,
    /// The address our server listens on.
    pub address: IpAddr,
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A port from the command line: 1 to 65535, or empty for "any".
fn port(text: &str) -> Result<Option<u16>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(format!(
            "\"{text}\": ports must be an integer from 1 to 65535"
        )),
    }
}

fn address(text: &str) -> Result<IpAddr, String> {
    if text == "localhost" {
        return Ok(LOCALHOST);
    }
    text.parse::<IpAddr>()
        .map_err(|_| format!("\"{text}\" is not an IP address (or localhost)"))
}

/// A spec taken apart: the name, the first port and the `key=value` options.
type Parts<'a> = (String, Option<u16>, Vec<(&'a str, &'a str)>);

/// The name, the first port and the `key=value` options of a spec.
fn split(spec: &str) -> Result<Parts<'_>, String> {
    if spec.contains('[') || spec.contains(']') {
        return Err("IPv6 addresses are not supported here".into());
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 4 {
        return Err(format!("too many colons: {} > 3", parts.len() - 1));
    }
    let name = parts[0];
    if name.is_empty() {
        return Err("the service name is missing".into());
    }
    let first = port(parts.get(1).copied().unwrap_or(""))?;
    let mut options = Vec::new();
    for opt in parts.iter().skip(2) {
        let Some((k, v)) = opt.split_once('=') else {
            return Err(format!("\"{opt}\": keyword arguments need an = symbol"));
        };
        options.push((k, v));
    }
    Ok((name.to_owned(), first, options))
}

impl LocalSpec {
    /// Parse `NAME[:LISTEN-PORT][:bind=ADDR][:remote-connect=PORT]`.
    pub fn parse(spec: &str) -> Result<LocalSpec, String> {
        let (name, listen_port, options) = split(spec)?;
        let mut out = LocalSpec {
            name,
            listen_port,
            bind: LOCALHOST,
            remote_connect: None,
        };
        for (k, v) in options {
            match k {
                "bind" => out.bind = address(v)?,
                "remote-connect" => out.remote_connect = port(v)?,
                _ => return Err("--local accepts bind= or remote-connect= only".into()),
            }
        }
        Ok(out)
    }
}

impl RemoteSpec {
    /// Parse `NAME[:CONNECT-PORT][:listen=PORT][:address=ADDR]`.
    pub fn parse(spec: &str) -> Result<RemoteSpec, String> {
        let (name, connect_port, options) = split(spec)?;
        let mut out = RemoteSpec {
            name,
            connect_port,
            listen: None,
            address: LOCALHOST,
        };
        for (k, v) in options {
            match k {
                "listen" => out.listen = port(v)?,
                "address" => out.address = address(v)?,
                _ => return Err("--remote accepts listen= or address= only".into()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_specs() {
        assert_eq!(
            LocalSpec::parse("web").unwrap(),
            LocalSpec {
                name: "web".into(),
                listen_port: None,
                bind: LOCALHOST,
                remote_connect: None
            }
        );
        let s = LocalSpec::parse("web:8080:bind=127.0.0.2:remote-connect=9000").unwrap();
        assert_eq!(s.listen_port, Some(8080));
        assert_eq!(s.bind, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(s.remote_connect, Some(9000));
        assert_eq!(
            LocalSpec::parse("web::remote-connect=9000")
                .unwrap()
                .listen_port,
            None
        );
        assert!(LocalSpec::parse("web:0").is_err());
        assert!(LocalSpec::parse("web:65536").is_err());
        assert!(LocalSpec::parse("web:80:listen=1").is_err());
        assert!(LocalSpec::parse("web:80:9000").is_err());
        assert!(LocalSpec::parse(":80").is_err());
        assert!(LocalSpec::parse("a:1:bind=x:remote-connect=2:extra").is_err());
        assert!(LocalSpec::parse("a:1:bind=[::1]").is_err());
    }

    #[test]
    fn remote_specs() {
        let s = RemoteSpec::parse("chat:4000:listen=5000:address=localhost").unwrap();
        assert_eq!(
            s,
            RemoteSpec {
                name: "chat".into(),
                connect_port: Some(4000),
                listen: Some(5000),
                address: LOCALHOST
            }
        );
        assert_eq!(RemoteSpec::parse("chat").unwrap().connect_port, None);
        assert!(RemoteSpec::parse("chat:4000:bind=127.0.0.1").is_err());
        assert!(RemoteSpec::parse("chat:x").is_err());
    }
}
