//! TODO: discord::voice_cache
