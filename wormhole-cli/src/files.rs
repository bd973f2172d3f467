//! Files and directories: transit options from the command line, the progress bar, and
//! the reference CLI's messages around a transfer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wormhole_core::transfer::zip::{self, ZipStream};
use wormhole_core::transfer::{
    self, IncomingOffer, OfferKind, Received, TransferEvent, TransferOptions,
};
use wormhole_core::transit::{PathKind, TransitConfig};
use wormhole_core::{Error, Wormhole};

use crate::common::Server;
use crate::display::{escape_like_python_repr, natural_size, terminal_safe};
use crate::failure::Failure;
use crate::input::prompt_line;

/// How a connection is described, like the reference's `describe()` (`tor->` instead of
/// `->` in Tor mode).
pub fn describe(p: &PathKind, tor: bool) -> String {
    let to = if tor { "tor->" } else { "->" };
    match p {
        PathKind::DirectOutbound(a) => format!("{to}tcp:{a}"),
        PathKind::DirectInbound(a) => format!("<-{a}"),
        PathKind::Relay(a) => format!("{to}relay:tcp:{a}"),
    }
}

/// Transfer options from the global `--transit-helper` and the subcommand's flags.
pub fn options(
    server: &Server,
    no_listen: bool,
    hide_progress: bool,
) -> Result<TransferOptions, Failure> {
    let helper = Some(server.transit_helper.as_str()).filter(|h| !h.is_empty());
    let mut transit = TransitConfig::with_relay(helper, !no_listen)?;
    transit.tor = server.tor.is_some();
    let tor = transit.tor;
    let mut opts = TransferOptions {
        transit,
        ..TransferOptions::default()
    };
    // The bar appears with the first progress report, after "Sending (…)..".
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
    if !hide_progress {
        let bar2 = bar.clone();
        opts.progress = Some(Arc::new(move |done, total| {
            let mut b = bar2.lock().unwrap_or_else(|e| e.into_inner());
            let pb = b.get_or_insert_with(|| new_bar(total));
            pb.set_position(done);
            if done >= total {
                pb.finish();
            }
        }));
    }
    opts.events = Some(Arc::new(move |e: &TransferEvent| match e {
        TransferEvent::Connected(p) => eprintln!("Sending ({})..", describe(p, tor)),
        TransferEvent::Resumed { offset } => {
            eprintln!("Resuming after {offset} bytes of an earlier attempt")
        }
        TransferEvent::DataSent => {
            finish_bar(&bar);
            eprintln!("File sent.. waiting for confirmation");
        }
        TransferEvent::DataReceived => finish_bar(&bar),
        _ => {}
    }));
    Ok(opts)
}

fn finish_bar(bar: &Mutex<Option<ProgressBar>>) {
    if let Some(pb) = bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        pb.finish();
    }
}

fn new_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{percent:>3}%|{wide_bar}| {bytes}/{total_bytes} [{elapsed}<{eta}, {bytes_per_sec}]",
    ) {
        pb.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    pb
}

/// The receiver-side wording of the connection line.
fn receiver_options(opts: &mut TransferOptions) {
    let bar_events = opts.events.take();
    let tor = opts.transit.tor;
    opts.events = Some(Arc::new(move |e: &TransferEvent| match e {
        TransferEvent::Connected(p) => eprintln!("Receiving ({})..", describe(p, tor)),
        other => {
            if let Some(f) = &bar_events {
                f(other)
            }
        }
    }));
}

/// What a file send offers, prepared before the code is shown (like the reference, which
/// builds the zip first so it can announce its size).
pub enum Offer {
    /// One file.
    File(PathBuf),
    /// A directory, or several paths as one directory: its name and the zip stream.
    Zip { name: String, zip: ZipStream },
}

/// Check that every path exists (before connecting, like the reference).
pub fn check_paths(paths: &[PathBuf]) -> Result<(), Failure> {
    for p in paths {
        std::fs::metadata(p).map_err(|e| {
            Failure::Other(format!(
                "Cannot send: no file/directory named '{}': {e}",
                p.display()
            ))
        })?;
    }
    Ok(())
}

/// Prepare the offer for `paths`: one file as itself, one directory or several paths as a
/// directory zipped while streaming (several: named after the first, with the paths at
/// its top level). Prints the reference's "Sending …" line if `announce`.
pub async fn prepare(
    paths: &[PathBuf],
    ignore_unsendable: bool,
    announce: bool,
) -> Result<Offer, Failure> {
    let first = paths
        .first()
        .ok_or_else(|| Failure::Other("nothing to send".into()))?;
    let md = std::fs::metadata(first)
        .map_err(|e| Failure::Other(format!("{}: {e}", first.display())))?;
    if paths.len() == 1 && !md.is_dir() {
        let name = first
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if announce {
            eprintln!("Sending {} file named '{name}'", natural_size(md.len()));
        }
        return Ok(Offer::File(first.clone()));
    }
    if announce {
        eprintln!("Building zipfile..");
    }
    let name = if paths.len() == 1 {
        first
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        zip::bundle_name(paths)?
    };
    let list = paths.to_vec();
    let zip = tokio::task::spawn_blocking(move || {
        let mut note = |p: &Path, e: &std::io::Error| {
            eprintln!("{}: {e} (ignoring error)", p.display());
        };
        let skip = ignore_unsendable.then_some(&mut note as &mut zip::Skip<'_>);
        if list.len() == 1 {
            ZipStream::new_skipping(&list[0], skip)
        } else {
            ZipStream::from_paths(&list, skip)
        }
    })
    .await
    .map_err(|e| Failure::Other(e.to_string()))??;
    if announce {
        eprintln!(
            "Sending directory ({} compressed) named '{}'",
            natural_size(zip.zipsize),
            terminal_safe(&name)
        );
    }
    Ok(Offer::Zip { name, zip })
}

/// Send a prepared offer after the key is verified.
pub async fn send(w: &Wormhole, offer: Offer, opts: &TransferOptions) -> Result<(), Failure> {
    match offer {
        Offer::Zip { name, zip } => transfer::send_zip(w, &name, zip, opts).await?,
        Offer::File(path) => transfer::send_path(w, &path, opts).await?,
    }
    eprintln!("Confirmation received. Transfer complete.");
    Ok(())
}

/// `repr(s)` in Python: quoted and escaped.
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    format!("{quote}{}{quote}", escape_like_python_repr(s))
}

/// Receive whatever the sender offers. Text is printed on stdout.
pub async fn receive(
    w: &Wormhole,
    opts: &mut TransferOptions,
    accept_file: bool,
    output: Option<&str>,
) -> Result<(), Failure> {
    receiver_options(opts);
    let offer = match transfer::receive(w, opts).await? {
        Received::Text(t) => {
            println!("{}", escape_like_python_repr(&t));
            return Ok(());
        }
        Received::Offer(o) => o,
    };
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Other(format!("no current directory: {e}")))?;
    let output = output.map(|o| cwd.join(o));
    let dest = offer.destination(&cwd, output.as_deref());
    // Like the reference: only an explicit -o may replace something.
    let overwrite = output.as_ref().is_some_and(|o| o.exists()) && dest.exists();
    if overwrite {
        eprintln!(
            "Overwriting {}",
            python_repr(
                &output
                    .as_ref()
                    .map(|o| o.display().to_string())
                    .unwrap_or_default()
            )
        );
    }
    // The reference's wording for the two common refusals, then the core's full check.
    let refusal = if dest.symlink_metadata().is_ok() && !overwrite {
        Some(format!(
            "Error: refusing to overwrite existing {}",
            python_repr(offer.name())
        ))
    } else {
        let need = match offer.kind() {
            OfferKind::File => offer.transfer_size(),
            OfferKind::Directory { numbytes, .. } => *numbytes,
        };
        let parent = dest.parent().unwrap_or(&cwd);
        match transfer::free_space(parent) {
            Some(free) if free < need => Some(format!(
                "Error: insufficient free space ({free}B) for {} ({need}B)",
                if matches!(offer.kind(), OfferKind::File) {
                    "file"
                } else {
                    "directory"
                }
            )),
            _ => None,
        }
    };
    if let Some(msg) = refusal {
        eprintln!("{msg}");
        reject_quietly(offer);
        return Err(Error::Transfer("transfer rejected".into()).into());
    }
    if let Err(e) = offer.check_destination(&dest, overwrite) {
        reject_quietly(offer);
        return Err(e.into());
    }
    let shown = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match offer.kind() {
        OfferKind::File => eprintln!(
            "Receiving file ({}) into: {}",
            natural_size(offer.transfer_size()),
            python_repr(&shown)
        ),
        OfferKind::Directory { numbytes, numfiles } => {
            eprintln!(
                "Receiving directory ({}) into: {}/",
                natural_size(offer.transfer_size()),
                python_repr(&shown)
            );
            eprintln!(
                "{numfiles} files, {} (uncompressed)",
                natural_size(*numbytes)
            );
        }
    }
    if !accept_file {
        let line = prompt_line("ok? (Y/n): ").await?;
        let answer = line.trim();
        // Enter means yes (like the reference); end of input means no.
        let yes = !line.is_empty() && (answer.is_empty() || answer.to_lowercase().starts_with('y'));
        if !yes {
            eprintln!("transfer rejected");
            reject_quietly(offer);
            return Err(Error::Transfer("transfer rejected".into()).into());
        }
    }
    let is_dir = !matches!(offer.kind(), OfferKind::File);
    let dest = offer.accept(&dest, overwrite, opts).await?;
    // The name is the sender's: nothing in it may drive the terminal or forge a line.
    let shown = terminal_safe(
        &std::path::absolute(&dest)
            .unwrap_or(dest)
            .display()
            .to_string(),
    );
    if is_dir {
        eprintln!("Unpacking zipfile..");
        eprintln!("Received files written to: {shown}");
    } else {
        eprintln!("Received file written to: {shown}");
    }
    Ok(())
}

fn reject_quietly(offer: IncomingOffer) {
    let _ = offer.reject();
}
