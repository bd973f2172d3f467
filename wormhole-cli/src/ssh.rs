//! `wormhole ssh invite` / `wormhole ssh accept`: hand an SSH public key to another
//! machine's `~/.ssh/authorized_keys`, like the reference CLI (same application id, same
//! text-message format, same prompts), so either side can be the reference.
//!
//! Unlike the reference, the inviting side checks what it receives before appending it:
//! exactly one line, starting with an SSH key type and a base64 key. A peer (or someone
//! who guessed the code) cannot add several keys, or a key with `command=` options.

use std::io::Write;
use std::path::{Path, PathBuf};

use wormhole_core::ssh::SshPublicKey as PublicKey;
use wormhole_core::{Wormhole, text, validate_code};

use crate::args::SshCommand;
use crate::common::{Server, run_and_close};
use crate::display::terminal_safe;
use crate::failure::Failure;
use crate::input::prompt_line;

/// The reference's application id for `ssh` (used unless `--appid` is given).
pub const APPID: &str = wormhole_core::ssh::SSH_APPID;

/// Run `wormhole ssh …`.
pub async fn run(server: &Server, cmd: &SshCommand) -> Result<(), Failure> {
    match cmd {
        SshCommand::Invite {
            code_length, user, ..
        } => invite(server, *code_length, user).await,
        SshCommand::Accept {
            code,
            key_file,
            yes,
            ..
        } => accept(server, code, key_file.as_deref(), *yes).await,
    }
}

/// `~/.ssh` of the current user (`$HOME`) or of `user`.
fn ssh_dir(user: &Option<String>) -> Result<PathBuf, Failure> {
    let home = match user {
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| Failure::Other("HOME is not set".into()))?,
        Some(name) => uzers::get_user_by_name(name)
            .map(|u| uzers::os::unix::UserExt::home_dir(&u).to_owned())
            .ok_or_else(|| Failure::Other(format!("no user named '{name}'")))?,
    };
    Ok(home.join(".ssh"))
}

/// `wormhole ssh invite`: allocate a code, receive one public key, append it.
async fn invite(server: &Server, code_length: usize, user: &Option<String>) -> Result<(), Failure> {
    let ssh = ssh_dir(user)?;
    let auth = ssh.join("authorized_keys");
    if !auth.exists() {
        println!("Note: '{}' not found; will be created", auth.display());
        if !ssh.exists() {
            println!("      '{}' doesn't exist either", ssh.display());
        }
    } else if std::fs::OpenOptions::new()
        .append(true)
        .open(&auth)
        .is_err()
    {
        return Err(Failure::Other(format!(
            "No write permission on '{}'",
            auth.display()
        )));
    }
    let w = server.create()?;
    let key = run_and_close(&w, async {
        w.allocate_code(code_length)?;
        let code = w.get_code().await?;
        println!("Now tell the other user to run:\n\nwormhole ssh accept {code}\n");
        let _ = std::io::stdout().flush();
        let received = text::receive_text(&w).await?;
        Ok(received)
    })
    .await?;
    let key = PublicKey::parse(&key)?;
    append_key(&ssh, &auth, &key)?;
    println!(
        "Appended key type='{}' id='{}' to '{}'",
        terminal_safe(key.kind()),
        terminal_safe(key.keyid()),
        auth.display()
    );
    Ok(())
}

/// Append `key` to `auth`, creating `ssh` (0700) and `auth` (0600) if needed.
fn append_key(ssh: &Path, auth: &Path, key: &PublicKey) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |p: &Path, e: std::io::Error| Failure::Other(format!("{}: {e}", p.display()));
    if !ssh.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(ssh)
            .map_err(|e| io(ssh, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(auth)
        .map_err(|e| io(auth, e))?;
    // A file that does not end with a newline would glue our key to its last line.
    let needs_newline = std::fs::read(auth)
        .map(|b| b.last().is_some_and(|&c| c != b'\n'))
        .unwrap_or(false);
    let text = format!("{}{}\n", if needs_newline { "\n" } else { "" }, key.line());
    f.write_all(text.as_bytes()).map_err(|e| io(auth, e))
}

/// Find the public key to send: `hint` if it is a file, else the one `*.pub` in `hint`
/// (default `~/.ssh`), asking which one when there are several.
async fn find_public_key(hint: Option<&Path>) -> Result<PublicKey, Failure> {
    let dir = match hint {
        Some(p) if p.is_file() => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::Other(format!("{}: {e}", p.display())))?;
            return Ok(PublicKey::parse(&text)?);
        }
        Some(p) if p.exists() => p.to_owned(),
        Some(p) => return Err(Failure::Other(format!("Can't find '{}'", p.display()))),
        None => ssh_dir(&None)?,
    };
    let mut pubkeys: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Failure::Other(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".pub"))
        .collect();
    pubkeys.sort();
    let chosen = match pubkeys.len() {
        0 => {
            return Err(Failure::Other(format!(
                "No public keys in '{}'",
                dir.display()
            )));
        }
        1 => pubkeys.remove(0),
        _ => loop {
            let list: Vec<String> = pubkeys
                .iter()
                .enumerate()
                .map(|(i, n)| format!("  {i}: {n}"))
                .collect();
            let answer = prompt_line(&format!(
                "Multiple public-keys found:\n{}\nSend which one?: ",
                list.join("\n")
            ))
            .await?;
            if answer.is_empty() {
                return Err(Failure::Other("no key chosen".into()));
            }
            if let Some(n) = answer
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n < pubkeys.len())
            {
                break pubkeys.remove(n);
            }
        },
    };
    let path = dir.join(chosen);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    Ok(PublicKey::parse(&text)?)
}

/// `wormhole ssh accept CODE`: send our public key to the inviting side.
async fn accept(
    server: &Server,
    code: &str,
    key_file: Option<&Path>,
    yes: bool,
) -> Result<(), Failure> {
    validate_code(code)?;
    let key = find_public_key(key_file).await?;
    println!(
        "Sending public key type='{}' keyid='{}'",
        terminal_safe(key.kind()),
        terminal_safe(key.keyid())
    );
    if !yes {
        let answer = prompt_line(&format!(
            "Really send public key '{}' ? [y/N]: ",
            terminal_safe(key.keyid())
        ))
        .await?;
        if !answer.trim().to_lowercase().starts_with('y') {
            return Err(Failure::Other("Aborted!".into()));
        }
    }
    let w: Wormhole = server.create()?;
    run_and_close(&w, async {
        w.set_code(code)?;
        // The reference sends the key file's text as it is, newline included.
        text::send_text(&w, &format!("{}\n", key.line())).await?;
        Ok(())
    })
    .await?;
    println!("Key sent.");
    Ok(())
}
