//! The remote-control API: rclone's rc protocol (`rclone rc`, curl) over
//! HTTP or HTTPS, with its calls ([`calls`]) and the metrics page.
//!
//! # The protocol
//! - A call is `POST /<path>`. Its parameters come from the URL query
//!   (the last value of a key wins), then a form body or a JSON object
//!   body, which override them.
//! - The reply is the call's JSON object, tab-indented; an error is
//!   `{"error", "input", "path", "status"}` with 400 for bad parameters,
//!   404 for an unknown call or a missing thing, 500 otherwise.
//! - `_async=true` runs the call as a job and replies `{"jobid": N}` at
//!   once; `job/status` and `job/list` tell about jobs.
//! - Auth: with `--rc-user`/`--rc-pass` or `--rc-htpasswd`, Basic auth on
//!   every path. Without, calls that change things are refused (403)
//!   unless `--rc-no-auth`.
//!
//! # Layout
//! - this file: the HTTP server, auth, parameters, dispatch, jobs.
//! - [`params`]: reading parameters with rclone's types.
//! - [`htpasswd`]: the htpasswd file.
//! - [`calls`]: the calls themselves, over a [`calls::Context`].

pub mod calls;
pub mod htpasswd;
pub mod params;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use params::Params;

/// A failed call: its HTTP status and message.
#[derive(Debug, Clone)]
pub struct RcError {
    /// 400, 404 or 500 (403 and 401 come from auth).
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl RcError {
    /// A bad parameter (400).
    pub fn invalid(m: impl Into<String>) -> Self {
        RcError {
            status: 400,
            message: m.into(),
        }
    }

    /// A missing parameter (400), in rclone's words.
    pub fn missing(key: &str) -> Self {
        Self::invalid(format!("Didn't find key {key:?} in input"))
    }

    /// Something not found (404).
    pub fn not_found(m: impl Into<String>) -> Self {
        RcError {
            status: 404,
            message: m.into(),
        }
    }

    /// Any other failure (500).
    pub fn failed(m: impl Into<String>) -> Self {
        RcError {
            status: 500,
            message: m.into(),
        }
    }
}

/// What a call returns.
pub type CallResult = Result<Map<String, Value>, RcError>;
/// A call's future.
pub type CallFuture = Pin<Box<dyn Future<Output = CallResult> + Send>>;
/// A call's code.
pub type Handler = Arc<dyn Fn(Params) -> CallFuture + Send + Sync>;

/// One call of the API.
#[derive(Clone)]
pub struct Call {
    /// Its path (`vfs/forget`).
    pub path: &'static str,
    /// One line on what it does.
    pub title: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Needs auth (or `--rc-no-auth`): every call that changes something
    /// or tells what only an administrator should see.
    pub auth_required: bool,
    /// The code.
    pub handler: Handler,
}

/// The calls, by path.
#[derive(Clone, Default)]
pub struct Calls(BTreeMap<&'static str, Call>);

impl Calls {
    /// Add (or replace) a call.
    pub fn add(&mut self, call: Call) {
        self.0.insert(call.path, call);
    }

    /// The call at `path`.
    pub fn get(&self, path: &str) -> Option<&Call> {
        self.0.get(path)
    }

    /// Every call, in path order.
    pub fn iter(&self) -> impl Iterator<Item = &Call> {
        self.0.values()
    }
}

/// Who may call.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// No credentials: calls that need auth are refused unless
    /// `no_auth`.
    #[default]
    None,
    /// `--rc-user` and `--rc-pass`.
    User {
        /// The user.
        user: String,
        /// The password.
        pass: String,
    },
    /// `--rc-htpasswd`.
    Htpasswd(htpasswd::Htpasswd),
}

/// How the server runs.
#[derive(Clone, Default)]
pub struct Options {
    /// Who may call.
    pub auth: Auth,
    /// `--rc-no-auth`: calls that need auth are allowed without.
    pub no_auth: bool,
    /// `--rc-enable-metrics`: serve `/metrics` here too.
    pub metrics: bool,
    /// TLS (`--rc-cert`, `--rc-key`).
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Serve `/metrics` and nothing else (`--metrics-addr`).
    pub metrics_only: bool,
}

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;
/// Largest request body read.
const MAX_BODY: usize = 4 << 20;
/// Time a client has to send its request's headers.
const HEADER_TIME: Duration = Duration::from_secs(30);
/// Finished jobs are kept this long for `job/status`.
const JOB_EXPIRY: Duration = Duration::from_secs(60);
/// Jobs kept at most (finished ones first go).
const MAX_JOBS: usize = 10_000;

/// The running API: its calls and its jobs.
pub struct Rc {
    calls: Calls,
    opts: Options,
    jobs: Jobs,
    /// Renders `/metrics`.
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl Rc {
    /// An API serving `calls` (the job calls are added) with `opts`;
    /// `metrics` renders the metrics page.
    pub fn new(
        mut calls: Calls,
        opts: Options,
        metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    ) -> Arc<Rc> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Rc>| {
            jobs_calls(&mut calls, weak.clone());
            Rc {
                calls,
                opts,
                jobs: Jobs::default(),
                metrics,
            }
        })
    }

    /// The calls.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }
}

/// Serve `rc` on `listener` until `shutdown` turns true.
pub async fn serve(rc: Arc<Rc>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("rc: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let rc = rc.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match rc.opts.tls.clone() {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(HEADER_TIME, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(rc, s, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "rc: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "rc: TLS handshake timed out"),
                    }
                }
                None => serve_conn(rc, stream, peer).await,
            }
        });
    }
}

async fn serve_conn<S>(rc: Arc<Rc>, stream: S, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper::service::service_fn(move |req| {
        let rc = rc.clone();
        async move { Ok::<_, Infallible>(handle(&rc, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIME)
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "rc: connection ended: {e}");
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// JSON as rclone writes it: tab-indented, a newline at the end.
pub fn to_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    out.push(b'\n');
    out
}

fn error_reply(path: &str, input: &Map<String, Value>, e: &RcError) -> Response<Full<Bytes>> {
    let body = json!({
        "error": e.message,
        "input": input,
        "path": path,
        "status": e.status,
    });
    reply(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "application/json",
        to_json(&body),
    )
}

/// Did the request carry the right Basic credentials?
fn authorised(auth: &Auth, req: &Request<Incoming>) -> bool {
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some(given) = given else { return false };
    let Some((user, pass)) = given.split_once(':') else {
        return false;
    };
    match auth {
        Auth::None => true,
        Auth::User { user: u, pass: p } => {
            let a: bool = user.as_bytes().ct_eq(u.as_bytes()).into();
            let b: bool = pass.as_bytes().ct_eq(p.as_bytes()).into();
            a & b
        }
        Auth::Htpasswd(h) => h.check(user, pass),
    }
}

async fn handle(rc: &Arc<Rc>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let has_creds = !matches!(rc.opts.auth, Auth::None);
    if has_creds && !authorised(&rc.opts.auth, &req) {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "Unauthorized\n",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"rclone\""),
        );
        return r;
    }
    if req.method() == Method::OPTIONS {
        return reply(StatusCode::OK, "text/plain; charset=utf-8", "");
    }
    if path == "metrics" && rc.opts.metrics && req.method() == Method::GET {
        if let Some(m) = &rc.metrics {
            return reply(StatusCode::OK, ferry_metrics::Metrics::CONTENT_TYPE, m());
        }
    }
    if rc.opts.metrics_only {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found: this server has only GET /metrics\n",
        );
    }
    let mut input = Map::new();
    if let Some(q) = req.uri().query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            input.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    if req.method() != Method::POST {
        let e = RcError::not_found(format!("{} not allowed: calls are POST", req.method()));
        return error_reply(&path, &input, &e);
    }
    // rclone's other way to ask for a job.
    let prefer_async = req
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        });
    let json_body = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let e = RcError::invalid(format!("failed to read input: {e}"));
            return error_reply(&path, &input, &e);
        }
    };
    if json_body {
        if !body.is_empty() {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(m)) => input.extend(m),
                Ok(_) => {
                    let e = RcError::invalid("failed to read input JSON: want an object");
                    return error_reply(&path, &input, &e);
                }
                Err(e) => {
                    let e = RcError::invalid(format!("failed to read input JSON: {e}"));
                    return error_reply(&path, &input, &e);
                }
            }
        }
    } else {
        for (k, v) in form_urlencoded::parse(&body) {
            input.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let Some(call) = rc.calls.get(&path).cloned() else {
        let e = RcError::not_found(format!("couldn't find method {path:?}"));
        return error_reply(&path, &input, &e);
    };
    if call.auth_required && !has_creds && !rc.opts.no_auth {
        let e = RcError {
            status: 403,
            message: format!(
                "authentication must be set up on the rc server to use {path:?} or the --rc-no-auth flag must be in use"
            ),
        };
        return error_reply(&path, &input, &e);
    }
    let mut params = Params(input.clone());
    let run_async = match params.bool("_async") {
        Ok(b) => b.unwrap_or(false) || prefer_async,
        Err(e) => return error_reply(&path, &input, &e),
    };
    params.take("_async");
    let group = params.string("_group").ok().flatten();
    params.take("_group");
    if run_async {
        let id = rc.jobs.start(group);
        spawn_job(rc, id, &call, params);
        let mut r = reply(
            StatusCode::OK,
            "application/json",
            to_json(&json!({ "jobid": id })),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&id.to_string()) {
            r.headers_mut().insert("x-rclone-jobid", v);
        }
        return r;
    }
    tracing::debug!(input = %serde_json::Value::Object(input.clone()), "rc: {path}");
    match (call.handler)(params).await {
        Ok(out) => reply(
            StatusCode::OK,
            "application/json",
            to_json(&Value::Object(out)),
        ),
        Err(e) => error_reply(&path, &input, &e),
    }
}

// ---------------------------------------------------------------------
// jobs
// ---------------------------------------------------------------------

#[derive(Default)]
struct Jobs {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Job>>,
}

struct Job {
    group: String,
    start: jiff::Timestamp,
    started: Instant,
    end: Option<(jiff::Timestamp, Instant)>,
    result: Option<CallResult>,
    task: Option<tokio::task::AbortHandle>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Job>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new job's place; its task is spawned by [`spawn_job`].
    fn start(&self, group: Option<String>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = self.lock();
        // Finished jobs past their time go; then the oldest finished ones
        // if there are still too many.
        map.retain(|_, j| j.end.is_none_or(|(_, at)| at.elapsed() < JOB_EXPIRY));
        while map.len() >= MAX_JOBS {
            let Some(old) = map.iter().find(|(_, j)| j.end.is_some()).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&old);
        }
        map.insert(
            id,
            Job {
                group: group.unwrap_or_else(|| format!("job/{id}")),
                start: jiff::Timestamp::now(),
                started: Instant::now(),
                end: None,
                result: None,
                task: None,
            },
        );
        drop(map);
        id
    }
}

fn spawn_job(rc: &Arc<Rc>, id: u64, call: &Call, params: Params) {
    let fut = (call.handler)(params);
    let weak = Arc::downgrade(rc);
    let task = tokio::spawn(async move {
        let r = fut.await;
        if let Some(rc) = weak.upgrade() {
            if let Some(j) = rc.jobs.lock().get_mut(&id) {
                j.end = Some((jiff::Timestamp::now(), Instant::now()));
                j.result = Some(r);
            }
        }
    });
    if let Some(j) = rc.jobs.lock().get_mut(&id) {
        j.task = Some(task.abort_handle());
    }
}

fn time_text(t: jiff::Timestamp) -> String {
    // RFC 3339 with nanoseconds, as Go's time.Time marshals (local time).
    let z = t.to_zoned(jiff::tz::TimeZone::system());
    z.strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string()
}

fn job_status(id: u64, j: &Job) -> Map<String, Value> {
    let (finished, success, error, output) = match &j.result {
        None => (false, false, String::new(), Value::Null),
        Some(Ok(o)) => (true, true, String::new(), Value::Object(o.clone())),
        Some(Err(e)) => (true, false, e.message.clone(), Value::Null),
    };
    let duration = match j.end {
        Some((_, at)) => at.duration_since(j.started),
        None => j.started.elapsed(),
    };
    let end = j
        .end
        .map(|(t, _)| time_text(t))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    let v = json!({
        "id": id,
        "group": j.group,
        "startTime": time_text(j.start),
        "endTime": end,
        "duration": duration.as_secs_f64(),
        "finished": finished,
        "success": success,
        "error": error,
        "output": output,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn jobs_calls(calls: &mut Calls, rc: std::sync::Weak<Rc>) {
    // `_async` needs the Rc itself to run the job; the start registers it
    // and this spawns it (see `handle`).
    let weak = rc.clone();
    calls.add(Call {
        path: "job/status",
        title: "Reads the status of the job ID",
        help: "Parameters: jobid - id of the job (integer).\n\nReturns the job's id, group, startTime, endTime, duration (seconds), finished, success, error and output.",
        auth_required: false,
        handler: Arc::new(move |p: Params| {
            let weak = weak.clone();
            Box::pin(async move {
                let id = p.int("jobid")?.ok_or_else(|| RcError::missing("jobid"))?;
                let rc = weak.upgrade().ok_or_else(|| RcError::failed("shutting down"))?;
                let jobs = rc.jobs.lock();
                let j = u64::try_from(id)
                    .ok()
                    .and_then(|id| jobs.get(&id))
                    .ok_or_else(|| RcError::not_found("job not found"))?;
                Ok(job_status(id as u64, j))
            })
        }),
    });
    let weak = rc.clone();
    calls.add(Call {
        path: "job/list",
        title: "Lists the IDs of the running jobs",
        help: "Returns jobids (every job kept), runningIds and finishedIds.",
        auth_required: false,
        handler: Arc::new(move |_p: Params| {
            let weak = weak.clone();
            Box::pin(async move {
                let rc = weak
                    .upgrade()
                    .ok_or_else(|| RcError::failed("shutting down"))?;
                let jobs = rc.jobs.lock();
                let all: Vec<u64> = jobs.keys().copied().collect();
                let running: Vec<u64> = jobs
                    .iter()
                    .filter(|(_, j)| j.end.is_none())
                    .map(|(k, _)| *k)
                    .collect();
                let finished: Vec<u64> = jobs
                    .iter()
                    .filter(|(_, j)| j.end.is_some())
                    .map(|(k, _)| *k)
                    .collect();
                let v = json!({"jobids": all, "runningIds": running, "finishedIds": finished});
                Ok(v.as_object().cloned().unwrap_or_default())
            })
        }),
    });
    let weak = rc;
    calls.add(Call {
        path: "job/stop",
        title: "Stop the running job",
        help: "Parameters: jobid - id of the job (integer).",
        auth_required: true,
        handler: Arc::new(move |p: Params| {
            let weak = weak.clone();
            Box::pin(async move {
                let id = p.int("jobid")?.ok_or_else(|| RcError::missing("jobid"))?;
                let rc = weak
                    .upgrade()
                    .ok_or_else(|| RcError::failed("shutting down"))?;
                let mut jobs = rc.jobs.lock();
                let j = u64::try_from(id)
                    .ok()
                    .and_then(|id| jobs.get_mut(&id))
                    .ok_or_else(|| RcError::not_found("job not found"))?;
                if j.end.is_none() {
                    if let Some(t) = j.task.take() {
                        t.abort();
                    }
                    j.end = Some((jiff::Timestamp::now(), Instant::now()));
                    j.result = Some(Err(RcError::failed("context canceled")));
                }
                Ok(Map::new())
            })
        }),
    });
}

/// The TLS setup of `--rc-cert` and `--rc-key`: a PEM certificate chain
/// and its PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read --rc-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--rc-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--rc-cert {} has no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--rc-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--rc-cert and --rc-key do not make a TLS setup: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
