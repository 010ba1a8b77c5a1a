//! Options of the VFS, typed once at the CLI boundary.

use std::fmt;
use std::str::FromStr;

/// How much the VFS caches file data on disk (`--vfs-cache-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheMode {
    /// No disk cache: reads stream, writes go straight to the backend.
    #[default]
    Off,
    /// Read+write opens are buffered on disk.
    Minimal,
    /// Every write goes through the disk cache.
    Writes,
    /// Reads and writes are cached.
    Full,
}

impl FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(CacheMode::Off),
            "minimal" => Ok(CacheMode::Minimal),
            "writes" => Ok(CacheMode::Writes),
            "full" => Ok(CacheMode::Full),
            _ => Err(format!(
                "unknown cache mode {s:?}: use off, minimal, writes or full"
            )),
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheMode::Off => "off",
            CacheMode::Minimal => "minimal",
            CacheMode::Writes => "writes",
            CacheMode::Full => "full",
        })
    }
}

/// The serving policy of one VFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfsOptions {
    /// Refuse every change (`--read-only`).
    pub read_only: bool,
    /// Never set modification times (`--no-modtime`).
    pub no_modtime: bool,
    /// Permission bits shown for directories (`--dir-perms`).
    pub dir_perms: u32,
    /// Permission bits shown for files (`--file-perms`).
    pub file_perms: u32,
    /// Bits cleared from shown and created permissions (`--umask`).
    pub umask: u32,
    /// Show `dir_perms`/`file_perms` even when the backend stores real
    /// permissions (set when either flag is given explicitly), and ignore
    /// chmod.
    pub override_perms: bool,
    /// Owner shown for every file (`--uid`), instead of the stored one.
    pub uid: Option<u32>,
    /// Group shown for every file (`--gid`), instead of the stored one.
    pub gid: Option<u32>,
    /// Owner shown when the backend stores none (the server's own uid).
    pub default_uid: u32,
    /// Group shown when the backend stores none (the server's own gid).
    pub default_gid: u32,
    /// Keep the setuid, setgid and sticky bits a client sets or creates
    /// files with (`--allow-special-bits`); cleared otherwise.
    pub special_bits: bool,
    /// The file cache mode.
    pub cache_mode: CacheMode,
    /// Never compute or offer content hashes (`--no-checksum`).
    pub no_checksum: bool,
    /// How long directory listings are cached (`--dir-cache-time`; zero
    /// turns the cache off).
    pub dir_cache_time: std::time::Duration,
    /// Whether to ask the backend for changes made behind Ferry's back
    /// (`--poll-interval`; zero turns it off). Backends that push changes
    /// (local) report them at once; the interval is for those that must be
    /// polled.
    pub poll_interval: std::time::Duration,
    /// Bytes read ahead per open file on high-latency stores
    /// (`--buffer-size`; zero turns read-ahead off).
    pub buffer_size: usize,
    /// What read-ahead may hold, all open files of every VFS that shares
    /// it together (`--max-buffer-memory`).
    pub buffer_budget: crate::budget::BufferBudgetRef,
    /// The on-disk file cache (used unless `cache_mode` is off).
    pub cache: CacheOptions,
    /// The first ranged read of a streamed file (`--vfs-read-chunk-size`;
    /// 0: read the rest of the file in one request).
    pub read_chunk_size: u64,
    /// Ranged reads double up to this (`--vfs-read-chunk-size-limit`;
    /// `None`: no limit).
    pub read_chunk_size_limit: Option<u64>,
    /// Parallel ranged reads (`--vfs-read-chunk-streams`; 0: one stream).
    pub read_chunk_streams: usize,
    /// Refuse reads that would need a new ranged read (`--no-seek`).
    pub no_seek: bool,
    /// Which paths are served (`--include`, `--exclude`, ...).
    pub filter: crate::FilterRef,
}

/// Options of the on-disk file cache (`--vfs-cache-*`, `--cache-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// Where cached file data goes: `<cache-dir>/vfs/<remote>/<root>`.
    pub data_dir: std::path::PathBuf,
    /// Where the cache's records go: `<cache-dir>/vfsMeta/<remote>/<root>`.
    pub meta_dir: std::path::PathBuf,
    /// How long after the last close a changed file is uploaded
    /// (`--vfs-write-back`).
    pub write_back: std::time::Duration,
    /// Uploads running at once (`--transfers`).
    pub transfers: usize,
    /// Unused clean files older than this are dropped
    /// (`--vfs-cache-max-age`).
    pub max_age: std::time::Duration,
    /// Drop least recently used clean files while the cache holds more
    /// (`--vfs-cache-max-size`; `None`: no limit).
    pub max_size: Option<u64>,
    /// Drop least recently used clean files while the disk has less free
    /// (`--vfs-cache-min-free-space`; `None`: no limit).
    pub min_free_space: Option<u64>,
    /// How often the cache is cleaned (`--vfs-cache-poll-interval`).
    pub poll_interval: std::time::Duration,
    /// Bytes fetched ahead onto disk for sequential reads in full mode, on
    /// top of `buffer_size` (`--vfs-read-ahead`).
    pub read_ahead: u64,
    /// Compare only size and modification time when checking whether a
    /// cached file still matches the remote (`--vfs-fast-fingerprint`).
    /// Ferry's fingerprint never includes a hash, so this changes nothing;
    /// it is accepted for rclone compatibility.
    pub fast_fingerprint: bool,
    /// The longest wait between attempts of a failing upload.
    pub max_retry_delay: std::time::Duration,
    /// Where write-back uploads are counted as transfers (`--stats`).
    pub stats: StatsRef,
}

/// The server's transfer statistics, if kept; compared by identity.
#[derive(Debug, Clone, Default)]
pub struct StatsRef(pub Option<std::sync::Arc<ferry_stats::Stats>>);

impl PartialEq for StatsRef {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for StatsRef {}

impl Default for CacheOptions {
    fn default() -> Self {
        let base = std::env::temp_dir().join("ferry-cache");
        CacheOptions {
            data_dir: base.join("vfs"),
            meta_dir: base.join("vfsMeta"),
            write_back: std::time::Duration::from_secs(5),
            transfers: 4,
            max_age: std::time::Duration::from_secs(3600),
            max_size: None,
            min_free_space: None,
            poll_interval: std::time::Duration::from_secs(60),
            read_ahead: 0,
            fast_fingerprint: false,
            max_retry_delay: std::time::Duration::from_secs(300),
            stats: StatsRef::default(),
        }
    }
}

impl VfsOptions {
    /// The permission bits a client may set: setuid, setgid and sticky
    /// only when allowed (a client of a server running as root could
    /// otherwise plant a setuid-root program).
    pub(crate) fn mode_bits(&self) -> u32 {
        if self.special_bits {
            0o7777
        } else {
            0o777
        }
    }
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions {
            read_only: false,
            no_modtime: false,
            dir_perms: 0o777,
            file_perms: 0o666,
            umask: 0o022,
            override_perms: false,
            uid: None,
            gid: None,
            default_uid: 0,
            default_gid: 0,
            special_bits: false,
            cache_mode: CacheMode::Off,
            no_checksum: false,
            dir_cache_time: std::time::Duration::from_secs(300),
            poll_interval: std::time::Duration::from_secs(60),
            buffer_size: 16 << 20,
            buffer_budget: Default::default(),
            cache: CacheOptions::default(),
            read_chunk_size: 128 << 20,
            read_chunk_size_limit: None,
            read_chunk_streams: 0,
            no_seek: false,
            filter: Default::default(),
        }
    }
}
