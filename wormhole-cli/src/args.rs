//! The command line: global options, the subcommands and their flags (those of the
//! reference CLI, plus `send-many` and `completion` from wormhole-rs, and `forward` after
//! fowl). Plain clap definitions; nothing here imports the rest of the program but the
//! pure service-spec parsers of `forward`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use wormhole_core::PUBLIC_RELAY_URL;

/// The reference CLI's default transit relay.
const DEFAULT_TRANSIT_HELPER: &str = "tcp:transit.magic-wormhole.io:4001";

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "wormhole",
    version,
    about = "Create a Magic Wormhole and communicate through it."
)]
pub struct Cli {
    /// rendezvous relay to use
    #[arg(long, value_name = "URL", env = "WORMHOLE_RELAY_URL", default_value = PUBLIC_RELAY_URL)]
    pub relay_url: String,
    /// transit relay to use
    #[arg(long, value_name = "tcp:HOST:PORT", env = "WORMHOLE_TRANSIT_HELPER", default_value = DEFAULT_TRANSIT_HELPER)]
    pub transit_helper: String,
    /// appid to use (default: the file-transfer one; for `ssh`,
    /// `lothar.com/wormhole/ssh-add`; for `forward`, fowl's `meejah.ca/wormhole/forward`)
    #[arg(long, value_name = "APPID")]
    pub appid: Option<String>,
    /// (debug) write timing data to file
    #[arg(long, value_name = "FILE.json")]
    pub dump_timing: Option<PathBuf>,
    /// Make every connection (mailbox and Transit) through this SOCKS5 proxy, which also
    /// resolves the names; Transit then neither listens nor sends our addresses
    #[arg(long, value_name = "[USER:PASSWORD@]HOST:PORT", env = "WORMHOLE_SOCKS5",
          value_parser = socks5)]
    pub socks5: Option<wormhole_core::proxy::Socks5>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a text message, file, or directory
    #[command(visible_alias = "tx")]
    Send(SendArgs),
    /// Receive a text message, file, or directory (from 'wormhole send')
    #[command(visible_alias = "rx", alias = "recv", alias = "recieve")]
    Receive(ReceiveArgs),
    /// Send a file or directory to several receivers in turn, with the same code.
    SendMany(SendManyArgs),
    /// Facilitate sending/receiving SSH public keys
    #[command(subcommand)]
    Ssh(SshCommand),
    /// Forward TCP connections to and from the peer (like fowl, and with fowl)
    #[command(long_about = FORWARD_ABOUT, after_help = FORWARD_EXAMPLES)]
    Forward(ForwardArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell to complete for.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// `wormhole ssh …`.
#[derive(Debug, Subcommand)]
pub enum SshCommand {
    /// Add a public-key to a ~/.ssh/authorized_keys file
    Invite {
        #[command(flatten)]
        tor: TorArgs,
        /// length of code (in bytes/words)
        #[arg(short = 'c', long, value_name = "NUMWORDS", default_value_t = 2)]
        code_length: usize,
        /// Add to USER's ~/.ssh/authorized_keys
        #[arg(short = 'u', long, value_name = "USER")]
        user: Option<String>,
    },
    /// Send your SSH public-key. In response to a `wormhole ssh invite` this sends the
    /// public key you specify (if there is only one in ~/.ssh/*.pub, that one).
    Accept {
        #[command(flatten)]
        tor: TorArgs,
        /// The code `wormhole ssh invite` printed.
        #[arg(value_name = "CODE")]
        code: String,
        /// The public key to send: a `.pub` file, or a directory to look in.
        #[arg(short = 'F', long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// Skip confirmation prompt to send key
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// The reference's Tor flags, on every command that connects.
#[derive(Debug, Args, Clone, Default)]
pub struct TorArgs {
    /// use Tor when connecting
    #[arg(long)]
    pub tor: bool,
    /// launch Tor, rather than use existing control/socks port
    #[arg(long, conflicts_with = "tor_control_port")]
    pub launch_tor: bool,
    /// endpoint descriptor for Tor control port
    #[arg(long, value_name = "ENDPOINT")]
    pub tor_control_port: Option<String>,
    /// Also publish an onion service for the transfer (through the control port), so
    /// that two Tor-mode peers can connect without a relay
    #[arg(long)]
    pub tor_onion: bool,
}

impl TorArgs {
    /// Whether Tor is wanted (`--launch-tor` and `--tor-control-port` imply `--tor`).
    pub fn wanted(&self) -> bool {
        self.tor || self.launch_tor || self.tor_control_port.is_some() || self.tor_onion
    }
}

/// Arguments of `wormhole send-many`.
#[derive(Debug, Args)]
pub struct SendManyArgs {
    #[command(flatten)]
    pub tor: TorArgs,
    /// Only send the file up to N times, limiting the number of people that may receive
    /// it (each try is also a try at guessing the code).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 30)]
    pub tries: u64,
    /// Stop offering the file after this many minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    pub timeout: u64,
    /// Human-generated code phrase (default: allocate one).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Number of words in an allocated code.
    #[arg(short = 'c', long, value_name = "NUMWORDS", default_value_t = 2)]
    pub code_length: usize,
    /// Don't show the QR code of `wormhole-transfer:CODE`.
    #[arg(long)]
    pub no_qr: bool,
    /// suppress progress-bar display
    #[arg(long)]
    pub hide_progress: bool,
    /// (debug) don't open a listening socket for Transit
    #[arg(long)]
    pub no_listen: bool,
    /// The files or directories to send (several go as one directory).
    #[arg(value_name = "FILENAME|DIRNAME", required = true)]
    pub what: Vec<PathBuf>,
}

/// Arguments of `wormhole send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub tor: TorArgs,
    /// text message to send, instead of a file. Use '-' to read from stdin.
    #[arg(long, value_name = "MESSAGE")]
    pub text: Option<String>,
    /// human-generated code phrase
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// length of code (in bytes/words)
    #[arg(short = 'c', long, value_name = "NUMWORDS", default_value_t = 2)]
    pub code_length: usize,
    /// display verification string (and wait for approval)
    #[arg(short = 'v', long)]
    pub verify: bool,
    /// enable no-code anything-goes mode
    #[arg(short = '0', conflicts_with = "code")]
    pub zeromode: bool,
    /// Don't show the QR code of `wormhole-transfer:CODE` (also: WORMHOLE_QR=0).
    #[arg(long, overrides_with = "qr")]
    pub no_qr: bool,
    /// Generate and show ASCII-based QR code (default; also WORMHOLE_QR=1)
    #[arg(long, overrides_with = "no_qr")]
    pub qr: bool,
    /// suppress progress-bar display
    #[arg(long)]
    pub hide_progress: bool,
    /// (debug) don't open a listening socket for Transit
    #[arg(long, overrides_with = "listen")]
    pub no_listen: bool,
    /// Open a listening socket for Transit (default).
    #[arg(long, overrides_with = "no_listen")]
    pub listen: bool,
    /// Don't raise an error if a file can't be read.
    #[arg(long)]
    pub ignore_unsendable_files: bool,
    /// Debug state-machine transitions. Possible machines to debug are accepted as a
    /// comma-separated list and the default is all of them. Valid machines are any of:
    /// B,N,M,S,O,K,SK,R,RC,L,C,T
    #[arg(long, value_name = "MACHINES", num_args = 0..=1,
          default_missing_value = "B,N,M,S,O,K,SK,R,RC,L,C,T", value_parser = machines)]
    pub debug_state: Option<String>,
    /// The file or directory to send; several are sent as one directory.
    #[arg(value_name = "WHAT")]
    pub what: Vec<PathBuf>,
}

/// Arguments of `wormhole receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    #[command(flatten)]
    pub tor: TorArgs,
    /// refuse file transfers, only accept text transfers
    #[arg(short = 't', long)]
    pub only_text: bool,
    /// accept file transfer without asking for confirmation
    #[arg(long, env = "WORMHOLE_ACCEPT_FILE")]
    pub accept_file: bool,
    /// The file or directory to create, overriding the name suggested by the sender. If
    /// the directory exists already, the incoming transfer will be put inside the
    /// specified directory.
    #[arg(short = 'o', long, value_name = "FILENAME|DIRNAME")]
    pub output_file: Option<String>,
    /// (debug) don't open a listening socket for Transit
    #[arg(long, overrides_with = "listen")]
    pub no_listen: bool,
    /// Open a listening socket for Transit (default).
    #[arg(long, overrides_with = "no_listen")]
    pub listen: bool,
    /// display verification string (and wait for approval)
    #[arg(short = 'v', long)]
    pub verify: bool,
    /// suppress progress-bar display
    #[arg(long)]
    pub hide_progress: bool,
    /// Allocate a fresh code (do not prompt for one)
    #[arg(short = 'a', long, conflicts_with = "code")]
    pub allocate: bool,
    /// length of code (in bytes/words); needs --allocate
    #[arg(short = 'c', long, value_name = "NUMWORDS", requires = "allocate")]
    pub code_length: Option<usize>,
    /// enable no-code anything-goes mode
    #[arg(short = '0', conflicts_with_all = ["code", "allocate"])]
    pub zeromode: bool,
    /// Don't keep the data of a cut transfer, and don't resume one (by default a sender
    /// of this program resumes where an earlier attempt of the same file stopped)
    #[arg(long)]
    pub no_resume: bool,
    /// Debug state-machine transitions. Possible machines to debug are accepted as a
    /// comma-separated list and the default is all of them. Valid machines are any of:
    /// B,N,M,S,O,K,SK,R,RC,L,C,T
    #[arg(long, value_name = "MACHINES", num_args = 0..=1,
          default_missing_value = "B,N,M,S,O,K,SK,R,RC,L,C,T", value_parser = machines)]
    pub debug_state: Option<String>,
    /// The code from the sender; asked for interactively when omitted.
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
}

/// `--debug-state MACHINES`: the reference's machine letters, comma-separated.
fn machines(s: &str) -> Result<String, String> {
    let unknown: Vec<&str> = s
        .split(',')
        .filter(|m| !wormhole_core::trace::MACHINES.contains(m))
        .collect();
    if unknown.is_empty() {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "Cannot debug unknown machines: {}",
            unknown.join(" ")
        ))
    }
}

/// `--socks5`: a proxy address, checked when the arguments are parsed.
fn socks5(s: &str) -> Result<wormhole_core::proxy::Socks5, String> {
    wormhole_core::proxy::Socks5::parse(s).map_err(|e| e.to_string())
}

const FORWARD_ABOUT: &str = "\
Forward TCP connections to and from the peer over a dilated wormhole, like fowl \
(and with fowl 26.8.0: same application id, same messages).

Every forwarded service has a name. The side whose server runs there says \
--remote NAME[:PORT]: it asks the peer to listen for NAME and connects each connection \
the peer forwards to 127.0.0.1:PORT. The other side says --local NAME[:PORT]: it allows \
the peer to ask, listens on 127.0.0.1:PORT when asked, and forwards each connection made \
there to the peer. A port left out is chosen free and printed. A side refuses a name or \
a port it did not allow, and the asking side prints the reason.

Without CODE, a code is allocated and printed. Runs until Ctrl-C or until the peer closes.";

const FORWARD_EXAMPLES: &str = "\
Examples:
  laptop$  wormhole forward --remote web:8080      # our web server is on port 8080
  desktop$ wormhole forward --local web:8080 CODE   # browse http://127.0.0.1:8080/
  (either side can be fowl: `fowl --service web:8080`, `fowl --client web:8080 CODE`)";

/// Arguments of `wormhole forward`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("services").required(true).multiple(true)))]
// No onion service for Dilation: accepted only to say so (main.rs).
#[command(mut_arg("tor_onion", |a| a.hide(true)))]
pub struct ForwardArgs {
    /// Allow the peer to ask us to listen for service NAME, on LISTEN-PORT (default: a
    /// free port) of ADDR (default 127.0.0.1); connections made there go to the peer.
    /// remote-connect= names the port the peer must connect to.
    #[arg(short = 'L', long, visible_alias = "client", group = "services",
          value_name = "NAME[:LISTEN-PORT][:bind=ADDR][:remote-connect=PORT]",
          value_parser = crate::forward::spec::LocalSpec::parse)]
    pub local: Vec<crate::forward::spec::LocalSpec>,
    /// Our server for service NAME listens on CONNECT-PORT (default: a free port, printed)
    /// of ADDR (default 127.0.0.1): ask the peer to listen for NAME (on listen=PORT if
    /// given) and forward its connections here.
    #[arg(short = 'R', long, visible_alias = "service", group = "services",
          value_name = "NAME[:CONNECT-PORT][:listen=PORT][:address=ADDR]",
          value_parser = crate::forward::spec::RemoteSpec::parse)]
    pub remote: Vec<crate::forward::spec::RemoteSpec>,
    /// length of code (in bytes/words), when we allocate one
    #[arg(short = 'c', long, value_name = "NUMWORDS", default_value_t = 2)]
    pub code_length: usize,
    /// Don't listen for direct connections from the peer (the relay is used instead)
    #[arg(long)]
    pub no_listen: bool,
    /// The code the peer printed (without it, one is allocated and printed)
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
    #[command(flatten)]
    pub tor: TorArgs,
}
