//! A connection's socket, watched: whether a request is under way on it
//! (bytes read since the last response was written), which is what a stop
//! must not cut.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The socket `S`, noting reads and writes.
pub(super) struct Watched<S> {
    inner: S,
    under_way: Arc<AtomicBool>,
}

/// Whether a request is under way on a [`Watched`] socket.
#[derive(Clone)]
pub(super) struct UnderWay(Arc<AtomicBool>);

impl UnderWay {
    /// Bytes were read since the last response bytes were written: a
    /// request is arriving, in a handler, or being answered.
    pub(super) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S) -> (Self, UnderWay) {
        let under_way = Arc::new(AtomicBool::new(false));
        (
            Watched {
                inner,
                under_way: under_way.clone(),
            },
            UnderWay(under_way),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.under_way.store(true, Ordering::Release);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.under_way.store(false, Ordering::Release);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
