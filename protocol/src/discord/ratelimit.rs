//! TODO: discord::ratelimit
