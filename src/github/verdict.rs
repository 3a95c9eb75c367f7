//! The verdict of an Action job, computed by the root watcher once its trace is sealed — from
//! the sealed trace, the policy `pre` sealed, the GitHub context `pre` saw and the door's
//! findings — and handed to the verified post step over the watcher's channel. Nothing here
//! reads what a build step could have written since `pre`, but the workflow file for the
//! findings' line numbers (which never changes the verdict).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::check::{check_trace_as_of, Finding, GuardKind, Mode, Verdict};
use crate::github::runner::Env;
use crate::github::workflow::{locate, workflow_path};
use crate::policy::config::Config;
use crate::policy::recipe::RecipeSet;
use crate::report::{self, Run};
use crate::time::Date;
use crate::watcher::message::{self, Feedback, Message};
use crate::watcher::session::Session;
use crate::watcher::VerdictInput;

/// The largest workflow file read for line numbers.
const WORKFLOW_MAX: u64 = 1 << 20;

/// The recipes and the allowlist of the session (the texts `pre` read).
pub fn policy_of(session: &Session) -> Result<(RecipeSet, Config), String> {
    let mut recipes = RecipeSet::builtin();
    for r in &session.recipes {
        recipes
            .load_text(Path::new(&r.origin), r.text.as_bytes())
            .map_err(|e| format!("recipes: {e}"))?;
    }
    let config = match &session.config {
        Some(c) => Config::parse(Path::new(&c.origin), c.text.as_bytes())
            .map_err(|e| format!("allowlist: {e}"))?,
        None => Config::default(),
    };
    Ok((recipes, config))
}

/// The verdict message for the post step.
pub fn compute(input: &VerdictInput) -> Message {
    match compute_verdict(input) {
        Ok(v) => Message::Verdict(Box::new(v)),
        Err(message) => Message::Error { message },
    }
}

fn compute_verdict(input: &VerdictInput) -> Result<message::Verdict, String> {
    let session = input.session;
    let mode = session.mode.parse::<Mode>().unwrap_or(Mode::Fail);
    let (recipes, config) = policy_of(session)?;
    let today =
        Date::parse(session.started.get(..10).unwrap_or_default()).unwrap_or_else(Date::today);
    let mut checked = check_trace_as_of(
        input.trace,
        &recipes,
        &config,
        input.last_seen.as_deref(),
        today,
    )
    .map_err(|e| format!("cannot read the trace: {e}"))?;
    for why in &input.tampered {
        checked
            .outcome
            .findings
            .push(Finding::guard(GuardKind::VerdictTampered, why.clone()));
    }

    let context = |name: &str| session.context.get(name).cloned();
    let env = Env::new(&context);
    let workflow_file = workflow_path(&env);
    let workflow = workflow_file.clone().and_then(|rel| {
        let root = env.var("GITHUB_WORKSPACE")?;
        Some((rel.clone(), read_bounded(&Path::new(&root).join(&rel))?))
    });
    let locations = checked
        .outcome
        .findings
        .iter()
        .map(|f| locate(&env, f, workflow.as_ref()))
        .collect();
    let mut run = Run::checked(&checked, &recipes, mode, locations);
    run.workflow = workflow_file;

    let mut report = Vec::new();
    report::json::write(&run, &mut report).map_err(|e| e.to_string())?;
    let sarif = match &session.sarif {
        Some(path) => {
            let mut s = Vec::new();
            report::sarif::write(&run, &mut s).map_err(|e| e.to_string())?;
            let path = match env.var("GITHUB_WORKSPACE") {
                Some(ws) if !Path::new(path).is_absolute() => Path::new(&ws).join(path),
                _ => PathBuf::from(path),
            };
            Some((
                path.display().to_string(),
                String::from_utf8_lossy(&s).into_owned(),
            ))
        }
        None => None,
    };
    let annotations = report::github::annotations(&run);
    let mut summary = report::markdown::render(&run);
    let notes: Vec<&String> = session.notes.iter().chain(&input.notes).collect();
    if !notes.is_empty() {
        summary.push_str("\n**Notes**\n\n");
        for n in notes {
            summary.push_str(&format!("- {}\n", report::markdown::escape(n)));
        }
    }
    let failing = checked.outcome.failing();
    let verdict = run.verdict();
    let feedback = feedback(session, &run, &annotations, &summary, failing);
    // Tampering fails the job whatever the mode: warn mode is for the policy's findings, not
    // for a build that switched the guard off.
    let tampered = !input.tampered.is_empty();
    Ok(message::Verdict {
        verdict,
        status: u8::from(verdict == Verdict::Fail || tampered),
        failing,
        annotations: annotations.iter().map(|a| a.command()).collect(),
        summary,
        report: String::from_utf8_lossy(&report).into_owned(),
        sarif,
        feedback,
    })
}

/// A file of the workspace, at most [`WORKFLOW_MAX`] bytes, not through a symbolic link (the
/// watcher is root; the workspace is the build's).
fn read_bounded(path: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(WORKFLOW_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Pull request feedback, when `pre` saw a pull request and the inputs ask for some.
fn feedback(
    session: &Session,
    run: &Run,
    annotations: &[report::github::Annotation],
    summary: &str,
    failing: usize,
) -> Option<Feedback> {
    let pr = session.pull_request.as_ref()?;
    if !session.comment && !session.check_run {
        return None;
    }
    let (owner, repo) = session.context.get("GITHUB_REPOSITORY")?.split_once('/')?;
    let conclusion = if run.verdict() == Verdict::Fail {
        report::github::Conclusion::Failure
    } else if failing > 0 {
        report::github::Conclusion::Neutral
    } else {
        report::github::Conclusion::Success
    };
    Some(Feedback {
        api_url: session
            .context
            .get("GITHUB_API_URL")
            .cloned()
            .unwrap_or_else(|| crate::github::api::DEFAULT_API_URL.into())
            .trim_end_matches('/')
            .to_string(),
        owner: owner.to_string(),
        repo: repo.to_string(),
        number: pr.number,
        head_sha: pr.head_sha.clone(),
        comment: session
            .comment
            .then(|| crate::github::pr::comment_body(summary)),
        check_run: session
            .check_run
            .then(|| (check_run_output(run, annotations), conclusion)),
        api_env: session.api_env.clone(),
    })
}

/// The check run's output: the summary's verdict and every finding as an annotation.
pub fn check_run_output(
    run: &Run,
    annotations: &[report::github::Annotation],
) -> report::github::CheckRunOutput {
    use report::github::{AnnotationLevel, CheckAnnotation};
    let mut all = Vec::new();
    for (i, f) in run.outcome.findings.iter().enumerate() {
        let Some(loc) = run.location(i).cloned().or_else(|| {
            annotations
                .iter()
                .find(|a| a.findings.contains(&i))
                .and_then(|a| a.location.clone())
        }) else {
            continue;
        };
        let level = match report::github::level_of(f, run.mode) {
            report::github::Level::Error => AnnotationLevel::Failure,
            report::github::Level::Warning => AnnotationLevel::Warning,
            report::github::Level::Notice => AnnotationLevel::Notice,
        };
        let a = annotations.iter().find(|a| a.findings.contains(&i));
        all.push(CheckAnnotation {
            path: loc.path,
            start_line: loc.line,
            end_line: loc.line,
            level,
            title: a
                .map(|a| a.title.clone())
                .unwrap_or_else(|| f.recipe.to_string()),
            message: a
                .map(|a| a.message.clone())
                .unwrap_or_else(|| f.evidence.join("\n")),
        });
    }
    let failing = run.outcome.failing();
    report::github::CheckRunOutput {
        title: if failing == 0 {
            "No failing finding".into()
        } else {
            format!("{failing} failing finding(s)")
        },
        summary: report::markdown::render(run),
        annotations: all,
    }
}
