//! rclone's filters (`--include`, `--exclude`, `--filter`, the `-from`
//! files, `--files-from`, sizes, ages, `--exclude-if-present`): which paths
//! a server shows. Pure: the rules are read once at startup
//! ([`FilterOptions::build`]), then asked about paths
//! ([`Filter::include_file`], [`Filter::include_dir`]); the VFS applies the
//! answers at its one lookup.
//!
//! Paths are relative to the served root, without a leading `/`. The
//! semantics are rclone's (see `docs/filters.md`): rules are tried in order
//! and the first that matches decides; none matching means included. A
//! file is tested against the file rules; a directory, as `dir/`, against
//! the directory rules: globs ending in `/` or holding `**`, and the parent
//! directories each include glob implies. Any include adds a final
//! `- /**`.

pub mod glob;

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::time::{Duration, SystemTime};

use regex::Regex;

/// A filter flag or rule file that cannot be used, said once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

impl From<glob::GlobError> for FilterError {
    fn from(e: glob::GlobError) -> Self {
        FilterError(e.0)
    }
}

/// An age limit: a duration before each check (`--max-age 1d`), or a
/// fixed time (`--max-age 2026-01-01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// This long before now, now being the time of each check (a server
    /// runs for weeks: "a day old" stays a day old).
    Ago(Duration),
    /// This moment.
    At(SystemTime),
}

impl Age {
    fn boundary(self, now: SystemTime) -> SystemTime {
        match self {
            Age::Ago(d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
            Age::At(t) => t,
        }
    }
}

/// Reads a rule file: `(flag, path)` to its bytes.
pub type ReadFile<'a> = dyn FnMut(&str, &str) -> Result<Vec<u8>, FilterError> + 'a;

/// The filter flags as given, in rclone's names.
#[derive(Debug, Clone, Default)]
pub struct FilterOptions {
    /// `--include GLOB` (repeatable).
    pub include: Vec<String>,
    /// `--include-from FILE` (`-` is standard input).
    pub include_from: Vec<String>,
    /// `--exclude GLOB`.
    pub exclude: Vec<String>,
    /// `--exclude-from FILE`.
    pub exclude_from: Vec<String>,
    /// `--filter RULE` (`+ GLOB`, `- GLOB` or `!`).
    pub filter: Vec<String>,
    /// `--filter-from FILE`.
    pub filter_from: Vec<String>,
    /// `--files-from FILE`: only these files (lines trimmed, comments
    /// skipped).
    pub files_from: Vec<String>,
    /// `--files-from-raw FILE`: the same, each line as it is.
    pub files_from_raw: Vec<String>,
    /// `--min-size`: smaller files are not served.
    pub min_size: Option<u64>,
    /// `--max-size`: larger files are not served.
    pub max_size: Option<u64>,
    /// `--min-age`: newer files are not served.
    pub min_age: Option<Age>,
    /// `--max-age`: older files are not served.
    pub max_age: Option<Age>,
    /// `--ignore-case`.
    pub ignore_case: bool,
    /// `--exclude-if-present NAME`: a directory holding a file of this
    /// name is not served, nor anything in it.
    pub exclude_if_present: Vec<String>,
}

/// One rule: include or exclude what the expression matches.
#[derive(Debug, Clone)]
struct Rule {
    include: bool,
    re: Regex,
}

/// Rules in order, each once.
#[derive(Debug, Clone, Default)]
struct Rules {
    rules: Vec<Rule>,
    seen: HashSet<(bool, String)>,
}

impl Rules {
    fn add(&mut self, include: bool, re: String) -> Result<(), FilterError> {
        if self.seen.insert((include, re.clone())) {
            let re = Regex::new(&re).map_err(|e| FilterError(e.to_string()))?;
            self.rules.push(Rule { include, re });
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.rules.clear();
        self.seen.clear();
    }

    fn include(&self, path: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.re.is_match(path))
            .is_none_or(|r| r.include)
    }

    fn describe(&self, out: &mut Vec<String>) {
        for r in &self.rules {
            out.push(format!("{} {}", if r.include { '+' } else { '-' }, r.re));
        }
    }
}

/// Which paths are served. Built once; shared by every session.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    file_rules: Rules,
    dir_rules: Rules,
    /// `--files-from`: the files, and every directory above one.
    files: Option<(HashSet<String>, HashSet<String>)>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    min_age: Option<Age>,
    max_age: Option<Age>,
    ignore_case: bool,
    markers: Vec<String>,
    warnings: Vec<String>,
}

impl FilterOptions {
    /// Read the rule files and translate every glob. Standard input is
    /// read at most once, for the first flag that names `-`.
    pub fn build(&self) -> Result<Filter, FilterError> {
        let mut stdin_used = false;
        let mut read = |flag: &str, path: &str| -> Result<Vec<u8>, FilterError> {
            if path == "-" {
                if stdin_used {
                    return Ok(Vec::new());
                }
                stdin_used = true;
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                    FilterError(format!("--{flag} -: cannot read standard input: {e}"))
                })?;
                return Ok(buf);
            }
            std::fs::read(path).map_err(|e| FilterError(format!("--{flag} {path}: {e}")))
        };
        self.build_with(&mut read)
    }

    /// [`Self::build`] with the files read by `read(flag, path)`.
    pub fn build_with(&self, read: &mut ReadFile<'_>) -> Result<Filter, FilterError> {
        let mut f = Filter {
            min_size: self.min_size,
            max_size: self.max_size,
            min_age: self.min_age,
            max_age: self.max_age,
            ignore_case: self.ignore_case,
            markers: self.exclude_if_present.clone(),
            ..Default::default()
        };
        if let (Some(min), Some(max)) = (self.min_age, self.max_age) {
            let now = SystemTime::now();
            // Newer than max, older than min: nothing could pass.
            if min.boundary(now) < max.boundary(now) {
                return Err(FilterError(
                    "--min-age can't be larger than --max-age".to_string(),
                ));
            }
        }
        let mut implicit_exclude = false;
        let mut any_exclude = false;
        for g in &self.include {
            f.add(true, g).map_err(|e| flag_error("include", g, e))?;
            implicit_exclude = true;
        }
        for path in &self.include_from {
            for (n, line) in rule_lines(&read("include-from", path)?, false) {
                f.add(true, &line).map_err(|e| file_error(path, n, e))?;
            }
            implicit_exclude = true;
        }
        for g in &self.exclude {
            f.add(false, g).map_err(|e| flag_error("exclude", g, e))?;
            any_exclude = true;
        }
        for path in &self.exclude_from {
            for (n, line) in rule_lines(&read("exclude-from", path)?, false) {
                f.add(false, &line).map_err(|e| file_error(path, n, e))?;
            }
            any_exclude = true;
        }
        if implicit_exclude && any_exclude {
            f.warnings.push(
                "using --filter is recommended instead of both --include and --exclude, \
                 as the order they are parsed in is indeterminate"
                    .to_string(),
            );
        }
        for r in &self.filter {
            f.add_rule(r).map_err(|e| flag_error("filter", r, e))?;
        }
        for path in &self.filter_from {
            for (n, line) in rule_lines(&read("filter-from", path)?, false) {
                f.add_rule(&line).map_err(|e| file_error(path, n, e))?;
            }
        }
        if implicit_exclude {
            f.add(false, "/**")?;
        }
        let lists: Vec<(&str, &String, bool)> = self
            .files_from
            .iter()
            .map(|p| ("files-from", p, false))
            .chain(
                self.files_from_raw
                    .iter()
                    .map(|p| ("files-from-raw", p, true)),
            )
            .collect();
        if !lists.is_empty() {
            if f.is_active() {
                return Err(FilterError(format!(
                    "the usage of --{} overrides all other filters, it should be used alone \
                     or with --files-from or --files-from-raw",
                    lists[0].0
                )));
            }
            let (mut files, mut dirs) = (HashSet::new(), HashSet::new());
            for (flag, path, raw) in lists {
                for (_, line) in rule_lines(&read(flag, path)?, raw) {
                    let file = line.trim_matches('/');
                    let mut dir = file;
                    while let Some(i) = dir.rfind('/') {
                        dir = &dir[..i];
                        if !dirs.insert(dir.to_string()) {
                            break;
                        }
                    }
                    files.insert(file.to_string());
                }
            }
            f.files = Some((files, dirs));
        }
        Ok(f)
    }
}

fn flag_error(flag: &str, value: &str, e: FilterError) -> FilterError {
    FilterError(format!("--{flag} {value:?}: {e}"))
}

fn file_error(path: &str, line: usize, e: FilterError) -> FilterError {
    FilterError(format!("{path}:{line}: {e}"))
}

/// The lines of a rule file with their numbers: trimmed, blank lines and
/// `#` or `;` comments skipped, unless `raw`. Bytes that are not UTF-8 are
/// replaced, as Go's strings would show them.
fn rule_lines(data: &[u8], raw: bool) -> Vec<(usize, String)> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if raw {
            out.push((i + 1, line.to_string()));
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        out.push((i + 1, line.to_string()));
    }
    out
}

impl Filter {
    /// A filter that serves everything.
    pub fn none() -> Filter {
        Filter::default()
    }

    /// Whether anything is filtered.
    pub fn is_active(&self) -> bool {
        self.files.is_some()
            || self.min_size.is_some()
            || self.max_size.is_some()
            || self.min_age.is_some()
            || self.max_age.is_some()
            || !self.file_rules.rules.is_empty()
            || !self.dir_rules.rules.is_empty()
            || !self.markers.is_empty()
    }

    /// Warnings to log at startup (rules that work, but perhaps not as
    /// meant).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Names whose presence in a directory hides it
    /// (`--exclude-if-present`).
    pub fn markers(&self) -> &[String] {
        &self.markers
    }

    /// Whether sizes or ages decide anything.
    pub fn uses_size_or_age(&self) -> bool {
        self.min_size.is_some()
            || self.max_size.is_some()
            || self.min_age.is_some()
            || self.max_age.is_some()
    }

    fn add(&mut self, include: bool, glob: &str) -> Result<(), FilterError> {
        let mut glob = glob.to_string();
        let mut dir_rule = glob.ends_with('/');
        let mut file_rule = !dir_rule;
        // Excluding `dir/` excludes all of it.
        if dir_rule && !include {
            glob.push_str("**");
        }
        if glob.contains("**") {
            dir_rule = true;
            file_rule = true;
        }
        let re = glob::to_regex(&glob, self.ignore_case)?;
        if file_rule {
            self.file_rules.add(include, re.clone())?;
            // An include says which directories must be looked in; an
            // exclude rules none out, unless it is `*` (every file).
            if include || glob == "*" {
                for d in glob::dir_globs(&glob) {
                    if d != "/" {
                        self.dir_rules
                            .add(include, glob::to_regex(&d, self.ignore_case)?)?;
                    }
                }
            }
        }
        if dir_rule {
            self.dir_rules.add(include, re)?;
        }
        Ok(())
    }

    fn add_rule(&mut self, rule: &str) -> Result<(), FilterError> {
        if rule == "!" {
            self.file_rules.clear();
            self.dir_rules.clear();
            return Ok(());
        }
        if let Some(g) = rule.strip_prefix("+ ") {
            return self.add(true, g);
        }
        if let Some(g) = rule.strip_prefix("- ") {
            return self.add(false, g);
        }
        Err(FilterError(format!("malformed rule {rule:?}")))
    }

    /// Whether a file of this name may be served, by name alone (the rules
    /// or the `--files-from` list; sizes and ages aside). `path` is
    /// relative to the root, without a leading `/`.
    pub fn include_file_name(&self, path: &str) -> bool {
        if let Some((files, _)) = &self.files {
            return files.contains(path);
        }
        self.file_rules.include(path)
    }

    /// Whether the file at `path`, of this size and modification time, is
    /// served (the directories above it aside).
    pub fn include_file(
        &self,
        path: &str,
        size: u64,
        mtime: Option<SystemTime>,
        now: SystemTime,
    ) -> bool {
        if self.files.is_none() {
            let t = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
            if self.max_age.is_some_and(|a| t < a.boundary(now))
                || self.min_age.is_some_and(|a| t > a.boundary(now))
                || self.min_size.is_some_and(|m| size < m)
                || self.max_size.is_some_and(|m| size > m)
            {
                return false;
            }
        }
        self.include_file_name(path)
    }

    /// Whether directory `path` is served by name (the directories above
    /// it and `--exclude-if-present` aside). The root always is.
    pub fn include_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        if let Some((_, dirs)) = &self.files {
            return dirs.contains(path);
        }
        let mut p = String::with_capacity(path.len() + 1);
        p.push_str(path);
        p.push('/');
        self.dir_rules.include(&p)
    }

    /// The rules in effect, one per line, for the debug log.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = self.min_size {
            out.push(format!("minimum size: {m} bytes"));
        }
        if let Some(m) = self.max_size {
            out.push(format!("maximum size: {m} bytes"));
        }
        if let Some(a) = self.min_age {
            out.push(format!("minimum age: {a:?}"));
        }
        if let Some(a) = self.max_age {
            out.push(format!("maximum age: {a:?}"));
        }
        if let Some((files, _)) = &self.files {
            out.push(format!("--files-from: {} files", files.len()));
        }
        out.push("--- file filter rules ---".to_string());
        self.file_rules.describe(&mut out);
        out.push("--- directory filter rules ---".to_string());
        self.dir_rules.describe(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
