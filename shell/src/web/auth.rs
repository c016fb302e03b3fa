//! Admin authentication: argon2id password, server-side sessions (only a
//! hash of the token is stored), CSRF tokens, constant-time comparisons.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use maud::html;
use rouille::{Request, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ratelimit::RateLimiter;
use super::{views, App, WebError, WebResult};
use crate::db::sessions::now;
use crate::monitoring::Function;

/// The session cookie.
pub const SESSION_COOKIE: &str = "starpunk_session";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "starpunk_login_csrf";
/// Settings key of the password hash.
pub const PASSWORD_KEY: &str = "admin_password_argon2";
/// Settings key of the Micropub token hash.
pub const MICROPUB_KEY: &str = "micropub_token_sha256";
const SESSION_SECS: i64 = 7 * 24 * 3600;

/// `n` random bytes from the OS, hex encoded.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `s`, hex: how tokens are stored.
pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Password hashes that may run at once: argon2id takes 19 MiB and tens of
/// milliseconds each, so unbounded parallel logins are a memory attack.
pub const HASHES_AT_ONCE: usize = 2;
/// How long a login waits for a hashing slot before a 503.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

/// Capacity of an argon2 state buffer, in 1 KiB blocks: 33 MiB, above
/// glibc's largest dynamic mmap threshold (32 MiB on 64-bit, mallopt(3)),
/// so the buffer is always its own mapping and its memory goes back to the
/// system when it is dropped. Only the blocks a hash uses (19 MiB at the
/// defaults) are ever touched, so only those count in RSS.
const BUFFER_BLOCKS: usize = 33 * 1024;

/// At most `max` password hashes at once. Each runs in a buffer mapped
/// for it and unmapped after it: hashing costs at most `max` x 19 MiB
/// while logins are running and nothing after. (With argon2's own
/// allocation, glibc kept a freed 19 MiB buffer per handler thread: RSS
/// 341 MiB after 100 parallel logins.)
pub struct HashGate {
    /// Hashes running.
    running: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl HashGate {
    /// A gate for `max` hashes at once.
    pub fn new(max: usize) -> Self {
        Self {
            running: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// Runs `f` with an empty state buffer once a slot is free, waiting at
    /// most `wait`; `None` if none freed up in time.
    pub fn run<R>(&self, wait: Duration, f: impl FnOnce(&mut Vec<Block>) -> R) -> Option<R> {
        let deadline = Instant::now() + wait;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            running = self
                .freed
                .wait_timeout(running, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *running += 1;
        drop(running);
        /// Gives the slot back, even if `f` panics.
        struct Leave<'a>(&'a HashGate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                *self.0.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                self.0.freed.notify_one();
            }
        }
        let _leave = Leave(self);
        let mut buffer = Vec::with_capacity(BUFFER_BLOCKS);
        Some(f(&mut buffer))
    }
}

/// The process's one gate: start-up and logins share it.
fn gate() -> &'static HashGate {
    static GATE: OnceLock<HashGate> = OnceLock::new();
    GATE.get_or_init(|| HashGate::new(HASHES_AT_ONCE))
}

/// The argon2id hash (PHC string) of a password, OWASP's parameters
/// (argon2's defaults: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> String {
    loop {
        if let Some(phc) = gate().run(HASH_WAIT, |blocks| hash_in(password, blocks)) {
            return phc;
        }
    }
}

fn hash_in(password: &str, blocks: &mut Vec<Block>) -> String {
    let mut salt_raw = [0u8; 16];
    getrandom::fill(&mut salt_raw).expect("the OS random source is available");
    let salt = SaltString::encode_b64(&salt_raw).expect("16 bytes is a valid salt");
    let params = Params::default();
    blocks.resize(params.block_count(), Block::default());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt_raw, &mut out, &mut blocks[..])
        .expect("argon2 hashing with default parameters succeeds");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("32 bytes is a valid output")),
    }
    .to_string()
}

/// Checks a password against a PHC string, waiting as long as it takes
/// for a hashing slot (start-up).
pub fn verify_password(password: &str, phc: &str) -> bool {
    loop {
        if let Some(ok) = try_verify_password(password, phc, HASH_WAIT) {
            return ok;
        }
    }
}

/// Checks a password against a PHC string (constant-time comparison), or
/// `None` when no hashing slot freed up within `wait`.
pub fn try_verify_password(password: &str, phc: &str, wait: Duration) -> Option<bool> {
    gate().run(wait, |blocks| verify_in(password, phc, blocks))
}

fn verify_in(password: &str, phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) =
        (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if params.block_count() > BUFFER_BLOCKS {
        return false;
    }
    blocks.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    rouille::input::cookies(req)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A live admin session.
pub struct Session {
    /// SHA-256 of the cookie's token.
    pub token_hash: String,
    /// The session's CSRF token, required on every form.
    pub csrf: String,
}

impl App {
    /// The admin session of `req`, if any.
    pub fn session(&self, req: &Request) -> Result<Option<Session>, WebError> {
        let Some(token) = cookie(req, SESSION_COOKIE) else {
            return Ok(None);
        };
        let token_hash = sha256_hex(&token);
        let csrf = self.monitor.time(Function::Authentication, || {
            self.db.conn().and_then(|c| c.session_csrf(&token_hash))
        })?;
        Ok(csrf.map(|csrf| Session { token_hash, csrf }))
    }

    fn secure_cookie(&self) -> &'static str {
        if self.site.url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }
}

/// True when `form`'s `csrf` field matches the session's.
pub fn csrf_ok(session: &Session, form_csrf: &str) -> bool {
    ct_eq(&session.csrf, form_csrf)
}

/// Where an anonymous request to an HTML admin page goes.
pub fn to_login() -> Response {
    Response::redirect_303("/admin/login")
}

/// `GET /admin/login`: the form, with a fresh double-submit CSRF token.
pub fn login_form(app: &App, _req: &Request, error: Option<&str>) -> Response {
    let csrf = random_token(16);
    let body = html! {
        h2 { "Log in" }
        @if let Some(e) = error { p.error { (e) } }
        form method="post" action="/admin/login" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Password " input type="password" name="password" autocomplete="current-password" required; }
            " " button type="submit" { "Log in" }
        }
    };
    let page = views::page(&app.site.name, "Log in", None, body);
    Response::html(page.into_string())
        .with_no_cache()
        .with_additional_header(
            "Set-Cookie",
            format!(
                "{LOGIN_CSRF_COOKIE}={csrf}; Path=/admin/login; HttpOnly; SameSite=Strict{}",
                app.secure_cookie()
            ),
        )
}

/// `POST /admin/login`.
pub fn login(app: &App, req: &Request) -> WebResult {
    if let Err(wait) = app.login_limit.check(req.remote_addr().ip()) {
        return Ok(RateLimiter::too_many(wait));
    }
    let form = rouille::input::post::raw_urlencoded_post_input(req)
        .map_err(|_| WebError::BadRequest("Expected a form".into()))?;
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let csrf_cookie = cookie(req, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let csrf_form = field("csrf").unwrap_or("");
    if csrf_cookie.is_empty() || !ct_eq(&csrf_cookie, csrf_form) {
        return Ok(login_form(app, req, Some("The form expired; try again.")).with_status_code(403));
    }
    if let Err(wait) = app.password_checks.check_global() {
        return Ok(RateLimiter::too_many(wait));
    }
    let password = field("password").unwrap_or("");
    // The connection goes back to the pool before the (slow) hash.
    let phc = app.db.conn()?.setting(PASSWORD_KEY)?;
    let checked = app.monitor.time(Function::Authentication, || match &phc {
        Some(phc) => try_verify_password(password, phc, HASH_WAIT),
        None => Some(false),
    });
    let Some(ok) = checked else {
        return Ok(
            Response::text("Busy checking passwords; try again in a moment\n")
                .with_status_code(503)
                .with_unique_header("Retry-After", "1"),
        );
    };
    if !ok {
        return Ok(login_form(app, req, Some("Wrong password.")).with_status_code(401));
    }
    let token = random_token(32);
    let conn = app.db.writer()?;
    conn.create_session(&sha256_hex(&token), &random_token(16), now() + SESSION_SECS)?;
    Ok(Response::redirect_303("/admin")
        .with_additional_header(
            "Set-Cookie",
            format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{}",
                app.secure_cookie()
            ),
        )
        .with_additional_header(
            "Set-Cookie",
            format!("{LOGIN_CSRF_COOKIE}=; Path=/admin/login; Max-Age=0"),
        ))
}

/// `POST /admin/logout`: ends the session and, unless
/// `STARPUNK_PERF_CLEAR_ON_LOGOUT` is false, clears the metrics (ADR-053).
pub fn logout(app: &App, req: &Request) -> WebResult {
    let Some(session) = app.session(req)? else {
        return Ok(to_login());
    };
    let form = rouille::input::post::raw_urlencoded_post_input(req).unwrap_or_default();
    let csrf = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    if !csrf_ok(&session, csrf) {
        return Err(WebError::BadRequest("Missing or wrong CSRF token".into()));
    }
    app.db.writer()?.delete_session(&session.token_hash)?;
    if app.monitor.config().clear_on_logout {
        app.monitor.clear();
    }
    Ok(
        Response::redirect_303("/admin/login").with_additional_header(
            "Set-Cookie",
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        // The PHC string is argon2's own format: the crate's verifier agrees.
        use argon2::PasswordVerifier;
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let gate = HashGate::new(1);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(|| {
                gate.run(Duration::from_secs(5), move |_| {
                    tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                })
            });
            rx.recv().unwrap();
            // The only slot is taken: a short wait gives up.
            assert_eq!(gate.run(Duration::from_millis(50), |_| 1), None);
        });
        assert_eq!(gate.run(Duration::from_millis(50), |_| 2), Some(2));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a hash"));
        assert_eq!(random_token(16).len(), 32);
        assert_ne!(random_token(16), random_token(16));
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("a", "ab"));
        assert_eq!(sha256_hex("").len(), 64);
    }
}
