//! Password hashing: Argon2id on a bounded pool of low-priority threads, legacy bcrypt/PBKDF2 verification
//! with upgrade on login, a dummy hash for unknown users, and the password policy.

use crate::config::PasswordConfig;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use gatehouse_domain::{AppError, Code, FieldError, Secret};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Result of checking a password against a stored hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but stored with an outdated algorithm or parameters: here is a new hash.
    YesRehashed(String),
}

impl Verified {
    /// True if the password matched.
    pub fn ok(&self) -> bool {
        !matches!(self, Verified::No)
    }
}

/// Hashes and verifies passwords off the async runtime, a bounded number at a time.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    slots: Semaphore,
    waiting: AtomicUsize,
    max_queue: usize,
    dummy: String,
    wait: crate::metrics::Histogram,
    blocks: BlockPool,
    threads: HashThreads,
}

type Job = Box<dyn FnOnce() + Send>;

/// How much lower than the rest of the process hashing threads run (Linux `nice`).
const HASH_NICE: i32 = 10;

/// The threads that hash, one per slot. They run at a lower CPU priority than the async
/// runtime: when every core is hashing, the runtime's threads (finishing a login, checking
/// a token, answering `/health`) still get a core the moment they wake, instead of waiting
/// for a hash's time slice to end. Logins then queue on the slots, not on the scheduler.
struct HashThreads {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl HashThreads {
    fn start(n: usize) -> Result<Self, AppError> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("gatehouse-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        // The sender is gone when the Hasher is dropped.
                        let Ok(job) = job else { return };
                        // A panicking job fails its own request (its result channel is
                        // dropped); the thread keeps serving.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        }
        Ok(Self { jobs })
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASH_NICE)
    {
        tracing::debug!(error = %e, "could not lower the hashing thread's priority");
    }
}

/// Argon2 working memory kept between verifies. Allocating and zeroing 19 MiB per login
/// cost about a fifth of the CPU under load (page faults); at most one buffer per hashing
/// slot is kept, so the pool is bounded by `hash_concurrency × m_cost`.
struct BlockPool {
    free: std::sync::Mutex<Vec<Vec<Block>>>,
    keep: usize,
}

impl BlockPool {
    fn take(&self, n: usize) -> Vec<Block> {
        let mut v = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_default();
        if v.len() < n {
            v.resize(n, Block::default());
        }
        v
    }

    fn put(&self, v: Vec<Block>) {
        if let Ok(mut f) = self.free.lock()
            && f.len() < self.keep
        {
            f.push(v);
        }
    }
}

impl Hasher {
    /// Builds the pool and the dummy hash (one hash at start-up).
    pub fn new(cfg: &PasswordConfig) -> Result<Self, AppError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        let slots = match cfg.hash_concurrency {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        };
        let dummy_password = crate::tokens::opaque_token()?;
        let dummy = hash_blocking(&params, &dummy_password)?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                slots: Semaphore::new(slots),
                waiting: AtomicUsize::new(0),
                max_queue: cfg.max_queue,
                dummy,
                wait: Default::default(),
                blocks: BlockPool {
                    free: std::sync::Mutex::new(Vec::new()),
                    keep: slots,
                },
                threads: HashThreads::start(slots)?,
            }),
        })
    }

    /// Hashes with Argon2id at the configured parameters.
    pub async fn hash(&self, password: &Secret) -> Result<String, AppError> {
        let params = self.inner.params.clone();
        let pw = password.clone();
        self.run(move || hash_blocking(&params, pw.expose()))
            .await?
    }

    /// Verifies against `stored` (or the dummy hash when there is no account, so unknown
    /// users cost the same time). Never returns `Yes` for `None`.
    pub async fn verify(
        &self,
        password: &Secret,
        stored: Option<&str>,
    ) -> Result<Verified, AppError> {
        let known = stored.is_some();
        let phc = stored.unwrap_or(&self.inner.dummy).to_string();
        let inner = Arc::clone(&self.inner);
        let pw = password.clone();
        let result = self
            .run(move || verify_blocking(&inner.params, &inner.blocks, pw.expose(), &phc))
            .await??;
        Ok(if known { result } else { Verified::No })
    }

    /// How long hashes waited for a slot (exported as a metric).
    pub fn wait_histogram(&self) -> &crate::metrics::Histogram {
        &self.inner.wait
    }

    /// Hashing tasks waiting for a slot (exported as a metric).
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let inner = &self.inner;
        if inner.waiting.fetch_add(1, Ordering::AcqRel) >= inner.max_queue {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AppError::new(Code::SERVICE_UNAVAILABLE).retry_after(1));
        }
        let queued = std::time::Instant::now();
        let permit = inner.slots.acquire().await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        inner.wait.observe(queued.elapsed());
        let _permit = permit.map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        let span = tracing::Span::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        inner
            .threads
            .jobs
            .send(Box::new(move || {
                let _ = tx.send(span.in_scope(job));
            }))
            .map_err(|_| AppError::internal(Code::INTERNAL_ERROR, "hashing threads stopped"))?;
        rx.await
            .map_err(|_| AppError::internal(Code::INTERNAL_ERROR, "a hashing job panicked"))
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, AppError> {
    let salt_bytes = crate::tokens::random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))
}

/// Recomputes an Argon2 PHC hash in pooled memory and compares in constant time.
fn argon2_matches(pool: &BlockPool, password: &[u8], parsed: &PasswordHash<'_>) -> bool {
    let alg = match parsed.algorithm.as_str() {
        "argon2id" => Algorithm::Argon2id,
        "argon2i" => Algorithm::Argon2i,
        "argon2d" => Algorithm::Argon2d,
        _ => return false,
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected), Ok(stored)) =
        (parsed.salt, parsed.hash, Params::try_from(parsed))
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let Ok(params) = Params::new(
        stored.m_cost(),
        stored.t_cost(),
        stored.p_cost(),
        Some(expected.len()),
    ) else {
        return false;
    };
    let n = params.block_count();
    let mut blocks = pool.take(n);
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(alg, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..n])
        .is_ok();
    pool.put(blocks);
    hashed && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

fn verify_blocking(
    params: &Params,
    pool: &BlockPool,
    password: &str,
    stored: &str,
) -> Result<Verified, AppError> {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        // bcrypt only reads 72 bytes; a longer password must not match its prefix's hash.
        if password.len() > 72 {
            return Ok(Verified::No);
        }
        return Ok(match bcrypt::verify(password, stored) {
            Ok(true) => Verified::YesRehashed(hash_blocking(params, password)?),
            _ => Verified::No,
        });
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Ok(Verified::No);
    };
    let alg = parsed.algorithm.as_str();
    let ok = if alg.starts_with("argon2") {
        argon2_matches(pool, password.as_bytes(), &parsed)
    } else if alg.starts_with("pbkdf2") {
        pbkdf2::Pbkdf2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    } else {
        false
    };
    if !ok {
        return Ok(Verified::No);
    }
    let current = alg == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        });
    Ok(if current {
        Verified::Yes
    } else {
        Verified::YesRehashed(hash_blocking(params, password)?)
    })
}

/// Checks a new password against the policy; every failed rule becomes a field error
/// under `field`. Length counts Unicode characters; nothing is truncated.
pub fn check_policy(
    cfg: &PasswordConfig,
    password: &Secret,
    field: &str,
    identifiers: &[&str],
) -> Result<(), AppError> {
    let pw = password.expose();
    let mut errors = Vec::new();
    // Checked on bytes first, so a megabyte is refused without walking it.
    if pw.len() > cfg.max_length * 4 || pw.chars().count() > cfg.max_length {
        errors.push(FieldError::new(field, "too_long"));
    } else {
        if pw.chars().count() < cfg.min_length {
            errors.push(FieldError::new(field, "too_short"));
        }
        let rules: [Rule; 4] = [
            (
                cfg.require_uppercase,
                char::is_uppercase,
                "missing_uppercase",
            ),
            (
                cfg.require_lowercase,
                char::is_lowercase,
                "missing_lowercase",
            ),
            (cfg.require_digit, |c| c.is_ascii_digit(), "missing_digit"),
            (
                cfg.require_special,
                |c| !c.is_alphanumeric() && !c.is_whitespace(),
                "missing_special",
            ),
        ];
        for (on, test, code) in rules {
            if on && !pw.chars().any(test) {
                errors.push(FieldError::new(field, code));
            }
        }
        let lower = pw.to_lowercase();
        if COMMON_PASSWORDS.contains(lower.as_str()) {
            errors.push(FieldError::new(field, "common_password"));
        }
        if identifiers
            .iter()
            .any(|id| id.chars().count() >= 3 && lower.contains(&id.to_lowercase()))
        {
            errors.push(FieldError::new(field, "contains_identifier"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError {
            fields: errors,
            ..AppError::new(Code::PASSWORD_POLICY_VIOLATION)
        })
    }
}

/// A character-class rule: on?, the test, the field error code.
type Rule = (bool, fn(char) -> bool, &'static str);

/// 30,000 most common passwords (see `data/README.md` for their origin), lowercased.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..PasswordConfig::default()
        }
    }

    #[tokio::test]
    async fn argon2_hash_verifies_and_rejects_wrong_password() {
        let h = Hasher::new(&cheap()).unwrap();
        let hash = h.hash(&Secret::new("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            h.verify(&Secret::new("correct horse"), Some(&hash))
                .await
                .unwrap(),
            Verified::Yes
        );
        assert_eq!(
            h.verify(&Secret::new("wrong horse"), Some(&hash))
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let h = Hasher::new(&cheap()).unwrap();
        assert_eq!(
            h.verify(&Secret::new("anything"), None).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn bcrypt_hash_verifies_and_is_upgraded() {
        let h = Hasher::new(&cheap()).unwrap();
        let legacy = bcrypt::hash("legacy pass", 4).unwrap();
        match h
            .verify(&Secret::new("legacy pass"), Some(&legacy))
            .await
            .unwrap()
        {
            Verified::YesRehashed(new) => assert!(new.starts_with("$argon2id$")),
            other => panic!("expected rehash, got {other:?}"),
        }
        assert_eq!(
            h.verify(&Secret::new("legacy pas"), Some(&legacy))
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn bcrypt_does_not_accept_a_72_byte_prefix() {
        let h = Hasher::new(&cheap()).unwrap();
        let long = "x".repeat(80);
        let legacy = bcrypt::hash(&long[..72], 4).unwrap();
        assert_eq!(
            h.verify(&Secret::new(long), Some(&legacy)).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn pbkdf2_hash_verifies_and_is_upgraded() {
        use pbkdf2::password_hash::PasswordHasher as _;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let legacy = pbkdf2::Pbkdf2
            .hash_password(b"old secret", &salt)
            .unwrap()
            .to_string();
        let h = Hasher::new(&cheap()).unwrap();
        assert!(matches!(
            h.verify(&Secret::new("old secret"), Some(&legacy))
                .await
                .unwrap(),
            Verified::YesRehashed(_)
        ));
    }

    #[tokio::test]
    async fn weaker_argon2_parameters_are_upgraded() {
        let weak = Hasher::new(&cheap()).unwrap();
        let hash = weak.hash(&Secret::new("pw-upgrade")).await.unwrap();
        let stronger = Hasher::new(&PasswordConfig {
            argon2_memory_kib: 128,
            ..cheap()
        })
        .unwrap();
        match stronger
            .verify(&Secret::new("pw-upgrade"), Some(&hash))
            .await
            .unwrap()
        {
            Verified::YesRehashed(new) => assert!(new.contains("m=128"), "{new}"),
            other => panic!("expected rehash, got {other:?}"),
        }
    }

    #[test]
    fn policy_lists_every_failed_rule() {
        let cfg = PasswordConfig {
            require_digit: true,
            require_uppercase: true,
            ..cheap()
        };
        let err = check_policy(&cfg, &Secret::new("short"), "password", &[]).unwrap_err();
        let codes: Vec<_> = err.fields.iter().map(|f| f.code).collect();
        assert_eq!(err.code, Code::PASSWORD_POLICY_VIOLATION);
        assert_eq!(codes, ["too_short", "missing_uppercase", "missing_digit"]);
    }

    #[test]
    fn policy_counts_characters_not_bytes_and_rejects_huge_input() {
        let cfg = cheap();
        assert!(check_policy(&cfg, &Secret::new("密码密码密码密码"), "p", &[]).is_ok());
        let huge = Secret::new("a".repeat(1_000_000));
        let err = check_policy(&cfg, &huge, "p", &[]).unwrap_err();
        assert_eq!(err.fields[0].code, "too_long");
    }

    #[test]
    fn blocklist_is_large_and_case_insensitive() {
        assert!(COMMON_PASSWORDS.len() >= 10_000);
        let cfg = cheap();
        for pw in ["Qwertyuiop", "sunshine1", "PASSWORD123", "baseball"] {
            let e = check_policy(&cfg, &Secret::new(pw), "p", &[]).unwrap_err();
            assert!(e.fields.iter().any(|f| f.code == "common_password"), "{pw}");
        }
        assert!(check_policy(&cfg, &Secret::new("violet-Harbor-1987x"), "p", &[]).is_ok());
    }

    #[test]
    fn policy_rejects_common_and_identifier_passwords() {
        let cfg = cheap();
        let e = check_policy(&cfg, &Secret::new("Password123"), "p", &[]).unwrap_err();
        assert_eq!(e.fields[0].code, "common_password");
        let e = check_policy(&cfg, &Secret::new("xx-alice-xx"), "p", &["alice"]).unwrap_err();
        assert_eq!(e.fields[0].code, "contains_identifier");
    }
}
