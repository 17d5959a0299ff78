//! Values from requests, as errors and logs quote them: cut to a bounded length, so that a
//! hostile or mistaken value (64 KiB of text in `workerConcurrency`, say) cannot blow up a
//! status trailer, which gRPC clients in C-core and Java cap at 8 to 16 KiB, or a log line.

use std::fmt;

/// The most characters of one value that are quoted.
pub(crate) const MAX_QUOTED_CHARS: usize = 200;

/// The longest status message the scaler sends, in bytes: every status fits in 8 KiB with
/// room to spare for the code and the trailer's framing.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;

/// A value quoted for an error message: `"the value"`, or its first [`MAX_QUOTED_CHARS`]
/// characters marked as cut, with the number of bytes left out.
#[derive(Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    /// Quotes `value`, cutting it on a character boundary when it is long.
    pub fn new(value: &str) -> Self {
        match value.char_indices().nth(MAX_QUOTED_CHARS) {
            None => Self(format!("{value:?}")),
            Some((end, _)) => Self(format!(
                "{:?} (cut: {} more bytes)",
                format!("{}…", &value[..end]),
                value.len() - end
            )),
        }
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request value as log fields show it: at most [`MAX_QUOTED_CHARS`] characters, then `…`.
/// Borrows, so that logging a short value costs no allocation.
pub(crate) struct Clipped<'a>(pub &'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_QUOTED_CHARS) {
            None => f.write_str(self.0),
            Some((end, _)) => write!(f, "{}…", &self.0[..end]),
        }
    }
}

/// `message` cut to [`MAX_MESSAGE_BYTES`] on a character boundary, marked when cut.
pub(crate) fn bounded_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    const MARK: &str = " … (message cut)";
    let mut end = MAX_MESSAGE_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(Quoted::new("two").to_string(), r#""two""#);
        assert_eq!(Quoted::new("a\"b\n").to_string(), r#""a\"b\n""#);
        assert_eq!(Clipped("ns").to_string(), "ns");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_and_marked() {
        let long = "é".repeat(32_768);
        let quoted = Quoted::new(&long).to_string();
        assert!(quoted.starts_with(&format!("\"{}…\"", "é".repeat(MAX_QUOTED_CHARS))));
        assert!(quoted.ends_with(&format!(
            "(cut: {} more bytes)",
            2 * (32_768 - MAX_QUOTED_CHARS)
        )));
        assert!(quoted.len() < 600, "{}", quoted.len());
        assert_eq!(
            Clipped(&long).to_string().chars().count(),
            MAX_QUOTED_CHARS + 1
        );
    }

    #[test]
    fn messages_are_bounded() {
        assert_eq!(bounded_message("short".into()), "short");
        let cut = bounded_message("ü".repeat(10_000));
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.ends_with("(message cut)"));
    }

    proptest! {
        #[test]
        fn quoting_never_exceeds_its_bound(value in ".{0,2000}") {
            let quoted = Quoted::new(&value).to_string();
            // Debug escapes take at most 10 bytes per character (\u{10ffff}).
            prop_assert!(quoted.len() <= MAX_QUOTED_CHARS * 10 + 64);
            prop_assert!(bounded_message(value.repeat(3)).len() <= MAX_MESSAGE_BYTES);
        }
    }
}
