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

use crate::check::{check_trace, Finding};
use crate::config::{self, Config};
use crate::event::Bytes;
use crate::recipe::RecipeSet;
use crate::report::{self, Location, Mode, Run};
use crate::watch::daemon;

/// The paths of the `recipes` input (one per line, or comma-separated).
fn recipe_inputs(env: &Env) -> Vec<String> {
    env.input("recipes")
        .map(|paths| {
            paths
                .split(['\n', ','])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Where `stop --export` leaves a read-only copy of the sealed trace for the unprivileged post
/// step (a root-owned directory: the build cannot swap the copy).
pub const EXPORT_DIR: &str = "/run/webserver-exec-guard-export";

/// The environment, read through one function so that tests can provide their own.
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { get }
    }

    pub fn var(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.is_empty())
    }

    /// An input: `x-y z` arrives as `INPUT_X-Y_Z`.
    pub fn input(&self, name: &str) -> Option<String> {
        self.var(&format!("INPUT_{}", name.replace(' ', "_").to_uppercase()))
            .map(|v| v.trim().to_string())
    }

    /// A boolean input: `true`/`false` (any case); anything else is the default, said once.
    pub fn flag(&self, name: &str, default: bool, out: &mut dyn Write) -> bool {
        match self.input(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                command(
                    out,
                    "warning",
                    &format!("input `{name}` is {v:?}, not true or false: using {default}"),
                );
                default
            }
        }
    }
}

/// A workflow command with a message (`::warning::…`), escaped. Messages can quote text we do
/// not control (an API error body, a config value): its control characters (ANSI/OSC sequences,
/// bidi overrides) are made visible, line breaks kept.
fn command(out: &mut dyn Write, level: &str, message: &str) {
    let visible = message
        .split('\n')
        .map(|line| report::escape::terminal(line.as_bytes()))
        .collect::<Vec<_>>()
        .join("\n");
    let _ = writeln!(out, "::{level}::{}", report::github::escape_data(&visible));
}

/// Appends `name=value` to the file of a file command, in the delimiter form when the value
/// spans lines (the delimiter is random and absent from the value).
pub fn file_command(path: &Path, name: &str, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    if value.contains('\n') || value.contains('\r') {
        let mut delimiter;
        let mut n = 0u64;
        loop {
            delimiter = format!("ghadelimiter_{:016x}{n}", random());
            if !value.contains(&delimiter) {
                break;
            }
            n += 1;
        }
        writeln!(f, "{name}<<{delimiter}\n{value}\n{delimiter}")
    } else {
        writeln!(f, "{name}={value}")
    }
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_ne_bytes(b) ^ std::process::id() as u64
}

fn set(env: &Env, var: &str, name: &str, value: &str, out: &mut dyn Write) {
    if let Some(path) = env.var(var) {
        if let Err(e) = file_command(Path::new(&path), name, value) {
            command(
                out,
                "warning",
                &format!("webserver-exec-guard: cannot write {var} ({path}): {e}"),
            );
        }
    }
}

fn append_summary(env: &Env, markdown: &str, out: &mut dyn Write) {
    if let Some(path) = env.var("GITHUB_STEP_SUMMARY") {
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()));
        if let Err(e) = written {
            command(
                out,
                "warning",
                &format!("webserver-exec-guard: cannot write the job summary ({path}): {e}"),
            );
        }
    }
}

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
    let state_dir = daemon::state_dir(None);
    // The recipes' fingerprints identify executables as they run; a recipe that does not load
    // is reported by the post step, which loads them again.
    let recipe_paths = recipe_inputs(env);
    let started = if is_root() {
        let mut recipes = RecipeSet::builtin();
        for p in &recipe_paths {
            let _ = recipes.load_path(Path::new(p));
        }
        daemon::start(&daemon::StartOptions {
            state_dir: state_dir.clone(),
            rcvbuf: daemon::RCVBUF,
            trace: None,
            attach: attach.clone(),
            fingerprinter: crate::fingerprint::Fingerprinter::new(&recipes),
        })
        .map(|info| info.pid)
        .map_err(|e| e.to_string())
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg("-n")
            .arg(self_exe())
            .arg("start")
            .arg("--state-dir")
            .arg(&state_dir);
        for pid in &attach {
            cmd.arg("--attach").arg(pid.to_string());
        }
        for p in &recipe_paths {
            cmd.arg("--recipes").arg(p);
        }
        match cmd.stdin(std::process::Stdio::null()).output() {
            Ok(o) if o.status.success() => Ok(0),
            Ok(o) => Err(format!(
                "`sudo -n guard start` failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .trim_start_matches("guard: error: ")
            )),
            Err(e) => Err(format!(
                "cannot run sudo (root is needed to watch the host): {e}"
            )),
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
    match daemon::status(&daemon::state_dir(None)) {
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

/// The workflow file of the run, relative to the repository: from `GITHUB_WORKFLOW_REF`
/// (`owner/repo/.github/workflows/ci.yml@refs/heads/main`).
pub fn workflow_path(env: &Env) -> Option<String> {
    let r = env.var("GITHUB_WORKFLOW_REF")?;
    let path = r.split('@').next()?;
    let repo = env.var("GITHUB_REPOSITORY");
    let rel = match repo {
        Some(repo) => path.strip_prefix(&format!("{repo}/"))?.to_string(),
        None => path.splitn(3, '/').nth(2)?.to_string(),
    };
    Some(rel)
}

/// The line of the step whose id (as `GITHUB_ACTION` shows it) is `step` in a workflow file,
/// in the job `job` when given. Steps without an `id` get the runner's generated ones:
/// `__run`, `__run_2`… for scripts, `__owner_repo` (then `_2`…) for actions.
pub fn step_line(workflow: &str, job: Option<&str>, step: &str) -> Option<u32> {
    let lines: Vec<&str> = workflow.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut in_jobs = false;
    let mut jobs_indent = None;
    let mut current_job: Option<String> = None;
    let mut steps_indent: Option<usize> = None;
    let mut item: Item = None;
    let mut found = None;
    type Item = Option<(usize, u32, Vec<(String, String)>)>;
    type Counts = std::collections::HashMap<String, u32>;
    fn finish(
        item: &mut Item,
        job_ok: bool,
        found: &mut Option<u32>,
        counts: &mut Counts,
        step: &str,
    ) {
        let Some((_, line, keys)) = item.take() else {
            return;
        };
        let get = |k: &str| {
            keys.iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.trim_matches(|c| c == '"' || c == '\'').to_string())
        };
        let id = match get("id") {
            Some(id) => id,
            None => {
                let base = if get("run").is_some() {
                    "__run".to_string()
                } else if let Some(uses) = get("uses") {
                    let name = uses.split('@').next().unwrap_or("");
                    let parts: Vec<&str> = name.split('/').take(2).collect();
                    format!("__{}", parts.join("_").replace(['-', '.'], "_"))
                } else {
                    return;
                };
                let n = counts.entry(base.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    base
                } else {
                    format!("{base}_{n}")
                }
            }
        };
        if job_ok && found.is_none() && id == step {
            *found = Some(line);
        }
    }
    let mut counts = Counts::default();
    // Ends the step item being read, in the job being read.
    macro_rules! flush {
        () => {
            finish(
                &mut item,
                job.is_none_or(|j| current_job.as_deref() == Some(j)),
                &mut found,
                &mut counts,
                step,
            )
        };
    }
    for (i, raw) in lines.iter().enumerate() {
        let l = raw.trim_end();
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let ind = indent(l);
        let text = l.trim_start();
        if ind == 0 {
            flush!();
            in_jobs = text.starts_with("jobs:");
            continue;
        }
        if !in_jobs {
            continue;
        }
        if jobs_indent.is_none() || Some(ind) == jobs_indent {
            if let Some(name) = text.strip_suffix(':') {
                flush!();
                jobs_indent = Some(ind);
                current_job = Some(name.trim_matches(|c| c == '"' || c == '\'').to_string());
                steps_indent = None;
                counts.clear();
                continue;
            }
        }
        if text == "steps:" {
            steps_indent = Some(ind);
            continue;
        }
        let Some(si) = steps_indent else { continue };
        if ind <= si && !text.starts_with("- ") || ind < si {
            flush!();
            steps_indent = None;
            continue;
        }
        let (key_text, starts_item) = match text.strip_prefix("- ") {
            Some(rest) if item.as_ref().is_none_or(|(ii, _, _)| ind <= *ii) => (rest, true),
            _ => (text, false),
        };
        if starts_item {
            flush!();
            item = Some((ind, i as u32 + 1, Vec::new()));
        }
        if let Some((ii, _, keys)) = item.as_mut() {
            if let Some((k, v)) = key_text.split_once(':') {
                let key_indent = if starts_item { ind + 2 } else { ind };
                if key_indent == *ii + 2 && !k.contains(' ') {
                    keys.push((k.to_string(), v.trim().to_string()));
                }
            }
        }
    }
    flush!();
    found
}

/// Where a finding points: the workflow step that ran it, else a script of the repository in
/// its ancestry (or the exec's own script), at line 1.
pub fn locate(env: &Env, f: &Finding, workflow: Option<&(String, String)>) -> Option<Location> {
    let p = f.process.as_ref()?;
    if let (Some(step), Some((path, text))) = (&p.step, workflow) {
        let step = String::from_utf8_lossy(step.as_bytes());
        if let Some(line) = step_line(text, env.var("GITHUB_JOB").as_deref(), &step) {
            return Some(Location {
                path: path.clone(),
                line,
            });
        }
    }
    let workspace = env.var("GITHUB_WORKSPACE")?;
    let ws = format!("{}/", workspace.trim_end_matches('/'));
    // A path the build chose: one with control, bidi or invisible characters is not shown as a
    // location (annotations, check runs show it raw); the finding still says it, escaped.
    let in_repo = |b: &Bytes| -> Option<String> {
        let s = String::from_utf8(b.0.clone()).ok()?;
        let rel = s.strip_prefix(&ws)?;
        (Path::new(&s).is_file() && report::escape::is_plain(rel)).then(|| rel.to_string())
    };
    let candidates = p
        .script
        .iter()
        .cloned()
        .chain(p.ancestry.iter().flat_map(|a| {
            a.argv
                .iter()
                .skip(1)
                .take(2)
                .cloned()
                .chain(std::iter::once(a.exe.clone()))
        }));
    for c in candidates {
        if let Some(rel) = in_repo(&c) {
            return Some(Location { path: rel, line: 1 });
        }
    }
    None
}

/// `post`: stop, check, report.
pub fn post(env: &Env, out: &mut dyn Write) -> u8 {
    let require = env.flag("require", false, out);
    if env.var("STATE_started").as_deref() != Some("true") {
        set(env, "GITHUB_OUTPUT", "findings", "0", out);
        // The pre step warned (and failed, if required) already.
        return 0;
    }
    let mode = match env
        .input("mode")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("fail") => Mode::Fail,
        Some("warn") => Mode::Warn,
        Some(other) => {
            command(
                out,
                "warning",
                &format!("input `mode` is {other:?}, not fail or warn: using fail"),
            );
            Mode::Fail
        }
    };
    let state_dir = env
        .var("STATE_state_dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| daemon::state_dir(None));
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
        match daemon::stop(&state_dir) {
            Ok((info, stopped)) => (
                info.trace,
                match stopped {
                    daemon::Stopped::Died { last_seen } => Some(last_seen),
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
        match o {
            Ok(o) if o.status.success() => {
                let said: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                (export, said["last_seen"].as_str().map(str::to_string))
            }
            Ok(o) => {
                return fail(
                    format!(
                        "`sudo -n guard stop` failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    out,
                )
            }
            Err(e) => return fail(format!("cannot run sudo: {e}"), out),
        }
    };

    let mut recipes = RecipeSet::builtin();
    for p in recipe_inputs(env) {
        if let Err(e) = recipes.load_path(Path::new(&p)) {
            return fail(format!("recipes: {e}"), out);
        }
    }
    let config = match env.input("config") {
        Some(p) => Config::load(Path::new(&p), true),
        None => Config::load(Path::new(config::DEFAULT_PATH), false),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(format!("config: {e}"), out),
    };
    let checked = match check_trace(&trace, &recipes, &config, last_seen.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot read the trace: {e}"), out),
    };
    let workflow = workflow_path(env).and_then(|rel| {
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
    let run = checked.run(&recipes, mode, locations);

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
        match crate::ghclient::PrContext::from_env(&get) {
            Ok(Some(ctx)) => {
                let body = report::pr::comment_body(&summary);
                let check = want_check.then(|| check_run_output(&run, &annotations));
                let conclusion = if run.verdict() == "fail" {
                    report::pr::Conclusion::Failure
                } else if failing > 0 {
                    report::pr::Conclusion::Neutral
                } else {
                    report::pr::Conclusion::Success
                };
                let warnings = crate::ghclient::publish(
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
    if run.verdict() == "fail" {
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
) -> report::pr::CheckRunOutput {
    use report::pr::{AnnotationLevel, CheckAnnotation};
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
                .unwrap_or_else(|| f.recipe.clone()),
            message: a
                .map(|a| a.message.clone())
                .unwrap_or_else(|| f.evidence.join("\n")),
        });
    }
    let failing = run.outcome.failing();
    report::pr::CheckRunOutput {
        title: if failing == 0 {
            "No failing finding".into()
        } else {
            format!("{failing} failing finding(s)")
        },
        summary: report::markdown::render(run),
        annotations: all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = "\
name: ci
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Build
        run: make
      - id: tests
        run: |
          make test
      - run: ./deploy.sh
      - uses: actions/setup-node@v4
        with:
          node-version: 20
  other:
    runs-on: ubuntu-latest
    steps:
      - run: echo other
";

    #[test]
    fn steps_are_found_by_id_and_generated_id() {
        assert_eq!(
            step_line(WORKFLOW, Some("build"), "__actions_checkout"),
            Some(7)
        );
        assert_eq!(step_line(WORKFLOW, Some("build"), "__run"), Some(8));
        assert_eq!(step_line(WORKFLOW, Some("build"), "tests"), Some(10));
        assert_eq!(step_line(WORKFLOW, Some("build"), "__run_2"), Some(13));
        assert_eq!(
            step_line(WORKFLOW, Some("build"), "__actions_setup_node"),
            Some(14)
        );
        assert_eq!(step_line(WORKFLOW, Some("other"), "__run"), Some(20));
        assert_eq!(step_line(WORKFLOW, Some("build"), "nope"), None);
    }

    #[test]
    fn command_messages_show_controls_and_keep_line_breaks() {
        let mut out = Vec::new();
        command(
            &mut out,
            "warning",
            "API said: \x1b[2J\u{202e}x\r\n::error::forged\nsecond line %0A",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "::warning::API said: \\x1b[2J\\u{202e}x\\r%0A::error::forged%0Asecond line %250A\n"
        );
    }

    #[test]
    fn multi_line_values_use_a_delimiter_absent_from_them() {
        let dir = std::env::temp_dir().join(format!("guard-fc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out");
        let _ = std::fs::remove_file(&f);
        file_command(&f, "a", "one").unwrap();
        file_command(&f, "b", "x\nghadelimiter_\ny").unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("a=one"));
        let head = lines.next().unwrap();
        let delim = head.strip_prefix("b<<").unwrap();
        assert!(!"x\nghadelimiter_\ny".contains(delim));
        assert_eq!(
            lines.collect::<Vec<_>>(),
            ["x", "ghadelimiter_", "y", delim]
        );
    }
}
