//! *Order*: holds the peer's messages that arrive before the key exists.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::proto::wire::MailboxMessage;

/// At most this many peer messages are held while the key does not exist yet. An honest
/// peer sends a handful (version, then its first phases) before it sees our key; a hostile
/// server or a nameplate squatter could otherwise grow the queue without limit.
pub const MAX_QUEUED_PEER_MESSAGES: usize = 1024;
/// At most this many bytes of peer message bodies are held while the key does not exist.
pub const MAX_QUEUED_PEER_BYTES: usize = 32 * 1024 * 1024;

/// States as in the reference's `_order.py`, which waits for the peer's `pake`; here the
/// wait lasts until the key exists, which also covers a `pake` that came before the code.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// `S0_no_pake`: non-`pake` messages are queued (bounded).
    NoKey {
        queue: Vec<MailboxMessage>,
        bytes: usize,
    },
    /// `S1_yes_pake`: messages pass straight through.
    YesKey,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Order {
    state: State,
}

impl Order {
    pub(super) fn new() -> Order {
        Order {
            state: State::NoKey {
                queue: Vec::new(),
                bytes: 0,
            },
        }
    }

    /// A peer message other than `pake`: `Ok(Some)` to pass on now, `Ok(None)` if queued,
    /// `Err` if the queue overflowed (a hostile server or a third party in the mailbox).
    pub(super) fn got_non_pake(
        &mut self,
        m: MailboxMessage,
    ) -> Result<Option<MailboxMessage>, Error> {
        let State::NoKey { queue, bytes } = &mut self.state else {
            return Ok(Some(m));
        };
        *bytes += m.body.0.len() + m.phase.len();
        queue.push(m);
        if queue.len() > MAX_QUEUED_PEER_MESSAGES || *bytes > MAX_QUEUED_PEER_BYTES {
            self.state = State::NoKey {
                queue: Vec::new(),
                bytes: 0,
            };
            return Err(Error::Protocol(format!(
                "the mailbox holds more than {MAX_QUEUED_PEER_MESSAGES} messages or {} MiB \
                 for us before the key exists: a hostile server or a third party in the \
                 mailbox",
                MAX_QUEUED_PEER_BYTES >> 20
            )));
        }
        Ok(None)
    }

    /// How many messages are held, and the queue's capacity (for tests of the bound).
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        match &self.state {
            State::NoKey { queue, .. } => (queue.len(), queue.capacity()),
            State::YesKey => (0, 0),
        }
    }

    /// The key exists: returns the queued messages, in arrival order.
    pub(super) fn got_key(&mut self) -> Vec<MailboxMessage> {
        match std::mem::replace(&mut self.state, State::YesKey) {
            State::NoKey { queue, .. } => queue,
            State::YesKey => Vec::new(),
        }
    }
}

impl Order {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::NoKey { .. } => "S0_no_pake",
            State::YesKey => "S1_yes_pake",
        }
    }
}
