//! `wormhole send-many` (from wormhole-rs): offer the same files to several receivers in
//! turn, with one code, until a number of tries or a timeout is reached.
//!
//! Each round is a new wormhole on the same code: the previous round released the
//! nameplate, so the next receiver and this sender claim it afresh. Every round is also a
//! chance for an attacker to guess the code; a longer `--code-length` counters that. The
//! first round always runs; the timeout is checked while waiting for the next receiver,
//! never in the middle of a transfer.

use std::time::Duration;

use tokio::time::Instant;
use wormhole_core::validate_code;

use crate::args::SendManyArgs;
use crate::common::{Server, run_and_close, with_notice};
use crate::failure::Failure;
use crate::{files, qr};

/// Run `wormhole send-many`.
pub async fn run(server: &Server, args: &SendManyArgs) -> Result<(), Failure> {
    if args.tries == 0 {
        return Err(Failure::Other("--tries must be at least 1".into()));
    }
    files::check_paths(&args.what)?;
    if let Some(code) = &args.code {
        validate_code(code)?;
    }
    let opts = files::options(server, args.no_listen, args.hide_progress)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout.saturating_mul(60));
    let mut code = args.code.clone();
    let (mut sent, mut failed) = (0u64, 0u64);
    for round in 0..args.tries {
        let offer = files::prepare(&args.what, false, round == 0).await?;
        let w = server.create()?;
        let outcome = run_and_close(&w, async {
            if round == 0 {
                server.show_welcome(&w.get_welcome().await?);
            }
            match &code {
                Some(c) => w.set_code(c)?,
                None => w.allocate_code(args.code_length)?,
            }
            let c = w.get_code().await?;
            if round == 0 {
                eprintln!("Wormhole code is: {c}");
                if !args.no_qr {
                    if let Some(qr) = qr::render(&c) {
                        eprint!("{qr}");
                    }
                }
                eprintln!(
                    "This code is offered to up to {} receivers, for {} minutes. On the \
                     other computers, please run:\n\nwormhole receive {c}\n",
                    args.tries, args.timeout
                );
            }
            code = Some(c);
            // The first receiver is waited for however long it takes; later ones only
            // until the deadline.
            let key = w.get_unverified_key();
            if round == 0 {
                key.await?;
            } else {
                match tokio::time::timeout_at(deadline, key).await {
                    Ok(k) => k?,
                    Err(_) => return Ok(false),
                };
            }
            with_notice(
                w.get_verifier(),
                "Key established, waiting for confirmation...",
            )
            .await?;
            files::send(&w, offer, &opts).await?;
            Ok(true)
        })
        .await;
        match outcome {
            Ok(true) => {
                sent += 1;
                eprintln!(
                    "Sent to receiver {sent} ({} of {} tries used).",
                    round + 1,
                    args.tries
                );
            }
            Ok(false) => {
                eprintln!("The {} minutes are over.", args.timeout);
                break;
            }
            Err(Failure::Interrupted) => return Err(Failure::Interrupted),
            Err(e) if round == 0 && code.is_none() => return Err(e),
            Err(e) => {
                failed += 1;
                eprintln!("Receiver {}: {e}", round + 1);
            }
        }
        if Instant::now() >= deadline {
            eprintln!("The {} minutes are over.", args.timeout);
            break;
        }
    }
    eprintln!("Sent {sent} times; {failed} receivers failed.");
    if sent == 0 {
        return Err(Failure::Other("nothing was sent".into()));
    }
    Ok(())
}
