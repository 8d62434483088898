//! The simulated Discord's OAuth2 (authorization code with PKCE), on the REST
//! server's port:
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth2/authorize?…` | Discord's consent page (at the root, as `https://discord.com/oauth2/authorize`): the demo users as links, and Cancel |
//! | `GET /oauth2/authorize/decide?…&user=ID` / `&deny=1` | what clicking does: `302` to `redirect_uri?code=…&state=…` or `?error=access_denied&state=…` |
//! | `POST /api/v10/oauth2/token` | the code exchange: form body, HTTP Basic client auth |
//! | `GET /api/v10/users/@me` | the user of a `Bearer` access token |
//!
//! As Discord: the authorize page checks `client_id`, `response_type=code`, a
//! registered `redirect_uri` (exact match), `scope` with `identify`, and PKCE
//! `code_challenge_method=S256` when a challenge is given, answering `400`
//! otherwise. A code is single-use (a second try, right or wrong, is
//! `invalid_grant`), lives [`SimOAuthApp::code_ttl`], and needs the same
//! `redirect_uri` and the PKCE verifier of its challenge. Simpler than
//! Discord: the consent page is links (Discord posts a form), there is no
//! login, refresh tokens are not accepted back, and redirect URIs can be
//! registered at run time ([`super::SimDiscord::allow_redirect_uri`]) because
//! a test's edge port is known only after the simulator starts.

use std::collections::HashMap;
use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::oauth::{is_pkce_value, s256_challenge};
use serde_json::{json, Value};

use super::guild::{demo_users, ids};
use super::rest::RecordedRequest;
use super::Shared;

/// The OAuth2 application the simulator knows.
#[derive(Debug, Clone)]
pub struct SimOAuthApp {
    /// The application's client id (a snowflake).
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// Redirect URIs registered from the start (more with `allow_redirect_uri`).
    pub redirect_uris: Vec<String>,
    /// How long an authorization code lives. Default 5 minutes.
    pub code_ttl: Duration,
}

impl Default for SimOAuthApp {
    fn default() -> Self {
        SimOAuthApp {
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: "sim-oauth-client-secret".to_owned(),
            redirect_uris: Vec::new(),
            code_ttl: Duration::from_secs(300),
        }
    }
}

/// The simulated OAuth2 application's default client id.
pub const DEMO_CLIENT_ID: &str = "820657520640000002";

/// Access tokens' lifetime as Discord gives it (7 days).
const TOKEN_EXPIRES_IN: u64 = 604_800;
/// Codes and tokens kept at most (oldest codes go first).
const MAX_GRANTS: usize = 10_000;

struct Grant {
    user_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    issued: Instant,
}

#[derive(Default)]
pub(super) struct OAuthState {
    redirect_uris: Vec<String>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, String>,
    /// Every access token issued, oldest first (for tests that look for leaks).
    issued: Vec<String>,
}

impl OAuthState {
    pub(super) fn allow_redirect_uri(&mut self, uri: &str) {
        if !self.redirect_uris.iter().any(|u| u == uri) {
            self.redirect_uris.push(uri.to_owned());
        }
    }

    pub(super) fn issued_tokens(&self) -> Vec<String> {
        self.issued.clone()
    }
}

/// What `/users/@me` says about a demo user: Discord's current name model
/// (lowercase `username`, display `global_name`), with one user lacking a
/// display name and some lacking an avatar, as real accounts do.
fn profile(user_id: &str) -> Option<Value> {
    let user = demo_users().into_iter().find(|u| u.id == user_id)?;
    let global_name = (user.id != ids::LINUS).then(|| user.username.clone());
    let avatar = match user.id.as_str() {
        ids::ADA => Some("a_5f3c1f0e9d8b7a6c5b4a39281706f5e4"),
        ids::GRACE => Some("9a8b7c6d5e4f30211f2e3d4c5b6a7988"),
        _ => None,
    };
    Some(json!({
        "id": user.id,
        "username": user.username.to_lowercase(),
        "global_name": global_name,
        "avatar": avatar,
        "discriminator": "0",
        "public_flags": 0,
        "flags": 0,
        "banner": null,
        "accent_color": null,
        "avatar_decoration_data": null,
        "mfa_enabled": false,
        "locale": "en-US",
        "premium_type": 0,
    }))
}

/// A response ready for tiny_http.
pub(super) type HttpResponse = tiny_http::Response<Cursor<Vec<u8>>>;

fn respond(status: u16, content_type: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> HttpResponse {
    let mut r = tiny_http::Response::from_data(body).with_status_code(status);
    let headers = [
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
    ];
    for (n, v) in headers.iter().chain(extra) {
        if let Ok(h) = tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()) {
            r.add_header(h);
        }
    }
    r
}

fn json_response(status: u16, body: &Value) -> HttpResponse {
    respond(
        status,
        "application/json",
        body.to_string().into_bytes(),
        &[],
    )
}

fn html_response(status: u16, title: &str, inner: &str) -> HttpResponse {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;background:#313338;color:#dbdee1;display:grid;place-items:center;min-height:100vh;margin:0}}\
         main{{background:#2b2d31;padding:24px 32px;border-radius:8px;min-width:320px}}\
         a.user{{display:block;margin:8px 0;padding:10px 14px;border-radius:4px;background:#5865f2;color:#fff;text-decoration:none}}\
         a.cancel{{color:#b5bac1}}</style></head><body><main>{inner}</main></body></html>",
        escape(title)
    );
    respond(status, "text/html; charset=utf-8", page.into_bytes(), &[])
}

fn redirect(location: &str) -> HttpResponse {
    respond(302, "text/plain", Vec::new(), &[("Location", location)])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn query_of(target: &str) -> &str {
    target.split_once('?').map_or("", |(_, q)| q)
}

fn params(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// Answers `req` if it is one of the OAuth2 routes.
pub(super) fn handle(shared: &Shared, req: &RecordedRequest) -> Option<HttpResponse> {
    let path = req
        .path
        .split_once('?')
        .map_or(req.path.as_str(), |(p, _)| p);
    let get = req.method == "GET";
    Some(match path {
        "/oauth2/authorize" if get => authorize_page(shared, query_of(&req.path)),
        "/oauth2/authorize/decide" if get => decide(shared, query_of(&req.path)),
        "/api/v10/oauth2/token" if req.method == "POST" => token(shared, req),
        "/api/v10/users/@me" | "/api/v10/users/%40me" if get => me(shared, req),
        "/oauth2/authorize" | "/oauth2/authorize/decide" | "/api/v10/users/@me" => json_response(
            405,
            &json!({"message": "405: Method Not Allowed", "code": 0}),
        ),
        "/api/v10/oauth2/token" => json_response(
            405,
            &json!({"message": "405: Method Not Allowed", "code": 0}),
        ),
        _ => return None,
    })
}

/// An authorize request that passed Discord's checks.
struct Authorize {
    params: HashMap<String, String>,
    redirect_uri: String,
    challenge: Option<String>,
}

fn check_authorize(shared: &Shared, query: &str) -> Result<Authorize, &'static str> {
    let p = params(query);
    let app = &shared.config.oauth;
    if p.get("client_id") != Some(&app.client_id) {
        return Err("Invalid OAuth2 client_id");
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err("Invalid OAuth2 response_type: only code is supported");
    }
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    let registered = {
        let st = shared.oauth.lock();
        app.redirect_uris.contains(&redirect_uri) || st.redirect_uris.contains(&redirect_uri)
    };
    if !registered {
        return Err("Invalid OAuth2 redirect_uri");
    }
    let scope_ok = p
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|s| s == "identify"));
    if !scope_ok {
        return Err("Invalid scope: identify is required");
    }
    let challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), Some(m)) if m == "S256" && is_pkce_value(c) => Some(c.clone()),
        (_, Some(m)) if m != "S256" => return Err("Invalid code_challenge_method: use S256"),
        _ => return Err("Invalid code_challenge"),
    };
    Ok(Authorize {
        params: p,
        redirect_uri,
        challenge,
    })
}

/// The authorize parameters, re-encoded for the decide links.
fn passthrough(a: &Authorize) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for key in [
        "client_id",
        "response_type",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    ] {
        if let Some(v) = a.params.get(key) {
            ser.append_pair(key, v);
        }
    }
    ser.finish()
}

fn authorize_page(shared: &Shared, query: &str) -> HttpResponse {
    let a = match check_authorize(shared, query) {
        Ok(a) => a,
        Err(why) => {
            return html_response(
                400,
                "Invalid OAuth2 request",
                &format!("<h1>{}</h1>", escape(why)),
            )
        }
    };
    let base = passthrough(&a);
    let mut list = String::new();
    for u in demo_users() {
        let href = format!("/oauth2/authorize/decide?{base}&user={}", u.id);
        list += &format!(
            "<a class=\"user\" data-testid=\"sim-authorize-user\" data-user-id=\"{}\" href=\"{}\">Continue as {}</a>",
            escape(&u.id),
            escape(&href),
            escape(&u.username)
        );
    }
    let cancel = format!("/oauth2/authorize/decide?{base}&deny=1");
    html_response(
        200,
        "Discord (simulated): authorize",
        &format!(
            "<h1>An application wants to access your account</h1>\
             <p>It will be able to: <strong>access your username, avatar and banner</strong> (identify).</p>\
             <p>Pick who you are in the simulated Discord:</p>{list}\
             <p><a class=\"cancel\" data-testid=\"sim-authorize-cancel\" href=\"{}\">Cancel</a></p>",
            escape(&cancel)
        ),
    )
}

/// `redirect_uri` with `pairs` added to its query.
fn back_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", ser.finish())
}

fn decide(shared: &Shared, query: &str) -> HttpResponse {
    let a = match check_authorize(shared, query) {
        Ok(a) => a,
        Err(why) => {
            return html_response(
                400,
                "Invalid OAuth2 request",
                &format!("<h1>{}</h1>", escape(why)),
            )
        }
    };
    let p = params(query);
    let state = a.params.get("state").map(String::as_str);
    let with_state = |mut pairs: Vec<(&'static str, String)>| {
        if let Some(s) = state {
            pairs.push(("state", s.to_owned()));
        }
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        back_to(&a.redirect_uri, &pairs)
    };
    if p.contains_key("deny") {
        return redirect(&with_state(vec![
            ("error", "access_denied".into()),
            (
                "error_description",
                "The resource owner or authorization server denied the request".into(),
            ),
        ]));
    }
    let Some(user_id) = p
        .get("user")
        .filter(|id| demo_users().iter().any(|u| &u.id == *id))
    else {
        return html_response(400, "Unknown user", "<h1>Unknown user</h1>");
    };
    let code = Alphanumeric.sample_string(&mut rand::rng(), 30);
    {
        let mut st = shared.oauth.lock();
        let ttl = shared.config.oauth.code_ttl;
        st.codes.retain(|_, g| g.issued.elapsed() < ttl);
        if st.codes.len() >= MAX_GRANTS {
            st.codes.clear();
        }
        st.codes.insert(
            code.clone(),
            Grant {
                user_id: user_id.clone(),
                redirect_uri: a.redirect_uri.clone(),
                challenge: a.challenge.clone(),
                issued: Instant::now(),
            },
        );
    }
    redirect(&with_state(vec![("code", code)]))
}

fn oauth_error(status: u16, error: &str, description: &str) -> HttpResponse {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// `client_id:client_secret` from `Authorization: Basic …`.
fn basic_credentials(req: &RecordedRequest) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn token(shared: &Shared, req: &RecordedRequest) -> HttpResponse {
    let app = &shared.config.oauth;
    match basic_credentials(req) {
        Some((id, secret)) if id == app.client_id && secret == app.client_secret => {}
        _ => return json_response(401, &json!({"error": "invalid_client"})),
    }
    let form_type = req.header("content-type").is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    let p = params(if form_type { &req.body } else { "" });
    if p.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(400, "unsupported_grant_type", "Unsupported grant type");
    }
    let code = p.get("code").cloned().unwrap_or_default();
    // Removed on first use, whatever follows: a code is good for one try.
    let grant = shared.oauth.lock().codes.remove(&code);
    let Some(grant) = grant.filter(|g| g.issued.elapsed() < app.code_ttl) else {
        return oauth_error(400, "invalid_grant", "Invalid \"code\" in request.");
    };
    if p.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(400, "invalid_grant", "Invalid \"redirect_uri\" in request.");
    }
    if let Some(challenge) = &grant.challenge {
        let ok = p
            .get("code_verifier")
            .is_some_and(|v| is_pkce_value(v) && s256_challenge(v) == *challenge);
        if !ok {
            return oauth_error(
                400,
                "invalid_grant",
                "Invalid \"code_verifier\" in request.",
            );
        }
    }
    let access = Alphanumeric.sample_string(&mut rand::rng(), 30);
    let refresh = Alphanumeric.sample_string(&mut rand::rng(), 30);
    {
        let mut st = shared.oauth.lock();
        if st.tokens.len() >= MAX_GRANTS {
            st.tokens.clear();
        }
        st.tokens.insert(access.clone(), grant.user_id);
        if st.issued.len() >= MAX_GRANTS {
            st.issued.remove(0);
        }
        st.issued.push(access.clone());
    }
    json_response(
        200,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": TOKEN_EXPIRES_IN,
            "refresh_token": refresh,
            "scope": "identify",
        }),
    )
}

fn me(shared: &Shared, req: &RecordedRequest) -> HttpResponse {
    let unauthorized = || json_response(401, &json!({"message": "401: Unauthorized", "code": 0}));
    let Some(token) = req
        .header("authorization")
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
    else {
        return unauthorized();
    };
    let user = shared.oauth.lock().tokens.get(&token).cloned();
    match user.and_then(|u| profile(&u)) {
        Some(p) => json_response(200, &p),
        None => unauthorized(),
    }
}

#[cfg(test)]
mod tests {
    //! Loopback tests of the OAuth2 routes with a raw HTTP/1.1 client, as in `tests.rs`.

    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::super::{SimConfig, SimDiscord};
    use super::*;

    const REDIRECT: &str = "http://127.0.0.1:9/auth/discord/callback";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or(Value::Null)
        }
        /// A query parameter of the `Location` header.
        fn location_param(&self, key: &str) -> Option<String> {
            let loc = self.header("location")?;
            params(query_of(loc)).remove(key)
        }
    }

    fn start(app: SimOAuthApp) -> SimDiscord {
        let sim = SimDiscord::start(SimConfig {
            oauth: app,
            ..SimConfig::default()
        })
        .expect("simulator starts");
        sim.allow_redirect_uri(REDIRECT);
        sim
    }

    /// One request on a fresh connection; `target` is the full path and query.
    fn raw(
        sim: &SimDiscord,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let host = sim.api_base()["http://".len()..]
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut s = TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (n, v) in headers {
            head += &format!("{n}: {v}\r\n");
        }
        head += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn authorize_query(sim: &SimDiscord, overrides: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("response_type", "code".to_owned()),
            ("client_id", sim.oauth_client_id().to_owned()),
            ("scope", "identify".to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("state", "st4te".to_owned()),
            ("code_challenge", s256_challenge(VERIFIER)),
            ("code_challenge_method", "S256".to_owned()),
        ];
        for (k, v) in overrides {
            pairs.retain(|(n, _)| n != k);
            if !v.is_empty() {
                pairs.push((k, (*v).to_owned()));
            }
        }
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            ser.append_pair(k, v);
        }
        ser.finish()
    }

    /// Picks `user` on the consent page; returns the code.
    fn code_for(sim: &SimDiscord, user: &str) -> String {
        let q = authorize_query(sim, &[]);
        let r = raw(
            sim,
            "GET",
            &format!("/oauth2/authorize/decide?{q}&user={user}"),
            &[],
            "",
        );
        assert_eq!(r.status, 302, "{}", r.body);
        assert!(r.header("location").unwrap().starts_with(REDIRECT));
        assert_eq!(r.location_param("state").as_deref(), Some("st4te"));
        r.location_param("code").expect("a code")
    }

    fn basic(sim: &SimDiscord) -> String {
        let pair = format!("{}:{}", sim.oauth_client_id(), sim.oauth_client_secret());
        format!("Basic {}", STANDARD.encode(pair))
    }

    fn exchange(sim: &SimDiscord, auth: &str, code: &str, redirect: &str, verifier: &str) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect)
            .append_pair("code_verifier", verifier)
            .finish();
        raw(
            sim,
            "POST",
            "/api/v10/oauth2/token",
            &[
                ("Authorization", auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
    }

    #[test]
    fn the_authorize_page_lists_the_demo_users_and_cancel() {
        let sim = start(SimOAuthApp::default());
        assert!(sim.authorize_url().ends_with("/oauth2/authorize"));
        assert!(!sim.authorize_url().contains("/api/"));
        let r = raw(
            &sim,
            "GET",
            &format!("/oauth2/authorize?{}", authorize_query(&sim, &[])),
            &[],
            "",
        );
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        for u in demo_users() {
            assert!(
                r.body.contains(&format!("data-user-id=\"{}\"", u.id)),
                "{}",
                u.username
            );
        }
        assert!(r.body.contains("sim-authorize-cancel"));
        // Cancel goes back with access_denied and the state.
        let q = authorize_query(&sim, &[]);
        let r = raw(
            &sim,
            "GET",
            &format!("/oauth2/authorize/decide?{q}&deny=1"),
            &[],
            "",
        );
        assert_eq!(r.status, 302);
        assert_eq!(r.location_param("error").as_deref(), Some("access_denied"));
        assert_eq!(r.location_param("state").as_deref(), Some("st4te"));
        assert_eq!(r.location_param("code"), None);
    }

    #[test]
    fn the_authorize_page_checks_its_parameters_as_discord_does() {
        let sim = start(SimOAuthApp::default());
        for bad in [
            ("client_id", "1"),
            ("client_id", ""),
            ("response_type", "token"),
            ("redirect_uri", "http://evil.example/cb"),
            ("redirect_uri", ""),
            ("scope", "guilds"),
            ("code_challenge_method", "plain"),
            ("code_challenge", "short"),
            ("code_challenge", ""),
        ] {
            let q = authorize_query(&sim, &[bad]);
            let r = raw(&sim, "GET", &format!("/oauth2/authorize?{q}"), &[], "");
            assert_eq!(r.status, 400, "{bad:?}");
            let r = raw(
                &sim,
                "GET",
                &format!("/oauth2/authorize/decide?{q}&user={}", ids::ADA),
                &[],
                "",
            );
            assert_eq!(r.status, 400, "decide {bad:?}");
        }
        // An unknown user cannot be picked.
        let q = authorize_query(&sim, &[]);
        assert_eq!(
            raw(
                &sim,
                "GET",
                &format!("/oauth2/authorize/decide?{q}&user=1"),
                &[],
                ""
            )
            .status,
            400
        );
    }

    #[test]
    fn a_code_buys_one_token_and_the_token_reads_the_user() {
        let sim = start(SimOAuthApp::default());
        let code = code_for(&sim, ids::ADA);
        let r = exchange(&sim, &basic(&sim), &code, REDIRECT, VERIFIER);
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "identify");
        assert!(body["expires_in"].as_u64().is_some() && body["refresh_token"].is_string());
        let token = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(sim.issued_access_tokens(), vec![token.clone()]);
        let me = raw(
            &sim,
            "GET",
            "/api/v10/users/@me",
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        );
        assert_eq!(me.status, 200);
        let me = me.json();
        assert_eq!(me["id"], ids::ADA);
        assert_eq!(
            (me["username"].as_str(), me["global_name"].as_str()),
            (Some("ada"), Some("Ada"))
        );
        assert!(me["avatar"].is_string());
        assert_eq!(me["discriminator"], "0");
        // Single use: the same code again is refused.
        let again = exchange(&sim, &basic(&sim), &code, REDIRECT, VERIFIER);
        assert_eq!(
            (again.status, again.json()["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        // A user without a display name or avatar, as Discord sends it.
        let code = code_for(&sim, ids::LINUS);
        let t =
            exchange(&sim, &basic(&sim), &code, REDIRECT, VERIFIER).json()["access_token"].clone();
        let me = raw(
            &sim,
            "GET",
            "/api/v10/users/@me",
            &[("Authorization", &format!("Bearer {}", t.as_str().unwrap()))],
            "",
        );
        assert!(me.json()["global_name"].is_null() && me.json()["avatar"].is_null());
    }

    #[test]
    fn the_exchange_refuses_what_discord_refuses() {
        let sim = start(SimOAuthApp::default());
        // Wrong client credentials: 401 invalid_client, and the code is not spent.
        let code = code_for(&sim, ids::ADA);
        for auth in [
            "",
            "Basic !!!",
            "Bearer x",
            &format!("Basic {}", STANDARD.encode("1:wrong")),
        ] {
            let r = exchange(&sim, auth, &code, REDIRECT, VERIFIER);
            assert_eq!(
                (r.status, r.json()),
                (401, json!({"error": "invalid_client"})),
                "{auth}"
            );
        }
        assert_eq!(
            exchange(&sim, &basic(&sim), &code, REDIRECT, VERIFIER).status,
            200
        );
        // A wrong verifier, a wrong redirect_uri, an unknown code: invalid_grant (and the code is spent).
        for (redirect, verifier, code) in [
            (REDIRECT, &"x".repeat(43)[..], code_for(&sim, ids::ADA)),
            (
                "http://127.0.0.1:9/other",
                VERIFIER,
                code_for(&sim, ids::ADA),
            ),
            (REDIRECT, VERIFIER, "nope".to_owned()),
        ] {
            let r = exchange(&sim, &basic(&sim), &code, redirect, verifier);
            assert_eq!(r.status, 400);
            assert_eq!(r.json()["error"], "invalid_grant");
            assert!(r.json()["error_description"].is_string());
            assert_eq!(
                exchange(&sim, &basic(&sim), &code, REDIRECT, VERIFIER).status,
                400
            );
        }
        // Another grant type, or a body that is not a form.
        let r = raw(
            &sim,
            "POST",
            "/api/v10/oauth2/token",
            &[
                ("Authorization", &basic(&sim)),
                ("Content-Type", "application/json"),
            ],
            "{\"grant_type\":\"authorization_code\"}",
        );
        assert_eq!(r.json()["error"], "unsupported_grant_type");
        // users/@me without a valid bearer.
        for auth in [None, Some("Bearer nope"), Some("Bot sim-bot-token")] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            let r = raw(&sim, "GET", "/api/v10/users/@me", &headers, "");
            assert_eq!(
                (r.status, r.json()),
                (401, json!({"message": "401: Unauthorized", "code": 0}))
            );
        }
    }

    #[test]
    fn codes_are_short_lived() {
        let sim = start(SimOAuthApp {
            code_ttl: Duration::ZERO,
            ..SimOAuthApp::default()
        });
        let code = code_for(&sim, ids::GRACE);
        let r = exchange(&sim, &basic(&sim), &code, REDIRECT, VERIFIER);
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
}
