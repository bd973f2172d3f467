//! `--dump-timing FILE.json`: when each step of a run happened, written at exit in the
//! reference CLI's format (a JSON list of `{name, start, stop, details}`, times in seconds
//! since the Unix epoch).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The steps recorded so far; nothing is recorded without `--dump-timing`.
#[derive(Debug, Default)]
pub struct Timing {
    path: Option<PathBuf>,
    events: Mutex<Vec<Value>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Timing {
    /// Record into `path` (if any) from now on.
    pub fn new(path: Option<PathBuf>) -> Timing {
        let t = Timing {
            path,
            events: Mutex::new(Vec::new()),
        };
        t.add("command dispatch");
        t
    }

    /// Record that `name` happened now.
    pub fn add(&self, name: &str) {
        if self.path.is_some() {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            events.push(json!({"name": name, "start": now(), "stop": null, "details": {}}));
        }
    }

    /// Write the file (with a final `exit` event) and say so on stderr, like the reference.
    pub fn write(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.add("exit");
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let text = serde_json::to_string_pretty(&*events).map_err(|e| e.to_string())? + "\n";
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("Timing data written to {}", path.display());
        Ok(())
    }
}
