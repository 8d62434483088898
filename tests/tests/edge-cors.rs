//! `ALLOWED_ORIGINS` (CONTRACT.md §1) on real sockets: a listed origin may call
//! the command API, history and the stream cross-origin with credentials; any
//! other origin gets no CORS header and its preflight is refused; with the list
//! empty (the default) no CORS header is ever sent.

use std::time::Duration;

use relay::edge::cors::AllowedOrigins;
use relay_protocol::sse::SseItem;
use relay_tests::harness::{agent, Harness, Response};

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";
const T: Duration = Duration::from_secs(5);

fn with_origins(list: &str) -> Harness {
    let origins = AllowedOrigins::parse(list).expect("valid list");
    Harness::start_with(move |s| s.allowed_origins = origins)
}

fn post_from(
    h: &Harness,
    path: &str,
    origin: Option<&str>,
    token: Option<&str>,
    body: &str,
) -> Response {
    let agent = agent();
    let mut req = agent
        .post(&format!("{}{path}", h.base()))
        .header("Content-Type", "application/json");
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    Response::from(req.send(body).expect("request"))
}

fn get_from(h: &Harness, path: &str, origin: Option<&str>) -> Response {
    let agent = agent();
    let mut req = agent.get(&format!("{}{path}", h.base()));
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    Response::from(req.call().expect("request"))
}

fn preflight(h: &Harness, path: &str, origin: &str, method: &str) -> Response {
    let agent = agent();
    let req = agent
        .options(&format!("{}{path}", h.base()))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        );
    Response::from(req.call().expect("request"))
}

fn cors_headers(r: &Response) -> Vec<&(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect()
}

fn assert_allowed(r: &Response, origin: &str) {
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(origin),
        "{r:?}"
    );
    assert_eq!(
        r.header("access-control-allow-credentials"),
        Some("true"),
        "{r:?}"
    );
    assert!(
        r.header("vary").is_some_and(|v| v.contains("Origin")),
        "Vary: Origin expected: {r:?}"
    );
}

#[test]
fn allowed_origin_gets_cors_headers_on_commands_and_history() {
    let h = with_origins(&format!("{APP}, http://localhost:5173"));
    assert!(h.wait_link(true, T));
    let token = h.token("42", &["chat:write"]);
    let r = post_from(
        &h,
        "/api/send-message",
        Some(APP),
        Some(&token),
        r#"{"channelId":"10","content":"hi"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_allowed(&r, APP);
    // Retry-After must be readable by the page's script.
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("Retry-After")
    );
    // Errors carry the headers too, so the page can read why.
    let r = post_from(
        &h,
        "/api/send-message",
        Some("http://localhost:5173"),
        None,
        "{}",
    );
    assert_eq!(r.status, 401);
    assert_allowed(&r, "http://localhost:5173");
    // History (served on another branch; whatever it answers here, it is CORS-enabled).
    let r = get_from(&h, "/api/channels/10/messages?limit=5", Some(APP));
    assert_allowed(&r, APP);
}

#[test]
fn other_origins_get_no_cors_headers() {
    let h = with_origins(APP);
    let token = h.token("42", &["chat:write"]);
    for origin in [
        EVIL,
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        let r = post_from(
            &h,
            "/api/typing-start",
            Some(origin),
            Some(&token),
            r#"{"channelId":"10"}"#,
        );
        assert!(cors_headers(&r).is_empty(), "{origin}: {r:?}");
    }
    // Paths outside the API never get CORS headers, even for a listed origin.
    let r = get_from(&h, "/healthz", Some(APP));
    assert!(cors_headers(&r).is_empty(), "{r:?}");
    let r = get_from(&h, "/client/relay.js", Some(APP));
    assert!(cors_headers(&r).is_empty(), "{r:?}");
}

#[test]
fn preflight_is_answered_for_listed_origins_and_refused_for_others() {
    let h = with_origins(APP);
    for (path, method) in [
        ("/api/send-message", "POST"),
        ("/api/voice/move-member", "POST"),
        ("/api/channels/10/messages", "GET"),
        ("/api/stream", "GET"),
    ] {
        let r = preflight(&h, path, APP, method);
        assert_eq!(r.status, 204, "{path}: {r:?}");
        assert_allowed(&r, APP);
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some(method),
            "{path}"
        );
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("Content-Type, Authorization, Last-Event-ID")
        );
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert!(r.body.is_empty());

        let r = preflight(&h, path, EVIL, method);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(cors_headers(&r).is_empty(), "{path}: {r:?}");
    }
}

#[test]
fn stream_with_credentials_from_a_listed_origin() {
    let h = with_origins(APP);
    let token = h.token("42", &[]);
    // A cross-origin EventSource with withCredentials: the session is the cookie.
    let cookie = format!("relay_session={token}");
    let mut s = h.stream("", &[("Origin", APP), ("Cookie", &cookie)]);
    assert_eq!(s.status, 200);
    assert_eq!(s.header("access-control-allow-origin"), Some(APP));
    assert_eq!(s.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.next_item(T), Some(SseItem::Retry(2000)));
    assert_eq!(s.next_event(T).expect("status").event, "gateway.status");

    // Without a session: 401, still readable by the listed origin.
    let s = h.stream("", &[("Origin", APP)]);
    assert_eq!(s.status, 401);
    assert_eq!(s.header("access-control-allow-origin"), Some(APP));

    // Another origin: the stream itself is served (the browser withholds it), without CORS headers.
    let s = h.stream("", &[("Origin", EVIL), ("Cookie", &cookie)]);
    assert_eq!(s.status, 200);
    assert_eq!(s.header("access-control-allow-origin"), None);
    assert_eq!(s.header("access-control-allow-credentials"), None);
}

#[test]
fn no_cors_at_all_when_unset() {
    let h = Harness::start();
    let token = h.token("42", &["chat:write"]);
    let r = post_from(
        &h,
        "/api/typing-start",
        Some(APP),
        Some(&token),
        r#"{"channelId":"10"}"#,
    );
    assert!(cors_headers(&r).is_empty(), "{r:?}");
    assert_eq!(r.header("vary"), None);
    // A preflight is not answered as one: the endpoint still only knows POST (as in v1.0).
    let r = preflight(&h, "/api/send-message", APP, "POST");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(cors_headers(&r).is_empty(), "{r:?}");
    let s = h.stream(&format!("access_token={token}"), &[("Origin", APP)]);
    assert_eq!(s.status, 200);
    assert_eq!(s.header("access-control-allow-origin"), None);
}
