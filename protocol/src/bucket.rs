//! TODO: bucket
