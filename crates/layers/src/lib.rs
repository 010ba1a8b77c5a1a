//! Cross-cutting layers that wrap any [`Backend`] and are one themselves.
//!
//! # Layout
//! - [`retry`]: [`Retry`], low-level retries of temporary failures with
//!   capped exponential backoff (`--low-level-retries`).
//!
//! Timeouts, bandwidth limits and metrics will be further layers here; the
//! CLI stacks them around the backend it builds.

#![forbid(unsafe_code)]

pub mod retry;

pub use ferry_backend::Backend;
pub use retry::{Retry, RetryOptions};
