//! [`Env`]: the environment variables that configure remotes.
//!
//! As rclone's `RCLONE_CONFIG_<REMOTE>_<KEY>`, Ferry reads
//! `FERRY_CONFIG_<REMOTE>_<KEY>`, with rclone's name mapping:
//!
//! - `<REMOTE>` is the remote name upper-cased, otherwise unchanged (a `-`,
//!   `.` or space stays; rclone changed this in 1.6x so that `my-remote`
//!   maps to `RCLONE_CONFIG_MY-REMOTE_...`, which `env(1)` can set though
//!   most shells cannot);
//! - `<KEY>` is the option name upper-cased with `-` turned into `_`.
//!
//! Reading back, a variable's key part is lower-cased (rclone's option
//! names are lower-case `snake_case`). `FERRY_CONFIG_<NAME>_TYPE=<type>`
//! alone defines a remote, whose listed name is `<NAME>` lower-cased.
//!
//! rclone looks variables up by the option names a backend declares; this
//! crate does not know them, so it lists the variables instead. When one
//! remote's name extends another's (`a` and `a_b`), a variable goes to the
//! remote with the longer name.

use std::collections::BTreeMap;

/// The prefix of the variables that configure remotes.
pub const REMOTE_ENV_PREFIX: &str = "FERRY_CONFIG_";

/// A snapshot of environment variables: those starting with `FERRY_CONFIG`
/// when taken from the process ([`Env::from_os`]), or any given pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment's `FERRY_CONFIG*` variables. Variables whose
    /// name or value is not UTF-8 are skipped.
    pub fn from_os() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k.starts_with("FERRY_CONFIG"))
                .collect(),
        }
    }

    /// An environment made of the given `(name, value)` pairs; for tests
    /// and for callers that filter the environment themselves.
    pub fn from_pairs<I, K, V>(pairs: I) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of variable `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The variable that sets option `key` of remote `remote`:
    /// `FERRY_CONFIG_<REMOTE>_<KEY>`.
    pub fn var_name(remote: &str, key: &str) -> String {
        format!(
            "{REMOTE_ENV_PREFIX}{}_{}",
            remote.to_uppercase(),
            key.replace('-', "_").to_uppercase()
        )
    }

    /// The remotes defined by `FERRY_CONFIG_<NAME>_TYPE=<type>` (non-empty
    /// type), as `(name, type)` lower-cased, sorted by variable name.
    pub fn remotes(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(REMOTE_ENV_PREFIX)?.strip_suffix("_TYPE")?;
                (!name.is_empty()).then(|| (name.to_lowercase(), v.to_lowercase()))
            })
            .collect()
    }

    /// The options the environment sets for `remote`, as `(key, variable,
    /// value)`. `others` are the other known remote names, so that
    /// variables of a remote whose name extends `remote`'s are left to it.
    pub(crate) fn options_for(
        &self,
        remote: &str,
        others: &[&str],
    ) -> Vec<(String, String, String)> {
        let prefix = var_prefix(remote);
        let longer: Vec<String> = others
            .iter()
            .map(|o| var_prefix(o))
            .filter(|p| p.len() > prefix.len() && p.starts_with(&prefix))
            .collect();
        self.vars
            .iter()
            .filter(|(var, _)| !longer.iter().any(|p| var.starts_with(p)))
            .filter_map(|(var, value)| {
                let key = var.strip_prefix(&prefix)?;
                (!key.is_empty()).then(|| (key.to_lowercase(), var.clone(), value.clone()))
            })
            .collect()
    }
}

/// `FERRY_CONFIG_<REMOTE>_`.
fn var_prefix(remote: &str) -> String {
    format!("{REMOTE_ENV_PREFIX}{}_", remote.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_names() {
        assert_eq!(
            Env::var_name("mys3", "secret_access_key"),
            "FERRY_CONFIG_MYS3_SECRET_ACCESS_KEY"
        );
        assert_eq!(
            Env::var_name("my-remote", "ignore-size"),
            "FERRY_CONFIG_MY-REMOTE_IGNORE_SIZE"
        );
        assert_eq!(Env::var_name("a.b c", "x"), "FERRY_CONFIG_A.B C_X");
    }

    #[test]
    fn remotes_from_type_vars() {
        let env = Env::from_pairs([
            ("FERRY_CONFIG_MYS3_TYPE", "S3"),
            ("FERRY_CONFIG_MYS3_REGION", "eu"),
            ("FERRY_CONFIG_EMPTY_TYPE", ""),
            ("FERRY_CONFIG__TYPE", "x"),
            ("FERRY_CONFIG_MY-DAV_TYPE", "webdav"),
            ("RCLONE_CONFIG_OTHER_TYPE", "s3"),
            ("FERRY_CONFIG", "/etc/ferry.conf"),
        ]);
        assert_eq!(
            env.remotes(),
            [
                ("my-dav".to_string(), "webdav".to_string()),
                ("mys3".to_string(), "s3".to_string())
            ]
        );
        assert_eq!(env.get("FERRY_CONFIG"), Some("/etc/ferry.conf"));
        assert_eq!(env.get("NOPE"), None);
    }

    #[test]
    fn options_for_a_remote() {
        let env = Env::from_pairs([
            ("FERRY_CONFIG_A_TYPE", "local"),
            ("FERRY_CONFIG_A_COPY_LINKS", "true"),
            ("FERRY_CONFIG_A_B_TYPE", "s3"),
            ("FERRY_CONFIG_A_B_REGION", "eu"),
            ("FERRY_CONFIG_A_", "no key"),
            ("FERRY_CONFIG_AB_X", "other remote"),
        ]);
        let a = env.options_for("a", &["a", "a_b"]);
        assert_eq!(
            a,
            [
                (
                    "copy_links".to_string(),
                    "FERRY_CONFIG_A_COPY_LINKS".to_string(),
                    "true".to_string()
                ),
                (
                    "type".to_string(),
                    "FERRY_CONFIG_A_TYPE".to_string(),
                    "local".to_string()
                ),
            ]
        );
        let ab = env.options_for("A_B", &["a"]);
        assert_eq!(ab.len(), 2);
        assert_eq!(ab[0].0, "region");
        assert_eq!(ab[1].0, "type");
        // Without knowing `a_b`, `a` would see its variables too.
        assert_eq!(env.options_for("a", &[]).len(), 4);
    }

    #[test]
    fn from_os_keeps_only_ferry_config_vars() {
        let env = Env::from_os();
        assert!(env.vars.keys().all(|k| k.starts_with("FERRY_CONFIG")));
    }
}
