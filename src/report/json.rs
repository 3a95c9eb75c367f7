//! The JSON report, version 1 (a frozen type: internals may change, this shape may only grow).
//!
//! ```json
//! {"version": 1, "tool": {"name": "webserver-exec-guard", "version": "0.1.0"},
//!  "mode": "fail", "verdict": "fail",
//!  "stats": {"execs": 1234, "forks": 1300, "exits": 1290, "lost": 0, "partial": 0, "suppressed": 0,
//!            "attempts": 0, "blocked": 0, "fingerprint_reads": 57, "fingerprint_bytes": 9120345,
//!            "fingerprint_micros": 21034},
//!  "command": {"argv": ["make", "test"], "status": {"code": 0},
//!              "outlived": [{"pid": 4242, "exe": "/usr/sbin/nginx", "argv": ["nginx"]}]},
//!  "trace": {"integrity": "sealed", "detail": null},
//!  "recipes": [{"kind": "webserver_exec", "name": "webserver_exec", "importance": "high", ...}],
//!  "findings": [{"recipe": "webserver_exec", "name": "webserver_exec", "importance": "high",
//!                "allowed": null, "failing": true, "evidence": ["name: exe /usr/sbin/nginx matches base nginx"],
//!                "count": 1,
//!                // with --attempts / --mode enforce, for an exec that did not happen:
//!                // "blocked": true, "attempt": {"errno": 13, "error": "EACCES", "blocked": true},
//!                "process": {"pid": 4242, "ppid": 4200, "exe": "/usr/sbin/nginx",
//!                            "argv": ["nginx", "-g", "daemon off;"], "cwd": "/work", "uid": 1000,
//!                            "time": "2026-11-27T20:45:00.123456Z",
//!                            "ancestry": [{"pid": 4200, "exe": "/usr/bin/bash", "argv": ["bash", "ci.sh"]}]}}],
//!  "notes": []}
//! ```
//! Strings that are not valid UTF-8 appear as `{"bytes": "<base64>"}`.

use std::io::{self, Write};

use serde::Serialize;

use crate::check::{Finding, Mode, Outlived, Stats, Verdict};
use crate::event::{Bytes, ExitStatus};
use crate::policy::recipe::{Actions, Importance, Reference};
use crate::trace::Integrity;

use super::Run;

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Command<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    argv: Option<&'a [Bytes]>,
    status: Option<ExitStatus>,
    outlived: &'a [Outlived],
}

#[derive(Serialize)]
struct TraceState {
    integrity: &'static str,
    detail: Option<String>,
}

#[derive(Serialize)]
struct RecipeInfo<'a> {
    kind: &'a str,
    name: &'a str,
    description: &'a str,
    importance: Importance,
    tactic: &'a str,
    technique: &'a str,
    subtechnique: &'a str,
    origin: String,
    evaluated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a str>,
    references: &'a [Reference],
    actions: &'a Actions,
}

#[derive(Serialize)]
struct FindingV1<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    failing: bool,
}

#[derive(Serialize)]
struct ReportV1<'a> {
    version: u32,
    tool: Tool,
    mode: Mode,
    verdict: Verdict,
    stats: &'a Stats,
    command: Command<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<TraceState>,
    recipes: Vec<RecipeInfo<'a>>,
    findings: Vec<FindingV1<'a>>,
    notes: &'a [String],
}

pub fn write(run: &Run, out: &mut dyn Write) -> io::Result<()> {
    let report = ReportV1 {
        version: 1,
        tool: Tool {
            name: crate::TOOL_NAME,
            version: crate::VERSION,
        },
        mode: run.mode,
        verdict: run.verdict(),
        stats: &run.outcome.stats,
        command: Command {
            argv: run.command,
            status: run.outcome.status,
            outlived: &run.outcome.outlived,
        },
        trace: run.integrity.map(|i| match i {
            Integrity::Sealed { .. } => TraceState {
                integrity: "sealed",
                detail: None,
            },
            Integrity::Unsealed { torn: false } => TraceState {
                integrity: "unsealed",
                detail: None,
            },
            Integrity::Unsealed { torn: true } => TraceState {
                integrity: "torn",
                detail: Some("the last line was cut".into()),
            },
            Integrity::Altered { reason } => TraceState {
                integrity: "altered",
                detail: Some(reason.clone()),
            },
        }),
        recipes: run
            .recipes
            .recipes
            .iter()
            .map(|l| {
                let r = &l.recipe;
                RecipeInfo {
                    kind: &r.kind,
                    name: &r.name,
                    description: &r.description,
                    importance: r.importance,
                    tactic: &r.tactic,
                    technique: &r.technique,
                    subtechnique: &r.subtechnique,
                    origin: l.origin.to_string(),
                    evaluated: r.enabled && r.not_evaluated().is_none(),
                    explanation: r.ext.explanation.as_deref(),
                    references: &r.ext.references,
                    actions: &r.ext.actions,
                }
            })
            .collect(),
        findings: run
            .outcome
            .findings
            .iter()
            .map(|f| FindingV1 {
                finding: f,
                failing: f.failing(),
            })
            .collect(),
        notes: &run.notes,
    };
    serde_json::to_writer_pretty(&mut *out, &report).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
