//! *Nameplate*: claims the nameplate, and releases it once the peer is seen or the session
//! closes.

use serde::{Deserialize, Serialize};

use super::rendezvous::Link;
use crate::proto::wire::ClientMessage;

/// States as in the reference's `_nameplate.py` (its `A`/`B` halves are [`Link`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0`: no nameplate yet.
    KnowNothing,
    /// `S1`: known, and no connection since: never claimed.
    Known(String),
    /// `S2`: `claim` sent on this connection, or to be sent on the next.
    Claiming(String),
    /// `S3`: claimed; the server named the mailbox.
    Claimed(String),
    /// `S4`: `release` sent on this connection, or to be sent on the next.
    Releasing(String),
    /// `S5`: released, or closed without ever being claimed.
    Released,
}

/// What a `claimed` reply means here.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claimed {
    /// The claim succeeded: the mailbox is now known.
    Mailbox,
    /// The reply to a claim we have since released (closing): nothing to do.
    Late,
    /// No claim is outstanding.
    Unexpected,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Nameplate {
    state: State,
}

impl Nameplate {
    pub(super) fn new() -> Nameplate {
        Nameplate {
            state: State::KnowNothing,
        }
    }

    /// The nameplate became known (from the code machine, once).
    pub(super) fn set(&mut self, link: &mut Link, nameplate: String) {
        if self.state != State::KnowNothing {
            return;
        }
        self.state = State::Known(nameplate);
        self.connected(link);
    }

    pub(super) fn connected(&mut self, link: &mut Link) {
        if !link.is_connected() {
            return;
        }
        match &self.state {
            State::Known(n) | State::Claiming(n) => {
                link.send(ClientMessage::Claim {
                    nameplate: n.clone(),
                });
                self.state = State::Claiming(n.clone());
            }
            State::Releasing(n) => link.send(ClientMessage::Release {
                nameplate: Some(n.clone()),
            }),
            State::KnowNothing | State::Claimed(_) | State::Released => {}
        }
    }

    pub(super) fn rx_claimed(&mut self) -> Claimed {
        match &self.state {
            State::Claiming(n) => {
                self.state = State::Claimed(n.clone());
                Claimed::Mailbox
            }
            State::Releasing(_) => Claimed::Late,
            _ => Claimed::Unexpected,
        }
    }

    /// The peer has been seen in the mailbox: the nameplate is no longer needed. Repeated
    /// calls change nothing.
    pub(super) fn release(&mut self, link: &mut Link) {
        if let State::Claimed(n) = &self.state {
            let n = n.clone();
            link.send(ClientMessage::Release {
                nameplate: Some(n.clone()),
            });
            self.state = State::Releasing(n);
        }
    }

    /// A `released` reply; false if no release was outstanding.
    pub(super) fn rx_released(&mut self) -> bool {
        if let State::Releasing(_) = self.state {
            self.state = State::Released;
            true
        } else {
            false
        }
    }

    /// The session is closing: release what may have been claimed. A `release` already
    /// sent on this connection is not sent again (the server allows one per connection).
    pub(super) fn close(&mut self, link: &mut Link) {
        match &self.state {
            State::KnowNothing | State::Known(_) => self.state = State::Released,
            State::Claiming(n) | State::Claimed(n) => {
                let n = n.clone();
                link.send(ClientMessage::Release {
                    nameplate: Some(n.clone()),
                });
                self.state = State::Releasing(n);
            }
            State::Releasing(_) | State::Released => {}
        }
    }

    /// Whether nothing more is owed to the server (the terminator waits for this).
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Released
    }

    /// The state's name, for error messages.
    pub(super) fn describe(&self) -> &'static str {
        match self.state {
            State::KnowNothing => "no nameplate is known",
            State::Known(_) => "the nameplate is not claimed yet",
            State::Claiming(_) => "the nameplate is being claimed",
            State::Claimed(_) => "the nameplate is claimed",
            State::Releasing(_) => "the nameplate is being released",
            State::Released => "the nameplate is released",
        }
    }
}

impl Nameplate {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::KnowNothing => "S0",
            State::Known(_) => "S1",
            State::Claiming(_) => "S2",
            State::Claimed(_) => "S3",
            State::Releasing(_) => "S4",
            State::Released => "S5",
        }
    }
}
