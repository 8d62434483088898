//! Sign in with Discord end to end on loopback (CONTRACT.md §8): the login's
//! `302` carries state and S256 PKCE and sets the pending cookie; the simulated
//! Discord's consent page sends the browser back with a code; the callback sets
//! `relay_session` with the user's id, name, avatar and both roles; that
//! session opens `/api/stream`; logout clears it.

use std::time::Duration;

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use relay_protocol::oauth::s256_challenge;
use relay_runtime::sim_discord::ids;
use relay_tests::harness::SESSION_SECRET;
use relay_tests::oauth::{cookie_pair, get, query_value, set_cookie, OAuthRig};
use serde_json::Value;

fn claims(token: &str) -> Value {
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    decode::<Value>(
        token,
        &DecodingKey::from_secret(SESSION_SECRET.as_bytes()),
        &v,
    )
    .expect("a session signed with SESSION_SECRET")
    .claims
}

#[test]
fn login_redirects_to_discord_with_state_pkce_and_a_pending_cookie() {
    let rig = OAuthRig::start();
    let login = rig.login("%2Froom%3Fx%3D1");
    assert!(
        login.location.starts_with(&rig.sim.authorize_url()),
        "{}",
        login.location
    );
    let q = |k| query_value(&login.location, k);
    assert_eq!(q("response_type").as_deref(), Some("code"));
    assert_eq!(q("client_id").as_deref(), Some(rig.sim.oauth_client_id()));
    assert_eq!(q("scope").as_deref(), Some("identify"));
    assert_eq!(
        q("redirect_uri"),
        Some(format!("{}/auth/discord/callback", rig.h.base()))
    );
    assert_eq!(q("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(login.state.len(), 43);
    assert_eq!(login.challenge.len(), 43);
    // The pending cookie: short-lived, HttpOnly, Lax, only under /auth/discord, not Secure on http.
    let attrs: Vec<&str> = login.set_cookie.split("; ").collect();
    for want in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/auth/discord",
        "Max-Age=600",
    ] {
        assert!(attrs.contains(&want), "{want} in {}", login.set_cookie);
    }
    assert!(!login.set_cookie.contains("Secure"));
    // Each login is fresh.
    let again = rig.login("%2F");
    assert_ne!(again.state, login.state);
    assert_ne!(again.challenge, login.challenge);
}

#[test]
fn the_round_trip_sets_a_session_that_opens_the_stream() {
    let rig = OAuthRig::start();
    let login = rig.login("%2Froom%3Fx%3D1");
    let back = rig.authorize(&login, Some(ids::ADA));
    assert!(back.starts_with(&format!("{}/auth/discord/callback?", rig.h.base())));
    assert_eq!(query_value(&back, "state"), Some(login.state.clone()));
    let r = rig.callback(&back, Some(&login.cookie));
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.header("location"), Some("/room?x=1"));
    // The pending cookie is cleared, the session set.
    let pending = set_cookie(&r, "relay_oauth").expect("the pending cookie cleared");
    assert!(pending.contains("Max-Age=0"), "{pending}");
    let session = set_cookie(&r, "relay_session").expect("a session cookie");
    let attrs: Vec<&str> = session.split("; ").collect();
    for want in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&want), "{want} in {session}");
    }
    let pair = cookie_pair(session);
    let token = pair.strip_prefix("relay_session=").unwrap();
    let c = claims(token);
    assert_eq!(c["sub"], ids::ADA);
    assert_eq!(c["name"], "Ada");
    assert_eq!(c["avatar"], "a_5f3c1f0e9d8b7a6c5b4a39281706f5e4");
    assert_eq!(
        c["roles"],
        serde_json::json!(["chat:write", "voice:moderate"])
    );
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 12 * 3600);

    // The cookie alone opens the stream, and tells the page who signed in.
    let mut s = rig.h.stream("", &[("Cookie", &pair)]);
    s.wait_for("voice.snapshot", Duration::from_secs(5))
        .expect("the stream opens with the cookie session");
    let me = get(&format!("{}/auth/session", rig.h.base()), Some(&pair));
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["id"], ids::ADA);
    assert_eq!(me.json()["user"]["username"], "Ada");
    assert_eq!(
        me.json()["user"]["avatar"],
        "a_5f3c1f0e9d8b7a6c5b4a39281706f5e4"
    );

    // The PKCE verifier the edge sent matched the challenge of the login.
    let token_call = rig
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v10/oauth2/token")
        .expect("the exchange");
    let form: Vec<(String, String)> = form_urlencoded::parse(token_call.body.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(field("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(
        s256_challenge(&field("code_verifier").unwrap()),
        login.challenge
    );
    assert!(token_call
        .header("authorization")
        .unwrap()
        .starts_with("Basic "));

    // Logout clears it.
    let out = relay_tests::harness::post(&rig.h.base(), "/auth/logout", None, "text/plain", "");
    assert_eq!(out.status, 204);
    let cleared = set_cookie(&out, "relay_session").expect("cleared");
    assert!(
        cleared.starts_with("relay_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(
        get(&format!("{}/auth/session", rig.h.base()), None).status,
        401
    );
}

#[test]
fn a_user_without_display_name_or_avatar_gets_the_username() {
    let rig = OAuthRig::start();
    let r = rig.sign_in(ids::LINUS, "");
    assert_eq!((r.status, r.header("location")), (302, Some("/")));
    let pair = cookie_pair(set_cookie(&r, "relay_session").expect("session"));
    let c = claims(pair.strip_prefix("relay_session=").unwrap());
    assert_eq!(
        (c["sub"].as_str(), c["name"].as_str()),
        (Some(ids::LINUS), Some("linus"))
    );
    assert!(c.get("avatar").is_none(), "{c}");
}

#[test]
fn session_ttl_and_https_public_url_shape_the_cookies() {
    let rig = OAuthRig::start_with(|s| {
        s.signin.session_ttl = Duration::from_secs(90);
        s.signin.public_url = Some("https://chat.example.com".into());
    });
    // The redirect URI follows PUBLIC_URL; register it as an operator would.
    let uri = rig.h.edge.as_ref().unwrap().oauth_redirect_uri();
    assert_eq!(uri, "https://chat.example.com/auth/discord/callback");
    let login = rig.login("%2F");
    assert!(
        login.set_cookie.ends_with("; Secure"),
        "{}",
        login.set_cookie
    );
    assert_eq!(
        query_value(&login.location, "redirect_uri").as_deref(),
        Some(uri.as_str())
    );
    // The browser comes back to the public URL; here we deliver it to the edge directly.
    let back = rig.authorize(&login, Some(ids::GRACE));
    let query = back.split_once('?').unwrap().1;
    let r = rig.callback(&rig.callback_url(query), Some(&login.cookie));
    assert_eq!(r.status, 302, "{}", r.body);
    let session = set_cookie(&r, "relay_session").expect("session");
    assert!(
        session.contains("Max-Age=90") && session.ends_with("; Secure"),
        "{session}"
    );
    let c = claims(cookie_pair(session).strip_prefix("relay_session=").unwrap());
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 90);
}

#[test]
fn app_minted_sessions_keep_working_beside_sign_in() {
    let rig = OAuthRig::start();
    let token = rig.h.token("42", &["chat:write"]);
    let me = get(
        &format!("{}/auth/session?access_token={token}", rig.h.base()),
        None,
    );
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["id"], "42");
    assert!(me.json()["user"]["avatar"].is_null());
}
