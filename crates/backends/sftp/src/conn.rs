//! One SSH connection: TCP connect, host key check, authentication, the
//! SFTP session, and exec channels for the hash commands.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, MethodKind};
use tokio::sync::Semaphore;

use crate::known_hosts::{host_port, KnownHosts, Verdict};
use crate::session::{Session, SftpErr};
use crate::SftpConfig;

/// Exec channels (hash commands) open at once per connection. OpenSSH
/// allows 10 sessions per connection (`MaxSessions`); one is the SFTP
/// session.
const EXEC_SLOTS: usize = 4;

/// Largest output kept from a hash command.
const MAX_EXEC_OUTPUT: usize = 64 * 1024;

/// Why a connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Network trouble, a dropped connection or a timeout: try again later.
    Temporary(String),
    /// The host key was refused.
    HostKey(String),
    /// The server refused every credential we have.
    Auth(String),
    /// The configuration is unusable (a bad key file, say).
    Config(String),
    /// Anything else (no common algorithm, no sftp subsystem...).
    Other(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Temporary(s)
            | ConnectError::HostKey(s)
            | ConnectError::Auth(s)
            | ConnectError::Config(s)
            | ConnectError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ConnectError {}

/// russh's handler: only the host key check matters to us.
struct Client {
    host: String,
    port: u16,
    known: Option<(Arc<KnownHosts>, String)>,
    /// Why the host key was refused, for a clear error.
    refused: Arc<Mutex<Option<String>>>,
}

impl Client {
    fn verdict(&self, server: &PublicKeyOrCertificate) -> Result<(), String> {
        let name = host_port(&self.host, self.port);
        let key = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) if self.known.is_none() => {
                tracing::debug!("accepting the host certificate of {name}: no known_hosts_file");
                return Ok(());
            }
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(format!(
                    "{name} presented a host certificate; only plain host keys can be \
                     checked against known_hosts_file"
                ))
            }
        };
        let fp = key.fingerprint(HashAlg::Sha256);
        let alg = key.algorithm();
        let Some((known, file)) = &self.known else {
            tracing::debug!(
                "accepting the {alg} host key {fp} of {name} unchecked (no known_hosts_file)"
            );
            return Ok(());
        };
        match known.check(&self.host, self.port, key) {
            Verdict::Known => Ok(()),
            Verdict::Mismatch => Err(format!(
                "host key mismatch for {name}: the server's {alg} key {fp} is not the key \
                 recorded in {file} (someone may be intercepting the connection, or the \
                 host key has changed); refusing to connect"
            )),
            Verdict::Unknown => Err(format!(
                "host key of {name} ({alg} {fp}) is not in {file}; refusing to connect"
            )),
            Verdict::Revoked => Err(format!(
                "host key of {name} ({alg} {fp}) is marked @revoked in {file}; refusing to connect"
            )),
        }
    }
}

/// The handler's error: russh's, or our host key refusal.
#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(String),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.verdict(server_public_key) {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
                Err(HandlerError::HostKey(why))
            }
        }
    }
}

/// A live SSH connection with its SFTP session.
pub(crate) struct Conn {
    ssh: client::Handle<Client>,
    /// The SFTP session.
    pub sftp: Session,
    exec_slots: Semaphore,
}

/// The output of a remote command.
pub(crate) struct ExecOutput {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
}

fn ssh_err(e: russh::Error) -> ConnectError {
    use russh::Error as E;
    match e {
        E::IO(_)
        | E::HUP
        | E::Disconnect
        | E::ConnectionTimeout
        | E::KeepaliveTimeout
        | E::InactivityTimeout
        | E::SendError
        | E::RecvError
        | E::Elapsed(_) => ConnectError::Temporary(format!("SSH connection failed: {e}")),
        other => ConnectError::Other(format!("SSH handshake failed: {other}")),
    }
}

/// The private key from `key_pem` or `key_file`, if either is set.
pub(crate) fn load_key(cfg: &SftpConfig) -> Result<Option<PrivateKey>, ConnectError> {
    let pass = cfg.key_file_pass.as_deref().filter(|p| !p.is_empty());
    let decode = |text: &str, from: &str| {
        ferry_sshkey::decode_private_key(text, pass).map_err(|e| {
            let hint = if pass.is_none() {
                " (is it encrypted? set key_file_pass)"
            } else {
                " (wrong key_file_pass?)"
            };
            ConnectError::Config(format!(
                "cannot load the private key from {from}: {e}{hint}"
            ))
        })
    };
    if let Some(pem) = cfg.key_pem.as_deref().filter(|p| !p.trim().is_empty()) {
        // rclone's config keeps the PEM on one line with `\n` for newlines.
        let pem = if pem.contains('\n') {
            pem.to_string()
        } else {
            pem.replace("\\n", "\n")
        };
        return decode(&pem, "key_pem").map(Some);
    }
    if let Some(path) = &cfg.key_file {
        let path = expand_home(path);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConnectError::Config(format!("cannot read key_file {}: {e}", path.display()))
        })?;
        return decode(&text, &format!("key_file {}", path.display())).map(Some);
    }
    Ok(None)
}

/// `~/x` to `$HOME/x`, as rclone does for key_file and known_hosts_file.
pub(crate) fn expand_home(path: &std::path::Path) -> std::path::PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

impl Conn {
    /// Connect, check the host key, log in and start SFTP.
    pub(crate) async fn open(
        cfg: &SftpConfig,
        key: Option<&Arc<PrivateKey>>,
        known: Option<&(Arc<KnownHosts>, String)>,
    ) -> Result<Conn, ConnectError> {
        let addr = host_port(&cfg.host, cfg.port);
        let timeout = cfg.connect_timeout;
        let work = async {
            let ssh = handshake(cfg, known).await?;
            let ssh = authenticate(ssh, cfg, key).await?;
            let channel = ssh.channel_open_session().await.map_err(ssh_err)?;
            let sftp = Session::start(channel, cfg.concurrency)
                .await
                .map_err(|e| match e {
                    SftpErr::Lost(why) => ConnectError::Temporary(format!(
                        "the SFTP session on {addr} could not start: {why}"
                    )),
                    e => ConnectError::Other(format!(
                        "the SFTP session on {addr} could not start: {e}"
                    )),
                })?;
            Ok(Conn {
                ssh,
                sftp,
                exec_slots: Semaphore::new(EXEC_SLOTS),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Temporary(format!(
                "timed out after {timeout:?} connecting to {addr}"
            ))),
        }
    }

    /// Is the connection still usable?
    pub(crate) fn is_alive(&self) -> bool {
        !self.sftp.is_closed() && !self.ssh.is_closed()
    }

    /// Run `command` on a new exec channel and collect its standard
    /// output and exit status.
    pub(crate) async fn exec(&self, command: Vec<u8>) -> Result<ExecOutput, String> {
        let _slot = self.exec_slots.acquire().await.map_err(|e| e.to_string())?;
        let mut ch = self
            .ssh
            .channel_open_session()
            .await
            .map_err(|e| format!("cannot open an exec channel: {e}"))?;
        ch.exec(true, command)
            .await
            .map_err(|e| format!("exec request failed: {e}"))?;
        // No input: a server that runs something else than asked (a forced
        // `internal-sftp`, say) sees end of file instead of waiting.
        let _ = ch.eof().await;
        let mut out = ExecOutput {
            status: None,
            stdout: Vec::new(),
        };
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Failure => return Err("the server refused to run commands".into()),
                ChannelMsg::Data { data } => {
                    if out.stdout.len() + data.len() > MAX_EXEC_OUTPUT {
                        return Err("command output too long".into());
                    }
                    out.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    tracing::debug!("remote command stderr: {}", data.escape_ascii());
                }
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The session task ends once the handle and every channel are
        // gone; say goodbye first when we can.
        self.sftp.close("connection dropped");
    }
}

async fn handshake(
    cfg: &SftpConfig,
    known: Option<&(Arc<KnownHosts>, String)>,
) -> Result<client::Handle<Client>, ConnectError> {
    let addr = host_port(&cfg.host, cfg.port);
    let mut config = client::Config {
        // Room for many large reads in flight.
        window_size: 16 << 20,
        maximum_packet_size: 32 * 1024,
        channel_buffer_size: 256,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    // As OpenSSH does: ask for the kinds of host key the known_hosts file
    // has for this host, so the check compares like with like.
    if let Some((hosts, _)) = known {
        let algs = hosts.algorithms_for(&cfg.host, cfg.port);
        if !algs.is_empty() {
            config.preferred.key = std::borrow::Cow::Owned(algs);
        }
    }
    let config = Arc::new(config);
    let refused = Arc::new(Mutex::new(None));
    let handler = Client {
        host: cfg.host.clone(),
        port: cfg.port,
        known: known.cloned(),
        refused: refused.clone(),
    };
    let stream = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|e| ConnectError::Temporary(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    match client::connect_stream(config, stream, handler).await {
        Ok(h) => Ok(h),
        Err(e) => {
            if let Some(why) = refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                return Err(ConnectError::HostKey(why));
            }
            Err(match e {
                HandlerError::HostKey(why) => ConnectError::HostKey(why),
                HandlerError::Ssh(e) => ssh_err(e),
            })
        }
    }
}

async fn authenticate(
    mut ssh: client::Handle<Client>,
    cfg: &SftpConfig,
    key: Option<&Arc<PrivateKey>>,
) -> Result<client::Handle<Client>, ConnectError> {
    let user = cfg.user.as_str();
    let mut tried = Vec::new();
    if let Some(key) = key {
        tried.push("publickey");
        let hash = if key.algorithm().is_rsa() {
            ssh.best_supported_rsa_hash()
                .await
                .map_err(ssh_err)?
                .flatten()
                .or(Some(HashAlg::Sha256))
        } else {
            None
        };
        let r = ssh
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
            .await
            .map_err(ssh_err)?;
        if r.success() {
            return Ok(ssh);
        }
    }
    if let Some(pass) = &cfg.password {
        tried.push("password");
        let r = ssh
            .authenticate_password(user, pass.as_str())
            .await
            .map_err(ssh_err)?;
        let remaining = match r {
            AuthResult::Success => return Ok(ssh),
            AuthResult::Failure {
                remaining_methods, ..
            } => remaining_methods,
        };
        // Servers that ask for the password through keyboard-interactive
        // (PAM): answer every prompt with it, as rclone does.
        if remaining.contains(&MethodKind::KeyboardInteractive) {
            tried.push("keyboard-interactive");
            let mut r = ssh
                .authenticate_keyboard_interactive_start(user, None)
                .await
                .map_err(ssh_err)?;
            for _ in 0..5 {
                match r {
                    KeyboardInteractiveAuthResponse::Success => return Ok(ssh),
                    KeyboardInteractiveAuthResponse::Failure { .. } => break,
                    KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                        let answers = prompts.iter().map(|_| pass.clone()).collect();
                        r = ssh
                            .authenticate_keyboard_interactive_respond(answers)
                            .await
                            .map_err(ssh_err)?;
                    }
                }
            }
        }
    }
    if tried.is_empty() {
        tried.push("none");
        if ssh
            .authenticate_none(user)
            .await
            .map_err(ssh_err)?
            .success()
        {
            return Ok(ssh);
        }
        return Err(ConnectError::Auth(format!(
            "SSH login as {user:?} to {} refused: no key_file, key_pem or pass is configured",
            host_port(&cfg.host, cfg.port)
        )));
    }
    Err(ConnectError::Auth(format!(
        "SSH authentication failed: {} refused user {user:?} (tried {})",
        host_port(&cfg.host, cfg.port),
        tried.join(", ")
    )))
}
