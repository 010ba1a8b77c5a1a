//! rclone's glob dialect, translated once into regular expressions.
//!
//! A glob is matched against a path relative to the served root, without a
//! leading `/` (`dir/file.txt`; a directory is tested as `dir/sub/`):
//! - a glob starting with `/` is anchored to the root, any other matches at
//!   any depth (after a `/` or at the start);
//! - `*` is any run of characters but `/`, `**` any run at all, `***` an
//!   error; `?` is one character but `/`;
//! - `[...]` is a character class, copied as it is;
//! - `{a,b}` is a choice (nestable), `{{RE}}` a regular expression;
//! - `\x` is `x` itself; the regular expression's own metacharacters
//!   (`. + ( ) | ^ $`) are literal.

use std::fmt;

/// A glob that cannot be translated, with rclone's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError(pub String);

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GlobError {}

/// The regular expression (as text) that matches what `glob` does.
pub fn to_regex(glob: &str, ignore_case: bool) -> Result<String, GlobError> {
    let mut re = String::with_capacity(glob.len() * 2 + 8);
    if ignore_case {
        re.push_str("(?i)");
    }
    let body = match glob.strip_prefix('/') {
        Some(rest) => {
            re.push('^');
            rest
        }
        None => {
            re.push_str("(^|/)");
            glob
        }
    };
    let mut stars = 0usize;
    let flush_stars = |re: &mut String, stars: &mut usize| -> Result<(), GlobError> {
        match *stars {
            0 => {}
            1 => re.push_str("[^/]*"),
            2 => re.push_str(".*"),
            _ => return Err(GlobError(format!("too many stars in {glob:?}"))),
        }
        *stars = 0;
        Ok(())
    };
    let mut braces = 0usize;
    let mut brackets = 0usize;
    let mut escaped = false;
    let mut in_regex = false;
    let mut regex_ending = false;
    let mut last;
    let mut cur = '\0';
    for c in body.chars() {
        last = cur;
        cur = c;
        if escaped {
            re.push(c);
            escaped = false;
            continue;
        }
        if regex_ending {
            if c == '}' {
                // A regular expression ending in `}`: the closing `}}` is
                // the last two of the run.
                re.pop();
                re.push('}');
                re.push(')');
                continue;
            }
            regex_ending = false;
        }
        if in_regex {
            if c == '}' && last == '}' {
                in_regex = false;
                regex_ending = true;
                re.pop();
                re.push(')');
            } else {
                re.push(c);
            }
            continue;
        }
        if c != '*' {
            flush_stars(&mut re, &mut stars)?;
        }
        if brackets > 0 {
            re.push(c);
            match c {
                '[' => brackets += 1,
                ']' => brackets -= 1,
                _ => {}
            }
            continue;
        }
        match c {
            '\\' => {
                re.push('\\');
                escaped = true;
            }
            '*' => stars += 1,
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                brackets += 1;
            }
            ']' => return Err(GlobError(format!("mismatched ']' in glob {glob:?}"))),
            '{' => {
                if braces > 0 && last == '{' {
                    // `{{` opens a regular expression, wrapped in the `(`
                    // the first `{` wrote.
                    in_regex = true;
                    braces -= 1;
                } else {
                    braces += 1;
                    re.push('(');
                }
            }
            '}' => {
                if braces == 0 {
                    return Err(GlobError(format!(
                        "mismatched '{{' and '}}' in glob {glob:?}"
                    )));
                }
                re.push(')');
                braces -= 1;
            }
            ',' if braces > 0 => re.push('|'),
            '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                re.push('\\');
                re.push(c);
            }
            _ => re.push(c),
        }
    }
    flush_stars(&mut re, &mut stars)?;
    if brackets > 0 {
        return Err(GlobError(format!(
            "mismatched '[' and ']' in glob {glob:?}"
        )));
    }
    if braces != 0 {
        return Err(GlobError(format!(
            "mismatched '{{' and '}}' in glob {glob:?}"
        )));
    }
    if in_regex {
        return Err(GlobError(format!(
            "mismatched '{{{{' and '}}}}' in glob {glob:?}"
        )));
    }
    re.push('$');
    regex::Regex::new(&re)
        .map_err(|e| GlobError(format!("bad glob pattern {glob:?} (regexp {re:?}): {e}")))?;
    Ok(re)
}

/// The directory globs a file glob implies: matched against a directory
/// (`dir/`), they tell whether the file glob could match something below
/// it. A glob too hard to split (`/` or `**` inside braces, a regular
/// expression, nested braces) implies every directory (`/**`).
pub fn dir_globs(glob: &str) -> Vec<String> {
    if too_hard(glob) {
        return vec!["/**".to_string()];
    }
    let mut g = squash_slashes(glob);
    let mut out: Vec<String> = Vec::new();
    loop {
        let slash = g.rfind('/');
        let stars = g.rfind("**");
        let (cut, what) = match (slash, stars) {
            (s, Some(j)) if s.is_none_or(|i| j > i) => (j, "**"),
            (Some(i), _) => (i, ""),
            (None, None) => {
                if out.is_empty() {
                    out.push("/**".to_string());
                }
                return out;
            }
            (None, Some(_)) => unreachable!("handled by the first arm"),
        };
        g.truncate(cut);
        let new = format!("{g}{what}/");
        if out.last() != Some(&new) {
            out.push(new);
        }
    }
}

/// `{...}` holding `/` or `**`, `{{`, `}}`, or a `{` inside braces.
fn too_hard(glob: &str) -> bool {
    if glob.contains("{{") || glob.contains("}}") {
        return true;
    }
    // Scan each brace group that has no braces inside it, and any `{`
    // opened inside an open one.
    let b = glob.as_bytes();
    let mut open: Option<usize> = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'{' => {
                if open.is_some() {
                    return true;
                }
                open = Some(i);
            }
            b'}' => {
                if let Some(start) = open.take() {
                    let inner = &glob[start + 1..i];
                    if inner.contains('/') || inner.contains("**") {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

fn squash_slashes(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(glob: &str) -> String {
        to_regex(glob, false).unwrap()
    }

    fn matches(glob: &str, path: &str) -> bool {
        regex::Regex::new(&re(glob)).unwrap().is_match(path)
    }

    #[test]
    fn translation_as_rclone() {
        // The table of rclone's own glob tests (fs/filter/glob_test.go),
        // as facts about the dialect.
        let table = [
            ("", "(^|/)$"),
            ("potato", "(^|/)potato$"),
            ("potato,sausage", "(^|/)potato,sausage$"),
            ("/potato", "^potato$"),
            ("potato?sausage", "(^|/)potato[^/]sausage$"),
            ("potat[oa]", "(^|/)potat[oa]$"),
            ("potat[a-z]or", "(^|/)potat[a-z]or$"),
            ("potat[[:alpha:]]or", "(^|/)potat[[:alpha:]]or$"),
            (
                "'.' '+' '(' ')' '|' '^' '$'",
                r"(^|/)'\.' '\+' '\(' '\)' '\|' '\^' '\$'$",
            ),
            ("*.jpg", r"(^|/)[^/]*\.jpg$"),
            ("a{b,c,d}e", "(^|/)a(b|c|d)e$"),
            ("potato**", "(^|/)potato.*$"),
            ("potato**sausage", "(^|/)potato.*sausage$"),
            ("*.p[lm]", r"(^|/)[^/]*\.p[lm]$"),
            ("[\\[\\]]", r"(^|/)[\[\]]$"),
            ("dir/", "(^|/)dir/$"),
            ("/dir/", "^dir/$"),
            ("/**/sub/*.txt", r"^.*/sub/[^/]*\.txt$"),
            ("{{.*\\.jpe?g}}", r"(^|/)(.*\.jpe?g)$"),
            ("{{a{2}}}", "(^|/)(a{2})$"),
            ("hello{{world}}", "(^|/)hello(world)$"),
            ("{a,{b,c}}", "(^|/)(a|(b|c))$"),
            (r"\*\?", r"(^|/)\*\?$"),
        ];
        for (glob, want) in table {
            assert_eq!(to_regex(glob, false).as_deref(), Ok(want), "{glob:?}");
        }
        assert_eq!(to_regex("*.JPG", true).unwrap(), r"(?i)(^|/)[^/]*\.JPG$");
    }

    #[test]
    fn errors_name_the_glob() {
        for (glob, want) in [
            ("***", "too many stars in \"***\""),
            ("potato]", "mismatched ']' in glob \"potato]\""),
            ("potato[", "mismatched '[' and ']' in glob \"potato[\""),
            ("potato{", "mismatched '{' and '}' in glob \"potato{\""),
            ("potato}", "mismatched '{' and '}' in glob \"potato}\""),
            ("{{potato", "mismatched '{{' and '}}' in glob \"{{potato\""),
        ] {
            assert_eq!(
                to_regex(glob, false),
                Err(GlobError(want.into())),
                "{glob:?}"
            );
        }
        let bad = to_regex("{{(}}", false).unwrap_err().0;
        assert!(bad.starts_with("bad glob pattern \"{{(}}\""), "{bad}");
    }

    #[test]
    fn matching_anchors_and_stars() {
        assert!(matches("*.txt", "a.txt"));
        assert!(matches("*.txt", "d/e/a.txt"), "unanchored: any depth");
        assert!(!matches("*.txt", "a.txt.bak"));
        assert!(!matches("/*.txt", "d/a.txt"), "anchored to the root");
        assert!(matches("/*.txt", "a.txt"));
        assert!(!matches("a*", "ba"), "a name starts after a /");
        assert!(matches("d/*", "x/d/f"));
        assert!(!matches("d/*", "d/e/f"), "* stops at /");
        assert!(matches("d/**", "d/e/f"));
        assert!(matches("f?le", "file"));
        assert!(!matches("f?le", "f/le"));
        assert!(matches("{a,b}.c", "b.c"));
        assert!(matches("{{[0-9]+}}.log", "d/123.log"));
        assert!(matches("ünï*", "ünïcode"), "unicode names");
        assert!(!matches("*.TXT", "a.txt"));
        let ci = regex::Regex::new(&to_regex("*.TXT", true).unwrap()).unwrap();
        assert!(ci.is_match("a.txt"));
    }

    #[test]
    fn directory_globs_as_rclone() {
        // rclone's globToDirGlobs table.
        let table: &[(&str, &[&str])] = &[
            ("*", &["/**"]),
            ("/*", &["/"]),
            ("*.jpg", &["/**"]),
            ("/*.jpg", &["/"]),
            ("/potato", &["/"]),
            ("potato", &["/**"]),
            ("/a/b/c", &["/a/b/", "/a/", "/"]),
            ("a/b/c", &["a/b/", "a/"]),
            ("/a/*.txt", &["/a/", "/"]),
            ("a/**/b", &["a/**/", "a/"]),
            ("/sausage3**", &["/sausage3**/", "/"]),
            ("/a/b/**", &["/a/b/**/", "/a/b/", "/a/", "/"]),
            ("a{b/c}d", &["/**"]),
            ("{{.*}}", &["/**"]),
            ("a{b,{c,d}}", &["/**"]),
            ("//a//b", &["/a/", "/"]),
        ];
        for (glob, want) in table {
            assert_eq!(dir_globs(glob), *want, "{glob:?}");
        }
    }
}
