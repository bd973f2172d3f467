//! *Mailbox*: opens the mailbox on every connection, posts our messages until their echo
//! is seen, passes each peer message on once, and closes with a mood.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::hex_serde::hex_pairs;
use super::rendezvous::Link;
use crate::proto::wire::{ClientMessage, HexBytes, MailboxMessage, Mood};

/// States as in the reference's `_mailbox.py` (its `A`/`B` halves are [`Link`]'s). The
/// reference's `S1` (known, never opened) does not occur: the mailbox is only learned from
/// `claimed`, on a live connection, and is opened at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0`: no mailbox yet; posted messages wait.
    Unknown,
    /// `S2`: opened on this connection (and re-opened on each new one, since `open` is
    /// also the subscription).
    Open(String),
    /// `S3`: `close` sent on this connection, or to be sent on the next.
    Closing { mailbox: String, mood: Mood },
    /// `S4`: closed, or closed before it was known.
    Closed,
}

/// What a server `message` means here.
#[derive(Debug, PartialEq)]
pub(super) enum Received {
    /// A peer message seen for the first time.
    Theirs(MailboxMessage),
    /// An echo of ours, a replay after reconnection, or a message after `close`.
    Nothing,
    /// No mailbox is open.
    Unexpected,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mailbox {
    state: State,
    /// Our messages whose echo has not been seen, in posting order.
    #[serde(with = "hex_pairs")]
    unechoed: Vec<(String, Vec<u8>)>,
    /// Peer phases already passed on.
    processed: HashSet<String>,
}

impl Mailbox {
    pub(super) fn new() -> Mailbox {
        Mailbox {
            state: State::Unknown,
            unechoed: Vec::new(),
            processed: HashSet::new(),
        }
    }

    /// The nameplate machine learned the mailbox.
    pub(super) fn got_mailbox(&mut self, link: &mut Link, mailbox: String) {
        if self.state == State::Unknown {
            self.state = State::Open(mailbox);
            self.connected(link);
        }
    }

    pub(super) fn connected(&mut self, link: &mut Link) {
        match &self.state {
            State::Open(mailbox) => {
                link.send(ClientMessage::Open {
                    mailbox: mailbox.clone(),
                });
                for (phase, body) in &self.unechoed {
                    link.send(ClientMessage::Add {
                        phase: phase.clone(),
                        body: HexBytes(body.clone()),
                    });
                }
            }
            State::Closing { mailbox, mood } => link.send(ClientMessage::Close {
                mailbox: Some(mailbox.clone()),
                mood: Some(mood.clone()),
            }),
            State::Unknown | State::Closed => {}
        }
    }

    /// Post a message: now if the mailbox is open, else when it is. Dropped once closing.
    pub(super) fn add(&mut self, link: &mut Link, phase: String, body: Vec<u8>) {
        match self.state {
            State::Unknown => {}
            State::Open(_) => link.send(ClientMessage::Add {
                phase: phase.clone(),
                body: HexBytes(body.clone()),
            }),
            State::Closing { .. } | State::Closed => return,
        }
        self.unechoed.push((phase, body));
    }

    pub(super) fn rx_message(&mut self, m: MailboxMessage, our_side: &str) -> Received {
        match self.state {
            State::Unknown => return Received::Unexpected,
            State::Closing { .. } | State::Closed => return Received::Nothing,
            State::Open(_) => {}
        }
        if m.side == our_side {
            if let Some(i) = self.unechoed.iter().position(|(p, _)| *p == m.phase) {
                self.unechoed.remove(i);
            }
            Received::Nothing
        } else if self.processed.insert(m.phase.clone()) {
            Received::Theirs(m)
        } else {
            Received::Nothing
        }
    }

    /// The session is closing: close the mailbox with `mood` if it was ever opened.
    pub(super) fn close(&mut self, link: &mut Link, mood: &Mood) {
        match &self.state {
            State::Unknown => self.state = State::Closed,
            State::Open(mailbox) => {
                self.state = State::Closing {
                    mailbox: mailbox.clone(),
                    mood: mood.clone(),
                };
                self.connected(link);
            }
            State::Closing { .. } | State::Closed => {}
        }
    }

    /// A `closed` reply; false if no close was outstanding.
    pub(super) fn rx_closed(&mut self) -> bool {
        if let State::Closing { .. } = self.state {
            self.state = State::Closed;
            true
        } else {
            false
        }
    }

    /// Whether nothing more is owed to the server (the terminator waits for this).
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Closed
    }

    /// The state's name, for error messages.
    pub(super) fn describe(&self) -> &'static str {
        match self.state {
            State::Unknown => "no mailbox is open",
            State::Open(_) => "the mailbox is open",
            State::Closing { .. } => "the mailbox is closing",
            State::Closed => "the mailbox is closed",
        }
    }
}

impl Mailbox {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::Unknown => "S0",
            State::Open(_) => "S2",
            State::Closing { .. } => "S3",
            State::Closed => "S4",
        }
    }
}
