//! The GitHub Action: `guard action pre|main|post`, run by `dist/*.js`. All of the Action's
//! logic is here, and it speaks the runner's protocol itself: inputs from `INPUT_*`, file
//! commands (`GITHUB_STATE`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`) and workflow commands on
//! stdout.
//!
//! The threat model is a build step that knows the guard is there: it runs as the runner's
//! user, can write `$GITHUB_ENV`, `$GITHUB_PATH`, the action's files and the runner's `node`,
//! and may have sudo. So:
//!
//! - **pre** (before any build step: trusted) gathers everything the verdict depends on into a
//!   [`Job`] — the policy read from the job's commit (never the working tree), the runner's
//!   worker and `node`, the action's scripts, the loader environment, the GitHub context — and
//!   starts the root watcher with it (`sudo -n guard start --job -` when not root), which seals
//!   it ([`crate::watcher::session`]). It saves in `GITHUB_STATE` every key post reads.
//! - **main** says whether the watcher runs.
//! - **post** reads nothing but its saved state: it asks the watcher, over the watcher's
//!   channel ([`crate::watcher::channel`]), for the verdict, which the watcher (root) computes
//!   from its sealed trace ([`crate::github::verdict`]); the watcher's door
//!   ([`crate::watcher::door`]) verified this very process before it ran. Post then writes the
//!   annotations, the summary, the report and SARIF it was given, sends the pull request
//!   feedback and exits with the verdict's status. A watcher that does not answer as the one
//!   `pre` started is the critical finding `verdict_tampered`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::check::Mode;
use crate::github::runner::{append_summary, command, set, Env};
use crate::github::{api, contents};
use crate::pipeline;
use crate::policy::config::{Config, DEFAULT_PATH};
use crate::policy::recipe::RecipeSet;
use crate::report;
use crate::sources::fingerprint::Fingerprinter;
use crate::watcher;
use crate::watcher::channel::{self, ClientError};
use crate::watcher::message::{Message, StartedJob};
use crate::watcher::session::{self, Job, Lockdown, PullRequest, Source, JOB_VERSION};

/// The keys `pre` saves and post reads (every one is saved, empty when it does not apply: a
/// key `pre` did not save could be set through `$GITHUB_ENV`).
const STATE_KEYS: [&str; 6] = [
    "started",
    "channel",
    "watcher",
    "watcher_starttime",
    "guard",
    "require",
];

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

/// The `node` process that runs us (our parent), and the runner's worker (its parent).
struct Runner {
    worker: u32,
    node: PathBuf,
    scripts: PathBuf,
}

fn runner_processes() -> Result<Runner, String> {
    // SAFETY: getppid(2) cannot fail.
    let node = unsafe { libc::getppid() };
    let worker = procfs::process::Process::new(node)
        .and_then(|p| p.stat())
        .ok()
        .and_then(|st| u32::try_from(st.ppid).ok())
        .filter(|p| *p > 1)
        .ok_or("the runner's worker (the parent of node) is not known")?;
    let exe = std::fs::read_link(format!("/proc/{node}/exe"))
        .map_err(|e| format!("the program of node (pid {node}): {e}"))?;
    // node's first argument is the script that runs us: `<action>/dist/pre.js`.
    let cmdline = std::fs::read(format!("/proc/{node}/cmdline"))
        .map_err(|e| format!("/proc/{node}/cmdline: {e}"))?;
    let script = cmdline
        .split(|&b| b == 0)
        .skip(1)
        .find(|a| a.ends_with(b".js"))
        .map(|a| PathBuf::from(String::from_utf8_lossy(a).into_owned()))
        .ok_or("node's script is not known")?;
    let script = if script.is_absolute() {
        script
    } else {
        std::fs::read_link(format!("/proc/{node}/cwd"))
            .map_err(|e| format!("/proc/{node}/cwd: {e}"))?
            .join(script)
    };
    let scripts = script
        .parent()
        .ok_or("node's script has no directory")?
        .to_path_buf();
    Ok(Runner {
        worker,
        node: exe,
        scripts,
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("guard"))
}

/// A repository file (or every `*.yml` of a directory) as it is in the job's commit.
fn read_at_commit(env: &Env, path: &str) -> Result<Option<Vec<Source>>, String> {
    let get = |k: &str| env.var(k);
    let at = contents::repo_at_from_env(&get)?;
    let origin = |p: &str| format!("{p}@{}", &at.sha[..at.sha.len().min(12)]);
    match contents::read_at_commit(&at, path)? {
        contents::RepoPath::Missing => Ok(None),
        contents::RepoPath::File(bytes) => Ok(Some(vec![Source {
            origin: origin(path),
            text: String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8"))?,
        }])),
        contents::RepoPath::Dir(files) => files
            .into_iter()
            .map(|(p, bytes)| {
                Ok(Source {
                    origin: origin(&p),
                    text: String::from_utf8(bytes).map_err(|_| format!("{p} is not UTF-8"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Some),
    }
}

/// A file (or every `*.yml`/`*.yaml` of a directory) of the runner's disk, read now.
fn read_local(path: &Path) -> Result<Vec<Source>, String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|f| {
            Ok(Source {
                origin: f.display().to_string(),
                text: std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?,
            })
        })
        .collect()
}

/// The `recipes` input: absolute paths from the runner's disk, others from the job's commit.
/// Any that cannot be read or does not load is an error: the guard does not start without the
/// recipes it was given.
fn recipes_of(env: &Env) -> Result<Vec<Source>, String> {
    let mut all = Vec::new();
    for p in recipe_inputs(env) {
        let sources = if Path::new(&p).is_absolute() {
            read_local(Path::new(&p))?
        } else {
            read_at_commit(env, &p)
                .map_err(|e| format!("recipes {p:?}: {e}"))?
                .ok_or_else(|| format!("recipes {p:?}: no such path in the job's commit"))?
        };
        all.extend(sources);
    }
    let mut set = RecipeSet::builtin();
    for s in &all {
        set.load_text(Path::new(&s.origin), s.text.as_bytes())
            .map_err(|e| format!("recipes: {e}"))?;
    }
    Ok(all)
}

/// The allowlist: input `allowlist` (inline YAML), else input `config` or the default file, as
/// in the job's commit (an absolute `config` path: the runner's disk). When it cannot be read
/// that way, or does not load, the job runs with no allowlist, and the summary says why.
fn allowlist_of(env: &Env, notes: &mut Vec<String>) -> Option<Source> {
    let source = if let Some(text) = env.var("INPUT_ALLOWLIST") {
        Some(Source {
            origin: "input allowlist".into(),
            text,
        })
    } else {
        let (path, explicit) = match env.input("config") {
            Some(p) => (p, true),
            None => (DEFAULT_PATH.to_string(), false),
        };
        let read = if Path::new(&path).is_absolute() {
            read_local(Path::new(&path)).map(Some)
        } else {
            read_at_commit(env, &path)
        };
        match read {
            Ok(Some(mut files)) if files.len() == 1 => files.pop(),
            Ok(Some(_)) => {
                notes.push(format!(
                    "the allowlist {path} is a directory: the job runs with no allowlist"
                ));
                None
            }
            Ok(None) => {
                if explicit {
                    notes.push(format!(
                        "the allowlist {path} is not in the job's commit: the job runs with no allowlist"
                    ));
                }
                None
            }
            Err(e) => {
                notes.push(format!(
                    "the allowlist {path} could not be read as it is in the job's commit ({e}): the job runs with no allowlist"
                ));
                None
            }
        }
    }?;
    match Config::parse(Path::new(&source.origin), source.text.as_bytes()) {
        Ok(_) => Some(source),
        Err(e) => {
            notes.push(format!(
                "the allowlist does not load ({e}): the job runs with no allowlist"
            ));
            None
        }
    }
}

/// The pull request of the event, as the payload says at `pre`.
fn pull_request_of(env: &Env) -> Option<PullRequest> {
    let event = env.var("GITHUB_EVENT_NAME")?;
    if event != "pull_request" && event != "pull_request_target" {
        return None;
    }
    let text = std::fs::read_to_string(env.var("GITHUB_EVENT_PATH")?).ok()?;
    let payload: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pull = &payload["pull_request"];
    let number = payload["number"]
        .as_u64()
        .or_else(|| pull["number"].as_u64())
        .filter(|&n| n > 0)?;
    let head_sha = pull["head"]["sha"]
        .as_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))?
        .to_string();
    Some(PullRequest { number, head_sha })
}

/// The absolute path of sudo (`$PATH` is the build's to change).
fn sudo_path() -> Result<&'static str, String> {
    ["/usr/bin/sudo", "/bin/sudo"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| "sudo is not installed (root is needed to watch the host)".to_string())
}

/// Whether `sudo -n` lets us become root, or why not.
fn sudo_works() -> Result<(), String> {
    let o = Command::new(sudo_path()?)
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sudo (root is needed to watch the host): {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "root is needed to watch the host, and `sudo -n` refuses: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Everything the verdict will depend on, as `pre` sees it.
fn job_of(env: &Env, mode: Mode, out: &mut dyn Write) -> Result<Job, String> {
    let runner = runner_processes()?;
    let mut notes = Vec::new();
    let recipes = recipes_of(env)?;
    let config = allowlist_of(env, &mut notes);
    let pick = |names: &mut dyn Iterator<Item = String>| {
        names
            .filter_map(|n| std::env::var(&n).ok().map(|v| (n, v)))
            .collect()
    };
    let code_env = pick(&mut std::env::vars_os().filter_map(|(k, _)| {
        let k = k.into_string().ok()?;
        (session::is_code_variable(&k) || session::DISARMED_VARIABLES.contains(&k.as_str()))
            .then_some(k)
    }));
    let api_env = pick(&mut session::API_VARIABLES.iter().map(|s| s.to_string()));
    let context = session::CONTEXT_VARIABLES
        .iter()
        .filter_map(|n| env.var(n).map(|v| (n.to_string(), v)))
        .collect();
    Ok(Job {
        v: JOB_VERSION,
        mode: if mode == Mode::Warn { "warn" } else { "fail" }.into(),
        recipes,
        config,
        notes,
        worker: runner.worker,
        node: runner.node,
        scripts: runner.scripts,
        follow_steps: env.flag("ptrace", false, out),
        code_env,
        api_env,
        context,
        pull_request: pull_request_of(env),
        sarif: env.input("sarif"),
        comment: env.flag("comment", true, out),
        check_run: env.flag("check-run", false, out),
        lockdown: if env.flag("disable-sudo-and-containers", false, out) {
            Lockdown::SudoAndContainers
        } else if env.flag("disable-sudo", false, out) {
            Lockdown::Sudo
        } else {
            Lockdown::None
        },
        container_sockets: watcher::lockdown::sockets_from(
            std::env::var("WEBSERVER_EXEC_GUARD_CONTAINER_SOCKETS")
                .ok()
                .as_deref(),
        ),
        // SAFETY: getuid(2) cannot fail.
        user: unsafe { libc::getuid() },
    })
}

/// The root side of `pre` (`guard start --job`, or `pre` itself as root): seals the job and
/// starts its watcher.
pub fn start_job(
    job: &Job,
    state_dir: &Path,
) -> Result<(watcher::WatcherInfo, StartedJob), String> {
    watcher::prepare_state_dir(state_dir).map_err(|e| e.to_string())?;
    // A previous job's watcher that was killed left its mounts (and sudo taken): given back.
    if !matches!(watcher::status(state_dir), Ok((_, true, _))) {
        watcher::release_leftovers(state_dir);
    }
    let guard_exe =
        std::fs::read_link("/proc/self/exe").map_err(|e| format!("/proc/self/exe: {e}"))?;
    let session = session::seal(job, state_dir, &guard_exe)?;
    // Kept while the watcher runs: `guard stop` gives back what it took if it is killed.
    if let Err(e) = watcher::write_private_json(&state_dir.join(watcher::SESSION_FILE), &session) {
        session.release();
        return Err(e);
    }
    let (recipes, _) = crate::github::verdict::policy_of(&session)?;
    let session = std::sync::Arc::new(session);
    let started = watcher::start(&watcher::StartOptions {
        state_dir: state_dir.to_path_buf(),
        rcvbuf: watcher::RCVBUF,
        trace: None,
        attach: Vec::new(),
        let_go_at_exec: false,
        fingerprinter: Fingerprinter::new(&recipes),
        sealed: Some(watcher::Sealed {
            session: session.clone(),
            verdict: Box::new(crate::github::verdict::compute),
        }),
    });
    match started {
        Ok(info) => {
            let job = StartedJob {
                starttime: info.starttime,
                channel: session.channel.clone(),
                guard: session.guard.path.clone(),
            };
            Ok((info, job))
        }
        Err(e) => {
            session.release();
            Err(e.to_string())
        }
    }
}

/// `pre`: start the watcher.
pub fn pre(env: &Env, out: &mut dyn Write) -> u8 {
    let require = env.flag("require", false, out);
    let save = |values: &[(&str, String)], out: &mut dyn Write| {
        for key in STATE_KEYS {
            let value = values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            set(env, "GITHUB_STATE", key, &value, out);
        }
    };
    let mode = match mode_input(env, out) {
        Ok(m) => m,
        Err(why) => {
            save(&[], out);
            command(out, "error", &format!("webserver-exec-guard: {why}"));
            return 1;
        }
    };
    let unguarded = |why: String, out: &mut dyn Write| -> u8 {
        save(&[("started", "false".into())], out);
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
    if !is_root() {
        if let Err(why) = sudo_works() {
            return unguarded(why, out);
        }
    }
    let job = match job_of(env, mode, out) {
        Ok(job) => job,
        Err(why) => {
            save(&[], out);
            command(out, "error", &format!("webserver-exec-guard: {why}"));
            return 1;
        }
    };
    for note in &job.notes {
        command(out, "warning", &format!("webserver-exec-guard: {note}"));
    }
    let state_dir = watcher::state_dir(None);
    let started = if is_root() {
        start_job(&job, &state_dir).map(|(info, j)| (info.pid, j))
    } else {
        start_with_sudo(&job, &state_dir)
    };
    match started {
        Ok((pid, started)) => {
            save(
                &[
                    ("started", "true".into()),
                    ("channel", started.channel.clone()),
                    ("watcher", pid.to_string()),
                    ("watcher_starttime", started.starttime.to_string()),
                    ("guard", started.guard.display().to_string()),
                    ("require", require.to_string()),
                ],
                out,
            );
            let _ = writeln!(
                io::stderr(),
                "webserver-exec-guard: watching every exec of this job (watcher pid {pid}; {})",
                if job.follow_steps {
                    "following every step with ptrace"
                } else {
                    "the runner's worker is followed up to each step's first exec"
                }
            );
            0
        }
        Err(why) => unguarded(why, out),
    }
}

/// `sudo -n guard start --job -` with the job on its standard input.
fn start_with_sudo(job: &Job, state_dir: &Path) -> Result<(u32, StartedJob), String> {
    let mut child = Command::new(sudo_path()?)
        .arg("-n")
        .arg(self_exe())
        .args(["start", "--message", "--job", "-", "--state-dir"])
        .arg(state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sudo (root is needed to watch the host): {e}"))?;
    let text = serde_json::to_vec(job).expect("a job serialises");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&text);
    }
    let o = child.wait_with_output().map_err(|e| format!("sudo: {e}"))?;
    match Message::parse(&o.stdout) {
        Ok(Message::Started {
            pid, job: Some(j), ..
        }) if o.status.success() => Ok((pid, j)),
        Ok(Message::Error { message }) => Err(format!("`sudo -n guard start` failed: {message}")),
        // No message: sudo itself refused (no passwordless sudo), or the command died.
        _ => Err(format!(
            "`sudo -n guard start` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

/// `main`: say that the watcher was started (it cannot be asked without root).
pub fn main_step(env: &Env) -> u8 {
    if env.var("STATE_started").as_deref() == Some("true") {
        let _ = writeln!(
            io::stderr(),
            "webserver-exec-guard: the watcher (pid {}) records this job; the post step gives the verdict",
            env.var("STATE_watcher").unwrap_or_default()
        );
    }
    0
}

/// `post`: get the verdict from the watcher, show it, exit with it.
pub fn post(env: &Env, out: &mut dyn Write) -> u8 {
    let state = |k: &str| env.var(&format!("STATE_{k}"));
    if state("started").as_deref() != Some("true") {
        set(env, "GITHUB_OUTPUT", "findings", "0", out);
        // The pre step warned (and failed, if required) already.
        return 0;
    }
    let channel = state("channel").unwrap_or_default();
    let pid = state("watcher").and_then(|p| p.parse().ok()).unwrap_or(0);
    let starttime = state("watcher_starttime")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let verdict = match channel::request_verdict(&channel, pid, starttime) {
        Ok(v) => v,
        Err(e) => return tampered(env, &e, out),
    };

    for a in &verdict.annotations {
        let _ = writeln!(out, "{a}");
    }
    append_summary(env, &verdict.summary, out);
    let dir = env
        .var("RUNNER_TEMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("webserver-exec-guard");
    let _ = std::fs::create_dir_all(&dir);
    let report_path = dir.join("report.json");
    if let Err(e) = std::fs::write(&report_path, &verdict.report) {
        command(
            out,
            "warning",
            &format!(
                "webserver-exec-guard: cannot write {}: {e}",
                report_path.display()
            ),
        );
    }
    if let Some((path, content)) = &verdict.sarif {
        let path = Path::new(path);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match std::fs::write(path, content) {
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
    set(
        env,
        "GITHUB_OUTPUT",
        "findings",
        &verdict.failing.to_string(),
        out,
    );
    set(
        env,
        "GITHUB_OUTPUT",
        "report",
        &report_path.display().to_string(),
        out,
    );

    // Pull request feedback, which never changes the verdict.
    if let Some(f) = &verdict.feedback {
        // The API calls use the proxy and certificate settings pre saw, not the build's.
        for name in session::API_VARIABLES {
            match f.api_env.get(*name) {
                // SAFETY (set_var/remove_var): single-threaded here; the API client's runtime
                // starts after.
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
        let token = env
            .var("INPUT_GITHUB-TOKEN")
            .or_else(|| env.var("GITHUB_TOKEN"));
        match token {
            Some(token) => {
                let ctx = api::PrContext {
                    api_url: f.api_url.clone(),
                    token,
                    owner: f.owner.clone(),
                    repo: f.repo.clone(),
                    pr_number: f.number,
                    head_sha: f.head_sha.clone(),
                };
                let warnings = api::publish(
                    &ctx,
                    f.comment.as_deref(),
                    f.check_run.as_ref().map(|(c, conclusion)| (c, *conclusion)),
                );
                for w in warnings {
                    command(out, "warning", &format!("webserver-exec-guard: {w}"));
                }
            }
            None => command(
                out,
                "warning",
                "webserver-exec-guard: no pull request feedback: no token (input github-token)",
            ),
        }
    }
    if verdict.status != 0 && verdict.verdict != crate::check::Verdict::Fail {
        command(
            out,
            "error",
            "webserver-exec-guard: verdict_tampered: a step of this job tampered with the guard (see the annotations and the job summary); the job fails whatever the mode",
        );
    } else if verdict.status != 0 {
        let n = verdict.failing;
        command(
            out,
            "error",
            &format!(
                "webserver-exec-guard: {n} failing finding{}: see the annotations and the job summary",
                if n == 1 { "" } else { "s" }
            ),
        );
    }
    verdict.status
}

/// The watcher could not give a verdict this step can trust: the job fails, whatever the mode.
fn tampered(env: &Env, e: &ClientError, out: &mut dyn Write) -> u8 {
    let why = format!("verdict_tampered: {e}");
    command(out, "error", &format!("webserver-exec-guard: {why}"));
    append_summary(
        env,
        &format!(
            "## ❌ webserver-exec-guard: the verdict cannot be trusted\n\n{}\n\nTreat the job as compromised: a step of this job stopped, replaced or impersonated the watcher.\n\n",
            report::markdown::escape(&why)
        ),
        out,
    );
    1
}

#[doc(hidden)]
pub use pipeline::EXIT_GUARD_FAILED as _EXIT_GUARD_FAILED;
