//! Every config value parser (the first byte picks one): one line naming the
//! setting, values in range, and no secret in any error.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::config::fuzz_config(data));
