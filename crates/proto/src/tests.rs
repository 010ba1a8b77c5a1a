//! Whole-packet tests: round trips of every message, hand-written wire
//! vectors, truncation at every byte, hostile lengths and mutations.

use bytes::Bytes;

use crate::*;

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn full_attrs() -> FileAttributes {
    FileAttributes {
        size: Some(u64::MAX),
        uid_gid: Some((1000, 100)),
        permissions: Some(mode::S_IFREG | 0o644),
        atime_mtime: Some((1_700_000_000, u32::MAX)),
        extended: vec![(b(b"x@example.com"), b(b"\xff\x00v"))],
    }
}

fn sample_extended() -> Vec<ExtendedRequest> {
    vec![
        ExtendedRequest::PosixRename {
            old: b(b"/a/old"),
            new: b(b"/a/\xff\xfe"),
        },
        ExtendedRequest::Statvfs { path: b(b"/") },
        ExtendedRequest::Fstatvfs { handle: b(b"1") },
        ExtendedRequest::Hardlink {
            old: b(b"src"),
            new: b(b""),
        },
        ExtendedRequest::Fsync { handle: b(b"17") },
        ExtendedRequest::Lsetstat {
            path: b(b"/l"),
            attrs: full_attrs(),
        },
        ExtendedRequest::Limits,
        ExtendedRequest::ExpandPath { path: b(b"~/x") },
        ExtendedRequest::HomeDirectory { username: b(b"") },
        ExtendedRequest::CopyData {
            read_handle: b(b"r"),
            read_offset: u64::MAX,
            read_len: 0,
            write_handle: b(b"w"),
            write_offset: 1 << 40,
        },
        ExtendedRequest::UsersGroupsById {
            uids: vec![0, 1000, u32::MAX],
            gids: vec![],
        },
        ExtendedRequest::Unknown {
            name: b(b"vendor@example.com"),
            data: b(b"\x00\x01anything"),
        },
        ExtendedRequest::Unknown {
            name: b(b""),
            data: b(b""),
        },
    ]
}

fn sample_requests() -> Vec<Request> {
    let mut v = vec![
        Request::Init {
            version: SFTP_VERSION,
            extensions: vec![],
        },
        Request::Init {
            version: 6,
            extensions: vec![(b(b"a"), b(b"1")), (b(b""), b(b""))],
        },
        Request::Open {
            id: 1,
            path: b(b"/home/u/file.txt"),
            pflags: pflags::WRITE | pflags::CREAT | pflags::TRUNC,
            attrs: FileAttributes {
                permissions: Some(0o644),
                ..Default::default()
            },
        },
        Request::Open {
            id: u32::MAX,
            path: b(b"\xff\xfe"),
            pflags: pflags::READ,
            attrs: full_attrs(),
        },
        Request::Close {
            id: 2,
            handle: b(b""),
        },
        Request::Read {
            id: 3,
            handle: b(b"h"),
            offset: u64::MAX,
            len: 32768,
        },
        Request::Write {
            id: 4,
            handle: b(b"h"),
            offset: 0,
            data: Bytes::from(vec![0xa5; 1000]),
        },
        Request::Write {
            id: 4,
            handle: b(b"h"),
            offset: 7,
            data: b(b""),
        },
        Request::Lstat {
            id: 5,
            path: b(b"."),
        },
        Request::Fstat {
            id: 6,
            handle: b(b"handle"),
        },
        Request::Setstat {
            id: 7,
            path: b(b"/x"),
            attrs: FileAttributes {
                atime_mtime: Some((0, 0)),
                ..Default::default()
            },
        },
        Request::Fsetstat {
            id: 8,
            handle: b(b"h"),
            attrs: FileAttributes {
                size: Some(0),
                ..Default::default()
            },
        },
        Request::Opendir {
            id: 9,
            path: b(b"/"),
        },
        Request::Readdir {
            id: 10,
            handle: b(b"d"),
        },
        Request::Remove {
            id: 11,
            path: b(b"gone"),
        },
        Request::Mkdir {
            id: 12,
            path: b(b"new"),
            attrs: FileAttributes::default(),
        },
        Request::Rmdir {
            id: 13,
            path: b(b"old"),
        },
        Request::Realpath {
            id: 14,
            path: b(b""),
        },
        Request::Stat {
            id: 15,
            path: b(b"/a/b/../c"),
        },
        Request::Rename {
            id: 16,
            old: b(b"a"),
            new: b(b"b"),
        },
        Request::Readlink {
            id: 17,
            path: b(b"l"),
        },
        Request::Symlink {
            id: 18,
            linkpath: b(b"link"),
            targetpath: b(b"target"),
        },
    ];
    for (i, request) in sample_extended().into_iter().enumerate() {
        v.push(Request::Extended {
            id: 100 + i as u32,
            request,
        });
    }
    v
}

fn sample_responses() -> Vec<Response> {
    vec![
        Response::Version {
            version: 3,
            extensions: vec![
                (b(ext_name::POSIX_RENAME), b(b"1")),
                (b(ext_name::STATVFS), b(b"2")),
            ],
        },
        Response::Version {
            version: 3,
            extensions: vec![],
        },
        Response::Status {
            id: 1,
            code: StatusCode::Ok,
            message: String::new(),
        },
        Response::Status {
            id: 2,
            code: StatusCode::NoSuchFile,
            message: "No such file: «ü»".to_owned(),
        },
        Response::Handle {
            id: 3,
            handle: b(b"1"),
        },
        Response::Data {
            id: 4,
            data: Bytes::from(vec![7; 32768]),
        },
        Response::Data {
            id: 4,
            data: b(b""),
        },
        Response::Name {
            id: 5,
            entries: vec![
                NameEntry {
                    filename: b(b"a.txt"),
                    longname: b(b"-rw-r--r--    1 0 0 5 Jan  1  2020 a.txt"),
                    attrs: full_attrs(),
                },
                NameEntry {
                    filename: b(b"\xff\xfe"),
                    longname: b(b""),
                    attrs: FileAttributes::default(),
                },
            ],
        },
        Response::Name {
            id: 6,
            entries: vec![],
        },
        Response::Attrs {
            id: 7,
            attrs: full_attrs(),
        },
        Response::ExtendedReply {
            id: 8,
            data: Limits {
                max_packet_len: 1,
                max_read_len: 2,
                max_write_len: 3,
                max_open_handles: 4,
            }
            .to_bytes(),
        },
        Response::ExtendedReply {
            id: 9,
            data: b(b""),
        },
    ]
}

fn encode_request(r: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

fn encode_response(r: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

/// The payload of a framed packet, after checking the frame covers it exactly.
fn payload(framed: &[u8]) -> Bytes {
    assert_eq!(
        check_frame(framed, u32::MAX),
        Ok(Frame::Complete(framed.len()))
    );
    Bytes::copy_from_slice(&framed[4..])
}

/// Concatenates wire pieces.
fn wire(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------- round trips

#[test]
fn every_request_round_trips() {
    for req in sample_requests() {
        let bytes = encode_request(&req);
        assert_eq!(Request::decode(payload(&bytes)), Ok(req.clone()), "{req:?}");
    }
}

#[test]
fn every_extended_request_is_covered() {
    let mut names: Vec<&'static str> = sample_extended().iter().map(|e| e.info().name).collect();
    names.dedup();
    let table: Vec<&'static str> = OPERATIONS
        .iter()
        .filter(|o| o.opcode == packet_type::EXTENDED)
        .map(|o| o.name)
        .collect();
    assert_eq!(names, table);
}

#[test]
fn every_response_round_trips() {
    for resp in sample_responses() {
        let bytes = encode_response(&resp);
        assert_eq!(bytes.len(), resp.encoded_len(), "{resp:?}");
        assert_eq!(
            Response::decode(payload(&bytes)),
            Ok(resp.clone()),
            "{resp:?}"
        );
    }
}

#[test]
fn encode_appends_without_clearing() {
    let mut out = vec![1, 2, 3];
    Response::Handle {
        id: 1,
        handle: b(b"h"),
    }
    .encode(&mut out);
    Request::Close {
        id: 1,
        handle: b(b"h"),
    }
    .encode(&mut out);
    assert_eq!(&out[..3], &[1, 2, 3]);
    let Ok(Frame::Complete(n)) = check_frame(&out[3..], 100) else {
        panic!("first packet incomplete");
    };
    assert_eq!(
        Response::decode(Bytes::copy_from_slice(&out[3 + 4..3 + n])).unwrap(),
        Response::Handle {
            id: 1,
            handle: b(b"h")
        }
    );
    assert_eq!(
        check_frame(&out[3 + n..], 100),
        Ok(Frame::Complete(out.len() - 3 - n))
    );
}

#[test]
fn decoded_strings_share_the_payload() {
    let bytes = encode_request(&Request::Write {
        id: 1,
        handle: b(b"h"),
        offset: 0,
        data: Bytes::from(vec![9; 4096]),
    });
    let payload = payload(&bytes);
    let range = payload.as_ptr_range();
    let Ok(Request::Write { data, .. }) = Request::decode(payload.clone()) else {
        panic!("not a write");
    };
    assert!(range.contains(&data.as_ptr()), "data was copied");
}

// ---------------------------------------------------------- hand-written vectors

#[test]
fn known_bytes_init_and_version() {
    let init: &[u8] = b"\x00\x00\x00\x05\x01\x00\x00\x00\x03";
    assert_eq!(
        Request::decode(payload(init)),
        Ok(Request::Init {
            version: 3,
            extensions: vec![]
        })
    );
    // VERSION 3 with one extension "posix-rename@openssh.com" = "1".
    // Length: type 1 + version 4 + (4 + 24) + (4 + 1) = 38 = 0x26.
    let version = wire(&[
        b"\x00\x00\x00\x26\x02\x00\x00\x00\x03",
        b"\x00\x00\x00\x18posix-rename@openssh.com",
        b"\x00\x00\x00\x011",
    ]);
    let resp = Response::Version {
        version: 3,
        extensions: vec![(b(b"posix-rename@openssh.com"), b(b"1"))],
    };
    assert_eq!(Response::decode(payload(&version)), Ok(resp.clone()));
    assert_eq!(encode_response(&resp), version);
}

#[test]
fn known_bytes_open() {
    // OPEN id 1, "/tmp/a", READ|WRITE|CREAT, attrs PERMISSIONS 0644.
    // Length: 1 + 4 + (4 + 6) + 4 + 4 + 4 = 27 = 0x1b.
    let open = wire(&[
        b"\x00\x00\x00\x1b\x03\x00\x00\x00\x01",
        b"\x00\x00\x00\x06/tmp/a",
        b"\x00\x00\x00\x0b",
        b"\x00\x00\x00\x04\x00\x00\x01\xa4",
    ]);
    let req = Request::Open {
        id: 1,
        path: b(b"/tmp/a"),
        pflags: pflags::READ | pflags::WRITE | pflags::CREAT,
        attrs: FileAttributes {
            permissions: Some(0o644),
            ..Default::default()
        },
    };
    assert_eq!(Request::decode(payload(&open)), Ok(req.clone()));
    assert_eq!(encode_request(&req), open);
    assert!(req.writes());
}

#[test]
fn known_bytes_read_and_write() {
    // READ id 7, handle "h1", offset 2^32, len 32768.
    let read = wire(&[
        b"\x00\x00\x00\x17\x05\x00\x00\x00\x07",
        b"\x00\x00\x00\x02h1",
        b"\x00\x00\x00\x01\x00\x00\x00\x00",
        b"\x00\x00\x80\x00",
    ]);
    let req = Request::Read {
        id: 7,
        handle: b(b"h1"),
        offset: 1 << 32,
        len: 32768,
    };
    assert_eq!(Request::decode(payload(&read)), Ok(req.clone()));
    assert_eq!(encode_request(&req), read);

    // WRITE id 8, handle "h1", offset 5, data "hello". Length 28 = 0x1c.
    let write = wire(&[
        b"\x00\x00\x00\x1c\x06\x00\x00\x00\x08",
        b"\x00\x00\x00\x02h1",
        b"\x00\x00\x00\x00\x00\x00\x00\x05",
        b"\x00\x00\x00\x05hello",
    ]);
    let req = Request::Write {
        id: 8,
        handle: b(b"h1"),
        offset: 5,
        data: b(b"hello"),
    };
    assert_eq!(Request::decode(payload(&write)), Ok(req.clone()));
    assert_eq!(encode_request(&req), write);
}

#[test]
fn known_bytes_symlink_uses_openssh_order() {
    // SYMLINK id 9: first string "t" (target), second "l" (link path).
    let symlink = wire(&[
        b"\x00\x00\x00\x0f\x14\x00\x00\x00\x09",
        b"\x00\x00\x00\x01t",
        b"\x00\x00\x00\x01l",
    ]);
    let req = Request::Symlink {
        id: 9,
        linkpath: b(b"l"),
        targetpath: b(b"t"),
    };
    assert_eq!(Request::decode(payload(&symlink)), Ok(req.clone()));
    assert_eq!(encode_request(&req), symlink);
}

#[test]
fn known_bytes_extended_posix_rename() {
    let ext = wire(&[
        b"\x00\x00\x00\x2b\xc8\x00\x00\x00\x0a",
        b"\x00\x00\x00\x18posix-rename@openssh.com",
        b"\x00\x00\x00\x01a",
        b"\x00\x00\x00\x01b",
    ]);
    let req = Request::Extended {
        id: 10,
        request: ExtendedRequest::PosixRename {
            old: b(b"a"),
            new: b(b"b"),
        },
    };
    assert_eq!(Request::decode(payload(&ext)), Ok(req.clone()));
    assert_eq!(encode_request(&req), ext);
}

#[test]
fn known_bytes_status() {
    // STATUS id 3, NO_SUCH_FILE, "No such file", language "".
    // Length: 1 + 4 + 4 + (4 + 12) + 4 = 29 = 0x1d.
    let status = wire(&[
        b"\x00\x00\x00\x1d\x65\x00\x00\x00\x03",
        b"\x00\x00\x00\x02",
        b"\x00\x00\x00\x0cNo such file",
        b"\x00\x00\x00\x00",
    ]);
    let resp = Response::Status {
        id: 3,
        code: StatusCode::NoSuchFile,
        message: "No such file".into(),
    };
    assert_eq!(Response::decode(payload(&status)), Ok(resp.clone()));
    assert_eq!(encode_response(&resp), status);

    // A language tag from another server is ignored; bad UTF-8 is replaced.
    let other = wire(&[
        b"\x00\x00\x00\x19\x65\x00\x00\x00\x03",
        b"\x00\x00\x00\x04",
        b"\x00\x00\x00\x03a\xffb",
        b"\x00\x00\x00\x05en-US",
    ]);
    assert_eq!(
        Response::decode(payload(&other)),
        Ok(Response::Status {
            id: 3,
            code: StatusCode::Failure,
            message: "a\u{fffd}b".into()
        })
    );
}

#[test]
fn known_bytes_name() {
    // NAME id 4, one entry "a", longname "l", attrs SIZE|ACMODTIME 5, (1, 2).
    // Length: 1 + 4 + 4 + 5 + 5 + 4 + 8 + 8 = 39 = 0x27.
    let name = wire(&[
        b"\x00\x00\x00\x27\x68\x00\x00\x00\x04",
        b"\x00\x00\x00\x01",
        b"\x00\x00\x00\x01a",
        b"\x00\x00\x00\x01l",
        b"\x00\x00\x00\x09",
        b"\x00\x00\x00\x00\x00\x00\x00\x05",
        b"\x00\x00\x00\x01\x00\x00\x00\x02",
    ]);
    let resp = Response::Name {
        id: 4,
        entries: vec![NameEntry {
            filename: b(b"a"),
            longname: b(b"l"),
            attrs: FileAttributes {
                size: Some(5),
                atime_mtime: Some((1, 2)),
                ..Default::default()
            },
        }],
    };
    assert_eq!(Response::decode(payload(&name)), Ok(resp.clone()));
    assert_eq!(encode_response(&resp), name);
}

#[test]
fn data_header_matches_data_encoding() {
    for len in [0usize, 1, 5, 32768] {
        let resp = Response::Data {
            id: 0xdead_beef,
            data: Bytes::from(vec![1; len]),
        };
        let bytes = encode_response(&resp);
        let header = data_header(0xdead_beef, len as u32);
        assert_eq!(&bytes[..DATA_HEADER_LEN], &header[..]);
        assert_eq!(bytes.len(), DATA_HEADER_LEN + len);
    }
    assert_eq!(
        data_header(1, 5),
        *b"\x00\x00\x00\x0e\x67\x00\x00\x00\x01\x00\x00\x00\x05"
    );
}

// ------------------------------------------------------------------ truncation

/// Messages whose tail is a list running to the end of the packet (or raw
/// data): some strict prefixes of them are themselves valid messages.
fn has_open_tail_request(r: &Request) -> bool {
    matches!(
        r,
        Request::Init { .. }
            | Request::Extended {
                request: ExtendedRequest::Unknown { .. },
                ..
            }
    )
}

#[test]
fn every_request_prefix_is_truncated() {
    for req in sample_requests() {
        let bytes = encode_request(&req);
        let full = payload(&bytes);
        for n in 0..full.len() {
            let got = Request::decode(full.slice(..n));
            match got {
                Err(e) => {
                    assert_eq!(e.kind, DecodeErrorKind::Truncated, "{req:?} at {n}");
                    let id_readable = n >= 5 && req.id().is_some();
                    assert_eq!(e.id, req.id().filter(|_| id_readable), "{req:?} at {n}");
                }
                Ok(shorter) => {
                    assert!(has_open_tail_request(&req), "{req:?} at {n}: {shorter:?}");
                    assert_ne!(shorter, req);
                }
            }
        }
    }
}

#[test]
fn every_response_prefix_is_truncated() {
    for resp in sample_responses() {
        let bytes = encode_response(&resp);
        let full = payload(&bytes);
        for n in 0..full.len() {
            match Response::decode(full.slice(..n)) {
                Err(e) => {
                    assert_eq!(e.kind, DecodeErrorKind::Truncated, "{resp:?} at {n}");
                    let id_readable = n >= 5 && resp.id().is_some();
                    assert_eq!(e.id, resp.id().filter(|_| id_readable));
                }
                Ok(shorter) => {
                    assert!(
                        matches!(
                            resp,
                            Response::Version { .. } | Response::ExtendedReply { .. }
                        ),
                        "{resp:?} at {n}: {shorter:?}"
                    );
                    assert_ne!(shorter, resp);
                }
            }
        }
    }
}

// --------------------------------------------------------- types and hostility

#[test]
fn unknown_request_type_reports_id() {
    let e = Request::decode(b(b"\x63\x00\x00\x00\x09rest")).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::UnknownType(0x63));
    assert_eq!(e.id, Some(9));
    assert_eq!(e.status_code(), StatusCode::OpUnsupported);
    // A response type sent as a request is unknown too.
    let e = Request::decode(b(b"\x65\x00\x00\x00\x02")).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::UnknownType(packet_type::STATUS));
    assert_eq!(e.id, Some(2));
    // Too short for an id: still UnknownType, without id.
    let e = Request::decode(b(b"\xfa\x00")).unwrap_err();
    assert_eq!((e.id, e.kind), (None, DecodeErrorKind::UnknownType(0xfa)));
}

#[test]
fn unknown_response_type() {
    let e = Response::decode(b(b"\x03\x00\x00\x00\x09")).unwrap_err();
    assert_eq!((e.id, e.kind), (Some(9), DecodeErrorKind::UnknownType(3)));
    let e =
        Response::decode(b(b"\x65\x00\x00\x00\x01\x00\x00\x00\x09\0\0\0\0\0\0\0\0")).unwrap_err();
    assert_eq!(e.id, Some(1));
    assert!(matches!(e.kind, DecodeErrorKind::BadValue(_)));
}

#[test]
fn empty_payload_is_truncated() {
    assert_eq!(
        Request::decode(Bytes::new()),
        Err(DecodeError {
            id: None,
            kind: DecodeErrorKind::Truncated
        })
    );
    assert_eq!(
        Response::decode(Bytes::new()).unwrap_err().kind,
        DecodeErrorKind::Truncated
    );
}

#[test]
fn huge_declared_lengths_fail_cleanly() {
    // OPEN with a path of length u32::MAX.
    let e = Request::decode(b(b"\x03\x00\x00\x00\x01\xff\xff\xff\xff/tmp")).unwrap_err();
    assert_eq!((e.id, e.kind), (Some(1), DecodeErrorKind::Truncated));
    // SETSTAT whose attrs declare u32::MAX extended pairs.
    let e = Request::decode(b(
        b"\x09\x00\x00\x00\x02\x00\x00\x00\x00\x80\x00\x00\x00\xff\xff\xff\xff\0\0\0\0\0\0\0\0",
    ))
    .unwrap_err();
    assert_eq!((e.id, e.kind), (Some(2), DecodeErrorKind::Truncated));
    // NAME declaring u32::MAX entries.
    let e = Response::decode(b(
        b"\x68\x00\x00\x00\x03\xff\xff\xff\xff\0\0\0\0\0\0\0\0\0\0\0\0",
    ))
    .unwrap_err();
    assert_eq!((e.id, e.kind), (Some(3), DecodeErrorKind::Truncated));
    // WRITE whose data length exceeds the packet by one byte.
    let e = Request::decode(b(
        b"\x06\x00\x00\x00\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02x",
    ))
    .unwrap_err();
    assert_eq!((e.id, e.kind), (Some(4), DecodeErrorKind::Truncated));
}

#[test]
fn users_groups_list_must_be_whole_u32s() {
    let mut out = Vec::new();
    Request::Extended {
        id: 5,
        request: ExtendedRequest::Unknown {
            name: b(ext_name::USERS_GROUPS_BY_ID),
            data: b(b"\x00\x00\x00\x03abc\x00\x00\x00\x00"),
        },
    }
    .encode(&mut out);
    let e = Request::decode(payload(&out)).unwrap_err();
    assert_eq!(e.id, Some(5));
    assert!(matches!(e.kind, DecodeErrorKind::BadValue(_)));
    assert!(e.to_string().contains("multiple of 4"), "{e}");
}

#[test]
fn trailing_bytes_are_ignored() {
    let mut bytes = encode_request(&Request::Rename {
        id: 1,
        old: b(b"a"),
        new: b(b"b"),
    })[4..]
        .to_vec();
    bytes.extend_from_slice(b"\x00\x00\x00\x01"); // a v5 rename flags word
    assert_eq!(
        Request::decode(Bytes::from(bytes)),
        Ok(Request::Rename {
            id: 1,
            old: b(b"a"),
            new: b(b"b")
        })
    );
}

#[test]
fn known_extension_name_in_unknown_decodes_as_known() {
    let mut out = Vec::new();
    Request::Extended {
        id: 1,
        request: ExtendedRequest::Unknown {
            name: b(ext_name::LIMITS),
            data: b(b""),
        },
    }
    .encode(&mut out);
    assert_eq!(
        Request::decode(payload(&out)),
        Ok(Request::Extended {
            id: 1,
            request: ExtendedRequest::Limits
        })
    );
}

// ----------------------------------------------------------- operation facts

#[test]
fn operation_table() {
    let mut names: Vec<&str> = OPERATIONS.iter().map(|o| o.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate operation names");
    for req in sample_requests() {
        let info = req.info();
        assert!(OPERATIONS.contains(&info), "{info:?}");
        let bytes = encode_request(&req);
        assert_eq!(bytes[4], info.opcode);
    }
}

#[test]
fn writes_classification() {
    let open = |f| Request::Open {
        id: 1,
        path: b(b"p"),
        pflags: f,
        attrs: FileAttributes::default(),
    };
    assert!(!open(pflags::READ).writes());
    assert!(!open(pflags::READ | pflags::EXCL).writes());
    for f in [pflags::WRITE, pflags::APPEND, pflags::CREAT, pflags::TRUNC] {
        assert!(open(pflags::READ | f).writes());
    }
    let writing: Vec<&str> = sample_requests()
        .iter()
        .filter(|r| !matches!(r, Request::Open { .. }) && r.writes())
        .map(|r| r.info().name)
        .collect();
    assert_eq!(
        writing,
        [
            "write",
            "write",
            "setstat",
            "fsetstat",
            "remove",
            "mkdir",
            "rmdir",
            "rename",
            "symlink",
            "posix-rename",
            "hardlink",
            "lsetstat",
            "copy-data"
        ]
    );
    assert_eq!(
        Request::Init {
            version: 3,
            extensions: vec![]
        }
        .id(),
        None
    );
}

// ------------------------------------------------------------------- mutation

/// Small deterministic generator (xorshift64*) so the mutation test needs no
/// dependency and is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        if v.is_empty() {
            v.push(rng.next() as u8);
            continue;
        }
        let i = rng.below(v.len());
        match rng.below(4) {
            0 => v[i] = rng.next() as u8,
            1 => v[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)],
            2 => {
                v.truncate(i);
            }
            _ => v.insert(i, rng.next() as u8),
        }
    }
    v
}

#[test]
fn mutated_packets_never_panic_and_round_trip() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let requests: Vec<Bytes> = sample_requests()
        .iter()
        .map(|r| payload(&encode_request(r)))
        .collect();
    let responses: Vec<Bytes> = sample_responses()
        .iter()
        .map(|r| payload(&encode_response(r)))
        .collect();
    for _ in 0..200 {
        for seed in &requests {
            let m = Bytes::from(mutate(&mut rng, seed));
            if let Ok(req) = Request::decode(m) {
                let again = Request::decode(payload(&encode_request(&req)));
                assert_eq!(again, Ok(req));
            }
        }
        for seed in &responses {
            let m = Bytes::from(mutate(&mut rng, seed));
            if let Ok(resp) = Response::decode(m) {
                let bytes = encode_response(&resp);
                assert_eq!(bytes.len(), resp.encoded_len());
                assert_eq!(Response::decode(payload(&bytes)), Ok(resp));
            }
        }
    }
}
