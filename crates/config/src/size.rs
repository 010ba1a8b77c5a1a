//! Sizes as rclone writes them (`16Mi`, `512k`, `0`).

/// A size as rclone writes it: a number with an optional suffix b, k/Ki,
/// M/Mi, G/Gi, T/Ti, P/Pi (all binary, as rclone's are).
pub fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix
        .trim_end_matches(['i', 'B'])
        .to_ascii_lowercase()
        .as_str()
    {
        "" => 1024.0,
        "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "p" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    // A bare number is KiB, as rclone's sizes are; "b" is bytes.
    let bytes = if suffix.eq_ignore_ascii_case("b") {
        n
    } else {
        n * mult
    };
    if !(0.0..=(usize::MAX as f64)).contains(&bytes) {
        return None;
    }
    Some(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16Mi"), Some(16 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("10"), Some(10 << 10), "a bare number is KiB");
        assert_eq!(parse_size("100b"), Some(100));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("2P"), Some(2 << 50));
        for bad in ["", "x", "5q", "-1k"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
