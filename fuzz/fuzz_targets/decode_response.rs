//! Decodes arbitrary bytes as a response payload. Decoding must never panic,
//! whatever decodes must survive encode -> decode unchanged, and
//! `encoded_len` must match the encoding.
#![no_main]

use bytes::Bytes;
use ferry_proto::{check_frame, Frame, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = Response::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut encoded = Vec::new();
    response.encode(&mut encoded);
    assert_eq!(encoded.len(), response.encoded_len());
    assert_eq!(
        check_frame(&encoded, u32::MAX),
        Ok(Frame::Complete(encoded.len()))
    );
    let again = Response::decode(Bytes::from(encoded).slice(4..));
    assert_eq!(again, Ok(response));
});
