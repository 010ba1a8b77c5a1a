//! Connections from a trusted load balancer (`--proxy-protocol`): the
//! PROXY protocol header it sends before the client's bytes is read, and
//! the address it gives stands for the connection's from then on
//! (penalties, limits, logs, the auth proxy's `client_ip`).

use std::net::SocketAddr;

use ferry_proxy_header::{parse, Parse, MIN_LEN, V2_MAX_DATA};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Why a connection from a trusted balancer had no usable header.
#[derive(Debug)]
pub enum HeaderError {
    /// Closed before sending anything: a plain TCP health check.
    Closed,
    /// Closed or failed part way.
    Io(std::io::Error),
    /// Not a valid header.
    Invalid(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Closed => f.write_str("closed before sending a PROXY header"),
            HeaderError::Io(e) => write!(f, "PROXY header cut short: {e}"),
            HeaderError::Invalid(why) => write!(f, "bad PROXY header: {why}"),
        }
    }
}

/// Read the header at the start of `stream`, and not a byte more. The
/// client's address, or `None` when the header gives none (a balancer's
/// own health check): the connection then stands for itself.
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = vec![0u8; 16 + V2_MAX_DATA];
    let mut have = 0;
    let mut want = MIN_LEN;
    loop {
        while have < want {
            let n = stream
                .read(&mut buf[have..want])
                .await
                .map_err(HeaderError::Io)?;
            if n == 0 {
                return Err(if have == 0 {
                    HeaderError::Closed
                } else {
                    HeaderError::Io(std::io::ErrorKind::UnexpectedEof.into())
                });
            }
            have += n;
        }
        match parse(&buf[..have]).map_err(|e| HeaderError::Invalid(e.0))? {
            Parse::Need(k) => want = have + k,
            Parse::Done(h) => {
                debug_assert_eq!(h.len, have);
                return Ok(h.source);
            }
        }
    }
}
