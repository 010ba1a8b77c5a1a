//! Decodes arbitrary bytes as a request payload. Decoding must never panic,
//! and whatever decodes must survive encode -> decode unchanged.
#![no_main]

use bytes::Bytes;
use ferry_proto::{check_frame, Frame, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = Request::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut encoded = Vec::new();
    request.encode(&mut encoded);
    assert_eq!(
        check_frame(&encoded, u32::MAX),
        Ok(Frame::Complete(encoded.len()))
    );
    let again = Request::decode(Bytes::from(encoded).slice(4..));
    assert_eq!(again, Ok(request));
});
