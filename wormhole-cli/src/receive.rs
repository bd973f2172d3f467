//! `wormhole receive`: text, files and directories.

use wormhole_core::{DEFAULT_CODE_LENGTH, Wormhole, text, validate_code};

use crate::args::ReceiveArgs;
use crate::common::{Server, run_and_close, with_notice};
use crate::display::escape_like_python_repr;
use crate::failure::Failure;
use crate::files;
use crate::input::input_code;

/// Run `wormhole receive`.
pub async fn run(server: &Server, args: &ReceiveArgs) -> Result<(), Failure> {
    if let Some(code) = &args.code {
        validate_code(code)?;
    }
    let w = server.create_traced(args.debug_state.as_deref(), "recv")?;
    run_and_close(&w, exchange(server, args, &w)).await
}

/// Everything between connecting and closing.
async fn exchange(server: &Server, args: &ReceiveArgs, w: &Wormhole) -> Result<(), Failure> {
    server.show_welcome(&w.get_welcome().await?);
    server.timing.add("welcome");
    match (&args.code, args.zeromode, args.allocate) {
        (_, true, _) => w.set_code("0-")?,
        (Some(code), ..) => w.set_code(code)?,
        (None, false, true) => {
            w.allocate_code(args.code_length.unwrap_or(DEFAULT_CODE_LENGTH))?;
            let code = w.get_code().await?;
            eprintln!("Allocated code: {code}");
            eprintln!("On the other computer, please run:");
            eprintln!("   wormhole send --code {code} <filename>");
        }
        (None, false, false) => input_code(w).await?,
    }
    w.get_code().await?;
    server.timing.add("code established");
    with_notice(w.get_unverified_key(), "Waiting for sender...").await?;
    server.timing.add("key established");
    let verifier = with_notice(
        w.get_verifier(),
        "Key established, waiting for confirmation...",
    )
    .await?;
    server.timing.add("verified");
    if args.verify {
        eprintln!("Verifier {}.", hex::encode(verifier));
    }
    if args.only_text {
        let message = text::receive_text(w).await?;
        println!("{}", escape_like_python_repr(&message));
        return Ok(());
    }
    let mut opts = files::options(server, args.no_listen, args.hide_progress)?;
    opts.resume = !args.no_resume;
    files::receive(w, &mut opts, args.accept_file, args.output_file.as_deref()).await?;
    server.timing.add("transfer complete");
    Ok(())
}
