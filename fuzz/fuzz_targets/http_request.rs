//! The edge's HTTP/1.1 request head parser and body decoder (chunked and
//! Content-Length): never a panic, limits hold, any split decodes the same.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_runtime::http_server::fuzz_http_request(data));
