//! The pipeline shared by the front ends: options become a loaded [`Policy`] (recipes and
//! allowlist), a trace or a live run becomes a verdict, and a verdict becomes an exit status.
//! The command line and the GitHub Action both go through here, so that they load, judge and
//! exit the same way.

use std::path::{Path, PathBuf};

use crate::check::{check_trace, Checked, Checker, Mode, Outcome, Verdict};
use crate::event::ExitStatus;
use crate::policy::config::{self, Config};
use crate::policy::recipe::RecipeSet;
use crate::policy::yaml::LoadError;
use crate::sources::fingerprint::Fingerprinter;
use crate::time::Date;
use crate::trace::TraceError;

/// Exit status: a failing finding, while the command itself succeeded.
pub const EXIT_FINDING: u8 = 3;
/// Exit status of `guard check` / `guard recipes validate` on bad input or usage.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status: guard itself failed (bad config, tracing refused) before or while running CMD.
pub const EXIT_GUARD_FAILED: u8 = 125;

/// Where the allowlist comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// [`config::DEFAULT_PATH`] when it exists, else no allowlist.
    Default,
    /// This file, which must exist.
    File(PathBuf),
}

impl ConfigSource {
    /// The explicit file when one is named, else the default.
    pub fn from_option(path: Option<PathBuf>) -> ConfigSource {
        path.map_or(ConfigSource::Default, ConfigSource::File)
    }
}

/// What to judge against, as the user asked for it.
#[derive(Clone, Debug)]
pub struct PolicyOptions {
    /// Recipe files or directories added to the built-in recipes.
    pub recipes: Vec<PathBuf>,
    pub config: ConfigSource,
    pub mode: Mode,
}

/// The recipes and the allowlist in force, and the mode they are judged in.
pub struct Policy {
    pub recipes: RecipeSet,
    pub config: Config,
    pub mode: Mode,
}

/// The built-in recipes and those of `paths`; the first file that does not load is the error.
pub fn load_recipes(paths: &[PathBuf]) -> Result<RecipeSet, LoadError> {
    let mut set = RecipeSet::builtin();
    for p in paths {
        set.load_path(p)?;
    }
    Ok(set)
}

/// The allowlist from `source`.
pub fn load_config(source: &ConfigSource) -> Result<Config, LoadError> {
    match source {
        ConfigSource::File(path) => Config::load(path, true),
        ConfigSource::Default => Config::load(Path::new(config::DEFAULT_PATH), false),
    }
}

impl Policy {
    /// Loads the recipes and the allowlist the options name.
    pub fn load(options: &PolicyOptions) -> Result<Policy, LoadError> {
        Ok(Policy {
            recipes: load_recipes(&options.recipes)?,
            config: load_config(&options.config)?,
            mode: options.mode,
        })
    }

    /// A checker for a live run, judging expiry dates as of today.
    pub fn checker(&self) -> Checker<'_> {
        Checker::new(&self.recipes, &self.config, Date::today())
    }

    /// The fingerprinter of the recipes' content rules.
    pub fn fingerprinter(&self) -> Fingerprinter {
        Fingerprinter::new(&self.recipes)
    }

    /// Reads a saved trace through the checker. `watcher_last_seen` is when a watcher that
    /// died without sealing was last seen alive.
    pub fn check_trace(
        &self,
        trace: &Path,
        watcher_last_seen: Option<&str>,
    ) -> Result<Checked, TraceError> {
        check_trace(trace, &self.recipes, &self.config, watcher_last_seen)
    }
}

/// The exit status of a check (`guard check`, `guard stop`, the Action's post step): 3 for a
/// failing verdict, else 0.
pub fn verdict_status(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Fail => EXIT_FINDING,
        Verdict::Pass | Verdict::Warn => 0,
    }
}

/// The exit status of `guard run` (the table of DESIGN.md): the command's own status, or 3 for a
/// failing verdict when the command succeeded (a failing command's status is kept: it says more).
pub fn run_status(outcome: &Outcome, mode: Mode, status: ExitStatus) -> u8 {
    let own = status.shell_status().clamp(0, 255) as u8;
    if own == 0 && outcome.verdict(mode) == Verdict::Fail {
        EXIT_FINDING
    } else {
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Finding, Stats};

    fn outcome(failing: bool) -> Outcome {
        let mut o = Outcome {
            stats: Stats::default(),
            findings: Vec::new(),
            status: None,
            outlived: Vec::new(),
        };
        if failing {
            o.findings.push(Finding::guard(
                crate::check::GuardKind::TraceAltered,
                "altered".into(),
            ));
        }
        o
    }

    #[test]
    fn a_failing_verdict_changes_only_a_successful_status() {
        let fail = outcome(true);
        let clean = outcome(false);
        assert_eq!(run_status(&fail, Mode::Fail, ExitStatus::Code(0)), 3);
        assert_eq!(run_status(&fail, Mode::Enforce, ExitStatus::Code(0)), 3);
        assert_eq!(run_status(&fail, Mode::Warn, ExitStatus::Code(0)), 0);
        assert_eq!(run_status(&fail, Mode::Fail, ExitStatus::Code(2)), 2);
        assert_eq!(run_status(&fail, Mode::Fail, ExitStatus::Signal(9)), 137);
        assert_eq!(run_status(&clean, Mode::Fail, ExitStatus::Code(0)), 0);
        assert_eq!(verdict_status(fail.verdict(Mode::Fail)), EXIT_FINDING);
        assert_eq!(verdict_status(fail.verdict(Mode::Warn)), 0);
        assert_eq!(verdict_status(clean.verdict(Mode::Fail)), 0);
    }

    #[test]
    fn the_default_config_is_optional_and_a_named_one_is_not() {
        assert!(load_config(&ConfigSource::Default).is_ok());
        let missing = ConfigSource::File(PathBuf::from("/nonexistent/guard.yml"));
        let e = load_config(&missing).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/guard.yml"), "{e}");
    }
}
