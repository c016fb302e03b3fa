//! The HTTP server: rouille handlers on tiny_http, over a listener we own.
//!
//! `rouille::Server` binds its own listener and never exposes it, and
//! tiny_http never sets `TCP_NODELAY`. On a keep-alive connection every
//! response over ~1 KiB then waits for the client's 40 ms delayed ACK
//! (Nagle). So we build the listening socket ourselves with socket2, set
//! `TCP_NODELAY` on it (Linux's accepted sockets inherit it), hand it to
//! `tiny_http::Server::from_listener` (the same tiny_http rouille uses), and
//! convert each request and response exactly as `rouille::Server` does.
//! No `unsafe`, no private API.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY: u64 = 1 << 20;

/// A request handler.
pub type Handler = Arc<dyn Fn(&rouille::Request) -> rouille::Response + Send + Sync>;

/// A running server; stops when [`stop`](Self::stop) is called or dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// The listening socket: `SO_REUSEADDR` and `TCP_NODELAY`, inherited by
/// every accepted connection.
pub fn listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Server {
    /// Starts `workers` threads serving `handler` on `addr`.
    pub fn start(addr: SocketAddr, workers: usize, handler: Handler) -> std::io::Result<Server> {
        let listener = listener(addr)?;
        let addr = listener.local_addr()?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let http = Arc::new(http);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers.max(1))
            .map(|i| {
                let (http, stop, handler) = (http.clone(), stop.clone(), handler.clone());
                std::thread::Builder::new()
                    .name(format!("starpunk-http-{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match http.recv_timeout(Duration::from_millis(200)) {
                                Ok(Some(request)) => serve(request, &handler),
                                Ok(None) => {}
                                Err(_) => break,
                            }
                        }
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Server {
            addr,
            stop,
            workers,
        })
    }

    /// The bound address (with the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the workers exit (after `stop`, or forever).
    pub fn join(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Stops accepting and waits for in-flight requests.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut request: tiny_http::Request, handler: &Handler) {
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_string(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let remote = request
        .remote_addr()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));

    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body);
    let response = if read.is_err() {
        rouille::Response::text("Bad request body\n").with_status_code(400)
    } else if body.len() as u64 > MAX_BODY {
        rouille::Response::text("Request body too large (1 MiB at most)\n").with_status_code(413)
    } else {
        let req = rouille::Request::fake_http_from(remote, method, url, headers, body);
        // The app's wrapper already records a panic as a 500; this keeps the
        // worker alive whatever happens.
        catch_unwind(AssertUnwindSafe(|| handler(&req))).unwrap_or_else(|_| {
            rouille::Response::text("Internal server error\n").with_status_code(500)
        })
    };
    respond(request, response);
}

fn respond(request: tiny_http::Request, response: rouille::Response) {
    let headers: Vec<tiny_http::Header> = response
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("Content-Length"))
        .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
        .collect();
    let (reader, size) = response.data.into_reader_and_size();
    let out = tiny_http::Response::new(
        tiny_http::StatusCode(response.status_code),
        headers,
        reader,
        size,
        None,
    );
    // A client that went away is not an error worth reporting.
    let _ = request.respond(out);
}
