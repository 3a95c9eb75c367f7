//! Reporters: they render a checked run to a writer, one module per format.

pub mod attack;
pub mod github;
pub mod json;
pub mod markdown;
pub mod sarif;
pub mod text;

use serde::Serialize;

use crate::check::{Checked, Mode, Outcome, Verdict};
use crate::event::Bytes;
use crate::policy::recipe::RecipeSet;
use crate::trace::Integrity;

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
    /// The workflow file of the run (relative to the repository), the fallback location of
    /// SARIF results.
    pub workflow: Option<String>,
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

impl<'a> Run<'a> {
    /// The location of the finding at `index`, if known.
    pub fn location(&self, index: usize) -> Option<&Location> {
        self.locations.get(index).and_then(|l| l.as_ref())
    }

    /// The verdict in this run's mode.
    pub fn verdict(&self) -> Verdict {
        self.outcome.verdict(self.mode)
    }

    /// What the reporters need, for a checked trace.
    pub fn checked(
        checked: &'a Checked,
        recipes: &'a RecipeSet,
        mode: Mode,
        locations: Vec<Option<Location>>,
    ) -> Run<'a> {
        Run {
            outcome: &checked.outcome,
            recipes,
            mode,
            command: checked.command.as_deref(),
            integrity: Some(&checked.integrity),
            notes: checked.notes.clone(),
            locations,
            workflow: None,
        }
    }
}
