//! The receiver's file-system side: destination checks, free space, hidden temporary names
//! within `NAME_MAX`, the atomic move into place and the safe unpacking of a directory.

use std::path::{Path, PathBuf};

use super::machine::{OfferInfo, OfferKind};
use super::zip;
use crate::error::{Error, Result};

pub(crate) fn file_name_of(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{} has no usable file name", path.display()))
        })
}

/// Bytes available to unprivileged users on the file system holding `dir`.
#[cfg(unix)]
pub fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes available on the file system holding `dir` (unknown on this platform).
#[cfg(not(unix))]
pub fn free_space(_dir: &Path) -> Option<u64> {
    None
}

/// The longest file name (in bytes) the usual file systems accept (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// A hidden temporary path next to `dest` that no other run uses. Its name starts with
/// as much of `dest`'s name as fits in [`NAME_MAX`] bytes, so a destination whose own name
/// is at the limit still gets a valid temporary name.
pub(crate) fn temp_path(dest: &Path, suffix: &str) -> PathBuf {
    let tail = format!(
        ".{}.wormhole-{suffix}",
        hex::encode(rand::random::<[u8; 4]>())
    );
    hidden_path(dest, &tail)
}

/// The hidden partial file a resumable receive of `size` bytes into `dest` writes:
/// `.NAME.SIZE.wormhole-partial` (`zip-partial` for a directory's zip), the same for every
/// attempt, so a later attempt finds it.
pub(crate) fn partial_path(dest: &Path, size: u64, is_dir: bool) -> PathBuf {
    let kind = if is_dir { "zip-partial" } else { "partial" };
    hidden_path(dest, &format!(".{size}.wormhole-{kind}"))
}

/// `.NAME` + `tail` next to `dest`, `NAME` cut to fit [`NAME_MAX`].
fn hidden_path(dest: &Path, tail: &str) -> PathBuf {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut keep = NAME_MAX.saturating_sub(1 + tail.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    dir.join(format!(".{}{tail}", &name[..keep]))
}

/// Removes a path on drop unless disarmed.
pub(crate) struct Cleanup(pub(crate) Option<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

impl OfferInfo {
    /// Where to write: `output` if given (an existing directory given here means "inside
    /// it"), else the offered name inside `dir`.
    pub fn destination(&self, dir: &Path, output: Option<&Path>) -> PathBuf {
        match output {
            Some(o) if o.is_dir() => o.join(&self.name),
            Some(o) => o.to_owned(),
            None => dir.join(&self.name),
        }
    }

    /// Check that `dest` can be written: it must not exist unless `overwrite` (and an
    /// existing directory is never replaced by a file or vice versa), and the free space
    /// must hold the data. The reference checks this before asking the user.
    pub fn check_destination(&self, dest: &Path, overwrite: bool) -> Result<()> {
        check_destination(self, dest, overwrite)
    }
}

pub(crate) fn check_destination(offer: &OfferInfo, dest: &Path, overwrite: bool) -> Result<()> {
    if let Ok(md) = std::fs::symlink_metadata(dest) {
        if !overwrite {
            return Err(Error::Transfer(format!(
                "refusing to overwrite existing '{}'",
                dest.display()
            )));
        }
        // Like the reference, a directory is never deleted to make room, and neither
        // is a symbolic link followed or replaced.
        if md.is_dir() || md.file_type().is_symlink() || !matches!(offer.kind, OfferKind::File) {
            return Err(Error::Transfer(format!(
                "refusing to replace existing '{}'",
                dest.display()
            )));
        }
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let need = match offer.kind {
        OfferKind::File => offer.size,
        OfferKind::Directory { numbytes, .. } => offer.size.saturating_add(numbytes),
    };
    if let Some(free) = free_space(&parent) {
        if free < need {
            return Err(Error::Transfer(format!(
                "not enough free space in {} ({need} bytes needed, {free} available)",
                parent.display()
            )));
        }
    }
    Ok(())
}

/// Rename the complete file `tmp` to `dest`. Without `overwrite`, a hard link makes the
/// "does not exist yet" check and the move one atomic step (where links work).
pub(crate) fn move_into_place(tmp: &Path, dest: &Path, overwrite: bool) -> Result<()> {
    let failed =
        |e: std::io::Error| Error::Transfer(format!("cannot rename into {}: {e}", dest.display()));
    if !overwrite {
        match std::fs::hard_link(tmp, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(tmp);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Transfer(format!(
                    "refusing to overwrite existing '{}'",
                    dest.display()
                )));
            }
            Err(_) if std::fs::symlink_metadata(dest).is_ok() => {
                return Err(Error::Transfer(format!(
                    "refusing to overwrite existing '{}'",
                    dest.display()
                )));
            }
            Err(_) => {} // no hard links here: plain rename
        }
    }
    std::fs::rename(tmp, dest).map_err(failed)
}

/// Extract the received zip `zip` into a staging directory next to `dest`, then rename
/// it to `dest`, which must not exist.
pub(crate) fn unpack(zip: &Path, dest: &Path, numbytes: u64) -> Result<()> {
    let staging = temp_path(dest, "part");
    std::fs::create_dir(&staging)
        .map_err(|e| Error::Transfer(format!("cannot create {}: {e}", staging.display())))?;
    let mut staged = Cleanup(Some(staging.clone()));
    zip::extract(zip, &staging, numbytes)?;
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(Error::Transfer(format!(
            "refusing to overwrite existing '{}'",
            dest.display()
        )));
    }
    std::fs::rename(&staging, dest)
        .map_err(|e| Error::Transfer(format!("cannot rename into {}: {e}", dest.display())))?;
    staged.0 = None;
    Ok(())
}
