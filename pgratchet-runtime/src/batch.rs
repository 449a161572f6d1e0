//! Running a simple-query batch and keeping what completed before an error, so a failure can be
//! traced to the statement (and the file's line) that caused it.

use std::future::poll_fn;
use std::pin::pin;

use futures_util::Stream;
use tokio_postgres::{Client, SimpleQueryMessage};

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

/// The byte offset in `text` of the 1-based character `position` PostgreSQL reports.
pub(crate) fn char_position_to_byte(text: &str, position: usize) -> Option<usize> {
    let index = position.checked_sub(1)?;
    text.char_indices().nth(index).map(|(byte, _)| byte)
}
