//! A statement's tokens as the shape checks read them.

use crate::lexer::{significant_tokens, TokenKind};

/// The tokens of one statement, two ways.
pub(super) struct Words {
    /// Outside parentheses: bare words uppercased, anything else (the parentheses themselves
    /// included) as `""`, so that `FROM (x) STDIN` never reads as `FROM STDIN`. Without the
    /// statement's `;`.
    pub(super) top: Vec<String>,
    /// Every token at any depth: words uppercased, a `'string'` as its uppercased content (an
    /// option value such as `'false'`), numbers and punctuation as written; other quoted tokens
    /// (identifiers, dollar bodies) as `""`. For option lists: `WITH (create_slot = false)`.
    pub(super) all: Vec<String>,
}

impl Words {
    pub(super) fn of(text: &str) -> Words {
        let mut depth = 0usize;
        let mut top = Vec::new();
        let mut all = Vec::new();
        for token in significant_tokens(text) {
            let token_text = &text[token.start..token.end];
            if token.kind == TokenKind::Semicolon {
                continue;
            }
            let outside = depth == 0;
            match token.kind {
                TokenKind::Punct(b'(') => depth += 1,
                TokenKind::Punct(b')') => depth = depth.saturating_sub(1),
                _ => {}
            }
            if outside || depth == 0 {
                top.push(match token.kind {
                    TokenKind::Word => token_text.to_ascii_uppercase(),
                    _ => String::new(),
                });
            }
            all.push(match token.kind {
                TokenKind::Word => token_text.to_ascii_uppercase(),
                TokenKind::Quoted if token_text.starts_with('\'') && token_text.len() >= 2 => {
                    token_text[1..token_text.len() - 1].to_ascii_uppercase()
                }
                TokenKind::Quoted => String::new(),
                _ => token_text.to_owned(),
            });
        }
        Words { top, all }
    }

    /// Whether the top-level words start with `shape`.
    pub(super) fn starts(&self, shape: &[&str]) -> bool {
        starts(&self.top, shape)
    }

    /// Whether the top-level words contain `shape` anywhere.
    pub(super) fn contains(&self, shape: &[&str]) -> bool {
        (0..self.top.len()).any(|i| starts(&self.top[i..], shape))
    }

    /// The value of option `name` in any option list (`name`, `name = value` or `name value`):
    /// `None` when the option is absent, `Some(true)` unless its value is `false`, `off` or `0`.
    pub(super) fn option(&self, name: &str) -> Option<bool> {
        let at = self.all.iter().position(|word| word == name)?;
        let mut value = self.all[at + 1..].iter().map(String::as_str);
        let value = match value.next() {
            Some("=") => value.next(),
            other => other,
        };
        Some(!matches!(value, Some("FALSE" | "OFF" | "0")))
    }
}

fn starts(words: &[String], shape: &[&str]) -> bool {
    words.len() >= shape.len() && words.iter().zip(shape).all(|(word, want)| word == want)
}
