//! The runner's protocol: inputs from `INPUT_*`, file commands (`GITHUB_STATE`,
//! `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`) and workflow commands on stdout, escaped as the
//! runner requires.

use std::io::{self, Write};
use std::path::Path;

use crate::escape;

/// The environment, read through one function so that tests can provide their own.
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { get }
    }

    pub fn var(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.is_empty())
    }

    /// An input: `x-y z` arrives as `INPUT_X-Y_Z`.
    pub fn input(&self, name: &str) -> Option<String> {
        self.var(&format!("INPUT_{}", name.replace(' ', "_").to_uppercase()))
            .map(|v| v.trim().to_string())
    }

    /// A boolean input: `true`/`false` (any case); anything else is the default, said once.
    pub fn flag(&self, name: &str, default: bool, out: &mut dyn Write) -> bool {
        match self.input(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                command(
                    out,
                    "warning",
                    &format!("input `{name}` is {v:?}, not true or false: using {default}"),
                );
                default
            }
        }
    }
}

/// A workflow command with a message (`::warning::…`), escaped. Messages can quote text we do
/// not control (an API error body, a config value): its control characters (ANSI/OSC sequences,
/// bidi overrides) are made visible, line breaks kept.
pub fn command(out: &mut dyn Write, level: &str, message: &str) {
    let visible = message
        .split('\n')
        .map(|line| escape::terminal(line.as_bytes()))
        .collect::<Vec<_>>()
        .join("\n");
    let _ = writeln!(out, "::{level}::{}", escape::workflow_data(&visible));
}

/// Appends `name=value` to the file of a file command, in the delimiter form when the value
/// spans lines (the delimiter is random and absent from the value).
pub fn file_command(path: &Path, name: &str, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    if value.contains('\n') || value.contains('\r') {
        let mut delimiter;
        let mut n = 0u64;
        loop {
            delimiter = format!("ghadelimiter_{:016x}{n}", random());
            if !value.contains(&delimiter) {
                break;
            }
            n += 1;
        }
        writeln!(f, "{name}<<{delimiter}\n{value}\n{delimiter}")
    } else {
        writeln!(f, "{name}={value}")
    }
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_ne_bytes(b) ^ std::process::id() as u64
}

pub fn set(env: &Env, var: &str, name: &str, value: &str, out: &mut dyn Write) {
    if let Some(path) = env.var(var) {
        if let Err(e) = file_command(Path::new(&path), name, value) {
            command(
                out,
                "warning",
                &format!("webserver-exec-guard: cannot write {var} ({path}): {e}"),
            );
        }
    }
}

pub fn append_summary(env: &Env, markdown: &str, out: &mut dyn Write) {
    if let Some(path) = env.var("GITHUB_STEP_SUMMARY") {
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()));
        if let Err(e) = written {
            command(
                out,
                "warning",
                &format!("webserver-exec-guard: cannot write the job summary ({path}): {e}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_messages_show_controls_and_keep_line_breaks() {
        let mut out = Vec::new();
        command(
            &mut out,
            "warning",
            "API said: \x1b[2J\u{202e}x\r\n::error::forged\nsecond line %0A",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "::warning::API said: \\x1b[2J\\u{202e}x\\r%0A::error::forged%0Asecond line %250A\n"
        );
    }

    #[test]
    fn multi_line_values_use_a_delimiter_absent_from_them() {
        let dir = std::env::temp_dir().join(format!("guard-fc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out");
        let _ = std::fs::remove_file(&f);
        file_command(&f, "a", "one").unwrap();
        file_command(&f, "b", "x\nghadelimiter_\ny").unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("a=one"));
        let head = lines.next().unwrap();
        let delim = head.strip_prefix("b<<").unwrap();
        assert!(!"x\nghadelimiter_\ny".contains(delim));
        assert_eq!(
            lines.collect::<Vec<_>>(),
            ["x", "ghadelimiter_", "y", delim]
        );
    }
}
