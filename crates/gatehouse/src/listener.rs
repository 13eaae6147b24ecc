//! The accept loop, in place of `axum::serve` (which has no timeouts and no connection
//! cap): every connection gets header, idle and write deadlines on its socket, and is
//! counted against a global cap and a per-client-IP cap, so slow or numerous connections
//! from one client cannot take the server off the air. The request body's deadline is a
//! layer in `gatehouse-http`, where the answer (408) can be rendered.

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use gatehouse_core::Service;
use gatehouse_http::TrustedProxies;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// Timeouts and caps (see `[http]` in docs/configuration.md).
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// How often, at most, a refused connection is logged (a flood must not flood the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then waits for open connections
/// to finish their requests (as `axum::serve(..).with_graceful_shutdown(..)` did).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    trusted: TrustedProxies,
    svc: Arc<Service>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = PerIp::new(limits.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    // No hyper timer, so hyper's own `header_read_timeout` stays off: its clock starts when
    // hyper begins waiting for a request, which would cut kept-alive connections at the
    // header timeout and never covers the HTTP/1-or-2 sniffing of a new connection.
    // `Deadlines` does both jobs on the socket.
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            refusals.refuse(&svc, "max_connections", peer.ip());
            continue;
        };
        // Behind a proxy every client shares the proxy's address: the per-IP cap would
        // refuse them all, so trusted proxies are held only to the global cap.
        let slot = if trusted.contains(peer.ip()) {
            None
        } else {
            match per_ip.acquire(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refusals.refuse(&svc, "max_connections_per_ip", peer.ip());
                    continue;
                }
            }
        };
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Deadlines::new(stream, &limits, activity.clone()));
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Handlers and the trusted-proxy logic read the peer exactly as before.
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::start(&activity);
            let router = router.clone();
            async move {
                let res = router.oneshot(req.map(Body::new)).await;
                res.map(|r| r.map(|inner| Tracked { inner, _busy: busy }))
            }
        });
        let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((permit, slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Counts refusals and logs them, at most once per `REFUSAL_LOG_EVERY`.
#[derive(Default)]
struct Refusals {
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn refuse(&mut self, svc: &Service, reason: &'static str, ip: IpAddr) {
        svc.metrics
            .inc("gatehouse_connections_refused_total", &[("reason", reason)]);
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                reason,
                client_ip = %ip,
                refused = self.unlogged,
                "connection limit reached: closing new connections"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// Open connections per client IP.
#[derive(Clone)]
struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The address a connection is counted under: an IPv4 address (also when it arrives
/// IPv4-mapped on a dual-stack socket), or an IPv6 address's /64, since one client
/// commonly holds a whole /64 and could otherwise open the cap from each of its addresses.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

/// One connection's place in `PerIp`; gives it back on drop.
struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = client_key(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Keep the map as small as the set of clients connected right now.
                open.remove(&self.ip);
            }
        }
    }
}

/// What the socket wrapper needs to know about the requests on its connection: whether
/// one is in progress (then reads have no deadline: the body deadline and the handler take
/// over) and when the last one ended (the idle clock starts).
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    finished: AtomicU64,
    /// The connection task, parked on a read while a request was in progress, to be woken
    /// when it ends so the idle deadline is armed.
    parked: Mutex<Option<Waker>>,
}

/// A request in progress, from its headers until its response body is dropped (sent).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(waker) = self.0.parked.lock().ok().and_then(|mut w| w.take()) {
            waker.wake();
        }
    }
}

/// A response body that holds its request's `Busy` until the server drops it.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where the read side of a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadPhase {
    /// Waiting for a request's headers: the header deadline runs (from accept on a new
    /// connection, so a bare connect is closed too, and from the first byte after a pause).
    Head,
    /// Between requests with nothing received: the idle deadline runs.
    Idle,
    /// A request is in progress: no read deadline here.
    Busy,
}

/// A socket with read and write deadlines. An expired deadline fails the read or write
/// with `TimedOut`, and the server closes the connection.
struct Deadlines<S> {
    io: S,
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    phase: ReadPhase,
    seen_finished: u64,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    write_stalled: bool,
}

impl<S> Deadlines<S> {
    fn new(io: S, limits: &Limits, activity: Arc<Activity>) -> Self {
        let now = Instant::now();
        Self {
            io,
            activity,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            write_timeout: limits.write_timeout,
            phase: ReadPhase::Head,
            seen_finished: 0,
            read_timer: Box::pin(tokio::time::sleep_until(now + limits.header_timeout)),
            write_timer: Box::pin(tokio::time::sleep_until(now + limits.write_timeout)),
            write_stalled: false,
        }
    }

    fn timed_out(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, format!("{what} deadline passed"))
    }

    /// A write that could not proceed: arms the write deadline, or fails once it passed.
    fn write_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.write_stalled {
            self.write_stalled = true;
            let deadline = Instant::now() + self.write_timeout;
            self.write_timer.as_mut().reset(deadline);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Self::timed_out("write"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn write_done<T>(
        &mut self,
        res: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match res {
            Poll::Pending => self.write_pending(cx),
            ready => {
                self.write_stalled = false;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.activity.in_flight.load(Ordering::SeqCst) > 0 {
            this.phase = ReadPhase::Busy;
            if res.is_pending()
                && let Ok(mut parked) = this.activity.parked.lock()
            {
                *parked = Some(cx.waker().clone());
            }
            return res;
        }
        let finished = this.activity.finished.load(Ordering::SeqCst);
        if finished != this.seen_finished || this.phase == ReadPhase::Busy {
            this.seen_finished = finished;
            this.phase = ReadPhase::Idle;
            let deadline = Instant::now() + this.idle_timeout;
            this.read_timer.as_mut().reset(deadline);
        }
        match res {
            Poll::Ready(Ok(())) if this.phase == ReadPhase::Idle && buf.filled().len() > before => {
                this.phase = ReadPhase::Head;
                let deadline = Instant::now() + this.header_timeout;
                this.read_timer.as_mut().reset(deadline);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.read_timer.as_mut().poll(cx) {
                Poll::Ready(()) if this.phase == ReadPhase::Idle => {
                    Poll::Ready(Err(Self::timed_out("idle")))
                }
                Poll::Ready(()) => Poll::Ready(Err(Self::timed_out("header"))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        this.write_done(res, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.write_done(res, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_flush(cx);
        this.write_done(res, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_shutdown(cx);
        this.write_done(res, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn limits(ms: u64) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(ms),
            write_timeout: Duration::from_millis(ms),
            idle_timeout: Duration::from_millis(ms),
            max_connections: 4,
            max_connections_per_ip: 2,
        }
    }

    #[tokio::test]
    async fn a_silent_connection_fails_its_read_at_the_header_deadline() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io = Deadlines::new(server, &limits(50), Arc::default());
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[tokio::test]
    async fn no_read_deadline_while_a_request_is_in_progress_then_the_idle_one() {
        let (_client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = Deadlines::new(server, &limits(50), activity.clone());
        let busy = Busy::start(&activity);
        let mut buf = [0u8; 8];
        // Well past the deadline, the read is still waiting: a request is in progress.
        let waited = tokio::time::timeout(Duration::from_millis(300), io.read(&mut buf)).await;
        assert!(waited.is_err(), "{waited:?}");
        drop(busy);
        let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("idle"), "{err}");
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_at_the_write_deadline() {
        let (_client, server) = tokio::io::duplex(16);
        let mut io = Deadlines::new(server, &limits(50), Arc::default());
        let err = tokio::time::timeout(Duration::from_secs(10), io.write_all(&[0u8; 1024]))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn per_ip_slots_are_capped_and_given_back() {
        let per_ip = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = per_ip.acquire(ip).unwrap();
        let _b = per_ip.acquire(ip).unwrap();
        assert!(per_ip.acquire(ip).is_none());
        assert!(per_ip.acquire("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(per_ip.acquire(ip).is_some());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let per_ip = PerIp::new(1);
        let _a = per_ip.acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            per_ip
                .acquire("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(per_ip.acquire("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _b = per_ip.acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(
            per_ip
                .acquire("::ffff:192.0.2.7".parse().unwrap())
                .is_none()
        );
    }
}
