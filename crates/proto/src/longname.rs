//! The `longname` field of `SSH_FXP_NAME`: an `ls -l` style line, formatted
//! like OpenSSH's `sftp-server` (`ls_file` in `sftp-common.c`).

use bytes::Bytes;

use crate::attrs::{mode, FileAttributes};

/// Formats an `ls -l` line for a directory entry:
///
/// ```text
/// -rw-r--r--    1 owner    group        1234 Jan  1 12:34 name
/// ```
///
/// - The mode string comes from `attrs.permissions` (type letter
///   `d l - p s c b`, `?` for unknown; setuid/setgid/sticky shown as
///   `s`/`S`/`t`/`T`). Without permissions it is `?---------`.
/// - The link count is always 1; owner and group are padded to 8 columns.
/// - The size is `attrs.size`, or 0.
/// - The date is the mtime in UTC (this crate has no time zone), shown as
///   `Mon dd HH:MM` if it lies within the half year before `now_unix`, else
///   `Mon dd  YYYY`. Like OpenSSH, an absent or zero mtime leaves the date
///   empty.
///
/// `now_unix` is a parameter so the output is deterministic; nothing here
/// reads a clock. The file name is appended as raw bytes.
pub fn format_longname(
    filename: &[u8],
    attrs: &FileAttributes,
    owner: &str,
    group: &str,
    now_unix: u32,
) -> Bytes {
    let mode = mode_string(attrs.permissions.unwrap_or(0));
    let size = attrs.size.unwrap_or(0);
    let date = match attrs.atime_mtime {
        Some((_, mtime)) if mtime != 0 => format_date(mtime, now_unix),
        _ => String::new(),
    };
    let mut line = format!("{mode}  {:>3} {owner:<8} {group:<8} {size:>8} {date} ", 1).into_bytes();
    line.extend_from_slice(filename);
    Bytes::from(line)
}

/// The 10-character `drwxr-xr-x` form of a mode.
fn mode_string(m: u32) -> String {
    let kind = match m & mode::S_IFMT {
        mode::S_IFDIR => 'd',
        mode::S_IFREG => '-',
        mode::S_IFLNK => 'l',
        mode::S_IFIFO => 'p',
        mode::S_IFSOCK => 's',
        mode::S_IFCHR => 'c',
        mode::S_IFBLK => 'b',
        _ => '?',
    };
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    // The execute slot also shows the special bit: lower case when execute
    // is set too, upper case when it is not.
    let exec = |x: u32, special: u32, set: char| match (m & x != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, mode::S_ISUID, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, mode::S_ISGID, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, mode::S_ISVTX, 't'),
    ]
    .iter()
    .collect()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Half of a 365-day year, OpenSSH's "recent" window.
const RECENT_SECS: i64 = 365 * 24 * 60 * 60 / 2;

/// `Mon dd HH:MM` for a time within the half year up to `now`, else
/// `Mon dd  YYYY` (also for times in the future).
fn format_date(mtime: u32, now: u32) -> String {
    let (mtime, now) = (i64::from(mtime), i64::from(now));
    let days = mtime.div_euclid(86_400);
    let secs = mtime.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mon = MONTHS[(month - 1) as usize];
    if now - RECENT_SECS < mtime && mtime <= now {
        format!("{mon} {day:>2} {:02}:{:02}", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{mon} {day:>2}  {year}")
    }
}

/// Proleptic Gregorian `(year, month 1..=12, day 1..=31)` of a day count
/// since 1970-01-01.
///
/// Works in 400-year eras (146 097 days, the Gregorian cycle) with years
/// starting on 1 March, so the leap day is the last day of the year and the
/// month lengths from March on follow the repeating 31-30-31-30-31 pattern
/// that `(153 * m + 2) / 5` captures.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // 0..=399
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // 0..=365
    let mp = (5 * day_of_year + 2) / 153; // month index from March: 0..=11
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-15 12:00:00 UTC.
    const NOW: u32 = 1_718_452_800;

    fn attrs(perm: u32, size: u64, mtime: u32) -> FileAttributes {
        FileAttributes {
            size: Some(size),
            permissions: Some(perm),
            atime_mtime: Some((mtime, mtime)),
            ..Default::default()
        }
    }

    fn line(name: &[u8], a: &FileAttributes) -> String {
        String::from_utf8(format_longname(name, a, "owner", "group", NOW).to_vec()).unwrap()
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29)); // 1709164800 / 86400
        assert_eq!(civil_from_days(49_710), (2106, 2, 7)); // u32::MAX seconds
                                                           // Every day of 1970..2110 advances the date by exactly one day.
        let mut prev = civil_from_days(0);
        for d in 1..51_000 {
            let cur = civil_from_days(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                cur == next_day || cur == next_month || cur == next_year,
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
    }

    #[test]
    fn regular_file_recent() {
        // 2024-06-01 09:05 UTC
        let a = attrs(mode::S_IFREG | 0o644, 1234, 1_717_232_700);
        assert_eq!(
            line(b"notes.txt", &a),
            "-rw-r--r--    1 owner    group        1234 Jun  1 09:05 notes.txt"
        );
    }

    #[test]
    fn directory_old_date() {
        // 2019-12-25 00:00 UTC, more than six months before NOW.
        let a = attrs(mode::S_IFDIR | 0o755, 0, 1_577_232_000);
        assert_eq!(
            line(b"src", &a),
            "drwxr-xr-x    1 owner    group           0 Dec 25  2019 src"
        );
    }

    #[test]
    fn symlink_and_long_owner() {
        let a = attrs(mode::S_IFLNK | 0o777, 7, NOW);
        let got = format_longname(b"link", &a, "a-very-long-user", "g", NOW);
        assert_eq!(
            &got[..],
            b"lrwxrwxrwx    1 a-very-long-user g               7 Jun 15 12:00 link"
        );
    }

    #[test]
    fn future_and_boundary_dates_show_year() {
        let a = attrs(mode::S_IFREG | 0o600, 1, NOW + 1);
        assert!(line(b"f", &a).contains("Jun 15  2024 f"));
        let just_old = NOW - 365 * 24 * 3600 / 2;
        let a = attrs(mode::S_IFREG | 0o600, 1, just_old);
        assert!(line(b"f", &a).ends_with("  2023 f"), "{}", line(b"f", &a));
        let a = attrs(mode::S_IFREG | 0o600, 1, just_old + 1);
        assert!(!line(b"f", &a).ends_with("  2023 f"));
    }

    #[test]
    fn special_bits_and_types() {
        assert_eq!(mode_string(mode::S_IFREG | 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(mode::S_IFREG | 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(mode::S_IFDIR | 0o2775), "drwxrwsr-x");
        assert_eq!(mode_string(mode::S_IFDIR | 0o2765), "drwxrwSr-x");
        assert_eq!(mode_string(mode::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(mode::S_IFDIR | 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(mode::S_IFIFO | 0o600), "prw-------");
        assert_eq!(mode_string(mode::S_IFSOCK | 0o600), "srw-------");
        assert_eq!(mode_string(mode::S_IFCHR | 0o666), "crw-rw-rw-");
        assert_eq!(mode_string(mode::S_IFBLK | 0o660), "brw-rw----");
        assert_eq!(mode_string(0), "?---------");
    }

    #[test]
    fn missing_fields_and_raw_names() {
        let got = format_longname(b"\xff\xfe", &FileAttributes::default(), "0", "0", NOW);
        assert_eq!(
            &got[..],
            b"?---------    1 0        0               0  \xff\xfe".as_slice()
        );
    }
}
