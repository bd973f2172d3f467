//! The session's side of the *RendezvousConnector*: whether a connection is up, and the
//! frames waiting for the driver.
//!
//! The other half of the reference's connector (reconnect backoff, keepalive, close
//! deadline) is the timer machine in [`crate::proto::connector`]. Where the reference
//! doubles every machine's states into `…A` (disconnected) and `…B` (connected), the
//! machines here keep one state each and ask this link whether a frame can go now; on every
//! (re)connection each machine re-sends what its state still owes (PROTOCOL §3.8).

use std::collections::VecDeque;

use crate::proto::wire::ClientMessage;

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection now (before the first, or lost): frames are not queued, the machines'
    /// states remember what to send on the next connection.
    Disconnected,
    /// Connected: frames go to the outbox in order.
    Connected,
}

/// The link the machines send through.
#[derive(Debug)]
pub(super) struct Link {
    state: State,
    outbox: VecDeque<ClientMessage>,
}

impl Link {
    pub(super) fn new() -> Link {
        Link {
            state: State::Disconnected,
            outbox: VecDeque::new(),
        }
    }

    /// A connection is up: `bind` goes first; the caller then lets every machine re-send.
    pub(super) fn connected(&mut self, bind: ClientMessage) {
        self.state = State::Connected;
        self.outbox.clear();
        self.outbox.push_back(bind);
    }

    /// The connection is gone, and with it every frame not yet written.
    pub(super) fn lost(&mut self) {
        self.state = State::Disconnected;
        self.outbox.clear();
    }

    /// Whether a frame sent now goes out on a live connection.
    pub(super) fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Queue `m` if connected; otherwise drop it (the sender's state re-sends it on the
    /// next connection).
    pub(super) fn send(&mut self, m: ClientMessage) {
        if self.is_connected() {
            self.outbox.push_back(m);
        }
    }

    /// The next frame for the driver.
    pub(super) fn poll(&mut self) -> Option<ClientMessage> {
        self.outbox.pop_front()
    }

    /// Forget queued frames (the session has stopped).
    pub(super) fn clear(&mut self) {
        self.outbox.clear();
    }
}

impl Link {
    /// The state's name for `--debug-state` traces (the reference's where it has one).
    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            State::Disconnected => "disconnected",
            State::Connected => "connected",
        }
    }
}
