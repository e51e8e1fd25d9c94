//! What the elements of a sequence hold: characters of a text, or values of a list.

use crate::Value;

/// The content of a run of consecutive elements. Text keeps UTF-8 (`String`), lists keep
/// values (`Vec<Value>`).
pub(crate) trait Content: Clone + Default + PartialEq + core::fmt::Debug {
    /// Elements held.
    fn count(&self) -> usize;
    /// Splits off the elements from `at` on.
    fn split_off(&mut self, at: usize) -> Self;
    /// Appends `other`'s elements.
    fn append(&mut self, other: &Self);
    /// UTF-16 code units of the elements (their count, for lists).
    fn utf16_len(&self) -> usize;
    /// UTF-8 bytes of the elements (their count, for lists).
    fn utf8_len(&self) -> usize;
}

impl Content for String {
    fn count(&self) -> usize {
        // ASCII is the common case and needs no scan.
        if self.is_ascii() {
            self.len()
        } else {
            self.chars().count()
        }
    }

    fn split_off(&mut self, at: usize) -> Self {
        let byte = if self.is_ascii() {
            at
        } else {
            self.char_indices().nth(at).map_or(self.len(), |(i, _)| i)
        };
        String::split_off(self, byte)
    }

    fn append(&mut self, other: &Self) {
        self.push_str(other);
    }

    fn utf16_len(&self) -> usize {
        if self.is_ascii() {
            self.len()
        } else {
            self.chars().map(char::len_utf16).sum()
        }
    }

    fn utf8_len(&self) -> usize {
        self.len()
    }
}

impl Content for Vec<Value> {
    fn count(&self) -> usize {
        self.len()
    }

    fn split_off(&mut self, at: usize) -> Self {
        Vec::split_off(self, at.min(self.len()))
    }

    fn append(&mut self, other: &Self) {
        self.extend_from_slice(other);
    }

    fn utf16_len(&self) -> usize {
        self.len()
    }

    fn utf8_len(&self) -> usize {
        self.len()
    }
}
