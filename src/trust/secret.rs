//! Secrets are a type, so they cannot leak by accident.
//!
//! Passphrases and private keys travel through structs that get logged, printed
//! and wrapped in errors. Wrapping them in [`Secret`] makes every `{:?}` and `{}`
//! print `[redacted]`, and wipes the memory when the value is dropped. Reading
//! the value needs an explicit [`Secret::expose`], which is easy to grep for.
//! There is deliberately no `Serialize`: code that must put a secret on the
//! wire (the CLI sending the passphrase to its daemon) exposes it on purpose.

use std::fmt;

use zeroize::Zeroize;

/// A value that is never printed and is zeroized on drop.
#[derive(Clone)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`; from now on only [`Secret::expose`] reveals it.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself. Keep the borrow short and never log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::new(String::from("correct horse battery staple"));
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "correct horse battery staple");
    }
}
