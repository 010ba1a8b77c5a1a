//! Upload requests a store refuses for a moment are sent again with the
//! same bytes: a single PUT, a part of a multipart upload and the request
//! that completes it. Garage once failed a CI run this way (a 503 "database
//! is locked" on CompleteMultipartUpload ended a client's 20 MiB upload).
//!
//! The store is a real Garage; the refusals are injected under OpenDAL, in
//! its HTTP transport, so every layer above (OpenDAL's writer, its retries,
//! Ferry's adapter) runs as in production. A refused request never reaches
//! Garage, as with a store that turns a request away.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_backend::{Backend, ErrorKind, OpenOptions, RelPath, UploadOptions};
use ferry_backend_opendal::config::{open, RemoteSpec};
use ferry_backend_opendal::{ObjectBackend, UploadRetries};
use ferry_testkit::servers::Garage;
use opendal::raw::{Layer, Servicer};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter, OperationContext};

/// The S3 requests an upload is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Req {
    Put,
    Part,
    Complete,
    Other,
}

fn classify(req: &http::Request<Buffer>) -> Req {
    let query = req.uri().query().unwrap_or("");
    let copy = req.headers().contains_key("x-amz-copy-source");
    match *req.method() {
        http::Method::PUT if query.contains("partNumber=") => Req::Part,
        http::Method::PUT if !copy => Req::Put,
        http::Method::POST if query.contains("uploadId=") => Req::Complete,
        _ => Req::Other,
    }
}

/// How many requests of each kind to refuse next, and how many were sent.
#[derive(Debug, Default)]
struct Plan {
    refuse: HashMap<Req, u32>,
    sent: HashMap<Req, u32>,
}

#[derive(Debug, Clone, Default)]
struct Faults(Arc<Mutex<Plan>>);

impl Faults {
    fn refuse(&self, kind: Req, times: u32) {
        self.0.lock().unwrap().refuse.insert(kind, times);
    }

    fn sent(&self, kind: Req) -> u32 {
        self.0.lock().unwrap().sent.get(&kind).copied().unwrap_or(0)
    }

    /// Count the request; whether to refuse it.
    fn take(&self, kind: Req) -> bool {
        let mut plan = self.0.lock().unwrap();
        *plan.sent.entry(kind).or_default() += 1;
        match plan.refuse.get_mut(&kind) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

struct Refusing {
    inner: HttpTransporter,
    faults: Faults,
}

impl HttpTransport for Refusing {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        if self.faults.take(classify(&req)) {
            let xml =
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>\
                       <Message>injected: database is locked</Message></Error>";
            let body = Buffer::from(Bytes::from_static(xml.as_bytes()));
            let len = body.len() as u64;
            return Ok(http::Response::builder()
                .status(503)
                .header("content-type", "application/xml")
                .body(HttpBody::new(futures::stream::iter([Ok(body)]), Some(len)))
                .unwrap());
        }
        self.inner.fetch(req).await
    }
}

impl Layer for Faults {
    fn apply_context(&self, _srv: Servicer, ctx: OperationContext) -> OperationContext {
        let (http, executor) = ctx.into_parts();
        let http = HttpTransporter::new(Refusing {
            inner: http,
            faults: self.clone(),
        });
        OperationContext::from_parts(http, executor)
    }
}

fn s3(garage: &Garage, path: &str, attempts: u32, faults: &Faults) -> ObjectBackend {
    let options: BTreeMap<String, String> = garage
        .options()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let path = format!("{}/{path}", garage.bucket);
    let opened = open(&RemoteSpec {
        name: ":s3",
        type_: "s3",
        options: &options,
        path: &path,
        read_only: false,
        spool_dir: None,
        upload_retries: UploadRetries {
            attempts,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        },
    })
    .unwrap();
    let faults = faults.clone();
    opened.backend.map_operator(|op| op.layer(faults))
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7919) as u8).collect()
}

async fn upload(b: &ObjectBackend, name: &str, body: &[u8]) -> ferry_backend::Result<()> {
    let mut up = b
        .create_upload(&RelPath::new(name).unwrap(), UploadOptions::default())
        .await?;
    for chunk in body.chunks(256 << 10) {
        up.write(Bytes::copy_from_slice(chunk)).await?;
    }
    up.finish(None).await.map(|_| ())
}

async fn read(b: &ObjectBackend, name: &str) -> Vec<u8> {
    let path = RelPath::new(name).unwrap();
    let size = b.stat(&path).await.unwrap().size;
    let opts = OpenOptions {
        read: true,
        ..OpenOptions::default()
    };
    let f = b.open_file(&path, opts).await.unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let got = f
            .read_at(out.len() as u64, 1 << 20, Vec::new())
            .await
            .unwrap();
        assert!(!got.is_empty(), "{name}: short read at {}", out.len());
        out.extend_from_slice(&got);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upload_requests_are_sent_again() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let faults = Faults::default();
    let b = s3(&garage, "retries", 10, &faults);

    // One request (below the part size).
    let small = data(100 << 10);
    faults.refuse(Req::Put, 2);
    upload(&b, "small.bin", &small).await.unwrap();
    assert_eq!(
        faults.sent(Req::Put),
        3,
        "two refused PUTs, then the one that landed"
    );
    assert!(read(&b, "small.bin").await == small, "small.bin differs");

    // Multipart: 12 MiB in 5 MiB parts; a part and the completion refused.
    let big = data(12 << 20);
    faults.refuse(Req::Part, 1);
    faults.refuse(Req::Complete, 2);
    upload(&b, "big.bin", &big).await.unwrap();
    assert_eq!(
        faults.sent(Req::Part),
        4,
        "three parts, one of them sent twice"
    );
    assert_eq!(faults.sent(Req::Complete), 3);
    assert!(read(&b, "big.bin").await == big, "big.bin differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_refused_upload_fails_and_leaves_nothing() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let faults = Faults::default();
    let b = s3(&garage, "no-retries", 1, &faults);
    faults.refuse(Req::Put, 1);
    let e = upload(&b, "small.bin", &data(1000)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    faults.refuse(Req::Complete, 1);
    let e = upload(&b, "big.bin", &data(6 << 20)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    for name in ["small.bin", "big.bin"] {
        let got = b.stat(&RelPath::new(name).unwrap()).await;
        assert_eq!(
            got.map(|_| ()).unwrap_err().kind(),
            ErrorKind::NotFound,
            "{name} must not exist after a failed upload"
        );
    }
}
