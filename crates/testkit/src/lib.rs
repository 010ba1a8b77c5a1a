//! Ferry's test kit: one backend conformance suite, and the real servers
//! it (and other tests) run against.
//!
//! # Layout
//! - [`conformance`]: the suite ([`conformance::run`]) and the helpers it
//!   is written with (`put`, `get`, `p`).
//! - [`servers`]: a private sshd, Garage (S3) and `rclone serve webdav` on
//!   127.0.0.1, and the rule for missing tools (skip, or fail under CI).
//!
//! `tests/conformance.rs` runs the suite on every backend, bare and inside
//! the registry's layer stack.

pub mod conformance;
pub mod servers;
