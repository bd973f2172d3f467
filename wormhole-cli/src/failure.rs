//! Why a command failed, phrased as the single `ERROR: ` line the user sees.
//!
//! The wording follows the reference CLI. No message quotes the code, the key or the
//! text; operator-supplied texts (welcome errors) are flattened onto one line.

use std::fmt;

use wormhole_core::Error;

/// A failed command: printed as `ERROR: {self}`, exit status 1.
#[derive(Debug)]
pub enum Failure {
    /// The wormhole (or the code given to it) failed.
    Wormhole(Error),
    /// The user pressed Ctrl-C.
    Interrupted,
    /// Anything else, already phrased for the user.
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Wormhole(e)
    }
}

impl From<wormhole_core::ssh::NotAPublicKey> for Failure {
    fn from(e: wormhole_core::ssh::NotAPublicKey) -> Self {
        Failure::Other(e.to_string())
    }
}

impl Failure {
    /// Whether the mailbox server was never reached, so no code was consumed.
    pub fn never_connected(&self) -> bool {
        matches!(self, Failure::Wormhole(Error::ServerConnection { .. }))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::Wormhole(Error::WrongPassword) => {
                "Key confirmation failed. Either you or your \
                correspondent typed the code wrong, or a would-be man-in-the-middle attacker \
                guessed incorrectly."
                    .to_owned()
            }
            Failure::Wormhole(Error::InvalidCode(_)) => "The code must be a numeric nameplate, a \
                dash, and words, with no spaces (like 7-purple-sausages)."
                .to_owned(),
            Failure::Wormhole(Error::Welcome(said)) => format!(
                "The relay server told us to signal an error, probably because our version is \
                 too old to possibly work. The server said: {said}"
            ),
            Failure::Wormhole(Error::ServerConnection { url, reason }) => format!(
                "We had a problem connecting to the relay server (relay URL was {url}): {reason}"
            ),
            // The reference prints a TransferError's text as is.
            Failure::Wormhole(Error::Transfer(msg)) => msg.clone(),
            Failure::Wormhole(e) => e.to_string(),
            Failure::Interrupted => "interrupted".to_owned(),
            Failure::Other(msg) => msg.clone(),
        };
        f.write_str(&one_line(&text))
    }
}

/// Replace line breaks and other control characters (which could also drive the
/// terminal) with spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let welcome = Failure::Wormhole(Error::Welcome("go away\nnow".into()));
        assert_eq!(
            welcome.to_string(),
            "The relay server told us to signal an error, probably because our version is too \
             old to possibly work. The server said: go away now"
        );
        let conn = Failure::Wormhole(Error::ServerConnection {
            url: "ws://127.0.0.1:1/v1".into(),
            reason: "refused".into(),
        });
        assert!(conn.never_connected());
        assert_eq!(
            conn.to_string(),
            "We had a problem connecting to the relay server (relay URL was ws://127.0.0.1:1/v1): \
             refused"
        );
        assert!(
            Failure::Wormhole(Error::WrongPassword)
                .to_string()
                .starts_with("Key confirmation failed. Either you")
        );
        assert_eq!(Failure::Interrupted.to_string(), "interrupted");
    }
}
