//! Simple-query batches: built from tagged pieces, run in one round trip, and read back piece by
//! piece, so that a server error (or a row) is traced to the piece, and the file's statement, it
//! belongs to.
//!
//! Statements are counted as the server completes them: [`lexer::executed`] leaves out what the
//! server sends no CommandComplete for (an empty statement, a lone `;`, a trailing comment), so
//! the n-th CommandComplete always belongs to the n-th counted statement.

use std::future::poll_fn;
use std::ops::Range;
use std::pin::pin;

use futures_util::Stream;
use pgratchet_core::lexer;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

/// One piece of a [`Batch`]: its tag, its statements and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece<T> {
    pub(crate) tag: T,
    /// The index (in statements the server completes) of its first statement.
    pub(crate) first_statement: usize,
    /// How many statements the server completes for it.
    pub(crate) statements: usize,
    /// Where its text is in the batch.
    pub(crate) bytes: Range<usize>,
}

/// A batch of SQL made of tagged pieces.
#[derive(Clone, Debug)]
pub(crate) struct Batch<T> {
    sql: String,
    pieces: Vec<Piece<T>>,
    statements: usize,
}

impl<T: Copy> Batch<T> {
    pub(crate) fn new() -> Self {
        Batch {
            sql: String::new(),
            pieces: Vec::new(),
            statements: 0,
        }
    }

    /// Appends SQL written by the runner: complete statements, each ended by `;`.
    pub(crate) fn push(&mut self, tag: T, sql: &str) {
        let start = self.sql.len();
        self.sql.push_str(sql);
        let statements = lexer::executed(sql).count();
        self.pieces.push(Piece {
            tag,
            first_statement: self.statements,
            statements,
            bytes: start..start + sql.len(),
        });
        self.statements += statements;
    }

    /// Appends a migration's SQL as the file has it: a newline ends a trailing `--` comment and a
    /// `;` a last statement written without one (after a `;`, the extra one is an empty
    /// statement, which the server skips). The piece's bytes are the file's text alone.
    pub(crate) fn push_script(&mut self, tag: T, sql: &str) {
        self.push(tag, &format!("{sql}\n;\n"));
        if let Some(piece) = self.pieces.last_mut() {
            piece.bytes.end = piece.bytes.start + sql.len();
        }
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    pub(crate) fn pieces(&self) -> &[Piece<T>] {
        &self.pieces
    }

    /// The piece that statement `index` (counted from 0) belongs to, and the statement's index
    /// within the piece; `None` past the end.
    pub(crate) fn statement(&self, index: usize) -> Option<(&Piece<T>, usize)> {
        self.pieces
            .iter()
            .find(|piece| {
                (piece.first_statement..piece.first_statement + piece.statements).contains(&index)
            })
            .map(|piece| (piece, index - piece.first_statement))
    }

    /// The piece whose text holds byte `offset` of the batch.
    pub(crate) fn piece_at(&self, offset: usize) -> Option<&Piece<T>> {
        self.pieces
            .iter()
            .find(|piece| piece.bytes.contains(&offset))
    }

    /// The rows of a batch's messages, each with the piece its statement belongs to.
    pub(crate) fn rows<'m>(
        &self,
        messages: &'m [SimpleQueryMessage],
    ) -> Vec<(T, &'m SimpleQueryRow)> {
        let mut statement = 0;
        let mut rows = Vec::new();
        for message in messages {
            match message {
                SimpleQueryMessage::CommandComplete(_) => statement += 1,
                SimpleQueryMessage::Row(row) => {
                    if let Some((piece, _)) = self.statement(statement) {
                        rows.push((piece.tag, row));
                    }
                }
                _ => {}
            }
        }
        rows
    }
}

/// What a batch returned: messages up to the end or to the error, and the error.
pub(crate) struct Outcome {
    pub(crate) messages: Vec<SimpleQueryMessage>,
    pub(crate) error: Option<tokio_postgres::Error>,
}

impl Outcome {
    /// Statements that completed before the error (or all of them).
    pub(crate) fn completed(&self) -> usize {
        self.messages
            .iter()
            .filter(|message| matches!(message, SimpleQueryMessage::CommandComplete(_)))
            .count()
    }
}

/// Sends `sql` as one simple query (one round trip, any number of statements).
pub(crate) async fn run(client: &Client, sql: &str) -> Outcome {
    let stream = match client.simple_query_raw(sql).await {
        Ok(stream) => stream,
        Err(error) => {
            return Outcome {
                messages: Vec::new(),
                error: Some(error),
            }
        }
    };
    let mut stream = pin!(stream);
    let mut messages = Vec::new();
    loop {
        match poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            Some(Ok(message)) => messages.push(message),
            Some(Err(error)) => {
                return Outcome {
                    messages,
                    error: Some(error),
                }
            }
            None => {
                return Outcome {
                    messages,
                    error: None,
                }
            }
        }
    }
}

/// The first column of the first row of a query's messages, if any.
pub(crate) fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// The byte offset in `text` of the 1-based character `position` PostgreSQL reports.
pub(crate) fn char_position_to_byte(text: &str, position: usize) -> Option<usize> {
    let index = position.checked_sub(1)?;
    text.char_indices().nth(index).map(|(byte, _)| byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Part {
        Begin,
        Sql,
        Record,
        Commit,
    }

    #[test]
    fn statements_map_to_their_pieces() {
        let mut batch = Batch::new();
        batch.push(Part::Begin, "BEGIN;\nSET LOCAL lock_timeout = 100;\n");
        batch.push_script(Part::Sql, "CREATE TABLE a ();\n-- the end");
        batch.push(Part::Record, "INSERT INTO h VALUES (1);\n");
        batch.push(Part::Commit, "COMMIT;\n");
        let at = |index| {
            batch
                .statement(index)
                .map(|(piece, within)| (piece.tag, within))
        };
        assert_eq!(at(0), Some((Part::Begin, 0)));
        assert_eq!(at(1), Some((Part::Begin, 1)));
        assert_eq!(at(2), Some((Part::Sql, 0)));
        assert_eq!(at(3), Some((Part::Record, 0)));
        assert_eq!(at(4), Some((Part::Commit, 0)));
        assert_eq!(at(5), None);
        let sql_piece = &batch.pieces()[1];
        assert_eq!(
            &batch.sql()[sql_piece.bytes.clone()],
            "CREATE TABLE a ();\n-- the end"
        );
        assert_eq!(
            batch.piece_at(sql_piece.bytes.start).map(|p| p.tag),
            Some(Part::Sql)
        );
    }

    /// The server completes no command for an empty statement, a lone `;` or a trailing
    /// comment: neither does the count, or every later error would be blamed on the wrong piece.
    #[test]
    fn empty_statements_count_zero_as_on_the_server() {
        for (script, statements) in [
            ("SELECT 1;", 1),
            ("SELECT 1", 1),
            ("SELECT 1;;", 1),
            (";", 0),
            (";;\n;", 0),
            ("SELECT 1; ; SELECT 2;", 2),
            ("-- only a comment", 0),
            ("SELECT 1; -- trailing\n/* and this */", 1),
            ("", 0),
        ] {
            let mut batch = Batch::new();
            batch.push(Part::Begin, "BEGIN;\n");
            batch.push_script(Part::Sql, script);
            batch.push(Part::Commit, "COMMIT;\n");
            assert_eq!(batch.pieces()[1].statements, statements, "{script:?}");
            assert_eq!(
                batch.statement(1 + statements).map(|(piece, _)| piece.tag),
                Some(Part::Commit),
                "{script:?}"
            );
        }
    }
}
