//! The `guard` command line.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use guard::check::{Checker, Outcome};
use guard::config::{self, Config};
use guard::event::{Bytes, ExitStatus};
use guard::recipe::{self, RecipeSet};
use guard::report::{self, Mode, Run};
use guard::time::Date;
use guard::trace::{Header, Integrity, Record, TraceReader, TraceWriter};
use guard::watch::ptrace;

/// Exit status: guard itself failed (bad config, tracing refused) before or while running CMD.
const EXIT_GUARD_FAILED: u8 = 125;
/// Exit status: a failing finding, while the command itself succeeded.
const EXIT_FINDING: u8 = 3;
/// Exit status of `guard check` / `guard recipes validate` on bad input or usage.
const EXIT_BAD_INPUT: u8 = 2;

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
    /// fail: failing findings make the exit status non-zero; warn: report only.
    #[arg(long, value_enum, default_value_t = Mode::Fail)]
    mode: Mode,
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
enum Format {
    Text,
    Json,
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
            options,
            cmd,
        } => (
            run(trace.as_deref(), report.as_deref(), &options, &cmd),
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
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("guard: error: {e:#}");
            ExitCode::from(failure_status)
        }
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn load_recipes(paths: &[PathBuf]) -> anyhow::Result<RecipeSet> {
    let mut set = RecipeSet::builtin();
    for p in paths {
        set.load_path(p)?;
    }
    Ok(set)
}

fn load_config(options: &CheckOptions) -> anyhow::Result<Config> {
    Ok(match &options.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(Path::new(config::DEFAULT_PATH), false)?,
    })
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
    options: &CheckOptions,
    cmd: &[OsString],
) -> anyhow::Result<u8> {
    let recipes = load_recipes(&options.recipes)?;
    let config = load_config(options)?;
    let trace_file = trace.map(create_private).transpose()?;
    let report_file = report_path.map(create_private).transpose()?;

    let traced = ptrace::spawn(cmd).context("cannot trace the command")?;
    let command: Vec<Bytes> = cmd.iter().map(|a| Bytes::from(a.as_bytes())).collect();
    let mut header = Header::new("run");
    header.command = Some(command.clone());
    header.root = Some(traced.root());

    let mut writer = match trace_file {
        Some(f) => Some(TraceWriter::new(
            BufWriter::with_capacity(1 << 16, f),
            &header,
        )?),
        None => None,
    };
    let mut write_error: Option<std::io::Error> = None;
    let mut checker = Checker::new(&recipes, &config, Date::today());
    let mut seq = 0u64;
    let result = traced.follow(&mut |mut record: Record| {
        seq += 1;
        set_seq(&mut record, seq);
        if let Some(w) = writer.as_mut() {
            if let Err(e) = w.write(&record) {
                write_error.get_or_insert(e);
                writer = None;
            }
        }
        checker.observe(&record);
    });
    if let Some(w) = writer.take() {
        if let Err(e) = w.seal(0) {
            write_error.get_or_insert(e);
        }
    }

    if let Some(errno) = result.exec_error {
        let name = cmd[0].to_string_lossy();
        eprintln!(
            "guard: cannot run {}: {}",
            report::escape::terminal(name.as_bytes()),
            errno.desc()
        );
        return Ok(result.status.shell_status().clamp(0, 255) as u8);
    }
    let outcome = checker.finish();
    let mut run = Run {
        outcome: &outcome,
        recipes: &recipes,
        mode: options.mode,
        command: Some(&command),
        integrity: None,
        notes: Run::recipe_notes(&recipes),
    };
    if !result.stuck.is_empty() {
        run.notes.push(format!(
            "{} process(es) did not let go within 10 s after the command exited and were killed: {:?}",
            result.stuck.len(),
            result.stuck
        ));
    }
    let mut stderr = std::io::stderr().lock();
    report::text::write(&run, &mut stderr, color())?;
    if let Some(f) = report_file {
        let mut w = BufWriter::new(f);
        report::json::write(&run, &mut w)?;
        w.flush().context("cannot write the report")?;
    }
    if let Some(e) = write_error {
        anyhow::bail!(
            "writing the trace {} failed: {e}; the verdict above is from the live run, but the trace is incomplete",
            trace.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(run_status(&outcome, options.mode, result.status))
}

/// The exit status table of DESIGN.md.
fn run_status(outcome: &Outcome, mode: Mode, status: ExitStatus) -> u8 {
    let own = status.shell_status().clamp(0, 255) as u8;
    if mode == Mode::Fail && outcome.failing() > 0 && own == 0 {
        EXIT_FINDING
    } else {
        own
    }
}

fn set_seq(record: &mut Record, seq: u64) {
    match record {
        Record::Exec(e) | Record::Process(e) => e.seq = seq,
        Record::Fork(f) => f.seq = seq,
        Record::Exit(x) => x.seq = seq,
        Record::End(e) => e.seq = seq,
        Record::Header(_) | Record::Seal(_) => {}
    }
}

fn check(
    trace: &Path,
    format: Format,
    output: Option<&Path>,
    options: &CheckOptions,
) -> anyhow::Result<u8> {
    let recipes = load_recipes(&options.recipes)?;
    let config = load_config(options)?;
    let mut reader = TraceReader::open(trace)?;
    let command = reader.header().command.clone();
    let mut checker = Checker::new(&recipes, &config, Date::today());
    while let Some(record) = reader.next_record()? {
        checker.observe(&record);
    }
    let integrity = reader
        .integrity()
        .cloned()
        .unwrap_or(Integrity::Unsealed { torn: false });
    let mut notes = Run::recipe_notes(&recipes);
    match &integrity {
        Integrity::Sealed { lost } => checker.add_lost(*lost),
        Integrity::Unsealed { torn: true } => notes.push(format!(
            "{}: the last line is torn (the writer was interrupted); the records before it were checked",
            trace.display()
        )),
        Integrity::Unsealed { torn: false } => notes.push(format!(
            "{}: the trace is not sealed (the writer did not finish); the records present were checked",
            trace.display()
        )),
        Integrity::Altered { .. } => {}
    }
    let outcome = checker.finish();
    let run = Run {
        outcome: &outcome,
        recipes: &recipes,
        mode: options.mode,
        command: command.as_deref(),
        integrity: Some(&integrity),
        notes,
    };
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(BufWriter::new(create_private(p)?)),
        None => Box::new(std::io::stdout().lock()),
    };
    match format {
        Format::Text => report::text::write(
            &run,
            &mut out,
            output.is_none() && std::io::stdout().is_terminal() && color(),
        )?,
        Format::Json => report::json::write(&run, &mut out)?,
    }
    out.flush()?;
    Ok(if run.verdict() == "fail" {
        EXIT_FINDING
    } else {
        0
    })
}

fn recipes_command(command: RecipesCommand) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match command {
        RecipesCommand::List { recipes } => {
            let set = load_recipes(&recipes)?;
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
            let set = load_recipes(&recipes)?;
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
                        eprintln!("guard: error: {e}");
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
                            eprintln!("guard: error: {e}");
                            bad += 1;
                        }
                    }
                }
            }
            Ok(if bad > 0 { EXIT_BAD_INPUT } else { 0 })
        }
    }
}
