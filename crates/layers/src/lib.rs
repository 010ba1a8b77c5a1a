//! Cross-cutting layers that wrap any [`Backend`] and are one themselves.
//!
//! # Layout
//! - [`bwlimit`]: [`BwLimit`], file data through token buckets
//!   (`--bwlimit`, `--bwlimit-file`, timetables, SIGUSR2).
//! - [`faults`]: [`Faults`], requests that fail, lose their answer, are
//!   slow or break mid-stream at a chosen rate (tests only; a hidden flag).
//! - [`latency`]: [`Latency`], a fixed delay before every request, to test
//!   and benchmark against a slow store (tests only; a hidden CLI flag).
//! - [`retry`]: [`Retry`], low-level retries of temporary failures with
//!   capped exponential backoff (`--low-level-retries`).
//!
//! Each is a [`ferry_backend::Layer`]: it writes only what it changes and
//! everything else passes through. Timeouts and metrics will be further
//! layers here; the backend registry stacks them around
//! every backend it builds.

#![forbid(unsafe_code)]

pub mod bwlimit;
pub mod faults;
pub mod latency;
pub mod metrics;
pub mod retry;

pub use bwlimit::{BwLimit, BwLimiter, Rates, Timetable};
pub use faults::{FaultOptions, Faults};
pub use ferry_backend::Backend;
pub use latency::Latency;
pub use metrics::Measured;
pub use retry::{Retry, RetryOptions};

#[cfg(test)]
mod forwarding_tests;
