//! The rendezvous connector: when to connect to the mailbox server, when to ping it, when
//! to give a silent link up, when to retry, and when to stop waiting for a polite close
//! (the reference's `_rendezvous.py` connector, plus the close deadline of its terminator).
//!
//! Sans-IO and clock-free: every input carries `now`, the driver sleeps until
//! [`Connector::poll_timeout`] and calls [`Connector::handle_timeout`], and performs what
//! [`Connector::poll_action`] returns. Randomness (the retry jitter) is an input too, so
//! the timings are tested on a virtual clock.
//!
//! ```text
//! Connecting{first} ──made──▶ Connected ──lost / silent for 2 keepalives──▶ Waiting
//!     │  failed, first: Fail (the session fails with ServerConnection)          │
//!     │  failed, later ─────────────────────────────────────────────────────▶ Waiting
//!     ▲                                                                         │
//!     └──────────────── retry time reached (1.5^n s + jitter, ≤ 60 s) ──────────┘
//! any state ──stop──▶ Stopped
//! ```

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Timing knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Ping interval; a link silent for two intervals is given up.
    pub keepalive: Duration,
    /// How long a close may wait for the server's acknowledgements.
    pub close_timeout: Duration,
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to the server.
    Connect,
    /// Send a WebSocket ping on the live link.
    Ping,
    /// The live link is dead (silent too long): drop it. The session is told it lost the
    /// connection by the driver, as for any other loss.
    DropLink,
    /// The close deadline passed: finish closing without the server's acknowledgements.
    AbandonClose,
}

/// The connector's state, named after the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A connection attempt is under way (`first`: no connection ever succeeded).
    Connecting {
        /// No connection has succeeded yet.
        first: bool,
    },
    /// Connected: the last frame came at `last_rx`, the next ping is due at `next_ping`.
    Connected {
        /// When the last frame arrived.
        last_rx: Instant,
        /// When to check the link next.
        next_ping: Instant,
    },
    /// Waiting to retry at `retry_at`.
    Waiting {
        /// When to connect again.
        retry_at: Instant,
    },
    /// Done: no more connections.
    Stopped,
}

/// The reference client's reconnect delay for the `n`-th consecutive retry (n ≥ 1):
/// `min(1.5^n, 60) + U[0,1)` seconds (PROTOCOL §3.8). `jitter` is in `[0, 1)`.
pub fn reconnect_delay(n: u32, jitter: f64) -> Duration {
    let base = 1.5f64.powi(n.min(20) as i32).min(60.0);
    Duration::from_secs_f64(base + jitter.clamp(0.0, 0.999))
}

/// The connector.
#[derive(Debug)]
pub struct Connector {
    cfg: ConnectorConfig,
    state: State,
    retries: u32,
    close_deadline: Option<Instant>,
    abandoned: bool,
    actions: Vec<Action>,
}

fn invalid(what: &str, state: State) -> Error {
    Error::Internal(format!("connector: {what} while {state:?}"))
}

impl Connector {
    /// A connector that starts its first connection at once.
    pub fn new(cfg: ConnectorConfig) -> Connector {
        Connector {
            cfg,
            state: State::Connecting { first: true },
            retries: 0,
            close_deadline: None,
            abandoned: false,
            actions: vec![Action::Connect],
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() {
            None
        } else {
            Some(self.actions.remove(0))
        }
    }

    /// The connection attempt succeeded.
    pub fn connection_made(&mut self, now: Instant) -> Result<()> {
        match self.state {
            State::Connecting { .. } => {
                self.retries = 0;
                self.state = State::Connected {
                    last_rx: now,
                    next_ping: now + self.cfg.keepalive,
                };
                Ok(())
            }
            s => Err(invalid("connection made", s)),
        }
    }

    /// The connection attempt failed. `Ok(true)`: it was the first one, and the session
    /// fails (the server is unreachable); `Ok(false)`: a retry is scheduled.
    pub fn connection_failed(&mut self, now: Instant, jitter: f64) -> Result<bool> {
        match self.state {
            State::Connecting { first: true } => {
                self.state = State::Stopped;
                Ok(true)
            }
            State::Connecting { first: false } => {
                self.schedule_retry(now, jitter);
                Ok(false)
            }
            s => Err(invalid("connection failed", s)),
        }
    }

    /// A frame (of any kind) arrived on the live link.
    pub fn frame_received(&mut self, now: Instant) -> Result<()> {
        match &mut self.state {
            State::Connected { last_rx, .. } => {
                *last_rx = now;
                Ok(())
            }
            s => Err(invalid("frame received", *s)),
        }
    }

    /// The live link closed or failed.
    pub fn connection_lost(&mut self, now: Instant, jitter: f64) -> Result<()> {
        match self.state {
            State::Connected { .. } => {
                self.schedule_retry(now, jitter);
                Ok(())
            }
            s => Err(invalid("connection lost", s)),
        }
    }

    /// The session started closing: it may wait for the server until the close deadline.
    /// Later calls keep the first deadline.
    pub fn closing(&mut self, now: Instant) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(now + self.cfg.close_timeout);
        }
    }

    /// The session is done: no more connections or timers.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
        self.close_deadline = None;
        self.actions.clear();
    }

    fn schedule_retry(&mut self, now: Instant, jitter: f64) {
        self.retries += 1;
        self.state = State::Waiting {
            retry_at: now + reconnect_delay(self.retries, jitter),
        };
    }

    /// When [`Connector::handle_timeout`] must be called next (`None`: no timer runs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match self.state {
            State::Connected { next_ping, .. } => Some(next_ping),
            State::Waiting { retry_at } => Some(retry_at),
            _ => None,
        };
        let close = self.close_deadline.filter(|_| !self.abandoned);
        match (state, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run the timers due at `now`; `jitter` in `[0, 1)` for a retry it may schedule.
    pub fn handle_timeout(&mut self, now: Instant, jitter: f64) {
        match self.state {
            State::Waiting { retry_at } if now >= retry_at => {
                self.state = State::Connecting { first: false };
                self.actions.push(Action::Connect);
            }
            State::Connected { last_rx, next_ping } if now >= next_ping => {
                if now.saturating_duration_since(last_rx) > self.cfg.keepalive * 2 {
                    // No frame, not even a pong, for two intervals: the link is dead.
                    self.actions.push(Action::DropLink);
                    self.schedule_retry(now, jitter);
                } else {
                    self.actions.push(Action::Ping);
                    self.state = State::Connected {
                        last_rx,
                        next_ping: now + self.cfg.keepalive,
                    };
                }
            }
            _ => {}
        }
        if let Some(d) = self.close_deadline {
            if now >= d && !self.abandoned {
                self.abandoned = true;
                self.actions.push(Action::AbandonClose);
            }
        }
    }
}

#[cfg(test)]
mod tests;
