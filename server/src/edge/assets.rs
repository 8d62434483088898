//! The demo page and the browser client, embedded in the binary so `relay` needs
//! no files and no CDN at run time (CONTRACT.md §1 `relay demo`).

use super::http::Reply;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
const RELAY_JS: &str = include_str!("../../assets/relay.js");

/// The asset at `path`, if there is one.
pub fn get(path: &str) -> Option<Reply> {
    let (body, kind) = match path {
        "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/assets/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/assets/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "/client/relay.js" => (RELAY_JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(
        Reply::new(200)
            .header("Content-Type", kind)
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff")
            .body(body.as_bytes()),
    )
}
