//! Reporters: they render a checked run to a writer, one module per format.

pub mod escape;
pub mod github;
pub mod json;
pub mod markdown;
pub mod pr;
pub mod sarif;
pub mod text;

use serde::Serialize;

use crate::check::Outcome;
use crate::event::Bytes;
use crate::recipe::RecipeSet;
use crate::trace::Integrity;

/// What makes findings fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Findings that are not allowlisted make the exit status non-zero.
    Fail,
    /// Report only.
    Warn,
    /// `guard run`: refuse a matching exec before it happens (the caller sees `EACCES`) and
    /// let the build go on; findings fail as in `fail`. Elsewhere the same as `fail`.
    Enforce,
}

impl Mode {
    /// Whether failing findings make the exit status non-zero.
    pub fn fails(self) -> bool {
        matches!(self, Mode::Fail | Mode::Enforce)
    }
}

/// Everything a reporter needs.
pub struct Run<'a> {
    pub outcome: &'a Outcome,
    pub recipes: &'a RecipeSet,
    pub mode: Mode,
    /// The traced command, for `guard run` (and traces of it).
    pub command: Option<&'a [Bytes]>,
    /// The state of a re-read trace (`guard check`).
    pub integrity: Option<&'a Integrity>,
    /// Things the reader should know that are not findings (a torn trace, recipes not evaluated).
    pub notes: Vec<String>,
    /// Where each finding points in the repository (index-aligned with `outcome.findings`;
    /// shorter or empty when unknown).
    pub locations: Vec<Option<Location>>,
}

/// A place in the repository a finding points at: the workflow step that ran it, or a script
/// of the repository in its ancestry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    /// 1-based.
    pub line: u32,
}

impl Run<'_> {
    /// The location of the finding at `index`, if known.
    pub fn location(&self, index: usize) -> Option<&Location> {
        self.locations.get(index).and_then(|l| l.as_ref())
    }

    /// The verdict: `fail` when a failing finding exists in fail mode.
    pub fn verdict(&self) -> &'static str {
        let failing = self.outcome.failing() > 0;
        match (failing, self.mode) {
            (false, _) => "pass",
            (true, Mode::Fail | Mode::Enforce) => "fail",
            (true, Mode::Warn) => "warn",
        }
    }

    /// Notes about recipes that are loaded but cannot be evaluated on exec events.
    pub fn recipe_notes(recipes: &RecipeSet) -> Vec<String> {
        recipes
            .recipes
            .iter()
            .filter_map(|r| {
                if !r.recipe.enabled {
                    return Some(format!("recipe {} ({}): disabled", r.recipe.name, r.origin));
                }
                r.recipe
                    .not_evaluated()
                    .map(|why| format!("recipe {} ({}): {why}", r.recipe.name, r.origin))
            })
            .collect()
    }
}
