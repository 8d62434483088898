//! Sign in with Discord under attack and failure (CONTRACT.md §8): every
//! refusal answers clearly and sets no session cookie, and a refused state
//! never reaches Discord's token endpoint.

use relay::secret::Secret;
use relay_protocol::oauth::{PendingCodec, PendingLogin, PENDING_TTL_SECS, RANDOM_BYTES};
use relay_runtime::clock;
use relay_runtime::sim_discord::ids;
use relay_tests::harness::{Harness, Response, SESSION_SECRET};
use relay_tests::oauth::{get, query_value, set_cookie, signin_for, OAuthRig};

/// Token exchanges the simulator has seen.
fn exchanges(rig: &OAuthRig) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v10/oauth2/token")
        .count()
}

fn assert_invalid_state(r: &Response) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "invalid_state", "{}", r.body);
    assert!(
        set_cookie(r, "relay_session").is_none(),
        "no session on a refusal"
    );
}

#[test]
fn a_forged_state_is_refused_before_any_exchange() {
    let rig = OAuthRig::start();
    let login = rig.login("%2F");
    let back = rig.authorize(&login, Some(ids::ADA));
    let code = query_value(&back, "code").unwrap();
    for state in ["forged", "", &login.state[..42]] {
        let r = rig.callback(
            &rig.callback_url(&format!("code={code}&state={state}")),
            Some(&login.cookie),
        );
        assert_invalid_state(&r);
    }
    // No state at all, and no cookie at all.
    assert_invalid_state(&rig.callback(
        &rig.callback_url(&format!("code={code}")),
        Some(&login.cookie),
    ));
    assert_invalid_state(&rig.callback(&back, None));
    assert_invalid_state(&rig.callback(&back, Some("relay_oauth=not.a.jwt")));
    assert_eq!(exchanges(&rig), 0);
    // The forged callbacks did not spend the real one.
    assert_eq!(rig.callback(&back, Some(&login.cookie)).status, 302);
    assert_eq!(exchanges(&rig), 1);
}

#[test]
fn a_cookie_from_another_login_does_not_fit() {
    let rig = OAuthRig::start();
    let victim = rig.login("%2F");
    let attacker = rig.login("%2F");
    // The attacker's callback (their code and state), delivered to the victim's browser.
    let back = rig.authorize(&attacker, Some(ids::KEN));
    let r = rig.callback(&back, Some(&victim.cookie));
    assert_invalid_state(&r);
    // A mismatch leaves the victim's own sign-in in flight: the pending cookie stays.
    assert!(set_cookie(&r, "relay_oauth").is_none());
    assert_eq!(exchanges(&rig), 0);
}

#[test]
fn a_used_state_is_refused_the_second_time() {
    let rig = OAuthRig::start();
    let login = rig.login("%2F");
    let back = rig.authorize(&login, Some(ids::ADA));
    let first = rig.callback(&back, Some(&login.cookie));
    assert_eq!(first.status, 302);
    assert!(set_cookie(&first, "relay_session").is_some());
    // The same cookie replayed with the same callback.
    assert_invalid_state(&rig.callback(&back, Some(&login.cookie)));
    assert_eq!(exchanges(&rig), 1);
}

#[test]
fn a_stale_state_is_refused() {
    let rig = OAuthRig::start();
    // A pending cookie sealed 11 minutes ago with the edge's own key, as the
    // browser would still hold it if the cookie outlived Max-Age.
    let codec = PendingCodec::new(&Secret::new(SESSION_SECRET), PENDING_TTL_SECS);
    let old = PendingLogin::new(&[9; RANDOM_BYTES], "/".into(), clock::unix_secs() - 660);
    let cookie = format!("relay_oauth={}", codec.seal(&old));
    let r = rig.callback(
        &rig.callback_url(&format!("code=whatever&state={}", old.state)),
        Some(&cookie),
    );
    assert_invalid_state(&r);
    assert!(r.body.contains("too long"), "{}", r.body);
    // The same cookie sealed now is accepted (so staleness was the reason).
    let fresh = PendingLogin::new(&[9; RANDOM_BYTES], "/".into(), clock::unix_secs());
    let r = rig.callback(
        &rig.callback_url(&format!("error=access_denied&state={}", fresh.state)),
        Some(&format!("relay_oauth={}", codec.seal(&fresh))),
    );
    assert_eq!(r.status, 302);
    // And an edge whose sign-ins live 0 s refuses even a fresh one.
    let strict = OAuthRig::start_with(|s| s.signin.pending_ttl = std::time::Duration::ZERO);
    let login = strict.login("%2F");
    assert!(login.set_cookie.contains("Max-Age=0"));
    let back = strict.authorize(&login, Some(ids::ADA));
    assert_invalid_state(&strict.callback(&back, Some(&login.cookie)));
}

#[test]
fn cancel_at_discord_returns_to_next_with_signin_denied() {
    let rig = OAuthRig::start();
    let login = rig.login("%2Froom%3Fa%3D1");
    let back = rig.authorize(&login, None);
    assert_eq!(
        query_value(&back, "error").as_deref(),
        Some("access_denied")
    );
    let r = rig.callback(&back, Some(&login.cookie));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/room?a=1&signin=denied"));
    assert!(set_cookie(&r, "relay_session").is_none());
    assert!(set_cookie(&r, "relay_oauth").unwrap().contains("Max-Age=0"));
    assert_eq!(exchanges(&rig), 0);
}

#[test]
fn a_failed_exchange_returns_to_next_with_signin_failed() {
    let rig = OAuthRig::start();
    // A code Discord does not know: invalid_grant.
    let login = rig.login("%2F");
    let r = rig.callback(
        &rig.callback_url(&format!("code=made-up&state={}", login.state)),
        Some(&login.cookie),
    );
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("/?signin=failed"))
    );
    assert!(set_cookie(&r, "relay_session").is_none());
    // A code already spent (replayed with a new login's state and cookie).
    let first = rig.login("%2F");
    let back = rig.authorize(&first, Some(ids::ADA));
    assert_eq!(rig.callback(&back, Some(&first.cookie)).status, 302);
    let second = rig.login("%2F");
    let code = query_value(&back, "code").unwrap();
    let r = rig.callback(
        &rig.callback_url(&format!("code={code}&state={}", second.state)),
        Some(&second.cookie),
    );
    assert_eq!(r.header("location"), Some("/?signin=failed"));
    assert!(set_cookie(&r, "relay_session").is_none());
    // Discord with another idea of the client secret: invalid_client.
    let wrong = OAuthRig::start_with(|s| {
        if let Some(c) = s.signin.client.as_mut() {
            c.secret = Secret::new("not-the-secret");
        }
    });
    let r = wrong.sign_in(ids::ADA, "%2Fx");
    assert_eq!(r.header("location"), Some("/x?signin=failed"));
    assert!(set_cookie(&r, "relay_session").is_none());
}

#[test]
fn discord_unreachable_is_a_failed_sign_in() {
    let rig = OAuthRig::start_with(|s| s.signin.api_base = "http://127.0.0.1:9/api/v10".into());
    let login = rig.login("%2F");
    let back = rig.authorize(&login, Some(ids::ADA));
    let r = rig.callback(&back, Some(&login.cookie));
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("/?signin=failed"))
    );
    assert!(set_cookie(&r, "relay_session").is_none());
}

#[test]
fn next_must_stay_on_this_origin() {
    let rig = OAuthRig::start();
    for next in [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "%2F%2Fevil.com",
        "https%3A%2F%2Fevil.com",
        "%2F%5Cevil.com",
        "/%2F/evil.com",
        "/%252F/evil.com",
        "%5C%5Cevil.com",
        "%2F%09%2Fevil.com",
        "javascript:alert(1)",
        "evil.com",
        "%2Fa%0D%0ASet-Cookie:x=1",
    ] {
        let r = rig.login_raw(&format!("next={next}"));
        assert_eq!(r.status, 400, "{next}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid_request", "{next}");
        assert!(set_cookie(&r, "relay_oauth").is_none(), "{next}");
    }
    // No next, or an empty one, means "/".
    for q in ["", "next="] {
        let r = rig.login_raw(q);
        assert_eq!(r.status, 302, "{q}");
    }
}

#[test]
fn without_oauth_settings_the_routes_do_not_exist() {
    let h = Harness::start();
    for path in [
        "/auth/discord/login?next=/",
        "/auth/discord/callback?code=a&state=b",
    ] {
        let r = get(&format!("{}{path}", h.base()), None);
        assert_eq!(r.status, 404, "{path}");
        assert!(set_cookie(&r, "relay_session").is_none());
    }
    // Logout still clears a cookie an app set.
    let r = relay_tests::harness::post(&h.base(), "/auth/logout", None, "text/plain", "");
    assert_eq!(r.status, 204);
    // Half an app (id without secret) is not an app either.
    let sim = relay_runtime::sim_discord::SimDiscord::start(Default::default()).unwrap();
    let h = Harness::start_with(|s| {
        s.signin = signin_for(&sim);
        s.signin.client = None;
    });
    assert_eq!(
        get(&format!("{}/auth/discord/login", h.base()), None).status,
        404
    );
}

#[test]
fn wrong_methods_are_405() {
    let rig = OAuthRig::start();
    let base = rig.h.base();
    let post = |path: &str| relay_tests::harness::post(&base, path, None, "text/plain", "");
    assert_eq!(post("/auth/discord/login").status, 405);
    assert_eq!(post("/auth/discord/callback").status, 405);
    assert_eq!(get(&format!("{base}/auth/logout"), None).status, 405);
}
