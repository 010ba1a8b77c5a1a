//! The backend registry: every remote type Ferry serves, in one table, and
//! the layer stack every backend is wrapped in, applied in one place.
//!
//! A remote is a [`Spec`]: a type name, options by rclone's names (secrets
//! revealed), and a path. [`open`] builds its backend from that string map
//! alone, so the command line, `config show` and the auth proxy (which
//! hands over a remote per login at run time) all go through here. This
//! crate and the CLI are the only ones that name concrete backends.
//!
//! # Layout
//! - this module: [`TYPES`], [`Spec`], [`open`], [`LayerOptions`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_backend::Backend;
use ferry_layers::{
    BwLimit, BwLimiter, FaultOptions, Faults, Latency, Retry, RetryOptions, Timetable,
};

/// One remote type.
pub struct BackendType {
    /// rclone's type name.
    pub name: &'static str,
    /// Other names rclone accepts for it.
    pub aliases: &'static [&'static str],
    /// Options whose values rclone's config file keeps obscured: revealed
    /// before [`open`] sees them.
    pub obscured: &'static [&'static str],
    /// Options that are secrets (redacted by `config show` and in logs).
    pub secrets: &'static [&'static str],
    /// The store takes no changes.
    pub read_only: bool,
    /// Directories can be listed.
    pub listings: bool,
    open: Opener,
}

type Opener =
    for<'a> fn(&'a Spec, &'a LayerOptions) -> Pin<Box<dyn Future<Output = OpenResult> + Send + 'a>>;
type OpenResult = Result<(Arc<dyn Backend>, Vec<String>), OpenError>;

impl std::fmt::Debug for BackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendType")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every remote type, by rclone's name.
pub static TYPES: &[BackendType] = &[
    BackendType {
        name: "local",
        aliases: &[],
        obscured: &[],
        secrets: &[],
        read_only: false,
        listings: true,
        open: |s, _| Box::pin(open_local(s)),
    },
    BackendType {
        name: "memory",
        aliases: &[],
        obscured: &[],
        secrets: &[],
        read_only: false,
        listings: true,
        open: |s, _| Box::pin(open_memory(s)),
    },
    BackendType {
        name: "sftp",
        aliases: &[],
        obscured: &["pass", "key_file_pass"],
        secrets: &["pass", "key_file_pass", "key_pem"],
        read_only: false,
        listings: true,
        open: |s, _| Box::pin(open_sftp(s)),
    },
    BackendType {
        name: "s3",
        aliases: &[],
        obscured: &[],
        secrets: &["secret_access_key", "session_token"],
        read_only: false,
        listings: true,
        open: |s, l| Box::pin(open_object_store(s, l)),
    },
    BackendType {
        name: "webdav",
        aliases: &[],
        obscured: &["pass"],
        secrets: &["pass", "bearer_token"],
        read_only: false,
        listings: true,
        open: |s, l| Box::pin(open_object_store(s, l)),
    },
    BackendType {
        name: "http",
        aliases: &[],
        obscured: &[],
        secrets: &[],
        read_only: true,
        listings: false,
        open: |s, l| Box::pin(open_object_store(s, l)),
    },
    BackendType {
        name: "gcs",
        aliases: &["google cloud storage"],
        obscured: &[],
        secrets: &["service_account_credentials", "token", "client_secret"],
        read_only: false,
        listings: true,
        open: |s, l| Box::pin(open_object_store(s, l)),
    },
    BackendType {
        name: "azureblob",
        aliases: &[],
        obscured: &[],
        secrets: &["key", "sas_url", "account_key", "client_secret"],
        read_only: false,
        listings: true,
        open: |s, l| Box::pin(open_object_store(s, l)),
    },
];

/// The type called `name` (or one of its aliases).
pub fn find(name: &str) -> Option<&'static BackendType> {
    TYPES
        .iter()
        .find(|t| t.name == name || t.aliases.contains(&name))
}

/// The names of every type, for messages.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

/// A remote to open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    /// The remote's name as the user wrote it (empty or `:type` for an
    /// on-the-fly remote), for messages.
    pub name: String,
    /// rclone's type name.
    pub type_: String,
    /// Options by rclone's names, secrets revealed.
    pub options: BTreeMap<String, String>,
    /// The path inside the remote (a local directory for `local`).
    pub path: String,
    /// Refuse every change.
    pub read_only: bool,
    /// Where large uploads to one-request stores are spooled.
    pub spool_dir: Option<PathBuf>,
}

/// Why a remote could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The configuration is wrong: unknown type, bad option value.
    Config(String),
    /// The store could not be reached (a network remote that connects at
    /// once, a local directory that cannot be opened).
    Unavailable(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Config(m) | OpenError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for OpenError {}

/// The layers around every backend, in one place.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// The process's bandwidth limit (`--bwlimit`), shared by every
    /// backend opened with it.
    pub bwlimit: Option<Arc<BwLimiter>>,
    /// Each open file's own limit (`--bwlimit-file`).
    pub bwlimit_file: Option<Timetable>,
    /// Low-level retries (`--low-level-retries`).
    pub retry: RetryOptions,
    /// Testing only: a delay added to every request
    /// (`--debug-backend-latency`).
    pub debug_latency: Option<Duration>,
    /// Testing only: faults injected next to the store
    /// (`--debug-backend-faults`).
    pub debug_faults: Option<FaultOptions>,
    /// Where every store request is counted and timed.
    pub metrics: Option<Arc<ferry_metrics::Metrics>>,
}

/// A remote opened: its backend inside the layer stack, and what the user
/// should be told (options ignored, notes).
pub struct Opened {
    /// The backend, layers included.
    pub backend: Arc<dyn Backend>,
    /// The bare backend's description (`s3:bucket/path`), for logs.
    pub describe: String,
    /// Options ignored and other notes.
    pub warnings: Vec<String>,
}

/// Open `spec` and wrap it in the layer stack: retries next to the store,
/// then the test-only latency (so that every try pays it, as a real slow
/// store would charge), then the bandwidth limits (bytes the client
/// moves, not those of retries).
pub async fn open(spec: &Spec, layers: &LayerOptions) -> Result<Opened, OpenError> {
    let ty = find(&spec.type_).ok_or_else(|| {
        OpenError::Config(format!(
            "remote {}: backend type {:?} is not supported yet (Ferry serves {} remotes)",
            spec.name,
            spec.type_,
            names().join(", ")
        ))
    })?;
    let (bare, warnings) = (ty.open)(spec, layers).await?;
    let describe = bare.describe();
    // Injected faults sit where real ones happen: next to the store, under
    // the retries.
    let bare: Arc<dyn Backend> = match layers.debug_faults.filter(|f| f.per_million > 0) {
        Some(f) => Arc::new(Faults::wrap(bare, f)),
        None => bare,
    };
    // Counted next to the store too: each try is a request it answered.
    let bare: Arc<dyn Backend> = match &layers.metrics {
        Some(m) => Arc::new(ferry_layers::Measured::wrap(bare, m.clone())),
        None => bare,
    };
    let mut backend: Arc<dyn Backend> = Arc::new(Retry::wrap_counted(
        bare,
        layers.retry,
        layers.metrics.clone(),
    ));
    if let Some(d) = layers.debug_latency.filter(|d| !d.is_zero()) {
        backend = Arc::new(Latency::wrap(backend, d));
    }
    if layers.bwlimit.is_some() || layers.bwlimit_file.is_some() {
        backend = Arc::new(BwLimit::wrap(
            backend,
            layers.bwlimit.clone(),
            layers.bwlimit_file.clone(),
        ));
    }
    Ok(Opened {
        backend,
        describe,
        warnings,
    })
}

async fn open_local(spec: &Spec) -> OpenResult {
    let warnings = spec
        .options
        .keys()
        .map(|key| {
            format!(
                "remote {}: option {key:?} of the local backend is not supported yet; ignored",
                spec.name
            )
        })
        .collect();
    let root = if spec.path.is_empty() {
        "."
    } else {
        &spec.path
    };
    let backend = ferry_backend_local::LocalBackend::open(std::path::Path::new(root))
        .map_err(|e| OpenError::Unavailable(format!("cannot open {root}: {e}")))?;
    Ok((Arc::new(backend), warnings))
}

async fn open_memory(spec: &Spec) -> OpenResult {
    if !spec.path.trim_matches('/').is_empty() {
        return Err(OpenError::Config(format!(
            "remote {}: a path inside a memory remote is not supported yet; serve {}: itself",
            spec.name, spec.name
        )));
    }
    Ok((
        Arc::new(ferry_backend_memory::MemoryBackend::new()),
        Vec::new(),
    ))
}

async fn open_sftp(spec: &Spec) -> OpenResult {
    let (cfg, warnings) =
        ferry_backend_sftp::rclone::from_rclone(&spec.name, &spec.options, &spec.path)
            .map_err(OpenError::Config)?;
    let backend = ferry_backend_sftp::SftpBackend::connect(cfg)
        .await
        .map_err(|e| {
            OpenError::Unavailable(format!("remote {}: cannot connect: {e}", spec.name))
        })?;
    Ok((Arc::new(backend), warnings))
}

async fn open_object_store(spec: &Spec, layers: &LayerOptions) -> OpenResult {
    let opened = ferry_backend_opendal::config::open(&ferry_backend_opendal::config::RemoteSpec {
        name: &spec.name,
        type_: &spec.type_,
        options: &spec.options,
        path: &spec.path,
        read_only: spec.read_only,
        spool_dir: spec.spool_dir.clone(),
        // The store's own retries of one upload request, under the
        // writer's buffering (the retry layer cannot replay a stream).
        upload_retries: ferry_backend_opendal::UploadRetries {
            attempts: layers.retry.attempts,
            min_delay: layers.retry.min_delay,
            max_delay: layers.retry.max_delay,
        },
    })
    .map_err(OpenError::Config)?;
    Ok((Arc::new(opened.backend), opened.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(type_: &str, path: &str) -> Spec {
        Spec {
            name: format!(":{type_}"),
            type_: type_.into(),
            options: BTreeMap::new(),
            path: path.into(),
            read_only: false,
            spool_dir: None,
        }
    }

    #[test]
    fn every_type_is_found_by_name_and_alias() {
        for t in TYPES {
            assert_eq!(find(t.name).unwrap().name, t.name);
            for a in t.aliases {
                assert_eq!(find(a).unwrap().name, t.name);
            }
        }
        assert!(find("ftp").is_none());
        assert!(find("http").unwrap().read_only);
        assert!(!find("http").unwrap().listings);
    }

    #[tokio::test]
    async fn open_builds_the_backend_inside_the_layers() {
        let dir = std::env::temp_dir();
        let opened = open(
            &spec("local", dir.to_str().unwrap()),
            &LayerOptions::default(),
        )
        .await
        .unwrap();
        assert!(opened.describe.starts_with("local:"), "{}", opened.describe);
        assert_eq!(opened.backend.describe(), opened.describe);
        let mem = open(&spec("memory", ""), &LayerOptions::default())
            .await
            .unwrap();
        assert!(mem.backend.capabilities().low_latency);
        let slow = LayerOptions {
            debug_latency: Some(Duration::from_millis(1)),
            ..LayerOptions::default()
        };
        let mem = open(&spec("memory", ""), &slow).await.unwrap();
        assert!(!mem.backend.capabilities().low_latency, "latency layer on");
    }

    #[tokio::test]
    async fn bad_specs_say_what_is_wrong() {
        let e = open(&spec("ftp", ""), &LayerOptions::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&e, OpenError::Config(m) if m.contains("ftp") && m.contains("s3")),
            "{e}"
        );
        let e = open(&spec("memory", "sub"), &LayerOptions::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, OpenError::Config(_)));
        let e = open(
            &spec("local", "/no/such/dir/here"),
            &LayerOptions::default(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, OpenError::Unavailable(_)));
        let mut s3 = spec("s3", "bucket");
        s3.options.insert("chunk_size".into(), "lots".into());
        let e = open(&s3, &LayerOptions::default()).await.err().unwrap();
        assert!(
            matches!(&e, OpenError::Config(m) if m.contains("chunk_size")),
            "{e}"
        );
    }
}
