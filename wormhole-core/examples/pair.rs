//! Two wormholes in one process exchange a message each way through a mailbox server.
//!
//! `cargo run -p wormhole-core --example pair -- ws://127.0.0.1:4000/v1`

use wormhole_core::{Options, Wormhole};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), wormhole_core::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:4000/v1".into());
    let appid = "example.com/pair";
    let a = Wormhole::create(appid, &url, Options::default())?;
    a.allocate_code(2)?;
    let code = a.get_code().await?;
    println!("code: {code}");
    a.send_message(b"hello from A".to_vec())?;

    let b = Wormhole::create(appid, &url, Options::default())?;
    b.set_code(&code)?;
    b.send_message(b"hello from B".to_vec())?;

    println!(
        "B got: {}",
        String::from_utf8_lossy(&b.get_message().await?)
    );
    println!(
        "A got: {}",
        String::from_utf8_lossy(&a.get_message().await?)
    );
    let (va, vb) = (a.get_verifier().await?, b.get_verifier().await?);
    assert_eq!(va, vb);
    println!("verifier: {}", hex_string(&va));
    a.close().await?;
    b.close().await?;
    println!("both closed happily");
    Ok(())
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
