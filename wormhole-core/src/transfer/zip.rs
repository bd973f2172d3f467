//! Directory transfer as a zip stream (PROTOCOL §8.4).
//!
//! [`ZipStream`] builds a STORED zip of a directory while it is read, without a temporary
//! copy, and knows its exact size in advance (the offer's `zipsize`): every file entry
//! has a data descriptor carrying the CRC-32 computed while streaming, so nothing has to be
//! read twice. [`extract`] unpacks a received zip (STORED or DEFLATED entries) and refuses
//! absolute paths, `..`, links and entries larger than they claim.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const LOCAL_SIG: u32 = 0x0403_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const FLAG_DESCRIPTOR: u16 = 0x0008;
const FLAG_UTF8: u16 = 0x0800;
const MAX_DEPTH: usize = 64;

/// One entry of the zip being streamed.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    path: Option<PathBuf>,
    size: u64,
    mode: u32,
    time: u16,
    date: u16,
    offset: u64,
    crc: u32,
}

impl Entry {
    fn is_file(&self) -> bool {
        self.path.is_some()
    }
    fn flags(&self) -> u16 {
        FLAG_UTF8 | if self.is_file() { FLAG_DESCRIPTOR } else { 0 }
    }

    /// The entry of the file at `path`, named `name` in the zip.
    fn file(name: String, path: PathBuf, md: &std::fs::Metadata) -> Entry {
        let (time, date) = dos_time(md.modified().ok());
        Entry {
            name,
            size: md.len(),
            path: Some(path),
            mode: mode_of(md, 0o100644),
            time,
            date,
            offset: 0,
            crc: 0,
        }
    }

    /// The entry of an empty directory, `name` ending with `/`.
    fn empty_dir(name: String, md: &std::fs::Metadata) -> Entry {
        let (time, date) = dos_time(md.modified().ok());
        Entry {
            name,
            path: None,
            size: 0,
            mode: mode_of(md, 0o040755),
            time,
            date,
            offset: 0,
            crc: 0,
        }
    }
}

/// What a directory offer announces, plus the stream that produces the zip.
#[derive(Debug)]
pub struct ZipStream {
    entries: Vec<Entry>,
    /// Exact length of the zip stream.
    pub zipsize: u64,
    /// Sum of the files' sizes.
    pub numbytes: u64,
    /// Number of files (directories not counted).
    pub numfiles: u64,
    next: usize,
    pending: Vec<u8>,
    pending_pos: usize,
    current: Option<(File, u64, crc32fast::Hasher)>,
    written: u64,
    finished: bool,
    /// Zip64 records for every entry (only when something exceeds the classic limits).
    zip64: bool,
}

const U32_MAX: u64 = u32::MAX as u64;

impl ZipStream {
    /// Walk `dir` (following symlinks, keeping empty directories; names relative to `dir`)
    /// and prepare the stream.
    pub fn new(dir: &Path) -> Result<ZipStream> {
        Self::new_skipping(dir, None)
    }

    /// Like [`ZipStream::new`], but with `skip`, files and directories that cannot be read
    /// are left out and reported to it instead of failing (the reference's
    /// `--ignore-unsendable-files`).
    pub fn new_skipping(dir: &Path, mut skip: Option<&mut Skip<'_>>) -> Result<ZipStream> {
        let mut entries = Vec::new();
        walk(dir, "", 0, &mut entries, &mut skip)?;
        let (size, numbytes, numfiles) = layout(&mut entries, false);
        // Zip64 (for the whole archive) only when the classic fields overflow.
        let zip64 = entries.len() >= 0xffff || size >= U32_MAX;
        Self::with_entries(entries, zip64, numbytes, numfiles)
    }

    /// A zip whose top level holds each of `paths`: a file under its own name, a
    /// directory as `name/…` (walked like [`ZipStream::new`]). This is how several files
    /// and directories go in one directory offer. Two paths with the same final name are
    /// an error (the receiver could not tell them apart).
    pub fn from_paths(paths: &[PathBuf], mut skip: Option<&mut Skip<'_>>) -> Result<ZipStream> {
        let mut entries = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for path in paths {
            let name = top_level_name(path)?;
            if !seen.insert(name.clone()) {
                return Err(Error::InvalidArgument(format!(
                    "two of the paths to send are named '{name}'"
                )));
            }
            let md = std::fs::metadata(path)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
            if md.is_dir() {
                let before = entries.len();
                walk(path, &format!("{name}/"), 1, &mut entries, &mut skip)?;
                if entries.len() == before {
                    entries.push(Entry::empty_dir(format!("{name}/"), &md));
                }
            } else if md.is_file() {
                File::open(path)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
                entries.push(Entry::file(name, path.clone(), &md));
            } else {
                return Err(Error::InvalidArgument(format!(
                    "{} is neither a file nor a directory",
                    path.display()
                )));
            }
        }
        let (size, numbytes, numfiles) = layout(&mut entries, false);
        let zip64 = entries.len() >= 0xffff || size >= U32_MAX;
        Self::with_entries(entries, zip64, numbytes, numfiles)
    }

    fn with_entries(
        mut entries: Vec<Entry>,
        zip64: bool,
        numbytes: u64,
        numfiles: u64,
    ) -> Result<ZipStream> {
        let (zipsize, _, _) = layout(&mut entries, zip64);
        let mut z = ZipStream {
            entries,
            zipsize,
            numbytes,
            numfiles,
            next: 0,
            pending: Vec::with_capacity(1024),
            pending_pos: 0,
            current: None,
            written: 0,
            finished: false,
            zip64,
        };
        z.advance().map_err(|e| Error::Transfer(e.to_string()))?;
        Ok(z)
    }

    /// A function that makes a fresh stream of the same entries from the start (reading
    /// the files again), for a sender that must start over.
    pub(crate) fn restarter(&self) -> impl FnOnce() -> Result<ZipStream> + Send + 'static {
        let (entries, zip64) = (self.entries.clone(), self.zip64);
        let (numbytes, numfiles) = (self.numbytes, self.numfiles);
        move || Self::with_entries(entries, zip64, numbytes, numfiles)
    }

    /// Queue the next entry's local header (opening its file), or the central directory.
    fn advance(&mut self) -> io::Result<()> {
        if self.next == self.entries.len() {
            if !self.finished {
                self.finished = true;
                self.central_directory();
            }
            return Ok(());
        }
        let e = &self.entries[self.next];
        let p = &mut self.pending;
        let z64 = self.zip64 && e.is_file();
        put32(p, LOCAL_SIG);
        put16(p, if z64 { 45 } else { 20 });
        put16(p, e.flags());
        put16(p, 0); // STORED
        put16(p, e.time);
        put16(p, e.date);
        put32(p, 0); // crc and sizes: in the data descriptor
        put32(p, if z64 { u32::MAX } else { 0 });
        put32(p, if z64 { u32::MAX } else { 0 });
        put16(p, e.name.len() as u16);
        put16(p, if z64 { 20 } else { 0 });
        p.extend_from_slice(e.name.as_bytes());
        if z64 {
            put16(p, 1);
            put16(p, 16);
            put64(p, 0);
            put64(p, 0);
        }
        if let Some(path) = &e.path {
            let f = File::open(path).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot open {}: {err}", path.display()))
            })?;
            self.current = Some((f, e.size, crc32fast::Hasher::new()));
        } else {
            self.next += 1;
        }
        Ok(())
    }

    fn central_directory(&mut self) {
        let start = self.written + (self.pending.len() - self.pending_pos) as u64;
        let z64 = self.zip64;
        let p = &mut self.pending;
        let mut size = 0u64;
        for e in &self.entries {
            let before = p.len();
            let version = if z64 { 45 } else { 20 };
            put32(p, CENTRAL_SIG);
            put16(p, (3 << 8) | version); // made by Unix
            put16(p, version);
            put16(p, e.flags());
            put16(p, 0);
            put16(p, e.time);
            put16(p, e.date);
            put32(p, e.crc);
            let small = |v: u64| if z64 { u32::MAX } else { v as u32 };
            put32(p, small(e.size));
            put32(p, small(e.size));
            put16(p, e.name.len() as u16);
            put16(p, if z64 { 28 } else { 0 });
            put16(p, 0);
            put16(p, 0);
            put16(p, 0);
            let dos_dir = if e.is_file() { 0 } else { 0x10 };
            put32(p, (e.mode << 16) | dos_dir);
            put32(p, small(e.offset));
            p.extend_from_slice(e.name.as_bytes());
            if z64 {
                put16(p, 1);
                put16(p, 24);
                put64(p, e.size);
                put64(p, e.size);
                put64(p, e.offset);
            }
            size += (p.len() - before) as u64;
        }
        let count = self.entries.len() as u64;
        if z64 {
            let eocd64 = start + size;
            put32(p, 0x0606_4b50);
            put64(p, 44);
            put16(p, (3 << 8) | 45);
            put16(p, 45);
            put32(p, 0);
            put32(p, 0);
            put64(p, count);
            put64(p, count);
            put64(p, size);
            put64(p, start);
            put32(p, 0x0706_4b50);
            put32(p, 0);
            put64(p, eocd64);
            put32(p, 1);
        }
        let small16 = |v: u64| if z64 { u16::MAX } else { v as u16 };
        let small32 = |v: u64| if z64 { u32::MAX } else { v as u32 };
        put32(p, EOCD_SIG);
        put16(p, 0);
        put16(p, 0);
        put16(p, small16(count));
        put16(p, small16(count));
        put32(p, small32(size));
        put32(p, small32(start));
        put16(p, 0);
    }
}

impl Read for ZipStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pending_pos < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.pending_pos);
                buf[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
                self.pending_pos += n;
                if self.pending_pos == self.pending.len() {
                    self.pending.clear();
                    self.pending_pos = 0;
                }
                self.written += n as u64;
                return Ok(n);
            }
            if let Some((f, remaining, crc)) = &mut self.current {
                if *remaining > 0 {
                    let want = buf
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let n = f.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "a file shrank while it was being sent",
                        ));
                    }
                    crc.update(&buf[..n]);
                    *remaining -= n as u64;
                    self.written += n as u64;
                    return Ok(n);
                }
                let (_, _, crc) = self.current.take().expect("current entry");
                let e = &mut self.entries[self.next];
                e.crc = crc.finalize();
                let (crc, size) = (e.crc, e.size);
                let p = &mut self.pending;
                put32(p, DESCRIPTOR_SIG);
                put32(p, crc);
                if self.zip64 {
                    put64(p, size);
                    put64(p, size);
                } else {
                    put32(p, size as u32);
                    put32(p, size as u32);
                }
                self.next += 1;
                self.advance()?;
                continue;
            }
            if self.finished {
                return Ok(0);
            }
            self.advance()?;
        }
    }
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Assign offsets; return (exact zip size, numbytes, numfiles).
fn layout(entries: &mut [Entry], zip64: bool) -> (u64, u64, u64) {
    let mut offset: u64 = 0;
    let mut central: u64 = 0;
    let (mut numbytes, mut numfiles) = (0u64, 0u64);
    for e in entries.iter_mut() {
        e.offset = offset;
        let name = e.name.len() as u64;
        offset += 30 + name + e.size;
        if e.is_file() {
            offset += if zip64 { 20 + 24 } else { 16 };
            numbytes += e.size;
            numfiles += 1;
        }
        central += 46 + name + if zip64 { 28 } else { 0 };
    }
    let end = if zip64 { 56 + 20 + 22 } else { 22 };
    (offset + central + end, numbytes, numfiles)
}

/// The name `path` has at the top of a multi-path zip: its final component, UTF-8.
fn top_level_name(path: &Path) -> Result<String> {
    let name = std::path::absolute(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_owned()))
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no name", path.display())))?;
    name.into_string().map_err(|n| {
        Error::InvalidArgument(format!("{}: the name is not UTF-8", n.to_string_lossy()))
    })
}

/// The directory name offered for several paths sent together: the first one's name and
/// how many more there are (`a.txt-and-2-more`).
pub fn bundle_name(paths: &[PathBuf]) -> Result<String> {
    let first = paths
        .first()
        .ok_or_else(|| Error::InvalidArgument("nothing to send".into()))?;
    let name = top_level_name(first)?;
    Ok(match paths.len() {
        1 => name,
        n => format!("{name}-and-{}-more", n - 1),
    })
}

/// Called with each unreadable path and its error, see [`ZipStream::new_skipping`].
pub type Skip<'a> = dyn FnMut(&Path, &io::Error) + 'a;

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<Entry>,
    skip: &mut Option<&mut Skip<'_>>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::Transfer(format!(
            "{} is nested too deeply (a symlink loop?)",
            dir.display()
        )));
    }
    let io_err = |p: &Path, e: io::Error| Error::Transfer(format!("{}: {e}", p.display()));
    let listed: io::Result<Vec<_>> =
        std::fs::read_dir(dir).and_then(|rd| rd.map(|d| d.map(|d| d.file_name())).collect());
    let mut names = match (listed, skip.as_mut()) {
        (Ok(n), _) => n,
        (Err(e), Some(f)) if depth > 0 => {
            f(dir, &e);
            return Ok(());
        }
        (Err(e), _) => return Err(io_err(dir, e)),
    };
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(Error::Transfer(format!(
                "{}: the name is not UTF-8",
                path.display()
            )));
        };
        // Follows symlinks, like the reference.
        let md = match (std::fs::metadata(&path), skip.as_mut()) {
            (Ok(md), _) => md,
            (Err(e), Some(f)) => {
                f(&path, &e);
                continue;
            }
            (Err(e), None) => return Err(io_err(&path, e)),
        };
        let arcname = format!("{prefix}{name}");
        if md.is_dir() {
            let before = out.len();
            walk(&path, &format!("{arcname}/"), depth + 1, out, skip)?;
            // Only an empty directory gets an entry of its own (`name/`): a file's path
            // already makes its parents. wormhole-william extracts every entry as a file,
            // so an entry for a non-empty directory would break its receive.
            if out.len() == before {
                out.push(Entry::empty_dir(format!("{arcname}/"), &md));
            }
        } else if md.is_file() {
            // Fail (or skip) before the offer, not halfway through the stream.
            if let Err(e) = File::open(&path) {
                match skip.as_mut() {
                    Some(f) => {
                        f(&path, &e);
                        continue;
                    }
                    None => return Err(io_err(&path, e)),
                }
            }
            out.push(Entry::file(arcname, path, &md));
        }
        // Sockets, FIFOs and devices are skipped.
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(md: &std::fs::Metadata, _default: u32) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode() & 0o177777
}

#[cfg(not(unix))]
fn mode_of(_md: &std::fs::Metadata, default: u32) -> u32 {
    default
}

/// MS-DOS time and date (UTC) of a modification time, clamped to 1980..=2107.
fn dos_time(t: Option<std::time::SystemTime>) -> (u16, u16) {
    let secs = t
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(315_532_800, |d| d.as_secs())
        .clamp(315_532_800, 4_354_819_198);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let time = ((rem / 3600) << 11) | (((rem % 3600) / 60) << 5) | ((rem % 60) / 2);
    let date = ((year - 1980) << 9) | (month << 5) | day;
    (time as u16, date as u16)
}

/// A zip entry name as a safe relative path: no absolute paths, drive letters,
/// backslashes, NULs, `..` or empty components.
pub fn safe_relative_path(name: &str) -> Result<PathBuf> {
    let bad = || Error::Transfer(format!("refusing the unsafe zip entry name {name:?}"));
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    if trimmed.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || trimmed.split('/').any(|c| c.is_empty() || c == "..")
        || name.as_bytes().get(1) == Some(&b':')
    {
        return Err(bad());
    }
    let p = PathBuf::from(trimmed);
    if !p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad());
    }
    Ok(p)
}

struct CentralEntry {
    name: String,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
    made_by: u16,
    external: u32,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

fn bad_zip(what: &str) -> Error {
    Error::Transfer(format!("the received zip is malformed: {what}"))
}

fn read_central(f: &mut File) -> Result<Vec<CentralEntry>> {
    let io = |e: io::Error| Error::Transfer(format!("reading the received zip: {e}"));
    let len = f.seek(SeekFrom::End(0)).map_err(io)?;
    let tail_len = len.min(65_557 + 20);
    f.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail).map_err(io)?;
    let pos = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == EOCD_SIG)
        .ok_or_else(|| bad_zip("no end of central directory"))?;
    let mut count = u64::from(u16_at(&tail, pos + 10));
    let mut cd_size = u64::from(u32_at(&tail, pos + 12));
    let mut cd_off = u64::from(u32_at(&tail, pos + 16));
    // Zip64: the locator sits right before the EOCD.
    if pos >= 20 && u32_at(&tail, pos - 20) == 0x0706_4b50 {
        let z64 = u64_at(&tail, pos - 20 + 8);
        f.seek(SeekFrom::Start(z64)).map_err(io)?;
        let mut rec = [0u8; 56];
        f.read_exact(&mut rec).map_err(io)?;
        if u32_at(&rec, 0) != 0x0606_4b50 {
            return Err(bad_zip("bad zip64 end record"));
        }
        count = u64_at(&rec, 32);
        cd_size = u64_at(&rec, 40);
        cd_off = u64_at(&rec, 48);
    }
    if cd_off.checked_add(cd_size).is_none_or(|end| end > len) || cd_size > 64 << 20 {
        return Err(bad_zip("central directory out of range"));
    }
    f.seek(SeekFrom::Start(cd_off)).map_err(io)?;
    let mut cd = vec![0u8; cd_size as usize];
    f.read_exact(&mut cd).map_err(io)?;
    let mut out = Vec::new();
    let mut i = 0;
    for _ in 0..count {
        if i + 46 > cd.len() || u32_at(&cd, i) != CENTRAL_SIG {
            return Err(bad_zip("bad central directory entry"));
        }
        let (n, m, k) = (
            u16_at(&cd, i + 28) as usize,
            u16_at(&cd, i + 30) as usize,
            u16_at(&cd, i + 32) as usize,
        );
        if i + 46 + n + m + k > cd.len() {
            return Err(bad_zip("truncated central directory"));
        }
        let name = String::from_utf8_lossy(&cd[i + 46..i + 46 + n]).into_owned();
        let mut e = CentralEntry {
            name,
            method: u16_at(&cd, i + 10),
            crc: u32_at(&cd, i + 16),
            csize: u64::from(u32_at(&cd, i + 20)),
            usize: u64::from(u32_at(&cd, i + 24)),
            offset: u64::from(u32_at(&cd, i + 42)),
            made_by: u16_at(&cd, i + 4),
            external: u32_at(&cd, i + 38),
        };
        // Zip64 extra field (0x0001): the 0xffffffff fields, in order.
        let extra = &cd[i + 46 + n..i + 46 + n + m];
        let mut j = 0;
        while j + 4 <= extra.len() {
            let (id, sz) = (u16_at(extra, j), u16_at(extra, j + 2) as usize);
            let body = &extra[(j + 4).min(extra.len())..(j + 4 + sz).min(extra.len())];
            if id == 1 {
                let mut k = 0;
                for field in [&mut e.usize, &mut e.csize, &mut e.offset] {
                    if *field == u64::from(u32::MAX) && k + 8 <= body.len() {
                        *field = u64_at(body, k);
                        k += 8;
                    }
                }
            }
            j += 4 + sz;
        }
        out.push(e);
        i += 46 + n + m + k;
    }
    Ok(out)
}

/// Extract the zip at `zip` into the existing, empty directory `dest`. Entries must be
/// safe relative paths ([`safe_relative_path`]), not symlinks, STORED or DEFLATED, and
/// their content must match the declared size and CRC-32. The total written is limited
/// to `max_total` bytes.
pub fn extract(zip: &Path, dest: &Path, max_total: u64) -> Result<()> {
    let io = |e: io::Error| Error::Transfer(format!("extracting the received zip: {e}"));
    let mut f = File::open(zip).map_err(io)?;
    let entries = read_central(&mut f)?;
    let mut total = 0u64;
    for e in entries {
        let rel = safe_relative_path(&e.name)?;
        let unix_mode = if e.made_by >> 8 == 3 {
            e.external >> 16
        } else {
            0
        };
        if unix_mode & 0o170000 == 0o120000 {
            return Err(Error::Transfer(format!(
                "refusing the symbolic link {:?} in the zip",
                e.name
            )));
        }
        let target = dest.join(&rel);
        if e.name.ends_with('/') {
            std::fs::create_dir_all(&target).map_err(io)?;
            continue;
        }
        total = total.saturating_add(e.usize);
        if total > max_total {
            return Err(Error::Transfer(
                "the zip holds more data than the sender announced".into(),
            ));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        f.seek(SeekFrom::Start(e.offset)).map_err(io)?;
        let mut lh = [0u8; 30];
        f.read_exact(&mut lh).map_err(io)?;
        if u32_at(&lh, 0) != LOCAL_SIG {
            return Err(bad_zip("bad local header"));
        }
        let skip = u64::from(u16_at(&lh, 26)) + u64::from(u16_at(&lh, 28));
        f.seek(SeekFrom::Current(skip as i64)).map_err(io)?;
        let raw = (&mut f).take(e.csize);
        let mut reader: Box<dyn Read + '_> = match e.method {
            0 => Box::new(raw),
            8 => Box::new(flate2::read::DeflateDecoder::new(raw)),
            m => return Err(bad_zip(&format!("unsupported compression method {m}"))),
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|err| Error::Transfer(format!("cannot create {}: {err}", target.display())))?;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > e.usize {
                return Err(bad_zip("an entry is larger than declared"));
            }
            crc.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io)?;
        }
        if written != e.usize || crc.finalize() != e.crc {
            return Err(bad_zip("an entry's size or CRC does not match"));
        }
        #[cfg(unix)]
        if unix_mode & 0o777 != 0 {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                out.set_permissions(std::fs::Permissions::from_mode((unix_mode & 0o777) | 0o600));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "wh-zip-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn roundtrip_nested_and_empty_dirs() {
        let src = tmp("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::create_dir_all(src.join("empty")).unwrap();
        std::fs::write(src.join("top.txt"), b"hello").unwrap();
        std::fs::write(src.join("a/b/deep.bin"), vec![7u8; 100_000]).unwrap();
        std::fs::write(src.join("a/zero"), b"").unwrap();
        let mut z = ZipStream::new(&src).unwrap();
        assert_eq!(z.numfiles, 3);
        assert_eq!(z.numbytes, 100_005);
        // Files and the empty directory only: no entry for a directory that has files.
        let names: Vec<&str> = z.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a/b/deep.bin", "a/zero", "empty/", "top.txt"]);
        let size = z.zipsize;
        let mut bytes = Vec::new();
        z.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, size);
        let zpath = src.with_extension("zip");
        std::fs::write(&zpath, &bytes).unwrap();
        let dest = tmp("dest");
        extract(&zpath, &dest, 1 << 30).unwrap();
        assert_eq!(std::fs::read(dest.join("top.txt")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(dest.join("a/b/deep.bin")).unwrap(),
            vec![7u8; 100_000]
        );
        assert_eq!(std::fs::read(dest.join("a/zero")).unwrap(), b"");
        assert!(dest.join("empty").is_dir());
        // Over the announced total.
        let dest2 = tmp("dest2");
        assert!(extract(&zpath, &dest2, 10).is_err());
        for p in [&src, &dest, &dest2] {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_file(zpath);
    }

    /// Several paths in one zip: each at the top level under its own name, extracted
    /// intact; two paths with the same name are refused.
    #[test]
    fn several_paths_at_the_top_level() {
        let src = tmp("multi");
        std::fs::create_dir_all(src.join("photos/2024")).unwrap();
        std::fs::create_dir_all(src.join("other/photos")).unwrap();
        std::fs::create_dir_all(src.join("hollow")).unwrap();
        std::fs::write(src.join("a.txt"), b"alpha").unwrap();
        std::fs::write(src.join("photos/2024/p.jpg"), vec![3u8; 5000]).unwrap();
        let paths = [src.join("a.txt"), src.join("photos"), src.join("hollow")];
        let mut z = ZipStream::from_paths(&paths, None).unwrap();
        assert_eq!((z.numfiles, z.numbytes), (2, 5005));
        let names: Vec<&str> = z.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "photos/2024/p.jpg", "hollow/"]);
        assert_eq!(bundle_name(&paths).unwrap(), "a.txt-and-2-more");
        let size = z.zipsize;
        let mut bytes = Vec::new();
        z.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, size);
        let zpath = src.with_extension("multi.zip");
        std::fs::write(&zpath, &bytes).unwrap();
        let out = tmp("multi-out");
        extract(&zpath, &out, 5005).unwrap();
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(
            std::fs::read(out.join("photos/2024/p.jpg")).unwrap(),
            vec![3u8; 5000]
        );
        assert!(out.join("hollow").is_dir());

        let clash = [src.join("photos"), src.join("other/photos")];
        let err = ZipStream::from_paths(&clash, None).unwrap_err();
        assert!(err.to_string().contains("photos"), "{err}");
        assert!(ZipStream::from_paths(&[src.join("missing")], None).is_err());
        for p in [src, out] {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_file(zpath);
    }

    #[test]
    fn zip64_roundtrip() {
        let src = tmp("src64");
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::write(src.join("d/e/f.bin"), vec![9u8; 70_000]).unwrap();
        std::fs::write(src.join("g.txt"), b"gee").unwrap();
        let mut entries = Vec::new();
        walk(&src, "", 0, &mut entries, &mut None).unwrap();
        let mut z = ZipStream::with_entries(entries, true, 70_003, 2).unwrap();
        let size = z.zipsize;
        let mut bytes = Vec::new();
        z.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, size);
        let zpath = src.with_extension("zip64");
        std::fs::write(&zpath, &bytes).unwrap();
        let dest = tmp("dest64");
        extract(&zpath, &dest, 1 << 30).unwrap();
        assert_eq!(
            std::fs::read(dest.join("d/e/f.bin")).unwrap(),
            vec![9u8; 70_000]
        );
        assert_eq!(std::fs::read(dest.join("g.txt")).unwrap(), b"gee");
        for p in [&src, &dest] {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_file(zpath);
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_files_fail_or_are_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let src = tmp("unreadable");
        std::fs::write(src.join("ok.txt"), b"ok").unwrap();
        std::fs::write(src.join("secret"), b"no").unwrap();
        std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        if File::open(src.join("secret")).is_ok() {
            // Running as root: permissions do not apply.
            let _ = std::fs::remove_dir_all(&src);
            return;
        }
        assert!(ZipStream::new(&src).is_err());
        let mut skipped = Vec::new();
        let mut note = |p: &Path, _: &io::Error| skipped.push(p.to_owned());
        let z = ZipStream::new_skipping(&src, Some(&mut note)).unwrap();
        assert_eq!(z.numfiles, 1);
        assert_eq!(skipped, vec![src.join("secret")]);
        let _ = std::fs::remove_dir_all(&src);
    }

    #[test]
    fn empty_directory_zip() {
        let src = tmp("empty");
        let mut z = ZipStream::new(&src).unwrap();
        assert_eq!(z.zipsize, 22);
        let mut bytes = Vec::new();
        z.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 22);
        let _ = std::fs::remove_dir_all(src);
    }

    /// A one-entry STORED zip with `name`, `data` and Unix `mode`.
    fn crafted_zip(name: &str, data: &[u8], mode: u32, declared: u32) -> Vec<u8> {
        let crc = crc32fast::hash(data);
        let mut z = Vec::new();
        put32(&mut z, LOCAL_SIG);
        for v in [20u16, 0, 0, 0, 0] {
            put16(&mut z, v);
        }
        put32(&mut z, crc);
        put32(&mut z, data.len() as u32);
        put32(&mut z, declared);
        put16(&mut z, name.len() as u16);
        put16(&mut z, 0);
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(data);
        let cd = z.len() as u32;
        put32(&mut z, CENTRAL_SIG);
        for v in [(3u16 << 8) | 20, 20, 0, 0, 0, 0] {
            put16(&mut z, v);
        }
        put32(&mut z, crc);
        put32(&mut z, data.len() as u32);
        put32(&mut z, declared);
        put16(&mut z, name.len() as u16);
        for v in [0u16, 0, 0, 0] {
            put16(&mut z, v);
        }
        put32(&mut z, mode << 16);
        put32(&mut z, 0);
        z.extend_from_slice(name.as_bytes());
        let cd_size = z.len() as u32 - cd;
        put32(&mut z, EOCD_SIG);
        for v in [0u16, 0, 1, 1] {
            put16(&mut z, v);
        }
        put32(&mut z, cd_size);
        put32(&mut z, cd);
        put16(&mut z, 0);
        z
    }

    #[test]
    fn hostile_zips_are_refused() {
        let base = tmp("hostile");
        let zpath = base.join("x.zip");
        let cases: [(&str, &[u8], u32, u32, &str); 5] = [
            ("../escape.txt", b"gotcha", 0o100644, 6, "unsafe"),
            ("/abs.txt", b"gotcha", 0o100644, 6, "unsafe"),
            ("link", b"/etc/passwd", 0o120777, 11, "symbolic link"),
            ("sub/../../x", b"gotcha", 0o100644, 6, "unsafe"),
            // Declares 3 bytes, holds 6: refused, and nothing larger is written.
            ("liar.txt", b"gotcha", 0o100644, 3, "larger than declared"),
        ];
        for (name, data, mode, declared, why) in cases {
            std::fs::write(&zpath, crafted_zip(name, data, mode, declared)).unwrap();
            let dest = base.join("out");
            std::fs::create_dir_all(&dest).unwrap();
            let err = extract(&zpath, &dest, 1 << 20).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
            assert!(!base.join("escape.txt").exists());
            assert!(!dest.join("link").exists());
            std::fs::remove_dir_all(&dest).unwrap();
        }
        // A sane one extracts, with the mode's permission bits only.
        std::fs::write(&zpath, crafted_zip("ok.txt", b"fine", 0o104755, 4)).unwrap();
        let dest = base.join("out");
        std::fs::create_dir_all(&dest).unwrap();
        extract(&zpath, &dest, 1 << 20).unwrap();
        assert_eq!(std::fs::read(dest.join("ok.txt")).unwrap(), b"fine");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dest.join("ok.txt"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o755, "no setuid");
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\..\\x",
            "C:/x",
            "",
            "a//b",
            "x\0y",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_relative_path("a/b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(safe_relative_path("a.txt").unwrap(), PathBuf::from("a.txt"));
    }

    #[test]
    fn dos_dates() {
        // 2021-03-04 05:06:08 UTC
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_614_834_368);
        let (time, date) = dos_time(Some(t));
        assert_eq!(date, ((2021 - 1980) << 9) | (3 << 5) | 4);
        assert_eq!(time, (5 << 11) | (6 << 5) | 4);
    }
}
