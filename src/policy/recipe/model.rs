//! The recipe model: Jibril's recipe format plus our `x-guard` extension, validated while it is
//! deserialised so that every error carries the file, line and column of the offending value.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// How important a detection is. Ordered: `Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    Low,
    Medium,
    High,
    Critical,
}

impl fmt::Display for Importance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Importance::Low => "low",
            Importance::Medium => "medium",
            Importance::High => "high",
            Importance::Critical => "critical",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breed {
    FileAccess,
    Execution,
    RemoteDomains,
    RemoteIps,
    LocalDomains,
    LocalIps,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    FileAccess,
    Execution,
    NetworkPeers,
    Baseline,
}

/// `any` / `all` (for `file_actions_how`) — and `AND` / `OR` for `arbitrary.how`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    #[serde(rename = "any", alias = "OR", alias = "or")]
    Any,
    #[serde(rename = "all", alias = "AND", alias = "and")]
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    Pertinent,
    Irrelevant,
}

/// The scope of a `times` limit: at most `max` findings per distinct value of the scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimesKind {
    TimesPerProc,
    TimesPerExe,
    TimesPerCmd,
    TimesPerParentProc,
    TimesPerParentExe,
    TimesPerFullAncestry,
    TimesPerHostname,
    TimesPerHost,
    TimesInTotal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimesLimit {
    pub kind: TimesKind,
    /// At least 1: a limit folds repeats into a finding, it never hides the first one.
    #[serde(deserialize_with = "positive")]
    pub max: u64,
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number of at least 1")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
            if n == 0 {
                return Err(E::custom("`max` must be at least 1 (got 0)"));
            }
            Ok(n)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n)
                .map_err(|_| E::custom(format!("`max` must be at least 1 (got {n})")))
                .and_then(|n| self.visit_u64(n))
        }
    }
    d.deserialize_u64(V)
}

/// A regular expression (Rust's `regex`: linear time, no backtracking), matched on bytes as an
/// unanchored search — as Jibril's recipes expect; anchor with `^`/`$` where needed. Classes
/// are ASCII (`\w`, `\d`), and `.` matches any byte but a newline. One compiles to at most
/// [`REGEX_SIZE_LIMIT`]; while a file loads ([`with_regex_budget`]) its regexes together stay
/// within [`REGEX_FILE_BUDGET`], and a pattern repeated (or reached again through an alias) is
/// compiled once.
#[derive(Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: regex::bytes::Regex,
}

/// The compiled size one regex may have (and its lazy DFA's cache).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What the compiled regexes of one file may take together. Each counts the smallest of
/// [`REGEX_TIERS`] it compiles within, an estimate from above, and a pattern used again (not
/// compiled again) counts the smallest: at most 8,192 regexes of a few KiB (the usual size), or
/// 32 near [`REGEX_SIZE_LIMIT`]; this also bounds the time spent compiling them (tens of
/// milliseconds each at that size).
pub const REGEX_FILE_BUDGET: usize = 32 << 20;

/// The sizes a compiled regex is counted at (see [`REGEX_FILE_BUDGET`]).
pub const REGEX_TIERS: [usize; 3] = [4 << 10, 64 << 10, REGEX_SIZE_LIMIT];

struct RegexScope {
    left: usize,
    compiled: std::collections::HashMap<String, regex::bytes::Regex>,
}

thread_local! {
    static REGEX_SCOPE: std::cell::RefCell<Option<RegexScope>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (the loading of one file) with a fresh [`REGEX_FILE_BUDGET`] for the patterns it
/// compiles.
pub fn with_regex_budget<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(Option<RegexScope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            REGEX_SCOPE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let fresh = RegexScope {
        left: REGEX_FILE_BUDGET,
        compiled: std::collections::HashMap::new(),
    };
    let _restore = Restore(REGEX_SCOPE.with(|s| s.borrow_mut().replace(fresh)));
    f()
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        let pattern = |regex| Pattern {
            source: source.to_string(),
            regex,
        };
        // A pattern seen before in this file is not compiled again; its copy (its own match
        // cache) still counts the smallest tier.
        let seen = REGEX_SCOPE.with(|s| match s.borrow_mut().as_mut() {
            Some(scope) => match scope.compiled.get(source) {
                Some(_) if scope.left < REGEX_TIERS[0] => Some(None),
                Some(regex) => {
                    scope.left -= REGEX_TIERS[0];
                    Some(Some(regex.clone()))
                }
                None => None,
            },
            None => None,
        });
        match seen {
            Some(Some(regex)) => return Ok(pattern(regex)),
            Some(None) => return Err(over_budget(source)),
            None => {}
        }
        let mut compiled = None;
        for tier in REGEX_TIERS {
            let built = regex::bytes::RegexBuilder::new(source)
                // Arguments and paths are bytes: `.` and `[^ ]` must match any byte, invalid
                // UTF-8 included, or a single 0xff byte would slip past a pattern.
                .unicode(false)
                .size_limit(tier)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build();
            match built {
                Ok(regex) => {
                    compiled = Some((regex, tier));
                    break;
                }
                Err(regex::Error::CompiledTooBig(_)) if tier < REGEX_SIZE_LIMIT => {}
                Err(e) => {
                    return Err(format!(
                        "invalid regex {source:?}: {}",
                        one_line(&e.to_string())
                    ))
                }
            }
        }
        let Some((regex, cost)) = compiled else {
            return Err(format!("invalid regex {source:?}"));
        };
        let within = REGEX_SCOPE.with(|s| match s.borrow_mut().as_mut() {
            Some(scope) if cost > scope.left => false,
            Some(scope) => {
                scope.left -= cost;
                scope.compiled.insert(source.to_string(), regex.clone());
                true
            }
            None => true,
        });
        if !within {
            return Err(over_budget(source));
        }
        Ok(pattern(regex))
    }

    pub fn is_match(&self, hay: &[u8]) -> bool {
        self.regex.is_match(hay)
    }
}

fn over_budget(source: &str) -> String {
    format!(
        "regex {source:?} is over the budget: the regexes of one file may take at most {} MiB together (each counts at least {} KiB)",
        REGEX_FILE_BUDGET >> 20,
        REGEX_TIERS[0] >> 10
    )
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Deserialises a string and validates it inside the visitor, so that the YAML deserialiser
/// attaches the position of the offending scalar itself to the error.
pub fn deserialize_str_with<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<'de, T> de::Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V { expecting, parse })
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str_with(d, "a regular expression", Pattern::new)
    }
}

/// A path matcher from `bases`: every field given must hold (`base` = file name, `dir` = the
/// directory, `regex` = searched in the whole path).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawPathMatcher")]
pub struct PathMatcher {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<Pattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathMatcher {
    #[serde(default, deserialize_with = "file_name")]
    base: Option<String>,
    #[serde(default, deserialize_with = "abs_dir")]
    dir: Option<String>,
    regex: Option<Pattern>,
}

fn file_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    deserialize_str_with(d, "a file name", |base| {
        if base.is_empty() || base.contains('/') {
            return Err(format!("`base` is a file name without '/': got {base:?}"));
        }
        Ok(Some(base.to_string()))
    })
}

fn abs_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    deserialize_str_with(d, "an absolute directory", |dir| {
        if !dir.starts_with('/') {
            return Err(format!("`dir` must be an absolute directory: got {dir:?}"));
        }
        Ok(Some(dir.to_string()))
    })
}

impl TryFrom<RawPathMatcher> for PathMatcher {
    type Error = String;
    fn try_from(r: RawPathMatcher) -> Result<Self, String> {
        if r.base.is_none() && r.dir.is_none() && r.regex.is_none() {
            return Err("a path matcher needs at least one of `base`, `dir`, `regex`".into());
        }
        let dir = r.dir.map(|d| {
            if d.len() > 1 {
                d.trim_end_matches('/').to_string()
            } else {
                d
            }
        });
        Ok(PathMatcher {
            base: r.base,
            dir,
            regex: r.regex,
        })
    }
}

impl PathMatcher {
    pub fn matches(&self, path: &crate::event::Bytes) -> bool {
        self.matches_split(path, path.file_name())
    }

    /// [`PathMatcher::matches`] with the path's file name computed once by the caller.
    pub fn matches_split(&self, path: &crate::event::Bytes, file_name: &[u8]) -> bool {
        if let Some(base) = &self.base {
            if file_name != base.as_bytes() {
                return false;
            }
        }
        if let Some(dir) = &self.dir {
            if path.dir() != Some(dir.as_bytes()) {
                return false;
            }
        }
        if let Some(re) = &self.regex {
            if !re.is_match(path.as_bytes()) {
                return false;
            }
        }
        true
    }
}

impl fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = &self.base {
            parts.push(format!("base {b}"));
        }
        if let Some(d) = &self.dir {
            parts.push(format!("dir {d}"));
        }
        if let Some(r) = &self.regex {
            parts.push(format!("regex {}", r.source));
        }
        f.write_str(&parts.join(", "))
    }
}

/// What an `arbitrary` item looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Exe,
    Comm,
    Cmd,
    Args,
    Uid,
    Pid,
    ParentPid,
    ParentExe,
    ParentComm,
    ParentCmd,
    ParentArgs,
    /// Any ancestor up to the traced root.
    AncientExe,
    AncientCmd,
    AncientArgs,
    TaskOrParentExe,
    TaskOrParentComm,
    TaskOrParentCmd,
    TaskOrParentArgs,
}

impl What {
    pub fn is_numeric(self) -> bool {
        matches!(self, What::Uid | What::Pid | What::ParentPid)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Smaller,
    Bigger,
    Equal,
}

/// The test of one `arbitrary` item.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    Pattern(Pattern),
    Number(i64, When),
    Numbers(Vec<i64>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawItem")]
pub struct Item {
    pub what: What,
    pub which: Which,
    pub test: Test,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    what: What,
    #[serde(default = "pertinent")]
    which: Which,
    pattern: Option<Pattern>,
    number: Option<i64>,
    numbers: Option<Vec<i64>>,
    time: Option<serde_norway::Value>,
    cidr: Option<serde_norway::Value>,
    when: Option<When>,
}

fn pertinent() -> Which {
    Which::Pertinent
}

impl TryFrom<RawItem> for Item {
    type Error = String;
    fn try_from(r: RawItem) -> Result<Self, String> {
        if r.time.is_some() || r.cidr.is_some() {
            return Err(format!(
                "`time` and `cidr` items need process times or network flows, which exec events do not carry (what: {:?})",
                r.what
            ));
        }
        let given = [r.pattern.is_some(), r.number.is_some(), r.numbers.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(
                "an arbitrary item needs exactly one of `pattern`, `number`, `numbers`".into(),
            );
        }
        let test = if let Some(p) = r.pattern {
            Test::Pattern(p)
        } else if let Some(n) = r.number {
            Test::Number(n, r.when.unwrap_or(When::Equal))
        } else {
            Test::Numbers(r.numbers.unwrap_or_default())
        };
        if matches!(test, Test::Number(..) | Test::Numbers(_)) && !r.what.is_numeric() {
            return Err(
                format!("`{:?}` is text: use `pattern`, not a number", r.what).to_lowercase(),
            );
        }
        Ok(Item {
            what: r.what,
            which: r.which,
            test,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArbitraryGroup {
    pub how: How,
    #[serde(default = "pertinent")]
    pub which: Which,
    pub items: Vec<Item>,
}

/// `file_actions`: a string (`execve`, or `open|mmap|execve`) or a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileActions(pub Vec<String>);

const FILE_ACTIONS: &[&str] = &[
    "open",
    "read",
    "write",
    "exec",
    "execve",
    "mmap",
    "unlink",
    "rename",
    "link",
    "truncate",
    "create",
    "chmod",
    "chown",
    "setattr",
    "close",
    "any",
    "open_related",
    "read_related",
    "modify_related",
    "access_related",
    "access_no_mmap_related",
    "tamper_related",
    "sync",
];

fn file_action_list(s: &str) -> Result<Vec<String>, String> {
    s.split('|')
        .map(|a| {
            let a = a.trim();
            if FILE_ACTIONS.contains(&a) {
                Ok(a.to_string())
            } else {
                Err(format!(
                    "unknown file action {a:?} (known: {})",
                    FILE_ACTIONS.join(", ")
                ))
            }
        })
        .collect()
}

/// One element of a `file_actions` list, validated where it stands.
struct FileActionItem(Vec<String>);

impl<'de> Deserialize<'de> for FileActionItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str_with(d, "a file action", |s| {
            file_action_list(s).map(FileActionItem)
        })
    }
}

impl<'de> Deserialize<'de> for FileActions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = FileActions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a file action (`execve`, `open|execve`) or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileActions, E> {
                file_action_list(v).map(FileActions).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<FileActions, A::Error> {
                let mut all = Vec::new();
                while let Some(FileActionItem(mut a)) = seq.next_element()? {
                    all.append(&mut a);
                }
                Ok(FileActions(all))
            }
        }
        d.deserialize_any(V)
    }
}

impl FileActions {
    pub fn includes_exec(&self) -> bool {
        self.0
            .iter()
            .any(|a| a == "execve" || a == "exec" || a == "any")
    }
}

/// A command matched by its arguments as well as its program (interpreters, multi-call
/// binaries). The program is recognised by its path (`exe`: one of the exec's paths matches) or
/// by its content (`content`: the executed file matched one of these fingerprints); then every
/// argument test given must hold: `args` on the arguments after argv\[0\] joined by single
/// spaces, `argv0` on argv\[0\] itself (which a multi-call binary such as busybox uses to choose
/// what to run), and `argv` on the command line read the way the program itself reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawCommandMatcher")]
pub struct CommandMatcher {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exe: Vec<PathMatcher>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Pattern>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv0: Option<Pattern>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<ArgvMatcher>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommandMatcher {
    name: String,
    #[serde(default)]
    exe: Vec<PathMatcher>,
    #[serde(default)]
    content: Vec<String>,
    args: Option<Pattern>,
    argv0: Option<Pattern>,
    argv: Option<ArgvMatcher>,
}

impl TryFrom<RawCommandMatcher> for CommandMatcher {
    type Error = String;
    fn try_from(r: RawCommandMatcher) -> Result<Self, String> {
        if r.args.is_none() && r.argv0.is_none() && r.argv.is_none() {
            return Err(format!(
                "command {:?} needs `args`, `argv0` or `argv`: a program matched by its path alone belongs in `bases`, by its content alone in a fingerprint with `match: true`",
                r.name
            ));
        }
        if r.exe.is_empty() && r.content.is_empty() {
            return Err(format!(
                "command {:?} needs at least one `exe` matcher or `content` fingerprint",
                r.name
            ));
        }
        Ok(CommandMatcher {
            name: r.name,
            exe: r.exe,
            content: r.content,
            args: r.args,
            argv0: r.argv0,
            argv: r.argv,
        })
    }
}

/// How a program reads its own command line, getopt-style: single-letter options that can be
/// grouped (`-Bm`), options that take a value (attached, `-mhttp.server`, or the next argument),
/// long options that take the next argument as their value, and options that end the program's
/// own options (what follows belongs to the code they run: python's `-c` and `-m`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgvSyntax {
    /// Letters of options without a value.
    #[serde(default)]
    pub flags: String,
    /// Letters of options with a value.
    #[serde(default)]
    pub values: String,
    /// Long options (`--name`) that take the next argument as their value (`--name=value`
    /// always works).
    #[serde(default)]
    pub long_values: Vec<String>,
    /// Long options that are another name of a letter option with a value (php's `--server`
    /// for `-S`).
    #[serde(default)]
    pub long: std::collections::BTreeMap<String, char>,
    /// Letters of options (with a value) after which the program reads no more options.
    #[serde(default)]
    pub ends: String,
}

/// A command line read with its program's [`ArgvSyntax`]: each option of `options` must be
/// present with a value that matches; `operand`, when given, must match the first argument that
/// is not an option (the script); `rest`, when given, must match the arguments after the option
/// that ended the options (or after the operand), joined by single spaces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawArgvMatcher")]
pub struct ArgvMatcher {
    pub syntax: ArgvSyntax,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<(char, Pattern)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operand: Option<Pattern>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest: Option<Pattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgvMatcher {
    syntax: ArgvSyntax,
    #[serde(default)]
    options: std::collections::BTreeMap<String, Pattern>,
    operand: Option<Pattern>,
    rest: Option<Pattern>,
}

impl TryFrom<RawArgvMatcher> for ArgvMatcher {
    type Error = String;
    fn try_from(r: RawArgvMatcher) -> Result<Self, String> {
        let s = &r.syntax;
        for (field, letters) in [
            ("flags", &s.flags),
            ("values", &s.values),
            ("ends", &s.ends),
        ] {
            if let Some(c) = letters.chars().find(|c| !c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "`syntax.{field}` lists option letters (a-z, A-Z, 0-9): got {c:?} in {letters:?}"
                ));
            }
        }
        if let Some(c) = s.ends.chars().find(|c| !s.values.contains(*c)) {
            return Err(format!(
                "`syntax.ends` letter {c:?} must also be in `syntax.values` (an option that ends the options takes a value)"
            ));
        }
        if let Some(c) = s.flags.chars().find(|c| s.values.contains(*c)) {
            return Err(format!(
                "option letter {c:?} is in both `syntax.flags` and `syntax.values`"
            ));
        }
        if let Some(l) = s
            .long_values
            .iter()
            .chain(s.long.keys())
            .find(|l| !l.starts_with("--") || l.len() < 3 || l.contains('='))
        {
            return Err(format!(
                "`syntax.long_values` and `syntax.long` hold long options such as --name: got {l:?}"
            ));
        }
        if let Some((l, c)) = s.long.iter().find(|(_, c)| !s.values.contains(**c)) {
            return Err(format!(
                "`syntax.long` maps {l} to {c:?}, which `syntax.values` does not list"
            ));
        }
        let mut options = Vec::new();
        for (k, p) in r.options {
            let mut chars = k.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if s.values.contains(c) => options.push((c, p)),
                _ => {
                    return Err(format!(
                        "`options` key {k:?} must be one option letter listed in `syntax.values`"
                    ))
                }
            }
        }
        if options.is_empty() && r.operand.is_none() {
            return Err("`argv` needs `options` or `operand` to test".into());
        }
        Ok(ArgvMatcher {
            syntax: r.syntax,
            options,
            operand: r.operand,
            rest: r.rest,
        })
    }
}

/// A fingerprint of an executable's content (see [`crate::sources::fingerprint`]). Every test given must
/// hold: each of `strings` appears in the file; each regex of `patterns` matches it (write
/// `\x00` around a C string, so that a file that merely quotes it does not match); each of
/// `symbols` is a dynamic symbol the executable imports or exports (a name, or a prefix ending
/// with `*`); `go_module` is named by its Go build information (as the main package, the main
/// module or a dependency). With `match: true`
/// the content alone is a match of the recipe (a web server, whatever its name); otherwise the
/// fingerprint identifies a program for `x-guard.commands` (an interpreter, a multi-call binary).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawFingerprint")]
pub struct Fingerprint {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub strings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<Pattern>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go_module: Option<String>,
    #[serde(rename = "match")]
    pub r#match: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFingerprint {
    name: String,
    #[serde(default)]
    strings: Vec<String>,
    #[serde(default)]
    patterns: Vec<Pattern>,
    #[serde(default)]
    symbols: Vec<String>,
    go_module: Option<String>,
    #[serde(rename = "match", default)]
    r#match: bool,
}

impl Fingerprint {
    /// What it looks for, for the evidence: `"nginx version: "` or `Go module github.com/...`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.strings.iter().map(|s| format!("{s:?}")).collect();
        parts.extend(self.patterns.iter().map(|p| format!("/{}/", p.source)));
        parts.extend(self.symbols.iter().map(|s| format!("symbol {s}")));
        if let Some(m) = &self.go_module {
            parts.push(format!("Go module {m}"));
        }
        parts.join(" + ")
    }
}

impl TryFrom<RawFingerprint> for Fingerprint {
    type Error = String;
    fn try_from(r: RawFingerprint) -> Result<Self, String> {
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "fingerprint `name` must be a-z, A-Z, 0-9, '_' or '-': got {:?}",
                r.name
            ));
        }
        if r.strings.is_empty()
            && r.patterns.is_empty()
            && r.symbols.is_empty()
            && r.go_module.is_none()
        {
            return Err(format!(
                "fingerprint {:?} needs `strings`, `patterns`, `symbols` or `go_module`",
                r.name
            ));
        }
        if let Some(s) = r.symbols.iter().find(|s| {
            let name = s.strip_suffix('*').unwrap_or(s);
            name.len() < 4
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'@')
        }) {
            return Err(format!(
                "fingerprint {:?}: a symbol is a name of at least 4 characters (a-z, A-Z, 0-9, _, ., @), optionally ending with *: got {s:?}",
                r.name
            ));
        }
        // Short strings appear in unrelated files by chance.
        if let Some(s) = r.strings.iter().find(|s| s.len() < 6 || s.len() > 256) {
            return Err(format!(
                "fingerprint {:?}: each string must be 6 to 256 bytes long: got {s:?}",
                r.name
            ));
        }
        if let Some(m) = &r.go_module {
            if m.is_empty() || m.contains(char::is_whitespace) {
                return Err(format!(
                    "fingerprint {:?}: `go_module` must be a module path: got {m:?}",
                    r.name
                ));
            }
        }
        Ok(Fingerprint {
            name: r.name,
            strings: r.strings,
            patterns: r.patterns,
            symbols: r.symbols,
            go_module: r.go_module,
            r#match: r.r#match,
        })
    }
}

/// A MITRE ATT&CK (or other) reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub id: String,
    pub name: String,
    pub url: String,
}

/// Recommended actions per environment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    #[serde(default)]
    pub ci_cd: Vec<String>,
    #[serde(default)]
    pub staging: Vec<String>,
    #[serde(default)]
    pub production: Vec<String>,
}

/// Our extension namespace: the single key `x-guard` in a recipe, which Jibril ignores.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// A short explanation for humans (reports).
    #[serde(default)]
    pub explanation: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub actions: Actions,
    /// Commands recognised by arguments (interpreters, multi-call binaries).
    #[serde(default)]
    pub commands: Vec<CommandMatcher>,
    /// Programs recognised by their content (renamed or hidden executables).
    #[serde(default)]
    pub fingerprints: Vec<Fingerprint>,
}

/// A recipe, validated.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawRecipe")]
pub struct Recipe {
    pub kind: String,
    pub name: String,
    pub enabled: bool,
    pub version: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<String>,
    pub breed: Breed,
    pub mechanism: Mechanism,
    pub tactic: String,
    pub technique: String,
    pub subtechnique: String,
    pub importance: Importance,
    pub times: Vec<TimesLimit>,
    pub arbitrary: Vec<ArbitraryGroup>,
    pub file_actions: FileActions,
    pub file_actions_how: How,
    pub bases: Vec<PathMatcher>,
    #[serde(rename = "x-guard")]
    pub ext: Extension,
}

/// A recipe's `version`: a YAML number (`1.0`) or string.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawVersion {
    Number(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    kind: String,
    name: String,
    enabled: Option<bool>,
    version: RawVersion,
    description: String,
    documentation: Option<String>,
    breed: Breed,
    mechanism: Mechanism,
    tactic: String,
    technique: String,
    subtechnique: Option<String>,
    importance: Importance,
    times: Option<Vec<TimesLimit>>,
    arbitrary: Option<Vec<ArbitraryGroup>>,
    file_actions: Option<FileActions>,
    file_actions_how: Option<How>,
    file_actions_excl: Option<FileActions>,
    bases: Option<Vec<PathMatcher>>,
    #[serde(default, deserialize_with = "file_name")]
    base: Option<String>,
    #[serde(default, deserialize_with = "abs_dir")]
    dir: Option<String>,
    regex: Option<Pattern>,
    #[serde(rename = "x-guard")]
    ext: Option<Extension>,
    // Jibril keys for other mechanisms: accepted, not evaluated on exec events.
    reactions: Option<serde_norway::Value>,
    protocol: Option<serde_norway::Value>,
    local_cidrs: Option<serde_norway::Value>,
    remote_cidrs: Option<serde_norway::Value>,
    local_port: Option<serde_norway::Value>,
    remote_port: Option<serde_norway::Value>,
    remote_domains: Option<serde_norway::Value>,
    remote_domains_type: Option<serde_norway::Value>,
    remote_domains_trie_type: Option<serde_norway::Value>,
    flow_actions: Option<serde_norway::Value>,
    flow_actions_how: Option<serde_norway::Value>,
    flow_actions_excl: Option<serde_norway::Value>,
}

fn snake_name(field: &str, v: &str) -> Result<(), String> {
    if v.is_empty()
        || v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "`{field}` must be snake_case (a-z, 0-9, _): got {v:?}"
        ))
    }
}

impl TryFrom<RawRecipe> for Recipe {
    type Error = String;
    fn try_from(r: RawRecipe) -> Result<Self, String> {
        if r.kind.is_empty() {
            return Err("`kind` must not be empty".into());
        }
        snake_name("kind", &r.kind)?;
        snake_name("tactic", &r.tactic)?;
        snake_name("technique", &r.technique)?;
        let subtechnique = r.subtechnique.unwrap_or_default();
        snake_name("subtechnique", &subtechnique)?;
        let mut bases = r.bases.unwrap_or_default();
        if r.base.is_some() || r.dir.is_some() || r.regex.is_some() {
            bases.push(PathMatcher::try_from(RawPathMatcher {
                base: r.base,
                dir: r.dir,
                regex: r.regex,
            })?);
        }
        let file_actions = r.file_actions.unwrap_or_default();
        let ext = r.ext.unwrap_or_default();
        if r.mechanism == Mechanism::Execution {
            if !file_actions.includes_exec() {
                return Err(format!(
                    "recipe {:?}: mechanism `execution` needs `file_actions: execve`",
                    r.name
                ));
            }
            if bases.is_empty()
                && ext.commands.is_empty()
                && !ext.fingerprints.iter().any(|f| f.r#match)
            {
                return Err(format!(
                    "recipe {:?}: an execution recipe needs `bases` (or `x-guard.commands`, or a fingerprint with `match: true`) to match",
                    r.name
                ));
            }
        }
        for (i, f) in ext.fingerprints.iter().enumerate() {
            if ext.fingerprints[..i].iter().any(|g| g.name == f.name) {
                return Err(format!(
                    "recipe {:?}: fingerprint {:?} is declared twice",
                    r.name, f.name
                ));
            }
        }
        for c in &ext.commands {
            if let Some(unknown) = c
                .content
                .iter()
                .find(|n| !ext.fingerprints.iter().any(|f| &f.name == *n))
            {
                return Err(format!(
                    "recipe {:?}: command {:?} names fingerprint {unknown:?}, which `x-guard.fingerprints` does not declare",
                    r.name, c.name
                ));
            }
        }
        let _ = (
            r.file_actions_excl,
            r.reactions,
            r.protocol,
            r.local_cidrs,
            r.remote_cidrs,
        );
        let _ = (
            r.local_port,
            r.remote_port,
            r.remote_domains,
            r.remote_domains_type,
        );
        let _ = (
            r.remote_domains_trie_type,
            r.flow_actions,
            r.flow_actions_how,
            r.flow_actions_excl,
        );
        let version = match r.version {
            RawVersion::Number(n) if n.fract() == 0.0 => format!("{n:.1}"),
            RawVersion::Number(n) => n.to_string(),
            RawVersion::Text(t) => t,
        };
        Ok(Recipe {
            kind: r.kind,
            name: r.name,
            enabled: r.enabled.unwrap_or(true),
            version,
            description: r.description,
            documentation: r
                .documentation
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty()),
            breed: r.breed,
            mechanism: r.mechanism,
            tactic: r.tactic,
            technique: r.technique,
            subtechnique,
            importance: r.importance,
            times: r.times.unwrap_or_default(),
            arbitrary: r.arbitrary.unwrap_or_default(),
            file_actions,
            file_actions_how: r.file_actions_how.unwrap_or(How::Any),
            bases,
            ext,
        })
    }
}

impl Recipe {
    /// Whether an `arbitrary` filter looks at the uid or the parent pid of an exec (which
    /// `--mode enforce` then reads before deciding on an attempt).
    pub fn reads_ids(&self) -> bool {
        self.arbitrary
            .iter()
            .flat_map(|g| &g.items)
            .any(|i| matches!(i.what, What::Uid | What::ParentPid))
    }

    /// Why this recipe cannot be evaluated on exec events, if it cannot.
    pub fn not_evaluated(&self) -> Option<String> {
        match self.mechanism {
            Mechanism::Execution => None,
            Mechanism::FileAccess => Some("not evaluated: needs file events".into()),
            Mechanism::NetworkPeers => Some("not evaluated: needs network events".into()),
            Mechanism::Baseline => Some("not evaluated: needs a baseline".into()),
        }
    }

    /// The human name of the MITRE fields: `command_and_control` → `Command And Control`.
    pub fn title(s: &str) -> String {
        s.split('_')
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}
