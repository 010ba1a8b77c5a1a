//! Splits arbitrary bytes into frames with the default limit, decoding each
//! payload as a request, the way a server reads its input stream. Nothing may
//! panic and a complete frame must lie within the buffer and the limit.
#![no_main]

use bytes::Bytes;
use ferry_proto::{check_frame, Frame, Request, DEFAULT_MAX_PACKET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    let mut at = 0;
    while let Ok(Frame::Complete(n)) = check_frame(&buf[at..], DEFAULT_MAX_PACKET) {
        assert!(n > 4 && n <= buf.len() - at);
        assert!(n - 4 <= DEFAULT_MAX_PACKET as usize);
        let _ = Request::decode(buf.slice(at + 4..at + n));
        at += n;
    }
});
