//! The alert webhook: firings and resolutions POSTed as JSON from a thread
//! of their own, so neither a request nor the ticker ever waits on the
//! network. The queue is bounded: a dead endpoint costs at most
//! [`QUEUE`] bodies of memory; past that, events are dropped and counted
//! (they are still logged and shown on the dashboard). The URL may carry a
//! secret token, so it is never logged or shown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Bodies waiting for delivery at most.
pub const QUEUE: usize = 64;
/// Attempts per body: the first and four retries.
pub const ATTEMPTS: u32 = 5;
/// Time allowed for one POST.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Delivery counts.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Bodies the endpoint accepted (2xx).
    pub delivered: AtomicU64,
    /// Bodies given up after [`ATTEMPTS`] attempts or a refusal (4xx).
    pub failed: AtomicU64,
    /// Bodies not queued because the queue was full.
    pub dropped: AtomicU64,
    /// POSTs tried.
    pub attempts: AtomicU64,
}

/// The counts, for the dashboard and the JSON export.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WebhookView {
    /// Bodies the endpoint accepted.
    pub delivered: u64,
    /// Bodies given up.
    pub failed: u64,
    /// Bodies dropped on a full queue.
    pub dropped: u64,
    /// POSTs tried.
    pub attempts: u64,
}

/// The sending side.
pub struct Webhook {
    queue: SyncSender<String>,
    stats: Arc<WebhookStats>,
}

impl Webhook {
    /// Starts the sender thread for `url`; retries wait `backoff`, then
    /// twice as long each time.
    pub fn start(url: String, backoff: Duration) -> Webhook {
        let (queue, bodies) = sync_channel(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let counts = Arc::clone(&stats);
        let spawned = std::thread::Builder::new()
            .name("starpunk-webhook".into())
            .spawn(move || deliver(&url, &bodies, &counts, backoff));
        if spawned.is_err() {
            crate::elog!(
                "starpunk: alert webhook: could not start its thread; alerts are only logged"
            );
        }
        Webhook { queue, stats }
    }

    /// Queues `body` without waiting; counts it as dropped when the queue
    /// is full (or the sender is gone).
    pub fn send(&self, body: String) {
        match self.queue.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                crate::elog!("starpunk: alert webhook: queue full, an alert was not sent (it is logged and on the dashboard)");
            }
        }
    }

    /// The counts so far.
    pub fn view(&self) -> WebhookView {
        let s = &self.stats;
        WebhookView {
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            attempts: s.attempts.load(Ordering::Relaxed),
        }
    }
}

/// Why one POST did not deliver.
enum Failure {
    /// Worth another try: no answer, 5xx, 408, 429.
    Retry(String),
    /// The endpoint refused the body (another 4xx): retrying cannot help.
    Refused(String),
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), Failure> {
    match agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("User-Agent", "starpunk-alerts")
        .send_string(body)
    {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        // A redirect (not followed) or an informational answer delivered
        // nothing.
        Ok(r) => Err(Failure::Refused(format!("HTTP {}", r.status()))),
        Err(ureq::Error::Status(code, _)) if code >= 500 || code == 408 || code == 429 => {
            Err(Failure::Retry(format!("HTTP {code}")))
        }
        Err(ureq::Error::Status(code, _)) => Err(Failure::Refused(format!("HTTP {code}"))),
        // The transport error's text may quote the URL: say only its kind.
        Err(ureq::Error::Transport(t)) => Err(Failure::Retry(format!("{:?}", t.kind()))),
    }
}

fn deliver(url: &str, bodies: &Receiver<String>, stats: &WebhookStats, backoff: Duration) {
    // HTTPS through rustls with the bundled Mozilla roots (ureq's `tls`
    // feature): nothing to load from the system, so nothing can fail here.
    let agent = ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .redirects(0)
        .build();
    for body in bodies {
        let mut wait = backoff;
        let mut last = String::new();
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            stats.attempts.fetch_add(1, Ordering::Relaxed);
            match post(&agent, url, &body) {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(Failure::Refused(why)) => {
                    last = why;
                    break;
                }
                Err(Failure::Retry(why)) => {
                    last = why;
                    if attempt < ATTEMPTS {
                        std::thread::sleep(wait);
                        wait = wait.saturating_mul(2);
                    }
                }
            }
        }
        if delivered {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            crate::elog!("starpunk: alert webhook: gave up on an alert ({last}); it is logged and on the dashboard");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_dead_endpoint_costs_a_bounded_queue_and_every_alert_is_accounted_for() {
        // A port that refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Webhook::start(
            format!("http://127.0.0.1:{port}/hook"),
            Duration::from_millis(1),
        );
        let sent = 300;
        let start = Instant::now();
        for i in 0..sent {
            hook.send(format!("{{\"n\":{i}}}"));
        }
        // Sending never waits on the network.
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = hook.view();
            if v.failed + v.dropped == sent {
                assert_eq!(v.delivered, 0);
                // At most the queue (and the one in hand) waited; the rest
                // were dropped, not stored.
                assert!(v.dropped >= sent - QUEUE as u64 - 1, "{v:?}");
                assert_eq!(v.attempts, v.failed * u64::from(ATTEMPTS), "{v:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{v:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
