//! The session passphrase: four words from the EFF short wordlist 2.0.
//!
//! The initiator shows the passphrase and people type it on every joining
//! machine, so it has to be easy to read aloud and quick to type. Four words
//! out of 1,296 give 41 bits, plenty for a session that lasts minutes and whose
//! HMAC key is stretched with Argon2id ([`super::hmac`]). Every word in the list
//! has a unique three-letter prefix, which is what makes [`complete`] work: the
//! joiner types three letters and Tab per word.

use std::sync::LazyLock;

use rand::TryRngCore;
use rand::rngs::OsRng;
use rand::seq::IndexedRandom;

use super::Secret;

/// The 1,296 words of the EFF short wordlist 2.0, in list order.
pub static WORDS: LazyLock<Box<[&'static str]>> = LazyLock::new(|| {
    include_str!("../../data/eff_short_wordlist_2_0.txt")
        .lines()
        .collect()
});

/// How many words a passphrase has.
const LENGTH: usize = 4;

/// A fresh passphrase: four words drawn uniformly from [`WORDS`] by the OS
/// CSPRNG, joined by single spaces.
pub fn generate() -> Secret<String> {
    let mut rng = OsRng.unwrap_err();
    let words: Vec<&str> = (0..LENGTH)
        .map(|_| *WORDS.choose(&mut rng).expect("the wordlist is not empty"))
        .collect();
    // Sized up front so the secret is never reallocated (and left behind) while built.
    let mut passphrase = String::with_capacity(words.iter().map(|w| w.len() + 1).sum());
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            passphrase.push(' ');
        }
        passphrase.push_str(word);
    }
    Secret::new(passphrase)
}

/// The passphrase as it is compared: no surrounding blanks, single spaces
/// between words.
pub fn normalize(input: &str) -> String {
    input.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a typed passphrase the way upstream's `microcloud join` does; the
/// words themselves are not checked against the list.
pub fn validate(input: &str) -> Result<(), String> {
    if input.trim().is_empty() {
        return Err("Passphrase cannot be empty".to_string());
    }
    if input.split_whitespace().count() != LENGTH {
        return Err("Passphrase has to contain exactly four elements".to_string());
    }
    Ok(())
}

/// The only word starting with `partial_word`, if exactly one does.
pub fn complete(partial_word: &str) -> Option<&'static str> {
    if partial_word.is_empty() {
        return None;
    }
    let mut matches = WORDS.iter().filter(|w| w.starts_with(partial_word));
    let first = matches.next()?;
    matches.next().is_none().then_some(*first)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn wordlist_has_1296_distinct_words_with_unique_prefixes() {
        assert_eq!(WORDS.len(), 1296);
        assert_eq!(WORDS.iter().collect::<HashSet<_>>().len(), 1296);
        let prefixes: HashSet<_> = WORDS.iter().map(|w| &w[..3]).collect();
        assert_eq!(prefixes.len(), 1296);
    }

    #[test]
    fn generates_four_listed_words() {
        let passphrase = generate();
        let words: Vec<&str> = passphrase.expose().split(' ').collect();
        assert_eq!(words.len(), 4, "{words:?}");
        assert!(words.iter().all(|w| WORDS.contains(w)), "{words:?}");
        assert_eq!(validate(passphrase.expose()), Ok(()));
    }

    #[test]
    fn draws_are_spread_out() {
        // 200 word draws over 1,296 words: fewer than one in 10,000 runs of a
        // uniform draw sees any word more than 5 times.
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..50 {
            for word in generate().expose().split(' ') {
                *counts.entry(word.to_string()).or_default() += 1;
            }
        }
        let worst = counts.values().max().copied().unwrap_or(0);
        assert!(worst <= 5, "a word was drawn {worst} times");
        assert!(counts.len() > 150, "only {} distinct words", counts.len());
    }

    #[test]
    fn normalizes_and_validates() {
        assert_eq!(normalize("  one  two   three four "), "one two three four");
        assert_eq!(validate("one  two three   four"), Ok(()));
        assert_eq!(
            validate("   "),
            Err("Passphrase cannot be empty".to_string())
        );
        assert_eq!(
            validate("one two three"),
            Err("Passphrase has to contain exactly four elements".to_string())
        );
        assert_eq!(
            validate("one two three four five"),
            Err("Passphrase has to contain exactly four elements".to_string())
        );
    }

    #[test]
    fn completes_unique_prefixes_only() {
        assert_eq!(complete("aar"), Some("aardvark"));
        assert_eq!(complete("aardvark"), Some("aardvark"));
        assert_eq!(complete("yo-"), Some("yo-yo"));
        assert_eq!(complete("a"), None);
        assert_eq!(complete(""), None);
        assert_eq!(complete("zzz"), None);
        for word in WORDS.iter() {
            assert_eq!(complete(&word[..3]), Some(*word));
        }
    }
}
