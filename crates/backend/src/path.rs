//! Normalised relative paths of bytes.

use std::fmt;

/// A path below a backend's root: components separated by `/`, none of them
/// empty, `.` or `..`, no leading or trailing `/`. The empty path is the root.
///
/// Paths are bytes: SFTP and Unix file systems do not require UTF-8, so no
/// name is ever decoded lossily. Backends whose store needs text call
/// [`RelPath::to_str`] and fail cleanly on other names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(Vec<u8>);

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// A component is `.` or `..`, or empty, where a normalised path is
    /// required.
    #[error("path is not normalised")]
    NotNormal,
}

impl RelPath {
    /// The root.
    pub fn root() -> Self {
        RelPath(Vec::new())
    }

    /// Check that `bytes` is already normalised.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let bytes = bytes.into();
        if bytes.contains(&0) {
            return Err(PathError::Nul);
        }
        if !bytes.is_empty()
            && bytes
                .split(|&b| b == b'/')
                .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            return Err(PathError::NotNormal);
        }
        Ok(RelPath(bytes))
    }

    /// Resolve a client path against the directory `cwd` the way a chroot
    /// would: `.` is dropped, `..` goes up but never above the root, and an
    /// absolute path starts from the root.
    pub fn resolve(cwd: &RelPath, input: &[u8]) -> Result<Self, PathError> {
        if input.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut parts: Vec<&[u8]> = if input.first() == Some(&b'/') {
            Vec::new()
        } else {
            cwd.components().collect()
        };
        for c in input.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        Ok(RelPath(parts.join(&b'/')))
    }

    /// Is this the root?
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw bytes (empty for the root).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as text, when it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The components, root first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The last component, `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        })
    }

    /// The parent directory, `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => RelPath(self.0[..i].to_vec()),
            None => RelPath::root(),
        })
    }

    /// This path with `name` appended. `name` must be a single valid
    /// component.
    pub fn join(&self, name: &[u8]) -> Result<RelPath, PathError> {
        if name.contains(&0) {
            return Err(PathError::Nul);
        }
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Err(PathError::NotNormal);
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        Ok(RelPath(v))
    }

    /// Is `self` equal to `other` or below it?
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || (self.0.starts_with(&other.0)
                && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/'))
    }

    /// If `self` is `from` or below it, the same path below `to` instead.
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Option<RelPath> {
        if !self.starts_with(from) {
            return None;
        }
        let rest = &self.0[from.0.len()..];
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        let mut v = to.0.clone();
        if !v.is_empty() && !rest.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(rest);
        Some(RelPath(v))
    }

    /// The path as the client sees it: `/` followed by the components.
    pub fn to_absolute(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.push(b'/');
        v.extend_from_slice(&self.0);
        v
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display only: escape what is not UTF-8 instead of replacing it.
        write!(f, "/{}", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RelPath {
        RelPath::resolve(&RelPath::root(), s.as_bytes()).unwrap()
    }

    #[test]
    fn resolve_never_leaves_root() {
        assert_eq!(r("/../../etc/passwd").as_bytes(), b"etc/passwd");
        assert_eq!(r("a/../../b").as_bytes(), b"b");
        assert_eq!(r("..").as_bytes(), b"");
        assert_eq!(r("/").as_bytes(), b"");
        assert_eq!(r("./a//b/./c/").as_bytes(), b"a/b/c");
        let cwd = r("x/y");
        assert_eq!(RelPath::resolve(&cwd, b"../z").unwrap().as_bytes(), b"x/z");
        assert_eq!(RelPath::resolve(&cwd, b"/z").unwrap().as_bytes(), b"z");
    }

    #[test]
    fn resolve_keeps_non_utf8_bytes() {
        let p = r("dir/\u{e9}");
        assert_eq!(p.file_name(), Some("\u{e9}".as_bytes()));
        let p = RelPath::resolve(&RelPath::root(), b"a/\xff\xfe").unwrap();
        assert_eq!(p.as_bytes(), b"a/\xff\xfe");
        assert_eq!(p.to_str(), None);
        assert_eq!(p.to_string(), "/a/\\xff\\xfe");
    }

    #[test]
    fn nul_is_refused() {
        assert_eq!(
            RelPath::resolve(&RelPath::root(), b"a\0b"),
            Err(PathError::Nul)
        );
        assert_eq!(RelPath::new(b"a\0".to_vec()), Err(PathError::Nul));
    }

    #[test]
    fn new_checks_normal_form() {
        assert!(RelPath::new(b"a/b".to_vec()).is_ok());
        assert!(RelPath::new(Vec::new()).is_ok());
        for bad in [&b"/a"[..], b"a/", b"a//b", b"a/../b", b"./a"] {
            assert_eq!(
                RelPath::new(bad.to_vec()),
                Err(PathError::NotNormal),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parent_join_file_name() {
        let p = r("a/b/c");
        assert_eq!(p.parent().unwrap(), r("a/b"));
        assert_eq!(r("a").parent().unwrap(), RelPath::root());
        assert_eq!(RelPath::root().parent(), None);
        assert_eq!(p.file_name(), Some(&b"c"[..]));
        assert_eq!(r("a/b").join(b"c").unwrap(), p);
        assert_eq!(RelPath::root().join(b"c").unwrap(), r("c"));
        assert!(r("a").join(b"..").is_err());
        assert!(r("a").join(b"x/y").is_err());
        assert!(p.starts_with(&r("a/b")));
        assert!(!r("a/bc").starts_with(&r("a/b")));
        assert!(p.starts_with(&RelPath::root()));
        assert_eq!(p.to_absolute(), b"/a/b/c");
        assert_eq!(p.rebase(&r("a"), &r("x/y")).unwrap(), r("x/y/b/c"));
        assert_eq!(p.rebase(&p, &r("z")).unwrap(), r("z"));
        assert_eq!(p.rebase(&RelPath::root(), &r("q")).unwrap(), r("q/a/b/c"));
        assert_eq!(p.rebase(&r("a/bc"), &r("z")), None);
    }
}
