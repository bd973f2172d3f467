//! The mailbox server's integration tests (`mailbox_suite`) on SQLite: in memory, and in a
//! file where a test needs its state to outlive a server.

mod backend {
    use std::path::Path;

    use wormhole_server::Database;

    /// Which backend the suite runs on.
    pub const POSTGRES: bool = false;

    /// A fresh, empty database.
    pub fn fresh() -> Database {
        Database::Memory
    }

    /// A database that outlives the server: the SQLite file `file`.
    pub fn persistent(file: &Path) -> Database {
        Database::File(file.to_owned())
    }
}

#[path = "mailbox_suite/mod.rs"]
mod suite;
