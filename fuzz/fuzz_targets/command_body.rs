//! Browser command bodies for all five endpoints: issues or a command, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::validate::fuzz_validate(data));
