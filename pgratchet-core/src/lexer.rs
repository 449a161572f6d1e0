//! Splits a PostgreSQL script into statements, the way the server's own lexer sees them.
//!
//! A statement ends at a `;` that is outside single-quoted strings (`''` escapes), `E'..'` strings
//! (backslash escapes), `U&'..'` strings, double-quoted identifiers, `--` and nested `/* */`
//! comments, dollar quotes (`$$..$$`, `$tag$..$tag$`), parentheses and `BEGIN ATOMIC .. END`
//! function bodies. A psql meta-command (a line starting with `\`) ends at its line's end, as in
//! psql. Nothing is lost: the statements' texts joined give back the input exactly.
//!
//! Splitting matters because PostgreSQL runs a multi-statement simple query as one implicit
//! transaction, so `CREATE INDEX CONCURRENTLY` in a no-transaction file must be sent on its own.

#[cfg(test)]
mod tests;

/// One statement of a script, as an exact slice of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement's exact text, from the end of the previous statement: leading whitespace and
    /// comments included, and the terminating `;` when there is one.
    pub text: &'a str,
    /// The byte offset of `text` in the script.
    pub offset: usize,
    /// The 1-based line of the statement's first token (of `text`'s start when it has no token).
    pub line: u32,
}

impl<'a> Statement<'a> {
    /// Whether the statement holds nothing but whitespace, comments and its `;`: the trailing
    /// comments after the last `;`, or the empty statement of `;;`. The server runs nothing for
    /// it and sends no CommandComplete.
    pub fn is_empty(&self) -> bool {
        significant_tokens(self.text).all(|token| token.kind == TokenKind::Semicolon)
    }

    /// The first `n` tokens, skipping comments: a bare word (keyword or identifier) is uppercased;
    /// any other token (a string, a quoted identifier, a number, punctuation) is the empty string,
    /// which never equals a keyword.
    pub fn keywords(&self, n: usize) -> Vec<String> {
        significant_tokens(self.text)
            .take(n)
            .map(|token| match token.kind {
                TokenKind::Word => self.text[token.start..token.end].to_ascii_uppercase(),
                _ => String::new(),
            })
            .collect()
    }

    /// The statement from its first token on: `text` without leading whitespace and comments.
    pub fn sql(&self) -> &'a str {
        let start = significant_tokens(self.text)
            .next()
            .map_or(self.text.len(), |token| token.start);
        &self.text[start..]
    }
}

/// The 1-based line holding `byte_offset` of `sql` (offsets past the end count as the end).
pub fn line_of(sql: &str, byte_offset: usize) -> u32 {
    let end = byte_offset.min(sql.len());
    let newlines = sql.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines.saturating_add(1)).unwrap_or(u32::MAX)
}

/// The statements of `sql` the server executes: [`split`] without the empty ones (whitespace,
/// comments and at most a `;`), which complete no command.
pub fn executed(sql: &str) -> impl Iterator<Item = Statement<'_>> {
    split(sql)
        .into_iter()
        .filter(|statement| !statement.is_empty())
}

/// Every `--` comment of `sql` (outside strings, identifiers and other comments): its byte offset
/// and its text after the `--`, up to the end of its line.
pub fn line_comments(sql: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    tokens(sql)
        .filter(|token| token.kind == TokenKind::Comment && sql.as_bytes()[token.start] == b'-')
        .map(|token| (token.start, &sql[token.start + 2..token.end]))
}

/// Splits `sql` into statements (see the [module docs](self)); never fails, never panics.
///
/// Text after the last `;` that holds only whitespace and comments is a last statement of its own
/// (with [`Statement::is_empty`]), so that the texts always join back into `sql`. An unterminated
/// string, identifier, comment or dollar quote runs to the end of the input.
pub fn split(sql: &str) -> Vec<Statement<'_>> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut lines = LineCounter::default();
    let mut start = 0;
    let mut pos = 0;
    let mut first_token: Option<usize> = None;
    let mut nesting = Nesting::default();

    while pos < bytes.len() {
        let token = next_token(bytes, pos);
        pos = token.end;
        if matches!(token.kind, TokenKind::Space | TokenKind::Comment) {
            continue;
        }
        if first_token.is_none() {
            first_token = Some(token.start);
            if token.kind == TokenKind::Punct(b'\\') {
                // A psql meta-command runs to the end of its line.
                let end = bytes[pos..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| pos + p + 1);
                statements.push(Statement {
                    text: &sql[start..end],
                    offset: start,
                    line: lines.line_at(bytes, token.start),
                });
                start = end;
                pos = end;
                first_token = None;
                continue;
            }
        }
        if token.kind == TokenKind::Semicolon && nesting.is_top_level() {
            statements.push(Statement {
                text: &sql[start..token.end],
                offset: start,
                line: lines.line_at(bytes, first_token.unwrap_or(start)),
            });
            start = token.end;
            first_token = None;
            nesting = Nesting::default();
        } else {
            nesting.see(token.kind, &bytes[token.start..token.end]);
        }
    }
    if start < bytes.len() {
        statements.push(Statement {
            text: &sql[start..],
            offset: start,
            line: lines.line_at(bytes, first_token.unwrap_or(start)),
        });
    }
    statements
}

/// What keeps a `;` from ending the statement: open parentheses and `BEGIN ATOMIC` bodies.
#[derive(Default)]
struct Nesting {
    parens: usize,
    /// 0 outside a `BEGIN ATOMIC` body; inside, 1 plus the open `CASE`s, since a `CASE .. END`
    /// expression's `END` must not close the body.
    atomic: usize,
    after_begin: bool,
}

impl Nesting {
    fn is_top_level(&self) -> bool {
        self.parens == 0 && self.atomic == 0
    }

    fn see(&mut self, kind: TokenKind, text: &[u8]) {
        let after_begin = std::mem::take(&mut self.after_begin);
        match kind {
            TokenKind::Punct(b'(') => self.parens += 1,
            TokenKind::Punct(b')') => self.parens = self.parens.saturating_sub(1),
            TokenKind::Word if self.atomic == 0 => {
                if after_begin && text.eq_ignore_ascii_case(b"ATOMIC") {
                    self.atomic = 1;
                } else {
                    self.after_begin = text.eq_ignore_ascii_case(b"BEGIN");
                }
            }
            TokenKind::Word if text.eq_ignore_ascii_case(b"CASE") => self.atomic += 1,
            TokenKind::Word if text.eq_ignore_ascii_case(b"END") => self.atomic -= 1,
            _ => {}
        }
    }
}

/// Turns increasing byte offsets into line numbers without rescanning the input.
#[derive(Default)]
struct LineCounter {
    pos: usize,
    newlines: usize,
}

impl LineCounter {
    fn line_at(&mut self, bytes: &[u8], offset: usize) -> u32 {
        // Offsets only grow within one split; clamping keeps a caller's mistake from panicking.
        let offset = offset.clamp(self.pos, bytes.len());
        self.newlines += bytes[self.pos..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = offset;
        u32::try_from(self.newlines.saturating_add(1)).unwrap_or(u32::MAX)
    }
}

/// The kinds of tokens the lexer tells apart: only as many as statement boundaries and
/// statement shapes need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Whitespace.
    Space,
    /// A `--` or `/* */` comment.
    Comment,
    /// A bare word: a keyword or an unquoted identifier.
    Word,
    /// A string constant of any form, a quoted identifier or a dollar-quoted body.
    Quoted,
    /// A number or a `$1` parameter.
    Number,
    /// `;`.
    Semicolon,
    /// Any other single ASCII byte.
    Punct(u8),
}

/// A token: its kind and its byte range in the input. Ranges always start and end on ASCII bytes
/// or at the input's end, so they are valid `str` boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The tokens of `text` other than whitespace and comments.
pub(crate) fn significant_tokens(text: &str) -> impl Iterator<Item = Token> + '_ {
    tokens(text).filter(|token| !matches!(token.kind, TokenKind::Space | TokenKind::Comment))
}

/// Every token of `text`, in order.
fn tokens(text: &str) -> impl Iterator<Item = Token> + '_ {
    let bytes = text.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        (pos < bytes.len()).then(|| {
            let token = next_token(bytes, pos);
            pos = token.end;
            token
        })
    })
}

// PostgreSQL treats every byte >= 0x80 as a letter in identifiers, so non-ASCII text (always
// bytes >= 0x80 in UTF-8) stays inside words and quoted tokens and never splits a character.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_dollar_tag_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// The token starting at `pos` (which must be `< bytes.len()`).
fn next_token(bytes: &[u8], pos: usize) -> Token {
    let at = |i: usize| bytes.get(i).copied();
    let token = |kind, end: usize| Token {
        kind,
        start: pos,
        end: end.min(bytes.len()),
    };
    let first = bytes[pos];
    match first {
        b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => {
            let len = bytes[pos..]
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
                .unwrap_or(bytes.len() - pos);
            token(TokenKind::Space, pos + len)
        }
        b'-' if at(pos + 1) == Some(b'-') => {
            let end = bytes[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| pos + p);
            token(TokenKind::Comment, end)
        }
        b'/' if at(pos + 1) == Some(b'*') => {
            token(TokenKind::Comment, block_comment_end(bytes, pos))
        }
        b'\'' => token(TokenKind::Quoted, quoted_end(bytes, pos + 1, b'\'', false)),
        b'"' => token(TokenKind::Quoted, quoted_end(bytes, pos + 1, b'"', false)),
        b'e' | b'E' if at(pos + 1) == Some(b'\'') => {
            token(TokenKind::Quoted, quoted_end(bytes, pos + 2, b'\'', true))
        }
        b'u' | b'U' if at(pos + 1) == Some(b'&') && matches!(at(pos + 2), Some(b'\'' | b'"')) => {
            let quote = bytes[pos + 2];
            token(TokenKind::Quoted, quoted_end(bytes, pos + 3, quote, false))
        }
        b'$' => dollar_token(bytes, pos),
        b';' => token(TokenKind::Semicolon, pos + 1),
        b if is_ident_start(b) => {
            let len = bytes[pos..]
                .iter()
                .position(|&b| !is_ident_char(b))
                .unwrap_or(bytes.len() - pos);
            token(TokenKind::Word, pos + len)
        }
        b if b.is_ascii_digit() => {
            let len = bytes[pos..]
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'_'))
                .unwrap_or(bytes.len() - pos);
            token(TokenKind::Number, pos + len)
        }
        b => token(TokenKind::Punct(b), pos + 1),
    }
}

/// The end of a `/* */` comment starting at `pos`; these comments nest in PostgreSQL.
fn block_comment_end(bytes: &[u8], pos: usize) -> usize {
    let mut depth = 0usize;
    let mut i = pos;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end (just past the closing quote) of a quoted token whose content starts at `pos`; a doubled
/// quote is an escaped quote, and with `backslash` (E-strings) so is anything after a `\`.
fn quoted_end(bytes: &[u8], pos: usize, quote: u8, backslash: bool) -> usize {
    let mut i = pos;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
        } else if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// A token starting with `$`: a dollar-quoted body, a `$1` parameter, or a lone `$`.
fn dollar_token(bytes: &[u8], pos: usize) -> Token {
    let token = |kind, end| Token {
        kind,
        start: pos,
        end,
    };
    let next = bytes.get(pos + 1).copied();
    if next.is_some_and(|b| b.is_ascii_digit()) {
        let len = bytes[pos + 1..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(bytes.len() - pos - 1);
        return token(TokenKind::Number, pos + 1 + len);
    }
    // The tag may not start with a digit (that is a parameter) and holds no `$`.
    let tag_len = if next.is_some_and(is_ident_start) {
        bytes[pos + 1..]
            .iter()
            .position(|&b| !is_dollar_tag_char(b))
            .unwrap_or(bytes.len() - pos - 1)
    } else {
        0
    };
    let delimiter_end = pos + 1 + tag_len;
    if bytes.get(delimiter_end) != Some(&b'$') {
        return token(TokenKind::Punct(b'$'), pos + 1);
    }
    let delimiter = &bytes[pos..=delimiter_end];
    let body = delimiter_end + 1;
    let end = bytes[body..]
        .windows(delimiter.len())
        .position(|window| window == delimiter)
        .map_or(bytes.len(), |p| body + p + delimiter.len());
    token(TokenKind::Quoted, end)
}
