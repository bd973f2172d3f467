//! Reading from the user: the wormhole code (with tab completion on a terminal) and
//! single lines from stdin.
//!
//! Blocking reads run on plain threads, so the async side stays free to notice Ctrl-C
//! and the process can exit without joining them. Those threads are outside any tokio
//! runtime, which is what [`Engine::block_on`] requires.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, IsTerminal, Write};

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tokio::sync::oneshot;
use wormhole_core::{Engine, Error, InputHelper, Wormhole};

use crate::failure::Failure;

/// The reference's prompt for the code.
const PROMPT: &str = "Enter receive wormhole code: ";
/// Printed after the code was entered without using completion, like the reference.
const TAB_NOTE: &str = " (note: you can use <Tab> to complete words)";

/// Run `f` on a new plain thread and await its result.
pub async fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
        .map_err(|_| Failure::Other("the input thread failed".into()))
}

/// Print `prompt` on stdout and read one line from stdin (on a plain thread). End of
/// input gives an empty line.
pub async fn prompt_line(prompt: &str) -> Result<String, Failure> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    on_thread(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await?
    .map_err(|e| Failure::Other(format!("cannot read from stdin: {e}")))
}

/// Ask for the code and give it to `w`: interactively with completion when stdin is a
/// terminal, otherwise by reading one line.
pub async fn input_code(w: &Wormhole) -> Result<(), Failure> {
    let used_completion = if std::io::stdin().is_terminal() {
        let helper = w.input_code()?;
        on_thread(move || read_code_interactively(helper)).await??
    } else {
        let line = prompt_line(PROMPT).await?;
        let code = line.trim();
        if !code.contains('-') {
            return Err(Error::InvalidCode("incomplete wormhole code").into());
        }
        w.set_code(code)?;
        false
    };
    if !used_completion {
        eprintln!("{TAB_NOTE}");
    }
    Ok(())
}

/// The rustyline loop: read the code with completion and commit it through `helper`.
/// Returns whether completion was used.
fn read_code_interactively(helper: InputHelper) -> Result<bool, Failure> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let readline_error = |e: ReadlineError| Failure::Other(format!("cannot read the code: {e}"));
    let mut editor: Editor<CodeCompleter, DefaultHistory> =
        Editor::with_config(config).map_err(readline_error)?;
    editor.set_helper(Some(CodeCompleter::new(helper)?));
    let line = match editor.readline(PROMPT) {
        Ok(line) => line,
        Err(ReadlineError::Interrupted) => return Err(Failure::Interrupted),
        Err(ReadlineError::Eof) => String::new(),
        Err(e) => return Err(readline_error(e)),
    };
    let completer = editor
        .helper()
        .ok_or_else(|| Failure::Other("the completer is missing".into()))?;
    completer.finish(line.trim())?;
    Ok(completer.used.get())
}

/// Tab completion of codes, driven by the wormhole's [`InputHelper`]: nameplates until a
/// `-` is typed, then (once the nameplate is claimed) words.
struct CodeCompleter {
    /// The wormhole's input helper.
    helper: InputHelper,
    /// Runs the helper's futures from this (non-async) thread.
    engine: Engine,
    /// The nameplate given to `choose_nameplate`; it cannot be changed afterwards.
    committed: RefCell<Option<String>>,
    /// Whether the user pressed Tab at all.
    used: Cell<bool>,
}

impl CodeCompleter {
    fn new(helper: InputHelper) -> Result<Self, Failure> {
        // Ask for the list now, so the first Tab already has nameplates to offer (each
        // Tab asks again, for the next one).
        helper.refresh_nameplates()?;
        Ok(CodeCompleter {
            helper,
            engine: Engine::global()?,
            committed: RefCell::new(None),
            used: Cell::new(false),
        })
    }

    /// Choose `nameplate` unless already chosen; returns whether it was chosen just now.
    /// A different nameplate than the one chosen earlier is an error.
    fn commit(&self, nameplate: &str) -> Result<bool, Error> {
        let mut committed = self.committed.borrow_mut();
        match committed.as_deref() {
            Some(n) if n == nameplate => Ok(false),
            Some(_) => Err(Error::AlreadyChoseNameplate),
            None => {
                self.helper.choose_nameplate(nameplate)?;
                *committed = Some(nameplate.to_owned());
                Ok(true)
            }
        }
    }

    /// All completions of `text` (the whole line up to the cursor).
    fn completions(&self, text: &str) -> Result<Vec<String>, Error> {
        let Some((nameplate, words)) = text.split_once('-') else {
            if self.committed.borrow().is_some() {
                return Err(Error::AlreadyChoseNameplate);
            }
            self.helper.refresh_nameplates()?;
            return Ok(self
                .helper
                .get_nameplate_completions(text)?
                .into_iter()
                .collect());
        };
        if self.commit(nameplate)? {
            // Block until the claim is answered, so the first Tab already has words.
            self.engine
                .block_on(self.helper.when_wordlist_is_available())??;
        }
        Ok(self
            .helper
            .get_word_completions(words)?
            .into_iter()
            .map(|w| format!("{nameplate}-{w}"))
            .collect())
    }

    /// Commit the entered code: its nameplate (unless chosen while completing) and words.
    fn finish(&self, code: &str) -> Result<(), Error> {
        let (nameplate, words) = code
            .split_once('-')
            .ok_or(Error::InvalidCode("incomplete wormhole code"))?;
        self.commit(nameplate)?;
        self.helper.choose_words(words)
    }
}

impl Completer for CodeCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        self.used.set(true);
        // Like the reference, offer nothing when completion fails (e.g. the nameplate
        // was edited after it was chosen); entering such a code then fails.
        Ok((0, self.completions(&line[..pos]).unwrap_or_default()))
    }
}

impl Hinter for CodeCompleter {
    type Hint = String;
}

impl Highlighter for CodeCompleter {}

impl Validator for CodeCompleter {}

impl Helper for CodeCompleter {}
