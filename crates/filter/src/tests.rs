use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::*;

fn build(opts: FilterOptions) -> Filter {
    opts.build_with(&mut |_, p| Err(FilterError(format!("no file {p}"))))
        .unwrap()
}

fn with_files(opts: FilterOptions, files: &[(&str, &str)]) -> Result<Filter, FilterError> {
    let files: HashMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    opts.build_with(&mut |flag, p| {
        files
            .get(p)
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| FilterError(format!("--{flag} {p}: No such file or directory")))
    })
}

fn file(f: &Filter, p: &str) -> bool {
    f.include_file(p, 0, None, SystemTime::now())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn nothing_given_serves_everything() {
    let f = build(FilterOptions::default());
    assert!(!f.is_active());
    assert!(file(&f, "a/b.txt"));
    assert!(f.include_dir("a"));
}

#[test]
fn first_match_wins_and_no_match_includes() {
    let f = build(FilterOptions {
        filter: strs(&["+ keep.log", "- *.log"]),
        ..Default::default()
    });
    assert!(file(&f, "keep.log"));
    assert!(file(&f, "d/keep.log"));
    assert!(!file(&f, "other.log"));
    assert!(file(&f, "other.txt"), "no rule matches: included");
}

#[test]
fn an_include_implies_excluding_the_rest() {
    let f = build(FilterOptions {
        include: strs(&["*.txt"]),
        ..Default::default()
    });
    assert!(file(&f, "a.txt"));
    assert!(file(&f, "deep/er/a.txt"));
    assert!(!file(&f, "a.jpg"));
    // `*.txt` could be in any directory: all are looked in.
    assert!(f.include_dir("deep"));
    assert!(f.include_dir("deep/er"));
}

#[test]
fn includes_add_the_directories_above_them() {
    let f = build(FilterOptions {
        include: strs(&["/a/b/*.txt"]),
        ..Default::default()
    });
    assert!(f.include_dir("a"));
    assert!(f.include_dir("a/b"));
    assert!(!f.include_dir("c"), "nothing can match below c: pruned");
    assert!(!f.include_dir("a/c"));
    assert!(!f.include_dir("a/b/c"));
    assert!(file(&f, "a/b/x.txt"));
    assert!(!file(&f, "a/x.txt"));
}

#[test]
fn a_directory_rule_hides_the_subtree() {
    let f = build(FilterOptions {
        exclude: strs(&["secret/"]),
        ..Default::default()
    });
    assert!(!f.include_dir("secret"));
    assert!(!f.include_dir("a/secret"), "unanchored: any depth");
    assert!(!file(&f, "secret/x"), "`- secret/` is `- secret/**`");
    assert!(file(&f, "secret"), "a file named secret is not a directory");
    assert!(f.include_dir("secrets"));
    let anchored = build(FilterOptions {
        exclude: strs(&["/secret/"]),
        ..Default::default()
    });
    assert!(!anchored.include_dir("secret"));
    assert!(anchored.include_dir("a/secret"));
}

#[test]
fn an_include_of_a_directory_is_a_directory_rule_only() {
    let f = build(FilterOptions {
        filter: strs(&["+ /dir/", "- *"]),
        ..Default::default()
    });
    assert!(f.include_dir("dir"));
    // `- *` matches every file: the files in dir too.
    assert!(!file(&f, "dir/a"));
}

#[test]
fn double_star_rules_apply_to_files_and_directories() {
    let f = build(FilterOptions {
        exclude: strs(&["/cache/**"]),
        ..Default::default()
    });
    assert!(!file(&f, "cache/x/y"));
    assert!(!f.include_dir("cache/x"));
    assert!(!f.include_dir("cache"), "`cache/` matches `/cache/**` too");
    assert!(f.include_dir("cachet"));
    let everything = build(FilterOptions {
        exclude: strs(&["*"]),
        ..Default::default()
    });
    assert!(!file(&everything, "a"));
    assert!(
        !everything.include_dir("a"),
        "`- *` rules out every directory too"
    );
}

#[test]
fn exclude_of_files_never_prunes_directories() {
    let f = build(FilterOptions {
        exclude: strs(&["*.tmp"]),
        ..Default::default()
    });
    assert!(f.include_dir("x.tmp"), "only files are named by `*.tmp`");
    assert!(!file(&f, "x.tmp"));
}

#[test]
fn bang_clears_the_rules_before_it() {
    let f = build(FilterOptions {
        filter: strs(&["- *.txt", "!", "- *.jpg"]),
        ..Default::default()
    });
    assert!(file(&f, "a.txt"));
    assert!(!file(&f, "a.jpg"));
}

#[test]
fn order_of_the_flags_is_rclones() {
    // --include before --exclude before --filter, whatever the order on
    // the command line; the implied `- /**` comes last.
    let f = build(FilterOptions {
        include: strs(&["*.txt"]),
        exclude: strs(&["a.txt"]),
        filter: strs(&["+ *.jpg"]),
        ..Default::default()
    });
    assert!(file(&f, "a.txt"), "the include came first");
    assert!(file(&f, "a.jpg"), "before the implied exclude");
    assert!(!file(&f, "a.png"));
    assert_eq!(
        f.warnings().len(),
        1,
        "mixing include and exclude is warned of"
    );
}

#[test]
fn ignore_case() {
    let f = build(FilterOptions {
        include: strs(&["*.JPG"]),
        ignore_case: true,
        ..Default::default()
    });
    assert!(file(&f, "a.jpg"));
    assert!(file(&f, "a.Jpg"));
    assert!(!file(&f, "a.png"));
}

#[test]
fn rule_files() {
    let f = with_files(
        FilterOptions {
            exclude_from: strs(&["ex"]),
            include_from: strs(&["in"]),
            ..Default::default()
        },
        &[
            ("ex", "*.bak\n"),
            ("in", "# comment\n\n  *.txt  \r\n*.bak\n"),
        ],
    )
    .unwrap();
    assert!(file(&f, "a.txt"), "lines trimmed");
    assert!(file(&f, "a.bak"), "includes come before excludes");
    assert!(!file(&f, "a.jpg"), "the implied exclude");
    let f = with_files(
        FilterOptions {
            include: strs(&["*.txt"]),
            filter_from: strs(&["rules"]),
            ..Default::default()
        },
        &[(
            "rules",
            "# a comment\n; another\n\n  + *.keep  \r\n- *.drop\n!\n- *.gone\n+ *.jpg\n",
        )],
    )
    .unwrap();
    assert!(file(&f, "a.jpg"));
    assert!(!file(&f, "a.gone"));
    // `!` cleared everything before it, the include's rules too; the
    // implied exclude came after.
    assert!(!file(&f, "a.keep"));
    assert!(!file(&f, "a.txt"));
    assert!(!file(&f, "a.drop"));
}

#[test]
fn malformed_rules_are_errors_naming_them() {
    let e = with_files(
        FilterOptions {
            filter_from: strs(&["rules"]),
            ..Default::default()
        },
        &[("rules", "+ ok\n-nospace\n")],
    )
    .unwrap_err();
    assert_eq!(e.0, "rules:2: malformed rule \"-nospace\"");
    let e = FilterOptions {
        filter: strs(&["x"]),
        ..Default::default()
    }
    .build_with(&mut |_, _| unreachable!())
    .unwrap_err();
    assert_eq!(e.0, "--filter \"x\": malformed rule \"x\"");
    let e = FilterOptions {
        exclude: strs(&["a***"]),
        ..Default::default()
    }
    .build_with(&mut |_, _| unreachable!())
    .unwrap_err();
    assert_eq!(e.0, "--exclude \"a***\": too many stars in \"a***\"");
    let e = with_files(
        FilterOptions {
            filter_from: strs(&["missing"]),
            ..Default::default()
        },
        &[],
    )
    .unwrap_err();
    assert_eq!(e.0, "--filter-from missing: No such file or directory");
}

#[test]
fn files_from_serves_those_files_and_their_directories() {
    let f = with_files(
        FilterOptions {
            files_from: strs(&["list"]),
            ..Default::default()
        },
        &[("list", "# comment\n /a/b/c.txt \nd.txt\n")],
    )
    .unwrap();
    assert!(file(&f, "a/b/c.txt"));
    assert!(file(&f, "d.txt"));
    assert!(!file(&f, "a/b/other"));
    assert!(f.include_dir("a"));
    assert!(f.include_dir("a/b"));
    assert!(!f.include_dir("x"));
    let raw = with_files(
        FilterOptions {
            files_from_raw: strs(&["list"]),
            ..Default::default()
        },
        &[("list", " spaced \n#hash\n")],
    )
    .unwrap();
    assert!(file(&raw, " spaced "), "raw: lines as they are");
    assert!(file(&raw, "#hash"));
    assert!(!file(&raw, "spaced"));
}

#[test]
fn files_from_with_other_filters_is_an_error() {
    let e = with_files(
        FilterOptions {
            files_from: strs(&["list"]),
            exclude: strs(&["*.x"]),
            ..Default::default()
        },
        &[("list", "a\n")],
    )
    .unwrap_err();
    assert!(e
        .0
        .starts_with("the usage of --files-from overrides all other filters"));
}

#[test]
fn sizes_and_ages() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    let f = build(FilterOptions {
        min_size: Some(10),
        max_size: Some(100),
        max_age: Some(Age::Ago(7 * day)),
        min_age: Some(Age::Ago(day)),
        ..Default::default()
    });
    let two_days = Some(now - 2 * day);
    assert!(
        f.include_file("a", 10, two_days, now),
        "limits are inclusive"
    );
    assert!(f.include_file("a", 100, two_days, now));
    assert!(!f.include_file("a", 9, two_days, now));
    assert!(!f.include_file("a", 101, two_days, now));
    assert!(
        !f.include_file("a", 50, Some(now - 8 * day), now),
        "too old"
    );
    assert!(!f.include_file("a", 50, Some(now), now), "too new");
    // "A day old" is measured from each check, not from startup.
    assert!(f.include_file("a", 50, Some(now), now + 2 * day));
    assert!(f.include_dir("any"), "sizes and ages are of files");
    let e = FilterOptions {
        min_age: Some(Age::Ago(7 * day)),
        max_age: Some(Age::Ago(day)),
        ..Default::default()
    }
    .build_with(&mut |_, _| unreachable!())
    .unwrap_err();
    assert_eq!(e.0, "--min-age can't be larger than --max-age");
}

#[test]
fn rules_are_kept_once() {
    let f = build(FilterOptions {
        include: strs(&["a/*.txt", "a/*.jpg"]),
        ..Default::default()
    });
    // Both imply `a/` and `/**`-free parents: one directory rule each.
    let dir_rules = f
        .describe()
        .into_iter()
        .skip_while(|l| !l.contains("directory"))
        .count()
        - 1;
    assert_eq!(dir_rules, 2, "{:?}", f.describe());
}
