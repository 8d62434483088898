//! The demo page and the browser client, embedded in the binary so `relay` needs
//! no files and no CDN at run time (CONTRACT.md §1 `relay demo`).

use tiny_http::Header;

use super::http::{content_type, Reply};

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
        Reply::from_data(body.as_bytes().to_vec())
            .with_header(content_type(kind))
            .with_header(Header::from_bytes("Cache-Control", "no-cache").expect("static header"))
            .with_header(
                Header::from_bytes("X-Content-Type-Options", "nosniff").expect("static header"),
            ),
    )
}
