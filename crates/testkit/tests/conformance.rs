//! The conformance suite on every backend Ferry has: local, memory, sftp
//! (a private sshd), and the object-store adapter on Garage (S3) and on a
//! WebDAV server, each bare and inside the registry's layer stack.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_backend::Backend;
use ferry_registry::{LayerOptions, Spec};
use ferry_testkit::conformance::run;
use ferry_testkit::servers::{Garage, Sshd, Webdav};

fn spec(type_: &str, options: Vec<(&str, String)>, path: &str) -> Spec {
    Spec {
        name: format!(":{type_}"),
        type_: type_.into(),
        options: options
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
        path: path.into(),
        read_only: false,
        spool_dir: None,
    }
}

/// `spec` opened by the registry: inside the layer stack (retries).
async fn layered(spec: &Spec) -> Arc<dyn Backend> {
    ferry_registry::open(spec, &LayerOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .backend
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local() {
    let bare = tempfile::tempdir().unwrap();
    let be = ferry_backend_local::LocalBackend::open(bare.path()).unwrap();
    run("local", Arc::new(be)).await;
    let dir = tempfile::tempdir().unwrap();
    let be = layered(&spec("local", vec![], dir.path().to_str().unwrap())).await;
    run("local+layers", be).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    run(
        "memory",
        Arc::new(ferry_backend_memory::MemoryBackend::new()),
    )
    .await;
    let be = layered(&spec("memory", vec![], "")).await;
    run("memory+layers", be).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp() {
    let Some(sshd) = Sshd::start() else { return };
    let opts = |dir: &std::path::Path| {
        std::fs::create_dir_all(dir).unwrap();
        vec![
            ("host", "127.0.0.1".to_string()),
            ("port", sshd.port.to_string()),
            ("user", sshd.user.clone()),
            ("key_file", sshd.client_key.display().to_string()),
        ]
    };
    let bare_dir = sshd.data.join("bare");
    let s = spec("sftp", opts(&bare_dir), bare_dir.to_str().unwrap());
    let (cfg, _) = ferry_backend_sftp::rclone::from_rclone(&s.name, &s.options, &s.path).unwrap();
    let be = ferry_backend_sftp::SftpBackend::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    run("sftp", Arc::new(be)).await;
    let layered_dir = sshd.data.join("layered");
    let be = layered(&spec(
        "sftp",
        opts(&layered_dir),
        layered_dir.to_str().unwrap(),
    ))
    .await;
    run("sftp+layers", be).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_garage() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let bare = spec("s3", garage.options(), &format!("{}/bare", garage.bucket));
    let opened = ferry_backend_opendal::config::open(&ferry_backend_opendal::config::RemoteSpec {
        name: &bare.name,
        type_: &bare.type_,
        options: &bare.options,
        path: &bare.path,
        read_only: false,
        spool_dir: None,
        upload_retries: Default::default(),
    })
    .unwrap();
    run("s3", Arc::new(opened.backend)).await;
    let s = spec(
        "s3",
        garage.options(),
        &format!("{}/layered", garage.bucket),
    );
    let be = layered(&s).await;
    run("s3+layers", be).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdav() {
    let Some(dav) = Webdav::start() else { return };
    let bare = spec("webdav", dav.options(), "bare");
    let opened = ferry_backend_opendal::config::open(&ferry_backend_opendal::config::RemoteSpec {
        name: &bare.name,
        type_: &bare.type_,
        options: &bare.options,
        path: &bare.path,
        read_only: false,
        spool_dir: None,
        upload_retries: Default::default(),
    })
    .unwrap();
    run("webdav", Arc::new(opened.backend)).await;
    let be = layered(&spec("webdav", dav.options(), "layered")).await;
    run("webdav+layers", be).await;
}
