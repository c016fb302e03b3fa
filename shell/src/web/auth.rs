//! Admin authentication: argon2id password, server-side sessions (only a
//! hash of the token is stored), CSRF tokens, constant-time comparisons.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
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

/// The argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source is available");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with default parameters succeeds")
        .to_string()
}

/// Checks a password against a PHC string (argon2's comparison is constant-time).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
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
        if self.config.site_url.starts_with("https://") {
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
    let page = views::page(&app.config.site_name, "Log in", None, body);
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
    let password = field("password").unwrap_or("");
    let conn = app.db.conn()?;
    let ok = app.monitor.time(Function::Authentication, || {
        conn.setting(PASSWORD_KEY)
            .map(|phc| phc.is_some_and(|phc| verify_password(password, &phc)))
    })?;
    if !ok {
        return Ok(login_form(app, req, Some("Wrong password.")).with_status_code(401));
    }
    let token = random_token(32);
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

/// `POST /admin/logout`: ends the session and clears the metrics (ADR-053).
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
    app.db.conn()?.delete_session(&session.token_hash)?;
    app.monitor.clear();
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
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a hash"));
        assert_eq!(random_token(16).len(), 32);
        assert_ne!(random_token(16), random_token(16));
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("a", "ab"));
        assert_eq!(sha256_hex("").len(), 64);
    }
}
