//! The load generator: N tokio workers over reqwest (hyper, HTTP/1 keep-alive, pooled) for
//! a fixed time, each recording every request's latency and status.

use anyhow::Result;
use std::future::Future;
use std::time::{Duration, Instant};

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub end: Instant,
    pub lat: Duration,
    /// HTTP status; 0 for a transport error.
    pub status: u16,
    pub retry_after: bool,
}

/// What a timed run recorded: samples completed inside the measuring window.
pub struct Run {
    pub samples: Vec<Sample>,
    pub window: Duration,
}

impl Run {
    /// Completed requests per second whose status satisfies `f`.
    pub fn rate(&self, f: impl Fn(&Sample) -> bool) -> f64 {
        let n = self.samples.iter().filter(|s| f(s)).count();
        n as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn count(&self, f: impl Fn(&Sample) -> bool) -> usize {
        self.samples.iter().filter(|s| f(s)).count()
    }

    /// Percentile (0–100) of the latencies whose sample satisfies `f`, in milliseconds.
    pub fn pct_ms(&self, p: f64, f: impl Fn(&Sample) -> bool) -> f64 {
        let v: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| f(s))
            .map(|s| s.lat)
            .collect();
        percentile_ms(v, p)
    }
}

/// Percentile (nearest rank) in milliseconds; NaN when empty.
pub fn percentile_ms(mut v: Vec<Duration>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, v.len()) - 1;
    v[idx].as_secs_f64() * 1000.0
}

/// Runs `workers` copies of `worker(i, deadline)` for `dur`. Samples completed in the first
/// `warmup` (connection set-up, CSRF fetch, queue fill) or after the deadline are dropped,
/// so the rate is over a window where every worker was busy.
pub async fn drive<F, Fut>(
    workers: usize,
    dur: Duration,
    warmup: Duration,
    worker: F,
) -> Result<Run>
where
    F: Fn(usize, Instant) -> Fut,
    Fut: Future<Output = Result<Vec<Sample>>> + Send + 'static,
{
    let start = Instant::now();
    let from = start + warmup;
    let deadline = from + dur;
    let handles: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(worker(i, deadline)))
        .collect();
    let mut samples = Vec::new();
    for h in handles {
        let v = h.await??;
        samples.extend(v.into_iter().filter(|s| s.end >= from && s.end <= deadline));
    }
    Ok(Run {
        samples,
        window: dur,
    })
}

/// Sends `req`, reads the whole body and returns the sample with the body text.
pub async fn timed(req: reqwest::RequestBuilder) -> (Sample, String) {
    let t0 = Instant::now();
    let (status, retry_after, body) = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            match resp.text().await {
                Ok(body) => (status, retry_after, body),
                Err(_) => (0, false, String::new()),
            }
        }
        Err(_) => (0, false, String::new()),
    };
    let end = Instant::now();
    (
        Sample {
            end,
            lat: end - t0,
            status,
            retry_after,
        },
        body,
    )
}

/// A client for load: HTTP/1, keep-alive pool, no proxy, Nagle off.
pub fn client(cookies: bool) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .cookie_store(cookies)
        .timeout(Duration::from_secs(60))
        .build()?)
}
