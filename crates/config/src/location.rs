//! Where the config file is looked for: [`default_path`].

use std::path::{Path, PathBuf};

/// The environment variable naming the config file (like `RCLONE_CONFIG`).
pub const CONFIG_ENV: &str = "FERRY_CONFIG";

/// Picks the config file, first match wins:
///
/// 1. `explicit` (`--config FILE`), whether or not it exists, so that a
///    mistyped path is reported by [`crate::Config::load`] rather than
///    ignored;
/// 2. `$FERRY_CONFIG`, likewise;
/// 3. `<config dir>/ferry/ferry.conf` if it exists;
/// 4. `<config dir>/rclone/rclone.conf` if it exists (an rclone user's
///    existing config).
///
/// `<config dir>` is `$XDG_CONFIG_HOME` when that is set to an absolute
/// path (as rclone does), else `home/.config`.
///
/// `None` means no config file: only local paths, on-the-fly remotes and
/// remotes defined in the environment work. An empty `explicit` path
/// (`--config ""`) asks for that explicitly, as in rclone; an empty
/// `$FERRY_CONFIG` counts as unset.
///
/// `env` looks up an environment variable, `home` is the user's home
/// directory, `exists` tells whether a file exists; all are parameters so
/// that this is testable without touching the real environment.
pub fn default_path(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return (!path.as_os_str().is_empty()).then(|| path.to_path_buf());
    }
    if let Some(path) = env(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let config_dir = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".config")))?;
    [
        config_dir.join("ferry").join("ferry.conf"),
        config_dir.join("rclone").join("rclone.conf"),
    ]
    .into_iter()
    .find(|p| exists(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(
        explicit: Option<&str>,
        vars: &[(&str, &str)],
        home: Option<&str>,
        files: &[&str],
    ) -> Option<PathBuf> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.get(k).cloned();
        let exists = |p: &Path| files.iter().any(|f| Path::new(f) == p);
        default_path(explicit.map(Path::new), &env, home.map(Path::new), &exists)
    }

    const FERRY: &str = "/home/u/.config/ferry/ferry.conf";
    const RCLONE: &str = "/home/u/.config/rclone/rclone.conf";

    #[test]
    fn explicit_wins_even_if_missing() {
        assert_eq!(
            run(
                Some("/tmp/x.conf"),
                &[("FERRY_CONFIG", "/e.conf")],
                Some("/home/u"),
                &[FERRY, RCLONE]
            ),
            Some(PathBuf::from("/tmp/x.conf"))
        );
    }

    #[test]
    fn explicit_empty_means_no_config() {
        assert_eq!(
            run(
                Some(""),
                &[("FERRY_CONFIG", "/e.conf")],
                Some("/home/u"),
                &[FERRY]
            ),
            None
        );
    }

    #[test]
    fn env_var_next() {
        assert_eq!(
            run(
                None,
                &[("FERRY_CONFIG", "/e.conf")],
                Some("/home/u"),
                &[FERRY]
            ),
            Some(PathBuf::from("/e.conf"))
        );
        // Empty counts as unset.
        assert_eq!(
            run(None, &[("FERRY_CONFIG", "")], Some("/home/u"), &[FERRY]),
            Some(PathBuf::from(FERRY))
        );
    }

    #[test]
    fn ferry_conf_then_rclone_conf() {
        assert_eq!(
            run(None, &[], Some("/home/u"), &[FERRY, RCLONE]),
            Some(PathBuf::from(FERRY))
        );
        assert_eq!(
            run(None, &[], Some("/home/u"), &[RCLONE]),
            Some(PathBuf::from(RCLONE))
        );
        assert_eq!(run(None, &[], Some("/home/u"), &[]), None);
        assert_eq!(run(None, &[], None, &[FERRY, RCLONE]), None);
    }

    #[test]
    fn xdg_config_home() {
        let vars = [("XDG_CONFIG_HOME", "/xdg")];
        assert_eq!(
            run(
                None,
                &vars,
                Some("/home/u"),
                &["/xdg/rclone/rclone.conf", FERRY]
            ),
            Some(PathBuf::from("/xdg/rclone/rclone.conf"))
        );
        assert_eq!(run(None, &vars, Some("/home/u"), &[FERRY]), None);
        // A relative XDG_CONFIG_HOME is ignored, per the XDG spec.
        assert_eq!(
            run(
                None,
                &[("XDG_CONFIG_HOME", "rel")],
                Some("/home/u"),
                &[RCLONE]
            ),
            Some(PathBuf::from(RCLONE))
        );
    }
}
