//! The `guard` command line.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use guard::check::{Checker, Mode};
use guard::event::Bytes;
use guard::pipeline::{
    self, ConfigSource, Policy, PolicyOptions, EXIT_BAD_INPUT, EXIT_GUARD_FAILED,
};
use guard::policy::recipe::{self, RecipeSet};
use guard::recorder::{AfterError, Recorder};
use guard::report::{self, Run};
use guard::sources::fingerprint::Fingerprinter;
use guard::sources::ptrace;
use guard::trace::{Header, Record};
use guard::watcher::message::{Message, StopKind};
use guard::watcher::{self as daemon};

/// Runs before Rust's runtime initialisation (which opens `/dev/null` on closed standard
/// descriptors and ignores SIGPIPE), to note what the command must inherit as it was.
#[used]
#[link_section = ".init_array"]
static RECORD_INHERITED: extern "C" fn() = {
    extern "C" fn record() {
        ptrace::record_inherited();
    }
    record
};

/// Like `eprintln!`, but a stderr that cannot be written (closed, full) is not a reason to
/// panic: the exit status and the report files still tell the result.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "guard",
    version,
    about = "Watch every program a CI job executes; fail the job when a web server is started.",
    long_about = "Watch every program a CI job executes and fail the job when a web server is \
                  started (MITRE ATT&CK T1071.001, command and control over web protocols).\n\n\
                  Exit status of `guard run`: CMD's own status when there is no failing finding \
                  (128+N if it died of signal N); 3 for a failing finding when CMD succeeded; \
                  125 when guard itself could not run; 126/127 when CMD could not be executed / \
                  was not found."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CheckOptions {
    /// Add recipe files, or directories of *.yaml files (repeatable). Built-in recipes are always loaded.
    #[arg(long = "recipes", value_name = "PATH")]
    recipes: Vec<PathBuf>,
    /// Allowlist/config file [default: .github/webserver-exec-guard.yml when it exists]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// fail: failing findings make the exit status non-zero; warn: report only; enforce (guard
    /// run): also refuse a matching exec before it happens (EACCES), the build goes on.
    #[arg(long, default_value = "fail", value_parser = parse_mode, value_name = "fail|warn|enforce")]
    mode: Mode,
}

impl CheckOptions {
    fn policy(&self) -> PolicyOptions {
        PolicyOptions {
            recipes: self.recipes.clone(),
            config: ConfigSource::from_option(self.config.clone()),
            mode: self.mode,
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD, tracing its whole process tree with ptrace, then check every exec.
    Run {
        /// Write the JSONL trace of every exec, fork and exit to FILE (mode 0600).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Write the JSON report (v1) to FILE.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Also record exec attempts that fail (a web server that could not start is evidence
        /// too), through a seccomp filter that stops execve/execveat only. Implied by
        /// --mode enforce. Processes that outlive CMD then cannot exec (ENOSYS) once guard
        /// has let go of them.
        #[arg(long)]
        attempts: bool,
        #[command(flatten)]
        options: CheckOptions,
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Re-evaluate a saved trace.
    Check {
        /// The JSONL trace written by `guard run --trace`.
        #[arg(long, value_name = "FILE")]
        trace: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the output to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        options: CheckOptions,
    },
    /// Start the host watcher in the background (root): every exec on the host through the
    /// kernel's proc connector, and, with --attach, race-free exec records of the given process
    /// trees through ptrace. Returns once it is recording.
    Start {
        /// Where to write the trace [default: STATE_DIR/trace.jsonl]
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Follow this process and all its future descendants with ptrace (repeatable).
        #[arg(long, value_name = "PID")]
        attach: Vec<u32>,
        /// With --attach: let each process the attached ones start go at its first exec, so
        /// that only the attached processes are followed (what the Action does by default with
        /// the runner's worker: each step runs untraced after its first exec).
        #[arg(long, requires = "attach")]
        let_go_at_exec: bool,
        /// State directory (root-owned, 0700) [default: $GUARD_STATE_DIR or /run/webserver-exec-guard]
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Recipe files or directories whose fingerprints identify executables as they run
        /// (the built-in recipes always count); pass the same to `guard stop`.
        #[arg(long, value_name = "PATH")]
        recipes: Vec<PathBuf>,
        /// Receive buffer of the proc connector socket, in bytes: what absorbs a burst of
        /// events while the watcher is busy. Events beyond it are lost and counted.
        #[arg(long, value_name = "BYTES", default_value_t = daemon::RCVBUF, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(4096..=1 << 30), |v| v as usize))]
        rcvbuf: usize,
        /// Also print the outcome as one watcher message on stdout (JSON, versioned; for an
        /// unprivileged caller such as the Action's pre step).
        #[arg(long)]
        message: bool,
        /// The Action's job (JSON, from the pre step; `-` for standard input): the watcher
        /// seals it, follows the runner's worker to verify the Action's own steps, and gives
        /// the verdict on its channel. --trace, --attach and --recipes do not apply.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["trace", "attach", "recipes", "let_go_at_exec"])]
        job: Option<PathBuf>,
    },
    /// Stop the watcher, seal its trace and check it (exit 3 on failing findings).
    Stop {
        /// Write the JSON report (v1) to FILE.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Instead of checking, copy the trace to FILE, readable by all and writable by root
        /// only, in a root-owned directory, and print the outcome as one watcher message on
        /// stdout (JSON, versioned; for an unprivileged caller such as the Action's post step).
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        options: CheckOptions,
    },
    /// The GitHub Action's steps (run by dist/pre.js, main.js, post.js): they read the
    /// runner's environment and speak its protocol.
    Action {
        #[arg(value_enum)]
        phase: Phase,
    },
    /// Whether the watcher is running, and what it has seen (exit 1 when it is not running).
    Status {
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// List, show and validate recipes.
    Recipes {
        #[command(subcommand)]
        command: RecipesCommand,
    },
}

#[derive(Subcommand)]
enum RecipesCommand {
    /// List the recipes in force (built-in ones and those of --recipes).
    List {
        #[arg(long = "recipes", value_name = "PATH")]
        recipes: Vec<PathBuf>,
    },
    /// Show one recipe (by name or kind) as YAML.
    Show {
        name: String,
        #[arg(long = "recipes", value_name = "PATH")]
        recipes: Vec<PathBuf>,
    },
    /// Validate recipe files; exit 2 when one is malformed.
    Validate {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Pre,
    Main,
    Post,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Sarif,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            let is_run = std::env::args_os().nth(1).is_some_and(|a| a == "run");
            return ExitCode::from(if is_run {
                EXIT_GUARD_FAILED
            } else {
                EXIT_BAD_INPUT
            });
        }
    };
    let (result, failure_status) = match cli.command {
        Command::Run {
            trace,
            report,
            attempts,
            options,
            cmd,
        } => (
            run(
                trace.as_deref(),
                report.as_deref(),
                attempts,
                &options,
                &cmd,
            ),
            EXIT_GUARD_FAILED,
        ),
        Command::Check {
            trace,
            format,
            output,
            options,
        } => (
            check(&trace, format, output.as_deref(), &options),
            EXIT_BAD_INPUT,
        ),
        Command::Recipes { command } => (recipes_command(command), EXIT_BAD_INPUT),
        Command::Start {
            trace,
            attach,
            let_go_at_exec,
            state_dir,
            recipes,
            rcvbuf,
            message,
            job,
        } => (
            match job {
                Some(job) => start_job(state_dir.as_deref(), &job),
                None => start(
                    state_dir.as_deref(),
                    trace,
                    (attach, let_go_at_exec),
                    &recipes,
                    rcvbuf,
                )
                .map(|info| (info, None)),
            }
            .inspect(|(info, job)| {
                if message {
                    print_message(&Message::Started {
                        pid: info.pid,
                        trace: info.trace.clone(),
                        attached: info.attached.clone(),
                        job: job.clone(),
                    })
                }
            })
            .inspect_err(|e| {
                if message {
                    print_message(&Message::Error {
                        message: format!("{e:#}"),
                    })
                }
            })
            .map(|_| 0),
            EXIT_GUARD_FAILED,
        ),
        Command::Stop {
            report,
            export,
            state_dir,
            options,
        } => (
            match export {
                Some(to) => stop_export(state_dir.as_deref(), &to)
                    .map(|m| {
                        print_message(&m);
                        0
                    })
                    .inspect_err(|e| {
                        print_message(&Message::Error {
                            message: format!("{e:#}"),
                        })
                    }),
                None => stop(state_dir.as_deref(), report.as_deref(), &options),
            },
            EXIT_GUARD_FAILED,
        ),
        Command::Status { state_dir } => (status(state_dir.as_deref()), EXIT_GUARD_FAILED),
        Command::Action { phase } => {
            let get = |k: &str| std::env::var(k).ok();
            let env = guard::github::runner::Env::new(&get);
            let mut out = std::io::stdout().lock();
            let code = match phase {
                Phase::Pre => guard::github::action::pre(&env, &mut out),
                Phase::Main => guard::github::action::main_step(&env),
                Phase::Post => guard::github::action::post(&env, &mut out),
            };
            let _ = out.flush();
            (Ok(code), EXIT_GUARD_FAILED)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say!("guard: error: {e:#}");
            ExitCode::from(failure_status)
        }
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The workflow file of a GitHub Actions run (SARIF's fallback location), when in one.
fn workflow_from_env() -> Option<String> {
    let r = std::env::var("GITHUB_WORKFLOW_REF").ok()?;
    guard::github::workflow::workflow_ref_path(&r)
}

/// One watcher message on stdout (see [`guard::watcher::message`]).
fn print_message(m: &Message) {
    let _ = writeln!(std::io::stdout(), "{}", m.to_line());
}

/// Creates a file only we can read (traces and reports may name internal paths).
fn create_private(path: &Path) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn run(
    trace: Option<&Path>,
    report_path: Option<&Path>,
    attempts: bool,
    options: &CheckOptions,
    cmd: &[OsString],
) -> anyhow::Result<u8> {
    let policy = Policy::load(&options.policy())?;
    let recipes = &policy.recipes;
    let enforce = options.mode == Mode::Enforce;
    if enforce && !guard::sources::attempt::CAN_REFUSE {
        anyhow::bail!(
            "--mode enforce is not supported on this architecture ({}): use --mode fail",
            std::env::consts::ARCH
        );
    }
    let trace_file = trace.map(create_private).transpose()?;
    let report_file = report_path.map(create_private).transpose()?;

    let traced = ptrace::spawn(cmd, attempts || enforce).context("cannot trace the command")?;
    let command: Vec<Bytes> = cmd.iter().map(|a| Bytes::from(a.as_bytes())).collect();
    let mut header = Header::new("run");
    header.command = Some(command.clone());
    header.root = Some(traced.root());

    let mut recorder = match trace_file {
        Some(f) => Recorder::to_file(f, &header, AfterError::Abandon)?,
        None => Recorder::numbering_only(),
    };
    // One checker for the verdict and, in enforce mode, for the refusals: both see the same
    // ancestry. They never run at the same time (the tracer asks, then records).
    let checker: std::cell::RefCell<Checker> = std::cell::RefCell::new(policy.checker());
    let refuse = |e: &guard::event::ExecEvent| checker.borrow_mut().refuses(e);
    let follow = ptrace::Follow {
        fingerprinter: policy.fingerprinter(),
        refuse: enforce.then_some(&refuse as &dyn Fn(&guard::event::ExecEvent) -> bool),
        refuse_reads_ids: recipes.evaluated().any(|r| r.reads_ids()),
        // The step is guard's own (every exec of the command belongs to it): not read again
        // from each process's environment.
        extras: guard::sources::proc::Extras { step: false },
        step: std::env::var_os("GITHUB_ACTION").map(|s| Bytes::from(s.as_bytes())),
        at_exec: None,
        let_go_at_exec: false,
    };
    let result = traced.follow(follow, &mut |mut record: Record| {
        recorder.record(&mut record);
        checker.borrow_mut().observe(&record);
    });
    let checker = checker.into_inner();
    let write_error = recorder.seal(0).err();

    if let Some(errno) = result.filter_error {
        anyhow::bail!(
            "cannot install the seccomp filter that keeps the traced tree closed ({}); the command did not run",
            errno.desc()
        );
    }
    let mut notes = recipes.notes();
    if let Some(errno) = result.exec_error {
        let name = guard::escape::terminal(cmd[0].as_bytes());
        say!("guard: cannot run {name}: {}", errno.desc());
        notes.push(format!(
            "the command could not be executed: {name}: {}",
            errno.desc()
        ));
    }
    let outcome = checker.finish();
    let mut run = Run {
        outcome: &outcome,
        recipes,
        mode: options.mode,
        command: Some(&command),
        integrity: None,
        notes,
        locations: Vec::new(),
        workflow: workflow_from_env(),
    };
    if !result.stuck.is_empty() {
        run.notes.push(format!(
            "{} process(es) did not let go within 10 s after the command exited; they are killed as guard exits (PTRACE_O_EXITKILL): {:?}",
            result.stuck.len(),
            result.stuck
        ));
    }
    // The report file first: a stderr that cannot be written must not cost the report.
    if let Some(f) = report_file {
        let mut w = BufWriter::new(f);
        report::json::write(&run, &mut w)?;
        w.flush().context("cannot write the report")?;
    }
    let _ = report::text::write(&run, &mut std::io::stderr().lock(), color());
    if let Some(e) = write_error {
        anyhow::bail!(
            "writing the trace {} failed: {e}; the verdict above is from the live run, but the trace is incomplete",
            trace.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(pipeline::run_status(&outcome, options.mode, result.status))
}

fn write_report(
    run: &Run,
    format: Format,
    output: Option<&Path>,
    to_stderr: bool,
) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(BufWriter::new(create_private(p)?)),
        None if to_stderr => Box::new(std::io::stderr().lock()),
        None => Box::new(std::io::stdout().lock()),
    };
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let written = match format {
        Format::Text => report::text::write(run, &mut out, output.is_none() && terminal && color()),
        Format::Json => report::json::write(run, &mut out),
        Format::Sarif => report::sarif::write(run, &mut out),
    }
    .and_then(|()| out.flush());
    match written {
        // A reader that stopped reading (`| head`) changes nothing to the verdict.
        Err(e) if output.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        r => r?,
    }
    Ok(())
}

fn check(
    trace: &Path,
    format: Format,
    output: Option<&Path>,
    options: &CheckOptions,
) -> anyhow::Result<u8> {
    let policy = Policy::load(&options.policy())?;
    let checked = policy.check_trace(trace, None)?;
    let mut run = Run::checked(&checked, &policy.recipes, policy.mode, Vec::new());
    run.workflow = workflow_from_env();
    write_report(&run, format, output, false)?;
    Ok(pipeline::verdict_status(run.verdict()))
}

/// `guard start --job FILE`: the Action's job, sealed and watched.
fn start_job(
    state: Option<&Path>,
    job: &Path,
) -> anyhow::Result<(
    daemon::WatcherInfo,
    Option<guard::watcher::message::StartedJob>,
)> {
    let job = if job == Path::new("-") {
        guard::watcher::session::Job::read(std::io::stdin().lock())
    } else {
        std::fs::File::open(job)
            .map_err(|e| format!("{}: {e}", job.display()))
            .and_then(guard::watcher::session::Job::read)
    }
    .map_err(anyhow::Error::msg)?;
    let (info, started) = guard::github::action::start_job(&job, &daemon::state_dir(state))
        .map_err(anyhow::Error::msg)?;
    say!(
        "guard: watcher recording the Action's job (pid {}); trace {}",
        info.pid,
        info.trace.display()
    );
    Ok((info, Some(started)))
}

fn start(
    state: Option<&Path>,
    trace: Option<PathBuf>,
    (attach, let_go_at_exec): (Vec<u32>, bool),
    recipes: &[PathBuf],
    rcvbuf: usize,
) -> anyhow::Result<daemon::WatcherInfo> {
    let recipes = pipeline::load_recipes(recipes)?;
    let opts = daemon::StartOptions {
        rcvbuf,
        state_dir: daemon::state_dir(state),
        trace,
        attach,
        let_go_at_exec,
        fingerprinter: Fingerprinter::new(&recipes),
        sealed: None,
    };
    let info = daemon::start(&opts)?;
    say!(
        "guard: watcher recording (pid {}{}); trace {}; stop it with `guard stop`",
        info.pid,
        if info.attached.is_empty() {
            String::new()
        } else {
            format!(
                ", following the process trees of {:?} with ptrace",
                info.attached
            )
        },
        info.trace.display()
    );
    Ok(info)
}

fn stop(
    state: Option<&Path>,
    report_path: Option<&Path>,
    options: &CheckOptions,
) -> anyhow::Result<u8> {
    let policy = Policy::load(&options.policy())?;
    let dir = daemon::state_dir(state);
    let (info, stopped) = daemon::stop(&dir)?;
    let last_seen = match &stopped {
        daemon::Stopped::Died { last_seen } => {
            say!(
                "guard: the watcher (pid {}) was no longer running: last seen at {last_seen}",
                info.pid
            );
            Some(last_seen.as_str())
        }
        daemon::Stopped::AlreadySealed => {
            say!(
                "guard: the watcher (pid {}) had already sealed its trace",
                info.pid
            );
            None
        }
        daemon::Stopped::Sealed => None,
    };
    let checked = policy.check_trace(&info.trace, last_seen)?;
    let mut run = Run::checked(&checked, &policy.recipes, policy.mode, Vec::new());
    run.workflow = workflow_from_env();
    write_report(&run, Format::Text, None, true)?;
    if let Some(p) = report_path {
        write_report(&run, Format::Json, Some(p), false)?;
    }
    Ok(pipeline::verdict_status(run.verdict()))
}

fn stop_export(state: Option<&Path>, to: &Path) -> anyhow::Result<Message> {
    let dir = daemon::state_dir(state);
    let (info, stopped) = daemon::stop(&dir)?;
    let parent = to.parent().context("--export needs a file path")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let meta = std::fs::symlink_metadata(parent)?;
    // SAFETY: geteuid(2) cannot fail.
    if !meta.is_dir() || std::os::unix::fs::MetadataExt::uid(&meta) != unsafe { libc::geteuid() } {
        anyhow::bail!(
            "{} must be a directory owned by us, so that nobody else can swap the copy",
            parent.display()
        );
    }
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_file(to);
    let mut copy = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut File::open(&info.trace)?, &mut copy)?;
    let (stopped, last_seen) = match stopped {
        daemon::Stopped::Sealed => (StopKind::Sealed, None),
        daemon::Stopped::AlreadySealed => (StopKind::AlreadySealed, None),
        daemon::Stopped::Died { last_seen } => (StopKind::Died, Some(last_seen)),
    };
    Ok(Message::Stopped {
        stopped,
        last_seen,
        trace: to.to_path_buf(),
    })
}

fn status(state: Option<&Path>) -> anyhow::Result<u8> {
    let dir = daemon::state_dir(state);
    let (info, alive, st) = daemon::status(&dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "watcher pid {}: {}; started {}; trace {}",
        info.pid,
        if alive { "running" } else { "NOT RUNNING" },
        info.started,
        info.trace.display()
    )?;
    if !info.attached.is_empty() {
        writeln!(out, "following with ptrace: {:?}", info.attached)?;
    }
    match st {
        Some(s) => writeln!(
            out,
            "as of {}: {} records, {} execs, {} lost, {} seen by both sources{}",
            s.time,
            s.records,
            s.execs,
            s.lost,
            s.merged,
            if s.sealed { "; sealed" } else { "" }
        )?,
        None => writeln!(out, "no status written yet")?,
    }
    Ok(if alive { 0 } else { 1 })
}

fn recipes_command(command: RecipesCommand) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match command {
        RecipesCommand::List { recipes } => {
            let set = pipeline::load_recipes(&recipes)?;
            writeln!(
                out,
                "{:<28} {:<28} {:<10} {:<13} ORIGIN",
                "NAME", "KIND", "IMPORTANCE", "EVALUATED"
            )?;
            for l in &set.recipes {
                let r = &l.recipe;
                let evaluated = match (r.enabled, r.not_evaluated()) {
                    (false, _) => "disabled".to_string(),
                    (true, None) => "yes".to_string(),
                    (true, Some(_)) => format!("no ({:?})", r.mechanism).to_lowercase(),
                };
                writeln!(
                    out,
                    "{:<28} {:<28} {:<10} {:<13} {}",
                    r.name, r.kind, r.importance, evaluated, l.origin
                )?;
            }
            Ok(0)
        }
        RecipesCommand::Show { name, recipes } => {
            let set = pipeline::load_recipes(&recipes)?;
            let Some(l) = set.get(&name) else {
                let names: Vec<&str> = set.recipes.iter().map(|r| r.recipe.name.as_str()).collect();
                anyhow::bail!("no recipe named {name:?} (known: {})", names.join(", "));
            };
            writeln!(out, "# {}", l.origin)?;
            write!(out, "{}", serde_norway::to_string(&vec![&l.recipe])?)?;
            Ok(0)
        }
        RecipesCommand::Validate { paths } => {
            let mut bad = 0;
            for path in &paths {
                let files = match recipe::recipe_files(path) {
                    Ok(f) => f,
                    Err(e) => {
                        say!("guard: error: {e}");
                        bad += 1;
                        continue;
                    }
                };
                for file in files {
                    let mut set = RecipeSet::default();
                    match set.load_path(&file) {
                        Ok(()) => {
                            let names: Vec<String> = set
                                .recipes
                                .iter()
                                .map(|l| match l.recipe.not_evaluated() {
                                    Some(why) => format!("{} ({why})", l.recipe.name),
                                    None => l.recipe.name.clone(),
                                })
                                .collect();
                            writeln!(out, "ok: {}: {}", file.display(), names.join(", "))?;
                        }
                        Err(e) => {
                            say!("guard: error: {e}");
                            bad += 1;
                        }
                    }
                }
            }
            Ok(if bad > 0 { EXIT_BAD_INPUT } else { 0 })
        }
    }
}
