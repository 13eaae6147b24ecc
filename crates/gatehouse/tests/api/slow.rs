//! Slow and numerous connections (penetration test: "one client can take the server off
//! the air"): held-open partial requests do not stop others being served, each kind is
//! closed at its deadline, and the connection caps close the excess and count it. The
//! network layer does not depend on the backend, so these run on SQLite only.

use crate::helpers::{Backend, TestApp, spawn_app_with};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How long any condition below may take to come true.
const DEADLINE: Duration = Duration::from_secs(20);

const PARTIAL_HEADER: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ";
const PARTIAL_BODY: &[u8] = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\
Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"identifier\":";
const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A connection to the app from `from`: every 127.x address is loopback, so one test can
/// play several clients.
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(app.addr).await.unwrap()
}

/// A connection from 127.0.0.1 left hanging in one of three ways: a bare connect, a
/// partial header, or complete headers with a partial body.
async fn hold_open(app: &TestApp, kind: usize) -> TcpStream {
    let mut s = connect_from(app, "127.0.0.1").await;
    match kind % 3 {
        0 => {}
        1 => s.write_all(PARTIAL_HEADER).await.unwrap(),
        _ => s.write_all(PARTIAL_BODY).await.unwrap(),
    }
    s
}

/// Reads until the server closes `s` (failing if it does not within `DEADLINE`), and
/// returns what it sent before closing.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "still open after {DEADLINE:?}; received: {}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// The status `/health` answers a client at `from` with (0: no answer).
async fn health_from(app: &TestApp, from: &str) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    match client.get(app.url("/health")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Sends a whole `/health` request on a fresh connection from `from` and returns what
/// came back before the server closed it ("" when it was closed unanswered).
async fn raw_health_from(app: &TestApp, from: &str) -> String {
    let mut s = connect_from(app, from).await;
    // The server may already have closed it: a failed write is an answer too.
    let _ = s
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await;
    read_until_closed(&mut s).await
}

/// Polls `probe` until it returns true, failing after `DEADLINE`.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + DEADLINE;
    while !probe().await {
        assert!(Instant::now() < until, "{what}: not within {DEADLINE:?}");
        tokio::task::yield_now().await;
    }
}

fn refused(app: &TestApp, reason: &str) -> u64 {
    app.svc
        .metrics
        .get("gatehouse_connections_refused_total", &[("reason", reason)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_open_requests_leave_others_served_and_the_per_ip_cap_closes_the_next() {
    const CAP: usize = 9;
    let app = spawn_app_with(Backend::Sqlite, |c| {
        // Long deadlines: this test is about the caps, not the timeouts.
        c.http.header_timeout_seconds = 600;
        c.http.body_timeout_seconds = 600;
        c.http.idle_timeout_seconds = 600;
        c.http.max_connections = 64;
        c.http.max_connections_per_ip = CAP;
    })
    .await;
    let mut held = Vec::new();
    for kind in 0..CAP {
        held.push(hold_open(&app, kind).await);
    }
    assert_eq!(health_from(&app, "127.0.0.2").await, 200);
    // Connection CAP + 1 from the same address is closed unanswered (the listener accepts
    // in order, so the held ones are counted first)…
    assert_eq!(raw_health_from(&app, "127.0.0.1").await, "");
    assert_eq!(refused(&app, "max_connections_per_ip"), 1);
    // …while everyone else is still served.
    assert_eq!(health_from(&app, "127.0.0.3").await, 200);
    assert_eq!(refused(&app, "max_connections"), 0);
    let text = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("gatehouse_connections_refused_total{reason=\"max_connections_per_ip\"} 1"),
        "{text}"
    );
    // Closing one held connection gives its slot back.
    drop(held.pop());
    eventually("a slot is given back", || async {
        raw_health_from(&app, "127.0.0.1")
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_closes_new_connections_and_counts_them() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.header_timeout_seconds = 600;
        c.http.idle_timeout_seconds = 600;
        c.http.max_connections = 4;
        c.http.max_connections_per_ip = 4;
    })
    .await;
    let mut held = Vec::new();
    for kind in 0..4 {
        held.push(hold_open(&app, kind).await);
    }
    assert_eq!(raw_health_from(&app, "127.0.0.2").await, "");
    assert_eq!(refused(&app, "max_connections"), 1);
    drop(held);
    eventually("connections are given back", || async {
        health_from(&app, "127.0.0.2").await == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_closed_at_their_deadlines() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.header_timeout_seconds = 1;
        c.http.body_timeout_seconds = 1;
        c.http.idle_timeout_seconds = 1;
        c.http.write_timeout_seconds = 1;
    })
    .await;
    let started = Instant::now();
    let mut bare = hold_open(&app, 0).await;
    let mut header = hold_open(&app, 1).await;
    let mut body = hold_open(&app, 2).await;
    let mut idle = connect_from(&app, "127.0.0.1").await;
    idle.write_all(HEALTH).await.unwrap();
    // Held-open requests do not stop anyone else.
    assert_eq!(health_from(&app, "127.0.0.2").await, 200);

    assert_eq!(read_until_closed(&mut header).await, "");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(read_until_closed(&mut bare).await, "");
    let answer = read_until_closed(&mut body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    // A kept-alive connection is answered, then closed once it has been idle too long.
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_held_only_to_the_global_cap() {
    // Every client behind a proxy shares its address; the per-IP cap would shut them all out.
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.4".into()];
        c.http.header_timeout_seconds = 600;
        c.http.max_connections = 64;
        c.http.max_connections_per_ip = 2;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(&app, "127.0.0.4").await;
        s.write_all(PARTIAL_HEADER).await.unwrap();
        held.push(s);
    }
    assert!(
        raw_health_from(&app, "127.0.0.4")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(refused(&app, "max_connections_per_ip"), 0);
}
