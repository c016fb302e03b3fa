//! The listener, the accept loop, each connection's requests and the
//! graceful shutdown.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_io_timeout::TimeoutStream;

use super::wire::{automatic_answer, closing, host_is_valid, log_access, read_body, refuse};
use super::{
    materialise, Arrival, Handler, HttpSettings, Unhandled, BODY_BUDGET_KIB, DRAIN_CAP, MAX_BODY,
    MAX_HEAD, MAX_HEADERS,
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
}

impl Server {
    /// Serves `handler` with `limits` on a listener from [`bind`].
    pub fn start_on(
        std_listener: StdListener,
        limits: HttpSettings,
        handler: Handler,
        unhandled: Unhandled,
    ) -> std::io::Result<Server> {
        raise_descriptor_limit();
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
        let shared = Arc::new(Shared {
            handler,
            unhandled,
            limits,
            body_budget: Arc::new(Semaphore::new(BODY_BUDGET_KIB as usize)),
        });
        let thread = std::thread::Builder::new()
            .name("starpunk-accept".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => serve(listener, shared, stopped).await,
                        Err(e) => crate::elog!("starpunk: cannot serve on {addr}: {e}"),
                    }
                });
                // Handler threads still running past the grace period are
                // not waited for.
                runtime.shutdown_timeout(Duration::from_millis(100));
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
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let limits = shared.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let graceful_watch = graceful.watcher();
        let mut stopping = stopped.clone();
        tokio::spawn(async move {
            // Nothing is allocated for a connection (hyper's buffers, the
            // timers) until it sends its first byte: an idle crowd costs a
            // socket and a small task each.
            let first = tokio::time::timeout(shared.limits.header_timeout, stream.readable());
            let started = tokio::select! {
                r = first => matches!(r, Ok(Ok(()))),
                // Not yet a request: nothing to wait for on shutdown.
                _ = stopping.wait_for(|s| *s) => false,
            };
            if !started {
                drop(permit);
                return;
            }
            // Writes only: a read timeout would also cut a connection
            // whose request is in a handler (hyper keeps a read open to
            // notice a client leaving); reads are bounded by the header
            // and body timeouts.
            let mut timed = TimeoutStream::new(stream);
            timed.set_write_timeout(Some(shared.limits.write_timeout));
            let io = TokioIo::new(Box::pin(timed));
            let limits = shared.limits.clone();
            let unhandled = shared.unhandled.clone();
            let service = hyper::service::service_fn(move |req| respond(req, peer, shared.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEAD)
                .max_headers(MAX_HEADERS)
                .serve_connection(io, service);
            // A client that goes away, times out or sends garbage ends its
            // own connection; a head hyper refused and answered is counted.
            if let Err(e) = graceful_watch.watch(conn).await {
                if let Some(status) = automatic_answer(&e) {
                    unhandled(None, status, 0, Duration::ZERO);
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            crate::elog!(
                "starpunk: shutdown grace of {:.1} s over; closing the connections left",
                limits.shutdown_grace.as_secs_f64()
            );
        }
    }
}

/// Reads the whole body (bounded in size and time), then runs the handler
/// on the blocking pool.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
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
    let access_log = shared.limits.access_log;
    // An answer without a handler (the body was refused), logged too.
    let refuse = |status: StatusCode, text: &'static str| {
        let took = received.elapsed();
        if access_log {
            log_access(peer, &method, &path, status.as_u16(), text.len(), took);
        }
        (shared.unhandled)(
            Some((&method, &path)),
            status.as_u16(),
            text.len() as u64,
            took,
        );
        Ok(closing(status, text))
    };
    if !host_is_valid(&parts) {
        return refuse(
            StatusCode::BAD_REQUEST,
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
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE);
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
    // A server full of bodies answers at once rather than holding the
    // client: at most a second's wait for room.
    let wait = shared.limits.body_timeout.min(Duration::from_secs(1));
    let budget = shared.body_budget.clone();
    let Ok(Ok(budget)) = tokio::time::timeout(wait, budget.acquire_many_owned(kib)).await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many request bodies at once; try again\n",
        );
    };
    let capacity = declared.unwrap_or(0).min(MAX_BODY) as usize;
    let read = tokio::time::timeout(shared.limits.body_timeout, read_body(body, capacity)).await;
    let body_done = std::time::Instant::now();
    let body = match read {
        Ok(Ok(Some(bytes))) => bytes,
        Ok(Ok(None)) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
        Ok(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "Bad request body\n"),
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "Request body not received in time\n",
            )
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
        if access_log {
            log_access(
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
        (
            response.status,
            response.headers,
            response.body,
            response.complete,
        )
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
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
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
    Ok(response)
}
