//! SARIF 2.1.0 for GitHub code scanning (`guard check --format sarif`, the action's `sarif`
//! input): one rule per evaluated recipe, plus one per critical finding about the guard itself
//! (`trace_altered`, `watcher_stopped`, `trace_incomplete`, `events_lost`,
//! `verdict_tampered`); one result per finding.
//!
//! ```json
//! {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
//!  "runs": [{"tool": {"driver": {"name": "webserver-exec-guard", "version": "0.1.0", "rules": [
//!     {"id": "webserver_exec", "name": "WebserverExec", "shortDescription": {"text": "webserver exec"},
//!      "fullDescription": {"text": "..."}, "help": {"text": "...", "markdown": "..."},
//!      "defaultConfiguration": {"level": "error"},
//!      "properties": {"tags": ["security", "external/mitre-attack/T1071.001"],
//!                     "security-severity": "8.0", "precision": "high"}}]}},
//!    "results": [{"ruleId": "webserver_exec", "ruleIndex": 0, "level": "error",
//!      "message": {"text": "webserver exec: /usr/sbin/nginx; argv: nginx -g 'daemon off;'; ..."},
//!      "locations": [{"physicalLocation": {"artifactLocation": {"uri": ".github/workflows/ci.yml",
//!                     "uriBaseId": "%SRCROOT%"}, "region": {"startLine": 12}}}],
//!      "partialFingerprints": {"primaryLocationLineHash": "<32 hex>:1"},
//!      "properties": {"pid": 4242, "count": 1, "evidence": ["..."], "exe": "...", "argv": ["..."]}}]}]}
//! ```
//!
//! - **Levels.** A failing finding is an `error`; an allowlisted one is a `note` with an
//!   external suppression whose justification is the allowlist entry's reason, so code scanning
//!   shows it as dismissed rather than hiding it.
//! - **Locations.** The finding's place in the repository when it is known (the workflow step
//!   that ran it, or a repository script in its ancestry); otherwise line 1 of the running
//!   workflow (from `GITHUB_WORKFLOW_REF`), because code scanning files an alert under a file;
//!   outside Actions, no location at all.
//! - **Fingerprints.** `primaryLocationLineHash` is a SHA-256 of the rule, the executable, the
//!   `#!` script, argv and the step — never of pids or times — so the same exec in two runs is the
//!   same alert. A `:N` suffix numbers repeats of the same hash within a run, as GitHub's own
//!   fingerprints do.
//! - **Attacker-chosen text.** argv and paths appear in `message.text` with control characters
//!   made visible (as on the terminal) and `\`, `[`, `]` backslash-escaped, which SARIF requires
//!   of plain-text messages so that argv cannot forge an embedded link. No `message.markdown`
//!   is written. Invalid UTF-8 is shown lossily (U+FFFD); the lossless form is in the JSON report.
//! - **Own model, not `serde-sarif`.** The maintained typed model (serde-sarif 0.8) was weighed
//!   and not adopted: its types are generated at build time from the schema (build.rs with
//!   schemafy_lib, syn, prettyplease) and it adds strum, typed-builder and thiserror — a code
//!   generator in the build of a supply-chain guard, and minutes of compiling on small CI
//!   runners, for the dozen small structs below; its generated structs also serialize their
//!   fields in their own order, so every log we write would change shape (`ruleId` no longer
//!   first). The structs here are checked against the 2.1.0 schema by tests/sarif.rs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::check::{Finding, GuardKind, ProcessInfo};
use crate::event::Bytes;
use crate::policy::recipe::{Importance, Recipe, Reference};

use super::{attack, Run};
use crate::escape::{is_dangerous, markdown, sarif_text, terminal, terminal_argv};

pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://github.com/garnet-org/jibril-kitab";
/// GitHub code scanning truncates longer `fullDescription`s.
const FULL_DESCRIPTION_MAX: usize = 1024;
/// The most of one argv, or one ancestor, shown in a message (the properties hold all of it).
const ARGV_SHOWN_MAX: usize = 1000;
const ANCESTORS_SHOWN_MAX: usize = 8;

#[derive(Serialize)]
struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<SarifRun>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRun {
    tool: Tool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    invocations: Vec<Invocation>,
    results: Vec<SarifResult>,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    semantic_version: &'static str,
    information_uri: &'static str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct Help {
    text: String,
    markdown: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    name: String,
    short_description: Text,
    full_description: Text,
    help: Help,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_uri: Option<String>,
    default_configuration: Configuration,
    properties: RuleProperties,
}

#[derive(Serialize)]
struct Configuration {
    level: Level,
}

/// A SARIF level (`error`, `warning`, `note`).
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Error,
    Note,
}

/// A finding's level: a failing one is an `error` (in every mode: code scanning's alerts do not
/// depend on whether the job failed), an allowlisted one a `note`.
impl From<&Finding> for Level {
    fn from(f: &Finding) -> Level {
        if f.failing() {
            Level::Error
        } else {
            Level::Note
        }
    }
}

/// Code scanning's `security-severity` (0.1–10): critical > 9, high 7–8.9, medium 4–6.9, low < 4.
#[derive(Clone, Copy, Serialize)]
#[serde(transparent)]
struct SecuritySeverity(&'static str);

impl From<Importance> for SecuritySeverity {
    fn from(i: Importance) -> SecuritySeverity {
        SecuritySeverity(match i {
            Importance::Critical => "9.5",
            Importance::High => "8.0",
            Importance::Medium => "5.5",
            Importance::Low => "3.0",
        })
    }
}

#[derive(Serialize)]
struct RuleProperties {
    tags: Vec<String>,
    #[serde(rename = "security-severity")]
    security_severity: SecuritySeverity,
    precision: &'static str,
    importance: Importance,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: bool,
    tool_execution_notifications: Vec<Notification>,
}

#[derive(Serialize)]
struct Notification {
    level: Level,
    message: Text,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    rule_index: usize,
    level: Level,
    message: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    locations: Option<Vec<ResultLocation>>,
    partial_fingerprints: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressions: Option<Vec<Suppression>>,
    properties: ResultProperties,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultLocation {
    physical_location: PhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactLocation {
    uri: String,
    uri_base_id: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: u32,
}

#[derive(Serialize)]
struct Suppression {
    kind: &'static str,
    justification: String,
}

/// What a result carries besides its message (argv as lossy text: SARIF strings are Unicode).
#[derive(Serialize)]
struct ResultProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    count: u64,
    evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
}

/// Writes the SARIF log of `run`. Findings without a known location point at the running
/// workflow file (`GITHUB_WORKFLOW_REF`) when there is one.
pub fn write(run: &Run, out: &mut dyn Write) -> io::Result<()> {
    write_with(run, run.workflow.as_deref(), out)
}

/// [`write`], with the fallback location given (tests).
pub fn write_with(run: &Run, workflow: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &log(run, workflow)).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

fn log(run: &Run, workflow: Option<&str>) -> Log {
    let mut rules: Vec<Rule> = run.recipes.evaluated().map(recipe_rule).collect();
    for kind in GuardKind::ALL {
        if !rules.iter().any(|r| r.id == kind.as_str()) {
            rules.push(guard_rule(kind));
        }
    }
    let mut repeats: HashMap<String, usize> = HashMap::new();
    let mut results = Vec::with_capacity(run.outcome.findings.len());
    for (i, f) in run.outcome.findings.iter().enumerate() {
        let rule_index = match rules.iter().position(|r| r.id == f.name) {
            Some(i) => i,
            None => {
                // A finding of a recipe that is no longer in the set: still a valid rule.
                rules.push(unknown_rule(f));
                rules.len() - 1
            }
        };
        let location = match run.location(i) {
            Some(l) => Some((uri_path(&l.path), l.line.max(1))),
            None => workflow.map(|w| (uri_path(w), 1)),
        };
        let hash = fingerprint(f, location.as_ref().map(|l| l.0.as_str()));
        let n = repeats.entry(hash.clone()).or_insert(0);
        *n += 1;
        let description = run
            .recipes
            .get(&f.name)
            .map(|l| l.recipe.description.as_str())
            .unwrap_or(f.recipe.as_str());
        results.push(SarifResult {
            rule_id: f.name.clone(),
            rule_index,
            level: f.into(),
            message: Text {
                text: message(f, description),
            },
            locations: location.map(|(uri, line)| {
                vec![ResultLocation {
                    physical_location: PhysicalLocation {
                        artifact_location: ArtifactLocation {
                            uri,
                            uri_base_id: "%SRCROOT%",
                        },
                        region: Region { start_line: line },
                    },
                }]
            }),
            partial_fingerprints: BTreeMap::from([(
                "primaryLocationLineHash",
                format!("{hash}:{n}"),
            )]),
            suppressions: f.allowed.as_ref().map(|reason| {
                vec![Suppression {
                    kind: "external",
                    justification: plain(reason.as_bytes()),
                }]
            }),
            properties: result_properties(f),
        });
    }
    let notifications: Vec<Notification> = run
        .notes
        .iter()
        .map(|n| Notification {
            level: Level::Note,
            message: Text {
                text: plain(n.as_bytes()),
            },
        })
        .collect();
    Log {
        schema: SCHEMA_URI,
        version: "2.1.0",
        runs: vec![SarifRun {
            tool: Tool {
                driver: Driver {
                    name: crate::TOOL_NAME,
                    version: crate::VERSION,
                    semantic_version: crate::VERSION,
                    information_uri: INFORMATION_URI,
                    rules,
                },
            },
            invocations: vec![Invocation {
                execution_successful: true,
                tool_execution_notifications: notifications,
            }],
            results,
        }],
    }
}

/// `webserver_exec` → `WebserverExec` (SARIF's `name` is an identifier-like friendly name).
fn camel(id: &str) -> String {
    Recipe::title(id).replace(' ', "")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// One line: recipe text folded by YAML may still hold newlines.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A URL fit for a Markdown link target and a `uri` field.
fn safe_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url
            .chars()
            .any(|c| c.is_whitespace() || is_dangerous(c) || matches!(c, '<' | '>' | '"' | '`'));
    ok.then_some(url)
}

/// Text for a SARIF plain-text message: dangerous characters made visible (as on the terminal),
/// then escaped for SARIF.
fn plain(bytes: &[u8]) -> String {
    sarif_text(&terminal(bytes))
}

fn argv_shown(argv: &[Bytes]) -> String {
    sarif_text(&clip(&terminal_argv(argv), ARGV_SHOWN_MAX))
}

/// A reference that is not ATT&CK's, for Markdown.
fn reference_markdown(r: &Reference) -> String {
    markdown(&format!("{} {}", r.id, r.name))
}

fn recipe_rule(recipe: &Recipe) -> Rule {
    let explanation = recipe
        .ext
        .explanation
        .as_deref()
        .map(one_line)
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| one_line(&recipe.description));
    let m = attack::Mapping::of(recipe);

    let mut text = format!("{explanation}\n\nMITRE ATT&CK:\n");
    let mut md = format!("{}\n\n**MITRE ATT&CK**\n\n", markdown(&explanation));
    for (level, entry, field) in m.levels(recipe) {
        let label = level.label();
        match entry {
            Some(e) => {
                let url = e.url();
                let _ = writeln!(text, "- {label}: {} {} ({url})", e.id, e.name);
                // The id is letters, digits and a dot; the URL is attack.mitre.org's.
                let _ = writeln!(md, "- {label}: [{} {}](<{url}>)", e.id, markdown(&e.name));
            }
            None if !field.is_empty() => {
                let name = Recipe::title(field);
                let _ = writeln!(text, "- {label}: {name}");
                let _ = writeln!(md, "- {label}: {}", markdown(&name));
            }
            None => {}
        }
    }
    for r in &m.other {
        let _ = writeln!(text, "- Reference: {} {} ({})", r.id, r.name, r.url);
        let shown = reference_markdown(r);
        let _ = match safe_url(&r.url) {
            Some(url) => writeln!(md, "- Reference: [{shown}](<{url}>)"),
            None => writeln!(md, "- Reference: {shown}"),
        };
    }
    let actions = &recipe.ext.actions.ci_cd;
    if !actions.is_empty() {
        text.push_str("\nRecommended actions (CI/CD):\n");
        md.push_str("\n**Recommended actions (CI/CD)**\n\n");
        for (i, a) in actions.iter().enumerate() {
            let a = one_line(a);
            let _ = writeln!(text, "{}. {a}", i + 1);
            let _ = writeln!(md, "{}. {}", i + 1, markdown(&a));
        }
    }
    let help_uri = recipe
        .documentation
        .as_deref()
        .and_then(safe_url)
        .map(str::to_string);
    if let Some(url) = &help_uri {
        let _ = write!(text, "\nDocumentation: {url}\n");
        let _ = write!(md, "\n[Documentation](<{url}>)\n");
    }

    let mut tags = vec!["security".to_string()];
    for id in attack::Mapping::ids(recipe) {
        tags.push(format!("external/mitre-attack/{id}"));
    }
    Rule {
        id: recipe.name.clone(),
        name: camel(&recipe.name),
        short_description: Text {
            text: one_line(&recipe.description),
        },
        full_description: Text {
            text: clip(&explanation, FULL_DESCRIPTION_MAX),
        },
        help: Help {
            text: text.trim_end().to_string(),
            markdown: md.trim_end().to_string(),
        },
        help_uri,
        default_configuration: Configuration {
            level: Level::Error,
        },
        properties: RuleProperties {
            tags,
            security_severity: recipe.importance.into(),
            precision: "high",
            importance: recipe.importance,
        },
    }
}

/// A critical finding about the guard itself, which no recipe describes.
struct GuardRule {
    description: &'static str,
    explanation: &'static str,
    actions: &'static [&'static str],
}

/// Indexed by [`GuardKind`] (in the order of [`GuardKind::ALL`]).
const GUARD_RULES: [GuardRule; GuardKind::ALL.len()] = [
    // GuardKind::TraceAltered
    GuardRule {
        description: "trace altered",
        explanation: "The trace of the job's execs was truncated or edited after the guard wrote it: its seal, record count or SHA-256 chain does not match the records. Its records cannot be trusted, and something inside the job may have tried to hide what it ran.",
        actions: &[
            "Treat the job as compromised: review what it ran and the code changes it built.",
            "Re-run the job with the guard and compare the new trace with the altered one.",
            "Keep the trace out of reach of the build: a root-owned state directory, the trace mode 0600.",
        ],
    },
    // GuardKind::WatcherStopped
    GuardRule {
        description: "watcher stopped",
        explanation: "The host watcher stopped before the job ended without sealing its trace: it was killed or crashed, and what ran after that moment is unknown. An attacker inside the build may have stopped it to start something unseen.",
        actions: &[
            "Treat the job as compromised from the moment the watcher was last seen: review what the job ran after it.",
            "Check the watcher's log in its state directory for why it stopped.",
            "Re-run the job with the guard and compare the findings.",
        ],
    },
    // GuardKind::TraceIncomplete
    GuardRule {
        description: "trace incomplete",
        explanation: "The trace of `guard run` ends without its seal: guard was killed or could not finish writing it (a full disk), or the file was cut. The records present were checked; what ran after them is unknown.",
        actions: &[
            "Find out why guard did not finish: its exit status and the job log.",
            "Re-run the job with the guard and compare the findings.",
        ],
    },
    // GuardKind::EventsLost
    GuardRule {
        description: "events lost",
        explanation: "The host watcher's trace is sealed, but the kernel dropped events before the watcher could read them: its receive buffer overflowed (ENOBUFS) or the proc connector's sequence numbers skipped. The lost events are counted, not known: a web server may have started among them.",
        actions: &[
            "Re-run the job with the guard; if events are lost again, raise `guard start --rcvbuf` or use `guard run -- CMD` (ptrace loses nothing).",
            "Review what the job ran around the loss with the records that are present.",
        ],
    },
    // GuardKind::VerdictTampered
    GuardRule {
        description: "verdict tampered",
        explanation: "A step of the job changed something the guard's verdict depends on: the post step's program, script or loader environment (a variable such as LD_PRELOAD added through $GITHUB_ENV), the watcher's sealed policy or trace, or the watcher itself (killed, frozen, impersonated). A build step that knows the guard is there tried to make the job pass anyway.",
        actions: &[
            "Treat the job as compromised: find the step that made the change (the finding says what changed) and review the code it ran.",
            "Rotate the secrets the job could reach and review what it published.",
            "Re-run the job with `disable-sudo: true` so that no step can stop or edit the watcher.",
        ],
    },
];

fn guard_rule(kind: GuardKind) -> Rule {
    let g = &GUARD_RULES[kind as usize];
    let id = kind.as_str();
    let mut text = format!("{}\n\nRecommended actions (CI/CD):\n", g.explanation);
    let mut md = format!(
        "{}\n\n**Recommended actions (CI/CD)**\n\n",
        markdown(g.explanation)
    );
    for (i, a) in g.actions.iter().enumerate() {
        let _ = writeln!(text, "{}. {a}", i + 1);
        let _ = writeln!(md, "{}. {}", i + 1, markdown(a));
    }
    Rule {
        id: id.to_string(),
        name: camel(id),
        short_description: Text {
            text: g.description.to_string(),
        },
        full_description: Text {
            text: clip(g.explanation, FULL_DESCRIPTION_MAX),
        },
        help: Help {
            text: text.trim_end().to_string(),
            markdown: md.trim_end().to_string(),
        },
        help_uri: None,
        default_configuration: Configuration {
            level: Level::Error,
        },
        properties: RuleProperties {
            tags: vec!["security".to_string()],
            security_severity: Importance::Critical.into(),
            precision: "high",
            importance: Importance::Critical,
        },
    }
}

fn unknown_rule(f: &Finding) -> Rule {
    let description = one_line(f.recipe.as_str());
    Rule {
        id: f.name.clone(),
        name: camel(&f.name),
        short_description: Text {
            text: description.clone(),
        },
        full_description: Text {
            text: clip(&description, FULL_DESCRIPTION_MAX),
        },
        help: Help {
            text: description.clone(),
            markdown: markdown(&description),
        },
        help_uri: None,
        default_configuration: Configuration {
            level: Level::Error,
        },
        properties: RuleProperties {
            tags: vec!["security".to_string()],
            security_severity: f.importance.into(),
            precision: "high",
            importance: f.importance,
        },
    }
}

/// The stable identity of a finding: what ran, never when or as which pid. Fields are
/// length-prefixed so that no two different findings hash the same bytes.
fn fingerprint(f: &Finding, location: Option<&str>) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"webserver-exec-guard/sarif/1");
    field(f.name.as_bytes());
    match &f.process {
        Some(p) => {
            field(p.exe.as_bytes());
            field(p.script.as_ref().map(Bytes::as_bytes).unwrap_or(b"\0none"));
            field(&(p.argv.len() as u64).to_le_bytes());
            for a in &p.argv {
                field(a.as_bytes());
            }
            field(p.step.as_ref().map(Bytes::as_bytes).unwrap_or(b"\0none"));
        }
        // About the guard itself: one alert per workflow, reopened when it happens again.
        None => field(location.unwrap_or("").as_bytes()),
    }
    let digest = h.finalize();
    digest[..16].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn message(f: &Finding, description: &str) -> String {
    let Some(p) = &f.process else {
        return f
            .evidence
            .iter()
            .map(|e| plain(e.as_bytes()))
            .collect::<Vec<_>>()
            .join("; ");
    };
    let mut m = format!("{}: ", sarif_text(&one_line(description)));
    m.push_str(&process_text(p));
    if let Some(outcome) = f.outcome() {
        let _ = write!(m, ". {outcome}");
    }
    if let Some(reason) = &f.allowed {
        let _ = write!(
            m,
            ". Allowed by the allowlist: {}",
            plain(reason.as_bytes())
        );
    }
    if let Some(note) = &f.allow_expired {
        let _ = write!(m, ". {}", plain(note.as_bytes()));
    }
    if f.count > 1 {
        let _ = write!(
            m,
            ". {} matching execs, repeats folded by the recipe's times limits",
            f.count
        );
    }
    m
}

fn process_text(p: &ProcessInfo) -> String {
    let mut m = match &p.script {
        Some(script) => format!(
            "{} (a #! script run by {})",
            plain(script.as_bytes()),
            plain(p.exe.as_bytes())
        ),
        None => plain(p.exe.as_bytes()),
    };
    let _ = write!(m, "; argv: {}", argv_shown(&p.argv));
    if let Some(step) = &p.step {
        let _ = write!(m, "; step: {}", plain(step.as_bytes()));
    }
    if let Some(container) = &p.container {
        let _ = write!(m, "; container: {}", plain(container.as_bytes()));
    }
    if !p.ancestry.is_empty() {
        let shown: Vec<String> = p
            .ancestry
            .iter()
            .take(ANCESTORS_SHOWN_MAX)
            .map(|a| {
                let what = if !a.argv.is_empty() {
                    argv_shown(&a.argv)
                } else if !a.exe.is_empty() {
                    plain(a.exe.as_bytes())
                } else {
                    "(started before tracing)".to_string()
                };
                format!("{} {what}", a.pid)
            })
            .collect();
        let _ = write!(m, "; ancestry (nearest first): {}", shown.join(" < "));
        if p.ancestry.len() > ANCESTORS_SHOWN_MAX {
            let _ = write!(m, " < … {} more", p.ancestry.len() - ANCESTORS_SHOWN_MAX);
        }
    }
    m
}

/// A property value: SARIF viewers show properties as they are, so the text is made inert and
/// lossless the terminal's way (control, bidi and invisible characters, invalid UTF-8 visible).
fn inert(b: &Bytes) -> String {
    terminal(b.as_bytes())
}

fn result_properties(f: &Finding) -> ResultProperties {
    let p = f.process.as_ref();
    ResultProperties {
        pid: p.map(|p| p.pid),
        count: f.count,
        evidence: f.evidence.iter().map(|e| terminal(e.as_bytes())).collect(),
        exe: p.map(|p| inert(&p.exe)),
        script: p.and_then(|p| p.script.as_ref()).map(inert),
        argv: p.map(|p| p.argv.iter().map(inert).collect()),
        step: p.and_then(|p| p.step.as_ref()).map(inert),
        container: p
            .and_then(|p| p.container.as_ref())
            .map(|c| terminal(c.as_bytes())),
    }
}

/// A repository path as a relative URI reference: `/`-separated, everything outside the
/// unreserved and path characters percent-encoded (`:` too, so that a first segment cannot read
/// as a scheme).
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=@".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Mode;
    use crate::check::{Ancestor, Outcome, Stats};
    use crate::policy::recipe::RecipeSet;
    use crate::report::Location;

    fn is_attack_id(id: &str) -> bool {
        attack::Level::of(id).is_some()
    }

    fn process(pid: u32, argv: &[&[u8]], time: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: pid - 1,
            exe: Bytes::from("/usr/sbin/nginx"),
            argv: argv.iter().map(|a| Bytes::from(*a)).collect(),
            cwd: Some(Bytes::from("/work")),
            uid: 1000,
            script: None,
            time: time.to_string(),
            step: Some(Bytes::from("build")),
            container: None,
            ancestry: vec![Ancestor {
                pid: pid - 1,
                exe: Bytes::from("/usr/bin/bash"),
                argv: vec![Bytes::from("bash"), Bytes::from("ci.sh")],
            }],
        }
    }

    fn finding(p: ProcessInfo, allowed: Option<&str>) -> Finding {
        Finding {
            recipe: "webserver_exec".into(),
            name: "webserver_exec".into(),
            importance: Importance::High,
            allowed: allowed.map(str::to_string),
            allow_expired: None,
            evidence: vec!["name: exe /usr/sbin/nginx matches base nginx".into()],
            count: 1,
            blocked: false,
            attempt: None,
            process: Some(p),
        }
    }

    fn outcome(findings: Vec<Finding>) -> Outcome {
        Outcome {
            stats: Stats::default(),
            findings,
            status: None,
            outlived: Vec::new(),
        }
    }

    fn render(
        outcome: &Outcome,
        locations: Vec<Option<Location>>,
        workflow: Option<&str>,
    ) -> serde_json::Value {
        let recipes = RecipeSet::builtin();
        let run = Run {
            outcome,
            recipes: &recipes,
            mode: Mode::Fail,
            command: None,
            integrity: None,
            notes: vec!["a [note]".into()],
            locations,
            workflow: None,
        };
        let mut out = Vec::new();
        write_with(&run, workflow, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn rules_levels_suppressions_and_locations() {
        let o = outcome(vec![
            finding(process(10, &[b"nginx", b"-t"], "t1"), Some("config test")),
            finding(process(20, &[b"nginx", b"-g", b"daemon off;"], "t1"), None),
        ]);
        let loc = Location {
            path: "ci/my script.sh".into(),
            line: 7,
        };
        let v = render(&o, vec![None, Some(loc)], Some(".github/workflows/ci.yml"));
        assert_eq!(v["version"], "2.1.0");
        let run = &v["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "webserver_exec",
                "trace_altered",
                "watcher_stopped",
                "trace_incomplete",
                "events_lost",
                "verdict_tampered"
            ]
        );
        let rule = &rules[0];
        assert_eq!(rule["name"], "WebserverExec");
        assert_eq!(rule["properties"]["security-severity"], "8.0");
        assert!(rule["properties"]["tags"]
            .as_array()
            .unwrap()
            .contains(&"external/mitre-attack/T1071.001".into()));
        let md = rule["help"]["markdown"].as_str().unwrap();
        assert!(
            md.contains("- Sub-technique: [T1071.001 Web Protocols](<https://attack.mitre.org/techniques/T1071/001/>)"),
            "{md}"
        );
        assert!(md.contains("\n1. Immediately review"), "{md}");
        assert_eq!(rules[1]["properties"]["security-severity"], "9.5");

        let results = run["results"].as_array().unwrap();
        assert_eq!(results[0]["level"], "note");
        assert_eq!(results[0]["suppressions"][0]["kind"], "external");
        assert_eq!(
            results[0]["suppressions"][0]["justification"],
            "config test"
        );
        let loc0 = &results[0]["locations"][0]["physicalLocation"];
        assert_eq!(loc0["artifactLocation"]["uri"], ".github/workflows/ci.yml");
        assert_eq!(loc0["region"]["startLine"], 1);
        assert_eq!(results[1]["level"], "error");
        assert!(results[1].get("suppressions").is_none());
        let loc1 = &results[1]["locations"][0]["physicalLocation"];
        assert_eq!(loc1["artifactLocation"]["uri"], "ci/my%20script.sh");
        assert_eq!(loc1["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert_eq!(loc1["region"]["startLine"], 7);
        assert_eq!(
            run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"],
            "a \\[note\\]"
        );

        // Outside Actions and without a known location: no locations at all.
        let v = render(&o, Vec::new(), None);
        assert!(v["runs"][0]["results"][0].get("locations").is_none());
    }

    #[test]
    fn fingerprints_ignore_pid_and_time_and_number_repeats() {
        let fp = |pid, time| {
            let o = outcome(vec![finding(process(pid, &[b"nginx"], time), None)]);
            render(&o, Vec::new(), None)["runs"][0]["results"][0]["partialFingerprints"]
                ["primaryLocationLineHash"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let a = fp(100, "2026-01-01T00:00:00Z");
        assert_eq!(a, fp(200, "2026-02-02T00:00:00Z"));
        assert_eq!(a.len(), 34);
        assert!(a.ends_with(":1"));

        let other = outcome(vec![finding(process(100, &[b"nginx", b"-t"], "t"), None)]);
        let b = render(&other, Vec::new(), None)["runs"][0]["results"][0]["partialFingerprints"]
            ["primaryLocationLineHash"]
            .clone();
        assert_ne!(b, a.as_str());

        let twice = outcome(vec![
            finding(process(1_000, &[b"nginx"], "t"), None),
            finding(process(2_000, &[b"nginx"], "t"), None),
        ]);
        let v = render(&twice, Vec::new(), None);
        let h0 = v["runs"][0]["results"][0]["partialFingerprints"]["primaryLocationLineHash"]
            .as_str()
            .unwrap();
        let h1 = v["runs"][0]["results"][1]["partialFingerprints"]["primaryLocationLineHash"]
            .as_str()
            .unwrap();
        assert_eq!(h0, a);
        assert_eq!(h1, a.replace(":1", ":2"));
    }

    #[test]
    fn hostile_text_cannot_forge_links_or_controls() {
        let argv: &[&[u8]] = &[
            b"nginx",
            b"[link](http://evil)",
            b"a\nb\x1b[31m",
            b"back\\slash",
            b"x\xffy",
        ];
        let o = outcome(vec![finding(process(10, argv, "t"), None)]);
        let v = render(&o, Vec::new(), None);
        let r = &v["runs"][0]["results"][0];
        let text = r["message"]["text"].as_str().unwrap();
        assert!(text.contains("'\\[link\\](http://evil)'"), "{text}");
        assert!(text.contains("'a\\\\nb\\\\x1b\\[31m'"), "{text}");
        assert!(text.contains("back\\\\\\\\slash"), "{text}");
        assert!(text.contains("x\\\\xffy"), "{text}");
        assert!(!text.chars().any(char::is_control), "{text}");
        assert!(r["message"].get("markdown").is_none());
        // Properties are shown raw by viewers: made inert and lossless like the terminal's text.
        assert_eq!(r["properties"]["argv"][1], "[link](http://evil)");
        assert_eq!(r["properties"]["argv"][2], "a\\nb\\x1b[31m");
        assert_eq!(r["properties"]["argv"][3], "back\\\\slash");
        assert_eq!(r["properties"]["argv"][4], "x\\xffy");
    }

    #[test]
    fn guard_findings_use_their_own_rules() {
        let o = outcome(vec![Finding {
            recipe: "watcher_stopped".into(),
            name: "watcher_stopped".into(),
            importance: Importance::Critical,
            allowed: None,
            allow_expired: None,
            evidence: vec!["watcher stopped at T".into()],
            count: 1,
            blocked: false,
            attempt: None,
            process: None,
        }]);
        let v = render(&o, Vec::new(), Some(".github/workflows/ci.yml"));
        let r = &v["runs"][0]["results"][0];
        assert_eq!(r["ruleId"], "watcher_stopped");
        assert_eq!(r["ruleIndex"], 2);
        assert_eq!(r["level"], "error");
        assert_eq!(r["message"]["text"], "watcher stopped at T");
        assert!(r["properties"].get("pid").is_none());
    }

    #[test]
    fn escaping_helpers() {
        assert_eq!(uri_path("/a b/c:d%.yml"), "a%20b/c%3Ad%25.yml");
        assert_eq!(
            uri_path(".github/workflows/ci.yml"),
            ".github/workflows/ci.yml"
        );
        assert_eq!(
            markdown("[x](http://e) <img> @a *b* `c`"),
            "\\[x\\]\\(http\\:\\/\\/e\\) &lt;img&gt; \\@\u{200b}a \\*b\\* \\`c\\`"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert!(is_attack_id("T1071.001") && is_attack_id("TA0011"));
        assert!(!is_attack_id("CWE-78") && !is_attack_id("T"));
    }
}
