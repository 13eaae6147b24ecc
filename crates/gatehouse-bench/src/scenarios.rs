//! The scenarios of issue #7 and the baselines they are compared with.

use crate::load::{self, Run, Sample};
use crate::proc::{self, Server, TempDir};
use crate::seed::{self, PASSWORD, Population};
use crate::{Opts, Row};
use anyhow::{Context, Result, anyhow, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Argon2id parameters the server runs with by default (`password.*`).
const ARGON_DEFAULT: (u32, u32, u32) = (19456, 2, 1);
/// The reduced hash cost of the scale scenario, so the store's share of a login shows.
const ARGON_SCALE: (u32, u32, u32) = (1024, 1, 1);

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// (database URL, Redis URL) when both test URLs are set.
pub fn pg_urls() -> Option<(String, String)> {
    let db = std::env::var("GATEHOUSE_TEST_DATABASE_URL").ok()?;
    let redis = std::env::var("GATEHOUSE_TEST_REDIS_URL").ok()?;
    (!db.is_empty() && !redis.is_empty()).then_some((db, redis))
}

/// Durations and sizes of one run.
struct Plan {
    dur: Duration,
    warmup: Duration,
    latency_dur: Duration,
    verify_samples: usize,
    main_accounts: usize,
    scale: (usize, usize),
    enum_pairs: usize,
    me_conc: usize,
    refresh_conc: usize,
}

impl Plan {
    fn new(smoke: bool) -> Self {
        if smoke {
            Plan {
                dur: Duration::from_millis(1000),
                warmup: Duration::from_millis(200),
                latency_dur: Duration::from_millis(700),
                verify_samples: 5,
                main_accounts: 1000,
                scale: (1000, 10_000),
                enum_pairs: 20,
                me_conc: 16,
                refresh_conc: 8,
            }
        } else {
            Plan {
                dur: Duration::from_secs(6),
                warmup: Duration::from_secs(1),
                latency_dur: Duration::from_secs(4),
                verify_samples: 25,
                main_accounts: 10_000,
                scale: (1000, 1_000_000),
                enum_pairs: 150,
                me_conc: 16,
                refresh_conc: 8,
            }
        }
    }
}

fn human(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Every row name this plan must produce.
fn expected(plan: &Plan, pg: bool) -> Vec<String> {
    let (small, big) = (human(plan.scale.0), human(plan.scale.1));
    let mut v: Vec<String> = [
        "argon2id verify, in-process".to_string(),
        "sqlite: login c=1".into(),
        "sqlite: login c=2".into(),
        "sqlite: login c=16".into(),
        "sqlite: login c=64".into(),
        "sqlite: me req/s ÷ hello".into(),
        "sqlite: me p99 ÷ hello p99".into(),
        "sqlite: refresh rotations/s per core".into(),
        "sqlite: me with a PAT ÷ me with a JWT".into(),
        "sqlite: introspection ÷ me with a JWT".into(),
        "sqlite: overload login shed p99".into(),
        "sqlite: overload admitted login p99".into(),
        "sqlite: overload /health p99".into(),
        "sqlite: overload /auth/me p99".into(),
        "sqlite: enumeration unknown ÷ known p50".into(),
        format!("sqlite: scale seed {big} accounts+sessions"),
        format!("sqlite: scale login p50 {big}÷{small}"),
        format!("sqlite: scale refresh p50 {big}÷{small}"),
        format!("sqlite: scale me p50 {big}÷{small}"),
        "memory: idle RSS after start".into(),
        format!("memory: peak RSS, {big} sessions"),
    ]
    .into();
    if pg {
        v.extend([
            "postgres: login c=2".to_string(),
            "postgres: login c=16".into(),
            "postgres: me req/s ÷ hello".into(),
            "postgres: me p99 ÷ hello p99".into(),
            "postgres: refresh rotations/s per core".into(),
            "postgres: me with a PAT ÷ me with a JWT".into(),
            "postgres: introspection ÷ me with a JWT".into(),
        ]);
    }
    v
}

/// Runs every scenario; a failing scenario is reported and leaves its rows out.
pub async fn all(opts: &Opts) -> (Vec<Row>, Vec<String>) {
    let plan = Plan::new(opts.smoke);
    let pg = pg_urls().filter(|_| wanted(opts, "postgres"));
    let expected = expected(&plan, pg.is_some())
        .into_iter()
        .filter(|name| wanted(opts, group(name)))
        .collect();
    let mut ctx = Ctx {
        opts,
        plan,
        rows: Vec::new(),
        verify_ms: f64::NAN,
        hash_default: String::new(),
    };
    if let Err(e) = ctx.argon2_baseline().await {
        eprintln!("argon2 baseline failed: {e:#}");
    }
    if wanted(opts, "sqlite")
        && let Err(e) = ctx.sqlite_main().await
    {
        eprintln!("sqlite scenarios failed: {e:#}");
    }
    if wanted(opts, "scale")
        && let Err(e) = ctx.scale().await
    {
        eprintln!("scale scenario failed: {e:#}");
    }
    if let Some((db, redis)) = pg
        && let Err(e) = ctx.postgres(&db, &redis).await
    {
        eprintln!("postgres scenarios failed: {e:#}");
    }
    (ctx.rows, expected)
}

/// The `--only` group a row belongs to.
fn group(row: &str) -> &'static str {
    if row.starts_with("postgres:") {
        "postgres"
    } else if row.starts_with("sqlite: scale") || row.starts_with("memory: peak") {
        "scale"
    } else if row.starts_with("argon2id") {
        "always"
    } else {
        "sqlite"
    }
}

fn wanted(opts: &Opts, group: &str) -> bool {
    group == "always" || opts.only.as_deref().is_none_or(|o| o == group)
}

struct Hello {
    rps: f64,
    p99: f64,
}

struct Ctx<'a> {
    opts: &'a Opts,
    plan: Plan,
    rows: Vec<Row>,
    verify_ms: f64,
    hash_default: String,
}

/// Median time of one Argon2id verify of [`PASSWORD`] against `hash`, in milliseconds.
async fn verify_median(hash: &str, samples: usize) -> Result<f64> {
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let parsed = PasswordHash::new(&hash).map_err(|e| anyhow!("phc: {e}"))?;
        let params = Params::try_from(&parsed).map_err(|e| anyhow!("params: {e}"))?;
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            a.verify_password(PASSWORD.as_bytes(), &parsed)
                .map_err(|e| anyhow!("verify: {e}"))?;
            times.push(t.elapsed());
        }
        Ok(load::percentile_ms(times, 50.0))
    })
    .await?
}

fn argon(p: (u32, u32, u32)) -> Result<Argon2<'static>> {
    let params = Params::new(p.0, p.1, p.2, None).map_err(|e| anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// One Argon2id hash of [`PASSWORD`] at `p`, shared by every seeded account.
fn hash_password(p: (u32, u32, u32)) -> Result<String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| anyhow!("salt: {e}"))?;
    Ok(argon(p)?
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow!("hash: {e}"))?
        .to_string())
}

/// The server's environment for a store (`db`) and cache (`cache`).
fn server_env(db: &str, cache: &str, argon: (u32, u32, u32)) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("GATEHOUSE_BIND", "127.0.0.1:0"),
        ("GATEHOUSE_DATABASE__URL", db),
        ("GATEHOUSE_CACHE__URL", cache),
        // Throttling would measure the limiter, not the service.
        ("GATEHOUSE_RATE_LIMIT__ENABLED", "false"),
        // The enumeration scenario sends hundreds of wrong passwords for one account.
        ("GATEHOUSE_LOCKOUT__ENABLED", "false"),
        ("GATEHOUSE_BOOTSTRAP_ADMIN_EMAIL", "bench-admin@bench.test"),
        (
            "GATEHOUSE_BOOTSTRAP_ADMIN_PASSWORD",
            "Bench-admin-pass-9137",
        ),
        ("GATEHOUSE_LOG__LEVEL", "warn,gatehouse::server=info"),
        ("GATEHOUSE_LOG__FORMAT", "json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // The scale scenario runs with Argon2 costs below OWASP's minimums (hashing is not what
    // it measures); the server refuses those unless told they are for testing.
    if argon != ARGON_DEFAULT {
        v.push((
            "GATEHOUSE_PASSWORD__INSECURE_FAST_HASHING".into(),
            "true".into(),
        ));
    }
    v.push((
        "GATEHOUSE_PASSWORD__ARGON2_MEMORY_KIB".into(),
        argon.0.to_string(),
    ));
    v.push((
        "GATEHOUSE_PASSWORD__ARGON2_ITERATIONS".into(),
        argon.1.to_string(),
    ));
    v.push((
        "GATEHOUSE_PASSWORD__ARGON2_PARALLELISM".into(),
        argon.2.to_string(),
    ));
    v
}

fn with(mut env: Vec<(String, String)>, k: &str, v: &str) -> Vec<(String, String)> {
    env.retain(|(key, _)| key != k);
    env.push((k.to_string(), v.to_string()));
    env
}

/// Hands out seeded indices in a scattered order (a stride coprime with `n`), each once
/// until the population is exhausted.
struct Alloc {
    n: usize,
    stride: usize,
    next: AtomicUsize,
}

impl Alloc {
    fn new(n: usize) -> Arc<Self> {
        let stride = if n.is_multiple_of(7919) { 7927 } else { 7919 };
        Arc::new(Self {
            n: n.max(1),
            stride,
            next: AtomicUsize::new(0),
        })
    }
    fn take(&self) -> usize {
        let j = self.next.fetch_add(1, Ordering::Relaxed);
        (j.wrapping_mul(self.stride).wrapping_add(j / self.n)) % self.n
    }
}

async fn csrf(c: &reqwest::Client, base: &str) -> Result<String> {
    let v: Value = c
        .get(format!("{base}/api/v1/auth/csrf-token"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["data"]["csrfToken"]
        .as_str()
        .map(str::to_string)
        .context("no csrfToken")
}

/// Refreshes seeded sessions to get access tokens (for /auth/me).
async fn access_tokens(
    c: &reqwest::Client,
    base: &str,
    pop: &Population,
    alloc: &Alloc,
    k: usize,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        let (s, body) = load::timed(
            c.post(format!("{base}/api/v1/auth/refresh"))
                .json(&json!({ "refreshToken": pop.refresh_token(alloc.take()) })),
        )
        .await;
        if s.status != 200 {
            bail!("refresh for an access token answered {}: {body}", s.status);
        }
        let v: Value = serde_json::from_str(&body)?;
        out.push(
            v["data"]["auth"]["accessToken"]
                .as_str()
                .context("no accessToken")?
                .to_string(),
        );
    }
    Ok(out)
}

/// POSTs JSON with a bearer token; the envelope, or an error for anything but 2xx.
async fn post_json(c: &reqwest::Client, url: &str, token: &str, body: Value) -> Result<Value> {
    let (s, text) = load::timed(c.post(url).bearer_auth(token).json(&body)).await;
    if !(200..300).contains(&s.status) {
        bail!("POST {url} answered {}: {text}", s.status);
    }
    Ok(serde_json::from_str(&text)?)
}

/// An access token of the seeded admin (account 0).
async fn admin_token(base: &str, pop: &Population) -> Result<String> {
    let c = load::client(true)?;
    let token = csrf(&c, base).await?;
    let (s, body) = load::timed(
        c.post(format!("{base}/api/v1/auth/login"))
            .header("X-CSRFToken", token)
            .json(&json!({ "identifier": pop.email(0), "password": PASSWORD })),
    )
    .await;
    if s.status != 200 {
        bail!("admin login answered {}: {body}", s.status);
    }
    let v: Value = serde_json::from_str(&body)?;
    v["data"]["auth"]["accessToken"]
        .as_str()
        .map(str::to_string)
        .context("no accessToken for the admin")
}

fn ok(s: &Sample) -> bool {
    s.status == 200
}

fn any(_: &Sample) -> bool {
    true
}

fn shed(s: &Sample) -> bool {
    (s.status == 503 || s.status == 429) && s.retry_after
}

/// Logins for `dur` with `conc` workers, each with its own cookie jar and CSRF token.
async fn login_load(
    base: &str,
    pop: &Arc<Population>,
    conc: usize,
    dur: Duration,
    warmup: Duration,
    backoff_on_shed: Option<Duration>,
) -> Result<Run> {
    let alloc = Alloc::new(pop.n);
    load::drive(conc, dur, warmup, |_, deadline| {
        let base = base.to_string();
        let pop = pop.clone();
        let alloc = alloc.clone();
        async move {
            let c = load::client(true)?;
            let token = csrf(&c, &base).await?;
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let req = c
                    .post(format!("{base}/api/v1/auth/login"))
                    .header("X-CSRFToken", &token)
                    .json(&json!({ "identifier": pop.email(alloc.take()), "password": PASSWORD }));
                let (s, _) = load::timed(req).await;
                out.push(s);
                if let Some(pause) = backoff_on_shed
                    && shed(&s)
                {
                    tokio::time::sleep(pause).await;
                }
            }
            Ok(out)
        }
    })
    .await
}

/// `GET path` (with an optional bearer token from `tokens`) by `conc` workers.
async fn get_load(
    c: &reqwest::Client,
    url: String,
    tokens: Arc<Vec<String>>,
    conc: usize,
    dur: Duration,
    warmup: Duration,
    pause: Option<Duration>,
) -> Result<Run> {
    load::drive(conc, dur, warmup, |i, deadline| {
        let c = c.clone();
        let url = url.clone();
        let tokens = tokens.clone();
        async move {
            let mut out = Vec::new();
            let mut k = i;
            while Instant::now() < deadline {
                let mut req = c.get(&url);
                if !tokens.is_empty() {
                    req = req.bearer_auth(&tokens[k % tokens.len()]);
                    k += 1;
                }
                let (s, _) = load::timed(req).await;
                out.push(s);
                if let Some(p) = pause {
                    tokio::time::sleep(p).await;
                }
            }
            Ok(out)
        }
    })
    .await
}

/// Refresh rotations by `conc` workers, each following its own chain of tokens (every
/// token is used once); a chain restarts from a fresh seeded session every `chain` uses.
async fn refresh_load(
    base: &str,
    pop: &Arc<Population>,
    alloc: &Arc<Alloc>,
    conc: usize,
    dur: Duration,
    warmup: Duration,
    chain: usize,
) -> Result<Run> {
    let c = load::client(false)?;
    load::drive(conc, dur, warmup, |_, deadline| {
        let c = c.clone();
        let url = format!("{base}/api/v1/auth/refresh");
        let pop = pop.clone();
        let alloc = alloc.clone();
        async move {
            let mut out = Vec::new();
            let mut token = pop.refresh_token(alloc.take());
            let mut used = 0;
            while Instant::now() < deadline {
                let (s, body) =
                    load::timed(c.post(&url).json(&json!({ "refreshToken": token }))).await;
                out.push(s);
                used += 1;
                let next = (s.status == 200)
                    .then(|| serde_json::from_str::<Value>(&body).ok())
                    .flatten()
                    .and_then(|v| {
                        v["data"]["auth"]["refreshToken"]
                            .as_str()
                            .map(str::to_string)
                    });
                token = match next {
                    Some(t) if used % chain != 0 => t,
                    _ => pop.refresh_token(alloc.take()),
                };
            }
            Ok(out)
        }
    })
    .await
}

fn at_least(ratio: f64, min: f64) -> Option<bool> {
    Some(ratio >= min)
}

impl Ctx<'_> {
    /// Records (and prints) one row of the table.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        scenario: impl Into<String>,
        figure: f64,
        unit: &str,
        baseline: Option<f64>,
        ratio: Option<f64>,
        target: &str,
        pass: Option<bool>,
    ) {
        let r = Row {
            scenario: scenario.into(),
            figure,
            unit: unit.into(),
            baseline,
            ratio,
            target: target.into(),
            pass,
        };
        println!(
            "  {:<45} {:>12.2} {:<10} baseline {:>10} ratio {:>7} target {:<14} {}",
            r.scenario,
            r.figure,
            r.unit,
            r.baseline
                .map(|b| format!("{b:.2}"))
                .unwrap_or_else(|| "–".into()),
            r.ratio
                .map(|b| format!("{b:.3}"))
                .unwrap_or_else(|| "–".into()),
            r.target,
            match r.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "info",
            }
        );
        self.rows.push(r);
    }

    fn step(&self, what: &str) {
        println!("· {what}");
    }

    /// The hash-bound limit: median Argon2id verify, in-process, at the server's parameters.
    async fn argon2_baseline(&mut self) -> Result<()> {
        self.step("argon2id verify median (in-process, default parameters)");
        let hash = tokio::task::spawn_blocking(|| hash_password(ARGON_DEFAULT)).await??;
        let median = verify_median(&hash, self.plan.verify_samples).await?;
        self.verify_ms = median;
        self.hash_default = hash;
        let limit = cores() as f64 / (median / 1000.0);
        self.row(
            "argon2id verify, in-process",
            median,
            "ms",
            None,
            None,
            &format!("limit {limit:.1}/s"),
            None,
        );
        Ok(())
    }

    /// The hash-bound limit, re-measured just before a login run so that both see the same
    /// machine (timings swing when other work shares the cores).
    async fn hash_limit(&self) -> Result<f64> {
        let median = verify_median(&self.hash_default, self.plan.verify_samples).await?;
        Ok(cores() as f64 / (median / 1000.0))
    }

    /// One run of a bare axum hello server with gatehouse's runtime settings, under the
    /// `me` load: the ceiling for authenticated requests.
    async fn hello_run(&self) -> Result<Hello> {
        let dir = TempDir::new("hello")?;
        let server = Server::spawn(&self.opts.bench, &["hello"], &[], &dir.0)?;
        let c = load::client(false)?;
        let run = get_load(
            &c,
            format!("{}/hello", server.base),
            Arc::new(Vec::new()),
            self.plan.me_conc,
            self.plan.dur,
            self.plan.warmup,
            None,
        )
        .await?;
        server.stop();
        if run.count(ok) == 0 {
            bail!("hello answered nothing");
        }
        Ok(Hello {
            rps: run.rate(ok),
            p99: run.pct_ms(99.0, ok),
        })
    }

    /// Login, me, refresh, enumeration and overload on SQLite + memory.
    async fn sqlite_main(&mut self) -> Result<()> {
        let dir = TempDir::new("sqlite")?;
        let url = format!("sqlite:{}", dir.0.join("b.db").display());
        let env = server_env(&url, "memory", ARGON_DEFAULT);
        proc::migrate(&self.opts.gatehouse, &env, &dir.0)?;
        let pop = Arc::new(Population::new(self.plan.main_accounts));
        self.step(&format!("seeding {} accounts + sessions (SQLite)", pop.n));
        let seeded = seed::sqlite(&url, &pop, &self.hash_default).await?;
        println!("  {} rows at {:.0} rows/s", seeded.rows, seeded.rate());
        let server = Server::spawn(&self.opts.gatehouse, &["serve"], &env, &dir.0)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, _) = server.rss_kib()?;
        let idle_mib = rss as f64 / 1024.0;
        self.row(
            "memory: idle RSS after start",
            idle_mib,
            "MiB",
            None,
            None,
            "≤ 40 MiB",
            Some(idle_mib <= 40.0),
        );
        let alloc = Alloc::new(pop.n);
        self.service_rows(
            "sqlite",
            &server.base,
            &pop,
            &alloc,
            &[1, 2, 16, 64],
            2000.0,
        )
        .await?;
        self.enumeration(&server.base, &pop).await?;
        server.stop();
        self.overload(&env, &dir, &pop, &alloc).await
    }

    /// login at each concurrency, me ÷ hello, refresh per core.
    async fn service_rows(
        &mut self,
        backend: &str,
        base: &str,
        pop: &Arc<Population>,
        alloc: &Arc<Alloc>,
        concurrencies: &[usize],
        refresh_target: f64,
    ) -> Result<()> {
        for &conc in concurrencies {
            self.step(&format!("{backend}: login c={conc}"));
            // The VM's speed drifts between seconds: the limit is measured right before and
            // right after the run, and their mean is the baseline.
            let before = self.hash_limit().await?;
            let run = login_load(base, pop, conc, self.plan.dur, self.plan.warmup, None).await?;
            let after = self.hash_limit().await?;
            let limit = (before + after) / 2.0;
            println!("  hash-bound limit {before:.1}/s before, {after:.1}/s after the run");
            let rate = run.rate(ok);
            let errors = run.count(|s| !ok(s));
            if errors > 0 {
                println!("  {errors} logins did not answer 200");
            }
            let ratio = rate / limit;
            let (target, pass) = if conc >= 2 {
                ("≥ 0.90", at_least(ratio, 0.90))
            } else {
                ("info (1 core)", None)
            };
            self.row(
                format!("{backend}: login c={conc}"),
                rate,
                "logins/s",
                Some(limit),
                Some(ratio),
                target,
                pass,
            );
        }

        self.step(&format!("{backend}: GET /api/v1/auth/me"));
        let c = load::client(false)?;
        let tokens = Arc::new(access_tokens(&c, base, pop, alloc, 64.min(pop.n / 4)).await?);
        // Like the hash limit, the hello baseline is measured right before and right after
        // this run (the VM's speed drifts over a run); the baseline is their mean.
        let before = self.hello_run().await?;
        let run = get_load(
            &c,
            format!("{base}/api/v1/auth/me"),
            tokens.clone(),
            self.plan.me_conc,
            self.plan.dur,
            self.plan.warmup,
            None,
        )
        .await?;
        let errors = run.count(|s| !ok(s));
        if errors > 0 {
            println!("  {errors} /auth/me did not answer 200");
        }
        let after = self.hello_run().await?;
        println!(
            "  hello {:.0} req/s before, {:.0} req/s after the run",
            before.rps, after.rps
        );
        let (hello_rps, hello_p99) = (
            (before.rps + after.rps) / 2.0,
            (before.p99 + after.p99) / 2.0,
        );
        let rps = run.rate(ok);
        self.row(
            format!("{backend}: me req/s ÷ hello"),
            rps,
            "req/s",
            Some(hello_rps),
            Some(rps / hello_rps),
            "≥ 0.50",
            at_least(rps / hello_rps, 0.5),
        );
        let p99 = run.pct_ms(99.0, ok);
        self.row(
            format!("{backend}: me p99 ÷ hello p99"),
            p99,
            "ms",
            Some(hello_p99),
            Some(p99 / hello_p99),
            &format!("info (c={})", self.plan.me_conc),
            None,
        );
        self.credential_rows(backend, base, pop, &c, &tokens, rps)
            .await?;

        self.step(&format!("{backend}: POST /api/v1/auth/refresh"));
        let run = refresh_load(
            base,
            pop,
            alloc,
            self.plan.refresh_conc,
            self.plan.dur,
            self.plan.warmup,
            usize::MAX,
        )
        .await?;
        let errors = run.count(|s| !ok(s));
        if errors > 0 {
            println!("  {errors} refreshes did not answer 200");
        }
        let per_core = run.rate(ok) / cores() as f64;
        self.row(
            format!("{backend}: refresh rotations/s per core"),
            per_core,
            "rot/s/core",
            Some(refresh_target),
            Some(per_core / refresh_target),
            &format!("≥ {refresh_target:.0}/s/core"),
            at_least(per_core, refresh_target),
        );
        println!(
            "  refresh total {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            run.rate(ok),
            run.pct_ms(50.0, ok),
            run.pct_ms(99.0, ok)
        );
        Ok(())
    }

    /// `/auth/me` with personal access tokens, and introspection of access tokens, each
    /// as a ratio to `/auth/me` with access tokens (`jwt_rps`, measured just before).
    async fn credential_rows(
        &mut self,
        backend: &str,
        base: &str,
        pop: &Population,
        c: &reqwest::Client,
        tokens: &Arc<Vec<String>>,
        jwt_rps: f64,
    ) -> Result<()> {
        self.step(&format!(
            "{backend}: GET /api/v1/auth/me with personal access tokens"
        ));
        let mut pats = Vec::with_capacity(tokens.len());
        for t in tokens.iter() {
            let v = post_json(
                c,
                &format!("{base}/api/v1/auth/tokens"),
                t,
                json!({ "name": "bench" }),
            )
            .await?;
            pats.push(v["data"]["token"].as_str().context("no token")?.to_string());
        }
        let run = get_load(
            c,
            format!("{base}/api/v1/auth/me"),
            Arc::new(pats),
            self.plan.me_conc,
            self.plan.dur,
            self.plan.warmup,
            None,
        )
        .await?;
        let errors = run.count(|s| !ok(s));
        if errors > 0 {
            println!("  {errors} /auth/me with a PAT did not answer 200");
        }
        let rps = run.rate(ok);
        self.row(
            format!("{backend}: me with a PAT ÷ me with a JWT"),
            rps,
            "req/s",
            Some(jwt_rps),
            Some(rps / jwt_rps),
            "≥ 0.80",
            at_least(rps / jwt_rps, 0.8),
        );

        self.step(&format!("{backend}: POST /api/v1/auth/introspect"));
        let admin = admin_token(base, pop).await?;
        let sa = post_json(
            c,
            &format!("{base}/api/v1/admin/service-accounts"),
            &admin,
            json!({ "username": "bench-introspect", "roles": ["admin"] }),
        )
        .await?;
        let key = post_json(
            c,
            &format!("{base}/api/v1/admin/api-keys"),
            &admin,
            json!({ "name": "bench", "serviceAccountId": sa["data"]["id"],
                    "scopes": ["tokens:introspect"] }),
        )
        .await?;
        let ak = key["data"]["accessKey"]
            .as_str()
            .context("no accessKey")?
            .to_string();
        let sk = key["data"]["secretKey"]
            .as_str()
            .context("no secretKey")?
            .to_string();
        let url = format!("{base}/api/v1/auth/introspect");
        let run = load::drive(
            self.plan.me_conc,
            self.plan.dur,
            self.plan.warmup,
            |i, deadline| {
                let (c, url, tokens) = (c.clone(), url.clone(), tokens.clone());
                let (ak, sk) = (ak.clone(), sk.clone());
                async move {
                    let mut out = Vec::new();
                    let mut k = i;
                    while Instant::now() < deadline {
                        let req = c
                            .post(&url)
                            .basic_auth(&ak, Some(&sk))
                            .form(&[("token", tokens[k % tokens.len()].as_str())]);
                        k += 1;
                        let (s, body) = load::timed(req).await;
                        // An inactive answer is a failure here: every token is live.
                        let active = body.contains(r#""active":true"#);
                        out.push(if active { s } else { Sample { status: 0, ..s } });
                    }
                    Ok(out)
                }
            },
        )
        .await?;
        let errors = run.count(|s| !ok(s));
        if errors > 0 {
            println!("  {errors} introspections did not answer active");
        }
        let rps = run.rate(ok);
        self.row(
            format!("{backend}: introspection ÷ me with a JWT"),
            rps,
            "req/s",
            Some(jwt_rps),
            Some(rps / jwt_rps),
            "≥ 0.80",
            at_least(rps / jwt_rps, 0.8),
        );
        Ok(())
    }

    /// Unknown user vs known user with a wrong password, interleaved in random order.
    async fn enumeration(&mut self, base: &str, pop: &Arc<Population>) -> Result<()> {
        self.step("sqlite: enumeration (unknown user vs known user, wrong password)");
        let c = load::client(true)?;
        let token = csrf(&c, base).await?;
        let mut rng = XorShift::new();
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for i in 0..self.plan.enum_pairs {
            let first_known = rng.next() & 1 == 0;
            for k in 0..2 {
                let is_known = (k == 0) == first_known;
                let identifier = if is_known {
                    pop.email(rng.next() as usize % pop.n)
                } else {
                    format!("nobody{i}-{}@bench.test", rng.next() % 1_000_000)
                };
                let (s, _) = load::timed(
                    c.post(format!("{base}/api/v1/auth/login"))
                        .header("X-CSRFToken", &token)
                        .json(&json!({ "identifier": identifier, "password": "Wrong-pass-5521" })),
                )
                .await;
                if s.status != 401 {
                    bail!("a wrong password answered {}", s.status);
                }
                if is_known {
                    known.push(s.lat);
                } else {
                    unknown.push(s.lat);
                }
            }
        }
        let k = load::percentile_ms(known, 50.0);
        let u = load::percentile_ms(unknown, 50.0);
        let ratio = u / k;
        self.row(
            "sqlite: enumeration unknown ÷ known p50",
            u,
            "ms",
            Some(k),
            Some(ratio),
            "0.90–1.10",
            Some((0.90..=1.10).contains(&ratio)),
        );
        Ok(())
    }

    /// 4× more concurrent logins than the hash pool admits (slots + queue), with /health and
    /// /auth/me probed meanwhile.
    async fn overload(
        &mut self,
        env: &[(String, String)],
        dir: &TempDir,
        pop: &Arc<Population>,
        alloc: &Arc<Alloc>,
    ) -> Result<()> {
        let slots = cores();
        let queue = 2 * cores();
        let conc = 4 * (slots + queue);
        self.step(&format!(
            "sqlite: overload ({conc} concurrent logins; {slots} hash slots + queue {queue})"
        ));
        let env = with(
            env.to_vec(),
            "GATEHOUSE_PASSWORD__MAX_QUEUE",
            &queue.to_string(),
        );
        let server = Server::spawn(&self.opts.gatehouse, &["serve"], &env, &dir.0)?;
        let base = server.base.clone();
        let c = load::client(false)?;
        let tokens = Arc::new(access_tokens(&c, &base, pop, alloc, 16).await?);
        let probe_pause = Some(Duration::from_millis(5));
        let health_url = format!("{base}/health");
        let me_url = format!("{base}/api/v1/auth/me");
        // Idle baselines on the same server.
        let idle_health = get_load(
            &c,
            health_url.clone(),
            Arc::new(Vec::new()),
            1,
            self.plan.latency_dur,
            self.plan.warmup / 2,
            probe_pause,
        )
        .await?
        .pct_ms(99.0, ok);
        let idle_me = get_load(
            &c,
            me_url.clone(),
            tokens.clone(),
            1,
            self.plan.latency_dur,
            self.plan.warmup / 2,
            probe_pause,
        )
        .await?
        .pct_ms(99.0, ok);
        let (dur, warmup) = (self.plan.dur, self.plan.warmup);
        let pop2 = pop.clone();
        let base2 = base.clone();
        // A shed client pauses 10 ms before trying again (Retry-After says 1 s), so the
        // flood stays at `conc` in flight without the load generator spinning on 503s.
        let logins = tokio::spawn(async move {
            login_load(
                &base2,
                &pop2,
                conc,
                dur,
                warmup,
                Some(Duration::from_millis(10)),
            )
            .await
        });
        let health = get_load(
            &c,
            health_url,
            Arc::new(Vec::new()),
            1,
            dur,
            warmup,
            probe_pause,
        );
        let me = get_load(&c, me_url, tokens, 1, dur, warmup, probe_pause);
        let (health, me) = tokio::join!(health, me);
        let (health, me) = (health?, me?);
        let logins = logins.await??;
        server.stop();

        let total = logins.count(any);
        let n_shed = logins.count(shed);
        let n_ok = logins.count(ok);
        let bad = total - n_shed - n_ok;
        let shed_p99 = logins.pct_ms(99.0, shed);
        println!(
            "  logins: {total} answers, {n_ok} ok ({:.1}/s), {n_shed} shed, {bad} other",
            logins.rate(ok)
        );
        self.row(
            "sqlite: overload login shed p99",
            shed_p99,
            "ms",
            Some(self.verify_ms),
            Some(shed_p99 / self.verify_ms),
            "shed>0, all 503/429+RA, < 20 ms",
            Some(n_shed > 0 && bad == 0 && shed_p99 < 20.0),
        );
        // Little's law: with at most `slots + queue` logins admitted at once and the admitted
        // throughput measured meanwhile, a bounded queue keeps an admitted login's wait near
        // (slots + queue) / throughput; an unbounded one grows with the run.
        let bound = (slots + queue) as f64 / logins.rate(ok).max(1e-9) * 1000.0;
        let admitted_p99 = logins.pct_ms(99.0, ok);
        let ratio = admitted_p99 / bound;
        self.row(
            "sqlite: overload admitted login p99",
            admitted_p99,
            "ms",
            Some(bound),
            Some(ratio),
            "≤ 2 × (slots+queue)/rate",
            Some(ratio <= 2.0),
        );
        let h99 = health.pct_ms(99.0, ok);
        self.row(
            "sqlite: overload /health p99",
            h99,
            "ms",
            Some(idle_health),
            Some(h99 / idle_health),
            "< 20 ms",
            Some(h99 < 20.0 && health.count(|s| !ok(s)) == 0),
        );
        let m99 = me.pct_ms(99.0, ok);
        self.row(
            "sqlite: overload /auth/me p99",
            m99,
            "ms",
            Some(idle_me),
            Some(m99 / idle_me),
            "< 20 ms",
            Some(m99 < 20.0 && me.count(|s| !ok(s)) == 0),
        );
        Ok(())
    }

    /// The same flows at two population sizes, at reduced hash cost; seed rate and peak RSS.
    /// Both servers run at once and every flow alternates requests between them (random
    /// order in each pair), so both sizes see the same machine noise.
    async fn scale(&mut self) -> Result<()> {
        let (small, big) = self.plan.scale;
        let hash = tokio::task::spawn_blocking(|| hash_password(ARGON_SCALE)).await??;
        let (small_dir, small_env, small_pop, small_seed) = self.scale_seed(small, &hash).await?;
        let (big_dir, big_env, big_pop, big_seed) = self.scale_seed(big, &hash).await?;
        let (hs, hb) = (human(small), human(big));
        let small_server =
            Server::spawn(&self.opts.gatehouse, &["serve"], &small_env, &small_dir.0)?;
        let big_server = Server::spawn(&self.opts.gatehouse, &["serve"], &big_env, &big_dir.0)?;
        let plain = load::client(false)?;
        let mut sides = [
            Side::new(&small_server.base, small_pop, &plain).await?,
            Side::new(&big_server.base, big_pop, &plain).await?,
        ];
        self.step(&format!(
            "scale: login, refresh, me latency, {hb} vs {hs} interleaved (c=1)"
        ));
        let mut rng = XorShift::new();
        let mut figures = Vec::new();
        for flow in [Flow::Login, Flow::Refresh, Flow::Me] {
            let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
            let mut bad = 0;
            let warm_until = Instant::now() + self.plan.warmup / 2;
            let deadline = warm_until + self.plan.latency_dur;
            while Instant::now() < deadline {
                let order = if rng.next() & 1 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    let s = sides[i].step(flow, &plain).await;
                    if s.status != 200 {
                        bad += 1;
                    } else if s.end > warm_until {
                        lat[i].push(s.lat);
                    }
                }
            }
            let n = lat[0].len();
            let [a, b] = lat;
            let (pa, pb) = (
                load::percentile_ms(a.clone(), 50.0),
                load::percentile_ms(b.clone(), 50.0),
            );
            println!(
                "  {}: {n} pairs; p50 {pa:.3} ms ({hs}) vs {pb:.3} ms ({hb}); p99 {:.3} vs {:.3} ms; {bad} not 200",
                flow.name(),
                load::percentile_ms(a, 99.0),
                load::percentile_ms(b, 99.0),
            );
            figures.push((flow.name(), pa, pb));
        }
        let (_, small_peak) = small_server.rss_kib()?;
        let (_, big_peak) = big_server.rss_kib()?;
        small_server.stop();
        big_server.stop();
        drop((small_dir, big_dir));
        self.row(
            format!("sqlite: scale seed {hb} accounts+sessions"),
            big_seed,
            "rows/s",
            Some(small_seed),
            Some(big_seed / small_seed),
            "≥ 50000 rows/s",
            Some(big_seed >= 50_000.0),
        );
        for (what, x, y) in figures {
            self.row(
                format!("sqlite: scale {what} p50 {hb}÷{hs}"),
                y,
                "ms",
                Some(x),
                Some(y / x),
                "≤ 1.20",
                Some(y / x <= 1.2),
            );
        }
        let peak = big_peak as f64 / 1024.0;
        self.row(
            format!("memory: peak RSS, {hb} sessions"),
            peak,
            "MiB",
            Some(small_peak as f64 / 1024.0),
            Some(big_peak as f64 / small_peak.max(1) as f64),
            "≤ 300 MiB",
            Some(peak <= 300.0),
        );
        Ok(())
    }

    /// A migrated, seeded SQLite database of `n` accounts + sessions; returns its directory,
    /// server environment, population and seed rate.
    async fn scale_seed(
        &mut self,
        n: usize,
        hash: &str,
    ) -> Result<(TempDir, Vec<(String, String)>, Arc<Population>, f64)> {
        let dir = TempDir::new("scale")?;
        let url = format!("sqlite:{}", dir.0.join("b.db").display());
        let env = server_env(&url, "memory", ARGON_SCALE);
        proc::migrate(&self.opts.gatehouse, &env, &dir.0)?;
        let pop = Arc::new(Population::new(n));
        self.step(&format!("scale: seeding {} accounts + sessions", human(n)));
        let seeded = seed::sqlite(&url, &pop, hash).await?;
        println!(
            "  {} rows in {:.1} s: {:.0} rows/s",
            seeded.rows,
            seeded.took.as_secs_f64(),
            seeded.rate()
        );
        Ok((dir, env, pop, seeded.rate()))
    }

    /// The service rows on PostgreSQL + Redis, in a throwaway database and key prefix.
    async fn postgres(&mut self, test_db: &str, redis_url: &str) -> Result<()> {
        let name = format!(
            "gh_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let prefix = format!("{name}:");
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(test_db).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let url = replace_db(test_db, &name);
        let result = self.postgres_in(&url, redis_url, &prefix).await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        let _ = sqlx::Connection::close(admin).await;
        if let Err(e) = clear_redis(redis_url, &prefix).await {
            eprintln!("could not clear Redis prefix {prefix}: {e:#}");
        }
        result
    }

    async fn postgres_in(&mut self, url: &str, redis_url: &str, prefix: &str) -> Result<()> {
        let dir = TempDir::new("pg")?;
        let env = with(
            server_env(url, redis_url, ARGON_DEFAULT),
            "GATEHOUSE_CACHE__PREFIX",
            prefix,
        );
        // Required with PostgreSQL: the base64 of 32 random bytes.
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let env = with(env, "GATEHOUSE_SECRETS__ENCRYPTION_KEY", &key);
        proc::migrate(&self.opts.gatehouse, &env, &dir.0)?;
        let pop = Arc::new(Population::new(self.plan.main_accounts));
        self.step(&format!(
            "seeding {} accounts + sessions (PostgreSQL)",
            pop.n
        ));
        let seeded = seed::postgres(url, &pop, &self.hash_default).await?;
        println!("  {} rows at {:.0} rows/s", seeded.rows, seeded.rate());
        let server = Server::spawn(&self.opts.gatehouse, &["serve"], &env, &dir.0)?;
        let alloc = Alloc::new(pop.n);
        let base = server.base.clone();
        self.service_rows("postgres", &base, &pop, &alloc, &[2, 16], 1000.0)
            .await?;
        server.stop();
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Flow {
    Login,
    Refresh,
    Me,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Login => "login",
            Flow::Refresh => "refresh",
            Flow::Me => "me",
        }
    }
}

/// One server of the scale scenario and the state of its three flows.
struct Side {
    base: String,
    pop: Arc<Population>,
    /// Seeded sessions for `tokens` and refresh chains (each spent once).
    alloc: Arc<Alloc>,
    /// Accounts to log in as.
    logins: Arc<Alloc>,
    browser: reqwest::Client,
    csrf: String,
    refresh: String,
    used: usize,
    tokens: Vec<String>,
    next_token: usize,
}

impl Side {
    async fn new(base: &str, pop: Arc<Population>, plain: &reqwest::Client) -> Result<Self> {
        let alloc = Alloc::new(pop.n);
        let browser = load::client(true)?;
        let csrf = csrf(&browser, base).await?;
        let tokens = access_tokens(plain, base, &pop, &alloc, 64.min(pop.n / 4)).await?;
        let refresh = pop.refresh_token(alloc.take());
        let pop_n = pop.n;
        Ok(Self {
            base: base.to_string(),
            pop,
            logins: Alloc::new(pop_n),
            alloc,
            browser,
            csrf,
            refresh,
            used: 0,
            tokens,
            next_token: 0,
        })
    }

    /// One request of `flow`. Refresh follows a chain of 10 rotations from a random
    /// seeded session, then starts another.
    async fn step(&mut self, flow: Flow, plain: &reqwest::Client) -> Sample {
        let base = &self.base;
        match flow {
            Flow::Login => {
                // Its own allocator: a login spends no seeded token, and sharing `alloc`
                // would wrap a small population around onto the sessions behind `tokens`
                // (their refresh would then be reuse and revoke them).
                let email = self.pop.email(self.logins.take());
                let req = self
                    .browser
                    .post(format!("{base}/api/v1/auth/login"))
                    .header("X-CSRFToken", &self.csrf)
                    .json(&json!({ "identifier": email, "password": PASSWORD }));
                load::timed(req).await.0
            }
            Flow::Refresh => {
                let req = plain
                    .post(format!("{base}/api/v1/auth/refresh"))
                    .json(&json!({ "refreshToken": self.refresh }));
                let (s, body) = load::timed(req).await;
                self.used += 1;
                let next = (s.status == 200)
                    .then(|| serde_json::from_str::<Value>(&body).ok())
                    .flatten()
                    .and_then(|v| {
                        v["data"]["auth"]["refreshToken"]
                            .as_str()
                            .map(str::to_string)
                    });
                self.refresh = match next {
                    Some(t) if !self.used.is_multiple_of(10) => t,
                    _ => self.pop.refresh_token(self.alloc.take()),
                };
                s
            }
            Flow::Me => {
                let token = &self.tokens[self.next_token % self.tokens.len().max(1)];
                self.next_token += 1;
                let req = plain
                    .get(format!("{base}/api/v1/auth/me"))
                    .bearer_auth(token);
                load::timed(req).await.0
            }
        }
    }
}

/// `postgres://…/olddb?x` → `postgres://…/name?x`.
fn replace_db(url: &str, name: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let after_scheme = main.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match main[after_scheme..].find('/') {
        Some(i) => &main[..after_scheme + i],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

async fn clear_redis(url: &str, prefix: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}

/// A tiny PRNG for the interleaving order (not for secrets).
struct XorShift(u64);

impl XorShift {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
