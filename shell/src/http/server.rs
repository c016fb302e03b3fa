//! The listener, the accept loop, each connection's requests and the
//! graceful shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_io_timeout::TimeoutStream;

use super::access_log::AccessLog;
use super::budget::{held_bytes, Budget};
use super::clients::Clients;
use super::watched::Watched;
use super::wire::{automatic_answer, closing, host_is_valid, read_body, refuse};
use super::{
    materialise, Arrival, Handler, HttpSettings, Refusal, Unhandled, BODY_BUDGET_KIB,
    BODY_SHARE_KIB, DRAIN_CAP, MAX_BODY, MAX_HEAD, MAX_HEADERS, RESERVED_DESCRIPTORS,
    RESPONSE_BUDGET_KIB, SEND_BUFFER,
};

/// A running server; stops when [`stop`](Self::stop) is called or dropped.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
    thread: Option<JoinHandle<()>>,
}

/// The listening socket on `addr` (`SO_REUSEADDR`; `TCP_NODELAY` is set on
/// each accepted connection), with an error that names the address.
pub fn bind(addr: SocketAddr) -> std::io::Result<StdListener> {
    let listen = || -> std::io::Result<StdListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    listen().map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Raises the soft limit on open descriptors to the hard limit, so the
/// connection cap, not the descriptor limit, is what refuses clients.
/// Returns the soft limit in force.
pub fn raise_descriptor_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// What every connection task shares.
struct Shared {
    handler: Handler,
    unhandled: Unhandled,
    limits: HttpSettings,
    /// KiB of request bodies that may be in memory (see [`BODY_BUDGET_KIB`]).
    body_budget: Arc<Semaphore>,
    /// Rendered responses waiting to be written (see [`RESPONSE_BUDGET_KIB`]).
    responses: Arc<Budget>,
    /// Handlers running or about to run: one per handler thread, taken
    /// before the response budget is checked, so what can be rendered past
    /// the budget is bounded by the threads.
    handlers: Arc<Semaphore>,
    /// Open connections and waiting responses, per client.
    clients: Arc<Clients>,
    /// Set on stop: every response from then on closes its connection.
    stopping: watch::Receiver<bool>,
    /// `STARPUNK_ACCESS_LOG`'s writer, when on.
    access_log: Option<AccessLog>,
}

/// The connection cap in force: the setting, fitted under `room`, the
/// descriptors left for connections (`None`: unknown); and each client's
/// share of it (at most a quarter).
pub fn connection_caps(limits: &HttpSettings, room: Option<u64>) -> (usize, usize) {
    let mut cap = limits.max_connections.max(1);
    if let Some(room) = room {
        cap = cap.min(usize::try_from(room.max(1)).unwrap_or(usize::MAX));
    }
    let per_client = limits.max_per_client.clamp(1, (cap / 4).max(1));
    (cap, per_client)
}

/// Descriptors left for connections under the soft limit `nofile`: less
/// those open now and [`RESERVED_DESCRIPTORS`] for what the blog opens
/// later (the history, the database's readers, a webhook). `None` when
/// the limit is unknown.
fn descriptor_room(nofile: u64) -> Option<u64> {
    if nofile == 0 {
        return None;
    }
    let open =
        std::fs::read_dir("/proc/self/fd").map_or(RESERVED_DESCRIPTORS, |d| d.count() as u64);
    Some(nofile.saturating_sub(open + RESERVED_DESCRIPTORS))
}

impl Server {
    /// Serves `handler` with `limits` on a listener from [`bind`].
    pub fn start_on(
        std_listener: StdListener,
        limits: HttpSettings,
        handler: Handler,
        unhandled: Unhandled,
    ) -> std::io::Result<Server> {
        let nofile = raise_descriptor_limit();
        let (cap, per_client) = connection_caps(&limits, descriptor_room(nofile));
        if cap < limits.max_connections {
            crate::elog!(
                "starpunk: at most {cap} connections (the descriptor limit is {nofile}; {} asked)",
                limits.max_connections
            );
        }
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(limits.workers.max(1))
            .thread_name("starpunk-http")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = watch::channel(false);
        let (access_log, log_writer) = if limits.access_log {
            let (log, writer) = AccessLog::start()?;
            (Some(log), Some(writer))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            handler,
            unhandled,
            body_budget: Arc::new(Semaphore::new(BODY_BUDGET_KIB as usize)),
            responses: Budget::new(RESPONSE_BUDGET_KIB),
            handlers: Arc::new(Semaphore::new(limits.workers.max(1))),
            clients: Clients::new(
                per_client,
                (limits.workers / 2).max(1),
                RESPONSE_BUDGET_KIB / 8,
                BODY_SHARE_KIB,
                limits.trusted_proxies.clone(),
            ),
            stopping: stopped.clone(),
            access_log,
            limits,
        });
        let thread = std::thread::Builder::new()
            .name("starpunk-accept".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => serve(listener, shared, cap, stopped).await,
                        Err(e) => crate::elog!("starpunk: cannot serve on {addr}: {e}"),
                    }
                });
                // Handler threads still running past the grace period are
                // not waited for.
                runtime.shutdown_timeout(Duration::from_millis(100));
                // The log's last lines, unless stdout does not take them.
                if let Some(writer) = log_writer {
                    writer.finish(Duration::from_secs(1));
                }
            })?;
        Ok(Server {
            addr,
            stop,
            runtime: handle,
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server gracefully on SIGTERM or SIGINT.
    pub fn stop_on_signals(&self) {
        let stop = self.stop.clone();
        self.runtime.spawn(async move {
            let signal = wait_for_signal().await;
            crate::elog!("starpunk: {signal}: stopping (in-flight requests may finish)");
            let _ = stop.send(true);
        });
    }

    /// Blocks until the server has stopped (after [`stop`](Self::stop), a
    /// signal with [`stop_on_signals`](Self::stop_on_signals), or never).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, lets in-flight requests finish within the grace
    /// period, and returns when the server is down.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        self.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// SIGTERM or SIGINT, whichever comes first; its name.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: wait forever (the process is stopped by force).
        std::future::pending::<()>().await;
        return "";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The accept loop, then the graceful shutdown.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    cap: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = shared.limits.clone();
    let permits = Arc::new(Semaphore::new(cap));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: wait for descriptors to free up.
                crate::elog!(
                    "starpunk: accept failed ({e}); retrying in {} ms",
                    backoff.as_millis()
                );
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream);
            (shared.unhandled)(None, Refusal::Connections, 0, Duration::ZERO);
            continue;
        };
        let Some(share) = shared.clients.admit(peer.ip()) else {
            refuse(stream);
            (shared.unhandled)(None, Refusal::ClientConnections, 0, Duration::ZERO);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let shared = shared.clone();
        let mut stopping = stopped.clone();
        tokio::spawn(async move {
            // Nothing is allocated for a connection (hyper's buffers, the
            // timers) until it sends its first byte: an idle crowd costs a
            // socket and a small task each.
            let first = tokio::time::timeout(shared.limits.header_timeout, stream.readable());
            let started = tokio::select! {
                // A first byte that came with the stop is served (the
                // drain in `connection` answers its request).
                biased;
                r = first => matches!(r, Ok(Ok(()))),
                // Not yet a request: nothing to wait for on shutdown.
                _ = stopping.wait_for(|s| *s) => false,
            };
            if started {
                connection(stream, peer, share.client(), shared, stopping).await;
            }
            drop(share);
            drop(permit);
        });
    }
    drop(listener);
    // Every connection gives its permit back when it ends.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        crate::elog!(
            "starpunk: shutdown grace of {:.1} s over; closing the connections left",
            limits.shutdown_grace.as_secs_f64()
        );
    }
}

/// How long a connection with no request under way is kept open after a
/// stop, for a request already on its way (sent just before the stop):
/// it is answered, with `Connection: close`.
const STOP_DRAIN: Duration = Duration::from_millis(100);

/// Serves one connection's requests until it ends, or until a stop finds
/// it with no request under way.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    client: Option<IpAddr>,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    // Writes only: a read timeout would also cut a connection whose
    // request is in a handler (hyper keeps a read open to notice a client
    // leaving); reads are bounded by the header and body timeouts.
    let mut timed = TimeoutStream::new(stream);
    timed.set_write_timeout(Some(shared.limits.write_timeout));
    let (watched, under_way) = Watched::new(Box::pin(timed));
    let io = TokioIo::new(watched);
    let limits = shared.limits.clone();
    let unhandled = shared.unhandled.clone();
    let service = hyper::service::service_fn(move |req| respond(req, peer, client, shared.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = stopping.wait_for(|s| *s) => None,
    };
    let ended = match ended {
        Some(r) => r,
        None => {
            // Stopping: a request read (or being read) is answered, and
            // its response closes the connection (see `respond`); one
            // still on its way gets `STOP_DRAIN` to arrive. A connection
            // with nothing under way is closed.
            let drained = tokio::time::Instant::now() + limits.shutdown_grace.min(STOP_DRAIN);
            loop {
                let now = tokio::time::Instant::now();
                let nap = if now < drained {
                    drained - now
                } else {
                    Duration::from_millis(10)
                };
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = tokio::time::sleep(nap) => {}
                }
                if tokio::time::Instant::now() >= drained && !under_way.get() {
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
            }
        }
    };
    // A client that goes away, times out or sends garbage ends its own
    // connection; a head hyper refused and answered is counted.
    if let Err(e) = ended {
        if let Some(refusal) = automatic_answer(&e) {
            unhandled(None, refusal, 0, Duration::ZERO);
        }
    }
}

/// Reads the whole body (bounded in size and time), then runs the handler
/// on the blocking pool.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    client: Option<IpAddr>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let received = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let url = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let access_log = shared.access_log.clone();
    // An answer without a handler (the body was refused), logged too.
    let refuse = |why: Refusal, text: &'static str| {
        let took = received.elapsed();
        let status = why.status();
        if let Some(log) = &access_log {
            log.line(peer, &method, &path, status, text.len(), took);
        }
        (shared.unhandled)(Some((&method, &path)), why, text.len() as u64, took);
        Ok(closing(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            text,
        ))
    };
    if !host_is_valid(&parts) {
        return refuse(
            Refusal::BadRequest,
            "Missing, repeated or invalid Host header\n",
        );
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    const TOO_LARGE: &str = "Request body too large (1 MiB at most)\n";
    if declared.is_some_and(|n| n > DRAIN_CAP) {
        return refuse(Refusal::BodyTooLarge, TOO_LARGE);
    }
    // Bodies in memory at once are bounded server-wide: a request with a
    // body takes its size (or 1 MiB when unknown) from the budget until
    // its handler is done.
    let has_body = declared.map_or_else(|| !hyper::body::Body::is_end_stream(&body), |n| n > 0);
    let kib = if has_body {
        (declared.unwrap_or(MAX_BODY).min(MAX_BODY) / 1024 + 1) as u32
    } else {
        0
    };
    // A client past its share of the budget (four of the largest bodies)
    // is answered at once: one address cannot hold the whole budget with
    // bodies it announces and never sends.
    let Ok(body_share) = shared.clients.hold_body(client, kib as usize) else {
        return refuse(
            Refusal::BodyBudget,
            "Too many request bodies at once from this client; try again\n",
        );
    };
    // A server full of bodies answers at once rather than holding the
    // client: at most a second's wait for room.
    let wait = shared.limits.body_timeout.min(Duration::from_secs(1));
    let budget = shared.body_budget.clone();
    let Ok(Ok(budget)) = tokio::time::timeout(wait, budget.acquire_many_owned(kib)).await else {
        return refuse(
            Refusal::BodyBudget,
            "Too many request bodies at once; try again\n",
        );
    };
    let capacity = declared.unwrap_or(0).min(MAX_BODY) as usize;
    let read = tokio::time::timeout(shared.limits.body_timeout, read_body(body, capacity)).await;
    let body_done = std::time::Instant::now();
    let body = match read {
        Ok(Ok(Some(bytes))) => bytes,
        Ok(Ok(None)) => return refuse(Refusal::BodyTooLarge, TOO_LARGE),
        Ok(Err(_)) => return refuse(Refusal::BadRequest, "Bad request body\n"),
        Err(_) => return refuse(Refusal::BodyTimeout, "Request body not received in time\n"),
    };
    // A handler starts only with room for its response: the client under
    // its share, the server's budget with room (waited for up to a second,
    // holding no thread), one of the client's handler slots (half the
    // threads; waited for as long as a body may take), then a thread, with
    // room still there (so what is rendered past the budget is bounded by
    // the threads, and past a client's share by its slots).
    const NO_ROOM: &str = "Too many responses waiting to be read; try again\n";
    let slot_until = tokio::time::Instant::now() + shared.limits.body_timeout;
    let (thread, running) = loop {
        let (held, room) = shared.clients.response_room(client);
        if !room
            || !shared
                .responses
                .room(held == 0, Duration::from_secs(1))
                .await
        {
            return refuse(Refusal::ResponseBudget, NO_ROOM);
        }
        let Ok(running) = shared.clients.handler(client, slot_until).await else {
            return refuse(Refusal::ResponseBudget, NO_ROOM);
        };
        let thread = tokio::time::timeout_at(slot_until, shared.handlers.clone().acquire_owned());
        let Ok(Ok(thread)) = thread.await else {
            return refuse(Refusal::ResponseBudget, NO_ROOM);
        };
        // Still room, now that this one holds a thread (the others that
        // passed the checks with it are rendering).
        let (held, room) = shared.clients.response_room(client);
        if room && shared.responses.room(held == 0, Duration::ZERO).await {
            break (thread, running);
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let handler = shared.handler.clone();
    let counted = shared.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let arrival = Arrival {
            body: body_done.saturating_duration_since(received),
            queued: body_done.elapsed(),
        };
        let req = rouille::Request::fake_http_from(peer, method.clone(), url, headers, body);
        // The app's wrapper already records a panic as a 500; this keeps
        // the pool's thread alive whatever happens. The response is
        // materialised here, written by the I/O side: a client that does
        // not read holds no handler thread.
        let response = catch_unwind(AssertUnwindSafe(|| handler(&req, arrival, materialise)))
            .unwrap_or_else(|_| {
                materialise(
                    rouille::Response::text("Internal server error\n").with_status_code(500),
                )
                .0
            });
        if let Some(log) = &access_log {
            log.line(
                peer,
                &method,
                &path,
                response.status,
                response.body.len(),
                received.elapsed(),
            );
        }
        // The request's body (inside `req`) is gone: its budget goes back.
        drop(req);
        drop(budget);
        drop(body_share);
        // The response counts against the budgets (until hyper has written
        // its last byte) before the thread is given back, so the next
        // handler's check sees it.
        let len = response.body.len();
        let hold = counted.responses.hold(len);
        let share = counted.clients.hold_response(client, len);
        let bytes = held_bytes(response.body, hold, share);
        drop(running);
        drop(thread);
        (response.status, response.headers, bytes, response.complete)
    })
    .await;
    let Ok((status, headers, bytes, complete)) = ran else {
        return Ok(closing(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error\n",
        ));
    };
    if !complete {
        return Ok(closing(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error\n",
        ));
    }
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("Content-Length")
            || name.eq_ignore_ascii_case("Transfer-Encoding")
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    if status == 503 && !response.headers().contains_key(RETRY_AFTER) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if *shared.stopping.borrow() {
        // The server is stopping: this is the connection's last response.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_under_the_descriptor_limit_and_a_client_gets_a_quarter() {
        let limits = HttpSettings::default();
        assert_eq!(connection_caps(&limits, None), (4096, 64));
        assert_eq!(connection_caps(&limits, Some(1 << 20)), (4096, 64));
        // `ulimit -n 256`: about 200 left for connections, 50 a client.
        assert_eq!(connection_caps(&limits, Some(200)), (200, 50));
        assert_eq!(connection_caps(&limits, Some(0)), (1, 1));
        let small = HttpSettings {
            max_connections: 10,
            max_per_client: 64,
            ..HttpSettings::default()
        };
        assert_eq!(connection_caps(&small, None), (10, 2));
        let one = HttpSettings {
            max_connections: 1,
            ..HttpSettings::default()
        };
        assert_eq!(connection_caps(&one, Some(10)), (1, 1));
    }
}
