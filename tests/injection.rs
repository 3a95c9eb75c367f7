//! Output injection and secrets (issue 7, items 4 and 5).
//!
//! One corpus of hostile strings — ANSI/OSC sequences, carriage returns, bidi overrides,
//! zero-width characters, workflow commands, Markdown/HTML, JSON breakers, invalid UTF-8, a
//! 100 KiB argument — is put wherever a build controls text: the argv and argv[0] of real nginx
//! execs, the executable's file name, the working directory, the step id (`GITHUB_ACTION`) and
//! the path of the repository script that ran them. `guard run` traces them; then every medium
//! is read the way its consumer reads it:
//!
//! - the terminal (stderr, without and with a terminal): no control, bidi or invisible character
//!   from the corpus, only guard's own colour codes; every argv decodes back to the original;
//! - workflow commands (`guard action post` on stdout): parsed and unescaped as the Actions
//!   runner does — exactly the expected commands, nothing forged, each message giving the
//!   hostile text back;
//! - the job summary, the sticky comment and the check run (sent to a local API server): no HTML
//!   tag, comment, link, code span, mention or issue reference from the corpus, table rows with
//!   the right cell count;
//! - the JSON report (`guard run --report`, `guard check --format json`, the Action's): argv
//!   byte-exact, invalid UTF-8 included;
//! - SARIF: message text inert for GitHub (no embedded link, no control character).
//!
//! The finding count is the same in every medium: a hostile string can neither add a finding
//! nor hide one. Each string is also passed through every reporter on its own (one finding per
//! string), so that the annotation writer, which groups findings, sees each of them.
//!
//! Secrets: a token (input `github-token` and `GITHUB_TOKEN`) and a secret in the traced
//! command's environment never appear in any output or file, also when the GitHub API answers
//! 401 or 500 quoting the `Authorization` header, redirects to another host, links the next
//! page to another host, refuses the connection or is not a URL — with `RUST_BACKTRACE=1` and
//! `RUST_LOG=trace` set.

mod common;

use common::unterminal;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use guard::check::Mode;
use guard::check::{Ancestor, Finding, Outcome, ProcessInfo, Stats};
use guard::escape::{terminal, terminal_argv};
use guard::event::Bytes;
use guard::policy::recipe::{Importance, RecipeSet};
use guard::report::{Location, Run};
use serde_json::Value;

use common::{Out, GUARD};
/// The token given to the Action; `TOKEN_CORE` is searched too, so that a cut or re-quoted token
/// is caught as well.
const TOKEN: &str = "ghs_INJECTIONtestTOKEN0123456789abcdefXYZ";
const TOKEN_CORE: &str = "INJECTIONtestTOKEN";
/// A secret in the environment of the traced command.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-AWS-SECRET-9d3b7";
const OWNER_REPO: &str = "owner/repo";
const HEAD_SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const MARKER: &str = "<!-- webserver-exec-guard:sticky -->";

// --- the corpus ---------------------------------------------------------------------------------

/// Hostile strings for argv.
fn corpus() -> Vec<Vec<u8>> {
    let s = |t: &str| t.as_bytes().to_vec();
    let mut c = vec![
        // Terminal: clear the screen, a hyperlink, the window title, the clipboard.
        s("\x1b[2J\x1b[3J\x1b[H"),
        s("\x1b]8;;http://evil.example/\x1b\\click here\x1b]8;;\x1b\\"),
        s("\x1b]0;pwned title\x07"),
        s("\x1b]52;c;ZXZpbA==\x07"),
        // Overwrite the previous line, or the verdict on this one.
        s("x\r\x1b[1A\x1b[2Kguard: PASS: 0 failing findings"),
        s("\rguard: PASS: 0 failing findings, 0 allowed, in 1 exec"),
        s("\x1b[8mconcealed\x1b[0m \x1b[30;40mblack on black"),
        // Bidi overrides, isolates and marks; invisible characters; separators.
        s("evil\u{202e}txt.exe"),
        s("\u{2066}\u{2067}\u{2068}isolated\u{2069}\u{202a}\u{202b}\u{202c}\u{202d}"),
        s("\u{200f}\u{200e}\u{061c}marks"),
        s("ng\u{200b}inx\u{200c}\u{200d}\u{2060}\u{feff}\u{00ad}"),
        s("line\u{2028}separator\u{2029}paragraph"),
        // Workflow commands.
        s("%0A::error::forged"),
        s("\n::error::forged"),
        s("\r\n::add-mask::x"),
        s("\n::stop-commands::tok\n::error::after-stop"),
        s("%25 %25%0A %"),
        s("\n::endgroup::\n::group::hidden"),
        s("::error file=x,line=1::forged at start"),
        s("%0D%0A::warning::forged"),
        s("\n##[error]forged log line"),
        // Markdown and HTML.
        s("](javascript:alert(1))"),
        s("[x](http://evil.example)"),
        s("![img](http://evil.example/p.png)"),
        s("<img src=x onerror=alert(1)>"),
        s("<details>"),
        s("</details>"),
        s("<!-- the rest is hidden"),
        s(MARKER),
        s("a|b||c | d"),
        s("```\ncode fence\n```"),
        s("`x` ``y``"),
        s("@org/team and @octocat please merge"),
        s("fixes #123 and owner/repo#1"),
        s("&lt;script&gt; &amp; &#64;x"),
        s("https://evil.example www.evil.example user@evil.example"),
        s("**bold** _it_ ~~del~~ > quote"),
        // JSON.
        s("\"}],\"findings\":[],\"x\":{\"a\":\""),
        s("\\u0000 \\\" \\n"),
        // Forged escapes, quotes.
        s("\\x1b[2J \\u{202e} \\\\"),
        s("it's 'quoted' \"double\""),
        // C1 controls as characters (NEL, CSI), C0 and DEL, invalid UTF-8 and raw C1 bytes.
        s("\u{85}NEL \u{9b}31mCSI"),
        s("\x01\x07\x08\x0b\x0c\x7f"),
        vec![0xff, 0xfe, b'x', 0xc3, 0x28, 0x9b, b'3', b'1', b'm', 0x85],
        // SARIF: embedded links and Markdown in a plain-text message.
        s("[text](1) **md** <b>sarif</b> {0}"),
    ];
    // A 100 KiB argument with a payload at its end.
    let mut long = b"long:".to_vec();
    long.extend(std::iter::repeat_n(b'A', 100 * 1024));
    long.extend_from_slice(b"<img src=x>\n::error::tail");
    c.push(long);
    c
}

/// argv[0] of one exec (`exec -a`).
const ARGV0: &str = "\x1b[2Jnginx\n::error::argv0 <b>@org</b>";
/// File names of two copies of nginx (found by content, whatever they are called).
fn exe_names() -> Vec<Vec<u8>> {
    vec![
        "nginx\x1b[2J\r\n::error::forged-exe\u{202e}<img src=x>|@org`x`[l](javascript:1)"
            .as_bytes()
            .to_vec(),
        b"%0A::add-mask::x #123 \xff\xfe \x1b]8;;http:evil\x07".to_vec(),
    ]
}
/// The repository (`GITHUB_WORKSPACE`, the working directory), the script in it that the
/// Action names as the findings' location (workflow-command and URI syntax in its name), and the
/// script it runs, whose name has characters that must not be shown raw — so it is never a
/// location, but it is in every finding's ancestry.
const WS_NAME: &str = "ws\x1b]0;t\x07\u{202e}<!--|@org\n::error::cwd%0A";
const SCRIPT_NAME: &str = "run %0A::error::p,a:b #1 @org [x](javascript:1) 'q'.sh";
const INNER_NAME: &str = "inner\x1b[2J\u{202e}\n::warning::x.sh";
/// The step id (`GITHUB_ACTION`) `guard run` records.
const STEP: &str = "step\n::error::step%0A\x1b[2J\u{202e}@org #1 <img src=x>";

// --- decoding and inertness ---------------------------------------------------------------------

/// What must not reach a reader raw: controls (C0, DEL, C1), bidi marks, overrides and isolates,
/// invisible characters and line/paragraph separators.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

fn context(text: &str, at: usize) -> String {
    let mut a = at.saturating_sub(80);
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = (at + 80).min(text.len());
    while !text.is_char_boundary(b) {
        b += 1;
    }
    format!("{:?}", &text[a..b])
}

/// Terminal text: valid UTF-8 (invalid bytes are shown escaped), no hidden character but line
/// breaks, and nothing the Actions runner would take for a command or a log group.
fn assert_terminal_inert(out: &[u8], what: &str) {
    let text = std::str::from_utf8(out)
        .unwrap_or_else(|e| panic!("{what}: not UTF-8 ({e}): invalid bytes must be escaped"));
    for (i, c) in text.char_indices() {
        assert!(
            c == '\n' || !is_hidden(c),
            "{what}: raw {c:?} at byte {i}: {}",
            context(text, i)
        );
    }
    assert_no_runner_commands(text, what);
}

/// No line the runner would act on: it reads lines split at CR or LF, trims leading white space,
/// and takes `::name …::data` for a command and `##[…` for a log group or error line.
fn assert_no_runner_commands(text: &str, what: &str) {
    for line in text.split(['\n', '\r']) {
        let l = line.trim_start();
        assert!(
            !(l.starts_with("##[") || l.starts_with("::") && l[2..].contains("::")),
            "{what}: a line the runner acts on: {line:?}"
        );
    }
}

/// C1 controls (U+0080..U+009F) print as `\xHH`, like the invalid byte of the same value; to
/// compare a decoded terminal string with the original, those characters are taken as bytes.
fn c1_as_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0xc2 && i + 1 < b.len() && (0x80..=0x9f).contains(&b[i + 1]) {
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Splits a shell-quoted argv as [`terminal_argv`] writes it: plain words, or `'…'` with `'\''`
/// for a quote; then reverses the terminal escapes of each word.
fn decode_argv(s: &str) -> Option<Vec<Vec<u8>>> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let mut word = String::new();
        if chars[i] == '\'' {
            i += 1;
            loop {
                let c = *chars.get(i)?;
                i += 1;
                if c != '\'' {
                    word.push(c);
                } else if chars[i..].starts_with(&['\\', '\'', '\'']) {
                    word.push('\'');
                    i += 3;
                } else {
                    break;
                }
            }
        } else {
            while i < chars.len() && chars[i] != ' ' {
                word.push(chars[i]);
                i += 1;
            }
        }
        words.push(unterminal(&word)?);
        match chars.get(i) {
            None => break,
            Some(' ') => i += 1,
            Some(_) => return None,
        }
    }
    Some(words)
}

/// The text GitHub shows for Markdown we wrote: backslash escapes and the three entities we use
/// resolved; the zero-width space we put after `@` and `#` kept (what GitHub's mention and
/// reference finders see) or dropped (the text as it was).
fn rendered(s: &str, keep_zwsp: bool) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' if i + 1 < c.len() => {
                out.push(c[i + 1]);
                i += 2;
                if !keep_zwsp && matches!(c[i - 1], '@' | '#') && c.get(i) == Some(&'\u{200b}') {
                    i += 1;
                }
            }
            '&' => {
                let rest: String = c[i..c.len().min(i + 5)].iter().collect();
                let (ch, n) = if rest.starts_with("&lt;") {
                    ('<', 4)
                } else if rest.starts_with("&gt;") {
                    ('>', 4)
                } else if rest.starts_with("&amp;") {
                    ('&', 5)
                } else {
                    ('&', 1)
                };
                out.push(ch);
                i += n;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

fn unmarkdown(s: &str) -> String {
    rendered(s, false)
}

/// Positions (char indices) of characters not escaped by a backslash.
fn unescaped(s: &str) -> Vec<(usize, char)> {
    let mut out = Vec::new();
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push((i, c));
        }
    }
    out
}

/// Our own HTML in the summary: collapsible sections, line breaks in cells, the footer.
const OUR_TAGS: [&str; 7] = [
    "<details>",
    "</details>",
    "<summary>",
    "</summary>",
    "<br>",
    "<sub>",
    "</sub>",
];

/// The cells of a Markdown table row, split at the pipes that are not escaped.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = 0;
    for (i, c) in unescaped(row) {
        if c == '|' {
            out.push(row[last..i].to_string());
            last = i + 1;
        }
    }
    out.push(row[last..].to_string());
    // Before the first pipe and after the last: empty.
    out[1..out.len() - 1]
        .iter()
        .map(|c| c.trim().to_string())
        .collect()
}

/// The summary (or comment, or check run summary) is inert Markdown: no hidden character but the
/// zero-width spaces we put after `\@` and `\#`; no HTML but ours; no link but to MITRE ATT&CK;
/// no code span, autolink, mention or issue reference; every table row has the table's 7 cells;
/// `<details>` balanced. Returns the findings table's rows (cells).
fn assert_markdown_inert(md: &str, what: &str) -> Vec<Vec<String>> {
    let mut prev = ['\0', '\0'];
    for (i, c) in md.char_indices() {
        if c == '\u{200b}' {
            assert!(
                prev[0] == '\\' && matches!(prev[1], '@' | '#'),
                "{what}: a zero-width space that is not ours at {i}: {}",
                context(md, i)
            );
        } else {
            assert!(
                c == '\n' || !is_hidden(c),
                "{what}: raw {c:?} at {i}: {}",
                context(md, i)
            );
        }
        prev = [prev[1], c];
    }
    // HTML: only our tags; what is left has no `<` at all (no tag, no comment).
    let mut rest = md.to_string();
    for tag in OUR_TAGS {
        rest = rest.replace(tag, "");
    }
    if let Some(i) = rest.find('<') {
        panic!("{what}: HTML that is not ours: {}", context(&rest, i));
    }
    assert_eq!(
        md.matches("<details>").count(),
        md.matches("</details>").count(),
        "{what}: unbalanced <details>"
    );
    // Links, images, code spans: no unescaped `[`, `]`, `` ` `` but in our MITRE links.
    let raw = unescaped(md);
    for (n, &(i, c)) in raw.iter().enumerate() {
        if c == '`' {
            panic!("{what}: a code span delimiter: {}", context(md, i));
        }
        if c == ']' && raw.get(n + 1) == Some(&(i + 1, '(')) {
            assert!(
                md[i..].starts_with("](https://attack.mitre.org/"),
                "{what}: a link: {}",
                context(md, i)
            );
        }
    }
    // What GitHub's post-processing sees (escapes resolved): no mention, no issue reference, no
    // autolinked host from the corpus.
    let shown = rendered(md, true);
    let chars: Vec<char> = shown.chars().collect();
    for w in chars.windows(2) {
        assert!(
            !(w[0] == '@' && w[1].is_ascii_alphanumeric()),
            "{what}: a mention @{}",
            w[1]
        );
        assert!(
            !(w[0] == '#' && w[1].is_ascii_digit()),
            "{what}: an issue reference #{}",
            w[1]
        );
    }
    for host in ["://evil", "www.evil", "@evil"] {
        assert!(!md.contains(host), "{what}: an autolink {host}");
    }
    // Tables: every row of the findings table has its 7 cells.
    let mut rows = Vec::new();
    for line in md.lines() {
        if line.starts_with("| ") {
            let c = cells(line);
            assert_eq!(c.len(), 7, "{what}: a row with {} cells: {line:?}", c.len());
            if c[0].chars().all(|d| d.is_ascii_digit()) {
                rows.push(c);
            }
        }
    }
    rows
}

// --- workflow commands as the runner reads them -------------------------------------------------

#[derive(Debug)]
struct WorkflowCommand {
    name: String,
    props: BTreeMap<String, String>,
    data: String,
}

/// The workflow commands in a step's output, parsed and unescaped as the Actions runner does
/// (`ActionCommand.TryParseV2`): lines split at CR or LF, leading white space trimmed, `::`,
/// the command name up to a space, `,`-separated `key=value` properties up to the next `::`,
/// then the data; `stop-commands` honoured. Every non-empty line must be a command.
fn runner_commands(stdout: &str, what: &str) -> Vec<WorkflowCommand> {
    let unescape = |s: &str, property: bool| {
        let mut s = s.replace("%0D", "\r").replace("%0A", "\n");
        if property {
            s = s.replace("%3A", ":").replace("%2C", ",");
        }
        s.replace("%25", "%")
    };
    let mut out = Vec::new();
    let mut stopped: Option<String> = None;
    for line in stdout.split(['\n', '\r']) {
        let l = line.trim_start();
        if l.is_empty() {
            continue;
        }
        if let Some(token) = &stopped {
            if l == format!("::{token}::") {
                stopped = None;
            }
            continue;
        }
        let parsed = l.strip_prefix("::").and_then(|rest| {
            let end = rest.find("::")?;
            Some((&rest[..end], &rest[end + 2..]))
        });
        let Some((info, data)) = parsed else {
            panic!("{what}: a line that is not a workflow command: {line:?}");
        };
        let (name, props_text) = info.split_once(' ').unwrap_or((info, ""));
        let mut props = BTreeMap::new();
        for p in props_text.trim().split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = p.split_once('=') {
                props.insert(k.to_string(), unescape(v, true));
            }
        }
        if name == "stop-commands" {
            stopped = Some(data.to_string());
        }
        out.push(WorkflowCommand {
            name: name.to_string(),
            props,
            data: unescape(data, false),
        });
    }
    for c in &out {
        assert!(
            matches!(c.name.as_str(), "error" | "warning" | "notice"),
            "{what}: a command we never write: {c:?}"
        );
    }
    out
}

// --- the traced run -----------------------------------------------------------------------------

/// Shell single quotes around any bytes but NUL.
fn sh_quote(b: &[u8]) -> Vec<u8> {
    let mut out = b"'".to_vec();
    for &c in b {
        if c == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(c);
        }
    }
    out.push(b'\'');
    out
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

struct Fixture {
    base: PathBuf,
    ws: PathBuf,
    script: PathBuf,
    trace: PathBuf,
    /// The argv of every expected finding.
    expected: Vec<Vec<Vec<u8>>>,
    run: Out,
    report: Value,
}

impl Fixture {
    fn n(&self) -> usize {
        self.expected.len()
    }

    /// The script's path relative to the repository, as the Action's locations give it.
    fn rel_script(&self) -> String {
        format!("scripts/{SCRIPT_NAME}")
    }
}

/// Runs the corpus once under `guard run`: `sh <repo>/scripts/<SCRIPT_NAME>`, which runs
/// `sh <repo>/scripts/<INNER_NAME>`, which runs the execs — in the hostile repository directory,
/// with the hostile step id, the token and a secret in the environment.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Leftovers of earlier runs (their process is gone).
        for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("guard-injection-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let base = std::env::temp_dir().join(format!("guard-injection-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let ws = base.join(WS_NAME);
        std::fs::create_dir_all(ws.join("scripts")).unwrap();
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let nginx = Path::new("/usr/sbin/nginx");
        assert!(
            nginx.is_file(),
            "nginx is needed (apt-get install nginx-light)"
        );
        let mut script = b"#!/bin/sh\n".to_vec();
        let mut expected = Vec::new();
        for h in corpus() {
            script.extend_from_slice(b"nginx -v ");
            script.extend(sh_quote(&h));
            script.extend_from_slice(b" 2>/dev/null\n");
            expected.push(vec![b"nginx".to_vec(), b"-v".to_vec(), h]);
        }
        script.extend_from_slice(b"bash -c 'exec -a \"$1\" nginx -v 2>/dev/null' bash ");
        script.extend(sh_quote(ARGV0.as_bytes()));
        script.push(b'\n');
        expected.push(vec![ARGV0.as_bytes().to_vec(), b"-v".to_vec()]);
        for name in exe_names() {
            let path = base.join("bin").join(os(&name));
            std::fs::copy(nginx, &path).unwrap();
            script.extend(sh_quote(path.as_os_str().as_bytes()));
            script.extend_from_slice(b" -v 2>/dev/null\n");
            expected.push(vec![path.as_os_str().as_bytes().to_vec(), b"-v".to_vec()]);
        }
        let inner = ws.join("scripts").join(INNER_NAME);
        std::fs::write(&inner, &script).unwrap();
        let mut outer = b"#!/bin/sh\nsh ".to_vec();
        outer.extend(sh_quote(inner.as_os_str().as_bytes()));
        outer.extend_from_slice(b"\nexit 0\n");
        let script_path = ws.join("scripts").join(SCRIPT_NAME);
        std::fs::write(&script_path, &outer).unwrap();

        let trace = base.join("t.jsonl");
        let report = base.join("r.json");
        let run = common::guard(["run", "--report"])
            .arg(&report)
            .arg("--trace")
            .arg(&trace)
            .arg("--")
            .arg("sh")
            .arg(&script_path)
            .cwd(&ws)
            .env("NO_COLOR", "1")
            .env("GITHUB_ACTION", STEP)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("GITHUB_TOKEN", TOKEN)
            .env("INPUT_GITHUB-TOKEN", TOKEN)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "trace")
            .run();
        let report_json = serde_json::from_slice(&std::fs::read(&report).unwrap())
            .unwrap_or_else(|e| panic!("the report does not parse: {e}"));
        Fixture {
            base,
            ws,
            script: script_path,
            trace,
            expected,
            run,
            report: report_json,
        }
    })
}

/// The argv lists of a report's findings, sorted.
fn report_argvs(report: &Value) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let argv: Vec<Bytes> = serde_json::from_value(f["process"]["argv"].clone())
                .unwrap_or_else(|e| panic!("argv of {f}: {e}"));
            argv.into_iter().map(|a| a.0).collect()
        })
        .collect();
    out.sort();
    out
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Short text for an argv in a failure message.
fn show(argv: &[Vec<u8>]) -> String {
    let all = argv
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{:?}", all.chars().take(120).collect::<String>())
}

/// The same argv lists, in any order; a failure names what is missing and what is extra.
fn assert_same_argvs(got: &[Vec<Vec<u8>>], want: &[Vec<Vec<u8>>], what: &str) {
    let (got, want) = (sorted(got), sorted(want));
    if got != want {
        let count = |v: &[Vec<Vec<u8>>], a: &Vec<Vec<u8>>| v.iter().filter(|b| *b == a).count();
        let missing: Vec<String> = want
            .iter()
            .filter(|a| count(&got, a) < count(&want, a))
            .map(|a| show(a))
            .collect();
        let extra: Vec<String> = got
            .iter()
            .filter(|a| count(&got, a) > count(&want, a))
            .map(|a| show(a))
            .collect();
        panic!(
            "{what}: {} argv lists, {} expected\nmissing: {missing:#?}\nextra: {extra:#?}",
            got.len(),
            want.len()
        );
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn check(args: &[&str]) -> Out {
    common::guard(["check", "--trace"])
        .arg(&fixture().trace)
        .args(args)
        .env("NO_COLOR", "1")
        .run()
}

/// The terminal report: inert, every finding's argv (and the executable, the working directory)
/// decodes back to the original bytes, one finding per hostile string, the verdict FAIL.
fn assert_terminal_report(out: &[u8], f: &Fixture, what: &str) {
    assert_terminal_inert(out, what);
    let text = String::from_utf8_lossy(out);
    let mut argvs = Vec::new();
    let mut cwds = 0;
    for line in text.lines() {
        if let Some(argv) = line.strip_prefix("  argv:      ") {
            let decoded =
                decode_argv(argv).unwrap_or_else(|| panic!("{what}: undecodable argv {argv:?}"));
            argvs.push(decoded);
        }
        if let Some(rest) = line.strip_prefix("  process:   ") {
            let cwd = rest
                .split_once(", cwd ")
                .and_then(|(_, r)| r.rsplit_once(", at "))
                .map(|(c, _)| c)
                .unwrap_or_else(|| panic!("{what}: {line:?}"));
            assert_eq!(
                unterminal(cwd).map(|b| c1_as_bytes(&b)),
                Some(c1_as_bytes(f.ws.as_os_str().as_bytes())),
                "{what}: the working directory"
            );
            cwds += 1;
        }
    }
    let expected: Vec<Vec<Vec<u8>>> = f
        .expected
        .iter()
        .map(|a| a.iter().map(|w| c1_as_bytes(w)).collect())
        .collect();
    let decoded: Vec<Vec<Vec<u8>>> = argvs
        .iter()
        .map(|a| a.iter().map(|w| c1_as_bytes(w)).collect())
        .collect();
    assert_same_argvs(&decoded, &expected, what);
    assert_eq!(cwds, f.n(), "{what}");
    for name in exe_names() {
        let shown = terminal(f.base.join("bin").join(os(&name)).as_os_str().as_bytes());
        assert!(
            text.lines()
                .any(|l| l.starts_with("guard: FINDING ") && l.ends_with(&format!(" — {shown}"))),
            "{what}: the executable {shown}"
        );
    }
    let verdicts: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["guard: FAIL", "guard: PASS", "guard: WARN"]
                .iter()
                .any(|v| l.starts_with(v))
        })
        .collect();
    assert_eq!(
        verdicts,
        [format!(
            "guard: FAIL: {} failing findings, 0 allowed, in {} execs",
            f.n(),
            f.report["stats"]["execs"]
        )
        .as_str()],
        "{what}"
    );
}

#[test]
fn guard_run_terminal_and_json_report_are_inert_and_lossless() {
    let f = fixture();
    assert_eq!(f.run.code, Some(3), "stderr: {}", f.run.stderr);
    assert!(f.run.stdout_bytes.is_empty());
    assert_terminal_report(&f.run.stderr_bytes, f, "guard run stderr");

    // The JSON report: exactly one finding per hostile exec, argv byte-exact (invalid UTF-8 as
    // {"bytes": base64}), the working directory, the step and the command too.
    let r = &f.report;
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["findings"].as_array().unwrap().len(), f.n());
    assert_same_argvs(&report_argvs(r), &f.expected, "guard run --report");
    for finding in r["findings"].as_array().unwrap() {
        assert_eq!(finding["failing"], true);
        let p = &finding["process"];
        let cwd: Bytes = serde_json::from_value(p["cwd"].clone()).unwrap();
        assert_eq!(cwd.0, f.ws.as_os_str().as_bytes());
        let step: Bytes = serde_json::from_value(p["step"].clone()).unwrap();
        assert_eq!(step.0, STEP.as_bytes());
    }
    let command: Vec<Bytes> = serde_json::from_value(r["command"]["argv"].clone()).unwrap();
    assert_eq!(command[1].0, f.script.as_os_str().as_bytes());
    let invalid = corpus()
        .into_iter()
        .find(|h| std::str::from_utf8(h).is_err())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&invalid);
    let text = std::fs::read_to_string(f.base.join("r.json")).unwrap();
    assert!(
        text.contains(&format!("\"bytes\": \"{b64}\"")),
        "invalid UTF-8 is written as base64"
    );
    // The trace: every line is JSON; report and trace are 0600.
    let trace = std::fs::read(&f.trace).unwrap();
    for line in trace.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<Value>(line).expect("a trace line that is not JSON");
    }
    assert_eq!(mode(&f.trace), 0o600, "trace mode");
    assert_eq!(mode(&f.base.join("r.json")), 0o600, "report mode");

    // `guard check` reaches the same findings, in text and JSON.
    let text = check(&[]);
    assert_eq!(text.code, Some(3));
    assert_terminal_report(&text.stdout_bytes, f, "guard check text");
    let json = check(&["--format", "json"]);
    let again: Value = serde_json::from_slice(&json.stdout_bytes).unwrap();
    assert_same_argvs(
        &report_argvs(&again),
        &f.expected,
        "guard check --format json",
    );
}

// --- the terminal, on a pseudo-terminal -----------------------------------------------------------

/// Runs `cmd` with stdout and stderr on a new pseudo-terminal (output post-processing off, so
/// that the bytes read are the program's own) and returns its status and output.
fn run_on_pty(mut cmd: Command) -> (Option<i32>, Vec<u8>) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors, which we own from here on.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: see above.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: a zeroed termios is filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and termios.
    unsafe {
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        t.c_oflag &= !libc::OPOST;
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    drop(cmd);
    drop(slave);
    let mut out = Vec::new();
    // EIO once every writer has closed the terminal.
    let _ = std::fs::File::from(master).read_to_end(&mut out);
    (child.wait().unwrap().code(), out)
}

#[test]
fn on_a_terminal_only_guards_own_colours_are_escape_sequences() {
    let f = fixture();
    let check_on_pty = |no_color: bool| {
        // common::guard unsets NO_COLOR.
        let mut g = common::guard(["check", "--trace"]).arg(&f.trace);
        if no_color {
            g = g.env("NO_COLOR", "1");
        }
        run_on_pty(g.command())
    };
    let (code, out) = check_on_pty(false);
    assert_eq!(code, Some(3));
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(
        text.contains("\x1b[1;31mguard: FINDING\x1b[0m"),
        "colour on a terminal"
    );
    let mut plain = text.clone();
    for ours in [
        "\x1b[1;31m",
        "\x1b[1;33m",
        "\x1b[1;32m",
        "\x1b[1m",
        "\x1b[0m",
    ] {
        plain = plain.replace(ours, "");
    }
    assert_terminal_report(plain.as_bytes(), f, "guard check on a terminal");

    let (code, out) = check_on_pty(true);
    assert_eq!(code, Some(3));
    assert!(!out.contains(&0x1b), "NO_COLOR: no escape sequence at all");
    assert_terminal_report(&out, f, "guard check on a terminal with NO_COLOR");
}

// --- SARIF --------------------------------------------------------------------------------------

/// SARIF's plain-text escaping: `\`, `[`, `]`.
fn sarif_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
}

fn bytes_argv(argv: &[Vec<u8>]) -> Vec<Bytes> {
    argv.iter().map(|a| Bytes(a.clone())).collect()
}

/// The argv as a message shows it: terminal-escaped and shell-quoted, cut to `max` characters.
fn shown_argv(argv: &[Vec<u8>], max: usize) -> (String, bool) {
    let shown = terminal_argv(&bytes_argv(argv));
    if shown.chars().count() > max {
        (shown.chars().take(max - 1).collect(), true)
    } else {
        (shown, false)
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// One result per finding, message text inert for GitHub (no control or invisible character, no
/// `[`/`]` that could form an embedded link, no `message.markdown`), each argv recoverable.
fn assert_sarif(sarif: &Value, f: &Fixture, uri: Option<&str>, what: &str) {
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), f.n(), "{what}: results");
    let mut matched = vec![0usize; f.n()];
    for r in results {
        assert!(r["message"].get("markdown").is_none(), "{what}");
        let text = r["message"]["text"].as_str().expect("message text");
        for (i, c) in text.char_indices() {
            assert!(!is_hidden(c), "{what}: raw {c:?}: {}", context(text, i));
        }
        for (i, c) in unescaped(text) {
            assert!(
                c != '[' && c != ']',
                "{what}: an embedded link: {}",
                context(text, i)
            );
        }
        for (k, argv) in f.expected.iter().enumerate() {
            let (shown, cut) = shown_argv(argv, 1000);
            let needle = format!(
                "argv: {}{}",
                sarif_text(&shown),
                if cut { "" } else { "; " }
            );
            if text.contains(&needle) {
                matched[k] += 1;
            }
        }
        let location = &r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"];
        match uri {
            Some(uri) => assert_eq!(
                percent_decode(location.as_str().expect("uri")),
                uri.as_bytes(),
                "{what}"
            ),
            None => assert!(location.is_null(), "{what}: {location}"),
        }
    }
    for (k, m) in matched.iter().enumerate() {
        assert_eq!(
            *m,
            1,
            "{what}: argv {} in {m} messages",
            show(&f.expected[k])
        );
    }
}

#[test]
fn sarif_messages_are_inert_for_github() {
    let f = fixture();
    let path = f.base.join("check.sarif");
    let o = check(&["--format", "sarif", "--output", path.to_str().unwrap()]);
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert_eq!(mode(&path), 0o600);
    let sarif: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_sarif(&sarif, f, None, "guard check --format sarif");
}

// --- a GitHub API that misbehaves ---------------------------------------------------------------

/// How the local API answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// Like GitHub for an installation token: `GET /user` 403, the rest accepted.
    Accept,
    /// 401 for everything, quoting the `Authorization` header it got.
    Echo401,
    /// 500 for everything: a text page quoting the header and the token, with workflow commands,
    /// escape sequences and a bidi override in it.
    Echo500,
    /// 302 to the same path on another host (127.0.0.2), quoting the header.
    Redirect,
    /// Like `Accept`, but the comment list's `Link: rel="next"` points at another host.
    LinkElsewhere,
}

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct ApiServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl ApiServer {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn api_server(ip: &'static str, api: Api, elsewhere: Option<u16>) -> ApiServer {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, api, ip, elsewhere, &log);
            });
        }
    });
    ApiServer { port, requests }
}

/// Serves the requests of one connection (keep-alive).
fn serve(
    mut stream: TcpStream,
    api: Api,
    ip: &str,
    elsewhere: Option<u16>,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        let auth = header("authorization").unwrap_or_default();
        let (status, extra, answer) = answer(api, ip, elsewhere, &method, &path, &auth);
        log.lock().unwrap().push(Request {
            method,
            path,
            headers: headers.clone(),
            body,
        });
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n{extra}\r\n",
            answer.len()
        )?;
        stream.write_all(answer.as_bytes())?;
    }
}

fn answer(
    api: Api,
    ip: &str,
    elsewhere: Option<u16>,
    method: &str,
    path: &str,
    auth: &str,
) -> (&'static str, String, String) {
    let token = auth.split_whitespace().last().unwrap_or("");
    let here = ip == "127.0.0.1";
    match api {
        Api::Echo401 => {
            return (
                "401 Unauthorized",
                String::new(),
                serde_json::json!({
                    "message": format!("Bad credentials: you sent {auth:?}, token {token}"),
                    "documentation_url": "https://docs.github.com/rest"
                })
                .to_string(),
            )
        }
        Api::Echo500 => {
            return (
                "500 Internal Server Error",
                String::new(),
                format!(
                    "internal error for Authorization: {auth}\n::error::forged-by-server\r\n::add-mask::x %0A::warning::forged \x1b[2J\x1b]8;;http://evil.example\x07click\x1b]8;;\x07 \u{202e}token={token}"
                ),
            )
        }
        Api::Redirect if here => {
            return (
                "302 Found",
                format!(
                    "Location: http://127.0.0.2:{}{path}\r\n",
                    elsewhere.unwrap()
                ),
                serde_json::json!({ "message": format!("moved; you sent {auth}") }).to_string(),
            )
        }
        _ => {}
    }
    let comments = format!("/repos/{OWNER_REPO}/issues/7/comments");
    match method {
        "GET" if path == "/user" => (
            "403 Forbidden",
            String::new(),
            r#"{"message":"Resource not accessible by integration"}"#.into(),
        ),
        "GET" if path.starts_with(&comments) => {
            let link = match (api, elsewhere) {
                (Api::LinkElsewhere, Some(port)) if here => format!(
                    "Link: <http://127.0.0.2:{port}{comments}?per_page=100&page=2>; rel=\"next\"\r\n"
                ),
                _ => String::new(),
            };
            ("200 OK", link, "[]".into())
        }
        "POST" if path == comments => ("201 Created", String::new(), r#"{"id":1}"#.into()),
        "POST" if path == format!("/repos/{OWNER_REPO}/check-runs") => {
            ("201 Created", String::new(), r#"{"id":5}"#.into())
        }
        "PATCH" => ("200 OK", String::new(), r#"{"id":5}"#.into()),
        _ => (
            "404 Not Found",
            String::new(),
            r#"{"message":"Not Found"}"#.into(),
        ),
    }
}

// --- the Action's post step -----------------------------------------------------------------------

struct Job {
    dir: PathBuf,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    summary: String,
    outputs: String,
}

/// What the watcher would hand the post step for the fixture's trace: its verdict, computed by
/// the same function as the watcher's, with the job's context as pre would have sealed it.
fn sealed_session(dir: &Path, api_url: &str) -> guard::watcher::session::Session {
    use guard::watcher::session::{FileSeal, Lockdown, PullRequest, Session};
    let f = fixture();
    let guard_seal = FileSeal::of(Path::new(GUARD)).unwrap();
    let context = [
        ("GITHUB_WORKSPACE", f.ws.display().to_string()),
        ("GITHUB_REPOSITORY", OWNER_REPO.to_string()),
        ("GITHUB_API_URL", api_url.to_string()),
        ("GITHUB_JOB", "build".to_string()),
        ("RUNNER_TEMP", dir.join("temp").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Session {
        started: "2026-11-29T00:00:00.000000Z".into(),
        mode: "fail".into(),
        notes: Vec::new(),
        guard: guard_seal.clone(),
        recipes: Vec::new(),
        config: None,
        worker: 1,
        worker_starttime: 0,
        node: guard_seal,
        scripts_dir: dir.to_path_buf(),
        scripts: Vec::new(),
        follow_steps: false,
        code_env: BTreeMap::new(),
        api_env: BTreeMap::new(),
        context,
        pull_request: Some(PullRequest {
            number: 7,
            head_sha: HEAD_SHA.into(),
        }),
        sarif: Some(dir.join("results.sarif").display().to_string()),
        comment: true,
        check_run: true,
        lockdown: Lockdown::None,
        container_sockets: Vec::new(),
        user: 0,
        mounts: Vec::new(),
        channel: String::new(),
    }
}

/// Serves the verdict on `session` and `trace` on a channel of this process (root, as the
/// watcher is: the post step checks the peer's pid, start time and uid as it checks the
/// watcher's) for one request; returns the state pre would have saved for it.
fn serve_verdict(
    name: &str,
    session: &guard::watcher::session::Session,
    trace: &Path,
) -> Vec<(&'static str, String)> {
    use guard::watcher::message::Message;
    let message = guard::github::verdict::compute(&guard::watcher::VerdictInput {
        session,
        trace,
        last_seen: None,
        tampered: Vec::new(),
        notes: Vec::new(),
    });
    let channel = format!("webserver-exec-guard-test/{}/{name}", std::process::id());
    let listener = guard::watcher::channel::bind(&channel).unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = Vec::new();
        BufReader::new(&conn).read_until(b'\n', &mut line).unwrap();
        writeln!(conn, "{}", Message::Accepted.to_line()).unwrap();
        guard::watcher::channel::answer(&mut conn, &message);
    });
    let me = std::process::id();
    vec![
        ("STATE_started", "true".into()),
        ("STATE_channel", channel),
        ("STATE_watcher", me.to_string()),
        (
            "STATE_watcher_starttime",
            guard::watcher::starttime(me).unwrap().to_string(),
        ),
    ]
}

/// `guard action post` as the runner starts it, given the verdict on the fixture's trace by a
/// stand-in for the watcher; the runner's environment, the token in both the input and
/// `GITHUB_TOKEN`, a secret, and every debug switch we can think of.
fn post(name: &str, api_url: &str) -> Job {
    let f = fixture();
    let dir = f.base.join(format!("job-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("temp")).unwrap();
    let session = sealed_session(&dir, api_url);
    let state = serve_verdict(name, &session, &f.trace);
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        serde_json::json!({"number": 7, "pull_request": {"number": 7, "head": {"sha": HEAD_SHA}}})
            .to_string(),
    )
    .unwrap();
    let mut post = common::guard(["action", "post"]);
    for (k, v) in state {
        post = post.env(k, v);
    }
    let o = post
        .cwd(&f.ws)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &dir)
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_TEMP", dir.join("temp"))
        .env("GITHUB_WORKSPACE", &f.ws)
        .env("GITHUB_OUTPUT", dir.join("outputs"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("GITHUB_STATE", dir.join("state.env"))
        .env("GITHUB_ENV", dir.join("env"))
        .env("GITHUB_REPOSITORY", OWNER_REPO)
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_API_URL", api_url)
        .env("GITHUB_ACTION", "__org_webserver-exec-guard")
        .env("GITHUB_JOB", "build")
        .env("INPUT_MODE", "fail")
        .env("INPUT_SARIF", dir.join("results.sarif"))
        .env("INPUT_COMMENT", "true")
        .env("INPUT_CHECK-RUN", "true")
        .env("INPUT_GITHUB-TOKEN", TOKEN)
        .env("GITHUB_TOKEN", TOKEN)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "trace")
        .env("GUARD_LOG", "trace")
        .env("ACTIONS_STEP_DEBUG", "true")
        .env("RUNNER_DEBUG", "1")
        .run();
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_default();
    Job {
        code: o.code,
        stdout: String::from_utf8(o.stdout_bytes).expect("stdout is UTF-8"),
        stderr: o.stderr,
        summary: read("summary.md"),
        outputs: read("outputs"),
        dir,
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Neither the token nor the secret is in any of `texts` or in any file under `dir`.
fn assert_no_secret(texts: &[(&str, &[u8])], dir: &Path, what: &str) {
    let has = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let mut all: Vec<(String, Vec<u8>)> = texts
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_vec()))
        .collect();
    for p in files(dir) {
        all.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    assert!(all.len() > texts.len(), "{what}: no file written?");
    for (name, text) in &all {
        for needle in [TOKEN, TOKEN_CORE, SECRET] {
            assert!(!has(text, needle), "{what}: {needle:?} in {name}");
        }
    }
}

/// What every post step must say whatever happened to the pull request feedback: one error
/// annotation per (recipe, executable, step) at the script, the verdict; plus `warnings`.
fn assert_verdict_and_annotations(j: &Job, warnings: usize, what: &str) -> Vec<WorkflowCommand> {
    let f = fixture();
    let n = f.n();
    assert_eq!(j.code, Some(1), "{what}: {}\n{}", j.stdout, j.stderr);
    assert_terminal_inert(j.stderr.as_bytes(), &format!("{what}: stderr"));
    for (i, c) in j.stdout.char_indices() {
        assert!(
            c == '\n' || !is_hidden(c),
            "{what}: raw {c:?} on stdout: {}",
            context(&j.stdout, i)
        );
    }
    let cmds = runner_commands(&j.stdout, what);
    let errors: Vec<&WorkflowCommand> = cmds.iter().filter(|c| c.name == "error").collect();
    let warned = cmds.iter().filter(|c| c.name == "warning").count();
    assert_eq!(warned, warnings, "{what}: {cmds:#?}");
    assert_eq!(cmds.len(), errors.len() + warned, "{what}: {cmds:#?}");
    assert_eq!(
        errors.len(),
        4,
        "{what}: 3 annotations and the verdict: {cmds:#?}"
    );
    let verdict = errors.last().unwrap();
    assert!(verdict.props.is_empty());
    assert_eq!(
        verdict.data,
        format!(
            "webserver-exec-guard: {n} failing findings: see the annotations and the job summary"
        )
    );
    // The annotations: at the script, titled with the executable's name, each message giving
    // back the argv of its first finding and the step; together they count every finding.
    let mut counted = 0;
    let nginx_argv = &f.expected[0];
    let mut firsts = vec![nginx_argv.clone()];
    firsts.extend(f.expected[f.n() - 2..].iter().cloned());
    for (a, first) in errors[..3].iter().zip(&firsts) {
        assert_eq!(
            a.props.get("file").map(String::as_str),
            Some(f.rel_script().as_str()),
            "{what}"
        );
        assert_eq!(a.props.get("line").map(String::as_str), Some("1"));
        let exe = if first[0] == b"nginx" {
            b"nginx".to_vec()
        } else {
            first[0].rsplit(|&b| b == b'/').next().unwrap().to_vec()
        };
        assert_eq!(
            a.props.get("title"),
            Some(&format!("webserver_exec (high): {}", terminal(&exe))),
            "{what}"
        );
        let (shown, _) = shown_argv(first, usize::MAX);
        assert!(
            a.data.contains(&format!("\nargv: {shown}\n")),
            "{what}: argv {shown:?} in {:?}",
            a.data
        );
        assert!(a
            .data
            .contains(&format!("\nstep: {}\n", terminal(STEP.as_bytes()))));
        for (i, c) in a.data.char_indices() {
            assert!(
                c == '\n' || !is_hidden(c),
                "{what}: raw {c:?}: {}",
                context(&a.data, i)
            );
        }
        counted += a
            .data
            .lines()
            .find_map(|l| {
                l.strip_prefix("seen ")?
                    .strip_suffix(" times")?
                    .parse()
                    .ok()
            })
            .unwrap_or(1);
    }
    assert_eq!(counted, n, "{what}: findings covered by the annotations");
    cmds
}

/// The Markdown findings table of a summary: one row per finding, each argv cell giving back an
/// expected argv (whole, or the start of it when cut), the step cell the step.
fn assert_rows(rows: &[Vec<String>], f: &Fixture, what: &str) {
    assert_eq!(rows.len(), f.n(), "{what}: table rows");
    let mut matched = vec![0usize; f.n()];
    for row in rows {
        let shown = unmarkdown(&row[2]);
        let (text, cut) = match shown.strip_suffix(" …") {
            Some(t) => (t.to_string(), true),
            None => (shown.clone(), false),
        };
        for (k, argv) in f.expected.iter().enumerate() {
            let (whole, _) = shown_argv(argv, usize::MAX);
            if (!cut && whole == text) || (cut && whole.starts_with(&text)) {
                matched[k] += 1;
            }
        }
        assert_eq!(
            unmarkdown(&row[3]),
            terminal(STEP.as_bytes()),
            "{what}: step"
        );
    }
    for (k, m) in matched.iter().enumerate() {
        assert_eq!(*m, 1, "{what}: argv {} in {m} rows", show(&f.expected[k]));
    }
    // The renamed copies: their executable cell gives the path back (invalid UTF-8 included).
    for name in exe_names() {
        let shown = terminal(f.base.join("bin").join(os(&name)).as_os_str().as_bytes());
        let rows_with = rows
            .iter()
            .filter(|r| unmarkdown(&r[1]) == format!("**webserver_exec**<br>{shown}"))
            .count();
        assert_eq!(rows_with, 1, "{what}: the executable {shown}");
    }
}

#[test]
fn action_post_commands_summary_comment_check_run_and_sarif_are_inert() {
    let f = fixture();
    let n = f.n();
    let api = api_server("127.0.0.1", Api::Accept, None);
    let j = post("corpus", &api.url());
    assert_verdict_and_annotations(&j, 0, "post");

    // The job summary.
    assert!(
        j.summary
            .contains(&format!("webserver-exec-guard: {n} failing findings")),
        "{}",
        j.summary
    );
    let rows = assert_markdown_inert(&j.summary, "summary");
    assert_rows(&rows, f, "summary");
    assert_eq!(
        j.summary.matches("<details>").count(),
        n + 2,
        "one per finding, two for the recipe"
    );

    // Outputs, the JSON report, SARIF.
    let outputs: BTreeMap<&str, &str> = j
        .outputs
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(
        outputs.get("findings"),
        Some(&n.to_string().as_str()),
        "{}",
        j.outputs
    );
    let report: Value = serde_json::from_slice(&std::fs::read(outputs["report"]).unwrap()).unwrap();
    assert_same_argvs(&report_argvs(&report), &f.expected, "the Action's report");
    let sarif: Value = serde_json::from_slice(&std::fs::read(outputs["sarif"]).unwrap()).unwrap();
    assert_sarif(&sarif, f, Some(&f.rel_script()), "the Action's SARIF");

    // The sticky comment and the check run, as the API received them.
    let requests = api.requests();
    let bodies = |method: &str, suffix: &str| -> Vec<Value> {
        requests
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    };
    let comments = bodies("POST", "/issues/7/comments");
    assert_eq!(comments.len(), 1, "{requests:#?}");
    let body = comments[0]["body"].as_str().unwrap();
    assert_eq!(
        body.matches(MARKER).count(),
        1,
        "the marker cannot be forged"
    );
    let rest = body.strip_prefix(MARKER).expect("the marker first");
    assert_rows(&assert_markdown_inert(rest, "comment"), f, "comment");

    let created = bodies("POST", "/check-runs");
    assert_eq!(created.len(), 1, "{requests:#?}");
    assert_eq!(created[0]["conclusion"], "failure");
    let output = &created[0]["output"];
    assert_rows(
        &assert_markdown_inert(output["summary"].as_str().unwrap(), "check run summary"),
        f,
        "check run summary",
    );
    let mut annotations: Vec<Value> = output["annotations"].as_array().unwrap().clone();
    for update in bodies("PATCH", "/check-runs/5") {
        annotations.extend(update["output"]["annotations"].as_array().unwrap().clone());
    }
    assert_eq!(annotations.len(), n, "one check run annotation per finding");
    for a in &annotations {
        assert_eq!(a["path"], f.rel_script().as_str());
        assert_eq!(a["annotation_level"], "failure");
        for field in ["title", "message"] {
            let text = a[field].as_str().unwrap();
            for (i, c) in text.char_indices() {
                assert!(
                    c == '\n' || !is_hidden(c),
                    "check run {field}: {}",
                    context(text, i)
                );
            }
        }
    }
    // The token went to the API, in the header only.
    assert!(requests.iter().all(|r| r
        .headers
        .contains(&("authorization".into(), format!("Bearer {TOKEN}")))));
    assert_no_secret(
        &[
            ("stdout", j.stdout.as_bytes()),
            ("stderr", j.stderr.as_bytes()),
        ],
        &j.dir,
        "post",
    );
    for r in &requests {
        assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN_CORE));
    }
}

// --- each string alone, through every reporter ------------------------------------------------------

/// A finding with `h` in every field a build controls.
fn finding_of(h: &[u8]) -> (Finding, Location) {
    let b = |x: &[u8]| Bytes(x.to_vec());
    let mut exe = b"/srv/".to_vec();
    exe.extend_from_slice(h);
    let lossy = String::from_utf8_lossy(h).into_owned();
    let finding = Finding {
        recipe: "webserver_exec".into(),
        name: "webserver_exec".into(),
        importance: Importance::High,
        allowed: None,
        allow_expired: None,
        evidence: vec![format!("name: exe /srv/{lossy} matches base nginx")],
        count: 1,
        blocked: false,
        attempt: None,
        process: Some(ProcessInfo {
            pid: 42,
            ppid: 41,
            exe: b(&exe),
            argv: vec![b(b"nginx"), b(h)],
            cwd: Some(b(h)),
            uid: 1000,
            script: Some(b(h)),
            time: "2026-11-29T00:00:00.000000Z".into(),
            step: Some(b(h)),
            container: Some(lossy.clone()),
            ancestry: vec![Ancestor {
                pid: 41,
                exe: b(b"/bin/sh"),
                argv: vec![b(b"sh"), b(b"-c"), b(h)],
            }],
        }),
    };
    let location = Location {
        path: format!("ci/{lossy}.sh"),
        line: 3,
    };
    (finding, location)
}

#[test]
fn every_reporter_on_each_hostile_string_alone() {
    let recipes = RecipeSet::builtin();
    let mut all = corpus();
    all.extend(exe_names());
    all.extend([ARGV0, WS_NAME, SCRIPT_NAME, INNER_NAME, STEP].map(|s| s.as_bytes().to_vec()));
    for h in &all {
        let what = format!("{:?}", String::from_utf8_lossy(&h[..h.len().min(60)]));
        let long = h.len() > 1000;
        let (finding, location) = finding_of(h);
        let argv = vec![b"nginx".to_vec(), h.clone()];
        let outcome = Outcome {
            stats: Stats::default(),
            findings: vec![finding],
            status: None,
            outlived: vec![],
        };
        let command = [Bytes(h.clone())];
        let run = Run {
            outcome: &outcome,
            recipes: &recipes,
            mode: Mode::Fail,
            command: Some(&command),
            integrity: None,
            notes: vec![],
            locations: vec![Some(location.clone())],
            workflow: None,
        };

        // Workflow commands: one annotation, its file, title and message given back.
        let mut out = Vec::new();
        guard::report::github::write(&run, &mut out).unwrap();
        let cmds = runner_commands(&String::from_utf8(out).unwrap(), &what);
        assert_eq!(cmds.len(), 1, "{what}: {cmds:#?}");
        let a = &cmds[0];
        assert_eq!(a.name, "error");
        assert_eq!(a.props["file"], location.path, "{what}");
        assert_eq!(a.props["line"], "3");
        let file_name = h.rsplit(|&b| b == b'/').next().unwrap();
        assert_eq!(
            a.props["title"],
            format!("webserver_exec (high): {}", terminal(file_name)),
            "{what}"
        );
        for (i, c) in a.data.char_indices() {
            assert!(
                c == '\n' || !is_hidden(c),
                "{what}: raw {c:?}: {}",
                context(&a.data, i)
            );
        }
        if long {
            assert!(
                a.data.ends_with(" …") && a.data.chars().count() <= 4002,
                "{what}"
            );
        } else {
            let visible = terminal(h);
            for line in [
                format!("argv: {}", shown_argv(&argv, usize::MAX).0),
                format!("step: {visible}"),
                format!(
                    "container: {}",
                    terminal(String::from_utf8_lossy(h).as_bytes())
                ),
                format!(
                    "parent: 41 {}",
                    terminal_argv(&bytes_argv(&[b"sh".to_vec(), b"-c".to_vec(), h.clone()]))
                ),
            ] {
                assert!(
                    a.data.lines().any(|l| l == line),
                    "{what}: {line:?} in {:?}",
                    a.data
                );
            }
        }

        // The summary and the comment.
        let md = guard::report::markdown::render(&run);
        let rows = assert_markdown_inert(&md, &what);
        assert_eq!(rows.len(), 1, "{what}");
        let (whole, _) = shown_argv(&argv, usize::MAX);
        let cell = unmarkdown(&rows[0][2]);
        match cell.strip_suffix(" …") {
            Some(start) => assert!(long && whole.starts_with(start), "{what}: {cell:?}"),
            None => assert_eq!(cell, whole, "{what}"),
        }
        let step = unmarkdown(&rows[0][3]);
        match step.strip_suffix(" …") {
            Some(start) => assert!(long && terminal(h).starts_with(start), "{what}"),
            None => assert_eq!(step, terminal(h), "{what}"),
        }
        let comment = guard::github::pr::comment_body(&md);
        assert_eq!(comment.matches(MARKER).count(), 1, "{what}");
        assert_markdown_inert(comment.strip_prefix(MARKER).unwrap(), &what);

        // The terminal.
        let mut out = Vec::new();
        guard::report::text::write(&run, &mut out, false).unwrap();
        assert_terminal_inert(&out, &what);
        let text = String::from_utf8(out).unwrap();
        let shown = text
            .lines()
            .find_map(|l| l.strip_prefix("  argv:      "))
            .unwrap();
        assert_eq!(
            decode_argv(shown).map(|a| a.iter().map(|w| c1_as_bytes(w)).collect::<Vec<_>>()),
            Some(argv.iter().map(|w| c1_as_bytes(w)).collect()),
            "{what}"
        );

        // SARIF.
        let mut out = Vec::new();
        guard::report::sarif::write_with(&run, None, &mut out).unwrap();
        let sarif: Value = serde_json::from_slice(&out).unwrap();
        let results = sarif["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{what}");
        let message = results[0]["message"]["text"].as_str().unwrap();
        for (i, c) in message.char_indices() {
            assert!(!is_hidden(c), "{what}: raw {c:?}: {}", context(message, i));
        }
        for (i, c) in unescaped(message) {
            assert!(c != '[' && c != ']', "{what}: {}", context(message, i));
        }
        let (shown, _) = shown_argv(&argv, 1000);
        assert!(message.contains(&sarif_text(&shown)), "{what}: {message:?}");
        let uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert_eq!(percent_decode(uri), location.path.as_bytes(), "{what}");

        // JSON: byte-exact.
        let mut out = Vec::new();
        guard::report::json::write(&run, &mut out).unwrap();
        let report: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(report["findings"].as_array().unwrap().len(), 1);
        assert_same_argvs(&report_argvs(&report), std::slice::from_ref(&argv), &what);
        let p = &report["findings"][0]["process"];
        for field in ["cwd", "step", "script"] {
            let b: Bytes = serde_json::from_value(p[field].clone()).unwrap();
            assert_eq!(&b.0, h, "{what}: {field}");
        }
    }
}

// --- secrets ------------------------------------------------------------------------------------

#[test]
fn no_secret_from_the_environment_is_recorded_or_printed() {
    let f = fixture();
    let json = check(&["--format", "json"]);
    let text = check(&[]);
    let sarif = check(&["--format", "sarif"]);
    // Only what this test and the fixture wrote (the jobs' directories are checked by theirs).
    let dir = f.base.join("own");
    std::fs::create_dir_all(&dir).unwrap();
    for p in [&f.trace, &f.base.join("r.json")] {
        std::fs::copy(p, dir.join(p.file_name().unwrap())).unwrap();
    }
    assert_no_secret(
        &[
            ("run stdout", &f.run.stdout_bytes),
            ("run stderr", &f.run.stderr_bytes),
            ("check json", &json.stdout_bytes),
            ("check text", &text.stdout_bytes),
            ("check sarif", &sarif.stdout_bytes),
            ("script", &std::fs::read(&f.script).unwrap()),
        ],
        &dir,
        "guard run and check",
    );
}

#[test]
fn the_token_never_leaks_whatever_the_api_answers() {
    let f = fixture();
    let elsewhere = api_server("127.0.0.2", Api::Accept, None);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let servers: Vec<(&str, Option<ApiServer>, String, usize)> = vec![
        (
            "echo-401",
            Some(api_server("127.0.0.1", Api::Echo401, None)),
            String::new(),
            2,
        ),
        (
            "echo-500",
            Some(api_server("127.0.0.1", Api::Echo500, None)),
            String::new(),
            2,
        ),
        (
            "redirect",
            Some(api_server("127.0.0.1", Api::Redirect, Some(elsewhere.port))),
            String::new(),
            2,
        ),
        (
            "next-page-elsewhere",
            Some(api_server(
                "127.0.0.1",
                Api::LinkElsewhere,
                Some(elsewhere.port),
            )),
            String::new(),
            0,
        ),
        ("refused", None, format!("http://127.0.0.1:{closed}"), 2),
        ("not-a-url", None, format!("::not a url:: {TOKEN}"), 2),
        (
            "token-in-url",
            None,
            format!("http://x-access-token:{TOKEN}@127.0.0.1:{closed}/api/v3"),
            2,
        ),
    ];
    let jobs: Vec<(&str, Option<&ApiServer>, usize, Job)> = std::thread::scope(|s| {
        let handles: Vec<_> = servers
            .iter()
            .map(|(name, server, url, warnings)| {
                let url = server.as_ref().map(ApiServer::url).unwrap_or(url.clone());
                (
                    *name,
                    server.as_ref(),
                    *warnings,
                    s.spawn(move || post(name, &url)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(n, srv, w, h)| (n, srv, w, h.join().unwrap()))
            .collect()
    });
    for (name, server, warnings, j) in &jobs {
        let what = format!("post against {name}");
        let cmds = assert_verdict_and_annotations(j, *warnings, &what);
        for w in cmds.iter().filter(|c| c.name == "warning") {
            assert!(
                w.data
                    .starts_with("webserver-exec-guard: pull request comment not posted")
                    || w.data
                        .starts_with("webserver-exec-guard: check run not created"),
                "{what}: {w:?}"
            );
        }
        assert_no_secret(
            &[
                ("stdout", j.stdout.as_bytes()),
                ("stderr", j.stderr.as_bytes()),
            ],
            &j.dir,
            &what,
        );
        assert_rows(&assert_markdown_inert(&j.summary, &what), f, &what);
        if let Some(server) = server {
            assert!(!server.requests().is_empty(), "{what}: the API was asked");
        }
    }
    // The other host never saw the token: not through a redirect (not followed), nor through a
    // next-page link (asked without it).
    let seen = elsewhere.requests();
    assert!(
        seen.iter().any(|r| r.path.contains("page=2")),
        "the next page on the other host was asked for: {seen:#?}"
    );
    for r in &seen {
        assert!(
            r.headers
                .iter()
                .all(|(k, v)| k != "authorization" && !v.contains(TOKEN_CORE)),
            "the token went to another host: {r:#?}"
        );
        assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN_CORE));
    }
}

// --- the Action with the host watcher -----------------------------------------------------------

/// The whole Action on a fake runner (as tests/action.rs does): `node dist/pre.js` starts the
/// watcher attached to the runner, a step with the hostile step id and a secret in its
/// environment runs the corpus, `main`, then `post` reports. Findings are told apart by their
/// step (the watcher sees the whole host).
#[test]
fn the_action_with_the_watcher_end_to_end() {
    let f = fixture(); // its execs are over before the watcher starts
    let api = api_server("127.0.0.1", Api::Accept, None);
    let dir = f.base.join("job-watcher");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("temp")).unwrap();
    let state = dir.join("state");
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        serde_json::json!({"number": 7, "pull_request": {"number": 7, "head": {"sha": HEAD_SHA}}})
            .to_string(),
    )
    .unwrap();
    let runner = dir.join("runner.sh");
    std::fs::write(
        &runner,
        r#"#!/bin/sh
cd "$GITHUB_WORKSPACE"
GITHUB_ACTION=__org_webserver-exec-guard node "$DIST/pre.js" > "$D/pre.out" 2> "$D/pre.err" || exit 90
GITHUB_ACTION=__org_webserver-exec-guard node "$DIST/main.js" > "$D/main.out" 2> "$D/main.err"
GITHUB_ACTION="$HOSTILE_STEP" sh "$OUTER" > /dev/null 2>&1
while IFS='=' read -r k v; do export "STATE_$k=$v"; done < "$GITHUB_STATE"
GITHUB_ACTION=__org_webserver-exec-guard node "$DIST/post.js" > "$D/post.out" 2> "$D/post.err"
echo $? > "$D/post.code"
"#,
    )
    .unwrap();
    let status = common::command("sh", [&runner])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &dir)
        .env("D", &dir)
        .env("DIST", Path::new(env!("CARGO_MANIFEST_DIR")).join("dist"))
        .env("OUTER", &f.script)
        .env("HOSTILE_STEP", STEP)
        // Inputs reach every step here (the runner gives them to ours only): in the
        // environment, never on a command line — the watcher records every argv.
        .env("INPUT_GITHUB-TOKEN", TOKEN)
        .env("INPUT_CHECK-RUN", "true")
        .env("GITHUB_TOKEN", TOKEN)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "trace")
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_TEMP", dir.join("temp"))
        .env("GITHUB_WORKSPACE", &f.ws)
        .env("GITHUB_STATE", dir.join("state.env"))
        .env("GITHUB_OUTPUT", dir.join("outputs"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("GITHUB_REPOSITORY", OWNER_REPO)
        .env("GITHUB_SHA", HEAD_SHA)
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_API_URL", api.url())
        .env("INPUT_MODE", "fail")
        .env("INPUT_REQUIRE", "true")
        // Every step followed with ptrace: the fixture's execs last microseconds, and only
        // ptrace records each one's argv without a race (the connector alone may find some
        // gone; see README, "Host watcher").
        .env("INPUT_PTRACE", "true")
        .env("WEBSERVER_EXEC_GUARD_BIN", GUARD)
        .env("GUARD_STATE_DIR", &state)
        .bound(Duration::from_secs(300))
        .run();
    if state.join("watcher.json").exists() {
        // post did not stop it: do not leave it running.
        let _ = common::guard(["stop", "--state-dir"]).arg(&state).run();
    }
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_default();
    assert!(status.code == Some(0), "pre: {}", read("pre.err"));
    assert_eq!(
        read("post.code").trim(),
        "1",
        "{}\n{}",
        read("post.out"),
        read("post.err")
    );
    for (out, err) in [("pre.out", "pre.err"), ("main.out", "main.err")] {
        assert_eq!(read(out), "", "{out}");
        assert_terminal_inert(read(err).as_bytes(), err);
    }
    assert_terminal_inert(read("post.err").as_bytes(), "post.err");

    // Our step's annotations: the same three as without the watcher.
    let stdout = read("post.out");
    for (i, c) in stdout.char_indices() {
        assert!(
            c == '\n' || !is_hidden(c),
            "raw {c:?}: {}",
            context(&stdout, i)
        );
    }
    let cmds = runner_commands(&stdout, "post with the watcher");
    let step_line = format!("\nstep: {}\n", terminal(STEP.as_bytes()));
    let ours: Vec<&WorkflowCommand> = cmds
        .iter()
        .filter(|c| c.data.contains(&step_line))
        .collect();
    assert_eq!(ours.len(), 3, "{cmds:#?}");
    for a in &ours {
        assert_eq!(a.name, "error");
        assert_eq!(a.props.get("file"), Some(&f.rel_script()));
    }
    // The report: one finding per hostile exec of our step, argv byte-exact.
    let outputs = read("outputs");
    let report_path = outputs
        .lines()
        .find_map(|l| l.strip_prefix("report="))
        .expect("report output");
    let mut report: Value = serde_json::from_slice(&std::fs::read(report_path).unwrap()).unwrap();
    let findings = report["findings"].as_array_mut().unwrap();
    findings.retain(|x| {
        serde_json::from_value::<Bytes>(x["process"]["step"].clone())
            .is_ok_and(|s| s.0 == STEP.as_bytes())
    });
    assert_same_argvs(&report_argvs(&report), &f.expected, "the watcher's report");
    // The summary and the comment: inert; our step's rows are all there.
    let summary = read("summary.md");
    let rows = assert_markdown_inert(&summary, "summary with the watcher");
    let step_cell = terminal(STEP.as_bytes());
    let ours = rows
        .iter()
        .filter(|r| unmarkdown(&r[3]) == step_cell)
        .count();
    assert_eq!(ours, f.n());
    let requests = api.requests();
    let comment = requests
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/issues/7/comments"))
        .expect("the comment");
    let body: Value = serde_json::from_slice(&comment.body).unwrap();
    let body = body["body"].as_str().unwrap();
    assert_markdown_inert(
        body.strip_prefix(MARKER).unwrap(),
        "comment with the watcher",
    );

    // No secret in any output or file, the state directory included; its modes.
    assert_no_secret(&[], &dir, "the Action with the watcher");
    for r in &requests {
        assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN_CORE));
    }
    assert_eq!(mode(&state), 0o700, "state directory");
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), 0, "root-owned");
    for file in ["trace.jsonl", "watcher.log"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
}
