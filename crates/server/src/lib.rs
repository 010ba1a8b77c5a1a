//! Ferry's server: the SSH layer (russh), authentication and the SFTP
//! session.
//!
//! # Layout
//! - [`sftp`]: the SFTP session over any byte transport: framing, dispatch,
//!   handle table and one function per operation.
//! - [`ssh`]: the russh server: accept loop, per-connection handler,
//!   channels and subsystems.
//! - [`algorithms`]: the SSH algorithms offered and the flags that change
//!   them.
//! - [`auth`]: password and public-key checks, authorized_keys parsing.
//! - [`exec`]: the exec commands rclone's client runs (hashes, `df`).
//! - [`hostkeys`]: loading and generating host keys.
//! - [`login`]: the login seam: [`login::Authenticator`], what a login
//!   gets ([`login::Login`]), and the pool of live VFSes.
//! - [`proxy`]: the auth proxy, an [`login::Authenticator`] that asks an
//!   external program or HTTP service which remote each login gets.

pub mod algorithms;
pub mod auth;
pub mod exec;
pub mod hostkeys;
pub mod login;
pub mod proxy;
pub mod sftp;
pub mod ssh;
