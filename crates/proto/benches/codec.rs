//! Micro-benchmarks of the SFTP codec's hot paths: what the server does for
//! every READ and WRITE (frame check, decode, DATA header, STATUS reply),
//! for every STAT (ATTRS reply) and for every READDIR page (100 entries with
//! their `ls -l` longnames).
//!
//! ```text
//! cargo bench -p ferry-proto                      # all, ~1 s per benchmark
//! cargo bench -p ferry-proto -- decode/write      # one group or name (substring)
//! cargo bench -p ferry-proto -- --quick           # a rougher, faster estimate
//! ```
//!
//! Settings are short on purpose (0.3 s warm-up, 1 s measurement, 20
//! samples): the numbers are for comparing two builds on the same machine,
//! not absolute. Criterion keeps the previous run in `target/criterion` and
//! prints the change against it.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_proto::{
    check_frame, data_header, format_longname, mode, FileAttributes, Frame, NameEntry, Request,
    Response, StatusCode, DEFAULT_MAX_PACKET,
};

/// Payload sizes clients use: 32 KiB (rclone, paramiko, OpenSSH's default
/// before `limits`) and 255 KiB (OpenSSH after the `limits` extension).
const SIZES: [(&str, usize); 2] = [("32KiB", 32 * 1024), ("255KiB", 255 * 1024)];

/// A handle as the server hands them out (a big-endian `u32`).
fn handle() -> Bytes {
    Bytes::copy_from_slice(&7u32.to_be_bytes())
}

/// "Now" for longnames: fixed, so every run formats the same dates.
const NOW: u32 = 1_764_000_000;

/// The framed bytes of a request, length prefix included.
fn framed(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(&mut out);
    out
}

/// The payload of a request (what [`Request::decode`] takes).
fn payload(req: &Request) -> Bytes {
    Bytes::from(framed(req)).slice(4..)
}

fn read_req(id: u32, offset: u64, len: usize) -> Request {
    Request::Read {
        id,
        handle: handle(),
        offset,
        len: len as u32,
    }
}

fn write_req(id: u32, offset: u64, len: usize) -> Request {
    Request::Write {
        id,
        handle: handle(),
        offset,
        data: Bytes::from(vec![0xa5; len]),
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (label, n) in SIZES {
        let read = payload(&read_req(42, 1 << 30, n));
        g.bench_with_input(BenchmarkId::new("read", label), &read, |b, p| {
            b.iter(|| Request::decode(black_box(p.clone())).unwrap())
        });
        // Zero-copy: the data is a slice of the payload, so the cost does not
        // grow with the size (counted per request, not per byte).
        let write = payload(&write_req(42, 1 << 30, n));
        g.bench_with_input(BenchmarkId::new("write", label), &write, |b, p| {
            b.iter(|| Request::decode(black_box(p.clone())).unwrap())
        });
    }
    g.finish();
}

fn frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let write = framed(&write_req(9, 0, 255 * 1024));
    g.bench_function("check_frame/complete-255KiB-write", |b| {
        b.iter(|| check_frame(black_box(&write), DEFAULT_MAX_PACKET).unwrap())
    });
    g.bench_function("check_frame/incomplete", |b| {
        b.iter(|| check_frame(black_box(&write[..4096]), DEFAULT_MAX_PACKET).unwrap())
    });
    // The server's reader loop over one channel chunk holding 64 pipelined
    // READs (OpenSSH's default queue depth): check, split, decode each.
    let mut chunk = Vec::new();
    for i in 0..64u32 {
        chunk.extend_from_slice(&framed(&read_req(i, u64::from(i) * 261_120, 255 * 1024)));
    }
    let chunk = Bytes::from(chunk);
    g.throughput(Throughput::Elements(64));
    g.bench_function("split+decode/64-reads", |b| {
        b.iter(|| {
            let mut buf = black_box(chunk.clone());
            let mut n = 0;
            while let Ok(Frame::Complete(len)) = check_frame(&buf, DEFAULT_MAX_PACKET) {
                let packet = buf.split_to(len);
                black_box(Request::decode(packet.slice(4..)).unwrap());
                n += 1;
            }
            assert_eq!(n, 64);
        })
    });
    g.finish();
}

/// Attributes as the server sends them for a regular file.
fn file_attrs(i: u32) -> FileAttributes {
    // Half the entries are older than six months, so both date forms of the
    // longname are formatted.
    let mtime = if i.is_multiple_of(2) {
        NOW - 3600 * i
    } else {
        NOW - 200 * 86_400 - i
    };
    let dir = i.is_multiple_of(10);
    FileAttributes {
        size: Some(if dir { 4096 } else { u64::from(i) * 12_345 }),
        uid_gid: Some((1000, 1000)),
        permissions: Some(if dir {
            mode::S_IFDIR | 0o755
        } else {
            mode::S_IFREG | 0o644
        }),
        atime_mtime: Some((mtime, mtime)),
        extended: Vec::new(),
    }
}

/// One READDIR page as the server builds it: for each entry the attributes,
/// the owner and group as numbers, and the longname.
fn name_page(raw: &[(Vec<u8>, FileAttributes)]) -> Vec<NameEntry> {
    raw.iter()
        .map(|(name, attrs)| {
            let (uid, gid) = attrs.uid_gid.unwrap_or((0, 0));
            NameEntry {
                filename: Bytes::copy_from_slice(name),
                longname: format_longname(name, attrs, &uid.to_string(), &gid.to_string(), NOW),
                attrs: attrs.clone(),
            }
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.bench_function("data_header", |b| {
        b.iter(|| data_header(black_box(42), black_box(255 * 1024)))
    });
    let mut out = Vec::with_capacity(256 * 1024 + 64);
    for (label, n) in SIZES {
        // For comparison with data_header: the copying path through a
        // Response (what the server avoids for READ replies).
        let data = Response::Data {
            id: 42,
            data: Bytes::from(vec![0x5a; n]),
        };
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::new("data_copy", label), &data, |b, r| {
            b.iter(|| {
                out.clear();
                black_box(r).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let ok = Response::Status {
        id: 42,
        code: StatusCode::Ok,
        message: String::new(),
    };
    g.bench_function("status_ok", |b| {
        b.iter(|| {
            out.clear();
            black_box(&ok).encode(&mut out);
            black_box(out.len())
        })
    });
    let attrs = Response::Attrs {
        id: 42,
        attrs: file_attrs(3),
    };
    g.bench_function("attrs", |b| {
        b.iter(|| {
            out.clear();
            black_box(&attrs).encode(&mut out);
            black_box(out.len())
        })
    });

    let raw: Vec<(Vec<u8>, FileAttributes)> = (0..100u32)
        .map(|i| (format!("file-{i:06}.dat").into_bytes(), file_attrs(i)))
        .collect();
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.bench_function("longnames/100", |b| {
        b.iter(|| black_box(name_page(black_box(&raw))))
    });
    let page = Response::Name {
        id: 42,
        entries: name_page(&raw),
    };
    g.bench_function("name_encode/100", |b| {
        b.iter(|| {
            out.clear();
            black_box(&page).encode(&mut out);
            black_box(out.len())
        })
    });
    // The whole READDIR reply: longnames, entries and the encoded packet.
    g.bench_function("name_page/100", |b| {
        b.iter(|| {
            let resp = Response::Name {
                id: 42,
                entries: name_page(black_box(&raw)),
            };
            let mut buf = Vec::with_capacity(resp.encoded_len());
            resp.encode(&mut buf);
            black_box(buf)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, frame, encode
}
criterion_main!(benches);
