//! Sign in with Discord (CONTRACT.md §8 "Who a session is") as plain data: the
//! authorization-code flow with PKCE, without a socket or a clock.
//!
//! What this module owns, in the order a sign-in meets it:
//!
//! 1. [`validate_next`]: where the browser goes afterwards must be a path on
//!    this origin (`/x`), never `//host`, `/\host`, `https://…`, control
//!    characters or an encoded `/` or `\` right after the first slash.
//! 2. [`PendingLogin`]: `state`, the PKCE verifier, `next` and the time it was
//!    made, from random bytes the caller draws. [`PendingCodec`] seals it into
//!    the short-lived cookie that binds the login to this browser: an HS256 JWT
//!    (the `jsonwebtoken` crate) under a key derived from `SESSION_SECRET`, so
//!    a pending-login cookie never verifies as a session and a session never
//!    verifies as a pending login. It is signed, not encrypted: the verifier is
//!    readable by whoever holds the cookie, which is only the browser it was
//!    set in (`HttpOnly`), and it is useless without the client secret.
//! 3. [`OAuthClient::authorize_location`]: the `302` target at Discord.
//! 4. [`decide_callback`]: what a callback means. A state that is missing, does
//!    not match the cookie, comes with no cookie, a forged or stale cookie, or
//!    was already used is a [`StateError`] (`400 invalid_state`, no token
//!    exchange). Otherwise Discord's `error=access_denied` becomes
//!    `next?signin=denied`, any other error or a missing code
//!    `next?signin=failed`, and a code becomes [`Callback::Exchange`].
//! 5. [`token_request_body`] / [`basic_auth`] for the exchange, and the
//!    defensive readers of Discord's answers, [`parse_token_answer`] and
//!    [`parse_user_answer`], each with a typed error.
//!
//! "Reused" needs memory: [`ConsumedStates`] is a bounded set of states
//! already used, each kept until its cookie would be stale anyway. It lives in
//! one edge. With several edges behind a balancer the callback also clears
//! the pending cookie, so a reuse needs the same cookie replayed; the set
//! catches that replay on the edge that saw the first use, and the cookie's
//! 10-minute life bounds it everywhere else.
//!
//! Times are Unix seconds passed in; random bytes are passed in.

use std::collections::{HashSet, VecDeque};
use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// `GET` here starts a sign-in.
pub const LOGIN_PATH: &str = "/auth/discord/login";
/// Discord sends the browser back here; the redirect URI is `PUBLIC_URL` + this.
pub const CALLBACK_PATH: &str = "/auth/discord/callback";
/// `POST` here clears the session cookie.
pub const LOGOUT_PATH: &str = "/auth/logout";
/// The cookie holding the sealed [`PendingLogin`].
pub const PENDING_COOKIE: &str = "relay_oauth";
/// The pending cookie's `Path`: only the login and callback routes see it.
pub const PENDING_COOKIE_PATH: &str = "/auth/discord";
/// How long a pending login lives (the contract's "≤ 10 min").
pub const PENDING_TTL_SECS: u64 = 600;
/// A pending login made this far in the future (clock skew between edges) still counts.
pub const FUTURE_LEEWAY_SECS: u64 = 5;
/// The only scope relay asks for.
pub const SCOPE: &str = "identify";
/// Random bytes a login needs: 32 for `state`, 32 for the PKCE verifier.
pub const RANDOM_BYTES: usize = 64;
/// Longest `next` accepted.
pub const MAX_NEXT_LEN: usize = 1024;
/// Longest body of Discord's answers read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest pending cookie value opened.
pub const MAX_COOKIE_LEN: usize = 4096;
/// Longest callback parameter (`code`, `state`, `error`) kept.
const MAX_PARAM_LEN: usize = 2048;
/// Longest access token accepted from Discord.
const MAX_ACCESS_TOKEN_LEN: usize = 2048;
/// Longest name accepted from `/users/@me` (Discord allows 32).
const MAX_NAME_CHARS: usize = 100;

/// The PKCE S256 challenge of `verifier`: base64url(SHA-256(verifier)), no padding (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `s` is a valid PKCE verifier or challenge: 43–128 characters of
/// `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

// ---------------------------------------------------------------------------
// next
// ---------------------------------------------------------------------------

/// Why a `next` is refused (`400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextError {
    /// Longer than [`MAX_NEXT_LEN`].
    TooLong,
    /// Does not start with `/` (a scheme, a host, a relative path).
    NotAPath,
    /// `//host` or `/\host`: a browser reads it as another origin.
    OtherOrigin,
    /// A backslash anywhere (browsers read it as `/`).
    Backslash,
    /// A control character, a space or a non-ASCII byte (the value goes into `Location`).
    BadCharacter,
    /// `%2F`, `%5C` right after the first `/`, or an encoded control character.
    EncodedTrick,
}

impl fmt::Display for NextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NextError::TooLong => "next is too long",
            NextError::NotAPath => "next must be a path on this site, starting with /",
            NextError::OtherOrigin => "next must not name another site",
            NextError::Backslash => "next must not contain a backslash",
            NextError::BadCharacter => "next must be printable ASCII without spaces",
            NextError::EncodedTrick => {
                "next must not encode a slash, backslash or control character"
            }
        })
    }
}

impl std::error::Error for NextError {}

/// The `next` to return to: `/` when absent or empty, else `next` itself when
/// it is a path on this origin.
pub fn validate_next(next: Option<&str>) -> Result<String, NextError> {
    let next = match next {
        None | Some("") => return Ok("/".to_owned()),
        Some(n) => n,
    };
    if next.len() > MAX_NEXT_LEN {
        return Err(NextError::TooLong);
    }
    if !next.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(NextError::BadCharacter);
    }
    if next.contains('\\') {
        return Err(NextError::Backslash);
    }
    let Some(rest) = next.strip_prefix('/') else {
        return Err(NextError::NotAPath);
    };
    if rest.starts_with('/') {
        return Err(NextError::OtherOrigin);
    }
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("%2f") || lower.starts_with("%5c") {
        return Err(NextError::EncodedTrick);
    }
    // %00–%1F and %7F: harmless as a path, but a later decode could split a header.
    let encoded_control = lower.match_indices('%').any(|(i, _)| {
        lower
            .get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .is_some_and(|v| v < 0x20 || v == 0x7f)
    });
    if encoded_control {
        return Err(NextError::EncodedTrick);
    }
    Ok(next.to_owned())
}

/// How a sign-in that made no session ended, as `signin=` on `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    /// The user pressed Cancel at Discord (`error=access_denied`).
    Denied,
    /// Discord answered another error, or the exchange or `/users/@me` failed.
    Failed,
}

impl SignInOutcome {
    /// `denied` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInOutcome::Denied => "denied",
            SignInOutcome::Failed => "failed",
        }
    }
}

/// `next` with `signin=<outcome>` added to its query (before any `#fragment`).
pub fn next_with_outcome(next: &str, outcome: SignInOutcome) -> String {
    let (base, fragment) = match next.find('#') {
        Some(i) => next.split_at(i),
        None => (next, ""),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}signin={}{fragment}", outcome.as_str())
}

// ---------------------------------------------------------------------------
// The client and the authorize URL
// ---------------------------------------------------------------------------

/// The application's public side: who it is and where Discord sends browsers back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// `DISCORD_CLIENT_ID`.
    pub client_id: String,
    /// `DISCORD_AUTHORIZE_URL`.
    pub authorize_url: String,
    /// `PUBLIC_URL` + [`CALLBACK_PATH`].
    pub redirect_uri: String,
}

impl OAuthClient {
    /// A client whose redirect URI is `public_url` (a trailing `/` is dropped) + [`CALLBACK_PATH`].
    pub fn new(client_id: &str, authorize_url: &str, public_url: &str) -> Self {
        OAuthClient {
            client_id: client_id.to_owned(),
            authorize_url: authorize_url.to_owned(),
            redirect_uri: format!("{}{CALLBACK_PATH}", public_url.trim_end_matches('/')),
        }
    }

    /// Where `GET /auth/discord/login` sends the browser for `pending`.
    pub fn authorize_location(&self, pending: &PendingLogin) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", SCOPE)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &pending.state)
            .append_pair("code_challenge", &pending.challenge())
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if self.authorize_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{query}", self.authorize_url)
    }
}

// ---------------------------------------------------------------------------
// The pending login and its cookie
// ---------------------------------------------------------------------------

/// A sign-in in flight, bound to one browser by the pending cookie.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The OAuth2 `state`: 32 random bytes, base64url.
    #[serde(rename = "st")]
    pub state: String,
    /// The PKCE `code_verifier`: 32 random bytes, base64url (43 characters).
    #[serde(rename = "pv")]
    pub verifier: String,
    /// Where to go afterwards, checked by [`validate_next`].
    #[serde(rename = "nx")]
    pub next: String,
    /// When it was made, Unix seconds.
    #[serde(rename = "iat")]
    pub created_at: u64,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("state", &self.state)
            .field("verifier", &crate::secret::REDACTED)
            .field("next", &self.next)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl PendingLogin {
    /// A login from [`RANDOM_BYTES`] fresh random bytes, for `next` (already
    /// validated), made at `now_unix`.
    pub fn new(random: &[u8; RANDOM_BYTES], next: String, now_unix: u64) -> Self {
        let (state, verifier) = random.split_at(RANDOM_BYTES / 2);
        PendingLogin {
            state: URL_SAFE_NO_PAD.encode(state),
            verifier: URL_SAFE_NO_PAD.encode(verifier),
            next,
            created_at: now_unix,
        }
    }

    /// The S256 `code_challenge` of the verifier.
    pub fn challenge(&self) -> String {
        s256_challenge(&self.verifier)
    }

    /// The Unix second from which this login is stale.
    pub fn expires_at(&self, ttl_secs: u64) -> u64 {
        self.created_at.saturating_add(ttl_secs)
    }
}

/// Why a callback's `state` is not accepted. Every variant is `400 invalid_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// The callback has no `state`.
    MissingState,
    /// The browser sent no pending cookie (expired, another browser, cookies off).
    MissingCookie,
    /// The cookie is not one this edge sealed (forged, cut, another secret).
    BadCookie,
    /// The cookie is older than its lifetime (or claims to be from the future).
    Stale,
    /// The `state` is not the cookie's (a forged or swapped callback).
    Mismatch,
    /// The `state` was already used.
    Reused,
}

impl StateError {
    /// The error code of the JSON error body.
    pub fn code(self) -> &'static str {
        "invalid_state"
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateError::MissingState => "the callback has no state",
            StateError::MissingCookie => "no sign-in is in progress in this browser",
            StateError::BadCookie => "the sign-in cookie is not valid",
            StateError::Stale => "the sign-in took too long; start again",
            StateError::Mismatch => "the state does not match this browser's sign-in",
            StateError::Reused => "this sign-in was already used",
        })
    }
}

impl std::error::Error for StateError {}

/// Seals and opens pending-login cookies.
pub struct PendingCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl fmt::Debug for PendingCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PendingCodec(ttl {}s, key [redacted])", self.ttl_secs)
    }
}

/// What the pending cookie's key is derived from, besides `SESSION_SECRET`.
const PENDING_KEY_LABEL: &[u8] = b"relay/oauth-pending/v1\0";

impl PendingCodec {
    /// A codec keyed from `session_secret`, for logins that live `ttl_secs`
    /// (at most [`PENDING_TTL_SECS`]).
    pub fn new(session_secret: &Secret, ttl_secs: u64) -> Self {
        // A key of its own: the label keeps a pending cookie from ever verifying
        // as a session token, and a session token from opening as a pending login.
        let mut key = PENDING_KEY_LABEL.to_vec();
        key.extend_from_slice(session_secret.expose().as_bytes());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        // Expiry is checked below against the caller's clock, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        PendingCodec {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            ttl_secs: ttl_secs.min(PENDING_TTL_SECS),
        }
    }

    /// The lifetime of the logins this codec opens.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// The cookie value for `pending`.
    pub fn seal(&self, pending: &PendingLogin) -> String {
        // HMAC over serialisable claims has no failure path in jsonwebtoken.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), pending, &self.encoding)
            .unwrap_or_default()
    }

    /// The pending login sealed in `cookie`, if it is ours and fresh at `now_unix`.
    pub fn open(&self, cookie: &str, now_unix: u64) -> Result<PendingLogin, StateError> {
        if cookie.is_empty() {
            return Err(StateError::MissingCookie);
        }
        if cookie.len() > MAX_COOKIE_LEN {
            return Err(StateError::BadCookie);
        }
        let pending =
            jsonwebtoken::decode::<PendingLogin>(cookie, &self.decoding, &self.validation)
                .map_err(|_| StateError::BadCookie)?
                .claims;
        if now_unix >= pending.expires_at(self.ttl_secs)
            || pending.created_at > now_unix.saturating_add(FUTURE_LEEWAY_SECS)
        {
            return Err(StateError::Stale);
        }
        // Sealed by us, so these hold unless the key leaked; checked anyway.
        if !is_pkce_value(&pending.verifier) || validate_next(Some(&pending.next)).is_err() {
            return Err(StateError::BadCookie);
        }
        Ok(pending)
    }
}

/// States already used, kept until they would be stale anyway. Bounded: when
/// full, the oldest goes first (its cookie is the nearest to stale).
#[derive(Debug)]
pub struct ConsumedStates {
    cap: usize,
    order: VecDeque<(String, u64)>,
    set: HashSet<String>,
}

/// The default bound of [`ConsumedStates`]: 10 000 sign-ins per 10 minutes on one edge.
pub const CONSUMED_CAPACITY: usize = 10_000;

impl Default for ConsumedStates {
    fn default() -> Self {
        Self::new(CONSUMED_CAPACITY)
    }
}

impl ConsumedStates {
    /// An empty set holding at most `cap` states (at least 1).
    pub fn new(cap: usize) -> Self {
        ConsumedStates {
            cap: cap.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Records `state` as used until `expires_at`; false if it already was.
    pub fn consume(&mut self, state: &str, expires_at: u64, now_unix: u64) -> bool {
        while let Some((old, exp)) = self.order.front() {
            if *exp > now_unix && self.order.len() < self.cap {
                break;
            }
            self.set.remove(old);
            self.order.pop_front();
        }
        if self.set.contains(state) {
            return false;
        }
        self.set.insert(state.to_owned());
        self.order.push_back((state.to_owned(), expires_at));
        true
    }

    /// States held now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

// ---------------------------------------------------------------------------
// The callback
// ---------------------------------------------------------------------------

/// The parameters of `GET /auth/discord/callback`: the first value of each,
/// empty values and values over 2 KiB counted as absent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallbackQuery {
    /// `code`: single-use, so kept out of `Debug`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `error` (`access_denied` when the user pressed Cancel).
    pub error: Option<String>,
}

impl fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("code", &self.code.as_ref().map(|_| crate::secret::REDACTED))
            .field("state", &self.state)
            .field("error", &self.error)
            .finish()
    }
}

/// Reads the callback's query string (the part after `?`).
pub fn parse_callback_query(query: &str) -> CallbackQuery {
    let mut out = CallbackQuery::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*k {
            "code" => &mut out.code,
            "state" => &mut out.state,
            "error" => &mut out.error,
            _ => continue,
        };
        if slot.is_none() && !v.is_empty() && v.len() <= MAX_PARAM_LEN {
            *slot = Some(v.into_owned());
        }
    }
    out
}

/// What to do with a callback whose state holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// Exchange `code` with `verifier`, read the user, then go to `next`.
    Exchange {
        /// The authorization code.
        code: Secret,
        /// The PKCE verifier of this login.
        verifier: Secret,
        /// Where to go once signed in.
        next: String,
    },
    /// No session: go to `location` (`next` with `signin=denied|failed`).
    Redirect {
        /// Why.
        outcome: SignInOutcome,
        /// Where.
        location: String,
    },
}

/// Decides a callback: checks `state` against the pending `cookie` (sealed by
/// `codec`) at `now_unix`, marks it used in `consumed`, then reads Discord's
/// answer. A [`StateError`] means no exchange and no redirect.
pub fn decide_callback(
    query: &CallbackQuery,
    cookie: Option<&str>,
    codec: &PendingCodec,
    consumed: &mut ConsumedStates,
    now_unix: u64,
) -> Result<Callback, StateError> {
    let state = query.state.as_deref().ok_or(StateError::MissingState)?;
    let cookie = cookie.ok_or(StateError::MissingCookie)?;
    let pending = codec.open(cookie, now_unix)?;
    if !Secret::new(pending.state.as_str()).eq_bytes(state.as_bytes()) {
        return Err(StateError::Mismatch);
    }
    if !consumed.consume(state, pending.expires_at(codec.ttl_secs()), now_unix) {
        return Err(StateError::Reused);
    }
    let redirect = |outcome| Callback::Redirect {
        outcome,
        location: next_with_outcome(&pending.next, outcome),
    };
    Ok(match (&query.error, &query.code) {
        (Some(e), _) if e == "access_denied" => redirect(SignInOutcome::Denied),
        (Some(_), _) | (None, None) => redirect(SignInOutcome::Failed),
        (None, Some(code)) => Callback::Exchange {
            code: Secret::new(code.as_str()),
            verifier: Secret::new(pending.verifier.as_str()),
            next: pending.next.clone(),
        },
    })
}

// ---------------------------------------------------------------------------
// The exchange and Discord's answers
// ---------------------------------------------------------------------------

/// The form body of `POST {api}/oauth2/token`.
pub fn token_request_body(code: &str, redirect_uri: &str, verifier: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_verifier", verifier)
        .finish()
}

/// The `Authorization` value of the client's HTTP Basic credentials. Discord's
/// ids are digits and its secrets URL-safe, so they go in as they are.
pub fn basic_auth(client_id: &str, client_secret: &Secret) -> Secret {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{client_id}:{}", client_secret.expose()))
    ))
}

/// Why Discord's token answer gave no access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Discord refused the grant: its `error` (`invalid_grant`, `invalid_client` …), cut to safe text.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth2 error code.
        error: String,
    },
    /// Another status without an OAuth2 error body.
    Status(u16),
    /// The body is over [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// The body is not a JSON object.
    NotJson,
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong type or value.
    Invalid(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Refused { status, error } => {
                write!(f, "Discord refused the code ({status} {error})")
            }
            TokenError::Status(s) => write!(f, "Discord's token endpoint answered {s}"),
            TokenError::TooLarge => f.write_str("Discord's token answer is too large"),
            TokenError::NotJson => f.write_str("Discord's token answer is not a JSON object"),
            TokenError::Missing(k) => write!(f, "Discord's token answer lacks `{k}`"),
            TokenError::Invalid(k) => write!(f, "Discord's token answer has an invalid `{k}`"),
        }
    }
}

impl std::error::Error for TokenError {}

/// An OAuth2 error code as safe text: `[a-z0-9_]`, at most 40 characters.
fn error_code(v: Option<&Value>) -> String {
    let code: String = v
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    if code.is_empty() {
        "unknown".to_owned()
    } else {
        code
    }
}

fn json_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// Reads `POST /oauth2/token`'s answer: the access token of a `2xx` with
/// `token_type: Bearer` (and `scope` naming `identify`, when present).
pub fn parse_token_answer(status: u16, body: &[u8]) -> Result<Secret, TokenError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(TokenError::TooLarge);
    }
    let map = json_object(body);
    if !(200..300).contains(&status) {
        return Err(match map.as_ref().and_then(|m| m.get("error")) {
            Some(e) => TokenError::Refused {
                status,
                error: error_code(Some(e)),
            },
            None => TokenError::Status(status),
        });
    }
    let map = map.ok_or(TokenError::NotJson)?;
    let token = match map.get("access_token") {
        None | Some(Value::Null) => return Err(TokenError::Missing("access_token")),
        Some(Value::String(t))
            if !t.is_empty()
                && t.len() <= MAX_ACCESS_TOKEN_LEN
                && t.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
        {
            t
        }
        Some(_) => return Err(TokenError::Invalid("access_token")),
    };
    match map.get("token_type") {
        None | Some(Value::Null) => return Err(TokenError::Missing("token_type")),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(TokenError::Invalid("token_type")),
    }
    match map.get("scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.split([' ', '+']).any(|s| s == SCOPE) => {}
        Some(_) => return Err(TokenError::Invalid("scope")),
    }
    Ok(Secret::new(token.as_str()))
}

/// The user `/users/@me` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordUser {
    /// The snowflake id: the session's `sub`.
    pub id: String,
    /// The unique username.
    pub username: String,
    /// The display name, if the user set one (and it is usable).
    pub global_name: Option<String>,
    /// The avatar hash, if any.
    pub avatar: Option<String>,
}

impl DiscordUser {
    /// The session's `name`: the display name, else the username.
    pub fn display_name(&self) -> &str {
        self.global_name.as_deref().unwrap_or(&self.username)
    }
}

/// Why `/users/@me` gave no user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// `401`: the access token was not accepted.
    Unauthorized,
    /// Another non-2xx status.
    Status(u16),
    /// The body is over [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// The body is not a JSON object.
    NotJson,
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong type or value.
    Invalid(&'static str),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::Unauthorized => f.write_str("Discord did not accept the access token"),
            UserError::Status(s) => write!(f, "Discord's /users/@me answered {s}"),
            UserError::TooLarge => f.write_str("Discord's user answer is too large"),
            UserError::NotJson => f.write_str("Discord's user answer is not a JSON object"),
            UserError::Missing(k) => write!(f, "Discord's user answer lacks `{k}`"),
            UserError::Invalid(k) => write!(f, "Discord's user answer has an invalid `{k}`"),
        }
    }
}

impl std::error::Error for UserError {}

/// A name is usable when it is 1–100 characters, none of them control characters.
fn usable_name(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars().count() <= MAX_NAME_CHARS
        && !s
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// Reads `GET /users/@me`'s answer. `id` must be a snowflake and `username`
/// usable; a `global_name` that is null or unusable falls back to the
/// username; `avatar` is null or a hash (`[A-Za-z0-9_]`, at most 64).
pub fn parse_user_answer(status: u16, body: &[u8]) -> Result<DiscordUser, UserError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(UserError::TooLarge);
    }
    if status == 401 {
        return Err(UserError::Unauthorized);
    }
    if !(200..300).contains(&status) {
        return Err(UserError::Status(status));
    }
    let map = json_object(body).ok_or(UserError::NotJson)?;
    let id = match map.get("id") {
        None | Some(Value::Null) => return Err(UserError::Missing("id")),
        Some(Value::String(id)) if crate::validate::is_snowflake(id) => id.clone(),
        Some(_) => return Err(UserError::Invalid("id")),
    };
    let username = match map.get("username") {
        None | Some(Value::Null) => return Err(UserError::Missing("username")),
        Some(Value::String(u)) if usable_name(u) => u.clone(),
        Some(_) => return Err(UserError::Invalid("username")),
    };
    let global_name = match map.get("global_name") {
        Some(Value::String(g)) if usable_name(g) => Some(g.clone()),
        _ => None,
    };
    let avatar = match map.get("avatar") {
        None | Some(Value::Null) => None,
        Some(Value::String(a))
            if !a.is_empty()
                && a.len() <= 64
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Some(a.clone())
        }
        Some(_) => return Err(UserError::Invalid("avatar")),
    };
    Ok(DiscordUser {
        id,
        username,
        global_name,
        avatar,
    })
}

// ---------------------------------------------------------------------------
// Fuzz entry
// ---------------------------------------------------------------------------

/// The secret the fuzz entry and the property tests seal cookies with.
#[cfg(any(test, feature = "fuzzing"))]
const CHECK_SECRET: &str = "fuzz-session-secret";

/// Runs every reader of outside bytes here on `bytes` and panics unless each
/// outcome is sound. The first byte picks: Discord's token answer, its user
/// answer (status from the second byte), a callback query with a cookie, or a
/// `next`.
#[cfg(any(test, feature = "fuzzing"))]
pub fn check_oauth_input(bytes: &[u8]) {
    let Some((&which, rest)) = bytes.split_first() else {
        return;
    };
    let (status_byte, body) = rest.split_first().unwrap_or((&0, &[]));
    let status = [200u16, 400, 401, 403, 429, 500, 204, 302][usize::from(status_byte % 8)];
    match which % 4 {
        0 => {
            if let Ok(token) = parse_token_answer(status, body) {
                assert!((200..300).contains(&status));
                assert!(!token.expose().is_empty());
                assert!(token.expose().bytes().all(|b| (0x21..=0x7e).contains(&b)));
                assert_eq!(format!("{token:?}"), crate::secret::REDACTED);
            }
        }
        1 => {
            if let Ok(user) = parse_user_answer(status, body) {
                assert!(crate::validate::is_snowflake(&user.id));
                assert!(usable_name(user.display_name()));
            }
        }
        2 => {
            let text = String::from_utf8_lossy(body);
            // Query, then the cookie after the first newline.
            let (query, cookie) = text.split_once('\n').unwrap_or((&text, ""));
            let q = parse_callback_query(query);
            let shown = format!("{q:?}");
            assert!(shown.contains("code: None") || shown.contains("code: Some(\"[redacted]\")"));
            let codec = PendingCodec::new(&Secret::new(CHECK_SECRET), PENDING_TTL_SECS);
            let mut consumed = ConsumedStates::new(4);
            let now = 1_800_000_000;
            let cookie = (!cookie.is_empty()).then_some(cookie);
            if let Ok(decided) = decide_callback(&q, cookie, &codec, &mut consumed, now) {
                // Only a cookie we sealed gets this far: the fuzzer cannot forge one.
                assert!(cookie.is_some_and(|c| codec.open(c, now).is_ok()));
                if let Callback::Redirect { location, .. } = decided {
                    assert!(location.starts_with('/') && !location.starts_with("//"));
                }
            }
            // And the same state twice never passes twice.
            if let (Some(c), Some(_)) = (cookie, &q.state) {
                let first = decide_callback(&q, Some(c), &codec, &mut consumed, now);
                let again = decide_callback(&q, Some(c), &codec, &mut consumed, now);
                assert!(first.is_err() || again == Err(StateError::Reused));
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            if let Ok(next) = validate_next(Some(&text)) {
                check_next(&next);
                // Sealed and opened, it comes back unchanged.
                let codec = PendingCodec::new(&Secret::new(CHECK_SECRET), PENDING_TTL_SECS);
                let p = PendingLogin::new(&[7; RANDOM_BYTES], next.clone(), 100);
                assert_eq!(codec.open(&codec.seal(&p), 100).map(|p| p.next), Ok(next));
            }
        }
    }
}

/// What every accepted `next` satisfies.
#[cfg(any(test, feature = "fuzzing"))]
fn check_next(next: &str) {
    assert!(next.starts_with('/'), "{next}");
    assert!(!next.starts_with("//"), "{next}");
    assert!(!next.contains('\\'), "{next}");
    assert!(next.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{next}");
    let lower = next.to_ascii_lowercase();
    assert!(
        !lower.starts_with("/%2f") && !lower.starts_with("/%5c"),
        "{next}"
    );
    for outcome in [SignInOutcome::Denied, SignInOutcome::Failed] {
        let to = next_with_outcome(next, outcome);
        assert!(to.starts_with('/') && !to.starts_with("//"), "{to}");
        assert!(to.contains(&format!("signin={}", outcome.as_str())), "{to}");
    }
}

/// Fuzz entry over Discord's token and user answers, callback queries with
/// cookies, and `next` values; see [`check_oauth_input`].
#[cfg(feature = "fuzzing")]
pub fn fuzz_oauth_answer(bytes: &[u8]) {
    check_oauth_input(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn codec() -> PendingCodec {
        PendingCodec::new(&Secret::new(CHECK_SECRET), PENDING_TTL_SECS)
    }

    fn login(seed: u8, next: &str, at: u64) -> PendingLogin {
        PendingLogin::new(&[seed; RANDOM_BYTES], next.to_owned(), at)
    }

    fn query(code: Option<&str>, state: Option<&str>, error: Option<&str>) -> CallbackQuery {
        CallbackQuery {
            code: code.map(str::to_owned),
            state: state.map(str::to_owned),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_login_has_fresh_state_and_a_valid_verifier() {
        let mut random = [0u8; RANDOM_BYTES];
        for (i, b) in random.iter_mut().enumerate() {
            *b = i as u8;
        }
        let p = PendingLogin::new(&random, "/".into(), NOW);
        assert_eq!(p.state.len(), 43);
        assert!(is_pkce_value(&p.verifier));
        assert_ne!(p.state, p.verifier);
        assert!(is_pkce_value(&p.challenge()));
        assert!(!format!("{p:?}").contains(&p.verifier));
    }

    #[test]
    fn the_authorize_url_carries_every_parameter() {
        let client = OAuthClient::new(
            "1234",
            "https://discord.com/oauth2/authorize",
            "https://chat.example.com/",
        );
        assert_eq!(
            client.redirect_uri,
            "https://chat.example.com/auth/discord/callback"
        );
        let p = login(3, "/x", NOW);
        let url = client.authorize_location(&p);
        let (base, q) = url.split_once('?').unwrap();
        assert_eq!(base, "https://discord.com/oauth2/authorize");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("1234"));
        assert_eq!(get("scope"), Some("identify"));
        assert_eq!(get("redirect_uri"), Some(client.redirect_uri.as_str()));
        assert_eq!(get("state"), Some(p.state.as_str()));
        assert_eq!(get("code_challenge"), Some(p.challenge().as_str()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        // An authorize URL that already has a query keeps it.
        let c2 = OAuthClient::new("1", "http://sim/oauth2/authorize?x=1", "http://a");
        assert!(c2
            .authorize_location(&p)
            .starts_with("http://sim/oauth2/authorize?x=1&"));
    }

    #[test]
    fn next_must_stay_on_this_origin() {
        assert_eq!(validate_next(None).as_deref(), Ok("/"));
        assert_eq!(validate_next(Some("")).as_deref(), Ok("/"));
        for ok in [
            "/",
            "/chat",
            "/a/b?c=d&e=f#g",
            "/%E2%9C%93",
            "/a//b",
            "/a%2Fb",
            "/:x",
        ] {
            assert_eq!(validate_next(Some(ok)).as_deref(), Ok(ok), "{ok}");
        }
        let bad: [(&str, NextError); 16] = [
            ("//evil.com", NextError::OtherOrigin),
            ("///evil.com", NextError::OtherOrigin),
            ("https://evil.com", NextError::NotAPath),
            ("http:/evil.com", NextError::NotAPath),
            ("javascript:alert(1)", NextError::NotAPath),
            ("evil.com", NextError::NotAPath),
            ("/\\evil.com", NextError::Backslash),
            ("\\\\evil.com", NextError::Backslash),
            ("/a\\b", NextError::Backslash),
            ("/\tevil", NextError::BadCharacter),
            ("/ /evil.com", NextError::BadCharacter),
            ("/a\r\nSet-Cookie:x", NextError::BadCharacter),
            ("/é", NextError::BadCharacter),
            ("/%2F/evil.com", NextError::EncodedTrick),
            ("/%5cevil.com", NextError::EncodedTrick),
            ("/a%0d%0aSet-Cookie:x", NextError::EncodedTrick),
        ];
        for (input, want) in bad {
            assert_eq!(validate_next(Some(input)), Err(want), "{input:?}");
        }
        assert_eq!(
            validate_next(Some(&format!("/{}", "a".repeat(MAX_NEXT_LEN)))),
            Err(NextError::TooLong)
        );
        // Encoded forms as the query delivers them, decoded once.
        for raw in ["%2F%2Fevil.com", "%2f%5cevil.com", "https%3A%2F%2Fevil.com"] {
            let decoded: String = form_urlencoded::parse(format!("next={raw}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned();
            assert!(validate_next(Some(&decoded)).is_err(), "{raw}");
        }
    }

    #[test]
    fn outcomes_are_added_to_next() {
        let d = SignInOutcome::Denied;
        assert_eq!(next_with_outcome("/", d), "/?signin=denied");
        assert_eq!(next_with_outcome("/a?b=1", d), "/a?b=1&signin=denied");
        assert_eq!(next_with_outcome("/a?", d), "/a?signin=denied");
        assert_eq!(
            next_with_outcome("/a#top", SignInOutcome::Failed),
            "/a?signin=failed#top"
        );
    }

    #[test]
    fn a_sealed_login_opens_only_fresh_and_unchanged() {
        let c = codec();
        let p = login(1, "/next", NOW);
        let sealed = c.seal(&p);
        assert_eq!(c.open(&sealed, NOW), Ok(p.clone()));
        assert_eq!(c.open(&sealed, NOW + PENDING_TTL_SECS - 1), Ok(p.clone()));
        assert_eq!(
            c.open(&sealed, NOW + PENDING_TTL_SECS),
            Err(StateError::Stale)
        );
        assert_eq!(
            c.open(&sealed, NOW - FUTURE_LEEWAY_SECS - 1),
            Err(StateError::Stale)
        );
        // Another secret, a flipped byte, a cut value, empty, oversized.
        let other = PendingCodec::new(&Secret::new("another"), PENDING_TTL_SECS);
        assert_eq!(other.open(&sealed, NOW), Err(StateError::BadCookie));
        let mut flipped = sealed.clone().into_bytes();
        let mid = flipped.len() / 2;
        flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(c.open(&flipped, NOW), Err(StateError::BadCookie));
        assert_eq!(
            c.open(&sealed[..sealed.len() - 3], NOW),
            Err(StateError::BadCookie)
        );
        assert_eq!(c.open("", NOW), Err(StateError::MissingCookie));
        assert_eq!(
            c.open(&"a".repeat(MAX_COOKIE_LEN + 1), NOW),
            Err(StateError::BadCookie)
        );
        // A tiny lifetime makes it stale at once; the lifetime never exceeds 10 min.
        assert_eq!(
            PendingCodec::new(&Secret::new(CHECK_SECRET), 0).open(&sealed, NOW),
            Err(StateError::Stale)
        );
        assert_eq!(
            PendingCodec::new(&Secret::new(CHECK_SECRET), 86_400).ttl_secs(),
            PENDING_TTL_SECS
        );
    }

    #[test]
    fn a_session_token_is_not_a_pending_login() {
        // A JWT signed with SESSION_SECRET itself (as sessions are) does not open.
        let key = EncodingKey::from_secret(CHECK_SECRET.as_bytes());
        let p = login(1, "/", NOW);
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &p, &key).unwrap();
        assert_eq!(codec().open(&token, NOW), Err(StateError::BadCookie));
    }

    #[test]
    fn callbacks_are_decided_by_state_first() {
        let c = codec();
        let p = login(1, "/room?x=1", NOW);
        let cookie = c.seal(&p);
        let st = Some(p.state.as_str());
        let mut used = ConsumedStates::new(16);
        let decide = |q: &CallbackQuery, cookie: Option<&str>, used: &mut ConsumedStates| {
            decide_callback(q, cookie, &c, used, NOW + 5)
        };
        // Refusals leave the state unused.
        let no_state = query(Some("c"), None, None);
        assert_eq!(
            decide(&no_state, Some(&cookie), &mut used),
            Err(StateError::MissingState)
        );
        assert_eq!(
            decide(&query(Some("c"), st, None), None, &mut used),
            Err(StateError::MissingCookie)
        );
        assert_eq!(
            decide(
                &query(Some("c"), Some("forged"), None),
                Some(&cookie),
                &mut used
            ),
            Err(StateError::Mismatch)
        );
        let swapped = c.seal(&login(2, "/", NOW));
        assert_eq!(
            decide(&query(Some("c"), st, None), Some(&swapped), &mut used),
            Err(StateError::Mismatch)
        );
        assert!(used.is_empty());
        // The good one passes once.
        assert_eq!(
            decide(&query(Some("the-code"), st, None), Some(&cookie), &mut used),
            Ok(Callback::Exchange {
                code: Secret::new("the-code"),
                verifier: Secret::new(p.verifier.as_str()),
                next: "/room?x=1".into()
            })
        );
        assert_eq!(
            decide(&query(Some("the-code"), st, None), Some(&cookie), &mut used),
            Err(StateError::Reused)
        );
        // Discord's own answers.
        for (error, code, outcome, location) in [
            (
                Some("access_denied"),
                None,
                SignInOutcome::Denied,
                "/?signin=denied",
            ),
            (
                Some("server_error"),
                None,
                SignInOutcome::Failed,
                "/?signin=failed",
            ),
            (None, None, SignInOutcome::Failed, "/?signin=failed"),
            (
                Some("access_denied"),
                Some("c"),
                SignInOutcome::Denied,
                "/?signin=denied",
            ),
        ] {
            let p = login(9, "/", NOW);
            let got = decide(
                &query(code, Some(&p.state), error),
                Some(&c.seal(&p)),
                &mut ConsumedStates::new(4),
            );
            assert_eq!(
                got,
                Ok(Callback::Redirect {
                    outcome,
                    location: location.into()
                })
            );
        }
        // A stale cookie is refused even with the right state.
        let old = login(3, "/", NOW - PENDING_TTL_SECS - 10);
        assert_eq!(
            decide(
                &query(Some("c"), Some(&old.state), None),
                Some(&c.seal(&old)),
                &mut used
            ),
            Err(StateError::Stale)
        );
    }

    #[test]
    fn consumed_states_expire_and_stay_bounded() {
        let mut set = ConsumedStates::new(3);
        assert!(set.consume("a", 110, 100));
        assert!(!set.consume("a", 110, 105));
        // Once expired it is forgotten (its cookie is stale by then anyway).
        assert!(set.consume("a", 120, 110));
        for s in ["b", "c", "d", "e"] {
            assert!(set.consume(s, 1000, 111));
        }
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn callback_queries_read_first_nonempty_bounded_values() {
        let q = parse_callback_query("code=a%2Bb&state=s&state=t&error=&x=1");
        assert_eq!(q, query(Some("a+b"), Some("s"), None));
        assert!(!format!("{q:?}").contains("a+b"));
        let long = "c".repeat(MAX_PARAM_LEN + 1);
        assert_eq!(parse_callback_query(&format!("code={long}")).code, None);
        assert_eq!(parse_callback_query("%ff=%ff&&&=").code, None);
    }

    #[test]
    fn the_token_request_is_a_form() {
        let body = token_request_body("c&d", "http://a/auth/discord/callback", "v");
        assert_eq!(
            body,
            "grant_type=authorization_code&code=c%26d&redirect_uri=http%3A%2F%2Fa%2Fauth%2Fdiscord%2Fcallback&code_verifier=v"
        );
        assert_eq!(
            basic_auth("123", &Secret::new("s3")).expose(),
            "Basic MTIzOnMz"
        );
    }

    #[test]
    fn token_answers() {
        let ok = br#"{"access_token":"tok123","token_type":"Bearer","expires_in":604800,"refresh_token":"r","scope":"identify"}"#;
        assert_eq!(parse_token_answer(200, ok).unwrap().expose(), "tok123");
        let cases: [(u16, &[u8], TokenError); 10] = [
            (
                400,
                br#"{"error":"invalid_grant","error_description":"Invalid \"code\" in request."}"#,
                TokenError::Refused {
                    status: 400,
                    error: "invalid_grant".into(),
                },
            ),
            (
                401,
                br#"{"error":"invalid_client\r\n<x>"}"#,
                TokenError::Refused {
                    status: 401,
                    error: "invalid_clientx".into(),
                },
            ),
            (502, b"<html>", TokenError::Status(502)),
            (200, b"[]", TokenError::NotJson),
            (200, b"{", TokenError::NotJson),
            (
                200,
                br#"{"token_type":"Bearer"}"#,
                TokenError::Missing("access_token"),
            ),
            (
                200,
                br#"{"access_token":"a b","token_type":"Bearer"}"#,
                TokenError::Invalid("access_token"),
            ),
            (
                200,
                br#"{"access_token":"a"}"#,
                TokenError::Missing("token_type"),
            ),
            (
                200,
                br#"{"access_token":"a","token_type":"mac"}"#,
                TokenError::Invalid("token_type"),
            ),
            (
                200,
                br#"{"access_token":"a","token_type":"bearer","scope":"guilds"}"#,
                TokenError::Invalid("scope"),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                parse_token_answer(status, body),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let huge = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert_eq!(parse_token_answer(200, &huge), Err(TokenError::TooLarge));
    }

    #[test]
    fn user_answers() {
        let full = br#"{"id":"80351110224678912","username":"nelly","global_name":"Nelly","avatar":"8342729096ea3675442027381ff50dfe","discriminator":"0"}"#;
        let u = parse_user_answer(200, full).unwrap();
        assert_eq!(u.display_name(), "Nelly");
        assert_eq!(
            u.avatar.as_deref(),
            Some("8342729096ea3675442027381ff50dfe")
        );
        let plain = br#"{"id":"1","username":"nelly","global_name":null,"avatar":null}"#;
        let u = parse_user_answer(200, plain).unwrap();
        assert_eq!((u.display_name(), u.avatar.as_deref()), ("nelly", None));
        // An unusable display name falls back to the username.
        let odd = br#"{"id":"1","username":"nelly","global_name":"\u0007"}"#;
        assert_eq!(parse_user_answer(200, odd).unwrap().display_name(), "nelly");
        let cases: [(u16, &[u8], UserError); 8] = [
            (
                401,
                br#"{"message":"401: Unauthorized","code":0}"#,
                UserError::Unauthorized,
            ),
            (500, b"", UserError::Status(500)),
            (200, b"null", UserError::NotJson),
            (200, br#"{"username":"n"}"#, UserError::Missing("id")),
            (200, br#"{"id":1,"username":"n"}"#, UserError::Invalid("id")),
            (
                200,
                br#"{"id":"x1","username":"n"}"#,
                UserError::Invalid("id"),
            ),
            (
                200,
                br#"{"id":"1","username":""}"#,
                UserError::Invalid("username"),
            ),
            (
                200,
                br#"{"id":"1","username":"n","avatar":"../x"}"#,
                UserError::Invalid("avatar"),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                parse_user_answer(status, body),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_check_holds_on_samples() {
        for sample in [
            &b""[..],
            b"\x00\x00{\"access_token\":\"t\",\"token_type\":\"Bearer\"}",
            b"\x01\x00{\"id\":\"1\",\"username\":\"u\"}",
            b"\x02\x00code=x&state=y\nnot-a-cookie",
            b"\x03\x00//evil.com",
            b"\x03\x00/fine?x=1",
        ] {
            check_oauth_input(sample);
        }
        // A real cookie and its state, through the fuzz path.
        let c = codec();
        let p = login(5, "/", 1_800_000_000);
        let input = format!("\x02\x00code=x&state={}\n{}", p.state, c.seal(&p));
        check_oauth_input(input.as_bytes());
    }

    #[test]
    fn the_fuzz_seeds_reach_every_branch() {
        let seed = |b: &[u8]| String::from_utf8_lossy(&b[2..]).into_owned();
        let valid = seed(include_bytes!(
            "../../fuzz/corpus/seed-oauth_answer/callback_valid_cookie.bin"
        ));
        let (q, cookie) = valid.split_once('\n').unwrap();
        let got = decide_callback(
            &parse_callback_query(q),
            Some(cookie),
            &codec(),
            &mut ConsumedStates::default(),
            NOW,
        );
        assert!(matches!(got, Ok(Callback::Exchange { .. })), "{got:?}");
        let denied = seed(include_bytes!(
            "../../fuzz/corpus/seed-oauth_answer/callback_valid_denied.bin"
        ));
        let (q, cookie) = denied.split_once('\n').unwrap();
        let got = decide_callback(
            &parse_callback_query(q),
            Some(cookie),
            &codec(),
            &mut ConsumedStates::default(),
            NOW,
        );
        assert!(
            matches!(
                got,
                Ok(Callback::Redirect {
                    outcome: SignInOutcome::Denied,
                    ..
                })
            ),
            "{got:?}"
        );
        let token = include_bytes!("../../fuzz/corpus/seed-oauth_answer/token_ok.bin");
        assert!(parse_token_answer(200, &token[2..]).is_ok());
        let user = include_bytes!("../../fuzz/corpus/seed-oauth_answer/user_ok.bin");
        assert!(parse_user_answer(200, &user[2..]).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_next_is_either_safe_or_refused(s in any::<String>()) {
            if let Ok(next) = validate_next(Some(&s)) {
                check_next(&next);
            }
        }

        #[test]
        fn path_like_next_round_trips(s in "/[!-~]{0,60}") {
            if let Ok(next) = validate_next(Some(&s)) {
                prop_assert_eq!(&next, &s);
                let p = login(1, &next, NOW);
                prop_assert_eq!(codec().open(&codec().seal(&p), NOW), Ok(p));
            }
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_oauth_input(&bytes);
        }

        #[test]
        fn json_like_answers_never_panic(
            id in prop_oneof![Just(Value::Null), any::<u64>().prop_map(|n| Value::String(n.to_string())), any::<String>().prop_map(Value::String)],
            name in prop_oneof![Just(Value::Null), any::<String>().prop_map(Value::String), any::<i64>().prop_map(Value::from)],
            avatar in prop_oneof![Just(Value::Null), "[a-f0-9]{32}".prop_map(Value::String), any::<String>().prop_map(Value::String)],
            status in prop_oneof![Just(200u16), 100u16..600],
        ) {
            let body = serde_json::json!({"id": id, "username": name, "global_name": name, "avatar": avatar,
                "access_token": name, "token_type": "Bearer"}).to_string();
            if let Ok(u) = parse_user_answer(status, body.as_bytes()) {
                prop_assert!(crate::validate::is_snowflake(&u.id));
            }
            let _ = parse_token_answer(status, body.as_bytes());
        }

        #[test]
        fn a_tampered_cookie_never_opens(seed in any::<u8>(), at in 0usize..200, to in any::<u8>()) {
            let c = codec();
            let sealed = c.seal(&login(seed, "/", NOW));
            let mut bytes = sealed.clone().into_bytes();
            let i = at % bytes.len();
            prop_assume!(bytes[i] != to);
            bytes[i] = to;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            prop_assume!(tampered != sealed);
            // A change in the padding bits of the last base64 character can decode
            // to the same signature; anything else must fail.
            if let Ok(p) = c.open(&tampered, NOW) {
                prop_assert_eq!(p, login(seed, "/", NOW));
            }
        }
    }
}
