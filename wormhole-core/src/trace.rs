//! `--debug-state`: the session's state-machine transitions, one line each, in the
//! reference CLI's format: `N[S2].rx(claimed) -> [S3]` for a machine that changed state on
//! an input, and `RC.R.tx(CLAIM )`, `RC.R.rx(message pake)`, `RC.R.connected`, `RC.R.lost`
//! for the connection. The application adds its prefix (the CLI: `send.` or `recv.`).
//!
//! Machines are named by the reference's letters: `B` (the session as a whole), `N`
//! nameplate, `M` mailbox, `S` send, `O` order, `K` key, `SK` (the reference's SPAKE2
//! sub-machine; ours is part of `K`, so `SK` selects `K`), `R` receive, `RC` the connection,
//! `L` lister, `C` code, `T` terminator, and `A` allocator (which the reference CLI does not
//! offer). State names are the reference's where its machine has the same states.
//!
//! Only transitions are printed (the reference also prints inputs that leave a machine in
//! its state), and a line never carries a message body, the code or a key.

use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::proto::session::Session;

/// The machine letters `StateTrace::new` accepts; the first twelve are the reference
/// CLI's list, which is also the default.
pub const MACHINES: [&str; 13] = [
    "B", "N", "M", "S", "O", "K", "SK", "R", "RC", "L", "C", "T", "A",
];

/// Where trace lines go (on an engine thread: keep it short).
pub type TraceSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Which machines to trace and where the lines go (see the module docs).
#[derive(Clone)]
pub struct StateTrace {
    machines: Vec<&'static str>,
    sink: TraceSink,
}

impl std::fmt::Debug for StateTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTrace")
            .field("machines", &self.machines)
            .finish_non_exhaustive()
    }
}

impl StateTrace {
    /// Trace the comma-separated `machines` (empty: the reference's twelve). An unknown
    /// letter is [`Error::InvalidArgument`] with the reference's wording.
    pub fn new(machines: &str, sink: TraceSink) -> Result<StateTrace> {
        let wanted: Vec<&str> = if machines.trim().is_empty() {
            MACHINES[..12].to_vec()
        } else {
            machines.split(',').map(str::trim).collect()
        };
        let unknown: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|m| !MACHINES.contains(m))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "Cannot debug unknown machines: {}",
                unknown.join(" ")
            )));
        }
        let mut machines: Vec<&'static str> = MACHINES
            .iter()
            .copied()
            .filter(|m| wanted.contains(m))
            .collect();
        if machines.contains(&"SK") && !machines.contains(&"K") {
            machines.push("K");
        }
        Ok(StateTrace { machines, sink })
    }

    fn wants(&self, machine: &str) -> bool {
        self.machines.contains(&machine)
    }
}

/// The driver's side: remembers the states after the last input and reports changes.
pub(crate) struct Tracer {
    trace: StateTrace,
    last: Vec<(&'static str, &'static str)>,
}

impl Tracer {
    pub(crate) fn new(trace: StateTrace, session: &Session) -> Tracer {
        Tracer {
            trace,
            last: session.machine_states(),
        }
    }

    /// After `input` went into `session`: one line per traced machine whose state changed.
    pub(crate) fn after(&mut self, session: &Session, input: &str) {
        let now = session.machine_states();
        for ((machine, old), (_, new)) in self.last.iter().zip(&now) {
            if old != new && self.trace.wants(machine) {
                (self.trace.sink)(&format!("{machine}[{old}].{input} -> [{new}]"));
            }
        }
        self.last = now;
    }

    /// A connection event: `connected`, `lost`.
    pub(crate) fn link(&self, what: &str) {
        if self.trace.wants("RC") {
            (self.trace.sink)(&format!("RC.R.{what}"));
        }
    }

    /// A frame we send (its JSON text): `tx(TYPE phase)`.
    pub(crate) fn tx(&self, frame: &str) {
        if self.trace.wants("RC") {
            let (kind, phase, _) = label(frame);
            self.link(&format!("tx({} {phase})", kind.to_uppercase()));
        }
    }

    /// A frame from the server: `rx(type phase)`, `[mine]` for our own echo.
    pub(crate) fn rx(&self, frame: &str, our_side: &str) {
        if self.trace.wants("RC") {
            let (kind, phase, side) = label(frame);
            // Like the reference: acknowledgements and pongs are not traced.
            if kind == "ack" || kind == "pong" {
                return;
            }
            let mine = if side == our_side { "[mine]" } else { "" };
            self.link(&format!("rx({kind} {phase}{mine})"));
        }
    }
}

/// A frame's `type`, `phase` and `side` (empty when absent), cut to printable ASCII.
fn label(frame: &str) -> (String, String, String) {
    let v: Value = serde_json::from_str(frame).unwrap_or(Value::Null);
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(32)
            .collect::<String>()
    };
    (field("type"), field("phase"), field("side"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_lists() {
        let sink: TraceSink = Arc::new(|_| {});
        let t = StateTrace::new("", sink.clone()).unwrap();
        assert_eq!(t.machines.len(), 12);
        assert!(!t.wants("A"));
        let t = StateTrace::new("SK,RC", sink.clone()).unwrap();
        assert!(t.wants("K") && t.wants("RC") && !t.wants("N"));
        let e = StateTrace::new("N,X,zz", sink).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: Cannot debug unknown machines: X zz"
        );
    }

    #[test]
    fn frame_labels() {
        assert_eq!(
            label(r#"{"type": "add", "phase": "pake", "body": "00"}"#),
            ("add".into(), "pake".into(), String::new())
        );
        assert_eq!(
            label(r#"{"type": "mess\u001bage", "side": "abc"}"#).0,
            "message"
        );
        assert_eq!(label("not json"), Default::default());
    }
}
