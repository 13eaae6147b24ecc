//! Prometheus metrics kept per service instance (no global recorder, so several servers in
//! one test process do not mix their numbers), rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets, lock-free.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Counters and histograms of one instance.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    requests: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
}

/// Help text for each counter family.
const HELP: &[(&str, &str)] = &[
    (
        "gatehouse_http_requests_total",
        "HTTP requests by method, matched route and status",
    ),
    ("gatehouse_responses_total", "API responses by catalog code"),
    (
        "gatehouse_logins_total",
        "Login attempts by outcome (the response code)",
    ),
    (
        "gatehouse_lockouts_total",
        "Identifiers locked after repeated failures",
    ),
    (
        "gatehouse_connections_refused_total",
        "Connections closed at accept because a connection limit was reached, by limit",
    ),
    (
        "gatehouse_rate_limited_total",
        "Requests refused by the rate limiter, by route class",
    ),
    (
        "gatehouse_refreshes_total",
        "Refresh-token rotations by outcome (the response code)",
    ),
    (
        "gatehouse_refresh_reuse_total",
        "Rotated refresh tokens presented again (session revoked)",
    ),
    (
        "gatehouse_credential_checks_total",
        "Personal access token and API key checks by kind and outcome",
    ),
    (
        "gatehouse_credential_lookups_total",
        "Store lookups of personal access tokens and API keys by kind (malformed ones never get one)",
    ),
    ("gatehouse_mail_sent_total", "Outbox messages delivered"),
    (
        "gatehouse_mail_retries_total",
        "Outbox deliveries that failed and will be retried",
    ),
    (
        "gatehouse_mail_failed_total",
        "Outbox messages given up (audited as mail.give_up)",
    ),
];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Adds one to `name` with `labels` (pairs of name and value).
    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name, key)).or_default() += 1;
        }
    }

    /// Records a finished HTTP request.
    pub fn request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        self.inc(
            "gatehouse_http_requests_total",
            &[
                ("method", method),
                ("route", route),
                ("status", &status.to_string()),
            ],
        );
        let key = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
        let hist = self
            .requests
            .lock()
            .ok()
            .map(|mut m| m.entry(key).or_default().clone());
        if let Some(h) = hist {
            h.observe(latency);
        }
    }

    /// The current value of a counter (tests and benchmarks).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        self.counters
            .lock()
            .map(|c| c.get(&(name_static(name), key)).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Everything in the Prometheus text format, with the hashing pool's gauges.
    pub fn render(&self, hash_queue: usize, hash_wait: &Histogram) -> String {
        let mut out = String::new();
        if let Ok(counters) = self.counters.lock() {
            let mut last = "";
            for ((name, labels), v) in counters.iter() {
                if *name != last {
                    let help = HELP
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, h)| *h)
                        .unwrap_or("");
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                    last = name;
                }
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        let name = "gatehouse_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency by method and matched route\n# TYPE {name} histogram"
        );
        if let Ok(reqs) = self.requests.lock() {
            for (labels, h) in reqs.iter() {
                h.render(&mut out, name, labels);
            }
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_password_hash_queue_depth Password hashes waiting for a slot\n# TYPE gatehouse_password_hash_queue_depth gauge"
        );
        let _ = writeln!(out, "gatehouse_password_hash_queue_depth {hash_queue}");
        let name = "gatehouse_password_hash_wait_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time a password hash waited for a slot\n# TYPE {name} histogram"
        );
        hash_wait.render(&mut out, name, "");
        out
    }
}

/// Counter names are `'static`; look the stored one up so `get` can take any `&str`.
fn name_static(name: &str) -> &'static str {
    HELP.iter()
        .map(|(n, _)| *n)
        .find(|n| *n == name)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_text_format() {
        let m = Metrics::default();
        m.inc(
            "gatehouse_logins_total",
            &[("outcome", "INVALID_CREDENTIALS")],
        );
        m.inc(
            "gatehouse_logins_total",
            &[("outcome", "INVALID_CREDENTIALS")],
        );
        m.request("GET", "/health", 200, Duration::from_millis(3));
        let text = m.render(2, &Histogram::default());
        assert!(
            text.contains("gatehouse_logins_total{outcome=\"INVALID_CREDENTIALS\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "gatehouse_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"
        ));
        assert!(text.contains("gatehouse_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.005\"} 1"));
        assert!(text.contains("gatehouse_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.0025\"} 0"));
        assert!(text.contains("gatehouse_password_hash_queue_depth 2"));
        assert_eq!(
            m.get(
                "gatehouse_logins_total",
                &[("outcome", "INVALID_CREDENTIALS")]
            ),
            2
        );
    }
}
