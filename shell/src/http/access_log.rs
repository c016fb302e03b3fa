//! The access log (`STARPUNK_ACCESS_LOG`): one line per request on stdout,
//! written by a thread of its own. Handlers and the I/O threads only hand
//! it a line (a bounded queue, never waiting): a stdout that does not keep
//! up (a stalled pipe, a slow journal) costs log lines, counted and
//! reported once it catches up, never a request.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines waiting to be written at most (about 100 bytes each).
const QUEUE: usize = 8192;

/// The sending side; the writer ends when every clone is dropped.
#[derive(Clone)]
pub(super) struct AccessLog {
    lines: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

/// The writer thread, to wait for at shutdown.
pub(super) struct Writer(Option<JoinHandle<()>>);

impl AccessLog {
    /// Starts the writer thread.
    pub(super) fn start() -> std::io::Result<(AccessLog, Writer)> {
        let (lines, queue) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("starpunk-log".into())
            .spawn(move || write_lines(queue, counted))?;
        Ok((AccessLog { lines, dropped }, Writer(Some(thread))))
    }

    /// Queues one request's line: time, client, method, path (never the
    /// query string: it may carry search terms or tokens), status, bytes
    /// and the time from the request's head to its answer. Dropped, and
    /// counted, when the queue is full.
    pub(super) fn line(
        &self,
        peer: SocketAddr,
        method: &str,
        path: &str,
        status: u16,
        bytes: usize,
        took: Duration,
    ) {
        let line = format_line(peer, method, path, status, bytes, took);
        if let Err(TrySendError::Full(_)) = self.lines.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Writer {
    /// Waits up to `wait` for the queued lines to be written (the senders
    /// must be gone); a stdout that does not take them is not waited for.
    pub(super) fn finish(mut self, wait: Duration) {
        let Some(thread) = self.0.take() else { return };
        let until = std::time::Instant::now() + wait;
        while !thread.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

fn write_lines(queue: Receiver<String>, dropped: Arc<AtomicU64>) {
    let mut reported = 0;
    while let Ok(line) = queue.recv() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        // What else is waiting goes out under the same lock.
        while let Ok(line) = queue.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let lost = dropped.load(Ordering::Relaxed);
        if lost > reported {
            let _ = writeln!(
                out,
                "starpunk: {} access log lines dropped: stdout did not keep up",
                lost - reported
            );
            reported = lost;
        }
        let _ = out.flush();
    }
}

/// The line, with its newline.
fn format_line(
    peer: SocketAddr,
    method: &str,
    path: &str,
    status: u16,
    bytes: usize,
    took: Duration,
) -> String {
    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    // Printable ASCII only, at most 200 characters: a path cannot forge a
    // log line.
    let path: String = path
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' {
                c
            } else {
                '?'
            }
        })
        .collect();
    format!(
        "{at} {} \"{method} {path}\" {status} {bytes} {:.3}ms\n",
        peer.ip(),
        took.as_secs_f64() * 1e3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_request_without_its_query_and_cannot_forge_another() {
        let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let line = format_line(
            peer,
            "GET",
            "/notes/a\r\n1999-01-01 \"x",
            200,
            3712,
            Duration::from_micros(412),
        );
        assert!(
            line.ends_with(" 192.0.2.7 \"GET /notes/a??1999-01-01??x\" 200 3712 0.412ms\n"),
            "{line}"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_instead_of_waiting() {
        // A queue nobody reads: the sender must not block.
        let (lines, _queue) = sync_channel(2);
        let log = AccessLog {
            lines,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..5 {
            log.line(peer, "GET", "/", 200, 1, Duration::ZERO);
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
    }
}
