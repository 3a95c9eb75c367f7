//! The human summary (stderr): each finding with its process, ancestry and the recommended
//! actions for CI/CD, then one verdict line. Colour only when asked (a terminal, no `NO_COLOR`).

use std::io::{self, Write};

use crate::check::{Finding, Verdict};
use crate::policy::recipe::Recipe;

use super::Run;
use crate::escape::{terminal, terminal_argv};

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn label(&self, label: Label) -> String {
        self.paint(label.colour, label.text)
    }
}

/// A word of the report and its colour (an SGR code): the one place the terminal's labels are
/// chosen.
#[derive(Clone, Copy)]
struct Label {
    text: &'static str,
    colour: &'static str,
}

impl From<Verdict> for Label {
    fn from(v: Verdict) -> Label {
        match v {
            Verdict::Fail => Label {
                text: "FAIL",
                colour: "1;31",
            },
            Verdict::Warn => Label {
                text: "WARN",
                colour: "1;33",
            },
            Verdict::Pass => Label {
                text: "PASS",
                colour: "1;32",
            },
        }
    }
}

/// A finding's head: about the guard, failing, or allowed.
impl From<&Finding> for Label {
    fn from(f: &Finding) -> Label {
        match (f.guard_kind(), f.failing()) {
            (Some(_), _) => Label {
                text: "guard: CRITICAL",
                colour: "1;31",
            },
            (None, true) => Label {
                text: "guard: FINDING",
                colour: "1;31",
            },
            (None, false) => Label {
                text: "guard: allowed",
                colour: "1;33",
            },
        }
    }
}

pub fn write(run: &Run, out: &mut dyn Write, color: bool) -> io::Result<()> {
    let style = Style { color };
    for note in &run.notes {
        writeln!(out, "guard: note: {}", terminal(note.as_bytes()))?;
    }

    for f in &run.outcome.findings {
        finding(run, f, out, &style)?;
    }
    for o in &run.outcome.outlived {
        writeln!(
            out,
            "guard: outlived the command (detached, still running untraced): pid {} {}",
            o.pid,
            if o.argv.is_empty() {
                terminal(o.exe.as_bytes())
            } else {
                terminal_argv(&o.argv)
            }
        )?;
    }
    let failing = run.outcome.failing();
    let allowed = run.outcome.findings.len() - failing;
    let s = &run.outcome.stats;
    let mut line = format!(
        "{} failing finding{}, {} allowed, in {} exec{}",
        failing,
        if failing == 1 { "" } else { "s" },
        allowed,
        s.execs,
        if s.execs == 1 { "" } else { "s" }
    );
    if s.lost > 0 {
        line.push_str(&format!(", {} event(s) LOST", s.lost));
    }
    if s.blocked > 0 {
        line.push_str(&format!(", {} exec(s) BLOCKED", s.blocked));
    }
    if s.attempts > s.blocked {
        line.push_str(&format!(
            ", {} failed exec attempt(s)",
            s.attempts - s.blocked
        ));
    }
    if s.suppressed > 0 {
        line.push_str(&format!(
            ", {} repeat(s) folded by times limits",
            s.suppressed
        ));
    }
    let verdict = style.label(run.verdict().into());
    writeln!(out, "guard: {verdict}: {line}")
}

fn finding(run: &Run, f: &Finding, out: &mut dyn Write, style: &Style) -> io::Result<()> {
    let recipe: Option<&Recipe> = run.recipes.get(&f.name).map(|l| &l.recipe);
    let label = style.label(f.into());
    let Some(p) = &f.process else {
        // A finding about the guard itself.
        for e in &f.evidence {
            writeln!(
                out,
                "{label} {}: {}",
                terminal(f.recipe.as_str().as_bytes()),
                terminal(e.as_bytes())
            )?;
        }
        return Ok(());
    };
    let what = recipe.map(|r| r.description.as_str()).unwrap_or("");
    writeln!(
        out,
        "{label} {} ({}): {} — {}",
        terminal(f.recipe.as_str().as_bytes()),
        f.importance,
        terminal(what.as_bytes()),
        terminal(p.exe.as_bytes())
    )?;
    writeln!(out, "  argv:      {}", terminal_argv(&p.argv))?;
    let cwd = p
        .cwd
        .as_ref()
        .map(|c| terminal(c.as_bytes()))
        .unwrap_or_else(|| "?".into());
    writeln!(
        out,
        "  process:   pid {}, ppid {}, uid {}, cwd {}, at {}",
        p.pid,
        p.ppid,
        p.uid,
        cwd,
        terminal(p.time.as_bytes())
    )?;
    if let Some(script) = &p.script {
        writeln!(out, "  script:    {}", terminal(script.as_bytes()))?;
    }
    if let Some(outcome) = f.outcome() {
        writeln!(out, "  outcome:   {}", style.paint("1", &outcome))?;
    }
    for e in &f.evidence {
        writeln!(out, "  evidence:  {}", terminal(e.as_bytes()))?;
    }
    if f.count > 1 {
        writeln!(
            out,
            "  count:     {} matching execs (repeats folded by the recipe's times limits)",
            f.count
        )?;
    }
    for (i, a) in p.ancestry.iter().enumerate() {
        let head = if i == 0 {
            "  ancestry:  "
        } else {
            "             "
        };
        let shown = if a.argv.is_empty() && a.exe.is_empty() {
            "(unknown: started before tracing)".to_string()
        } else if a.argv.is_empty() {
            terminal(a.exe.as_bytes())
        } else {
            terminal_argv(&a.argv)
        };
        writeln!(out, "{head}{} {}", a.pid, shown)?;
    }
    if let Some(reason) = &f.allowed {
        writeln!(out, "  allowed:   {}", terminal(reason.as_bytes()))?;
    }
    if let Some(note) = &f.allow_expired {
        writeln!(out, "  allowlist: {}", terminal(note.as_bytes()))?;
    }
    if f.failing() {
        if let Some(r) = recipe {
            if !r.ext.actions.ci_cd.is_empty() {
                writeln!(out, "  recommended actions (CI/CD):")?;
                for (i, a) in r.ext.actions.ci_cd.iter().enumerate() {
                    writeln!(out, "    {}. {}", i + 1, terminal(a.as_bytes()))?;
                }
            }
        }
    }
    Ok(())
}
