//! rclone's `sftp` remote options to an [`SftpConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::SftpConfig;

/// Options that change nothing for Ferry (rclone tuning of its own client).
const IGNORED: &[&str] = &[
    "shell_type",
    "chunk_size",
    "idle_timeout",
    "pubkey_file",
    "disable_concurrent_reads",
    "disable_concurrent_writes",
    "server_command",
    "use_fstat",
    "subsystem",
    "copy_is_hardlink",
    "description",
];

fn parse_bool(name: &str, key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" => Ok(true),
        "false" | "0" | "no" | "off" | "f" => Ok(false),
        _ => Err(format!(
            "remote {name}: option {key} = {v:?} is not a boolean (want true or false)"
        )),
    }
}

/// Build the configuration of remote `name` from its options (obscured
/// secrets already revealed) and the path after the colon. Returns the
/// configuration and warnings for options Ferry does not use.
pub fn from_rclone(
    name: &str,
    options: &BTreeMap<String, String>,
    path: &str,
) -> Result<(SftpConfig, Vec<String>), String> {
    let get = |k: &str| options.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let host = get("host")
        .ok_or_else(|| format!("remote {name}: option host is required for an sftp remote"))?;
    let mut cfg = SftpConfig::new(host, get("user").unwrap_or(""));
    if let Some(p) = get("port") {
        cfg.port = p
            .parse()
            .map_err(|_| format!("remote {name}: option port = {p:?} is not a port number"))?;
    }
    cfg.password = get("pass").map(str::to_string);
    cfg.key_file = get("key_file").map(PathBuf::from);
    cfg.key_file_pass = get("key_file_pass").map(str::to_string);
    cfg.key_pem = get("key_pem").map(str::to_string);
    cfg.known_hosts_file = get("known_hosts_file").map(PathBuf::from);
    cfg.root = path.as_bytes().to_vec();
    if let Some(v) = get("disable_hashcheck") {
        cfg.disable_hashcheck = parse_bool(name, "disable_hashcheck", v)?;
    }
    if let Some(v) = get("set_modtime") {
        cfg.set_modtime = parse_bool(name, "set_modtime", v)?;
    }
    cfg.md5sum_command = get("md5sum_command").map(str::to_string);
    cfg.sha1sum_command = get("sha1sum_command").map(str::to_string);
    if let Some(v) = get("concurrency") {
        cfg.concurrency = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("remote {name}: option concurrency = {v:?} is not a positive number")
        })?;
    }
    if let Some(v) = get("connections") {
        // rclone's 0 means "no limit": a few connections serve that well.
        let n: usize = v
            .parse()
            .map_err(|_| format!("remote {name}: option connections = {v:?} is not a number"))?;
        cfg.connections = if n == 0 { 4 } else { n };
    }
    if let Some(v) = get("connect_timeout") {
        let secs: f64 = v.trim_end_matches('s').parse().map_err(|_| {
            format!("remote {name}: option connect_timeout = {v:?} is not a number of seconds")
        })?;
        cfg.connect_timeout = Duration::try_from_secs_f64(secs).map_err(|_| {
            format!("remote {name}: option connect_timeout = {v:?} is out of range")
        })?;
    }
    if get("pass").is_none() && get("key_file").is_none() && get("key_pem").is_none() {
        return Err(format!(
            "remote {name}: give pass, key_file or key_pem (Ferry does not use an ssh-agent)"
        ));
    }
    let mut warnings = Vec::new();
    for (k, v) in options {
        if v.is_empty() || k == "type" || IGNORED.contains(&k.as_str()) {
            continue;
        }
        let used = [
            "host",
            "user",
            "port",
            "pass",
            "key_file",
            "key_file_pass",
            "key_pem",
            "known_hosts_file",
            "disable_hashcheck",
            "set_modtime",
            "md5sum_command",
            "sha1sum_command",
            "concurrency",
            "connections",
            "connect_timeout",
        ];
        if !used.contains(&k.as_str()) {
            warnings.push(format!(
                "remote {name}: option {k} of the sftp backend is not supported by Ferry; ignored"
            ));
        }
    }
    Ok((cfg, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_map_as_rclone_names_them() {
        let o = map(&[
            ("host", "h.example"),
            ("user", "u"),
            ("port", "2222"),
            ("key_file", "/k"),
            ("known_hosts_file", "/kh"),
            ("shell_type", "unix"),
            ("key_use_agent", "true"),
            ("connections", "0"),
        ]);
        let (c, w) = from_rclone("r", &o, "/srv/x").unwrap();
        assert_eq!(
            (c.host.as_str(), c.user.as_str(), c.port),
            ("h.example", "u", 2222)
        );
        assert_eq!(c.key_file, Some(PathBuf::from("/k")));
        assert_eq!(c.root, b"/srv/x");
        assert_eq!(c.connections, 4);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("key_use_agent"));
    }

    #[test]
    fn errors_name_the_remote_and_key() {
        let e = from_rclone("r", &map(&[("user", "u")]), "").unwrap_err();
        assert!(e.contains("remote r") && e.contains("host"), "{e}");
        let e = from_rclone(
            "r",
            &map(&[("host", "h"), ("port", "x"), ("pass", "p")]),
            "",
        )
        .unwrap_err();
        assert!(e.contains("port"), "{e}");
        let e = from_rclone("r", &map(&[("host", "h")]), "").unwrap_err();
        assert!(e.contains("key_file"), "{e}");
        let e = from_rclone(
            "r",
            &map(&[("host", "h"), ("pass", "p"), ("set_modtime", "perhaps")]),
            "",
        )
        .unwrap_err();
        assert!(e.contains("set_modtime"), "{e}");
    }
}
