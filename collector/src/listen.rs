//! `--listen ADDR`: route updates as newline-delimited JSON over TCP, stored in batches until
//! SIGINT or SIGTERM.
//!
//! Each connection is a feed from one router (its address is the default `router`). A line that
//! does not parse is rejected: logged, answered with `error: line N: ...`, and the feed goes on.
//! Accepted lines get no answer. Lines go to one writer task, which stores a batch when it has
//! [`BATCH_SIZE`] updates or [`FLUSH_AFTER`] after the first one arrived.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::feed::{self, RouteUpdate};
use crate::store::{self, BATCH_SIZE};

/// The longest wait between an update arriving and being stored.
const FLUSH_AFTER: Duration = Duration::from_millis(500);
/// Longer lines are rejected (and skipped up to their end) rather than buffered.
const MAX_LINE: usize = 64 * 1024;
/// How often a failed batch is tried again before it is dropped.
const STORE_ATTEMPTS: u32 = 3;

/// SIGINT (Ctrl-C) and SIGTERM, registered before the collector says it is listening, so that
/// neither can kill it without a flush.
pub(crate) struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    pub(crate) fn register() -> io::Result<Shutdown> {
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Accepts feeds on `listener` until a shutdown signal, then stores what was received and returns
/// how many rows were stored.
pub(crate) async fn run(pool: &Pool, listener: TcpListener, mut shutdown: Shutdown) -> u64 {
    let (sender, receiver) = mpsc::channel(BATCH_SIZE * 10);
    let writer = tokio::spawn(write_batches(pool.clone(), receiver));
    let mut feeds = JoinSet::new();
    loop {
        tokio::select! {
            signal = shutdown.requested() => {
                tracing::info!(signal, "shutting down: storing what was received");
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    tracing::info!(%from, "feed connected");
                    feeds.spawn(serve_feed(stream, from, sender.clone()));
                }
                Err(error) => tracing::warn!(%error, "could not accept a connection"),
            },
            Some(_) = feeds.join_next() => {}
        }
    }
    feeds.shutdown().await;
    drop(sender);
    writer.await.unwrap_or_else(|panic| {
        tracing::error!(%panic, "the batch writer failed");
        0
    })
}

/// Reads one feed, line by line, until it closes.
async fn serve_feed(stream: TcpStream, from: SocketAddr, updates: mpsc::Sender<RouteUpdate>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let mut line_number = 0u64;
    loop {
        line.clear();
        let complete = match read_line(&mut read, &mut line).await {
            Ok(None) => break,
            Ok(Some(complete)) => complete,
            Err(error) => {
                tracing::warn!(%from, %error, "feed read failed");
                break;
            }
        };
        line_number += 1;
        let parsed = if !complete {
            Err(format!("line longer than {MAX_LINE} bytes"))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => feed::parse_line(text, from.ip(), SystemTime::now()),
                Err(_) => Err("line is not UTF-8".to_owned()),
            }
        };
        match parsed {
            Ok(update) => {
                if updates.send(update).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::error!(%from, line = line_number, %error, "rejected a route update");
                let answer = format!("error: line {line_number}: {error}\n");
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(%from, lines = line_number, "feed closed");
}

/// Reads a line (without its `\n`) into `line`: `None` at the end of the stream, `Some(false)`
/// when it was longer than [`MAX_LINE`] (then the rest of it is skipped).
async fn read_line<R: AsyncBufReadExt + Unpin>(
    read: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<Option<bool>> {
    let limit = MAX_LINE as u64 + 1;
    if (&mut *read).take(limit).read_until(b'\n', line).await? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some(true));
    }
    if line.len() <= MAX_LINE {
        // The stream ended without a final newline.
        return Ok(Some(true));
    }
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let read_bytes = (&mut *read)
            .take(limit)
            .read_until(b'\n', &mut rest)
            .await?;
        if read_bytes == 0 || rest.last() == Some(&b'\n') {
            return Ok(Some(false));
        }
    }
}

/// Stores what arrives on `updates` in batches until every sender is gone; returns the number of
/// rows stored.
async fn write_batches(pool: Pool, mut updates: mpsc::Receiver<RouteUpdate>) -> u64 {
    let mut stored = 0;
    let mut batch = Vec::with_capacity(BATCH_SIZE);
    while let Some(first) = updates.recv().await {
        batch.push(first);
        let deadline = Instant::now() + FLUSH_AFTER;
        while batch.len() < BATCH_SIZE {
            match tokio::time::timeout_at(deadline, updates.recv()).await {
                Ok(Some(update)) => batch.push(update),
                Ok(None) | Err(_) => break,
            }
        }
        stored += store_with_retries(&pool, &batch).await;
        batch.clear();
    }
    stored
}

/// Stores a batch, trying again after a failure (the database restarting, say); drops it, loudly,
/// after [`STORE_ATTEMPTS`] failures.
async fn store_with_retries(pool: &Pool, batch: &[RouteUpdate]) -> u64 {
    let mut attempt = 1;
    loop {
        match store::store(pool, batch).await {
            Ok(rows) => {
                tracing::debug!(rows, "stored a batch");
                return rows;
            }
            Err(error) if attempt < STORE_ATTEMPTS => {
                tracing::warn!(%error, attempt, "could not store a batch; trying again");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => {
                tracing::error!(%error, rows = batch.len(), "could not store a batch; dropped it");
                return 0;
            }
        }
    }
}
