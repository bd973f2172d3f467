//! The input helper: interactive code entry with nameplate and word completion.

use std::sync::Arc;

use super::error::WormholeError;

/// Interactive code entry, from `Wormhole.inputCode()`: refresh the nameplate list, offer
/// completions, then choose the nameplate and the words. Errors follow the seed:
/// `AlreadyChoseNameplate`, `AlreadyChoseWords`, `MustChooseNameplateFirst`.
#[derive(::uniffi::Object)]
pub struct InputHelper {
    pub(crate) inner: wormhole_core::InputHelper,
}

#[::uniffi::export]
impl InputHelper {
    /// Asks the server for the nameplates in use (completions use the latest answer).
    pub fn refresh_nameplates(&self) -> Result<(), WormholeError> {
        Ok(self.inner.refresh_nameplates()?)
    }

    /// Nameplates starting with `prefix`, each with its trailing `-`, sorted.
    pub fn get_nameplate_completions(&self, prefix: String) -> Result<Vec<String>, WormholeError> {
        Ok(self
            .inner
            .get_nameplate_completions(&prefix)?
            .into_iter()
            .collect())
    }

    /// Commits the nameplate (digits only) and claims it.
    pub fn choose_nameplate(&self, nameplate: String) -> Result<(), WormholeError> {
        Ok(self.inner.choose_nameplate(&nameplate)?)
    }

    /// Returns once the chosen nameplate is claimed and word completion works.
    pub async fn when_wordlist_is_available(self: Arc<Self>) -> Result<(), WormholeError> {
        Ok(self.inner.when_wordlist_is_available().await?)
    }

    /// Completions of the words typed so far (`"purple-sa"` → `["purple-sausages"]`).
    pub fn get_word_completions(&self, prefix: String) -> Result<Vec<String>, WormholeError> {
        Ok(self
            .inner
            .get_word_completions(&prefix)?
            .into_iter()
            .collect())
    }

    /// Commits the words (`"purple-sausages"`); the code becomes `NAMEPLATE-WORDS`.
    pub fn choose_words(&self, words: String) -> Result<(), WormholeError> {
        Ok(self.inner.choose_words(&words)?)
    }
}
