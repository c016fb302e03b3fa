//! What the front answers, refuses or logs itself, and its checks of a
//! request's head.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, RETRY_AFTER};
use hyper::{Response, StatusCode};
use tokio::net::TcpStream;

use super::{Refusal, DRAIN_CAP, MAX_BODY};

/// The status hyper answered a connection's error with, if it answered:
/// it writes 400 for a malformed head, 414 for a request line past the
/// buffer and 431 for a head past it, then ends the connection with the
/// same error (hyper 1.x, `proto::h1::role::Server::on_error`). An HTTP/2
/// preface, a time-out or an internal error get no answer.
pub(super) fn automatic_answer(e: &hyper::Error) -> Option<Refusal> {
    if !e.is_parse() || e.is_parse_version_h2() || e.is_parse_status() {
        return None;
    }
    let text = e.to_string();
    if e.is_parse_too_large() {
        Some(if text.starts_with("URI too long") {
            Refusal::UriTooLong
        } else {
            Refusal::HeadTooLarge
        })
    } else if text.starts_with("internal error") {
        None
    } else {
        Some(Refusal::BadRequest)
    }
}

/// RFC 9112 (3.2): an HTTP/1.1 request needs exactly one `Host` (HTTP/1.0
/// at most one), and its value is a host with an optional port, or empty;
/// a server answers 400 otherwise.
pub(super) fn host_is_valid(parts: &hyper::http::request::Parts) -> bool {
    let mut hosts = parts.headers.get_all(hyper::header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return false;
    }
    let Some(host) = first else {
        return parts.version < hyper::Version::HTTP_11;
    };
    host.is_empty() || super::is_host_and_port(host.as_bytes())
}

/// Past the connection cap or a client's share of it: a 503 if the socket
/// takes it at once, then close.
pub(super) fn refuse(stream: TcpStream) {
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
}

/// A plain-text response that closes the connection (the request was not
/// read to its end, or should not be retried on this connection).
pub(super) fn closing(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The whole body if it is at most [`MAX_BODY`]; `None` if it is larger
/// (read and dropped up to [`DRAIN_CAP`], so the client can read the 413).
pub(super) async fn read_body(
    mut body: Incoming,
    capacity: usize,
) -> Result<Option<Vec<u8>>, hyper::Error> {
    let mut kept = Vec::with_capacity(capacity);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen <= MAX_BODY {
            kept.extend_from_slice(&data);
        } else {
            kept = Vec::new();
            if seen > DRAIN_CAP {
                return Ok(None);
            }
        }
    }
    Ok((seen <= MAX_BODY).then_some(kept))
}
