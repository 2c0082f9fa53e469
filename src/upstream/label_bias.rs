//! The label ban as `logit_bias`: token ids of the words to avoid, in the upstream's own
//! tokenizer.
//!
//! An OpenAI-style bias applies to a token wherever it appears, so psy cannot ban a word
//! only when it is being completed (as the local generator's `banned_words` does). It bans
//! the first token of each spelling of the word (as is, capitalised, upper case, with and
//! without a leading space), where that token is the whole word, or at least 4 letters and
//! half the word: a shorter first piece (" dis" of " disorder", " P" of " PTSD") would ban
//! too many ordinary words, so such a spelling stays unbanned and the redraft's instruction
//! and the guard's withholding cover it.

use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::session::{ModelDrafter, SessionError};

/// Token ids to bias with -100 so that the upstream cannot start any of `phrases` (and their
/// longest words) again.
pub fn label_bias(tok: &Tokenizer, phrases: &[String]) -> Result<Vec<u32>, SessionError> {
    let mut ids: Vec<u32> = Vec::new();
    for word in ModelDrafter::banned_words(phrases) {
        let mut capital = word.clone();
        if let Some(first) = capital.get(..1) {
            capital = format!("{}{}", first.to_uppercase(), &capital[1..]);
        }
        let upper = word.to_uppercase();
        for form in [word.clone(), capital, upper] {
            for spelled in [form.clone(), format!(" {form}")] {
                let pieces = tok.encode(&spelled, false)?;
                let Some(&first) = pieces.first() else {
                    continue;
                };
                let text = tok.decode(&[first], true)?;
                let letters = text.trim().chars().count();
                let long = letters >= 4 && 2 * letters >= form.chars().count();
                if (pieces.len() == 1 || long) && !ids.contains(&first) {
                    ids.push(first);
                }
            }
        }
    }
    Ok(ids)
}
