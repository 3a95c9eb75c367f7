//! Hostile input, given to the real `guard` binary: malformed and malicious recipe files
//! (`guard recipes validate`, `guard run --recipes`), config files (`guard run --config`,
//! `guard check --config`) and traces (`guard check --trace`). For every case: the documented exit
//! status (validate and check 2, run 125 before the command runs — it would create a file), an
//! error naming the file with its line and column where there is one and quoting the offending
//! value, escaped (no raw control character reaches the terminal), no panic, and bounds: each
//! run is killed and failed after 20 s, and runs under an address-space limit (RLIMIT_AS) of
//! 1 GiB — 128 MiB for the cases that must not read a huge file — so that a blow-up fails as an
//! allocation error instead of eating the machine. `tests/properties.rs` fuzzes the same loaders
//! in-process; this is the deterministic corpus, end to end.

mod common;

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::{Out, TempDir};

/// Every run of guard is killed, and the test failed, after this long.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The address space guard may use (RLIMIT_AS).
const MEMORY: u64 = 1 << 30;
/// ... and for the cases that must refuse a huge file without reading it.
const SMALL_MEMORY: u64 = 128 << 20;

/// A temporary directory of this crate, removed when dropped (huge files included).
fn tempdir(name: &str) -> TempDir {
    TempDir::new(&format!("hostile-{name}"))
}

/// Runs guard in `dir` under the time and memory bounds.
fn guard_with(dir: &Path, args: &[&OsStr], memory: u64) -> Out {
    let o = common::guard(args)
        .cwd(dir)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTION")
        .bound(TIMEOUT)
        .memory_limit(memory)
        .run();
    if o.elapsed > Duration::from_millis(500) {
        eprintln!("slow: {}: {:?}", o.command, o.elapsed);
    }
    o
}

fn guard(dir: &Path, args: &[&str]) -> Out {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    guard_with(dir, &args, MEMORY)
}

/// Characters that change what a terminal shows: C0 (but the newline) and C1 controls, DEL,
/// bidirectional overrides and isolates.
fn dangerous(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

/// What holds for every run, whatever the input: it ended by itself (no signal: an allocation
/// failure aborts), did not panic, wrote a valid UTF-8 stderr without anything that drives a
/// terminal.
fn sane(o: &Out) {
    assert!(o.signal.is_none(), "killed by a signal: {o}");
    assert_ne!(o.code, Some(101), "panic status: {o}");
    assert!(!o.stderr.contains("panicked"), "panic: {o}");
    assert!(
        !o.stderr.contains("memory allocation of"),
        "allocation failure: {o}"
    );
    let text = std::str::from_utf8(&o.stderr_bytes)
        .unwrap_or_else(|e| panic!("stderr is not UTF-8 ({e}): {o}"));
    if let Some(c) = text.chars().find(|c| dangerous(*c)) {
        panic!("raw {c:?} on stderr: {o}");
    }
}

/// A leading decimal number, and the rest.
fn number(s: &str) -> Option<(usize, &str)> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    Some((s[..digits].parse().ok()?, &s[digits..]))
}

/// Where an error must be placed.
#[derive(Clone, Copy, Debug)]
enum Pos {
    /// `FILE: `: no position makes sense (I/O, an empty file).
    None,
    /// `FILE:LINE:COLUMN: `
    At(usize, usize),
    /// `FILE:LINE: ` (a trace line too long to parse).
    Line(usize),
    /// Some `FILE:LINE:COLUMN: `, wherever the expansion of aliases ran over.
    Any,
}

/// A refusal: `status`, a short stderr with `guard: error: FILE:LINE:COL: ` (or as `at` says)
/// and every needle.
fn refused(o: &Out, status: i32, file: &str, at: Pos, needles: &[&str]) {
    sane(o);
    assert_eq!(o.code, Some(status), "{o}");
    // A hostile value is quoted, not copied whole.
    assert!(
        o.stderr_bytes.len() < 4 << 10,
        "stderr of {} bytes: {o}",
        o.stderr_bytes.len()
    );
    let head = format!("guard: error: {file}:");
    let rest = match o.stderr.find(&head) {
        Some(i) => &o.stderr[i + head.len()..],
        None => panic!("want {head:?}: {o}"),
    };
    let found = match number(rest) {
        Some((line, after)) => match after.strip_prefix(':').and_then(number) {
            Some((column, after)) if after.starts_with(": ") => Some((line, Some(column))),
            _ if after.starts_with(": ") => Some((line, None)),
            _ => None,
        },
        None => None,
    };
    match (at, found) {
        (Pos::None, None) => assert!(rest.starts_with(' '), "{o}"),
        (Pos::At(l, c), Some((line, Some(column)))) => {
            assert_eq!((line, column), (l, c), "position: {o}")
        }
        (Pos::Line(l), Some((line, None))) => assert_eq!(line, l, "line: {o}"),
        (Pos::Any, Some((_, Some(_)))) => {}
        _ => panic!("want the position {at:?}: {o}"),
    }
    for needle in needles {
        assert!(o.stderr.contains(needle), "want {needle:?}: {o}");
    }
}

/// The head of a valid execution recipe (10 lines); cases add the rest.
const HEAD: &str = "- kind: k\n  name: k\n  version: 1.0\n  description: d\n  breed: file_access\n  mechanism: execution\n  tactic: none\n  technique: none\n  importance: high\n  file_actions: execve\n";

fn recipe(rest: &str) -> Vec<u8> {
    format!("{HEAD}{rest}").into_bytes()
}

/// A valid one-recipe file with `from` replaced by `to`.
fn edited(from: &str, to: &str) -> Vec<u8> {
    let text = format!("{HEAD}  bases: [{{base: x}}]\n");
    assert!(text.contains(from), "{from:?}");
    text.replace(from, to).into_bytes()
}

/// A recipe or config case: the file's text, where the error is and what it must say, or
/// (`accepted`) that the file loads.
struct Case {
    name: &'static str,
    text: Vec<u8>,
    at: Pos,
    needles: Vec<&'static str>,
    accepted: bool,
}

fn bad(name: &'static str, text: Vec<u8>, at: Pos, needles: &[&'static str]) -> Case {
    Case {
        name,
        text,
        at,
        needles: needles.to_vec(),
        accepted: false,
    }
}

fn good(name: &'static str, text: Vec<u8>) -> Case {
    Case {
        name,
        text,
        at: Pos::None,
        needles: Vec::new(),
        accepted: true,
    }
}

/// `n` times `item`, joined by `sep`.
fn repeat(item: &str, sep: &str, n: usize) -> String {
    vec![item; n].join(sep)
}

/// Deterministic bytes (xorshift), for binary files.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A billion laughs: 10 lists, each of 9 aliases of the one before (9^10 leaves), under
/// `prefix`.
fn laughs(prefix: &str, indent: &str) -> String {
    let mut s = format!("{prefix}\n{indent}- &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        s += &format!(
            "{indent}- &a{i} [{}]\n",
            repeat(&format!("*a{}", i - 1), ", ", 9)
        );
    }
    s
}

fn recipe_cases() -> Vec<Case> {
    let deep_block: String = repeat("- ", "", 100_000) + "x\n";
    vec![
        // Wrong types, at several depths.
        bad("type-1.yaml", edited("  name: k\n", "  name: [a, b]\n"), Pos::At(2, 9), &["[0].name: invalid type: sequence, expected a string"]),
        bad("type-2.yaml", recipe("  bases: [{base: x}]\n  times:\n    - kind: times_per_exe\n      max: lots\n"), Pos::At(14, 12), &["[0].times[0].max: invalid type: string \"lots\""]),
        bad("type-3.yaml", recipe("  bases: [{base: x}]\n  x-guard:\n    commands:\n      - name: c\n        exe: [{base: [p]}]\n        args: y\n"), Pos::At(15, 22), &["x-guard.commands[0].exe[0].base: invalid type: sequence"]),
        bad("type-4.yaml", recipe("  bases: [{base: x}]\n  arbitrary:\n    - how: AND\n      items:\n        - what: args\n          pattern: {a: b}\n"), Pos::At(16, 20), &["[0].arbitrary[0].items[0].pattern: invalid type: map, expected a regular expression"]),
        bad("type-enum.yaml", edited("importance: high", "importance: 7"), Pos::At(9, 15), &["[0].importance: unknown variant `7`"]),
        bad("huge-int.yaml", recipe("  bases: [{base: x}]\n  times:\n    - kind: times_per_exe\n      max: 99999999999999999999999\n"), Pos::At(14, 12), &["99999999999999999999999"]),
        // Unknown keys: ours are errors (only `x-guard` is ignored by a Jibril loader).
        bad("unknown-top.yaml", edited("  description: d\n", "  descripton: d\n"), Pos::At(4, 3), &["[0]: unknown field `descripton`"]),
        bad("unknown-base.yaml", recipe("  bases: [{base: x, bas: y}]\n"), Pos::At(11, 21), &["unknown field `bas`"]),
        bad("unknown-ext.yaml", recipe("  bases: [{base: x}]\n  x-guard:\n    explanaton: e\n"), Pos::At(13, 5), &["[0].x-guard: unknown field `explanaton`"]),
        bad("unknown-escape.yaml", recipe("  bases: [{base: x}]\n  \"\\e]0;owned\\a\\e[2J\": 1\n"), Pos::At(12, 3), &["unknown field `\\u{1b}]0;owned\\u{7}\\u{1b}[2J`"]),
        bad("bidi-value.yaml", edited("importance: high", "importance: \"\\u202Ehigh\""), Pos::At(9, 15), &["unknown variant `\\u{202e}high`"]),
        // Missing required fields, empty and odd documents.
        bad("missing.yaml", edited("- kind: k\n  name: k\n", "- name: k\n"), Pos::At(1, 3), &["[0]: missing field `kind`"]),
        bad("empty.yaml", Vec::new(), Pos::None, &["empty file: expected a YAML list of recipes"]),
        bad("comment.yaml", b"# nothing here\n".to_vec(), Pos::None, &["no recipe in this file"]),
        bad("empty-list.yaml", b"[]\n".to_vec(), Pos::None, &["no recipe in this file"]),
        bad("scalar.yaml", b"just a string\n".to_vec(), Pos::At(1, 1), &["invalid type: string \"just a string\", expected a sequence"]),
        bad("map.yaml", b"kind: k\nname: k\n".to_vec(), Pos::At(1, 1), &["invalid type: map, expected a sequence"]),
        bad("two-docs.yaml", [recipe("  bases: [{base: x}]\n"), b"---\n".to_vec(), recipe("  bases: [{base: y}]\n")].concat(), Pos::None, &["more than one document"]),
        bad("dup-key.yaml", recipe("  bases: [{base: x}]\n  name: again\n"), Pos::At(12, 3), &["[0]: duplicate field `name`"]),
        bad("dup-recipe.yaml", [recipe("  bases: [{base: x}]\n"), recipe("  bases: [{base: y}]\n")].concat(), Pos::At(13, 1), &["duplicate recipe name \"k\""]),
        // Encoding.
        bad("non-utf8-value.yaml", [recipe("  bases: [{base: x}]\n"), b"  documentation: caf\xe9\n".to_vec()].concat(), Pos::At(12, 21), &["invalid UTF-8 (byte 0xe9)"]),
        bad("non-utf8-key.yaml", [recipe("  bases: [{base: x}]\n"), b"  \xff\xfe: 1\n".to_vec()].concat(), Pos::At(12, 3), &["invalid UTF-8 (byte 0xff)"]),
        bad("utf16.yaml", b"\xff\xfe-\x00 \x00k\x00".to_vec(), Pos::At(1, 1), &["invalid UTF-8 (byte 0xff)"]),
        bad("nul.yaml", [recipe("  bases: [{base: x}]\n"), b"  documentation: a\x00b\n".to_vec()].concat(), Pos::At(12, 19), &["control characters are not allowed (byte 0x00)"]),
        good("bom.yaml", [b"\xef\xbb\xbf".to_vec(), recipe("  bases: [{base: x}]\n")].concat()),
        good("crlf.yaml", edited("\n", "\r\n")),
        bad("tabs.yaml", recipe("  bases:\n\t- base: x\n"), Pos::At(12, 1), &["found character that cannot start any token"]),
        // Regexes: invalid, compiled size explosion, over the file's budget (also through an
        // alias repeated 10,000 times).
        bad("regex-invalid.yaml", recipe("  bases:\n    - regex: '(unclosed'\n"), Pos::At(12, 14), &["[0].bases[0].regex: invalid regex \"(unclosed\""]),
        bad("regex-size.yaml", recipe("  bases:\n    - regex: '\\w{1000}{1000}'\n"), Pos::At(12, 14), &["invalid regex \"\\\\w{1000}{1000}\"", "exceeds size limit"]),
        bad("regex-args.yaml", recipe("  bases: [{base: x}]\n  x-guard:\n    commands:\n      - name: c\n        exe: [{base: p}]\n        args: 'a{2000}{2000}'\n"), Pos::At(16, 15), &["x-guard.commands[0].args: invalid regex \"a{2000}{2000}\""]),
        bad("regex-budget.yaml", recipe(&format!("  bases:\n{}", (0..40).map(|i| format!("    - regex: '.{{{}}}'\n", 5000 + i)).collect::<String>())), Pos::At(44, 14), &["[0].bases[32].regex: regex \".{5032}\" is over the budget"]),
        bad("regex-alias.yaml", recipe(&format!("  bases:\n    - &m {{regex: '^nginx$'}}\n{}", repeat("    - *m\n", "", 10_000))), Pos::At(12, 18), &["[0].bases[8192].regex: regex \"^nginx$\" is over the budget"]),
        // Deep nesting: flow and block.
        bad("deep-flow-seq.yaml", repeat("[", "", 100_000).into_bytes(), Pos::At(1, 129), &["nested more than 128 levels deep"]),
        bad("deep-flow-map.yaml", repeat("{", "", 100_000).into_bytes(), Pos::At(1, 129), &["nested more than 128 levels deep"]),
        bad("deep-flow-closed.yaml", recipe(&format!("  bases: [{{base: x}}]\n  reactions: {}{}\n", repeat("[", "", 100_000), repeat("]", "", 100_000))), Pos::At(12, 142), &["flow collections ('[' and '{') nested more than 128 levels deep"]),
        bad("deep-flow-after-quote.yaml", recipe(&format!("  bases: [{{base: x}}]\n  documentation: '[[ ]]]'\n  reactions: {}{}\n", repeat("[", "", 200), repeat("]", "", 200))), Pos::At(13, 142), &["nested more than 128 levels deep"]),
        bad("deep-flow-quoted.yaml", recipe(&format!("  bases: [{{base: x}}]\n  reactions: {}\n", repeat("[ '}' ", "", 20_000))), Pos::At(12, 782), &["nested more than 128 levels deep"]),
        bad("deep-block.yaml", deep_block.into_bytes(), Pos::At(1, 257), &["nested more than 128 levels deep (recursion limit exceeded)"]),
        // Alias bombs: a billion laughs where any value is accepted, where a string is
        // expected, at the top; a wide one (100,000 aliases of a 10,000-item list); recipes
        // aliased 200,000 times.
        bad("laughs-value.yaml", recipe(&laughs("  bases: [{base: x}]\n  reactions:", "    ")), Pos::At(14, 12), &["aliases are expanded too many times", "first alias \"a0\""]),
        bad("laughs-string.yaml", recipe(&(laughs("  bases: [{base: x}]\n  reactions:", "    ") + "  documentation: *a9\n")), Pos::At(14, 12), &["aliases are expanded too many times"]),
        bad("laughs-top.yaml", laughs("# a list of lists", "").into_bytes(), Pos::At(3, 8), &["aliases are expanded too many times"]),
        bad("alias-wide.yaml", recipe(&format!("  bases: [{{base: x}}]\n  reactions:\n    - &big [{}]\n    - [{}]\n", repeat("x", ",", 10_000), repeat("*big", ",", 200_000))), Pos::Any, &["more than 250000 nodes once its aliases are expanded"]),
        bad("alias-recipes.yaml", [String::from_utf8(recipe(&format!("  bases: [{}]\n", (0..20_000).map(|i| format!("{{base: b{i}}}")).collect::<Vec<_>>().join(",")))).unwrap().replacen("- kind: k", "- &r\n  kind: k", 1).into_bytes(), repeat("- *r\n", "", 200_000).into_bytes()].concat(), Pos::Any, &["more than 250000 nodes"]),
        bad("alias-unknown.yaml", recipe("  bases: [{base: x}]\n  documentation: *nowhere\n"), Pos::At(12, 18), &["unknown anchor"]),
        // One long line below the size limit: the error quotes the value, cut short.
        bad("long-value.yaml", format!("- {}\n", repeat("a", "", 3 << 20)).into_bytes(), Pos::At(1, 3), &["invalid type: string \"aaaa", "more bytes)"]),
    ]
}

/// Every recipe case through `guard recipes validate` (2) and `guard run --recipes` (125, and
/// the command did not run).
#[test]
fn hostile_recipe_files() {
    let dir = tempdir("recipes");
    let marker = dir.join("ran");
    let cases = recipe_cases();
    let mut failed = Vec::new();
    for case in &cases {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            recipe_case(&dir, &marker, case)
        }));
        if ok.is_err() {
            failed.push(case.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed: {failed:?}",
        failed.len(),
        cases.len()
    );
}

fn recipe_case(dir: &TempDir, marker: &Path, case: &Case) {
    {
        dir.write(case.name, &case.text);
        let _ = std::fs::remove_file(marker);
        let validate = guard(dir.path(), &["recipes", "validate", case.name]);
        let run = guard(
            dir.path(),
            &["run", "--recipes", case.name, "--", "touch", "ran"],
        );
        if case.accepted {
            sane(&validate);
            assert_eq!(validate.code, Some(0), "{validate}");
            assert!(
                validate
                    .stdout
                    .starts_with(&format!("ok: {}: k", case.name)),
                "{validate}"
            );
            sane(&run);
            assert_eq!(run.code, Some(0), "{run}");
            assert!(marker.exists(), "the command did not run: {run}");
        } else {
            refused(&validate, 2, case.name, case.at, &case.needles);
            refused(&run, 125, case.name, case.at, &case.needles);
            assert!(!marker.exists(), "the command ran: {run}");
        }
        std::fs::remove_file(dir.join(case.name)).unwrap();
    }
}

/// Writes `size` bytes made of `unit` repeated (cut at the end), without holding them.
fn write_big(path: &Path, unit: &[u8], size: usize) {
    let mut chunk = Vec::with_capacity((1 << 20) + unit.len());
    while chunk.len() < 1 << 20 {
        chunk.extend_from_slice(unit);
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Files a recipe or config path may name that are not small regular files: each refused by
/// `args(path)` with `status`, before the command runs, without reading a huge file (under a
/// 128 MiB address space) and without waiting on a FIFO. `kind`: "recipe file", "config file".
fn special_files(dir: &TempDir, kind: &str, status: i32, args: &dyn Fn(&str) -> Vec<String>) {
    let marker = dir.join("ran");
    let huge = dir.join("huge.yaml");
    let unit = format!("{HEAD}  bases: [{{base: x}}]\n").replace("name: k", "name: k0");
    write_big(&huge, unit.as_bytes(), 200 << 20);
    let line = dir.join("line.yaml");
    write_big(&line, b"a", 100 << 20);
    let fifo = dir.join("fifo.yaml");
    mkfifo(&fifo);
    let limit = |n: u64| format!("{n} bytes, larger than the 4 MiB limit for a {kind}");
    let device =
        format!("is a character device, not a regular file: a {kind} must be a regular file");
    let cases: Vec<(&str, String)> = vec![
        ("huge.yaml", limit(200 << 20)),
        ("line.yaml", limit(100 << 20)),
        ("/dev/zero", device.clone()),
        ("/dev/urandom", device),
        (
            "fifo.yaml",
            format!("is a FIFO, not a regular file: a {kind} must be a regular file"),
        ),
        ("missing.yaml", "No such file or directory".to_string()),
    ];
    for (path, needle) in &cases {
        let _ = std::fs::remove_file(&marker);
        let args = args(path);
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let o = guard_with(dir.path(), &args, SMALL_MEMORY);
        refused(&o, status, path, Pos::None, &[needle]);
        assert!(!marker.exists(), "the command ran: {o}");
    }
    for p in [huge, line, fifo] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn recipe_paths_that_are_not_small_regular_files() {
    let dir = tempdir("recipe-paths");
    special_files(&dir, "recipe file", 2, &|p| {
        vec!["recipes".into(), "validate".into(), p.into()]
    });
    special_files(&dir, "recipe file", 125, &|p| {
        ["run", "--recipes", p, "--", "touch", "ran"]
            .map(String::from)
            .to_vec()
    });

    // A directory without recipe files; a directory whose recipe file's name drives a
    // terminal (escaped); a directory entry that is a FIFO (an error, not skipped).
    std::fs::create_dir(dir.join("empty")).unwrap();
    let o = guard(dir.path(), &["recipes", "validate", "empty"]);
    refused(
        &o,
        2,
        "empty",
        Pos::None,
        &["holds no *.yaml or *.yml recipe file"],
    );
    let o = guard(
        dir.path(),
        &["run", "--recipes", "empty", "--", "touch", "ran"],
    );
    refused(
        &o,
        125,
        "empty",
        Pos::None,
        &["holds no *.yaml or *.yml recipe file"],
    );
    assert!(!dir.join("ran").exists());

    std::fs::create_dir(dir.join("evil")).unwrap();
    std::fs::write(
        dir.join("evil").join("\x1b]0;owned\x07\u{202e}.yaml"),
        recipe("  bases: [{base: x}]\n  colour: red\n"),
    )
    .unwrap();
    let o = guard(dir.path(), &["recipes", "validate", "evil"]);
    refused(
        &o,
        2,
        "evil/\\u{1b}]0;owned\\u{7}\\u{202e}.yaml",
        Pos::At(12, 3),
        &["unknown field `colour`"],
    );

    std::fs::create_dir(dir.join("withfifo")).unwrap();
    mkfifo(&dir.join("withfifo").join("a.yaml"));
    let o = guard(dir.path(), &["recipes", "validate", "withfifo"]);
    refused(
        &o,
        2,
        "withfifo/a.yaml",
        Pos::None,
        &["is a FIFO, not a regular file"],
    );
}

/// Regexes that take exponential time on a backtracking engine, against a 100,000-byte
/// argument: the `regex` crate is linear, so the live run finishes at once, with the right
/// verdict.
#[test]
fn catastrophic_regexes_run_in_linear_time() {
    let dir = tempdir("catastrophic");
    let long = repeat("a", "", 100_000);
    for (pattern, status) in [
        ("(a|aa)*b", 0),
        ("(a+)+$", 3),
        ("^(a|a?)+$", 3),
        ("(.*a){12}b", 0),
    ] {
        dir.write(
            "r.yaml",
            recipe(&format!(
                "  arbitrary:\n    - how: AND\n      items:\n        - what: args\n          pattern: '{pattern}'\n  bases: [{{base: true}}]\n"
            )),
        );
        let o = guard(
            dir.path(),
            &["run", "--recipes", "r.yaml", "--", "/bin/true", &long],
        );
        sane(&o);
        assert_eq!(o.code, Some(status), "{pattern}: {o}");
        assert_eq!(
            o.stderr.contains("FINDING k"),
            status == 3,
            "{pattern}: {o}"
        );
        assert!(
            o.elapsed < Duration::from_secs(10),
            "{pattern}: {:?}",
            o.elapsed
        );
    }
}

/// A valid allowlist entry.
const ENTRY: &str = "  - recipe: webserver_exec\n    base: nginx\n    reason: tests\n";

fn config(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn config_cases() -> Vec<Case> {
    vec![
        // Wrong types.
        bad("type-allow.yml", config("allow: yes\n"), Pos::At(1, 8), &["allow: invalid type: string \"yes\", expected a sequence"]),
        bad("type-entry.yml", config("allow: [1]\n"), Pos::At(1, 9), &["allow[0]: invalid type: integer `1`"]),
        bad("type-reason.yml", config("allow:\n  - recipe: w\n    base: nginx\n    reason: [a]\n"), Pos::At(4, 13), &["allow[0].reason: invalid type: sequence, expected a string"]),
        bad("type-version.yml", config("version: one\n"), Pos::At(1, 10), &["version: invalid type: string \"one\", expected the config version, 1"]),
        bad("version-2.yml", config("version: 2\n"), Pos::At(1, 10), &["version: config version 2 is not supported"]),
        bad("huge-int.yml", config("version: 123456789012345678901234567890\n"), Pos::At(1, 10), &["123456789012345678901234567890"]),
        bad("bad-date.yml", config(&format!("allow:\n{ENTRY}    expires: 2026-02-30\n")), Pos::At(5, 14), &["invalid date \"2026-02-30\""]),
        // Unknown keys: errors, naming the key (escaped).
        bad("unknown-top.yml", config(&format!("version: 1\nalow:\n{ENTRY}")), Pos::At(2, 1), &["unknown field `alow`"]),
        bad("unknown-entry.yml", config(&format!("allow:\n{ENTRY}    resaon: typo\n")), Pos::At(5, 5), &["allow[0]: unknown field `resaon`"]),
        bad("unknown-escape.yml", config("\"\\e[2J\\e]8;;http://x\\a\": 1\n"), Pos::At(1, 1), &["unknown field `\\u{1b}[2J\\u{1b}]8;;http://x\\u{7}`"]),
        // Missing fields, odd documents.
        bad("missing-reason.yml", config("allow:\n  - recipe: w\n    base: nginx\n"), Pos::At(2, 5), &["allow[0]: missing field `reason`"]),
        bad("scalar.yml", config("allowlist\n"), Pos::At(1, 1), &["invalid type: string \"allowlist\""]),
        bad("list.yml", config(ENTRY), Pos::At(1, 3), &["invalid type: sequence"]),
        bad("dup-key.yml", config(&format!("version: 1\nallow: []\nversion: 1\nallow:\n{ENTRY}")), Pos::At(3, 1), &["duplicate field `version`"]),
        bad("two-docs.yml", config("version: 1\n---\nversion: 1\n"), Pos::None, &["more than one document"]),
        good("empty.yml", Vec::new()),
        good("comment.yml", config("# allow nothing\n")),
        good("null.yml", config("~\n")),
        // Encoding.
        bad("non-utf8.yml", [b"allow:\n  - recipe: w\n    base: ngin\xc0x\n".to_vec()].concat(), Pos::At(3, 15), &["invalid UTF-8 (byte 0xc0)"]),
        bad("nul.yml", b"version: 1\x00\n".to_vec(), Pos::At(1, 11), &["control characters are not allowed (byte 0x00)"]),
        good("bom.yml", [b"\xef\xbb\xbf".to_vec(), config(&format!("version: 1\nallow:\n{ENTRY}"))].concat()),
        good("crlf.yml", config(&format!("version: 1\nallow:\n{ENTRY}").replace('\n', "\r\n"))),
        bad("tabs.yml", config("allow:\n\t- recipe: w\n"), Pos::At(2, 1), &["found character that cannot start any token"]),
        // Regexes.
        bad("regex-invalid.yml", config("allow:\n  - recipe: w\n    regex: 'a(b'\n    reason: r\n"), Pos::At(3, 12), &["allow[0].regex: invalid regex \"a(b\""]),
        bad("regex-size.yml", config("allow:\n  - recipe: w\n    base: nginx\n    argv: '(?:a{1000}){1000}'\n    reason: r\n"), Pos::At(4, 11), &["allow[0].argv: invalid regex", "exceeds size limit"]),
        // Nesting and aliases.
        bad("deep-flow.yml", config(&format!("allow: {}", repeat("[", "", 100_000))), Pos::At(1, 136), &["nested more than 128 levels deep"]),
        bad("deep-flow-closed.yml", config(&format!("x: {}{}\n", repeat("{a: ", "", 50_000), repeat("}", "", 50_000))), Pos::At(1, 516), &["nested more than 128 levels deep"]),
        bad("deep-block.yml", config(&(repeat("- ", "", 100_000) + "x\n")), Pos::At(1, 257), &["recursion limit exceeded"]),
        bad("laughs.yml", config(&laughs("allow:", "  ")), Pos::At(3, 10), &["aliases are expanded too many times", "first alias \"a0\""]),
        bad("alias-wide.yml", config(&format!("x: &big [{}]\ny: [{}]\n", repeat("x", ",", 10_000), repeat("*big", ",", 200_000))), Pos::Any, &["more than 250000 nodes"]),
        bad("long-value.yml", config(&format!("version: {}\n", repeat("9", "", 3 << 20))), Pos::At(1, 10), &["more bytes)"]),
    ]
}

/// Every config case through `guard run --config` (125, the command did not run) and
/// `guard check --config` (2).
#[test]
fn hostile_config_files() {
    let dir = tempdir("configs");
    let marker = dir.join("ran");
    // A real trace for `guard check`, clean.
    let o = guard(
        dir.path(),
        &["run", "--trace", "t.jsonl", "--", "/bin/true"],
    );
    assert_eq!(o.code, Some(0), "{o}");
    let o = guard(dir.path(), &["check", "--trace", "t.jsonl"]);
    assert_eq!(o.code, Some(0), "{o}");
    let cases = config_cases();
    let mut failed = Vec::new();
    for case in &cases {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dir.write(case.name, &case.text);
            let _ = std::fs::remove_file(&marker);
            let run = guard(
                dir.path(),
                &["run", "--config", case.name, "--", "touch", "ran"],
            );
            let check = guard(
                dir.path(),
                &["check", "--config", case.name, "--trace", "t.jsonl"],
            );
            if case.accepted {
                sane(&run);
                assert_eq!(run.code, Some(0), "{run}");
                assert!(marker.exists(), "the command did not run: {run}");
                sane(&check);
                assert_eq!(check.code, Some(0), "{check}");
            } else {
                refused(&run, 125, case.name, case.at, &case.needles);
                assert!(!marker.exists(), "the command ran: {run}");
                refused(&check, 2, case.name, case.at, &case.needles);
            }
            std::fs::remove_file(dir.join(case.name)).unwrap();
        }));
        if ok.is_err() {
            failed.push(case.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed: {failed:?}",
        failed.len(),
        cases.len()
    );
}

#[test]
fn config_paths_that_are_not_small_regular_files() {
    let dir = tempdir("config-paths");
    special_files(&dir, "config file", 125, &|p| {
        ["run", "--config", p, "--", "touch", "ran"]
            .map(String::from)
            .to_vec()
    });
    std::fs::create_dir(dir.join("dir.yml")).unwrap();
    let o = guard(
        dir.path(),
        &["run", "--config", "dir.yml", "--", "touch", "ran"],
    );
    refused(
        &o,
        125,
        "dir.yml",
        Pos::None,
        &["is a directory, not a regular file: a config file must be a regular file"],
    );
    assert!(!dir.join("ran").exists());
}

/// A trace case: the file's bytes (from the lines of a real, clean, sealed trace), and what
/// `guard check` must do with it.
struct TraceCase {
    name: &'static str,
    bytes: Vec<u8>,
    /// 2: refused as bad input, with `at` and `needles` on stderr; 3: read, and not clean
    /// (`needles` on stdout); 0: clean.
    status: i32,
    at: Pos,
    needles: Vec<String>,
}

fn trace_cases(lines: &[&str]) -> Vec<TraceCase> {
    let header = lines[0];
    let after_header = |line: &[u8]| [header.as_bytes(), b"\n", line, b"\n"].concat();
    let whole = lines.join("\n") + "\n";
    let records = lines[..lines.len() - 1].join("\n") + "\n";
    let case = |name, bytes, status, at, needles: &[&str]| TraceCase {
        name,
        bytes,
        status,
        at,
        needles: needles.iter().map(|n| n.to_string()).collect(),
    };
    vec![
        case("clean.jsonl", whole.clone().into_bytes(), 0, Pos::None, &["PASS"]),
        case("crlf.jsonl", whole.replace('\n', "\r\n").into_bytes(), 0, Pos::None, &["PASS"]),
        case("not-json.jsonl", after_header(b"hello world"), 2, Pos::At(2, 1), &["not a trace record: expected value, near \"hello world\""]),
        case("wrong-type.jsonl", after_header(br#"{"type":"exec","pid":"x"}"#), 2, Pos::At(2, 24), &["invalid type: string \"x\", expected u32"]),
        case("escapes.jsonl", after_header(br#"{"type":"\u001b]0;owned\u0007\u202e"}"#), 2, Pos::At(2, 36), &["unknown variant `\\u{1b}]0;owned\\u{7}\\u{202e}`"]),
        case("huge-float.jsonl", after_header(br#"{"type":"fork","seq":1,"time":"t","pid":1e999,"ppid":1,"source":"ptrace"}"#), 2, Pos::At(2, 45), &["number out of range"]),
        case("huge-int.jsonl", after_header(br#"{"type":"fork","seq":1,"time":"t","pid":99999999999999999999999,"ppid":1,"source":"ptrace"}"#), 2, Pos::At(2, 63), &["invalid type: floating point `1e+23`, expected u32"]),
        case("deep.jsonl", after_header(format!("{{\"type\":\"fork\",\"seq\":{}", repeat("[", "", 100_000)).as_bytes()), 2, Pos::At(2, 148), &["recursion limit exceeded"]),
        case("non-utf8.jsonl", after_header(b"{\"type\":\"fork\",\"seq\":1,\"time\":\"\xff\xfe\",\"pid\":1,\"ppid\":1,\"source\":\"ptrace\"}"), 2, Pos::At(2, 32), &["invalid unicode code point", "\\xff\\xfe"]),
        case("nul.jsonl", after_header(b"\x00\x00\x00"), 2, Pos::At(2, 1), &["expected value, near \"\\x00\\x00\\x00\""]),
        case("second-header.jsonl", after_header(header.as_bytes()), 2, Pos::At(2, 1), &["a second header"]),
        case("binary.jsonl", noise(100_000), 2, Pos::Line(1), &["not a webserver-exec-guard trace (the first line must be a header; it starts with \""]),
        case("empty.jsonl", Vec::new(), 2, Pos::Line(1), &["the file is empty"]),
        case("newer.jsonl", header.replace("\"format\":2", "\"format\":3").into_bytes(), 2, Pos::Line(1), &["trace format 3 is not supported"]),
        case("deep-header.jsonl", repeat("[", "", 100_000).into_bytes(), 2, Pos::Line(1), &["not a webserver-exec-guard trace"]),
        // Readable but not whole: never a clean verdict.
        case("header-only.jsonl", after_header(b""), 3, Pos::None, &["CRITICAL trace_incomplete"]),
        case("unsealed.jsonl", records.clone().into_bytes(), 3, Pos::None, &["CRITICAL trace_incomplete"]),
        case("torn.jsonl", records.as_bytes()[..records.len() - 10].to_vec(), 3, Pos::None, &["last line is torn"]),
        case("after-seal.jsonl", (whole.clone() + "\n{\"type\":\"exec\"}\n").into_bytes(), 3, Pos::None, &["data follows the seal at line"]),
    ]
}

/// Every trace case through `guard check --trace`.
#[test]
fn hostile_traces() {
    let dir = tempdir("traces");
    let o = guard(
        dir.path(),
        &["run", "--trace", "real.jsonl", "--", "/bin/true"],
    );
    assert_eq!(o.code, Some(0), "{o}");
    let real = std::fs::read_to_string(dir.join("real.jsonl")).unwrap();
    let lines: Vec<&str> = real.lines().collect();
    assert!(lines.len() >= 3 && lines[lines.len() - 1].starts_with("{\"type\":\"seal\""));
    let cases = trace_cases(&lines);
    let mut failed = Vec::new();
    for case in &cases {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dir.write(case.name, &case.bytes);
            let o = guard(dir.path(), &["check", "--trace", case.name]);
            let needles: Vec<&str> = case.needles.iter().map(String::as_str).collect();
            match case.status {
                2 => refused(&o, 2, case.name, case.at, &needles),
                status => {
                    sane(&o);
                    assert_eq!(o.code, Some(status), "{o}");
                    for n in &needles {
                        assert!(o.stdout.contains(n), "want {n:?}: {o}");
                    }
                }
            }
            std::fs::remove_file(dir.join(case.name)).unwrap();
        }));
        if ok.is_err() {
            failed.push(case.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed: {failed:?}",
        failed.len(),
        cases.len()
    );

    // Files that are not small regular ones: refused at once, or read within bounds (the
    // 100 MiB lines hold at most 64 MiB in memory), never blocking on a FIFO.
    let header_then_line = dir.join("long-line.jsonl");
    {
        let mut f = std::fs::File::create(&header_then_line).unwrap();
        writeln!(f, "{}", lines[0]).unwrap();
    }
    let long = dir.join("long.tmp");
    write_big(&long, b"x", 100 << 20);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&header_then_line)
        .unwrap();
    std::io::copy(&mut std::fs::File::open(&long).unwrap(), &mut f).unwrap();
    drop(f);
    std::fs::rename(&long, dir.join("long-first.jsonl")).unwrap();
    mkfifo(&dir.join("fifo.jsonl"));
    std::fs::create_dir(dir.join("dir.jsonl")).unwrap();
    let device = "is a character device, not a regular file: a trace must be a regular file";
    let cases: &[(&str, Pos, &str)] = &[
        (
            "long-line.jsonl",
            Pos::Line(2),
            "line longer than the 64 MiB limit for a trace line",
        ),
        (
            "long-first.jsonl",
            Pos::Line(1),
            "line longer than the 64 MiB limit for a trace line",
        ),
        ("/dev/zero", Pos::None, device),
        ("/dev/urandom", Pos::None, device),
        ("fifo.jsonl", Pos::None, "is a FIFO, not a regular file"),
        ("dir.jsonl", Pos::None, "is a directory, not a regular file"),
        ("missing.jsonl", Pos::None, "No such file or directory"),
    ];
    for (path, at, needle) in cases {
        let o = guard(dir.path(), &["check", "--trace", path]);
        refused(&o, 2, path, *at, &[needle]);
    }
}
