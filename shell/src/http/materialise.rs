//! A handler's response read into memory on its thread, for the I/O
//! side to write.

use std::io::Read;

/// A response read into memory by the handler thread, ready for the I/O
/// side to write.
pub struct Materialised {
    /// The status code.
    pub status: u16,
    /// The handler's headers (`Content-Length` and `Transfer-Encoding` are
    /// the front's to set and are dropped when written).
    pub headers: Vec<(
        std::borrow::Cow<'static, str>,
        std::borrow::Cow<'static, str>,
    )>,
    /// The whole body.
    pub body: Vec<u8>,
    /// False when reading the body failed: the front answers 500.
    pub complete: bool,
}

/// Reads `response`'s body into memory; returns it with the body's length
/// in bytes (what the monitor records).
pub fn materialise(response: rouille::Response) -> (Materialised, u64) {
    let (mut reader, size) = response.data.into_reader_and_size();
    let mut body = Vec::with_capacity(size.unwrap_or(0));
    let complete = reader.read_to_end(&mut body).is_ok();
    let len = body.len() as u64;
    let materialised = Materialised {
        status: response.status_code,
        headers: response.headers,
        body,
        complete,
    };
    (materialised, len)
}
