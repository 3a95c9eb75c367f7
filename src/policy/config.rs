//! The config file (`--config`, default `.github/webserver-exec-guard.yml`): the allowlist.
//!
//! ```yaml
//! version: 1
//! allow:
//!   - recipe: webserver_exec        # a recipe name or kind, or "*"
//!     exe: /usr/sbin/nginx          # one or more of exe (exact path), base (file name),
//!     base: nginx                   #   regex (searched in the path)
//!     argv: '^nginx -t'             # optional: regex searched in the argv joined by spaces
//!     reason: integration tests validate our nginx.conf   # required
//!     expires: 2027-06-30           # optional: the entry allows through this date (UTC)
//! ```
//! An entry is matched against the resolved executable and the `#!` script, never against the
//! invoked name or argv[0], which the process chooses.

use std::path::{Path, PathBuf};

use serde::de::Deserializer;
use serde::Deserialize;

use crate::event::{join, ExecEvent};
use crate::policy::recipe::{deserialize_str_with, with_regex_budget, Pattern};
use crate::policy::yaml::{check_yaml, read_yaml_file, LoadError};
use crate::time::Date;

pub const DEFAULT_PATH: &str = ".github/webserver-exec-guard.yml";

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub allow: Vec<AllowEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawEntry")]
pub struct AllowEntry {
    pub recipe: String,
    pub exe: Option<String>,
    pub base: Option<String>,
    pub regex: Option<Pattern>,
    pub argv: Option<Pattern>,
    pub reason: String,
    pub expires: Option<Date>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    recipe: String,
    exe: Option<String>,
    base: Option<String>,
    regex: Option<Pattern>,
    argv: Option<Pattern>,
    reason: String,
    expires: Option<ExpiryDate>,
}

struct ExpiryDate(Date);

impl<'de> Deserialize<'de> for ExpiryDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str_with(d, "a date (YYYY-MM-DD)", |s| {
            Date::parse(s.trim())
                .map(ExpiryDate)
                .ok_or_else(|| format!("invalid date {s:?}: expected YYYY-MM-DD"))
        })
    }
}

impl TryFrom<RawEntry> for AllowEntry {
    type Error = String;
    fn try_from(r: RawEntry) -> Result<Self, String> {
        if r.exe.is_none() && r.base.is_none() && r.regex.is_none() {
            return Err("an allow entry needs a matcher: `exe`, `base` or `regex`".into());
        }
        if let Some(exe) = &r.exe {
            if !exe.starts_with('/') {
                return Err(format!("`exe` must be an absolute path: got {exe:?}"));
            }
        }
        if r.reason.trim().is_empty() {
            return Err("`reason` must say why this is allowed".into());
        }
        Ok(AllowEntry {
            recipe: r.recipe,
            exe: r.exe,
            base: r.base,
            regex: r.regex,
            argv: r.argv,
            reason: r.reason.trim().to_string(),
            expires: r.expires.map(|e| e.0),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "version_one")]
    #[allow(dead_code)]
    version: Option<u64>,
    #[serde(default)]
    allow: Vec<AllowEntry>,
}

/// `version: 1`, checked inside the visitor so that the error has the value's position.
fn version_one<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("the config version, 1")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_u64(self)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<u64>, E> {
            if v != 1 {
                return Err(E::custom(format!(
                    "config version {v} is not supported (this guard reads version 1)"
                )));
            }
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<u64>, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "config version {v} is not supported (this guard reads version 1)"
                ))),
            }
        }
    }
    d.deserialize_option(V)
}

/// The outcome of looking an exec up in the allowlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowance {
    /// Allowed by the entry at this index, with its reason.
    Allowed {
        index: usize,
        reason: String,
    },
    /// Only an expired entry matched: not allowed, and the report says so.
    Expired {
        index: usize,
        reason: String,
        expired: Date,
    },
    None,
}

impl Config {
    /// Loads `path`; with `explicit == false` a missing file is an empty config.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, LoadError> {
        if !explicit && !path.exists() {
            return Ok(Config::default());
        }
        let text = read_yaml_file(path, "config file")?;
        Self::parse(path, &text)
    }

    /// Parses a config file's text, within the bounds of [`check_yaml`]. An empty file, or one
    /// of comments only, allows nothing.
    pub fn parse(path: &Path, text: &[u8]) -> Result<Config, LoadError> {
        let file = path.display().to_string();
        let text = check_yaml(&file, text)?;
        let raw: Option<RawConfig> = with_regex_budget(|| serde_norway::from_slice(text))
            .map_err(|e| LoadError::from_yaml(&file, text, &e))?;
        Ok(Config {
            file: Some(path.to_path_buf()),
            allow: raw.map(|r| r.allow).unwrap_or_default(),
        })
    }

    /// Looks an exec matched by `recipe` (name and kind) up in the allowlist, as of `today`.
    /// `path` is the file that made the match (see `recipe::Match::allow_path`): an entry must
    /// name that file — allowing a script never allows the executable, nor the reverse.
    pub fn allowance(
        &self,
        recipe_name: &str,
        recipe_kind: &str,
        e: &ExecEvent,
        path: &crate::event::Bytes,
        today: Date,
    ) -> Allowance {
        let mut expired = Allowance::None;
        for (index, entry) in self.allow.iter().enumerate() {
            if !entry.matches(recipe_name, recipe_kind, e, path) {
                continue;
            }
            match entry.expires {
                Some(date) if today > date => {
                    if expired == Allowance::None {
                        expired = Allowance::Expired {
                            index,
                            reason: entry.reason.clone(),
                            expired: date,
                        };
                    }
                }
                _ => {
                    return Allowance::Allowed {
                        index,
                        reason: entry.reason.clone(),
                    }
                }
            }
        }
        expired
    }
}

impl AllowEntry {
    fn matches(
        &self,
        recipe_name: &str,
        recipe_kind: &str,
        e: &ExecEvent,
        p: &crate::event::Bytes,
    ) -> bool {
        if self.recipe != "*" && self.recipe != recipe_name && self.recipe != recipe_kind {
            return false;
        }
        let path_ok = self
            .exe
            .as_ref()
            .is_none_or(|x| p.as_bytes() == x.as_bytes())
            && self
                .base
                .as_ref()
                .is_none_or(|b| p.file_name() == b.as_bytes())
            && self.regex.as_ref().is_none_or(|r| r.is_match(p.as_bytes()));
        path_ok
            && self
                .argv
                .as_ref()
                .is_none_or(|re| re.is_match(&join(&e.argv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "allow:\n  - recipe: webserver_exec\n    base: nginx\n",
                "missing field `reason`",
            ),
            (
                "allow:\n  - recipe: w\n    base: nginx\n    reason: r\n    expires: 2026-02-30\n",
                "2026-02-30",
            ),
            (
                "allow:\n  - recipe: w\n    base: nginx\n    reason: r\n    colour: red\n",
                "unknown field `colour`",
            ),
            (
                "allow:\n  - recipe: w\n    regex: '('\n    reason: r\n",
                "invalid regex",
            ),
            ("allow:\n  - recipe: w\n    reason: r\n", "needs a matcher"),
            ("version: 2\n", "version 2"),
        ];
        for (text, want) in cases {
            let err = Config::parse(Path::new("cfg.yml"), text.as_bytes()).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(want), "{shown}");
            if *want != "version 2" {
                assert!(err.line.is_some() && err.column.is_some(), "{shown}");
                assert!(shown.starts_with("cfg.yml:"), "{shown}");
            }
        }
        let err = Config::parse(
            Path::new("cfg.yml"),
            b"allow:\n  - recipe: w\n    base: nginx\n    reason: r\n    expires: 2026-02-30\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (Some(5), Some(14)), "{err}");
    }

    #[test]
    fn version_may_be_1_or_left_empty() {
        for text in [
            "version: 1\nallow: []\n",
            "version:\nallow: []\n",
            "version: ~\n",
            "allow: []\n",
        ] {
            let c = Config::parse(Path::new("cfg.yml"), text.as_bytes());
            assert!(c.is_ok_and(|c| c.allow.is_empty()), "{text:?}");
        }
        for text in ["version: 2\n", "version: -1\n", "version: one\n"] {
            let err = Config::parse(Path::new("cfg.yml"), text.as_bytes()).unwrap_err();
            assert_eq!(err.line, Some(1), "{text:?}: {err}");
        }
    }
}
