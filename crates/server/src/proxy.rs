//! The auth proxy: an external program or an HTTP service decides, per
//! login, whether the credentials are good and which remote the login is
//! served.
//!
//! # The contract (rclone's, so its proxy programs work unchanged)
//! The proxy gets a JSON object (`user` with `pass` or `public_key`, the
//! base64 of the key's wire blob, and `client_ip`) on stdin, or as the body
//! of a POST for `http://`/`https://` proxies. It answers with a JSON
//! object of strings: `type` and `_root` (required), `_obscure` (keys whose
//! values come in plain where a config file would keep them obscured),
//! Ferry's policy keys (`_read_only`, `_max_connections`), and backend
//! options by rclone's names. A program refuses with a non-zero exit; a service with 401 or
//! 403. Anything else that is not such an answer refuses the login too,
//! with the reason in the log and never to the client.
//!
//! # The cache
//! An answer is kept for a cache time (5 minutes) after its last use,
//! keyed by a keyed hash (HMAC-SHA256 under a key drawn at start) of the
//! kind of credential, the user, the credential and the client address.
//! A second key, a second password or a changed password is a new key and
//! asks the proxy at once; a password never matches an answer given for a
//! public key, whatever its bytes. A refusal is never kept, and every
//! call replaces what was kept of its user (an acceptance keeps only its
//! own answer, a refusal drops them all), so a user the proxy now refuses,
//! or whose password changed, is refused from the next call about them on.
//! [`ProxyAuthenticator::forget`] (SIGHUP) drops them all.
//!
//! # Bounds
//! At most [`ProxyOptions::max_calls`] calls run at once, at most
//! [`ProxyOptions::max_waiting`] wait for a turn (more are refused at
//! once), logins with the same credentials from one address share one
//! call, a call that outlasts [`ProxyOptions::timeout`] is killed, and at
//! most [`ProxyOptions::max_output`] bytes of an answer are read.
//!
//! What an answer means as a backend is not this module's business: the
//! caller's resolver turns a [`ProxyAnswer`] into the key of a VFS in the
//! [`VfsPool`], so only the CLI and the registry name backends.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use russh::keys::PublicKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::login::{Authenticator, Credential, Login, Methods, Policy, PoolKey, Refusal, VfsPool};

/// Where the proxy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyCommand {
    /// A program and its arguments, run directly (no shell).
    Program(Vec<String>),
    /// An HTTP(S) service the request is POSTed to.
    Http(String),
}

impl ProxyCommand {
    /// `--auth-proxy`'s value: a URL, or a command line split on
    /// whitespace.
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        if v.starts_with("http://") || v.starts_with("https://") {
            if v.split_whitespace().count() != 1 {
                return Err(format!("--auth-proxy {value:?}: a URL takes no arguments"));
            }
            return Ok(ProxyCommand::Http(v.to_string()));
        }
        let words: Vec<String> = v.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return Err("--auth-proxy is empty: give a program or an http(s):// URL".into());
        }
        Ok(ProxyCommand::Program(words))
    }
}

/// How the proxy is asked.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The program or service.
    pub command: ProxyCommand,
    /// A call that takes longer is killed (or abandoned) and the login
    /// refused.
    pub timeout: Duration,
    /// How long an answer is kept after its last use.
    pub cache_time: Duration,
    /// Calls running at once.
    pub max_calls: usize,
    /// Logins waiting for a call slot; more are refused at once.
    pub max_waiting: usize,
    /// The most bytes of an answer read.
    pub max_output: usize,
}

impl ProxyOptions {
    /// The defaults for `command`.
    pub fn new(command: ProxyCommand) -> Self {
        ProxyOptions {
            command,
            timeout: Duration::from_secs(30),
            cache_time: Duration::from_secs(300),
            max_calls: 8,
            max_waiting: 256,
            max_output: 64 * 1024,
        }
    }
}

/// A proxy's answer, checked: what a resolver turns into a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAnswer {
    /// The backend type (`type`).
    pub type_: String,
    /// The path inside the remote (`_root`).
    pub root: String,
    /// Backend options by rclone's names, as the proxy gave them.
    pub options: BTreeMap<String, String>,
    /// Options listed in `_obscure`: given in plain, where a config file
    /// would keep them obscured.
    pub plain: Vec<String>,
    /// The login's policy keys (`_read_only`, `_max_connections`,
    /// `_bwlimit`).
    pub policy: Policy,
}

/// The policy keys an answer may carry (besides `_root` and `_obscure`).
pub const POLICY_KEYS: &[&str] = &["_read_only", "_max_connections", "_bwlimit"];

/// Check an answer's text: a JSON object of strings with `type` and
/// `_root`.
pub fn parse_answer(text: &[u8]) -> Result<ProxyAnswer, String> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("the answer is not a JSON object".into());
    };
    let mut strings = BTreeMap::new();
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) => {
                strings.insert(k, s);
            }
            other => {
                let kind = match other {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::Object(_) => "an object",
                    serde_json::Value::String(_) => "a string",
                };
                return Err(format!(
                    "the value of {k:?} is {kind}; every value must be a string"
                ));
            }
        }
    }
    let type_ = strings
        .remove("type")
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no \"type\"")?;
    let root = strings
        .remove("_root")
        .ok_or("the answer has no \"_root\"")?;
    let plain: Vec<String> = strings
        .remove("_obscure")
        .map(|list| {
            list.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut policy = Policy::default();
    if let Some(v) = strings.remove("_read_only") {
        policy.read_only = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            _ => {
                return Err(format!(
                    "\"_read_only\" is {v:?}; want \"true\" or \"false\""
                ))
            }
        };
    }
    if let Some(v) = strings.remove("_max_connections") {
        policy.max_connections = Some(v.trim().parse().map_err(|_| {
            format!("\"_max_connections\" is {v:?}; want a whole number (0: no limit)")
        })?);
    }
    if let Some(v) = strings.remove("_bwlimit") {
        let rates =
            ferry_layers::Rates::parse(&v).map_err(|e| format!("\"_bwlimit\" is {v:?}: {e}"))?;
        policy.bwlimit = rates.is_set().then_some(rates);
    }
    if let Some(k) = strings.keys().find(|k| k.starts_with('_')) {
        return Err(format!(
            "unknown key {k:?} (the keys starting with _ are _root, _obscure and {})",
            POLICY_KEYS.join(", ")
        ));
    }
    for k in &plain {
        if !strings.contains_key(k) {
            return Err(format!(
                "\"_obscure\" names {k:?}, which the answer does not give"
            ));
        }
    }
    Ok(ProxyAnswer {
        type_,
        root,
        options: strings,
        plain,
        policy,
    })
}

/// What a proxy call came to.
#[derive(Debug)]
enum Outcome {
    /// The proxy accepted: its answer.
    Answer(Vec<u8>),
    /// The proxy refused (non-zero exit, 401/403), with what it said.
    Refused(String),
    /// The proxy failed: the reason.
    Failed(String),
}

/// The request sent: rclone's shape (sorted keys, tab indents).
fn request_json(user: &str, credential: &Credential<'_>, ip: Option<IpAddr>) -> Vec<u8> {
    let mut m = BTreeMap::new();
    m.insert("user", user.to_string());
    match credential {
        Credential::Password(p) => {
            m.insert("pass", p.to_string());
        }
        Credential::PublicKey(k) => {
            m.insert("public_key", public_key_base64(k));
        }
        Credential::None => {}
    }
    if let Some(ip) = ip {
        m.insert("client_ip", ip.to_string());
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(&m, &mut ser).expect("a map of strings serializes");
    out.push(b'\n');
    out
}

/// The base64 of a key's SSH wire blob, as rclone sends it.
fn public_key_base64(k: &PublicKey) -> String {
    let openssh = k.to_openssh().unwrap_or_default();
    openssh.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// The client's address as rclone sends it: IPv4-mapped IPv6 unmapped.
fn client_ip(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Read at most `limit` bytes; `Err` if there is more.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    limit: usize,
) -> std::io::Result<Result<Vec<u8>, ()>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(Ok(out));
        }
        if out.len() + n > limit {
            return Ok(Err(()));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Keep the first `keep` bytes of a stream and discard the rest, so a
/// chatty program never blocks on a full pipe.
async fn drain_keeping<R: tokio::io::AsyncRead + Unpin>(mut r: R, keep: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = keep.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    out
}

/// What a program said on stderr (or a service in its body), for the
/// log: one line.
fn said(bytes: &[u8], nothing: &str) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        nothing.into()
    } else {
        text.lines().collect::<Vec<_>>().join(" | ")
    }
}

/// Kills a proxy's process group unless disarmed (set to `None` once the
/// program is reaped): a call abandoned for a timeout or too much output
/// leaves nothing running.
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let Some(pid) = self
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        else {
            return;
        };
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

async fn call_program(argv: &[String], input: &[u8], max_output: usize) -> Outcome {
    let mut child = match tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: what it starts is killed with it.
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot run {}: {e}", argv[0])),
    };
    let mut group = GroupKiller(child.id());
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let feed = async move {
        // A program that does not read its input is its business.
        let _ = stdin.write_all(input).await;
        drop(stdin);
    };
    let ((), out, err) = tokio::join!(
        feed,
        read_bounded(stdout, max_output),
        drain_keeping(stderr, 2048)
    );
    let out = match out {
        Ok(Ok(o)) => o,
        Ok(Err(())) => {
            return Outcome::Failed(format!("it wrote more than {max_output} bytes"));
        }
        Err(e) => return Outcome::Failed(format!("cannot read its answer: {e}")),
    };
    let status = match child.wait().await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("cannot wait for it: {e}")),
    };
    // Reaped: its group id may be reused from now on.
    group.0 = None;
    if status.success() {
        return Outcome::Answer(out);
    }
    match status.code() {
        Some(code) => Outcome::Refused(format!(
            "exit status {code}: {}",
            said(&err, "nothing on stderr")
        )),
        None => Outcome::Failed(format!(
            "it was killed ({status}): {}",
            said(&err, "nothing on stderr")
        )),
    }
}

async fn call_http(
    client: &reqwest::Client,
    url: &str,
    input: Vec<u8>,
    max_output: usize,
) -> Outcome {
    let resp = match client
        .post(url)
        .header("content-type", "application/json")
        .body(input)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("POST {url}: {}", with_causes(&e))),
    };
    let status = resp.status();
    let mut resp = resp;
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > max_output {
                    return Outcome::Failed(format!("its answer is over {max_output} bytes"));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => return Outcome::Failed(format!("reading its answer: {e}")),
        }
    }
    match status.as_u16() {
        200 => Outcome::Answer(body),
        401 | 403 => Outcome::Refused(format!("HTTP {status}")),
        _ => Outcome::Failed(format!(
            "HTTP {status}: {}",
            said(&body[..body.len().min(512)], "no body")
        )),
    }
}

/// An error and what caused it (reqwest says "error sending request" and
/// keeps the reason, such as a certificate problem, in its sources).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A cache key: the keyed hash of a credential.
type CacheKey = [u8; 32];

/// A kept answer.
struct Entry<K> {
    user: String,
    key: K,
    describe: String,
    policy: Policy,
    last_used: Instant,
}

type Resolver<K> = dyn Fn(&ProxyAnswer) -> Result<(K, String), String> + Send + Sync;

/// Logins decided by an auth proxy, each served the VFS its answer names.
pub struct ProxyAuthenticator<K> {
    opts: ProxyOptions,
    pool: VfsPool<K>,
    resolve: Box<Resolver<K>>,
    secret: [u8; 32],
    cache: Mutex<HashMap<CacheKey, Entry<K>>>,
    /// One call per credential at a time: later logins wait for it.
    inflight: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
    slots: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    http: Option<reqwest::Client>,
    calls: AtomicUsize,
    metrics: Option<Arc<ferry_metrics::Metrics>>,
}

/// What a lookup found.
struct Resolved<K> {
    key: K,
    describe: String,
    policy: Policy,
}

impl<K: PoolKey> ProxyAuthenticator<K> {
    /// Logins asked of the proxy in `opts`; `resolve` turns an answer into
    /// the key of its VFS in `pool` and a description for logs (secrets
    /// redacted), or says why the answer cannot be served.
    pub fn new<F>(opts: ProxyOptions, pool: VfsPool<K>, resolve: F) -> Result<Self, String>
    where
        F: Fn(&ProxyAnswer) -> Result<(K, String), String> + Send + Sync + 'static,
    {
        let http = match &opts.command {
            ProxyCommand::Http(_) => Some(
                // The whole call is bounded by `timeout` around it.
                reqwest::Client::builder()
                    .connect_timeout(opts.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot set up the HTTP client: {e}"))?,
            ),
            ProxyCommand::Program(_) => None,
        };
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Ok(ProxyAuthenticator {
            slots: tokio::sync::Semaphore::new(opts.max_calls.max(1)),
            opts,
            pool,
            resolve: Box::new(resolve),
            secret,
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            http,
            calls: AtomicUsize::new(0),
            metrics: None,
        })
    }

    /// Count the proxy's calls, by result, and their latency in `m`.
    pub fn with_metrics(mut self, m: Option<Arc<ferry_metrics::Metrics>>) -> Self {
        self.metrics = m;
        self
    }

    fn count(&self, result: &'static str, took: Option<Duration>) {
        if let Some(m) = &self.metrics {
            m.proxy_call(result, took);
        }
    }

    /// Drop every kept answer (SIGHUP).
    pub fn forget_answers(&self) {
        self.cache_lock().clear();
    }

    /// How many times the proxy has been asked.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry<K>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache_key(&self, user: &str, credential: &Credential<'_>, ip: IpAddr) -> CacheKey {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
            .expect("HMAC takes any key length");
        // Each field length-prefixed: no two different inputs feed the
        // same bytes.
        let mut field = |b: &[u8]| {
            mac.update(&(b.len() as u64).to_be_bytes());
            mac.update(b);
        };
        match credential {
            Credential::Password(p) => {
                field(b"password");
                field(user.as_bytes());
                field(p.as_bytes());
            }
            Credential::PublicKey(k) => {
                field(b"publickey");
                field(user.as_bytes());
                field(public_key_base64(k).as_bytes());
            }
            Credential::None => field(b"none"),
        }
        field(ip.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The kept answer for `ck`, if fresh (its use counts).
    fn cached(&self, ck: &CacheKey) -> Option<Resolved<K>> {
        let mut cache = self.cache_lock();
        let now = Instant::now();
        let entry = cache.get_mut(ck)?;
        if now.duration_since(entry.last_used) > self.opts.cache_time {
            cache.remove(ck);
            return None;
        }
        entry.last_used = now;
        Some(Resolved {
            key: entry.key.clone(),
            describe: entry.describe.clone(),
            policy: entry.policy.clone(),
        })
    }

    fn keep(&self, ck: CacheKey, user: &str, r: &Resolved<K>) {
        let mut cache = self.cache_lock();
        let now = Instant::now();
        let ttl = self.opts.cache_time;
        // The proxy's newest word on a user replaces what was kept of
        // them: once a changed password has been accepted, the old one is
        // asked about again.
        cache.retain(|_, e| e.user != user && now.duration_since(e.last_used) <= ttl);
        cache.insert(
            ck,
            Entry {
                user: user.to_string(),
                key: r.key.clone(),
                describe: r.describe.clone(),
                policy: r.policy.clone(),
                last_used: now,
            },
        );
    }

    fn forget_user(&self, user: &str) {
        self.cache_lock().retain(|_, e| e.user != user);
    }

    fn forget_key(&self, ck: &CacheKey) {
        self.cache_lock().remove(ck);
    }

    /// The answer for these credentials: kept, or asked of the proxy.
    async fn lookup(
        &self,
        user: &str,
        credential: Credential<'_>,
        peer: SocketAddr,
    ) -> Result<Resolved<K>, Refusal> {
        let ip = client_ip(peer);
        let ck = self.cache_key(user, &credential, ip);
        if let Some(r) = self.cached(&ck) {
            self.count("kept", None);
            return Ok(r);
        }
        // Logins with the same credentials share one call.
        let gate = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ck)
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        let result = match self.cached(&ck) {
            Some(r) => {
                self.count("kept", None);
                Ok(r)
            }
            None => self.ask(user, &credential, ip, ck, peer).await,
        };
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // Two holders: the map and this login; nobody else waits.
        if Arc::strong_count(&gate) <= 2 {
            inflight.remove(&ck);
        }
        result
    }

    async fn ask(
        &self,
        user: &str,
        credential: &Credential<'_>,
        ip: IpAddr,
        ck: CacheKey,
        peer: SocketAddr,
    ) -> Result<Resolved<K>, Refusal> {
        let method = credential.method();
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.opts.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, "auth proxy: login of {user:?} ({method}) refused: {} logins already wait for the proxy", self.opts.max_waiting);
            return Err(Refusal::BadCredentials);
        }
        let permit = self.slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(_permit) = permit else {
            return Err(Refusal::BadCredentials);
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let input = request_json(user, credential, Some(ip));
        let call = async {
            match &self.opts.command {
                ProxyCommand::Program(argv) => {
                    call_program(argv, &input, self.opts.max_output).await
                }
                ProxyCommand::Http(url) => {
                    let client = self.http.as_ref().expect("set up for HTTP proxies");
                    call_http(client, url, input.clone(), self.opts.max_output).await
                }
            }
        };
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(self.opts.timeout, call).await {
            Ok(o) => o,
            // The program is killed as its handle drops.
            Err(_) => {
                self.count("timeout", None);
                Outcome::Failed(format!("no answer within {:?}; killed", self.opts.timeout))
            }
        };
        let took = Some(started.elapsed());
        let answer = match outcome {
            Outcome::Answer(a) => a,
            Outcome::Refused(why) => {
                self.count("refused", took);
                tracing::info!(%peer, "auth proxy refused {user:?} ({method}): {why}");
                self.forget_user(user);
                return Err(Refusal::BadCredentials);
            }
            Outcome::Failed(why) => {
                if !why.starts_with("no answer within") {
                    self.count("failed", took);
                }
                tracing::warn!(%peer, "auth proxy failed for {user:?} ({method}); login refused: {why}");
                return Err(Refusal::BadCredentials);
            }
        };
        let parsed = parse_answer(&answer).map_err(|why| {
            self.count("bad_answer", took);
            tracing::warn!(%peer, "auth proxy gave a bad answer for {user:?} ({method}); login refused: {why}");
            Refusal::BadCredentials
        })?;
        let (key, describe) = (self.resolve)(&parsed).map_err(|why| {
            self.count("bad_answer", took);
            tracing::warn!(%peer, "auth proxy's answer for {user:?} ({method}) cannot be served; login refused: {why}");
            Refusal::BadCredentials
        })?;
        self.count("ok", took);
        let r = Resolved {
            key,
            describe,
            policy: parsed.policy,
        };
        self.keep(ck, user, &r);
        Ok(r)
    }
}

impl<K: PoolKey> Authenticator for ProxyAuthenticator<K> {
    fn methods(&self) -> Methods {
        Methods {
            none: false,
            password: true,
            public_key: true,
        }
    }

    fn key_acceptable<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        // Asked at the offer; the answer is kept and used only once the
        // signature verifies (`login`).
        Box::pin(async move {
            self.lookup(user, Credential::PublicKey(key), peer)
                .await
                .is_ok()
        })
    }

    fn login<'a>(
        &'a self,
        user: &'a str,
        credential: Credential<'a>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Login, Refusal>> + Send + 'a>> {
        Box::pin(async move {
            if matches!(credential, Credential::None) {
                return Err(Refusal::BadCredentials);
            }
            let r = self.lookup(user, credential, peer).await?;
            let vfs = match self.pool.get(r.key.clone()).await {
                Ok(v) => v,
                Err(why) => {
                    // Not kept: the next login asks again.
                    self.forget_key(&self.cache_key(user, &credential, client_ip(peer)));
                    return Err(Refusal::Unavailable(format!("{}: {why}", r.describe)));
                }
            };
            Ok(Login {
                user: user.to_string(),
                vfs,
                policy: r.policy,
                describe: r.describe,
            })
        })
    }

    fn forget(&self) {
        self.forget_answers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let a = parse_answer(br#"{"type":"sftp","_root":"/x","host":"h","pass":"p","_obscure":"pass","_read_only":"true","_max_connections":" 2"}"#).unwrap();
        assert_eq!(a.type_, "sftp");
        assert_eq!(a.root, "/x");
        assert_eq!(a.plain, ["pass"]);
        assert!(a.policy.read_only);
        assert_eq!(a.policy.max_connections, Some(2));
        assert_eq!(a.options.keys().collect::<Vec<_>>(), ["host", "pass"]);
        for (bad, why) in [
            (&br#"[1]"#[..], "not a JSON object"),
            (br#"nope"#, "not JSON"),
            (br#"{"type":"local"}"#, "_root"),
            (br#"{"_root":"/"}"#, "type"),
            (br#"{"type":"local","_root":"/","x":1}"#, "a number"),
            (br#"{"type":"local","_root":"/","x":true}"#, "a boolean"),
            (br#"{"type":"local","_root":"/","_quota":"1"}"#, "_quota"),
            (
                br#"{"type":"local","_root":"/","_read_only":"maybe"}"#,
                "maybe",
            ),
            (br#"{"type":"local","_root":"/","_obscure":"pass"}"#, "pass"),
            (
                br#"{"type":"local","_root":"/","_max_connections":"many"}"#,
                "many",
            ),
        ] {
            let e = parse_answer(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_request_is_rclones_shape() {
        let j = request_json(
            "alice",
            &Credential::Password("pw"),
            Some("10.0.0.1".parse().unwrap()),
        );
        assert_eq!(
            String::from_utf8(j).unwrap(),
            "{\n\t\"client_ip\": \"10.0.0.1\",\n\t\"pass\": \"pw\",\n\t\"user\": \"alice\"\n}\n"
        );
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:22".parse().unwrap();
        assert_eq!(client_ip(mapped).to_string(), "192.0.2.7");
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            ProxyCommand::parse(" /bin/p  -x y ").unwrap(),
            ProxyCommand::Program(vec!["/bin/p".into(), "-x".into(), "y".into()])
        );
        assert_eq!(
            ProxyCommand::parse("https://auth.example/x").unwrap(),
            ProxyCommand::Http("https://auth.example/x".into())
        );
        assert!(ProxyCommand::parse("  ").is_err());
        assert!(ProxyCommand::parse("http://a b").is_err());
    }

    fn authenticator(
        script: &str,
        cache: Duration,
    ) -> (ProxyAuthenticator<String>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sh");
        std::fs::write(&path, script).unwrap();
        let root = dir.path().to_path_buf();
        let pool = VfsPool::new(Duration::from_secs(60), move |_k: String| {
            let root = root.clone();
            async move {
                let backend =
                    ferry_backend_local::LocalBackend::open(&root).map_err(|e| e.to_string())?;
                Ok(ferry_vfs::Vfs::new(Arc::new(backend), Default::default()))
            }
        });
        let mut opts = ProxyOptions::new(ProxyCommand::Program(vec![
            "sh".into(),
            path.display().to_string(),
        ]));
        opts.cache_time = cache;
        opts.timeout = Duration::from_secs(2);
        let auth = ProxyAuthenticator::new(opts, pool, |a: &ProxyAnswer| {
            Ok((format!("{}:{}", a.type_, a.root), a.type_.clone()))
        })
        .unwrap();
        (auth, dir)
    }

    const PEER: &str = "127.0.0.1:5000";

    #[tokio::test]
    async fn answers_are_kept_per_credential_and_refusals_drop_them() {
        // Accepts password "good" and any key; the input tells which.
        let (auth, _d) = authenticator(
            "in=$(cat); case \"$in\" in *'\"pass\": \"good\"'*|*public_key*) echo '{\"type\":\"local\",\"_root\":\"/\"}';; *) exit 1;; esac",
            Duration::from_secs(60),
        );
        let peer: SocketAddr = PEER.parse().unwrap();
        let login = auth
            .login("alice", Credential::Password("good"), peer)
            .await
            .unwrap();
        assert_eq!(login.describe, "local");
        drop(login);
        auth.login("alice", Credential::Password("good"), peer)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 1, "kept");
        assert!(auth
            .login("alice", Credential::Password("bad"), peer)
            .await
            .is_err());
        assert_eq!(auth.calls(), 2);
        // The refusal dropped alice's kept answer.
        auth.login("alice", Credential::Password("good"), peer)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 3);
        // Another address is another key.
        let other: SocketAddr = "127.0.0.2:1".parse().unwrap();
        auth.login("alice", Credential::Password("good"), other)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 4);
        // A key's answer is no password's.
        let key =
            russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                .unwrap();
        let public = key.public_key().clone();
        assert!(auth.key_acceptable("alice", &public, peer).await);
        auth.login("alice", Credential::PublicKey(&public), peer)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 5, "the offer's answer served the login");
        let b64 = public_key_base64(&public);
        assert!(auth
            .login("alice", Credential::Password(&b64), peer)
            .await
            .is_err());
        assert!(auth.login("alice", Credential::None, peer).await.is_err());
        assert_eq!(auth.calls(), 6);
        // Each call replaced what was kept of alice: her password is asked
        // about again.
        auth.login("alice", Credential::Password("good"), peer)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 7);
    }

    #[tokio::test]
    async fn kept_answers_expire_after_their_last_use() {
        let (auth, _d) = authenticator(
            "cat >/dev/null; echo '{\"type\":\"local\",\"_root\":\"/\"}'",
            Duration::from_millis(300),
        );
        let peer: SocketAddr = PEER.parse().unwrap();
        auth.login("u", Credential::Password("p"), peer)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        auth.login("u", Credential::Password("p"), peer)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        auth.login("u", Credential::Password("p"), peer)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 1, "each use keeps it");
        tokio::time::sleep(Duration::from_millis(400)).await;
        auth.login("u", Credential::Password("p"), peer)
            .await
            .unwrap();
        assert_eq!(auth.calls(), 2, "expired");
    }

    #[tokio::test]
    async fn concurrent_logins_with_one_credential_share_one_call() {
        let (auth, _d) = authenticator(
            "cat >/dev/null; sleep 0.3; echo '{\"type\":\"local\",\"_root\":\"/\"}'",
            Duration::from_secs(60),
        );
        let peer: SocketAddr = PEER.parse().unwrap();
        let logins: Vec<_> = (0..10)
            .map(|_| auth.login("u", Credential::Password("p"), peer))
            .collect();
        for r in futures::future::join_all(logins).await {
            r.unwrap();
        }
        assert_eq!(auth.calls(), 1);
    }

    #[tokio::test]
    async fn broken_proxies_refuse_the_login_only() {
        let peer: SocketAddr = PEER.parse().unwrap();
        for script in [
            "cat >/dev/null; echo 'not json'",
            "cat >/dev/null; echo '{\"type\":\"local\"}'",
            "cat >/dev/null; kill -9 $$",
            "cat >/dev/null; sleep 10",
            "cat >/dev/null; head -c 2000000 /dev/zero | tr '\\0' x",
            "cat >/dev/null; echo '{\"type\":\"local\",\"_root\":\"/\",\"n\":5}'",
        ] {
            let (auth, _d) = authenticator(script, Duration::from_secs(60));
            let started = Instant::now();
            let r = auth.login("u", Credential::Password("p"), peer).await;
            assert!(matches!(r, Err(Refusal::BadCredentials)), "{script}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{script}: bounded"
            );
        }
    }
}
