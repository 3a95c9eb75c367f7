//! SARIF 2.1.0 from the real binary: `guard run` traces a build that starts a stand-in web
//! server three times (once allowlisted, once with hostile arguments), `guard check --format
//! sarif` renders the trace, and the log is checked field by field, for stable fingerprints
//! across two runs of the same build, and against the official SARIF 2.1.0 JSON schema with
//! Ajv (`node tests/js/validate_sarif.js`, after `npm ci` in tests/js).

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{finish, guard, tempdir, Out};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(60);
const ALLOW_REASON: &str = "the integration tests validate nginx.conf";

/// Arguments an attacker could put on a command line to break out of a report: GitHub
/// workflow commands, Markdown links, mentions, HTML, terminal escapes, a newline, and bytes
/// that are not UTF-8.
fn hostile_args() -> Vec<OsString> {
    let args: [&[u8]; 7] = [
        b"%0A::error::x",
        b"[link](http://evil)",
        b"@admin",
        b"<img src=x>",
        b"\x1b[31m",
        b"line1\nline2",
        b"x\xffy",
    ];
    args.iter()
        .map(|a| OsStr::from_bytes(a).to_os_string())
        .collect()
}

/// A stand-in web server: a `#!` script named `nginx` (matched by its script path) exiting 0.
fn fake_nginx(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("nginx");
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The build: `nginx -t` (allowlisted), `nginx -g 'daemon off;'`, then nginx with the hostile
/// arguments. Traced to `trace`; exits 3 for the failing findings.
fn traced_build(dir: &Path, nginx: &Path, trace: &str) {
    let script = r#""$0" -t; "$0" -g "daemon off;"; "$0" "$@""#;
    let mut args: Vec<OsString> = [
        "run",
        "--config",
        "allow.yml",
        "--trace",
        trace,
        "--",
        "sh",
        "-c",
        script,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(nginx.as_os_str().to_os_string());
    args.extend(hostile_args());
    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let o = guard(refs).cwd(dir).no_github_env().run();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
}

fn setup(name: &str) -> (PathBuf, PathBuf) {
    let dir = tempdir(&format!("sarif-{name}"));
    let nginx = fake_nginx(&dir);
    std::fs::write(
        dir.join("allow.yml"),
        format!(
            "version: 1\nallow:\n  - recipe: webserver_exec\n    base: nginx\n    argv: ' -t$'\n    reason: {ALLOW_REASON}\n"
        ),
    )
    .unwrap();
    (dir, nginx)
}

/// `guard check --format sarif` on a trace; returns the exit status and stdout.
fn check_sarif(dir: &Path, trace: &str, extra: &[&str], env: &[(&str, &str)]) -> Out {
    let mut g = guard([
        "check",
        "--config",
        "allow.yml",
        "--trace",
        trace,
        "--format",
        "sarif",
    ])
    .args(extra)
    .cwd(dir)
    .no_github_env();
    for (k, v) in env {
        g = g.env(k, v);
    }
    g.run()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn results(log: &Value) -> &Vec<Value> {
    log["runs"][0]["results"].as_array().unwrap()
}

fn fingerprints(log: &Value) -> Vec<String> {
    results(log)
        .iter()
        .map(|r| {
            r["partialFingerprints"]["primaryLocationLineHash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The official SARIF 2.1.0 schema: `$SARIF_SCHEMA`, or the team's shared copy beside the
/// checkout (`../shared/schemas/`, where CI lays it too).
fn schema() -> PathBuf {
    let candidates = [
        std::env::var_os("SARIF_SCHEMA").map(PathBuf::from),
        Some(repo().join("../shared/schemas/sarif-schema-2.1.0.json")),
        Some(PathBuf::from(
            "/work/shared/schemas/sarif-schema-2.1.0.json",
        )),
    ];
    candidates
        .iter()
        .flatten()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the SARIF 2.1.0 JSON schema was not found (looked at {:?}); set SARIF_SCHEMA",
                candidates.iter().flatten().collect::<Vec<_>>()
            )
        })
}

/// Runs the Ajv validator on a SARIF file; returns whether it is valid, and what it said.
fn validate(file: &Path) -> (bool, String) {
    let js = repo().join("tests/js");
    assert!(
        js.join("node_modules/ajv/package.json").is_file()
            && js.join("node_modules/ajv-formats/package.json").is_file(),
        "tests/js/node_modules has no ajv / ajv-formats: run `npm ci` in {}",
        js.display()
    );
    let mut c = Command::new("node");
    c.arg(js.join("validate_sarif.js"))
        .arg(schema())
        .arg(file)
        .stdin(Stdio::null());
    let child = match c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot run `node` (Node.js 20 or later is needed): {e}"),
    };
    let o = finish(child, BOUND);
    (o.code == Some(0), format!("{}{}", o.stdout, o.stderr))
}

fn assert_valid(file: &Path) {
    let (ok, said) = validate(file);
    assert!(ok, "{} is not valid SARIF 2.1.0:\n{said}", file.display());
    eprintln!("{}", said.trim());
}

/// `\\`, `\[`, `\]` removed: what is left of a SARIF plain-text message must hold no bracket
/// that could open an embedded link.
fn unescaped_brackets(text: &str) -> bool {
    let rest = text
        .replace("\\\\", "")
        .replace("\\[", "")
        .replace("\\]", "");
    rest.contains('[') || rest.contains(']')
}

#[test]
fn sarif_rules_results_suppressions_and_schema() {
    let (dir, nginx) = setup("log");
    traced_build(&dir, &nginx, "t.jsonl");

    let o = check_sarif(&dir, "t.jsonl", &[], &[]);
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let log = parse(&o.stdout);
    assert_eq!(
        log["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(log["runs"].as_array().unwrap().len(), 1);
    let driver = &log["runs"][0]["tool"]["driver"];
    assert_eq!(driver["name"], "webserver-exec-guard");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        driver["informationUri"],
        "https://github.com/garnet-org/jibril-kitab"
    );

    // Rules: one per evaluated recipe, and the guard's own critical findings.
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in ["webserver_exec", "trace_altered", "watcher_stopped"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    for r in rules {
        assert!(!r["shortDescription"]["text"].as_str().unwrap().is_empty());
        let full = r["fullDescription"]["text"].as_str().unwrap();
        assert!(!full.is_empty() && full.chars().count() <= 1024);
        assert!(!r["help"]["text"].as_str().unwrap().is_empty());
        assert!(!r["help"]["markdown"].as_str().unwrap().is_empty());
        assert_eq!(r["defaultConfiguration"]["level"], "error");
        assert_eq!(r["properties"]["tags"][0], "security");
    }
    let web = &rules[ids.iter().position(|i| *i == "webserver_exec").unwrap()];
    assert_eq!(web["shortDescription"]["text"], "webserver exec");
    assert_eq!(web["properties"]["security-severity"], "8.0");
    assert_eq!(web["properties"]["precision"], "high");
    let tags = web["properties"]["tags"].as_array().unwrap();
    assert!(
        tags.contains(&"external/mitre-attack/T1071.001".into()),
        "{tags:?}"
    );
    let help = web["help"]["text"].as_str().unwrap();
    assert!(
        help.contains("Sub-technique: T1071.001 Web Protocols"),
        "{help}"
    );
    assert!(
        help.contains("\n1. Immediately review recent code changes"),
        "{help}"
    );
    assert!(help.contains("\n3. "), "{help}");
    let md = web["help"]["markdown"].as_str().unwrap();
    assert!(
        md.contains("[T1071.001 Web Protocols](<https://attack.mitre.org/techniques/T1071/001/>)"),
        "{md}"
    );
    assert!(md.contains("[TA0011 Command and Control]("), "{md}");
    assert!(md.contains("\n1. Immediately review"), "{md}");
    let altered = &rules[ids.iter().position(|i| *i == "trace_altered").unwrap()];
    assert_eq!(altered["properties"]["security-severity"], "9.5");

    // Results: the allowlisted `nginx -t` is a suppressed note, the others are errors.
    let res = results(&log);
    assert_eq!(res.len(), 3, "{:#}", log["runs"][0]["results"]);
    for r in res {
        assert_eq!(r["ruleId"], "webserver_exec");
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], "webserver_exec");
        assert!(r["properties"]["pid"].as_u64().unwrap() > 0);
        assert_eq!(r["properties"]["count"], 1);
        assert!(!r["properties"]["evidence"].as_array().unwrap().is_empty());
        let text = r["message"]["text"].as_str().unwrap();
        assert!(text.starts_with("webserver exec: "), "{text}");
        assert!(text.contains(nginx.to_str().unwrap()), "{text}");
        assert!(text.contains("ancestry"), "{text}");
        assert!(r["message"].get("markdown").is_none());
        // Outside Actions and with no known place in the repository: no location.
        assert!(r.get("locations").is_none(), "{r:#}");
    }
    let allowed = &res[0];
    // A `#!` script's argv as the kernel rewrote it: interpreter, script, arguments.
    assert_eq!(allowed["properties"]["argv"][1], nginx.to_str().unwrap());
    assert_eq!(allowed["properties"]["script"], nginx.to_str().unwrap());
    assert_eq!(allowed["properties"]["argv"][2], "-t");
    assert_eq!(allowed["level"], "note");
    assert_eq!(allowed["suppressions"][0]["kind"], "external");
    assert_eq!(allowed["suppressions"][0]["justification"], ALLOW_REASON);
    let text = allowed["message"]["text"].as_str().unwrap();
    assert!(text.contains(ALLOW_REASON), "{text}");
    for r in &res[1..] {
        assert_eq!(r["level"], "error");
        assert!(r.get("suppressions").is_none());
    }
    assert_eq!(res[1]["properties"]["argv"][3], "daemon off;");
    assert!(
        res[1]["message"]["text"]
            .as_str()
            .unwrap()
            .contains("argv: ")
            && res[1]["message"]["text"]
                .as_str()
                .unwrap()
                .contains("-g 'daemon off;'")
    );

    let fps = fingerprints(&log);
    for fp in &fps {
        let (hash, n) = fp.split_once(':').unwrap();
        assert_eq!(hash.len(), 32, "{fp}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
        assert_eq!(n, "1", "{fp}");
    }
    let mut distinct = fps.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), fps.len(), "{fps:?}");

    // Hostile arguments come out as plain JSON strings, and the message cannot carry markup,
    // links or control characters.
    let hostile = &res[2];
    let argv: Vec<&str> = hostile["properties"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv[1], nginx.to_str().unwrap());
    // Properties are shown as they are by SARIF viewers: inert and lossless, as on the terminal.
    assert_eq!(
        argv[2..],
        [
            "%0A::error::x",
            "[link](http://evil)",
            "@admin",
            "<img src=x>",
            "\\x1b[31m",
            "line1\\nline2",
            "x\\xffy",
        ],
        "{argv:?}"
    );
    assert!(
        !argv.iter().any(|a| a.chars().any(char::is_control)),
        "{argv:?}"
    );
    let text = hostile["message"]["text"].as_str().unwrap();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(!unescaped_brackets(text), "{text}");
    assert!(text.contains("'\\[link\\](http://evil)'"), "{text}");
    assert!(text.contains("'\\\\x1b\\[31m'"), "{text}");
    assert!(text.contains("'line1\\\\nline2'"), "{text}");
    assert!(text.contains("x\\\\xffy"), "{text}");
    assert!(text.contains("%0A::error::x"), "{text}");
    assert!(
        !o.stdout.contains('\x1b'),
        "raw escape byte in the SARIF file"
    );

    // --output: the same log to a file, nothing on stdout.
    let f = check_sarif(&dir, "t.jsonl", &["--output", "out.sarif"], &[]);
    assert_eq!(f.code, Some(3), "{}", f.stderr);
    assert_eq!(f.stdout, "");
    let written = std::fs::read_to_string(dir.join("out.sarif")).unwrap();
    assert_eq!(written, o.stdout);

    // The official schema accepts it, and the validator is not a rubber stamp.
    assert_valid(&dir.join("out.sarif"));
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    broken["runs"][0]["results"][1]["locations"] = serde_json::json!([{"physicalLocation":
        {"artifactLocation": {"uri": "a b"}, "region": {"startColumn": 1}}}]);
    std::fs::write(dir.join("broken.sarif"), broken.to_string()).unwrap();
    let (ok, said) = validate(&dir.join("broken.sarif"));
    assert!(!ok, "{said}");
    for needle in ["/level", "uri-reference", "startLine"] {
        assert!(said.contains(needle), "{needle}: {said}");
    }
}

#[test]
fn fingerprints_are_stable_across_runs() {
    let (dir, nginx) = setup("stable");
    traced_build(&dir, &nginx, "a.jsonl");
    traced_build(&dir, &nginx, "b.jsonl");
    let a = check_sarif(&dir, "a.jsonl", &[], &[]);
    let b = check_sarif(&dir, "b.jsonl", &[], &[]);
    let (a, b) = (parse(&a.stdout), parse(&b.stdout));
    let pids = |log: &Value| -> Vec<u64> {
        results(log)
            .iter()
            .map(|r| r["properties"]["pid"].as_u64().unwrap())
            .collect()
    };
    assert_ne!(pids(&a), pids(&b), "two runs, different processes");
    assert_eq!(fingerprints(&a).len(), 3);
    assert_eq!(fingerprints(&a), fingerprints(&b));
}

#[test]
fn workflow_file_is_the_location_in_actions() {
    let (dir, nginx) = setup("workflow");
    traced_build(&dir, &nginx, "t.jsonl");
    let env = [(
        "GITHUB_WORKFLOW_REF",
        "octo-org/app/.github/workflows/ci.yml@refs/heads/main",
    )];
    let o = check_sarif(&dir, "t.jsonl", &["--output", "w.sarif"], &env);
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let log = parse(&std::fs::read_to_string(dir.join("w.sarif")).unwrap());
    let plain = parse(&check_sarif(&dir, "t.jsonl", &[], &[]).stdout);
    assert_eq!(fingerprints(&log), fingerprints(&plain));
    for r in results(&log) {
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"], ".github/workflows/ci.yml",
            "{r:#}"
        );
        assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
    }
    assert_valid(&dir.join("w.sarif"));
}

#[test]
fn an_altered_trace_is_a_critical_result() {
    let (dir, nginx) = setup("altered");
    traced_build(&dir, &nginx, "t.jsonl");
    let text = std::fs::read_to_string(dir.join("t.jsonl")).unwrap();
    assert!(text.contains("daemon off;"));
    std::fs::write(
        dir.join("edited.jsonl"),
        text.replace("daemon off;", "daemon on;;"),
    )
    .unwrap();
    let o = check_sarif(&dir, "edited.jsonl", &["--output", "a.sarif"], &[]);
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    let log = parse(&std::fs::read_to_string(dir.join("a.sarif")).unwrap());
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    let altered: Vec<&Value> = results(&log)
        .iter()
        .filter(|r| r["ruleId"] == "trace_altered")
        .collect();
    assert_eq!(altered.len(), 1, "{log:#}");
    let r = altered[0];
    assert_eq!(r["level"], "error");
    assert_eq!(
        rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"],
        "trace_altered"
    );
    assert!(r["message"]["text"]
        .as_str()
        .unwrap()
        .contains("trace altered"));
    assert!(r["properties"].get("pid").is_none());
    assert!(r["partialFingerprints"]["primaryLocationLineHash"].is_string());
    assert_valid(&dir.join("a.sarif"));
}
