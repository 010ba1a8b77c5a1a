//! Ferry's server: the SSH layer (russh), authentication and the SFTP
//! session.
//!
//! # Layout
//! - [`sftp`]: the SFTP session over any byte transport: framing, dispatch,
//!   handle table and one function per operation.
//! - [`ssh`]: the russh server: accept loop, per-connection handler,
//!   channels and subsystems.
//! - [`activity`]: what keeps a connection from being idle.
//! - [`algorithms`]: the SSH algorithms offered and the flags that change
//!   them.
//! - [`auth`]: password and public-key checks, authorized_keys parsing.
//! - [`control`]: the live sessions and host keys, for the remote-control
//!   API.
//! - [`counts`]: counts per key against a limit (connections and open
//!   files per user).
//! - [`exec`]: the exec commands rclone's client runs (hashes, `df`).
//! - [`gate`]: which connections are let in at accept (total and
//!   unauthenticated limits, per source block).
//! - [`hostkeys`]: loading and generating host keys.
//! - [`login`]: the login seam: [`login::Authenticator`], what a login
//!   gets ([`login::Login`]), and the pool of live VFSes.
//! - [`penalty`]: per-source penalties for failed logins and idle
//!   connections.
//! - [`proxied`]: connections from a trusted load balancer, whose PROXY
//!   protocol header gives the client's address.
//! - [`proxy`]: the auth proxy, an [`login::Authenticator`] that asks an
//!   external program or HTTP service which remote each login gets.

pub mod access;
pub mod activity;
pub mod algorithms;
pub mod auth;
pub mod control;
pub mod counts;
pub mod exec;
pub mod gate;
pub mod hostkeys;
pub mod login;
pub mod penalty;
pub mod proxied;
pub mod proxy;
pub mod sftp;
pub mod ssh;
