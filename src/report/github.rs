//! GitHub Actions workflow commands: one annotation per distinct (recipe, executable, step),
//! escaped exactly as the runner requires, within its limit of 10 annotations per type per step.
//!
//! argv is attacker-controlled: a message or property value can never end the command early,
//! start a new one, or carry a raw newline (`%0A::error::` and `\n::add-mask::` come out inert).

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::check::{Finding, Kind, Mode, Verdict};
use crate::escape::{workflow_data, workflow_property};

use super::{Location, Run};
use crate::escape::{terminal, terminal_argv};

/// The runner attaches at most this many annotations of each type to a step.
pub const PER_TYPE_LIMIT: usize = 10;

/// The level of a workflow-command annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

/// A verdict's annotation: a failure is an error, a warning a warning, what passes a notice.
impl From<Verdict> for Level {
    fn from(v: Verdict) -> Level {
        match v {
            Verdict::Fail => Level::Error,
            Verdict::Warn => Level::Warning,
            Verdict::Pass => Level::Notice,
        }
    }
}

impl Level {
    pub fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

/// One annotation, before escaping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    pub level: Level,
    pub title: String,
    pub message: String,
    pub location: Option<Location>,
    /// The findings (indexes) it stands for.
    pub findings: Vec<usize>,
}

impl Annotation {
    /// The workflow command line.
    pub fn command(&self) -> String {
        let mut props = Vec::new();
        if let Some(l) = &self.location {
            props.push(format!("file={}", workflow_property(&l.path)));
            props.push(format!("line={}", l.line));
        }
        props.push(format!("title={}", workflow_property(&self.title)));
        // The runner cuts messages at 4,096 characters; cut first, on a character boundary.
        let mut message = self.message.clone();
        if message.chars().count() > 4000 {
            message = message.chars().take(4000).collect::<String>() + " …";
        }
        format!(
            "::{} {}::{}",
            self.level.command(),
            props.join(","),
            workflow_data(&message)
        )
    }
}

/// The level of a finding's annotation in a mode.
pub fn level_of(f: &Finding, mode: Mode) -> Level {
    f.verdict(mode).into()
}

fn describe(run: &Run, f: &Finding, count: u64) -> String {
    let text = |b: &[u8]| terminal(b);
    let Some(p) = &f.process else {
        return f
            .evidence
            .iter()
            .map(|e| text(e.as_bytes()))
            .collect::<Vec<_>>()
            .join("\n");
    };
    let mut m = format!(
        "{} executed: {}\nargv: {}",
        f.recipe,
        text(p.exe.as_bytes()),
        terminal_argv(&p.argv)
    );
    if let Some(outcome) = f.outcome() {
        m.push_str(&format!("\n{outcome}"));
    }
    if let Some(step) = &p.step {
        m.push_str(&format!("\nstep: {}", text(step.as_bytes())));
    }
    if let Some(c) = &p.container {
        m.push_str(&format!("\ncontainer: {}", text(c.as_bytes())));
    }
    if count > 1 {
        m.push_str(&format!("\nseen {count} times"));
    }
    if let Some(a) = p.ancestry.first() {
        m.push_str(&format!("\nparent: {} {}", a.pid, terminal_argv(&a.argv)));
    }
    if let Some(reason) = &f.allowed {
        m.push_str(&format!("\nallowed: {}", text(reason.as_bytes())));
    }
    if let Some(note) = &f.allow_expired {
        m.push_str(&format!("\n{}", text(note.as_bytes())));
    }
    if f.failing() {
        if let Some(r) = run.recipes.get(&f.name) {
            if !r.recipe.ext.actions.ci_cd.is_empty() {
                m.push_str("\nRecommended actions (CI/CD):");
                for (i, a) in r.recipe.ext.actions.ci_cd.iter().enumerate() {
                    m.push_str(&format!("\n{}. {a}", i + 1));
                }
            }
        }
    }
    m
}

/// The annotations for a run: one per distinct (recipe, executable, step), at most
/// [`PER_TYPE_LIMIT`] per level — the last one of a level aggregates the rest, so none is
/// dropped silently.
pub fn annotations(run: &Run) -> Vec<Annotation> {
    // Group findings by (level, recipe, exe, step), in order of first appearance.
    let mut groups: BTreeMap<(Level, usize), (Vec<usize>, u64)> = BTreeMap::new();
    let mut keys: Vec<(Level, Kind, Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, f) in run.outcome.findings.iter().enumerate() {
        let level = level_of(f, run.mode);
        let (exe, step) = match &f.process {
            Some(p) => (
                p.exe.0.clone(),
                p.step.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            ),
            None => (format!("#{i}").into_bytes(), Vec::new()),
        };
        let key = (level, f.recipe.clone(), exe, step);
        let at = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let g = groups.entry((level, at)).or_default();
        g.0.push(i);
        g.1 += f.count;
    }
    let mut out = Vec::new();
    for level in [Level::Error, Level::Warning, Level::Notice] {
        let of_level: Vec<&(Vec<usize>, u64)> = groups
            .iter()
            .filter(|((l, _), _)| *l == level)
            .map(|(_, g)| g)
            .collect();
        for (n, (idx, count)) in of_level.iter().enumerate() {
            if n == PER_TYPE_LIMIT - 1 && of_level.len() > PER_TYPE_LIMIT {
                let rest: Vec<usize> = of_level[n..]
                    .iter()
                    .flat_map(|(i, _)| i.iter().copied())
                    .collect();
                let execs: u64 = of_level[n..].iter().map(|(_, c)| *c).sum();
                out.push(Annotation {
                    level,
                    title: format!("webserver-exec-guard: {} more", of_level.len() - n),
                    message: format!(
                        "{} more distinct findings ({} execs) of this level are not shown as annotations (GitHub shows at most {PER_TYPE_LIMIT} per type per step): see the job summary and the JSON report.",
                        of_level.len() - n,
                        execs
                    ),
                    location: None,
                    findings: rest,
                });
                break;
            }
            let f = &run.outcome.findings[idx[0]];
            let what = match &f.process {
                Some(p) => terminal(p.exe.file_name()),
                None => "the guard's evidence".to_string(),
            };
            out.push(Annotation {
                level,
                title: format!("{} ({}): {}", f.recipe, f.importance, what),
                message: describe(run, f, *count),
                location: run.location(idx[0]).cloned(),
                findings: idx.clone(),
            });
        }
    }
    out
}

/// Writes the annotations as workflow commands.
pub fn write(run: &Run, out: &mut dyn Write) -> io::Result<()> {
    for a in annotations(run) {
        writeln!(out, "{}", a.command())?;
    }
    Ok(())
}

// The check run's data (sent by crate::github::api, built by crate::github::pr).

/// Severity of a check run annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

/// One annotation of the check run: a finding pinned to a line of the repository.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckAnnotation {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    /// 1-based.
    pub start_line: u32,
    /// 1-based, at least `start_line`.
    pub end_line: u32,
    pub level: AnnotationLevel,
    pub title: String,
    pub message: String,
}

/// What the check run shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckRunOutput {
    pub title: String,
    /// Markdown; cut to 65,535 characters when sent.
    pub summary: String,
    /// All annotations; they are sent in batches of 50.
    pub annotations: Vec<CheckAnnotation>,
}

/// The check run's conclusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    Success,
    Failure,
    Neutral,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Finding, Outcome, ProcessInfo, Stats};
    use crate::event::Bytes;
    use crate::policy::recipe::{Importance, RecipeSet};

    fn finding(exe: &str, allowed: bool) -> Finding {
        Finding {
            recipe: "webserver_exec".into(),
            name: "webserver_exec".into(),
            importance: Importance::High,
            allowed: allowed.then(|| "tests".to_string()),
            allow_expired: None,
            evidence: vec!["name".into()],
            count: 2,
            blocked: false,
            attempt: None,
            process: Some(ProcessInfo {
                pid: 1,
                ppid: 0,
                exe: Bytes::from(exe),
                argv: vec![Bytes::from(exe)],
                cwd: None,
                uid: 0,
                script: None,
                time: String::new(),
                step: Some("build".into()),
                container: None,
                ancestry: vec![],
            }),
        }
    }

    #[test]
    fn ten_per_level_the_last_aggregating_the_rest() {
        let mut findings: Vec<Finding> = (0..25)
            .map(|i| finding(&format!("/srv/server{i}"), false))
            .collect();
        // Duplicates of one (recipe, exe, step) make one annotation.
        findings.push(finding("/srv/server0", false));
        findings.extend((0..3).map(|i| finding(&format!("/srv/allowed{i}"), true)));
        let outcome = Outcome {
            stats: Stats::default(),
            findings,
            status: None,
            outlived: vec![],
        };
        let recipes = RecipeSet::builtin();
        let run = Run {
            outcome: &outcome,
            recipes: &recipes,
            mode: Mode::Fail,
            command: None,
            integrity: None,
            notes: vec![],
            locations: vec![],
            workflow: None,
        };
        let a = annotations(&run);
        let errors: Vec<_> = a.iter().filter(|a| a.level == Level::Error).collect();
        assert_eq!(errors.len(), PER_TYPE_LIMIT);
        assert_eq!(errors[0].findings, vec![0, 25], "duplicates grouped");
        assert!(
            errors[9]
                .message
                .contains("16 more distinct findings (32 execs)"),
            "{}",
            errors[9].message
        );
        let covered: usize = errors.iter().map(|e| e.findings.len()).sum();
        assert_eq!(covered, 26, "no finding dropped");
        assert_eq!(a.iter().filter(|a| a.level == Level::Notice).count(), 3);
    }

    #[test]
    fn escaping_follows_the_runner() {
        assert_eq!(
            workflow_data("a%0A::error::b\r\n::add-mask::x"),
            "a%250A::error::b%0D%0A::add-mask::x"
        );
        assert_eq!(workflow_property("a,b:c%\n"), "a%2Cb%3Ac%25%0A");
        let a = Annotation {
            level: Level::Error,
            title: "t,::x".into(),
            message: "line1\n::error::forged".into(),
            location: Some(Location {
                path: "a,b.yml".into(),
                line: 3,
            }),
            findings: vec![0],
        };
        let cmd = a.command();
        assert_eq!(
            cmd,
            "::error file=a%2Cb.yml,line=3,title=t%2C%3A%3Ax::line1%0A::error::forged"
        );
        assert_eq!(cmd.lines().count(), 1);
    }
}
