//! What the fuzz targets share: running a future that never waits on I/O, and splitting an
//! input into newline-separated fields (so the seed corpora stay readable text).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls `fut` to completion. Only for futures that make progress on every poll (in-memory
/// stores, full bodies): the targets must not pull in a runtime per input.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The first `n - 1` lines of `text` and the rest (which may hold more newlines).
pub fn fields(text: &str, n: usize) -> Vec<&str> {
    text.splitn(n, '\n').collect()
}
