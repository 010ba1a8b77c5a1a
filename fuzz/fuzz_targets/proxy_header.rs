//! Reads a PROXY protocol header from arbitrary bytes the way the server
//! does: the shortest header's length first, then exactly what the parser
//! asks for. Nothing may panic, the parser never asks for nothing, and a
//! header found ends exactly where the reading stopped (never past it).
#![no_main]

use ferry_proxy_header::{parse, Parse, MIN_LEN, V1_MAX_LEN, V2_MAX_DATA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut have = MIN_LEN.min(data.len());
    loop {
        match parse(&data[..have]) {
            Err(_) => return,
            Ok(Parse::Done(h)) => {
                assert_eq!(h.len, have);
                assert!(h.len <= (16 + V2_MAX_DATA).max(V1_MAX_LEN));
                // What follows the header does not change what it says.
                assert_eq!(parse(data).ok(), Some(Parse::Done(h)));
                return;
            }
            Ok(Parse::Need(k)) => {
                assert!(k > 0);
                if have + k > data.len() {
                    return;
                }
                have += k;
            }
        }
    }
});
