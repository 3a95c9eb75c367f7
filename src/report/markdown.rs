//! The Markdown job summary (and sticky PR comment): the verdict, a table of findings, the
//! ancestry of each, the recipe's information linked to MITRE ATT&CK, the recommended actions,
//! and the stats — within GitHub's 1 MiB limit per step summary.
//!
//! Text from the trace (argv, paths, step names) is attacker-controlled: it is escaped so that it
//! renders as literal text — no link, image, mention, reference, HTML or table break.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::check::{Finding, Verdict};
use crate::event::Bytes;
use crate::policy::recipe::Recipe;

use super::{attack, Run};
use crate::escape::{markdown_visible, terminal, terminal_argv};

/// GitHub drops a step summary larger than 1 MiB; stay well below.
pub const LIMIT: usize = 1_000_000;
/// Longest attacker-controlled cell, in characters.
const CELL: usize = 300;

/// Literal text for Markdown: the one Markdown escaper, under the name tests and callers know.
pub use crate::escape::markdown as escape;

/// A table cell: visible text (invalid UTF-8 as `\xff`, as on the terminal), cut to a readable
/// length, escaped.
fn cell_of(visible: String) -> String {
    if visible.chars().count() > CELL {
        markdown_visible(&visible.chars().take(CELL).collect::<String>()) + " …"
    } else {
        markdown_visible(&visible)
    }
}

fn cell(b: &[u8]) -> String {
    cell_of(terminal(b))
}

/// An argv cell, shell-quoted as on the terminal so that argument boundaries stay visible.
fn cell_argv(argv: &[Bytes]) -> String {
    cell_of(terminal_argv(argv))
}

/// The recipe's tactic › technique › sub-technique, each linked to its ATT&CK page when the
/// recipe references its id.
fn mitre(recipe: &Recipe) -> String {
    let m = attack::Mapping::of(recipe);
    let mut parts = Vec::new();
    for (level, entry, field) in m.levels(recipe) {
        match entry {
            // The id is letters, digits and a dot; the URL is attack.mitre.org's.
            Some(e) => parts.push(format!("[{} ({})]({})", escape(&e.name), e.id, e.url())),
            None if field.is_empty()
                || (level == attack::Level::Subtechnique && field == "none") => {}
            None => parts.push(escape(&Recipe::title(field))),
        }
    }
    parts.join(" › ")
}

fn finding_row(i: usize, f: &Finding) -> String {
    let Some(p) = &f.process else {
        return format!(
            "| {} | **{}** ({}) | {} | | | 1 | |\n",
            i + 1,
            escape(f.recipe.as_str()),
            f.importance,
            f.evidence
                .iter()
                .map(|e| escape(e))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    };
    let allowed = match (&f.allowed, &f.allow_expired) {
        (Some(r), _) => format!("✅ {}", cell(r.as_bytes())),
        (None, Some(note)) => format!("❌ {}", cell(note.as_bytes())),
        (None, None) => "❌ no".to_string(),
    };
    let mark = match (&f.attempt, f.blocked) {
        (_, true) => " (blocked)",
        (Some(_), false) => " (attempted)",
        (None, false) => "",
    };
    format!(
        "| {} | **{}**{mark}<br>{} | {} | {} | {} | {} | {} |\n",
        i + 1,
        escape(f.recipe.as_str()),
        cell(p.exe.as_bytes()),
        cell_argv(&p.argv),
        p.step
            .as_ref()
            .map(|s| cell(s.as_bytes()))
            .unwrap_or_default(),
        p.container
            .as_deref()
            .map(|c| escape(&c.chars().take(12).collect::<String>()))
            .unwrap_or_default(),
        f.count,
        allowed
    )
}

fn ancestry(i: usize, f: &Finding) -> String {
    let Some(p) = &f.process else {
        return String::new();
    };
    let mut s = format!(
        "<details><summary>Finding {}: process {} and its ancestry</summary>\n\n",
        i + 1,
        p.pid
    );
    let _ = writeln!(s, "- **{}** {}", p.pid, cell_argv(&p.argv));
    if let Some(outcome) = f.outcome() {
        let _ = writeln!(s, "  - {}", escape(&outcome));
    }
    for e in &f.evidence {
        let _ = writeln!(s, "  - evidence: {}", escape(e));
    }
    for a in &p.ancestry {
        let shown = if a.argv.is_empty() {
            cell(a.exe.as_bytes())
        } else {
            cell_argv(&a.argv)
        };
        let _ = writeln!(s, "- {} {}", a.pid, shown);
    }
    s.push_str("\n</details>\n\n");
    s
}

/// A verdict's icon: the one place the summary chooses it.
struct Icon(&'static str);

impl From<Verdict> for Icon {
    fn from(v: Verdict) -> Icon {
        Icon(match v {
            Verdict::Fail => "❌",
            Verdict::Warn => "⚠️",
            Verdict::Pass => "✅",
        })
    }
}

/// Renders the summary.
pub fn render(run: &Run) -> String {
    let failing = run.outcome.failing();
    let total = run.outcome.findings.len();
    let mut s = String::new();
    let icon = Icon::from(run.verdict()).0;
    let verdict = match run.verdict() {
        Verdict::Fail => format!(
            "{icon} **webserver-exec-guard: {failing} failing finding{}** — the job fails",
            if failing == 1 { "" } else { "s" }
        ),
        Verdict::Warn => format!(
            "{icon} **webserver-exec-guard: {failing} finding{}** (warn mode: the job is not failed)",
            if failing == 1 { "" } else { "s" }
        ),
        _ if total > 0 => {
            format!("{icon} **webserver-exec-guard: no failing finding** ({total} allowed)")
        }
        _ => format!("{icon} **webserver-exec-guard: no web server was started**"),
    };
    let _ = writeln!(s, "## {verdict}\n");
    for note in &run.notes {
        let _ = writeln!(s, "> {}\n", escape(note));
    }
    if total > 0 {
        s.push_str("| # | Executable | Arguments | Step | Container | Count | Allowed |\n");
        s.push_str("| ---: | --- | --- | --- | --- | ---: | --- |\n");
        let mut shown = 0;
        for (i, f) in run.outcome.findings.iter().enumerate() {
            let row = finding_row(i, f);
            if s.len() + row.len() > LIMIT / 2 {
                break;
            }
            s.push_str(&row);
            shown += 1;
        }
        if shown < total {
            let _ = writeln!(
                s,
                "\n*{} more findings are not shown here (size limit): see the JSON report.*",
                total - shown
            );
        }
        s.push('\n');
        for (i, f) in run.outcome.findings.iter().enumerate().take(shown) {
            let block = ancestry(i, f);
            if s.len() + block.len() > LIMIT * 3 / 4 {
                break;
            }
            s.push_str(&block);
        }
    }
    // What each matching recipe is about, and what to do.
    let mut seen: Vec<&str> = Vec::new();
    for f in &run.outcome.findings {
        if seen.contains(&f.name.as_str()) || !f.failing() {
            continue;
        }
        seen.push(&f.name);
        let Some(r) = run.recipes.get(&f.name).map(|l| &l.recipe) else {
            continue;
        };
        let _ = writeln!(s, "### {} — {}\n", escape(&r.name), escape(&r.description));
        let _ = writeln!(
            s,
            "**MITRE ATT&CK**: {} · **Importance**: {}\n",
            mitre(r),
            r.importance
        );
        if let Some(e) = &r.ext.explanation {
            let _ = writeln!(s, "{}\n", escape(e));
        }
        let list = |title: &str, items: &[String]| -> String {
            let mut b = String::new();
            for (i, a) in items.iter().enumerate() {
                let _ = writeln!(b, "{}. {}", i + 1, escape(a));
            }
            if title.is_empty() {
                b
            } else {
                format!("<details><summary>{title}</summary>\n\n{b}\n</details>\n")
            }
        };
        if !r.ext.actions.ci_cd.is_empty() {
            let _ = writeln!(
                s,
                "#### Recommended actions for CI/CD\n\n{}",
                list("", &r.ext.actions.ci_cd)
            );
        }
        if !r.ext.actions.staging.is_empty() {
            s.push_str(&list(
                "Recommended actions for staging",
                &r.ext.actions.staging,
            ));
        }
        if !r.ext.actions.production.is_empty() {
            s.push_str(&list(
                "Recommended actions for production",
                &r.ext.actions.production,
            ));
        }
        s.push('\n');
    }
    let st = &run.outcome.stats;
    let _ = writeln!(
        s,
        "<sub>{} execs seen · {} lost events · {} repeats folded · {} partial records · webserver-exec-guard {}</sub>",
        st.execs,
        st.lost,
        st.suppressed,
        st.partial,
        crate::VERSION
    );
    if s.len() > LIMIT {
        let mut cut = LIMIT - 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n\n*(summary cut at GitHub's size limit: see the JSON report)*\n");
    }
    s
}

pub fn write(run: &Run, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(run).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Mode;
    use crate::check::{Outcome, ProcessInfo, Stats};
    use crate::policy::recipe::{Importance, RecipeSet};

    #[test]
    fn the_summary_stays_within_githubs_limit() {
        let big = "A".repeat(20_000);
        let findings = (0..2_000)
            .map(|i| Finding {
                recipe: "webserver_exec".into(),
                name: "webserver_exec".into(),
                importance: Importance::High,
                allowed: None,
                allow_expired: None,
                evidence: vec![big.clone()],
                count: 1,
                blocked: false,
                attempt: None,
                process: Some(ProcessInfo {
                    pid: i,
                    ppid: 1,
                    exe: Bytes::from("/usr/sbin/nginx"),
                    argv: vec![Bytes::from("nginx"), Bytes::from(big.as_str())],
                    cwd: None,
                    uid: 0,
                    script: None,
                    time: String::new(),
                    step: None,
                    container: None,
                    ancestry: vec![],
                }),
            })
            .collect();
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
        let text = render(&run);
        assert!(text.len() <= LIMIT, "{} bytes", text.len());
        assert!(
            text.contains("more findings are not shown here"),
            "the cut is said"
        );
        assert!(text.contains("Recommended actions for CI/CD"));
    }

    #[test]
    fn hostile_text_is_literal() {
        let cases = [
            "[click](https://evil.example/x)",
            "![img](https://evil.example/p.png)",
            "@octocat please merge",
            "fixes #123",
            "<img src=x onerror=alert(1)>",
            "a | b || c",
            "https://evil.example www.evil.example",
            "**bold** _it_ `code`",
            "line1\nline2\r\n## heading",
            "\x1b[31mred\u{202e}txt",
        ];
        for c in cases {
            let e = escape(c);
            for bad in ["](", "<img", "\n", "\r", "\x1b", "\u{202e}"] {
                assert!(!e.contains(bad), "{c:?} -> {e:?}");
            }
            for (i, ch) in e.char_indices() {
                if "@#|[]()!*_`:".contains(ch) {
                    assert_eq!(&e[i - 1..i], "\\", "{c:?} -> {e:?}: unescaped {ch:?}");
                }
                // GitHub finds mentions and references after escapes are resolved.
                if "@#".contains(ch) {
                    assert!(e[i + 1..].starts_with('\u{200b}'), "{c:?} -> {e:?}");
                }
            }
        }
    }

    #[test]
    fn cells_are_lossless_and_argv_keeps_its_boundaries() {
        assert_eq!(cell(b"a\xffb\xe2\x80\xaec"), "a\\\\xffb\\\\u\\{202e\\}c");
        let argv = [Bytes::from("nginx"), Bytes::from("-g"), Bytes::from("a b")];
        assert_eq!(cell_argv(&argv), "nginx \\-g \\'a b\\'");
        let long = "x".repeat(CELL + 10);
        assert_eq!(cell(long.as_bytes()), "x".repeat(CELL) + " …");
    }
}
