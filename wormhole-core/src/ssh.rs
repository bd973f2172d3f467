//! The public-key check of the reference's `wormhole ssh invite` / `ssh accept`
//! (application id `lothar.com/wormhole/ssh-add`): the accepting side sends one
//! `authorized_keys` line as a text message, the inviting side appends it.
//!
//! The reference appends whatever arrives. [`SshPublicKey::parse`] accepts exactly one
//! line that starts with an SSH key type and a base64 key, so a peer (or someone who
//! guessed the code) cannot add several keys, or a key with `command=` options.

/// Application id of the reference's `wormhole ssh`.
pub const SSH_APPID: &str = "lothar.com/wormhole/ssh-add";

/// Why a text is not one SSH public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an SSH public key: {0}")]
pub struct NotAPublicKey(&'static str);

/// One SSH public key line (`TYPE BASE64 [COMMENT]`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    kind: String,
    keyid: String,
    line: String,
}

impl SshPublicKey {
    /// Parse one public key line; surrounding whitespace (the trailing newline of a
    /// `.pub` file) is dropped, anything else that is not a key is refused.
    pub fn parse(text: &str) -> Result<SshPublicKey, NotAPublicKey> {
        let line = text.trim();
        if line.contains(|c: char| c.is_control() && c != '\t') {
            return Err(NotAPublicKey("more than one line, or control characters"));
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let kind = parts.next().unwrap_or_default();
        let known = ["ssh-", "ecdsa-", "sk-"];
        if !known.iter().any(|p| kind.starts_with(p))
            || !kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b))
        {
            return Err(NotAPublicKey(
                "it does not start with a key type (ssh-…, ecdsa-…, sk-…)",
            ));
        }
        let key = parts.next().unwrap_or_default();
        if key.len() < 16
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(NotAPublicKey("the key is not base64"));
        }
        let keyid = parts.next().map_or("unknown", str::trim);
        Ok(SshPublicKey {
            kind: kind.to_owned(),
            keyid: if keyid.is_empty() { "unknown" } else { keyid }.to_owned(),
            line: line.to_owned(),
        })
    }

    /// The key type, e.g. `ssh-ed25519`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The comment (the reference calls it the key id), or `unknown`.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The whole line, without surrounding whitespace: what goes into `authorized_keys`.
    pub fn line(&self) -> &str {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_parsed_and_anything_else_refused() {
        let k = SshPublicKey::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG me@host\n").unwrap();
        assert_eq!((k.kind(), k.keyid()), ("ssh-ed25519", "me@host"));
        assert_eq!(k.line(), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG me@host");
        let k = SshPublicKey::parse("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAy").unwrap();
        assert_eq!(k.keyid(), "unknown");
        for bad in [
            "",
            "hello",
            "command=\"rm -rf ~\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG x",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG a\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB b",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG a\u{85}ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB b",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG a\u{1b}[2J",
            "ssh-ed25519 not*base64*at*all*here",
            "ssh-ed25519 short",
        ] {
            assert!(SshPublicKey::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
