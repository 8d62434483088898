//! TODO: frame
