//! Sign in with Discord's readers of outside bytes: Discord's token and
//! /users/@me answers, callback queries with pending cookies, and `next`.
//! Never a panic; a token never printable; a refused state never decided twice.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::oauth::fuzz_oauth_answer(data));
