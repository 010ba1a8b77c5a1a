//! rclone remote options to an [`ObjectBackend`].
//!
//! Each supported remote type takes rclone's option names with rclone's
//! meanings, so an existing rclone.conf entry works unchanged; the mapping
//! onto OpenDAL's configuration is here and nowhere else. Options Ferry
//! does not use are reported as warnings, never silently dropped.

use std::collections::{BTreeMap, HashMap};

use opendal::Operator;

use crate::{ObjectBackend, ObjectOptions, StoreKind};

/// The remote types this crate serves.
pub const TYPES: &[&str] = &[
    "s3",
    "webdav",
    "http",
    "gcs",
    "google cloud storage",
    "azureblob",
];

/// Does this crate serve remotes of type `type_`?
pub fn supports(type_: &str) -> bool {
    TYPES.contains(&type_)
}

/// A remote to open: its name (for messages), type, options (obscured
/// secrets already revealed) and the path inside it.
#[derive(Debug, Clone)]
pub struct RemoteSpec<'a> {
    /// The remote's name, as the user wrote it.
    pub name: &'a str,
    /// rclone's type name.
    pub type_: &'a str,
    /// Options by rclone's names.
    pub options: &'a BTreeMap<String, String>,
    /// The path after the colon.
    pub path: &'a str,
    /// Refuse every change.
    pub read_only: bool,
    /// Where large uploads to one-request stores are spooled.
    pub spool_dir: Option<std::path::PathBuf>,
    /// How upload requests are retried.
    pub upload_retries: crate::UploadRetries,
}

/// A remote opened: the backend, and what the user should be told.
pub struct Opened {
    /// The backend.
    pub backend: ObjectBackend,
    /// Options ignored and other notes.
    pub warnings: Vec<String>,
}

struct Opts<'a> {
    spec: &'a RemoteSpec<'a>,
    used: Vec<&'static str>,
}

impl<'a> Opts<'a> {
    fn get(&mut self, key: &'static str) -> Option<&'a str> {
        self.used.push(key);
        self.spec
            .options
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Option `key` parsed by `parse`, `default` when unset; a value that
    /// does not parse is an error naming the remote, the key and `want`.
    fn parsed<T>(
        &mut self,
        key: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Option<T>,
        want: &str,
    ) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse(v).ok_or_else(|| {
                format!(
                    "remote {}: option {key} = {v:?} is not {want}",
                    self.spec.name
                )
            }),
        }
    }

    fn flag(&mut self, key: &'static str, default: bool) -> Result<bool, String> {
        self.parsed(key, default, parse_bool, "a boolean (want true or false)")
    }

    fn size(&mut self, key: &'static str, default: usize) -> Result<usize, String> {
        self.parsed(key, default, parse_size, "a size (such as 5Mi or 64M)")
    }

    fn count(&mut self, key: &'static str, default: usize) -> Result<usize, String> {
        let positive = |v: &str| v.parse::<usize>().ok().filter(|n| *n > 0);
        self.parsed(key, default, positive, "a positive number")
    }

    /// Copy options that map one to one: (rclone's name, OpenDAL's name).
    fn copy_into(&mut self, c: &mut HashMap<String, String>, pairs: &[(&'static str, &str)]) {
        for (ours, theirs) in pairs {
            if let Some(v) = self.get(ours) {
                c.insert(theirs.to_string(), v.to_string());
            }
        }
    }

    /// Warnings for options that were set but not used.
    fn unused(&self, always_ignored: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in self.spec.options {
            if k == "type"
                || v.is_empty()
                || self.used.contains(&k.as_str())
                || always_ignored.contains(&k.as_str())
            {
                continue;
            }
            out.push(format!(
                "remote {}: option {k} of the {} backend is not supported by Ferry; ignored",
                self.spec.name, self.spec.type_
            ));
        }
        out
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" => Some(true),
        "false" | "0" | "no" | "off" | "f" => Some(false),
        _ => None,
    }
}

pub use ferry_config::parse_size;

/// Split `bucket/some/prefix` into the bucket and the prefix (as an
/// OpenDAL root).
fn bucket_and_root(spec: &RemoteSpec, what: &str) -> Result<(String, String), String> {
    let p = spec.path.trim_matches('/');
    let (bucket, rest) = p.split_once('/').unwrap_or((p, ""));
    if bucket.is_empty() {
        return Err(format!(
            "remote {}: name a {what} to serve ({}:{what}/path); serving every {what} of an account is not supported",
            spec.name, spec.name
        ));
    }
    Ok((bucket.to_string(), format!("/{rest}")))
}

/// `scheme:bucket/prefix`, for logs.
fn describe_bucket(scheme: &str, bucket: &str, root: &str) -> String {
    let prefix = if root == "/" { "" } else { root };
    format!("{scheme}:{bucket}{prefix}")
}

fn build_err(spec: &RemoteSpec, e: opendal::Error) -> String {
    format!("remote {} ({}): {e}", spec.name, spec.type_)
}

/// Open the remote `spec` describes.
pub fn open(spec: &RemoteSpec) -> Result<Opened, String> {
    opendal::install_default();
    match spec.type_ {
        "s3" => s3(spec),
        "webdav" => webdav(spec),
        "http" => http(spec),
        "gcs" | "google cloud storage" => gcs(spec),
        "azureblob" => azureblob(spec),
        other => Err(format!(
            "remote {}: backend type {other:?} is not served by the object-store backends",
            spec.name
        )),
    }
}

fn common(
    o: &mut Opts,
    spec: &RemoteSpec,
    kind: StoreKind,
    describe: String,
) -> Result<ObjectOptions, String> {
    Ok(ObjectOptions {
        kind,
        mtime_metadata: kind == StoreKind::Bucket,
        use_server_modtime: o.flag("use_server_modtime", false)?,
        chunk_size: o.size("chunk_size", 5 << 20)?.max(5 << 20),
        upload_concurrency: o.count("upload_concurrency", 4)?,
        read_only: spec.read_only,
        describe,
        spool_dir: spec.spool_dir.clone(),
        upload_retries: spec.upload_retries,
    })
}

fn s3(spec: &RemoteSpec) -> Result<Opened, String> {
    let mut o = Opts {
        spec,
        used: Vec::new(),
    };
    let (bucket, root) = bucket_and_root(spec, "bucket")?;
    let provider = o.get("provider").unwrap_or("AWS");
    let mut c: HashMap<String, String> = HashMap::new();
    c.insert("bucket".into(), bucket.clone());
    c.insert("root".into(), root.clone());
    if let Some(e) = o.get("endpoint") {
        let e = if e.contains("://") {
            e.to_string()
        } else {
            format!("https://{e}")
        };
        c.insert("endpoint".into(), e);
    }
    let region = o.get("region").unwrap_or("us-east-1");
    c.insert("region".into(), region.into());
    let env_auth = o.flag("env_auth", false)?;
    let key_id = o.get("access_key_id");
    let secret = o.get("secret_access_key");
    match (key_id, secret) {
        (Some(k), Some(s)) => {
            c.insert("access_key_id".into(), k.into());
            c.insert("secret_access_key".into(), s.into());
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(format!(
                "remote {}: access_key_id and secret_access_key go together; one is missing",
                spec.name
            ))
        }
        (None, None) if env_auth => {}
        (None, None) => {
            // rclone: no keys and no env_auth is anonymous access.
            c.insert("allow_anonymous".into(), "true".into());
            c.insert("skip_signature".into(), "true".into());
        }
    }
    if !env_auth {
        c.insert("disable_config_load".into(), "true".into());
    }
    o.copy_into(&mut c, &[("session_token", "session_token")]);
    // rclone's default is path style, except on AWS itself.
    let path_style = o.flag("force_path_style", provider != "AWS")?;
    if !path_style {
        c.insert("enable_virtual_host_style".into(), "true".into());
    }
    o.copy_into(
        &mut c,
        &[
            ("storage_class", "default_storage_class"),
            ("server_side_encryption", "server_side_encryption"),
            ("sse_kms_key_id", "server_side_encryption_aws_kms_key_id"),
            ("acl", "default_acl"),
        ],
    );
    let describe = describe_bucket("s3", &bucket, &root);
    let opts = common(&mut o, spec, StoreKind::Bucket, describe)?;
    let op = Operator::from_iter::<opendal::services::S3>(c).map_err(|e| build_err(spec, e))?;
    // rclone options that change nothing for Ferry.
    let warnings = o.unused(&[
        "provider",
        "upload_cutoff",
        "location_constraint",
        "no_check_bucket",
    ]);
    Ok(Opened {
        backend: ObjectBackend::new(op, opts),
        warnings,
    })
}

fn split_url(spec: &RemoteSpec, url: &str) -> Result<(String, String), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "remote {}: option url = {url:?} is not a URL (want http://host[:port]/path)",
            spec.name
        ));
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(format!(
            "remote {}: option url = {url:?} has no host",
            spec.name
        ));
    }
    Ok((format!("{scheme}://{host}"), path.to_string()))
}

fn join_root(base: &str, path: &str) -> String {
    let mut r = base.trim_end_matches('/').to_string();
    let p = path.trim_matches('/');
    if !p.is_empty() {
        r.push('/');
        r.push_str(p);
    }
    if r.is_empty() {
        r.push('/');
    }
    r
}

fn webdav(spec: &RemoteSpec) -> Result<Opened, String> {
    let mut o = Opts {
        spec,
        used: Vec::new(),
    };
    let url = o.get("url").ok_or_else(|| {
        format!(
            "remote {}: option url is required for a webdav remote",
            spec.name
        )
    })?;
    let (endpoint, base) = split_url(spec, url)?;
    let mut c: HashMap<String, String> = HashMap::new();
    c.insert("endpoint".into(), endpoint);
    c.insert("root".into(), join_root(&base, spec.path));
    o.copy_into(
        &mut c,
        &[
            ("user", "username"),
            ("pass", "password"),
            ("bearer_token", "token"),
        ],
    );
    let mut warnings = Vec::new();
    if let Some(v) = o.get("vendor") {
        if matches!(v, "nextcloud" | "owncloud") {
            warnings.push(format!(
                "remote {}: vendor {v}: modification times are not set on this server (Ferry does not send X-OC-Mtime yet)",
                spec.name
            ));
        }
    }
    let describe = format!("webdav:{url}");
    let opts = common(&mut o, spec, StoreKind::Webdav, describe)?;
    let op = Operator::from_iter::<opendal::services::Webdav>(c).map_err(|e| build_err(spec, e))?;
    warnings.extend(o.unused(&[]));
    Ok(Opened {
        backend: ObjectBackend::new(op, opts),
        warnings,
    })
}

fn http(spec: &RemoteSpec) -> Result<Opened, String> {
    let mut o = Opts {
        spec,
        used: Vec::new(),
    };
    let url = o.get("url").ok_or_else(|| {
        format!(
            "remote {}: option url is required for an http remote",
            spec.name
        )
    })?;
    let (endpoint, base) = split_url(spec, url)?;
    let mut c: HashMap<String, String> = HashMap::new();
    c.insert("endpoint".into(), endpoint);
    c.insert("root".into(), join_root(&base, spec.path));
    let describe = format!("http:{url}");
    let mut opts = common(&mut o, spec, StoreKind::Http, describe)?;
    opts.read_only = true;
    let op = Operator::from_iter::<opendal::services::Http>(c).map_err(|e| build_err(spec, e))?;
    let mut warnings = o.unused(&[]);
    warnings.push(format!(
        "remote {}: http remotes are read-only and cannot list directories in Ferry yet: clients must name the files they fetch",
        spec.name
    ));
    Ok(Opened {
        backend: ObjectBackend::new(op, opts),
        warnings,
    })
}

fn gcs(spec: &RemoteSpec) -> Result<Opened, String> {
    let mut o = Opts {
        spec,
        used: Vec::new(),
    };
    let (bucket, root) = bucket_and_root(spec, "bucket")?;
    let mut c: HashMap<String, String> = HashMap::new();
    c.insert("bucket".into(), bucket.clone());
    c.insert("root".into(), root.clone());
    if let Some(p) = o.get("service_account_file") {
        c.insert("credential_path".into(), p.into());
    }
    if let Some(json) = o.get("service_account_credentials") {
        use base64::Engine as _;
        c.insert(
            "credential".into(),
            base64::engine::general_purpose::STANDARD.encode(json),
        );
    }
    if o.flag("anonymous", false)? {
        c.insert("allow_anonymous".into(), "true".into());
        c.insert("skip_signature".into(), "true".into());
    }
    o.copy_into(
        &mut c,
        &[
            ("endpoint", "endpoint"),
            ("object_acl", "predefined_acl"),
            ("storage_class", "default_storage_class"),
        ],
    );
    let describe = describe_bucket("gcs", &bucket, &root);
    let opts = common(&mut o, spec, StoreKind::Bucket, describe)?;
    let op = Operator::from_iter::<opendal::services::Gcs>(c).map_err(|e| build_err(spec, e))?;
    let warnings = o.unused(&["project_number", "location", "bucket_policy_only"]);
    Ok(Opened {
        backend: ObjectBackend::new(op, opts),
        warnings,
    })
}

fn azureblob(spec: &RemoteSpec) -> Result<Opened, String> {
    let mut o = Opts {
        spec,
        used: Vec::new(),
    };
    let (container, root) = bucket_and_root(spec, "container")?;
    let mut c: HashMap<String, String> = HashMap::new();
    c.insert("container".into(), container.clone());
    c.insert("root".into(), root.clone());
    let account = o.get("account");
    if let Some(a) = account {
        c.insert("account_name".into(), a.into());
    }
    if let Some(k) = o.get("key") {
        c.insert("account_key".into(), k.into());
    }
    if let Some(sas) = o.get("sas_url") {
        let (base, token) = sas.split_once('?').ok_or_else(|| {
            format!(
                "remote {}: option sas_url has no token after '?'",
                spec.name
            )
        })?;
        c.insert("endpoint".into(), base.trim_end_matches('/').to_string());
        c.insert("sas_token".into(), token.into());
    }
    if o.flag("use_emulator", false)? {
        c.insert(
            "endpoint".into(),
            "http://127.0.0.1:10000/devstoreaccount1".into(),
        );
        c.entry("account_name".into())
            .or_insert_with(|| "devstoreaccount1".into());
    }
    if let Some(e) = o.get("endpoint") {
        c.insert("endpoint".into(), e.into());
    } else if let (Some(a), false) = (account, c.contains_key("endpoint")) {
        c.insert(
            "endpoint".into(),
            format!("https://{a}.blob.core.windows.net"),
        );
    }
    let describe = describe_bucket("azureblob", &container, &root);
    let opts = common(&mut o, spec, StoreKind::Bucket, describe)?;
    let op = Operator::from_iter::<opendal::services::Azblob>(c).map_err(|e| build_err(spec, e))?;
    let warnings = o.unused(&["access_tier"]);
    Ok(Opened {
        backend: ObjectBackend::new(op, opts),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(
        type_: &'a str,
        opts: &'a BTreeMap<String, String>,
        path: &'a str,
    ) -> RemoteSpec<'a> {
        RemoteSpec {
            name: "r",
            type_,
            options: opts,
            path,
            read_only: false,
            spool_dir: None,
            upload_retries: Default::default(),
        }
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sizes_as_rclone_writes_them() {
        assert_eq!(parse_size("5Mi"), Some(5 << 20));
        assert_eq!(parse_size("5M"), Some(5 << 20));
        assert_eq!(parse_size("64"), Some(64 << 10));
        assert_eq!(parse_size("100b"), Some(100));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5X"), None);
    }

    #[test]
    fn s3_needs_a_bucket_and_both_keys() {
        let o = map(&[("provider", "Other"), ("endpoint", "http://127.0.0.1:1")]);
        let e = open(&spec("s3", &o, "")).err().unwrap();
        assert!(e.contains("name a bucket"), "{e}");
        let o = map(&[("access_key_id", "k")]);
        let e = open(&spec("s3", &o, "b")).err().unwrap();
        assert!(e.contains("secret_access_key"), "{e}");
        let o = map(&[("force_path_style", "maybe")]);
        let e = open(&spec("s3", &o, "b")).err().unwrap();
        assert!(
            e.contains("force_path_style") && e.contains("boolean"),
            "{e}"
        );
    }

    #[test]
    fn s3_opens_and_reports_unused_options() {
        let o = map(&[
            ("provider", "Other"),
            ("endpoint", "http://127.0.0.1:1"),
            ("access_key_id", "k"),
            ("secret_access_key", "s"),
            ("region", "garage"),
            ("force_path_style", "true"),
            ("chunk_size", "8Mi"),
            ("frobnicate", "yes"),
        ]);
        let opened = open(&spec("s3", &o, "bucket/some/prefix")).unwrap();
        assert_eq!(opened.backend.opts.chunk_size, 8 << 20);
        assert_eq!(
            ferry_backend::Backend::describe(&opened.backend),
            "s3:bucket/some/prefix"
        );
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        assert!(opened.warnings[0].contains("frobnicate"));
    }

    #[test]
    fn webdav_and_http_urls() {
        let o = map(&[
            ("url", "http://127.0.0.1:8080/dav/"),
            ("user", "u"),
            ("pass", "p"),
            ("vendor", "other"),
        ]);
        let opened = open(&spec("webdav", &o, "sub")).unwrap();
        assert!(opened.warnings.is_empty(), "{:?}", opened.warnings);
        let o = map(&[("url", "not a url")]);
        assert!(open(&spec("webdav", &o, ""))
            .err()
            .unwrap()
            .contains("not a URL"));
        let o = map(&[]);
        assert!(open(&spec("webdav", &o, ""))
            .err()
            .unwrap()
            .contains("url is required"));
        let o = map(&[("url", "http://127.0.0.1:1/")]);
        let opened = open(&spec("http", &o, "")).unwrap();
        assert!(!ferry_backend::Backend::capabilities(&opened.backend).streaming_upload);
    }

    #[test]
    fn roots() {
        assert_eq!(join_root("/dav/", "sub/x"), "/dav/sub/x");
        assert_eq!(join_root("/", ""), "/");
        assert_eq!(join_root("", "a"), "/a");
    }
}
