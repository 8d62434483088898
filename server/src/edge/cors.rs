//! Cross-origin access (CONTRACT.md §1 `ALLOWED_ORIGINS`): which origins may
//! call the command API, history and the stream from another site, with
//! credentials. Pure: parsing and decisions only; `routes` applies them.
//!
//! - Unset or empty: same origin only, and no CORS header is ever sent (v1.0).
//! - Set: a request on a CORS path whose `Origin` is listed gets
//!   `Access-Control-Allow-Origin: <that origin>`,
//!   `Access-Control-Allow-Credentials: true` and `Vary: Origin`; any other
//!   origin gets no `Access-Control-*` header (the browser then withholds the
//!   answer), and its preflight (`OPTIONS`) is refused with 403.
//!
//! Origins are compared in their serialized form (RFC 6454 §6.2): scheme and
//! host lower-cased, the scheme's default port left out.

use std::fmt;

/// `Access-Control-Allow-Headers` of a preflight answer.
pub const ALLOW_HEADERS: &str = "Content-Type, Authorization, Last-Event-ID";
/// `Access-Control-Max-Age` of a preflight answer, seconds.
pub const MAX_AGE_SECS: u32 = 600;
/// Response headers a cross-origin script may read beyond the safelisted ones.
pub const EXPOSE_HEADERS: &str = "Retry-After";

/// A serialized origin: `scheme://host[:port]`, lower-case, default port left out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// Parses an origin as an operator writes it or a browser sends it:
    /// `scheme://host[:port]`, no user info, path, query or fragment (a lone
    /// trailing `/` is tolerated). The error says what is wrong.
    pub fn parse(s: &str) -> Result<Origin, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| "needs a scheme and a host, like https://app.example.com".to_owned())?;
        let mut sc = scheme.chars();
        if !sc.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err("has no valid scheme".to_owned());
        }
        let scheme = scheme.to_ascii_lowercase();
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(bad) = rest.chars().find(|c| matches!(c, '/' | '?' | '#')) {
            return Err(format!(
                "must be an origin without a path, query or fragment (found {bad:?})"
            ));
        }
        if rest.contains('@') {
            return Err("must not contain user info".to_owned());
        }
        let (host, port) = split_host_port(rest)?;
        let host = host.to_ascii_lowercase();
        let port = match (scheme.as_str(), port) {
            ("http", Some(80)) | ("https", Some(443)) => None,
            (_, p) => p,
        };
        Ok(Origin(match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        }))
    }

    /// The serialized form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `host[:port]` → host and port; the host a DNS name, IPv4 or `[IPv6]`.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| "has an unclosed [IPv6] host".to_owned())?;
        let (h, after) = s.split_at(end + 1);
        let inner = &h[1..h.len() - 1];
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        {
            return Err("has an invalid [IPv6] host".to_owned());
        }
        match after {
            "" => (h, None),
            p if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return Err("has text after its [IPv6] host".to_owned()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !host.starts_with('[') {
        let valid = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && !host.ends_with('-')
            && !host.contains("..")
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(if host.is_empty() {
                "has no host".to_owned()
            } else {
                format!("has an invalid host {host:?}")
            });
        }
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0 && !p.starts_with('+') && p.len() <= 5)
                .ok_or_else(|| format!("has an invalid port {p:?}"))?,
        ),
    };
    Ok((host, port))
}

/// `ALLOWED_ORIGINS`, parsed: empty = same origin only, no CORS at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<Origin>);

impl AllowedOrigins {
    /// Parses a comma-separated list; blanks around entries and empty entries
    /// are ignored, so `""` is the empty list. `*` and `null` are refused:
    /// credentials need exact origins.
    pub fn parse(list: &str) -> Result<AllowedOrigins, String> {
        let mut out: Vec<Origin> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" || entry.eq_ignore_ascii_case("null") {
                return Err(format!(
                    "must list exact origins such as https://app.example.com ({entry:?} cannot be used with credentials)"
                ));
            }
            let origin = Origin::parse(entry).map_err(|why| format!("entry {entry:?} {why}"))?;
            if !out.contains(&origin) {
                out.push(origin);
            }
        }
        Ok(AllowedOrigins(out))
    }

    /// From already-parsed origins.
    pub fn new(origins: impl IntoIterator<Item = Origin>) -> AllowedOrigins {
        let mut out: Vec<Origin> = Vec::new();
        for o in origins {
            if !out.contains(&o) {
                out.push(o);
            }
        }
        AllowedOrigins(out)
    }

    /// No origin listed: CORS is off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The listed origins.
    pub fn origins(&self) -> &[Origin] {
        &self.0
    }

    /// Whether a request's `Origin` header names a listed origin.
    pub fn allows(&self, origin: &str) -> bool {
        Origin::parse(origin).is_ok_and(|o| self.0.contains(&o))
    }

    /// What to do with a request on a CORS path carrying `origin`.
    pub fn decide(&self, origin: Option<&str>) -> Decision {
        if self.is_empty() {
            return Decision::Off;
        }
        match origin {
            Some(o) if self.allows(o) => Decision::Allow(o.to_owned()),
            Some(_) => Decision::Refuse,
            None => Decision::NoOrigin,
        }
    }
}

/// The outcome for one request on a CORS path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `ALLOWED_ORIGINS` is empty: no CORS header, preflights unanswered (as in v1.0).
    Off,
    /// No `Origin` header (not a browser's cross-origin call): no CORS header.
    NoOrigin,
    /// A listed origin: the headers of [`Decision::headers`].
    Allow(String),
    /// Not listed: no `Access-Control-*` header; a preflight gets 403.
    Refuse,
}

impl Decision {
    /// Headers for an actual (non-preflight) response.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Decision::Off => Vec::new(),
            Decision::NoOrigin | Decision::Refuse => vec![("Vary", "Origin".to_owned())],
            Decision::Allow(origin) => vec![
                ("Access-Control-Allow-Origin", origin.clone()),
                ("Access-Control-Allow-Credentials", "true".to_owned()),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_owned()),
                ("Vary", "Origin".to_owned()),
            ],
        }
    }

    /// The answer to a preflight: `Some((204, headers))` for a listed origin,
    /// `Some((403, headers))` for any other, `None` when CORS is off.
    pub fn preflight(&self, methods: &str) -> Option<(u16, Vec<(&'static str, String)>)> {
        match self {
            Decision::Off => None,
            Decision::NoOrigin | Decision::Refuse => Some((403, self.headers())),
            Decision::Allow(origin) => Some((
                204,
                vec![
                    ("Access-Control-Allow-Origin", origin.clone()),
                    ("Access-Control-Allow-Credentials", "true".to_owned()),
                    ("Access-Control-Allow-Methods", methods.to_owned()),
                    ("Access-Control-Allow-Headers", ALLOW_HEADERS.to_owned()),
                    ("Access-Control-Max-Age", MAX_AGE_SECS.to_string()),
                    ("Vary", "Origin".to_owned()),
                ],
            )),
        }
    }
}

/// The methods a CORS path serves (for `Access-Control-Allow-Methods`), or
/// `None` when the path is not open to cross-origin calls at all.
pub fn methods_for(path: &str) -> Option<&'static str> {
    if path == "/api/stream" || is_history_path(path) {
        Some("GET")
    } else if relay_protocol::validate::Endpoint::from_path(path).is_some() {
        Some("POST")
    } else {
        None
    }
}

/// `/api/channels/{id}/messages` (and anything else under `/api/channels/`).
fn is_history_path(path: &str) -> bool {
    path.strip_prefix("/api/channels/")
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(s: &str) -> AllowedOrigins {
        AllowedOrigins::parse(s).unwrap()
    }

    #[test]
    fn parses_and_normalizes_origins() {
        for (given, want) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("https://app.example.com/", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("https://app.example.com:80", "https://app.example.com:80"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("capacitor://localhost", "capacitor://localhost"),
        ] {
            assert_eq!(Origin::parse(given).unwrap().as_str(), want, "{given}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for bad in [
            "",
            "app.example.com",
            "https://",
            "https:///x",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://app.example.com#top",
            "https://user@app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.example.com:x",
            "https://app..example.com",
            "https://-app.example.com",
            "https://app example.com",
            "1http://a.com",
            "http://[::1",
            "http://[zz]",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn list_parsing() {
        assert!(list("").is_empty());
        assert!(list(" , ").is_empty());
        let l = list("https://a.example.com, http://localhost:5173,https://a.example.com/");
        assert_eq!(l.origins().len(), 2);
        let e = AllowedOrigins::parse("https://a.example.com,*").unwrap_err();
        assert!(e.contains("exact origins"), "{e}");
        assert!(AllowedOrigins::parse("null").is_err());
        let e = AllowedOrigins::parse("https://a.example.com/app").unwrap_err();
        assert!(
            e.contains("\"https://a.example.com/app\"") && e.contains("path"),
            "{e}"
        );
    }

    #[test]
    fn decisions_and_headers() {
        let off = AllowedOrigins::default();
        assert_eq!(off.decide(Some("https://a.example.com")), Decision::Off);
        assert!(Decision::Off.headers().is_empty());
        assert_eq!(Decision::Off.preflight("POST"), None);

        let l = list("https://a.example.com");
        let allow = l.decide(Some("https://a.example.com"));
        assert_eq!(allow, Decision::Allow("https://a.example.com".into()));
        let h = allow.headers();
        assert!(h.contains(&(
            "Access-Control-Allow-Origin",
            "https://a.example.com".into()
        )));
        assert!(h.contains(&("Access-Control-Allow-Credentials", "true".into())));
        assert!(h.contains(&("Vary", "Origin".into())));
        let (status, pre) = allow.preflight("POST").unwrap();
        assert_eq!(status, 204);
        assert!(pre.contains(&("Access-Control-Allow-Methods", "POST".into())));
        assert!(pre.contains(&("Access-Control-Allow-Headers", ALLOW_HEADERS.into())));

        let refuse = l.decide(Some("https://evil.example.com"));
        assert_eq!(refuse, Decision::Refuse);
        assert!(refuse
            .headers()
            .iter()
            .all(|(n, _)| !n.starts_with("Access-Control-")));
        assert_eq!(refuse.preflight("POST").unwrap().0, 403);
        assert_eq!(l.decide(None), Decision::NoOrigin);
        assert_eq!(l.decide(Some("null")), Decision::Refuse);
    }

    #[test]
    fn cors_paths() {
        assert_eq!(methods_for("/api/stream"), Some("GET"));
        assert_eq!(methods_for("/api/channels/123/messages"), Some("GET"));
        assert_eq!(methods_for("/api/send-message"), Some("POST"));
        assert_eq!(methods_for("/api/voice/move-member"), Some("POST"));
        for p in [
            "/",
            "/metrics",
            "/auth/logout",
            "/api/channels/",
            "/api/demo/session",
            "/client/relay.js",
        ] {
            assert_eq!(methods_for(p), None, "{p}");
        }
    }

    fn host() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A parsed origin parses to itself, and case or a default port never matter.
        #[test]
        fn normal_form_is_stable(tls in any::<bool>(), h in host(), port in proptest::option::of(1u16..)) {
            let scheme = if tls { "https" } else { "http" };
            let s = match port { Some(p) => format!("{scheme}://{h}:{p}"), None => format!("{scheme}://{h}") };
            let o = Origin::parse(&s).unwrap();
            prop_assert_eq!(Origin::parse(o.as_str()).unwrap(), o.clone());
            prop_assert_eq!(Origin::parse(&s.to_ascii_uppercase()).unwrap(), o.clone());
            let default = if tls { 443 } else { 80 };
            prop_assert_eq!(Origin::parse(&format!("{scheme}://{h}:{default}")).unwrap(), Origin::parse(&format!("{scheme}://{h}")).unwrap());
        }

        /// A listed origin is allowed and echoed exactly as sent; an origin that
        /// differs in scheme, host or port is refused, and gets no Access-Control header.
        #[test]
        fn only_listed_origins_are_allowed(a in host(), b in host(), pa in 1u16.., pb in 1u16.., tls in any::<bool>()) {
            let scheme = if tls { "https" } else { "http" };
            let listed = format!("{scheme}://{a}:{pa}");
            let l = AllowedOrigins::parse(&format!(" {listed} , https://other.example")).unwrap();
            let sent = Origin::parse(&listed).unwrap().as_str().to_owned();
            prop_assert_eq!(l.decide(Some(&sent)), Decision::Allow(sent.clone()));
            let other = format!("{scheme}://{b}:{pb}");
            let expect_allowed = Origin::parse(&other).unwrap() == Origin::parse(&listed).unwrap();
            let d = l.decide(Some(&other));
            prop_assert_eq!(matches!(d, Decision::Allow(_)), expect_allowed);
            let flipped = format!("{}://{a}:{pa}", if tls { "http" } else { "https" });
            let d = l.decide(Some(&flipped));
            prop_assert!(d.headers().iter().all(|(n, _)| !n.starts_with("Access-Control-")));
            prop_assert_eq!(d.preflight("GET").unwrap().0, 403);
        }

        /// Whatever the header, an empty list never produces a CORS header.
        #[test]
        fn empty_list_is_silent(origin in ".{0,60}") {
            let d = AllowedOrigins::default().decide(Some(&origin));
            prop_assert!(d.headers().is_empty());
            prop_assert!(d.preflight("POST").is_none());
        }

        /// Parsing never panics, and anything with a path after the host is refused.
        #[test]
        fn parse_total(s in ".{0,80}", h in host(), path in "/[a-z]{1,8}") {
            let _ = Origin::parse(&s);
            let _ = AllowedOrigins::parse(&s);
            let with_path = format!("https://{h}{path}");
            prop_assert!(Origin::parse(&with_path).is_err());
        }
    }
}
