//! The GitHub Action: `guard action pre|main|post`, run by `dist/*.js`. All of the Action's
//! logic is here, and it speaks the runner's protocol itself: inputs from `INPUT_*`, file
//! commands (`GITHUB_STATE`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`, `GITHUB_ENV`) and workflow
//! commands on stdout.
//!
//! - **pre** starts the host watcher as root (`sudo -n` when not root), attached with ptrace to
//!   the runner's worker (the parent of the `node` that runs us), so that every later step is
//!   traced; where that is impossible it warns once and the job goes on unguarded, unless
//!   `require: true`.
//! - **main** reports the watcher's status.
//! - **post** stops the watcher, checks the trace, writes the annotations, the job summary, the
//!   outputs, the JSON report and SARIF, gives pull request feedback, and fails in fail mode.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::check::{Mode, Verdict};
use crate::github::runner::{append_summary, command, set, Env};
use crate::github::workflow::{locate, workflow_path};
use crate::pipeline::{self, ConfigSource, Policy, PolicyOptions};
use crate::report::{self, Run};
use crate::sources::fingerprint::Fingerprinter;
use crate::watcher;
use crate::watcher::message::{Message, StopKind};

/// The paths of the `recipes` input (one per line, or comma-separated).
fn recipe_inputs(env: &Env) -> Vec<PathBuf> {
    env.input("recipes")
        .map(|paths| {
            paths
                .split(['\n', ','])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The `mode` input: `fail` (the default) or `warn`. `enforce` is refused: the watcher observes,
/// it cannot refuse an exec (that is `guard run --mode enforce`'s). Another value is said once
/// and taken as `fail`.
fn mode_input(env: &Env, out: &mut dyn Write) -> Result<Mode, String> {
    let Some(value) = env.input("mode") else {
        return Ok(Mode::Fail);
    };
    match value.parse::<Mode>() {
        Ok(Mode::Enforce) => Err(format!(
            "input `mode` is {value:?}: the Action's watcher observes every exec but cannot refuse one; \
             use `mode: fail` here, or run the build under `guard run --mode enforce`"
        )),
        Ok(mode) => Ok(mode),
        Err(_) => {
            command(
                out,
                "warning",
                &format!("input `mode` is {value:?}, not fail or warn: using fail"),
            );
            Ok(Mode::Fail)
        }
    }
}

/// The policy the inputs name: the built-in and `recipes` recipes, and the `config` allowlist
/// (default [`crate::policy::config::DEFAULT_PATH`] when it exists).
fn policy_options(env: &Env, mode: Mode) -> PolicyOptions {
    PolicyOptions {
        recipes: recipe_inputs(env),
        config: ConfigSource::from_option(env.input("config").map(PathBuf::from)),
        mode,
    }
}

/// Where `stop --export` leaves a read-only copy of the sealed trace for the unprivileged post
/// step (a root-owned directory: the build cannot swap the copy).
pub const EXPORT_DIR: &str = "/run/webserver-exec-guard-export";

/// Why the job cannot be guarded here, if it cannot.
fn unguardable(env: &Env) -> Option<String> {
    if !cfg!(target_os = "linux") || env.var("RUNNER_OS").is_some_and(|os| os != "Linux") {
        return Some(format!(
            "webserver-exec-guard runs on Linux runners only (this runner is {})",
            env.var("RUNNER_OS")
                .unwrap_or_else(|| std::env::consts::OS.to_string())
        ));
    }
    // A `container:` job is recognised by the watcher's self-test itself (its network namespace
    // receives no process events), which then says to use `guard run` instead.
    None
}

/// The runner's worker: the parent of the `node` process that runs us.
fn worker_pid() -> Option<u32> {
    // SAFETY: getppid(2) cannot fail.
    let node = unsafe { libc::getppid() };
    let status = std::fs::read_to_string(format!("/proc/{node}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p > 1)
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("guard"))
}

/// `pre`: start the watcher.
pub fn pre(env: &Env, out: &mut dyn Write) -> u8 {
    let require = env.flag("require", false, out);
    if let Err(why) = mode_input(env, out) {
        command(out, "error", &format!("webserver-exec-guard: {why}"));
        return 1;
    }
    let unguarded = |why: String, out: &mut dyn Write| -> u8 {
        set(env, "GITHUB_STATE", "unguarded", &why, out);
        append_summary(
            env,
            &format!(
                "### ⚠️ webserver-exec-guard is not guarding this job\n\n{}\n\n",
                report::markdown::escape(&why)
            ),
            out,
        );
        if require {
            command(
                out,
                "error",
                &format!("webserver-exec-guard: {why} (input `require` is true)"),
            );
            1
        } else {
            command(
                out,
                "warning",
                &format!("webserver-exec-guard: {why}; the job continues unguarded"),
            );
            0
        }
    };
    if let Some(why) = unguardable(env) {
        return unguarded(why, out);
    }
    let attach: Vec<u32> = if env.flag("ptrace", true, out) {
        worker_pid().into_iter().collect()
    } else {
        Vec::new()
    };
    let state_dir = watcher::state_dir(None);
    // The recipes' fingerprints identify executables as they run; a recipe that does not load
    // is reported by the post step, which loads them again.
    let recipe_paths = recipe_inputs(env);
    let started = if is_root() {
        let recipes = match pipeline::load_recipes(&recipe_paths) {
            Ok(r) => r,
            Err(e) => {
                command(
                    out,
                    "warning",
                    &format!("webserver-exec-guard: recipes: {e}; the watcher fingerprints with the built-in recipes only, and the post step reports the error"),
                );
                pipeline::load_recipes(&[]).expect("the built-in recipes load")
            }
        };
        watcher::start(&watcher::StartOptions {
            state_dir: state_dir.clone(),
            rcvbuf: watcher::RCVBUF,
            trace: None,
            attach: attach.clone(),
            fingerprinter: Fingerprinter::new(&recipes),
        })
        .map(|info| info.pid)
        .map_err(|e| e.to_string())
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg("-n")
            .arg(self_exe())
            .arg("start")
            .arg("--message")
            .arg("--state-dir")
            .arg(&state_dir);
        for pid in &attach {
            cmd.arg("--attach").arg(pid.to_string());
        }
        for p in &recipe_paths {
            cmd.arg("--recipes").arg(p);
        }
        match cmd.stdin(std::process::Stdio::null()).output() {
            Err(e) => Err(format!(
                "cannot run sudo (root is needed to watch the host): {e}"
            )),
            Ok(o) => match Message::parse(&o.stdout) {
                Ok(Message::Started { pid, .. }) if o.status.success() => Ok(pid),
                Ok(Message::Error { message }) => {
                    Err(format!("`sudo -n guard start` failed: {message}"))
                }
                // No message: sudo itself refused (no passwordless sudo), or the command died.
                _ => Err(format!(
                    "`sudo -n guard start` failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
            },
        }
    };
    match started {
        Ok(_) => {
            set(env, "GITHUB_STATE", "started", "true", out);
            set(
                env,
                "GITHUB_STATE",
                "state_dir",
                &state_dir.display().to_string(),
                out,
            );
            let _ = writeln!(
                io::stderr(),
                "webserver-exec-guard: watching every exec of this job{}",
                if attach.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (and following the runner's worker, pid {}, with ptrace)",
                        attach[0]
                    )
                }
            );
            0
        }
        Err(why) => unguarded(why, out),
    }
}

/// `main`: say whether the watcher runs.
pub fn main_step(out: &mut dyn Write) -> u8 {
    match watcher::status(&watcher::state_dir(None)) {
        Ok((info, true, st)) => {
            let _ = writeln!(
                io::stderr(),
                "webserver-exec-guard: the watcher (pid {}) is recording since {}{}",
                info.pid,
                info.started,
                st.map(|s| format!(": {} execs so far, {} lost", s.execs, s.lost)).unwrap_or_default()
            );
        }
        Ok((info, false, _)) => command(
            out,
            "warning",
            &format!("webserver-exec-guard: the watcher (pid {}) is not running; the post step will report it", info.pid),
        ),
        // Not started (or not readable without root): the pre step has said why.
        Err(_) => {}
    }
    0
}

/// `post`: stop, check, report.
pub fn post(env: &Env, out: &mut dyn Write) -> u8 {
    let require = env.flag("require", false, out);
    if env.var("STATE_started").as_deref() != Some("true") {
        set(env, "GITHUB_OUTPUT", "findings", "0", out);
        // The pre step warned (and failed, if required) already.
        return 0;
    }
    // `pre` refused an `enforce` mode and failed the job; the trace is still checked.
    let mode = mode_input(env, &mut io::sink()).unwrap_or(Mode::Fail);
    let state_dir = env
        .var("STATE_state_dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| watcher::state_dir(None));
    let fail = |why: String, out: &mut dyn Write| -> u8 {
        command(out, "error", &format!("webserver-exec-guard: {why}"));
        append_summary(
            env,
            &format!(
                "## ❌ webserver-exec-guard could not check this job\n\n{}\n\n",
                report::markdown::escape(&why)
            ),
            out,
        );
        u8::from(require || mode == Mode::Fail)
    };

    // Stop the watcher (as root) and get the sealed trace.
    let (trace, last_seen) = if is_root() {
        match watcher::stop(&state_dir) {
            Ok((info, stopped)) => (
                info.trace,
                match stopped {
                    watcher::Stopped::Died { last_seen } => Some(last_seen),
                    _ => None,
                },
            ),
            Err(e) => return fail(format!("cannot stop the watcher: {e}"), out),
        }
    } else {
        let export = PathBuf::from(EXPORT_DIR).join(format!("trace-{}.jsonl", std::process::id()));
        let o = Command::new("sudo")
            .arg("-n")
            .arg(self_exe())
            .args(["stop", "--state-dir"])
            .arg(&state_dir)
            .arg("--export")
            .arg(&export)
            .stdin(std::process::Stdio::null())
            .output();
        let o = match o {
            Ok(o) => o,
            Err(e) => return fail(format!("cannot run sudo: {e}"), out),
        };
        match Message::parse(&o.stdout) {
            Ok(Message::Stopped {
                stopped, last_seen, ..
            }) if o.status.success() => (export, last_seen.filter(|_| stopped == StopKind::Died)),
            Ok(Message::Error { message }) => {
                return fail(format!("`sudo -n guard stop` failed: {message}"), out)
            }
            _ => {
                return fail(
                    format!(
                        "`sudo -n guard stop` failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    out,
                )
            }
        }
    };

    let options = policy_options(env, mode);
    let recipes = match pipeline::load_recipes(&options.recipes) {
        Ok(r) => r,
        Err(e) => return fail(format!("recipes: {e}"), out),
    };
    let config = match pipeline::load_config(&options.config) {
        Ok(c) => c,
        Err(e) => return fail(format!("config: {e}"), out),
    };
    let policy = Policy {
        recipes,
        config,
        mode,
    };
    let checked = match policy.check_trace(&trace, last_seen.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot read the trace: {e}"), out),
    };
    let workflow_file = workflow_path(env);
    let workflow = workflow_file.clone().and_then(|rel| {
        let root = env.var("GITHUB_WORKSPACE")?;
        let text = std::fs::read_to_string(Path::new(&root).join(&rel)).ok()?;
        Some((rel, text))
    });
    let locations = checked
        .outcome
        .findings
        .iter()
        .map(|f| locate(env, f, workflow.as_ref()))
        .collect();
    let mut run = Run::checked(&checked, &policy.recipes, mode, locations);
    run.workflow = workflow_file;

    // Reports: the JSON report, SARIF, annotations, the summary, the outputs.
    let dir = env
        .var("RUNNER_TEMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("webserver-exec-guard");
    let _ = std::fs::create_dir_all(&dir);
    let report_path = dir.join("report.json");
    let written =
        std::fs::File::create(&report_path).and_then(|mut f| report::json::write(&run, &mut f));
    if let Err(e) = written {
        command(
            out,
            "warning",
            &format!(
                "webserver-exec-guard: cannot write {}: {e}",
                report_path.display()
            ),
        );
    }
    if let Some(sarif) = env.input("sarif") {
        let path = match env.var("GITHUB_WORKSPACE") {
            Some(ws) if !Path::new(&sarif).is_absolute() => Path::new(&ws).join(&sarif),
            _ => PathBuf::from(&sarif),
        };
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match std::fs::File::create(&path).and_then(|mut f| report::sarif::write(&run, &mut f)) {
            Ok(()) => set(
                env,
                "GITHUB_OUTPUT",
                "sarif",
                &path.display().to_string(),
                out,
            ),
            Err(e) => command(
                out,
                "warning",
                &format!("webserver-exec-guard: cannot write {}: {e}", path.display()),
            ),
        }
    }
    let annotations = report::github::annotations(&run);
    for a in &annotations {
        let _ = writeln!(out, "{}", a.command());
    }
    let summary = report::markdown::render(&run);
    append_summary(env, &summary, out);
    let failing = checked.outcome.failing();
    set(env, "GITHUB_OUTPUT", "findings", &failing.to_string(), out);
    set(
        env,
        "GITHUB_OUTPUT",
        "report",
        &report_path.display().to_string(),
        out,
    );

    // Pull request feedback, which never changes the verdict.
    let want_comment = env.flag("comment", true, out);
    let want_check = env.flag("check-run", false, out);
    if want_comment || want_check {
        let get = |k: &str| env.var(k);
        match crate::github::api::PrContext::from_env(&get) {
            Ok(Some(ctx)) => {
                let body = crate::github::pr::comment_body(&summary);
                let check = want_check.then(|| check_run_output(&run, &annotations));
                let conclusion = if run.verdict() == Verdict::Fail {
                    crate::github::pr::Conclusion::Failure
                } else if failing > 0 {
                    crate::github::pr::Conclusion::Neutral
                } else {
                    crate::github::pr::Conclusion::Success
                };
                let warnings = crate::github::api::publish(
                    &ctx,
                    want_comment.then_some(body.as_str()),
                    check.as_ref().map(|c| (c, conclusion)),
                );
                for w in warnings {
                    command(out, "warning", &format!("webserver-exec-guard: {w}"));
                }
            }
            Ok(None) => {}
            Err(e) => command(
                out,
                "warning",
                &format!("webserver-exec-guard: no pull request feedback: {e}"),
            ),
        }
    }
    if run.verdict() == Verdict::Fail {
        command(
            out,
            "error",
            &format!("webserver-exec-guard: {failing} failing finding{}: see the annotations and the job summary", if failing == 1 { "" } else { "s" }),
        );
        1
    } else {
        0
    }
}

/// The check run's output: the summary's verdict and every finding as an annotation.
fn check_run_output(
    run: &Run,
    annotations: &[report::github::Annotation],
) -> crate::github::pr::CheckRunOutput {
    use crate::github::pr::{AnnotationLevel, CheckAnnotation};
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
    crate::github::pr::CheckRunOutput {
        title: if failing == 0 {
            "No failing finding".into()
        } else {
            format!("{failing} failing finding(s)")
        },
        summary: report::markdown::render(run),
        annotations: all,
    }
}
