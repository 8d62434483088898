//! Sign in with Discord (CONTRACT.md §8): the edge's routes around the
//! protocol's `oauth` rules, plus the two calls to Discord.
//!
//! | route | answer |
//! |---|---|
//! | `GET /auth/discord/login?next=/path` | `302` to Discord's authorize page, the pending-login cookie set; `400` for a `next` off this origin; `404` without `DISCORD_CLIENT_ID` + `DISCORD_CLIENT_SECRET` |
//! | `GET /auth/discord/callback?code&state` | `302` to `next` with `relay_session` set; `302` to `next?signin=denied|failed`; `400 invalid_state` |
//! | `POST /auth/logout` | `204`, `relay_session` cleared |
//! | `GET /auth/session` | `200` the caller's session (`user`, `roles`, `exp`, and in demo mode the demo guild), else `401`: an `HttpOnly` cookie is invisible to page script, so this is how a page learns who signed in |
//!
//! Discord's access token lives in one stack frame: it is read from the token
//! answer, sent once as `Authorization: Bearer` to `/users/@me`, and dropped.
//! It is a [`Secret`], so no log line or error can print it; errors name only
//! what went wrong. The authorization `code` is redacted from logged URLs
//! (`logging::redact_query`). Every refusal sets no session cookie.

use std::net::SocketAddr;
use std::time::Duration;

use log::{info, warn};
use parking_lot::Mutex;
use rand::RngCore;
use relay_protocol::oauth::{
    self, basic_auth, decide_callback, parse_callback_query, parse_token_answer, parse_user_answer,
    token_request_body, validate_next, Callback, ConsumedStates, DiscordUser, OAuthClient,
    PendingCodec, PendingLogin, SignInOutcome, StateError, TokenError, UserError, PENDING_COOKIE,
    PENDING_COOKIE_PATH,
};
use relay_runtime::clock;
use serde_json::json;

use super::authn::authenticate;
use super::http::{error_reply, json_reply, not_found, query_param, Reply, Request};
use super::state::{AppState, SignInSettings};
use crate::auth::{cookie_value, ROLE_CHAT_WRITE, ROLE_VOICE_MODERATE, SESSION_COOKIE};
use crate::secret::Secret;

/// The sign-in state one edge keeps: the client, the cookie codec, the states
/// already used, and an HTTP agent for Discord.
pub struct SignIn {
    /// `None` when the OAuth2 settings are missing: the routes answer 404.
    client: Option<(OAuthClient, Secret)>,
    redirect_uri: String,
    api_base: String,
    codec: PendingCodec,
    consumed: Mutex<ConsumedStates>,
    agent: ureq::Agent,
    /// `PUBLIC_URL` is `https`: cookies get `Secure`.
    secure: bool,
    session_ttl: Duration,
}

/// Why the exchange with Discord gave no user.
#[derive(Debug)]
enum ExchangeError {
    /// Discord could not be reached or answered too slowly.
    Unreachable(&'static str, String),
    /// The token endpoint's answer.
    Token(TokenError),
    /// `/users/@me`'s answer.
    User(UserError),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Unreachable(what, e) => write!(f, "cannot reach Discord's {what}: {e}"),
            ExchangeError::Token(e) => e.fmt(f),
            ExchangeError::User(e) => e.fmt(f),
        }
    }
}

impl SignIn {
    /// The sign-in of an edge bound to `bound`, keyed from `session_secret`.
    pub fn new(settings: &SignInSettings, session_secret: &Secret, bound: SocketAddr) -> Self {
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let client = settings.client.as_ref().map(|c| {
            (
                OAuthClient::new(&c.id, &settings.authorize_url, &public_url),
                c.secret.clone(),
            )
        });
        let pending_ttl = settings.pending_ttl.as_secs();
        SignIn {
            client,
            redirect_uri: format!(
                "{}{}",
                public_url.trim_end_matches('/'),
                oauth::CALLBACK_PATH
            ),
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            codec: PendingCodec::new(session_secret, pending_ttl),
            consumed: Mutex::new(ConsumedStates::default()),
            agent: relay_runtime::discord_rest::http_agent(settings.discord_timeout),
            secure: public_url
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("https://")),
            session_ttl: settings.session_ttl,
        }
    }

    /// The redirect URI Discord sends browsers back to.
    pub fn redirect_uri(&self) -> String {
        self.redirect_uri.clone()
    }

    /// `; Secure` when the public URL is https.
    fn secure_attr(&self) -> &'static str {
        if self.secure {
            "; Secure"
        } else {
            ""
        }
    }

    fn pending_cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{PENDING_COOKIE}={value}; Path={PENDING_COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            self.secure_attr()
        )
    }

    fn clear_pending(&self) -> String {
        self.pending_cookie("", 0)
    }

    fn session_cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            self.secure_attr()
        )
    }

    /// Exchanges `code` for an access token, reads the user with it, drops it.
    fn exchange(
        &self,
        client: &OAuthClient,
        client_secret: &Secret,
        code: &Secret,
        verifier: &Secret,
    ) -> Result<DiscordUser, ExchangeError> {
        let body = token_request_body(code.expose(), &client.redirect_uri, verifier.expose());
        let auth = basic_auth(&client.client_id, client_secret);
        let (status, bytes) = read(
            self.agent
                .post(format!("{}/oauth2/token", self.api_base))
                .header("Authorization", auth.expose())
                .header("Accept", "application/json")
                .content_type("application/x-www-form-urlencoded")
                .send(body),
        )
        .map_err(|e| ExchangeError::Unreachable("token endpoint", e))?;
        let token = parse_token_answer(status, &bytes).map_err(ExchangeError::Token)?;
        let bearer = Secret::new(format!("Bearer {}", token.expose()));
        drop(token);
        let (status, bytes) = read(
            self.agent
                .get(format!("{}/users/@me", self.api_base))
                .header("Authorization", bearer.expose())
                .header("Accept", "application/json")
                .call(),
        )
        .map_err(|e| ExchangeError::Unreachable("/users/@me", e))?;
        drop(bearer);
        parse_user_answer(status, &bytes).map_err(ExchangeError::User)
    }
}

/// Status and at most `MAX_ANSWER_BYTES + 1` bytes of body (the parsers refuse
/// more), or why the call failed. The error text is ureq's, which names the
/// failure (refused, timed out, DNS) and never a header.
fn read(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Vec<u8>), String> {
    let mut resp = result.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let limit = oauth::MAX_ANSWER_BYTES as u64 + 1;
    match resp.body_mut().with_config().limit(limit).read_to_vec() {
        Ok(bytes) => Ok((status, bytes)),
        Err(ureq::Error::BodyExceedsLimit(_)) => Ok((status, vec![b' '; limit as usize])),
        Err(e) => Err(e.to_string()),
    }
}

/// A `302` to `location` that no cache keeps.
fn redirect(location: &str) -> Reply {
    Reply::new(302)
        .header("Location", location)
        .header("Cache-Control", "no-store")
}

/// `GET /auth/discord/login?next=/path`.
pub fn login(state: &AppState, query: &str) -> Reply {
    let signin = &state.oauth;
    let Some((client, _)) = &signin.client else {
        return not_found();
    };
    let next = match validate_next(query_param(query, "next").as_deref()) {
        Ok(next) => next,
        Err(e) => return error_reply(400, "invalid_request", &e.to_string()),
    };
    let mut random = [0u8; oauth::RANDOM_BYTES];
    rand::rng().fill_bytes(&mut random);
    let pending = PendingLogin::new(&random, next, clock::unix_secs());
    let cookie = signin.pending_cookie(&signin.codec.seal(&pending), signin.codec.ttl_secs());
    redirect(&client.authorize_location(&pending)).header("Set-Cookie", cookie)
}

/// `GET /auth/discord/callback?code=…&state=…` (or `?error=…&state=…`).
pub fn callback(state: &AppState, req: &Request, query: &str) -> Reply {
    let signin = &state.oauth;
    let Some((client, client_secret)) = &signin.client else {
        return not_found();
    };
    let params = parse_callback_query(query);
    let cookie = req
        .header("Cookie")
        .and_then(|c| cookie_value(c, PENDING_COOKIE));
    let now = clock::unix_secs();
    let decided = decide_callback(
        &params,
        cookie,
        &signin.codec,
        &mut signin.consumed.lock(),
        now,
    );
    let (code, verifier, next) = match decided {
        Err(e) => {
            info!("sign-in refused: {e}");
            let reply = error_reply(400, e.code(), &e.to_string());
            // A forged callback must not end this browser's real sign-in in flight.
            return if e == StateError::Mismatch {
                reply
            } else {
                reply.header("Set-Cookie", signin.clear_pending())
            };
        }
        Ok(Callback::Redirect { outcome, location }) => {
            info!("sign-in ended at Discord: {}", outcome.as_str());
            return redirect(&location).header("Set-Cookie", signin.clear_pending());
        }
        Ok(Callback::Exchange {
            code,
            verifier,
            next,
        }) => (code, verifier, next),
    };
    let user = match signin.exchange(client, client_secret, &code, &verifier) {
        Ok(user) => user,
        Err(e) => {
            warn!("sign-in failed: {e}");
            let location = oauth::next_with_outcome(&next, SignInOutcome::Failed);
            return redirect(&location).header("Set-Cookie", signin.clear_pending());
        }
    };
    let roles = [ROLE_CHAT_WRITE.to_owned(), ROLE_VOICE_MODERATE.to_owned()];
    let token = state.keys.issue_with_avatar(
        &user.id,
        Some(user.display_name()),
        user.avatar.as_deref(),
        &roles,
        signin.session_ttl,
        now,
    );
    info!("signed in with Discord: user {}", user.id);
    redirect(&next)
        .header(
            "Set-Cookie",
            signin.session_cookie(&token, signin.session_ttl.as_secs().max(1)),
        )
        .header("Set-Cookie", signin.clear_pending())
}

/// `POST /auth/logout`: clears `relay_session`.
pub fn logout(state: &AppState) -> Reply {
    Reply::new(204)
        .header("Set-Cookie", state.oauth.session_cookie("", 0))
        .header("Cache-Control", "no-store")
}

/// `GET /auth/session`: who the caller is, for a page whose session cookie is
/// `HttpOnly`. In demo mode it also names the demo guild and its channels, in
/// the shape `/api/demo/session` answers.
pub fn session(state: &AppState, req: &Request, query: &str) -> Reply {
    let session = match authenticate(state, req, query) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let mut body = json!({
        "user": {
            "id": session.sub,
            "username": session.name.as_deref().unwrap_or(&session.sub),
            "avatar": session.avatar,
        },
        "roles": session.roles,
        "exp": session.exp,
    });
    if let Some(demo) = &state.settings.demo {
        body["guildId"] = json!(demo.guild_id);
    }
    json_reply(200, &body)
}
