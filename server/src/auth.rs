//! Browser sessions: HS256 JWTs signed with `SESSION_SECRET` (CONTRACT.md §2).
//!
//! A session token carries `sub` (required, non-empty string), `exp`
//! (required), `name` (optional string), `avatar` (optional string: Discord's
//! avatar hash, set by Sign in with Discord) and `roles` (optional array of
//! strings). [`SessionKeys::verify`] accepts HS256 and nothing else: the
//! header's `alg` is read before any other work, so `none`, `RS256` (the
//! classic public-key-as-HMAC-key confusion) and `HS512` all fail with
//! [`AuthError::UnsupportedAlg`]. The signature is checked before any claim is
//! read, so an unsigned token learns nothing about which claims it lacks.
//!
//! Expiry is strict: the token is valid while `now < exp`, with no leeway.
//! relay both issues and checks these tokens with the same clock (or
//! NTP-synchronised clocks across edges), so a grace period would only extend
//! a stolen token's life. `nbf`, if present, is honoured with
//! [`NBF_LEEWAY_SECS`] of slack for a token minted on another machine.
//!
//! The time is an argument (`now_unix`), as in the protocol crate, so expiry
//! is tested without sleeping. Every [`AuthError`] maps to one 401 response;
//! no error text ever includes the token.
//!
//! [`token_from_request`] finds the token: `Authorization: Bearer`, then the
//! `relay_session` cookie, then the `access_token` query parameter (for
//! `EventSource`, which cannot set headers).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// The cookie that may carry a session token.
pub const SESSION_COOKIE: &str = "relay_session";

/// The query parameter that may carry a session token.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// Longest token accepted. Real tokens are a few hundred bytes; the cap keeps
/// a hostile one from costing more than a bounded base64 decode.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Seconds a token's `nbf` may lie in the future (clock skew between the
/// machine that minted it and this one).
pub const NBF_LEEWAY_SECS: u64 = 5;

/// The role chat commands need.
pub const ROLE_CHAT_WRITE: &str = "chat:write";

/// The role voice moderation needs.
pub const ROLE_VOICE_MODERATE: &str = "voice:moderate";

/// Signs and verifies session tokens with the `SESSION_SECRET`.
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys([redacted])")
    }
}

/// A verified session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The user id (`sub`), also the command `actor` and the per-user rate-limit key.
    pub sub: String,
    /// The display name, if the token has one.
    pub name: Option<String>,
    /// Discord's avatar hash, if the token has one (CONTRACT.md §8).
    pub avatar: Option<String>,
    /// The granted roles (`chat:write`, `voice:moderate`, …).
    pub roles: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl Session {
    /// Whether the session was granted `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a request has no valid session. Every variant is an HTTP 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the request.
    Missing,
    /// Not a well-formed JWT (segments, base64, JSON, size).
    Malformed,
    /// The signature does not match `SESSION_SECRET`.
    BadSignature,
    /// `exp` is not in the future.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// A required claim is absent (`"sub"` or `"exp"`).
    MissingClaim(&'static str),
    /// A claim has the wrong type or an empty value (`"sub"`, `"exp"`, `"name"`, `"avatar"`, `"roles"`, `"nbf"`).
    InvalidClaim(&'static str),
    /// The header's `alg` is not `HS256`.
    UnsupportedAlg,
}

impl AuthError {
    /// The HTTP status for this error: always 401.
    pub fn status(&self) -> u16 {
        401
    }

    /// The error code of the JSON error body (CONTRACT.md §3).
    pub fn code(&self) -> &'static str {
        "unauthenticated"
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("no session token"),
            AuthError::Malformed => f.write_str("the session token is malformed"),
            AuthError::BadSignature => f.write_str("the session token's signature is invalid"),
            AuthError::Expired => f.write_str("the session token has expired"),
            AuthError::NotYetValid => f.write_str("the session token is not valid yet"),
            AuthError::MissingClaim(c) => write!(f, "the session token lacks the `{c}` claim"),
            AuthError::InvalidClaim(c) => write!(f, "the session token's `{c}` claim is invalid"),
            AuthError::UnsupportedAlg => f.write_str("the session token must be signed with HS256"),
        }
    }
}

impl std::error::Error for AuthError {}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar: Option<&'a str>,
    roles: &'a [String],
    iat: u64,
    exp: u64,
}

/// Claims as they arrive: typed loosely so a wrong type is a precise error.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    name: Option<Value>,
    avatar: Option<Value>,
    roles: Option<Value>,
}

impl SessionKeys {
    /// Keys from the `SESSION_SECRET`.
    pub fn new(secret: &Secret) -> Self {
        let key = secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        // Claims are checked here against the caller's clock, not the library's.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        SessionKeys {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
        }
    }

    /// Signs a token for `sub` that expires `ttl` (whole seconds, rounded up)
    /// after `now_unix`.
    pub fn issue(
        &self,
        sub: &str,
        name: Option<&str>,
        roles: &[String],
        ttl: Duration,
        now_unix: u64,
    ) -> String {
        self.issue_with_avatar(sub, name, None, roles, ttl, now_unix)
    }

    /// [`SessionKeys::issue`] with Discord's avatar hash in an `avatar` claim.
    pub fn issue_with_avatar(
        &self,
        sub: &str,
        name: Option<&str>,
        avatar: Option<&str>,
        roles: &[String],
        ttl: Duration,
        now_unix: u64,
    ) -> String {
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let claims = IssuedClaims {
            sub,
            name,
            avatar,
            roles,
            iat: now_unix,
            exp: now_unix.saturating_add(ttl_secs),
        };
        // HMAC signing of serialisable claims has no failure path in jsonwebtoken.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Verifies `token` at time `now_unix` (Unix seconds).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Session, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        check_header(token)?;
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::UnsupportedAlg
                }
                _ => AuthError::Malformed,
            })?;
        let claims = data.claims;

        let exp = match &claims.exp {
            None | Some(Value::Null) => return Err(AuthError::MissingClaim("exp")),
            Some(v) => numeric_date(v).ok_or(AuthError::InvalidClaim("exp"))?,
        };
        if now_unix >= exp {
            return Err(AuthError::Expired);
        }
        if let Some(v) = claims.nbf.as_ref().filter(|v| !v.is_null()) {
            let nbf = numeric_date(v).ok_or(AuthError::InvalidClaim("nbf"))?;
            if nbf > now_unix.saturating_add(NBF_LEEWAY_SECS) {
                return Err(AuthError::NotYetValid);
            }
        }
        let sub = match claims.sub {
            None | Some(Value::Null) => return Err(AuthError::MissingClaim("sub")),
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(_) => return Err(AuthError::InvalidClaim("sub")),
        };
        let name = match claims.name {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(AuthError::InvalidClaim("name")),
        };
        let avatar = match claims.avatar {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(AuthError::InvalidClaim("avatar")),
        };
        let roles = match claims.roles {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|r| match r {
                    Value::String(s) => Ok(s),
                    _ => Err(AuthError::InvalidClaim("roles")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(AuthError::InvalidClaim("roles")),
        };
        Ok(Session {
            sub,
            name,
            avatar,
            roles,
            exp,
        })
    }
}

/// A JWT NumericDate: seconds, possibly fractional (floored); negative is 0.
fn numeric_date(v: &Value) -> Option<u64> {
    let Value::Number(n) = v else { return None };
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64().filter(|f| f.is_finite())?;
    // Saturating float→int casts: negative becomes 0, huge becomes u64::MAX.
    Some(f.floor() as u64)
}

/// Reads the JOSE header and insists on `alg: HS256` before anything else runs.
fn check_header(token: &str) -> Result<(), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = base64url_decode(header).ok_or(AuthError::Malformed)?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(AuthError::Malformed);
    };
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        Some(Value::String(_)) => return Err(AuthError::UnsupportedAlg),
        _ => return Err(AuthError::Malformed),
    }
    // RFC 7515 §4.1.11: an extension relay does not understand must not be ignored.
    if header.contains_key("crit") {
        return Err(AuthError::Malformed);
    }
    if signature.is_empty() {
        return Err(AuthError::BadSignature);
    }
    Ok(())
}

/// Unpadded base64url (RFC 4648 §5), as JWT segments use. `None` on any other byte.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    }
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        // Left-align a short final chunk to 24 bits, then keep its whole bytes.
        acc <<= 6 * (4 - chunk.len() as u32);
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..chunk.len() - 1]);
    }
    Some(out)
}

/// Unpadded base64url, the inverse of [`base64url_decode`]: tests and the fuzz
/// entry build tokens with it.
#[cfg(any(test, feature = "fuzzing"))]
fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut buf = [0u8; 3];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]);
        for k in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]));
        }
    }
    out
}

/// Finds the session token of a request: `Authorization: Bearer …` first, then
/// the `relay_session` cookie (in a `Cookie` header that may hold several),
/// then the `access_token` query parameter (percent-decoded). `query` is the
/// part after `?` (a leading `?` is tolerated). Empty values count as absent.
pub fn token_from_request<'a>(
    authorization: Option<&'a str>,
    cookie: Option<&'a str>,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    if let Some(token) = authorization.and_then(bearer) {
        return Some(Cow::Borrowed(token));
    }
    if let Some(token) = cookie.and_then(|c| cookie_value(c, SESSION_COOKIE)) {
        return Some(Cow::Borrowed(token));
    }
    query.and_then(|q| query_param(q, ACCESS_TOKEN_PARAM))
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of cookie `name` in a `Cookie` header that may hold several
/// (double quotes removed); empty counts as absent.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let v = v.trim();
        // RFC 6265 allows a cookie value in double quotes.
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty()).then_some(v)
    })
}

/// The form-decoded value of the first non-empty `name=` parameter in `query`
/// (a leading `?` is tolerated).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, v)| n == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// Decodes `%XX` escapes and `+` (a space in form encoding, as
/// `URLSearchParams` writes it). A `%` not followed by two hex digits stays as
/// it is; bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    // `+` first: an encoded plus (`%2B`) must stay a plus.
    let spaced = s.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Every [`AuthError`] there is: the messages a 401 can carry form this fixed
/// set, so none can quote a token.
#[cfg(any(test, feature = "fuzzing"))]
const ALL_ERRORS: [AuthError; 14] = [
    AuthError::Missing,
    AuthError::Malformed,
    AuthError::BadSignature,
    AuthError::Expired,
    AuthError::NotYetValid,
    AuthError::MissingClaim("sub"),
    AuthError::MissingClaim("exp"),
    AuthError::InvalidClaim("sub"),
    AuthError::InvalidClaim("exp"),
    AuthError::InvalidClaim("name"),
    AuthError::InvalidClaim("avatar"),
    AuthError::InvalidClaim("roles"),
    AuthError::InvalidClaim("nbf"),
    AuthError::UnsupportedAlg,
];

/// The clock the checked verification runs at.
#[cfg(any(test, feature = "fuzzing"))]
const CHECK_NOW: u64 = 1_800_000_000;

/// Verifies `token` at [`CHECK_NOW`] and panics unless the outcome is sound:
/// an error is one of [`ALL_ERRORS`], a session has a `sub` and has not expired.
#[cfg(any(test, feature = "fuzzing"))]
fn verify_checked(keys: &SessionKeys, token: &str) -> Result<Session, AuthError> {
    let result = keys.verify(token, CHECK_NOW);
    match &result {
        Ok(s) => assert!(!s.sub.is_empty() && s.exp > CHECK_NOW, "{s:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                ALL_ERRORS.iter().any(|known| known.to_string() == text),
                "unexpected error text {text:?}"
            );
        }
    }
    result
}

/// A token of raw `header` and `payload` bytes with a valid HS256 signature
/// under `keys`, whatever the bytes say.
#[cfg(any(test, feature = "fuzzing"))]
fn sign_raw(keys: &SessionKeys, header: &[u8], payload: &[u8]) -> String {
    let message = format!("{}.{}", base64url_encode(header), base64url_encode(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &keys.encoding, Algorithm::HS256)
            .unwrap_or_default();
    format!("{message}.{signature}")
}

/// `value` as an `access_token=` query parameter, form-encoded as a browser's
/// `URLSearchParams` writes it, after another parameter.
#[cfg(any(test, feature = "fuzzing"))]
fn access_token_query(value: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    format!("types=a&{ACCESS_TOKEN_PARAM}={encoded}")
}

/// Fuzz entry over session inputs. `bytes` is tried as a whole token, as the
/// claims and as the header of a correctly signed token, as base64url, and,
/// split at newlines, as the `Authorization`, `Cookie` and query of a request.
/// Panics unless: every error is one of the fixed, token-free messages; a
/// correctly signed token never fails its signature and passes only with
/// `alg: HS256` and a `sub`; base64url decoding has the right length and
/// inverts encoding; the bearer token wins over the cookie, which wins over
/// the query; a cookie token is taken verbatim; a query token and
/// [`percent_decode`] invert form encoding.
#[cfg(feature = "fuzzing")]
pub fn fuzz_session(bytes: &[u8]) {
    let keys = SessionKeys::new(&Secret::new("fuzz-session-secret"));
    let text = String::from_utf8_lossy(bytes);
    let _ = verify_checked(&keys, &text);

    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    match verify_checked(&keys, &sign_raw(&keys, header, bytes)) {
        Ok(session) => {
            // Lossy: serde skips an unknown claim without checking its UTF-8
            // (see `unknown_claims_are_skipped_unchecked`); the claims read are checked.
            let claims: Value =
                serde_json::from_str(&String::from_utf8_lossy(bytes)).unwrap_or_default();
            assert_eq!(claims["sub"].as_str(), Some(session.sub.as_str()));
        }
        Err(e) => assert!(
            !matches!(
                e,
                AuthError::BadSignature | AuthError::UnsupportedAlg | AuthError::Missing
            ),
            "a signed token failed with {e:?}"
        ),
    }
    let claims = format!(r#"{{"sub":"1","exp":{}}}"#, CHECK_NOW + 60);
    match verify_checked(&keys, &sign_raw(&keys, bytes, claims.as_bytes())) {
        Ok(_) => {
            let header: Value = serde_json::from_slice(bytes).unwrap_or_default();
            assert_eq!(header["alg"].as_str(), Some("HS256"));
            assert!(header.get("crit").is_none());
        }
        Err(e) => assert!(
            !matches!(e, AuthError::BadSignature | AuthError::Missing),
            "a signed token failed with {e:?}"
        ),
    }

    if let Some(decoded) = base64url_decode(&text) {
        assert_eq!(decoded.len(), text.len() * 3 / 4);
    }
    assert_eq!(
        base64url_decode(&base64url_encode(bytes)).as_deref(),
        Some(bytes)
    );

    let mut fields = text.split('\n');
    let (authorization, cookie, query) = (fields.next(), fields.next(), fields.next());
    let found = token_from_request(authorization, cookie, query);
    if let Some(token) = &found {
        assert!(!token.is_empty());
        let _ = verify_checked(&keys, token);
    }
    let bearer_token = authorization.and_then(|a| {
        let a = a.trim();
        let rest = a
            .get(..7)?
            .eq_ignore_ascii_case("bearer ")
            .then(|| a[7..].trim())?;
        (!rest.is_empty()).then_some(rest)
    });
    if let Some(t) = bearer_token {
        assert_eq!(found.as_deref(), Some(t));
    } else if let Some(t) = &found {
        // A cookie value is taken as it is; only the query is decoded.
        let from_query = query.and_then(|q| query_param(q, ACCESS_TOKEN_PARAM));
        assert!(cookie.is_some_and(|c| c.contains(&**t)) || from_query.as_ref() == Some(t));
    }

    let decoded = percent_decode(&text);
    assert!(decoded.len() <= text.len());
    if !text.contains(['%', '+']) {
        assert_eq!(decoded, text);
    }
    if !text.is_empty() {
        let query = access_token_query(&text);
        assert_eq!(
            query_param(&query, ACCESS_TOKEN_PARAM).as_deref(),
            Some(&*text)
        );
        let encoded = query.rsplit_once('=').map_or("", |(_, v)| v);
        assert_eq!(percent_decode(encoded), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn keys() -> SessionKeys {
        SessionKeys::new(&Secret::new("test-session-secret"))
    }

    /// A token with any header and claims, HS256-signed with the test key
    /// unless the header says otherwise.
    fn signed(alg: Algorithm, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(b"test-session-secret"),
        )
        .unwrap_or_default()
    }

    fn with_header(header: &str, token: &str) -> String {
        let rest = token.split_once('.').map_or("", |(_, r)| r);
        format!("{}.{rest}", base64url_encode(header.as_bytes()))
    }

    #[test]
    fn base64url_round_trips() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\x00"] {
            assert_eq!(
                base64url_decode(&base64url_encode(input)).as_deref(),
                Some(input)
            );
        }
        assert_eq!(
            base64url_decode("eyJhbGciOiJIUzI1NiJ9").as_deref(),
            Some(&br#"{"alg":"HS256"}"#[..])
        );
        assert_eq!(base64url_decode("a"), None);
        assert_eq!(base64url_decode("ab=="), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }

    #[test]
    fn issue_then_verify_round_trips() {
        let k = keys();
        let roles = vec![ROLE_CHAT_WRITE.to_string()];
        let t = k.issue("42", Some("Ada"), &roles, Duration::from_secs(3600), NOW);
        let s = k.verify(&t, NOW).ok();
        assert_eq!(
            s,
            Some(Session {
                sub: "42".into(),
                name: Some("Ada".into()),
                avatar: None,
                roles: roles.clone(),
                exp: NOW + 3600,
            })
        );
        let s = s.unwrap_or_else(|| unreachable!());
        assert!(s.has_role("chat:write"));
        let with_avatar = k.issue_with_avatar(
            "42",
            None,
            Some("a_1f"),
            &roles,
            Duration::from_secs(60),
            NOW,
        );
        assert_eq!(
            k.verify(&with_avatar, NOW).map(|s| s.avatar),
            Ok(Some("a_1f".into()))
        );
        assert!(!s.has_role("voice:moderate"));
        // One second before expiry still passes; at expiry it does not.
        assert!(k.verify(&t, NOW + 3599).is_ok());
        assert_eq!(k.verify(&t, NOW + 3600), Err(AuthError::Expired));
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let k = keys();
        let t = k.issue("1", None, &[], Duration::from_millis(1500), NOW);
        assert_eq!(k.verify(&t, NOW).map(|s| s.exp), Ok(NOW + 2));
    }

    #[test]
    fn expired_token_is_rejected() {
        let t = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub":"1","exp": NOW - 10}),
        );
        assert_eq!(keys().verify(&t, NOW), Err(AuthError::Expired));
    }

    #[test]
    fn claim_rules() {
        let cases = [
            (
                serde_json::json!({"sub":"1"}),
                Err(AuthError::MissingClaim("exp")),
            ),
            (
                serde_json::json!({"sub":"1","exp":null}),
                Err(AuthError::MissingClaim("exp")),
            ),
            (
                serde_json::json!({"sub":"1","exp":"soon"}),
                Err(AuthError::InvalidClaim("exp")),
            ),
            (
                serde_json::json!({"exp":NOW + 60}),
                Err(AuthError::MissingClaim("sub")),
            ),
            (
                serde_json::json!({"sub":"","exp":NOW + 60}),
                Err(AuthError::InvalidClaim("sub")),
            ),
            (
                serde_json::json!({"sub":7,"exp":NOW + 60}),
                Err(AuthError::InvalidClaim("sub")),
            ),
            (
                serde_json::json!({"sub":"1","exp":NOW + 60,"name":3}),
                Err(AuthError::InvalidClaim("name")),
            ),
            (
                serde_json::json!({"sub":"1","exp":NOW + 60,"avatar":["x"]}),
                Err(AuthError::InvalidClaim("avatar")),
            ),
            (
                serde_json::json!({"sub":"1","exp":NOW + 60,"roles":"chat:write"}),
                Err(AuthError::InvalidClaim("roles")),
            ),
            (
                serde_json::json!({"sub":"1","exp":NOW + 60,"roles":["a",1]}),
                Err(AuthError::InvalidClaim("roles")),
            ),
            (
                serde_json::json!({"sub":"1","exp":NOW + 60,"nbf":NOW + 60}),
                Err(AuthError::NotYetValid),
            ),
            (
                serde_json::json!({"sub":"1","exp":-5}),
                Err(AuthError::Expired),
            ),
            (
                serde_json::json!({"sub":"1","exp":(NOW + 60) as f64 + 0.5,"nbf":NOW + 3,"roles":["a","b"]}),
                Ok(Session {
                    sub: "1".into(),
                    name: None,
                    avatar: None,
                    roles: vec!["a".into(), "b".into()],
                    exp: NOW + 60,
                }),
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(
                keys().verify(&signed(Algorithm::HS256, &claims), NOW),
                want,
                "{claims}"
            );
        }
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let claims = serde_json::json!({"sub":"1","exp":NOW + 60});
        let good = signed(Algorithm::HS256, &claims);
        // Same key, stronger HMAC: still not what relay issues.
        let hs512 = signed(Algorithm::HS512, &claims);
        assert_eq!(keys().verify(&hs512, NOW), Err(AuthError::UnsupportedAlg));
        // alg none, with and without the original signature.
        let none = with_header(r#"{"alg":"none","typ":"JWT"}"#, &good);
        assert_eq!(keys().verify(&none, NOW), Err(AuthError::UnsupportedAlg));
        let unsigned = format!("{}.", none.rsplit_once('.').map_or("", |(h, _)| h));
        assert_eq!(
            keys().verify(&unsigned, NOW),
            Err(AuthError::UnsupportedAlg)
        );
        let rs = with_header(r#"{"alg":"RS256"}"#, &good);
        assert_eq!(keys().verify(&rs, NOW), Err(AuthError::UnsupportedAlg));
        let crit = with_header(r#"{"alg":"HS256","crit":["exp"]}"#, &good);
        assert_eq!(keys().verify(&crit, NOW), Err(AuthError::Malformed));
        // Empty signature on an HS256 header.
        let bare = format!("{}.", good.rsplit_once('.').map_or("", |(h, _)| h));
        assert_eq!(keys().verify(&bare, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn wrong_key_fails_the_signature() {
        let t = keys().issue("1", None, &[], Duration::from_secs(60), NOW);
        let other = SessionKeys::new(&Secret::new("another-secret"));
        assert_eq!(other.verify(&t, NOW), Err(AuthError::BadSignature));
        // A tampered payload fails too, even with the right key.
        let forged = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub":"admin","exp":NOW + 60}),
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged_payload = forged.split('.').nth(1).unwrap_or_default();
        parts[1] = forged_payload;
        assert_eq!(
            keys().verify(&parts.join("."), NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        let k = keys();
        assert_eq!(k.verify("", NOW), Err(AuthError::Missing));
        for bad in [
            "x",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "e30.e30.e30",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(k.verify(bad, NOW), Err(AuthError::Malformed), "{bad:.20}");
        }
    }

    #[test]
    fn errors_never_echo_the_token() {
        let t = signed(
            Algorithm::HS512,
            &serde_json::json!({"sub":"1","exp":NOW + 60}),
        );
        for e in [keys().verify(&t, NOW), keys().verify("garbage-token", NOW)] {
            let text = e.err().map(|e| format!("{e} {e:?}")).unwrap_or_default();
            assert!(
                !text.contains(&t[..10]) && !text.contains("garbage"),
                "{text}"
            );
        }
        assert_eq!(format!("{:?}", keys()), "SessionKeys([redacted])");
        assert_eq!(AuthError::Expired.status(), 401);
    }

    #[test]
    fn extraction_precedence() {
        let cookies = "theme=dark; relay_session=from-cookie; other=1";
        let query = "types=a&access_token=from%2Dquery";
        let got = |a, c, q| token_from_request(a, c, q).map(Cow::into_owned);
        assert_eq!(
            got(Some("Bearer from-header"), Some(cookies), Some(query)).as_deref(),
            Some("from-header")
        );
        assert_eq!(
            got(Some("bearer   spaced "), None, None).as_deref(),
            Some("spaced")
        );
        assert_eq!(
            got(Some("Basic dXNlcg=="), Some(cookies), Some(query)).as_deref(),
            Some("from-cookie")
        );
        assert_eq!(
            got(Some("Bearer "), Some(cookies), None).as_deref(),
            Some("from-cookie")
        );
        assert_eq!(
            got(None, Some("relay_session=\"quoted\""), None).as_deref(),
            Some("quoted")
        );
        assert_eq!(
            got(None, Some("relay_session_x=no; a=b"), Some(query)).as_deref(),
            Some("from-query")
        );
        assert_eq!(
            got(None, Some("relay_session="), Some(query)).as_deref(),
            Some("from-query")
        );
        assert_eq!(
            got(None, None, Some("?access_token=a+b%20c")).as_deref(),
            Some("a b c")
        );
        assert_eq!(
            got(None, None, Some("access_token=&access_token=second")).as_deref(),
            Some("second")
        );
        assert_eq!(got(None, None, Some("my_access_token=x")), None);
        assert_eq!(got(None, None, None), None);
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn fuzz_entry_holds_on_samples() {
        let k = SessionKeys::new(&Secret::new("fuzz-session-secret"));
        let valid = k.issue("42", None, &[], Duration::from_secs(60), NOW);
        for sample in [
            String::new(),
            valid.clone(),
            format!("Bearer {valid}\ntheme=dark; relay_session=x\naccess_token=y"),
            format!("\nrelay_session=\"{valid}\"\n"),
            "\n\n?access_token=a%2Bb+c&access_token=d".to_owned(),
            format!(r#"{{"sub":"1","exp":{}}}"#, NOW + 60),
            r#"{"alg":"HS256","crit":["x"]}"#.to_owned(),
            r#"{"sub":"","exp":1e400}"#.to_owned(),
            "%zz%4+%E2%9C%93".to_owned(),
        ] {
            fuzz_session(sample.as_bytes());
        }
    }

    /// Found by the `session_token` fuzz target: a signed payload whose
    /// unknown claim holds a byte that is not UTF-8 verifies, because serde
    /// skips unknown fields without decoding them. Only a token signed with
    /// `SESSION_SECRET` gets this far, and every claim relay reads is still
    /// checked: `sub` with the same byte is refused.
    #[test]
    fn unknown_claims_are_skipped_unchecked() {
        let k = keys();
        let payload = |field: &str| {
            let mut p = format!(r#"{{"sub":"42","exp":{},"{field}":"c"#, NOW + 60).into_bytes();
            p.extend_from_slice(b"\xf5\"}");
            p
        };
        let header = br#"{"alg":"HS256","typ":"JWT"}"#;
        let got = k.verify(&sign_raw(&k, header, &payload("joles")), NOW);
        assert_eq!(got.map(|s| s.sub), Ok("42".to_owned()));
        let got = k.verify(&sign_raw(&k, header, &payload("name")), NOW);
        assert_eq!(got, Err(AuthError::Malformed));
        #[cfg(feature = "fuzzing")]
        fuzz_session(&payload("joles"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain"), "plain");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed(_)));
        assert_eq!(percent_decode("%41%62%zz%4"), "Ab%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn verify_never_panics_on_any_string(s in any::<String>()) {
            prop_assert!(keys().verify(&s, NOW).is_err());
        }

        #[test]
        fn verify_never_panics_on_jwt_shaped_garbage(s in "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}") {
            prop_assert!(keys().verify(&s, NOW).is_err());
        }

        #[test]
        fn extraction_never_panics(a in proptest::option::of(any::<String>()), c in proptest::option::of(any::<String>()), q in proptest::option::of(any::<String>())) {
            let _ = token_from_request(a.as_deref(), c.as_deref(), q.as_deref());
        }

        #[test]
        fn errors_are_one_of_the_fixed_messages(token in any::<String>(), shaped in "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}") {
            for t in [&token, &shaped] {
                if let Err(e) = verify_checked(&keys(), t) {
                    let text = format!("{e} {e:?}");
                    prop_assert!(t.chars().count() < 8 || !text.contains(t.as_str()), "{}", text);
                }
            }
        }

        #[test]
        fn a_secret_inside_a_token_never_reaches_the_error(
            before in "[ -~]{0,30}",
            after in "[ -~]{0,30}",
            signed_payload in any::<bool>(),
        ) {
            const MARKER: &str = "Zq8SECRETxv3";
            let token = if signed_payload {
                let payload = format!(r#"{{"sub":{before:?},"exp":"{MARKER}{after}"}}"#);
                sign_raw(&keys(), br#"{"alg":"HS256"}"#, payload.as_bytes())
            } else {
                format!("{before}{MARKER}{after}")
            };
            let text = keys().verify(&token, NOW).err().map(|e| format!("{e} {e:?}")).unwrap_or_default();
            prop_assert!(!text.contains(MARKER), "{}", text);
        }

        #[test]
        fn a_correctly_signed_token_never_fails_its_signature(
            payload in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                (proptest::option::of(prop_oneof![Just(serde_json::json!("u1")), Just(serde_json::json!("")), Just(serde_json::json!(7))]),
                 proptest::option::of(prop_oneof![(0u64..2 * NOW).prop_map(serde_json::Value::from), Just(serde_json::json!("x")), Just(serde_json::json!(-1.5))]),
                 proptest::option::of(proptest::collection::vec("[a-z:]{0,8}", 0..3)))
                    .prop_map(|(sub, exp, roles)| {
                        let mut claims = serde_json::Map::new();
                        claims.extend(sub.map(|v| ("sub".to_owned(), v)));
                        claims.extend(exp.map(|v| ("exp".to_owned(), v)));
                        claims.extend(roles.map(|r| ("roles".to_owned(), r.into())));
                        serde_json::to_vec(&claims).unwrap_or_default()
                    }),
            ],
            alg in prop_oneof![Just("HS256"), Just("HS512"), Just("none"), Just("RS256")],
        ) {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            let got = verify_checked(&keys(), &sign_raw(&keys(), header.as_bytes(), &payload));
            prop_assert_ne!(got.clone(), Err(AuthError::BadSignature));
            if alg != "HS256" {
                prop_assert_eq!(got, Err(AuthError::UnsupportedAlg));
            } else if let Ok(session) = got {
                let claims: Value = serde_json::from_slice(&payload).unwrap_or_default();
                prop_assert_eq!(claims["sub"].as_str(), Some(session.sub.as_str()));
                prop_assert_eq!(claims["exp"].as_u64(), Some(session.exp));
            }
        }

        #[test]
        fn base64url_inverts_and_has_the_right_length(bytes in proptest::collection::vec(any::<u8>(), 0..64), text in "[A-Za-z0-9_=+/-]{0,24}") {
            prop_assert_eq!(base64url_decode(&base64url_encode(&bytes)), Some(bytes));
            if let Some(decoded) = base64url_decode(&text) {
                prop_assert_eq!(decoded.len(), text.len() * 3 / 4);
                prop_assert!(!text.contains(['=', '+', '/']));
            }
        }

        #[test]
        fn the_header_wins_then_the_cookie_then_the_query(
            token in "[A-Za-z0-9._~-]{1,40}",
            other in "[A-Za-z0-9._~-]{1,40}",
            cookies_before in proptest::collection::vec("[a-z]{1,6}=[a-z0-9]{0,6}", 0..3),
        ) {
            let mut cookie = cookies_before.join("; ");
            if !cookie.is_empty() {
                cookie.push_str("; ");
            }
            cookie.push_str(&format!("{SESSION_COOKIE}={token}"));
            let query = access_token_query(&token);
            let got = |a: Option<&str>, c: Option<&str>, q: Option<&str>| {
                token_from_request(a, c, q).map(Cow::into_owned)
            };
            let bearer = format!("Bearer {other}");
            prop_assert_eq!(got(Some(&bearer), Some(&cookie), Some(&query)), Some(other.clone()));
            prop_assert_eq!(got(Some("Basic x"), Some(&cookie), Some(&query)), Some(token.clone()));
            prop_assert_eq!(got(None, Some("a=b"), Some(&query)), Some(token.clone()));
            prop_assert_eq!(got(None, Some(&cookie), None), Some(token));
        }

        #[test]
        fn query_tokens_and_percent_decoding_invert_form_encoding(value in any::<String>()) {
            let query = access_token_query(&value);
            let want = (!value.is_empty()).then(|| value.clone());
            prop_assert_eq!(token_from_request(None, None, Some(&query)).map(Cow::into_owned), want);
            let encoded = query.rsplit_once('=').map_or("", |(_, v)| v);
            prop_assert_eq!(percent_decode(encoded), value.as_str());
            let decoded = percent_decode(&value);
            prop_assert!(decoded.len() <= value.len());
        }

        #[test]
        fn any_issued_token_verifies(sub in ".{1,30}", roles in proptest::collection::vec("[a-z:]{1,12}", 0..4), ttl in 1u64..1_000_000) {
            let k = keys();
            let t = k.issue(&sub, None, &roles, Duration::from_secs(ttl), NOW);
            let s = k.verify(&t, NOW);
            prop_assert_eq!(s, Ok(Session { sub, name: None, avatar: None, roles, exp: NOW + ttl }));
        }
    }
}
