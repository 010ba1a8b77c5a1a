//! The cache's records on disk: one small JSON file per cached file under
//! `vfsMeta/`, at the same relative path as its data under `vfs/`.
//!
//! A record is written whenever a file becomes dirty, when it is closed
//! and when it has been uploaded, by writing a temporary file and renaming
//! it over the old record, so a crash leaves either the old or the new
//! record, never half of one. A dirty record is what makes a restarted
//! server upload the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Temporary record files start with this (never a record themselves).
pub(crate) const TEMP_PREFIX: &str = ".ferry-meta-";

/// One byte range of real data.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Span {
    #[serde(rename = "Pos")]
    pub(crate) pos: u64,
    #[serde(rename = "Size")]
    pub(crate) size: u64,
}

/// A cached file's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    /// Modification time, nanoseconds since the epoch.
    #[serde(rename = "ModTime")]
    pub(crate) mtime: i64,
    /// Last use, nanoseconds since the epoch (for eviction).
    #[serde(rename = "ATime")]
    pub(crate) atime: i64,
    /// File size.
    #[serde(rename = "Size")]
    pub(crate) size: u64,
    /// Bytes below this that are not in `ranges` are still on the remote.
    #[serde(rename = "Base")]
    pub(crate) base: u64,
    /// The ranges of real data in the data file.
    #[serde(rename = "Rs")]
    pub(crate) ranges: Vec<Span>,
    /// Size and modification time of the remote file the data came from
    /// (`"size,mtime-ns"`), if any.
    #[serde(rename = "Fingerprint", default)]
    pub(crate) fingerprint: Option<String>,
    /// Changed and not yet uploaded.
    #[serde(rename = "Dirty")]
    pub(crate) dirty: bool,
    /// The remote has a file at this path (an older version, if dirty).
    #[serde(rename = "OnRemote", default)]
    pub(crate) on_remote: bool,
    /// Permission bits to create the file with, if the client gave some.
    #[serde(rename = "Mode", default)]
    pub(crate) mode: Option<u32>,
}

pub(crate) fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn from_nanos(n: i64) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

/// The fingerprint string of a remote file: size, modification time and
/// the store's change marker (inode and change time, or ETag), so a file
/// rewritten with the same size and a restored time is still noticed.
pub(crate) fn fingerprint(m: &ferry_backend::Metadata) -> String {
    let t = m.mtime.map(|t| to_nanos(t).to_string()).unwrap_or_default();
    let c = m.change.map(|c| format!("{c:x}")).unwrap_or_default();
    format!("{},{t},{c}", m.size)
}

/// Write `record` at `path` atomically.
pub(crate) fn write(path: &Path, record: &Record) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tag: u64 = rand::RngExt::random(&mut rand::rng());
    let tmp = dir.join(format!("{TEMP_PREFIX}{tag:016x}"));
    let body = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Read the record at `path`.
pub(crate) fn read(path: &Path) -> std::io::Result<Record> {
    let body = std::fs::read(path)?;
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Every record file below `root`, with its path relative to `root`.
pub(crate) fn walk(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(p);
            } else if ft.is_file() {
                if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                if let Ok(rel) = p.strip_prefix(root) {
                    out.push((p.clone(), rel.to_path_buf()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_times_keep_nanoseconds() {
        let dir = tempfile::tempdir().unwrap();
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let rec = Record {
            mtime: to_nanos(t),
            atime: to_nanos(t),
            size: 10,
            base: 4,
            ranges: vec![Span { pos: 0, size: 2 }],
            fingerprint: Some(fingerprint(&ferry_backend::Metadata {
                file_type: ferry_backend::FileType::File,
                size: 4,
                mtime: Some(t),
                atime: None,
                permissions: None,
                owner: None,
                change: Some(7),
            })),
            dirty: true,
            on_remote: true,
            mode: Some(0o640),
        };
        let p = dir.path().join("a/b/c");
        write(&p, &rec).unwrap();
        assert_eq!(read(&p).unwrap(), rec);
        assert_eq!(from_nanos(rec.mtime), t);
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(from_nanos(to_nanos(before)), before);
        let found = walk(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, PathBuf::from("a/b/c"));
    }
}
