//! Session inputs: JWT verification (any token, any claims or header of a
//! signed one), base64url, and finding the token in Authorization / Cookie /
//! query. Never a panic, and no error can carry the token.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::auth::fuzz_session(data));
