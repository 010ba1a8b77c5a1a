//! Hashes computed on the server by `md5sum`/`sha1sum` over exec.

use ferry_backend::HashKind;

/// `'...'` quoting for a POSIX shell: a `'` becomes `'\''`.
pub(crate) fn shell_quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'\'');
    for &b in s {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// The hash from `md5sum`-style output: the first field, lower case, of
/// the expected length.
pub(crate) fn parse_hash(out: &[u8], kind: HashKind) -> Option<String> {
    let len = match kind {
        HashKind::Md5 => 32,
        HashKind::Sha1 => 40,
        _ => return None,
    };
    let first = out
        .split(|b| b.is_ascii_whitespace())
        .find(|f| !f.is_empty())?;
    // GNU coreutils marks escaped file names with a leading backslash.
    let first = first.strip_prefix(b"\\").unwrap_or(first);
    if first.len() != len || !first.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(String::from_utf8_lossy(first).to_ascii_lowercase())
}
