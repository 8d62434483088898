//! TODO: discord::dispatch
