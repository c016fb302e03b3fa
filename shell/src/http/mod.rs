//! The HTTP front: rouille's `Request`/`Response` (the handlers' API) over
//! hyper's HTTP/1.1 on tokio, the bytes on the wire in this folder alone.
//!
//! What it guarantees, whatever clients do (each attacked in
//! `shell/tests/hostile.rs`):
//! - A request is handed to a handler thread only once its head and its
//!   whole body are in memory: the head within `header_timeout` and 16 KiB
//!   (431 past it), the body within `body_timeout` and 1 MiB (413 past it,
//!   408 on time-out). Slow clients hold a connection, never a handler.
//! - Handlers run on a bounded pool (`workers` threads); a response is
//!   materialised by the handler thread and written by the I/O side, so a
//!   client that does not read holds no handler either, and a write that
//!   makes no progress for `write_timeout` closes the connection.
//! - A connection ready for a request (new, or kept alive after a
//!   response) that does not start one within `header_timeout` is closed
//!   (hyper starts its header timer when a keep-alive connection goes
//!   idle); at most `max_connections` are open at once (past it: 503 and close); the soft
//!   `RLIMIT_NOFILE` is raised to the hard limit at start; an accept error
//!   (out of descriptors) is logged and retried with backoff, never fatal.
//! - Malformed requests get hyper's 4xx or a close.
//! - [`Server::stop`] (and SIGTERM/SIGINT with
//!   [`Server::stop_on_signals`]) stops accepting at once, lets in-flight
//!   requests finish within `shutdown_grace`, then closes what is left.
//!
//! Every accepted socket gets `TCP_NODELAY` (keep-alive responses never
//! wait for a delayed ACK). No `unsafe`.
//!
//! - `server`: the listener, the accept loop, each connection's
//!   requests and the shutdown.
//! - `wire`: what the front writes or refuses itself, and its checks of
//!   a request's head.
//! - [`materialise()`]: a handler's response read into bytes.
//!
//! Nothing here knows a page, a route or the monitor: the app hands in a
//! [`Handler`] and an [`Unhandled`] callback.

mod access_log;
mod budget;
mod clients;
mod materialise;
mod server;
mod watched;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use clients::{client_of, Network};
pub use materialise::{materialise, Materialised};
pub use server::{bind, connection_caps, raise_descriptor_limit, Server};

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY: u64 = 1 << 20;
/// An oversized body up to this size is read and dropped before the 413,
/// so the client, still sending, reads the answer instead of a reset.
const DRAIN_CAP: u64 = 8 << 20;
/// Largest request line plus headers; larger ones get 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;

/// Request bodies held in memory at once, all connections together, KiB.
pub const BODY_BUDGET_KIB: u32 = 32 * 1024;

/// A client's share of [`BODY_BUDGET_KIB`]: four of the largest bodies
/// (each counted as 1 MiB and 1 KiB). Past it, 503 at once.
pub const BODY_SHARE_KIB: usize = 4 * ((MAX_BODY / 1024) as usize + 1);

/// Rendered responses waiting to be written, all connections together,
/// KiB: past it, a request's handler waits (at most a second, then 503)
/// for room. A client (see [`client_of`]) may hold an eighth of it; a
/// client that holds nothing may start a handler with an eighth more.
pub const RESPONSE_BUDGET_KIB: usize = 32 * 1024;

/// Each connection's kernel send buffer, bytes (Linux doubles it for its
/// bookkeeping): what a client that does not read can make the kernel
/// hold, instead of the up to 4 MiB of the kernel's automatic sizing.
pub const SEND_BUFFER: usize = 256 * 1024;

/// Descriptors kept, beyond those open at start, for what the blog opens
/// later (the history, the database's readers, a webhook) when the
/// connection cap is fitted under the descriptor limit.
pub const RESERVED_DESCRIPTORS: u64 = 32;

/// A request handler: runs the app on a request and passes its response
/// to the given [`materialise`], returning what that returned. The app's
/// request wrapper sits between the two and learns the body's length from
/// it, so it never has to take the body apart itself (see
/// `Monitor::measure_body`).
pub type Handler =
    Arc<dyn Fn(&rouille::Request, Arrival, Materialise) -> Materialised + Send + Sync>;

/// How long a request waited in the front before its handler ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    /// From the request's head to the end of its body (receiving the body,
    /// waiting for room in the body budget).
    pub body: Duration,
    /// From the body's end to a handler thread taking the request up.
    pub queued: Duration,
}

/// Told of each request or connection the front answers itself, no
/// handler run: its method and path (`None` when its head could not be
/// read, or for a connection refused before any request), why, the
/// answer's bytes and the time from the head to the answer.
pub type Unhandled = Arc<dyn Fn(Option<(&str, &str)>, Refusal, u64, Duration) + Send + Sync>;

/// Why the front answered a request (or a connection) itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a head hyper could not parse, a missing or bad `Host`, a body
    /// that could not be read.
    BadRequest,
    /// 408: the body did not arrive within the body timeout.
    BodyTimeout,
    /// 413: a body over [`MAX_BODY`].
    BodyTooLarge,
    /// 414: a request line past hyper's buffer.
    UriTooLong,
    /// 431: a head over [`MAX_HEAD`] or [`MAX_HEADERS`] fields.
    HeadTooLarge,
    /// 503: no room in the request-body budget.
    BodyBudget,
    /// 503: no room in the response budget (or the client's share of it).
    ResponseBudget,
    /// 503: the server's connection cap is reached.
    Connections,
    /// 503: the client's share of the connection cap is taken.
    ClientConnections,
}

impl Refusal {
    /// The status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::BodyTimeout => 408,
            Refusal::BodyTooLarge => 413,
            Refusal::UriTooLong => 414,
            Refusal::HeadTooLarge => 431,
            Refusal::BodyBudget
            | Refusal::ResponseBudget
            | Refusal::Connections
            | Refusal::ClientConnections => 503,
        }
    }
}

/// The front's way of turning a response into bytes; see [`materialise`].
pub type Materialise = fn(rouille::Response) -> (Materialised, u64);

/// The HTTP front's settings: `STARPUNK_HTTP_*`, `STARPUNK_SHUTDOWN_GRACE`
/// and `STARPUNK_ACCESS_LOG` (documented in docs/OPERATING.md).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// `STARPUNK_HTTP_HEADER_TIMEOUT`: a connection ready for a request
    /// (new, or keep-alive after a response) must start one within this,
    /// and its line and headers must then be complete within this again;
    /// otherwise it is closed. This is also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// `STARPUNK_HTTP_BODY_TIMEOUT`: the whole request body within this.
    pub body_timeout: Duration,
    /// `STARPUNK_HTTP_WRITE_TIMEOUT`: a response write that makes no
    /// progress for this long closes the connection.
    pub write_timeout: Duration,
    /// `STARPUNK_HTTP_MAX_CONNECTIONS`: open connections at once; past it
    /// new ones get a 503 and are closed. Fitted under the descriptor
    /// limit at start (less the descriptors open then and
    /// [`RESERVED_DESCRIPTORS`]).
    pub max_connections: usize,
    /// `STARPUNK_HTTP_MAX_PER_CLIENT`: open connections at once from one
    /// client (an IPv4 address, an IPv6 /64), at most a quarter of the
    /// connection cap; past it, its new ones get a 503 and are closed.
    pub max_per_client: usize,
    /// `STARPUNK_HTTP_TRUSTED_PROXIES`: addresses or networks of reverse
    /// proxies, whose connections count only against the server's cap
    /// (every reader behind a proxy shares its address).
    pub trusted_proxies: Vec<Network>,
    /// `STARPUNK_HTTP_WORKERS`: handler threads (requests handled at once).
    pub workers: usize,
    /// `STARPUNK_SHUTDOWN_GRACE`: on SIGTERM or SIGINT, in-flight requests
    /// get this long to finish.
    pub shutdown_grace: Duration,
    /// `STARPUNK_ACCESS_LOG`: one line per request on stdout.
    pub access_log: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4_096,
            max_per_client: 64,
            trusted_proxies: Vec::new(),
            workers: 8,
            shutdown_grace: Duration::from_secs(10),
            access_log: true,
        }
    }
}

/// A URL's or a `Host` header's authority: a host (a name, an IPv4
/// address or a bracketed IPv6 one) with an optional numeric port, no
/// user info (RFC 3986 3.2, RFC 9112 3.2).
pub fn is_host_and_port(authority: &[u8]) -> bool {
    if authority.contains(&b'@') {
        return false;
    }
    let Ok(a) = hyper::http::uri::Authority::try_from(authority) else {
        return false;
    };
    // The parser takes any text after the last colon as a port.
    let port = &a.as_str()[a.host().len()..];
    !a.host().is_empty()
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.is_empty() || p.parse::<u16>().is_ok()))
}
