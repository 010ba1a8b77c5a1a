//! `--stdio`: one SFTP session on standard input and output, with no SSH
//! layer. OpenSSH runs it as a subsystem or a forced command and does the
//! authentication; `sftp -D` runs it directly.

use std::io::IsTerminal as _;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferry_server::sftp::{self, SftpOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::args::SftpArgs;
use crate::config::{ServeConfig, UsageError};

struct StdinInput {
    stdin: tokio::io::Stdin,
    buf: BytesMut,
}

impl sftp::Input for StdinInput {
    async fn recv(&mut self) -> Option<Bytes> {
        self.buf.reserve(256 * 1024);
        match self.stdin.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(self.buf.split().freeze()),
        }
    }
}

struct StdoutOutput(tokio::io::Stdout);

impl sftp::Output for StdoutOutput {
    async fn send(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.write_all(&data).await?;
        self.0.flush().await
    }
}

/// Serve one session on stdin/stdout until stdin ends.
pub fn serve(args: &SftpArgs, cfg: ServeConfig) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() || std::io::stdout().is_terminal() {
        return Err(UsageError(
            "--stdio speaks SFTP on standard input and output and refuses to run on a terminal; run it as an SSH subsystem or with sftp -D".into(),
        )
        .into());
    }
    // serve_config refuses --stdio with --auth-proxy; clap asks for a
    // REMOTE:PATH without it.
    let target = cfg
        .target
        .clone()
        .ok_or_else(|| UsageError("--stdio needs a REMOTE:PATH to serve".into()))?;
    crate::init_logging(args)?;
    crate::runtime()?.block_on(async move {
        let (vfs, _) = crate::open_vfs(&target, &cfg).await?;
        let input = StdinInput {
            stdin: tokio::io::stdin(),
            buf: BytesMut::new(),
        };
        let output = StdoutOutput(tokio::io::stdout());
        let user = std::env::var("USER").unwrap_or_default();
        let opts = SftpOptions {
            user,
            ..SftpOptions::default()
        };
        let result = sftp::serve(vfs.clone(), Arc::new(opts), input, output).await;
        // The client is gone; the file cache still uploads what it holds.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let pool = ferry_server::login::VfsPool::new(std::time::Duration::ZERO, {
            let vfs = vfs.clone();
            move |_| {
                let vfs = vfs.clone();
                async move { Ok(vfs) }
            }
        });
        let _held = pool.get(target.clone()).await.map_err(UsageError)?;
        crate::finish_cache_uploads(&pool, &mut term, &mut int).await;
        result.map_err(|e| anyhow::anyhow!("SFTP session ended: {e}"))
    })
}
