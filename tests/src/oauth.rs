//! Sign in with Discord on loopback: a quiet [`SimDiscord`] as the OAuth2
//! provider and a [`Harness`] edge whose sign-in points at it, with a browser's
//! steps as plain HTTP calls that never follow redirects, so each `302` and
//! `Set-Cookie` can be checked.

use std::time::Duration;

use relay::config::DiscordClient;
use relay::edge::{EdgeSettings, SignInSettings};
use relay::secret::Secret;
use relay_runtime::sim_discord::{SimConfig, SimDiscord};

use crate::harness::{Harness, Response};

/// A simulator and an edge signing in through it.
pub struct OAuthRig {
    /// The edge (and its test gateway).
    pub h: Harness,
    /// The OAuth2 provider.
    pub sim: SimDiscord,
}

/// What `GET /auth/discord/login` answered.
#[derive(Debug, Clone)]
pub struct Login {
    /// The whole response.
    pub status: u16,
    /// `Location`: Discord's authorize URL with the query.
    pub location: String,
    /// The `state` in it.
    pub state: String,
    /// The `code_challenge` in it.
    pub challenge: String,
    /// `relay_oauth=<value>`, ready for a `Cookie` header.
    pub cookie: String,
    /// The raw `Set-Cookie` line.
    pub set_cookie: String,
}

/// The sign-in settings of an edge using `sim` (the redirect URI is the edge's own).
pub fn signin_for(sim: &SimDiscord) -> SignInSettings {
    SignInSettings {
        client: Some(DiscordClient {
            id: sim.oauth_client_id().to_owned(),
            secret: Secret::new(sim.oauth_client_secret()),
        }),
        authorize_url: sim.authorize_url(),
        api_base: sim.api_base(),
        discord_timeout: Duration::from_secs(5),
        ..SignInSettings::default()
    }
}

/// An HTTP agent that follows no redirect and returns 4xx/5xx as responses.
pub fn no_redirects() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// GETs `url` with an optional `Cookie` header, following nothing.
pub fn get(url: &str, cookie: Option<&str>) -> Response {
    let agent = no_redirects();
    let mut req = agent.get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    Response::from(req.call().expect("request"))
}

/// The first value of `key` in the query of `url`.
pub fn query_value(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Every `Set-Cookie` line of a response.
pub fn set_cookies(r: &Response) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The `Set-Cookie` line for cookie `name`, if any.
pub fn set_cookie<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// `name=value` of a `Set-Cookie` line (its first attribute).
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").trim().to_owned()
}

impl OAuthRig {
    /// Starts a quiet simulator and an edge signing in through it.
    pub fn start() -> OAuthRig {
        Self::start_with(|_| {})
    }

    /// As [`OAuthRig::start`], letting the test adjust the edge's settings.
    pub fn start_with(adjust: impl FnOnce(&mut EdgeSettings)) -> OAuthRig {
        let sim = SimDiscord::start(SimConfig::default()).expect("the simulator starts");
        let signin = signin_for(&sim);
        let h = Harness::start_with(|s| {
            s.signin = signin;
            adjust(s);
        });
        let edge = h.edge.as_ref().expect("edge running");
        sim.allow_redirect_uri(&edge.oauth_redirect_uri());
        OAuthRig { h, sim }
    }

    /// `GET /auth/discord/login` with the raw query (`next=…`, or empty).
    pub fn login_raw(&self, query: &str) -> Response {
        get(
            &format!("{}/auth/discord/login?{query}", self.h.base()),
            None,
        )
    }

    /// A login for `next` (already encoded for a query); panics unless it is a `302`.
    pub fn login(&self, next: &str) -> Login {
        let r = self.login_raw(&format!("next={next}"));
        assert_eq!(r.status, 302, "login: {}", r.body);
        let location = r.header("location").expect("Location").to_owned();
        let set_cookie = set_cookie(&r, "relay_oauth")
            .expect("the pending cookie")
            .to_owned();
        Login {
            status: r.status,
            state: query_value(&location, "state").expect("state"),
            challenge: query_value(&location, "code_challenge").expect("code_challenge"),
            cookie: cookie_pair(&set_cookie),
            location,
            set_cookie,
        }
    }

    /// Opens the authorize page and picks `user_id` (or Cancel when `None`);
    /// returns where the simulator sends the browser back (the edge's callback URL).
    pub fn authorize(&self, login: &Login, user_id: Option<&str>) -> String {
        let page = get(&login.location, None);
        assert_eq!(page.status, 200, "authorize page: {}", page.body);
        let root = self.sim.api_base().replace("/api/v10", "");
        let pick = match user_id {
            Some(id) => format!("{}&user={id}", decide_query(&login.location)),
            None => format!("{}&deny=1", decide_query(&login.location)),
        };
        let r = get(&format!("{root}/oauth2/authorize/decide?{pick}"), None);
        assert_eq!(r.status, 302, "decide: {}", r.body);
        r.header("location").expect("Location").to_owned()
    }

    /// GETs the callback URL with `cookie` (`relay_oauth=…`), following nothing.
    pub fn callback(&self, url: &str, cookie: Option<&str>) -> Response {
        get(url, cookie)
    }

    /// The edge's callback URL with a raw query.
    pub fn callback_url(&self, query: &str) -> String {
        format!("{}/auth/discord/callback?{query}", self.h.base())
    }

    /// A login whose callback carries a code Discord does not know: the
    /// callback's answer (`302` to `/?signin=failed`).
    pub fn sign_in_failing(&self) -> Response {
        let login = self.login("%2F");
        let url = self.callback_url(&format!("code=made-up-code&state={}", login.state));
        self.callback(&url, Some(&login.cookie))
    }

    /// The whole round trip as `user_id`: the callback's answer.
    pub fn sign_in(&self, user_id: &str, next: &str) -> Response {
        let login = self.login(next);
        let back = self.authorize(&login, Some(user_id));
        self.callback(&back, Some(&login.cookie))
    }
}

/// The query of an authorize URL, as the consent page's links carry it.
fn decide_query(location: &str) -> String {
    location.split_once('?').map_or("", |(_, q)| q).to_owned()
}
