//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a load
//! balancer sends at the start of a connection to say whose it is.
//!
//! Sans I/O: [`parse`] looks at the bytes received so far and says either
//! how many more it certainly needs, or where the header ends and what it
//! says. The caller reads exactly what is asked for, so not one byte after
//! the header (the client's SSH version line) is taken from the stream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The twelve bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The shortest header of either version (`PROXY UNKNOWN\r\n`); a reader
/// may always ask for this many bytes first.
pub const MIN_LEN: usize = 15;

/// The longest version 1 header, CRLF included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;

/// The longest version 2 header accepted: the fixed 16 bytes and up to
/// this much address and TLV data (an IPv6 address block is 36 bytes; load
/// balancers add a few TLVs).
pub const V2_MAX_DATA: usize = 1024;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: the connection's own data starts after it.
    pub len: usize,
    /// The client's address and port; `None` when the header carries none
    /// (version 2 `LOCAL`, such as a health check of the balancer itself;
    /// version 1 `UNKNOWN`; an unspecified or Unix-socket family), where
    /// the connection stands for itself.
    pub source: Option<SocketAddr>,
}

/// The result of looking at the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// The header is not complete: at least this many more bytes are
    /// needed, and reading exactly that many never reads past its end.
    Need(usize),
    /// A whole header.
    Done(Header),
}

/// Why the bytes are not a valid header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

fn invalid(why: impl Into<String>) -> Invalid {
    Invalid(why.into())
}

/// Look at `buf`, the first bytes of a connection. Bytes after the header
/// are allowed and ignored.
pub fn parse(buf: &[u8]) -> Result<Parse, Invalid> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < 16 {
            return Ok(Parse::Need(16 - buf.len()));
        }
        return v2(buf);
    }
    const V1: &[u8] = b"PROXY ";
    let n = buf.len().min(V1.len());
    if buf[..n] == V1[..n] {
        return v1(buf);
    }
    Err(invalid("not a PROXY protocol header"))
}

fn v2(buf: &[u8]) -> Result<Parse, Invalid> {
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(invalid(format!("version {version} (want 2)")));
    }
    let data = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if data > V2_MAX_DATA {
        return Err(invalid(format!(
            "{data} bytes of addresses and TLVs (at most {V2_MAX_DATA})"
        )));
    }
    let len = 16 + data;
    if buf.len() < len {
        return Ok(Parse::Need(len - buf.len()));
    }
    let body = &buf[16..len];
    let source = match command {
        // LOCAL: the balancer's own connection; its addresses are ignored.
        0 => None,
        1 => match buf[13] {
            // Unspecified: no address to use.
            0x00 => None,
            // TCP over IPv4: source, destination, source port, dest port.
            0x11 => {
                let a = body
                    .get(..12)
                    .ok_or_else(|| invalid("IPv4 addresses cut short"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(
                    IpAddr::V4(ip),
                    u16::from_be_bytes([a[8], a[9]]),
                ))
            }
            // TCP over IPv6.
            0x21 => {
                let a = body
                    .get(..36)
                    .ok_or_else(|| invalid("IPv6 addresses cut short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                Some(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(octets)),
                    u16::from_be_bytes([a[32], a[33]]),
                ))
            }
            // A Unix socket on the balancer's side: no network address.
            0x31 => None,
            0x12 | 0x22 | 0x32 => return Err(invalid("a datagram connection (this is TCP)")),
            f => return Err(invalid(format!("unknown address family 0x{f:02x}"))),
        },
        c => return Err(invalid(format!("unknown command {c}"))),
    };
    Ok(Parse::Done(Header { len, source }))
}

fn v1(buf: &[u8]) -> Result<Parse, Invalid> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(invalid(format!(
                "version 1 line longer than {V1_MAX_LEN} bytes"
            )));
        }
        if let Some(bad) = buf.iter().position(|&b| b == b'\n' || b == 0) {
            // A lone LF (or a NUL) where only CRLF may end the line.
            if bad == 0 || buf[bad - 1] != b'\r' {
                return Err(invalid("version 1 line not ended by CRLF"));
            }
        }
        // The CR may be here already; either way one byte more is safe.
        return Ok(Parse::Need(1));
    };
    let len = end + 2;
    if len > V1_MAX_LEN {
        return Err(invalid(format!(
            "version 1 line longer than {V1_MAX_LEN} bytes"
        )));
    }
    let line =
        std::str::from_utf8(&buf[6..end]).map_err(|_| invalid("version 1 line is not text"))?;
    let mut words = line.split(' ');
    let source = match words.next() {
        // Whatever follows UNKNOWN is to be ignored.
        Some("UNKNOWN") => None,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let parts: Vec<&str> = words.collect();
            let [src, dst, sport, dport] = parts[..] else {
                return Err(invalid(format!(
                    "version 1 {proto} line wants 4 fields, has {}",
                    parts.len()
                )));
            };
            let v4 = proto == "TCP4";
            let ip = |s: &str| -> Result<IpAddr, Invalid> {
                let ip = if v4 {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| invalid(format!("{s:?} is not an {proto} address")))
            };
            let src = ip(src)?;
            ip(dst)?;
            let sport = port(sport)?;
            port(dport)?;
            Some(SocketAddr::new(src, sport))
        }
        Some(other) => {
            return Err(invalid(format!(
                "version 1 protocol {:?} (want TCP4, TCP6 or UNKNOWN)",
                other.escape_debug().to_string()
            )))
        }
        None => unreachable!("split yields at least one word"),
    };
    Ok(Parse::Done(Header { len, source }))
}

/// A port as version 1 writes it: decimal, no sign, no leading zero.
fn port(s: &str) -> Result<u16, Invalid> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| invalid(format!("{s:?} is not a port")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `bytes` the way a reader does: MIN_LEN first, then exactly
    /// what is asked for. Returns the header and how much was consumed.
    fn read(bytes: &[u8]) -> Result<Header, Invalid> {
        let mut n = MIN_LEN.min(bytes.len());
        loop {
            match parse(&bytes[..n])? {
                Parse::Done(h) => {
                    assert_eq!(h.len, n, "a reader never reads past the header");
                    return Ok(h);
                }
                Parse::Need(k) => {
                    assert!(k > 0);
                    assert!(n + k <= bytes.len(), "asked past the end: {n}+{k}");
                    n += k;
                }
            }
        }
    }

    fn v2_header(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_1_lines() {
        let src = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        for (line, want) in [
            (
                "PROXY TCP4 203.0.113.7 10.0.0.1 56324 22\r\n",
                src("203.0.113.7:56324"),
            ),
            (
                "PROXY TCP6 2001:db8::7 2001:db8::1 4000 2022\r\n",
                src("[2001:db8::7]:4000"),
            ),
            ("PROXY TCP4 0.0.0.0 0.0.0.0 0 65535\r\n", src("0.0.0.0:0")),
            ("PROXY UNKNOWN\r\n", None),
            ("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
        ] {
            let mut bytes = line.as_bytes().to_vec();
            bytes.extend_from_slice(b"SSH-2.0-OpenSSH_9.6\r\n");
            let h = read(&bytes).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                h,
                Header {
                    len: line.len(),
                    source: want
                },
                "{line:?}"
            );
        }
        // The specification's worst case is exactly the limit.
        let a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let longest = format!("PROXY UNKNOWN {a} {a} 65535 65535\r\n");
        assert_eq!(longest.len(), V1_MAX_LEN);
        assert!(read(longest.as_bytes()).is_ok());
        let tcp6 = format!("PROXY TCP6 {a} {a} 65535 65535\r\n");
        assert!(read(tcp6.as_bytes()).is_ok());
    }

    #[test]
    fn bad_version_1_lines() {
        for line in [
            "PROXY TCP4 203.0.113.7 10.0.0.1 56324\r\n",
            "PROXY TCP4 203.0.113.7 10.0.0.1 56324 22 9\r\n",
            "PROXY TCP4 2001:db8::7 10.0.0.1 1 22\r\n",
            "PROXY TCP6 203.0.113.7 2001:db8::1 1 22\r\n",
            "PROXY TCP4 203.0.113.7 10.0.0.1 065535 22\r\n",
            "PROXY TCP4 203.0.113.7 10.0.0.1 65536 22\r\n",
            "PROXY TCP4 203.0.113.7 10.0.0.1 +1 22\r\n",
            "PROXY TCP4 203.0.113.07 10.0.0.1 1 22\r\n",
            "PROXY TCP4  203.0.113.7 10.0.0.1 1 22\r\n",
            "PROXY UDP4 203.0.113.7 10.0.0.1 1 22\r\n",
            "PROXY TCP4 203.0.113.7 10.0.0.1 1 22\n",
            "PROXY TCP4 203.0.113.7\x00 10.0.0.1 1 22\r\n",
            "PROXY  UNKNOWN\r\n",
            "SSH-2.0-OpenSSH_9.6\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert!(read(line.as_bytes()).is_err(), "{line:?} accepted");
        }
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert!(read(long.as_bytes()).is_err());
        // Never asks for more than a line's limit.
        let endless = vec![b'A'; 500];
        let mut buf = b"PROXY ".to_vec();
        buf.extend_from_slice(&endless);
        assert!(read(&buf).is_err());
    }

    #[test]
    fn version_2_headers() {
        let mut v4 = vec![203, 0, 113, 7, 10, 0, 0, 1];
        v4.extend_from_slice(&56324u16.to_be_bytes());
        v4.extend_from_slice(&22u16.to_be_bytes());
        let mut v6 = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&4000u16.to_be_bytes());
        v6.extend_from_slice(&2022u16.to_be_bytes());
        // A TLV after the addresses (PP2_TYPE_UNIQUE_ID), as balancers add.
        let mut v4_tlv = v4.clone();
        v4_tlv.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']);
        let src = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        for (bytes, want) in [
            (v2_header(1, 0x11, &v4), src("203.0.113.7:56324")),
            (v2_header(1, 0x11, &v4_tlv), src("203.0.113.7:56324")),
            (v2_header(1, 0x21, &v6), src("[2001:db8::7]:4000")),
            (v2_header(0, 0x11, &v4), None),
            (v2_header(0, 0x00, &[]), None),
            (v2_header(1, 0x00, &[]), None),
            (v2_header(1, 0x31, &[0u8; 216]), None),
        ] {
            let len = bytes.len();
            let mut with_ssh = bytes.clone();
            with_ssh.extend_from_slice(b"SSH-2.0-x\r\n");
            assert_eq!(read(&with_ssh), Ok(Header { len, source: want }));
        }
        for bad in [
            v2_header(1, 0x11, &v4[..11]),
            v2_header(1, 0x21, &v6[..35]),
            v2_header(1, 0x12, &v4),
            v2_header(1, 0x41, &v4),
            v2_header(2, 0x11, &v4),
            {
                let mut h = v2_header(1, 0x11, &v4);
                h[12] = 0x11; // version 1 in a version 2 header
                h
            },
            {
                let mut h = v2_header(1, 0x11, &[]);
                h[14..16].copy_from_slice(&2000u16.to_be_bytes());
                h.resize(16 + 2000, 0);
                h
            },
        ] {
            assert!(read(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn any_prefix_of_a_header_asks_for_more_and_no_more_than_it_needs() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 22\r\n".to_vec();
        let mut v4 = vec![203, 0, 113, 7, 10, 0, 0, 1, 0, 1, 0, 22];
        v4.extend_from_slice(&[0x05, 0x00, 0x01, b'x']);
        for h in [line, v2_header(1, 0x11, &v4)] {
            for n in 1..h.len() {
                match parse(&h[..n]) {
                    Ok(Parse::Need(k)) => assert!(n + k <= h.len(), "{n}+{k} > {}", h.len()),
                    other => panic!("prefix of {n}: {other:?}"),
                }
            }
            assert!(matches!(parse(&h), Ok(Parse::Done(_))));
        }
    }
}
