//! Property tests (proptest) of what attacker-controlled or corrupted input reaches: every
//! escaper must make its input inert *and* stay reversible (so that two different inputs never
//! look the same: no forged text), and every parser of untrusted bytes — the proc connector's
//! datagrams, trace files, recipe files — must return a value or an error, never panic.
//!
//! Case counts are set per property (`CASES`); a failure prints the minimal input.

mod common;

use common::unterminal;
use std::io::Write;

use guard::escape::terminal;
use guard::escape::{workflow_data as escape_data, workflow_property as escape_property};
use guard::event::Bytes;
use guard::report::markdown::escape as markdown;
use proptest::prelude::*;

const CASES: u32 = 2_000;

/// Hostile-looking bytes: controls, ESC sequences, bidi overrides, `%`, `:`, `,`, Markdown and
/// HTML punctuation, invalid UTF-8, mixed with plain text.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"\x1b]8;;http://evil\x07".to_vec()),
        Just(b"\x1b[2J".to_vec()),
        Just("\u{202e}".as_bytes().to_vec()),
        Just("\u{2066}".as_bytes().to_vec()),
        Just(b"%0A::error::forged".to_vec()),
        Just(b"\r\n::add-mask::x".to_vec()),
        Just(b"[link](http://x) @admin <img src=x> | ` * _ #1".to_vec()),
        Just(b"\\x1b \\u{202e} %25 %".to_vec()),
        Just(vec![0xff, 0xfe, 0xc3]),
        proptest::collection::vec(any::<u8>(), 0..16),
        "[a-z /.:,=-]{0,12}".prop_map(|s| s.into_bytes()),
    ];
    proptest::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
}

fn is_terminal_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Terminal text has no control or bidi character left, and the escapes are unambiguous:
    /// the input is recovered from the output (C1 controls and invalid bytes both print as
    /// `\xHH`, so the recovery is compared on valid UTF-8 inputs).
    #[test]
    fn terminal_is_inert_and_reversible(input in hostile()) {
        let out = terminal(&input);
        prop_assert!(!out.chars().any(is_terminal_dangerous), "{out:?}");
        if let Ok(text) = std::str::from_utf8(&input) {
            if !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
                prop_assert_eq!(unterminal(&out), Some(input.clone()));
            }
        }
    }

    /// Two different inputs never print the same (no forged text), invalid bytes included.
    #[test]
    fn terminal_is_injective(a in hostile(), b in hostile()) {
        if a != b {
            let (ta, tb) = (terminal(&a), terminal(&b));
            // C1 controls (U+0080..U+009F) and the invalid bytes 0x80..0x9F share their
            // printed form by design (both are shown as the raw byte value); every other
            // pair must differ.
            let c1 = |v: &[u8]| String::from_utf8_lossy(v).chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c));
            if !c1(&a) && !c1(&b) && std::str::from_utf8(&a).is_ok() && std::str::from_utf8(&b).is_ok() {
                prop_assert_ne!(ta, tb);
            }
        }
    }

    /// Workflow command data: no line break survives (a new line would be a new command), and
    /// the runner's unescaping gives the text back.
    #[test]
    fn workflow_command_escapes(input in hostile()) {
        let text = String::from_utf8_lossy(&input).into_owned();
        for (escaped, property) in [(escape_data(&text), false), (escape_property(&text), true)] {
            prop_assert!(!escaped.contains('\n') && !escaped.contains('\r'), "{escaped:?}");
            if property {
                prop_assert!(!escaped.contains(':') && !escaped.contains(','), "{escaped:?}");
            }
            let back = escaped
                .replace("%0D", "\r")
                .replace("%0A", "\n")
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%25", "%");
            prop_assert_eq!(back, text.clone());
        }
    }

    /// Markdown/HTML: no tag, entity start, table cell boundary or line break; every ASCII
    /// punctuation character is escaped.
    #[test]
    fn markdown_is_inert(input in hostile()) {
        let text = String::from_utf8_lossy(&input).into_owned();
        let out = markdown(&text);
        prop_assert!(!out.contains('<') && !out.contains('>') && !out.contains('\n'), "{out:?}");
        let chars: Vec<char> = out.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                i += 2;
                continue;
            }
            if c == '&' {
                let rest: String = chars[i..].iter().take(5).collect();
                prop_assert!(rest.starts_with("&lt;") || rest.starts_with("&gt;") || rest.starts_with("&amp;"), "{out:?}");
                i += 1;
                continue;
            }
            prop_assert!(!c.is_ascii_punctuation() || c == ';', "unescaped {c:?} in {out:?}");
            i += 1;
        }
    }

    /// The proc connector's datagram parser on arbitrary bytes: a value or an error.
    #[test]
    fn connector_parser_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = guard::sources::connector::parse_datagram(&buf);
    }

    /// The recipe loader on arbitrary text: a recipe list or an error with a file name.
    #[test]
    fn recipe_loader_never_panics(text in "[ -~\n]{0,300}") {
        if let Err(e) = guard::policy::recipe::parse("fuzz.yaml", text.as_bytes()) {
            prop_assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// The trace reader on a real trace with bytes flipped, lines cut or appended: records
    /// or an error, and never a `sealed` verdict for a trace that was changed.
    #[test]
    fn trace_reader_never_panics_and_never_seals_a_changed_trace(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let original = sample_trace();
        let mut changed = original.clone();
        let i = at.index(changed.len());
        if cut {
            changed.truncate(i);
        } else {
            changed[i] = byte;
        }
        let path = std::env::temp_dir().join(format!("guard-prop-{}-{}.jsonl", std::process::id(), i));
        std::fs::File::create(&path).unwrap().write_all(&changed).unwrap();
        if let Ok(mut r) = guard::trace::TraceReader::open(&path) {
            while let Ok(Some(_)) = r.next_record() {}
            if changed != original {
                prop_assert!(!matches!(r.integrity(), Some(guard::trace::Integrity::Sealed { .. })),
                    "changed trace read as sealed (byte {i})");
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}

/// A small sealed trace written by the library itself.
fn sample_trace() -> Vec<u8> {
    use guard::event::{ExecEvent, Source};
    use guard::trace::{Header, Record, TraceWriter};
    let mut w = TraceWriter::new(Vec::new(), &Header::new("run")).unwrap();
    for pid in 1..4u32 {
        let e = ExecEvent {
            seq: u64::from(pid),
            time: "2026-11-28T00:00:00.000000Z".into(),
            pid,
            tgid: pid,
            ppid: 1,
            former_tid: None,
            uid: 0,
            euid: None,
            exe: "/usr/bin/true".into(),
            execfn: None,
            script: None,
            argv: vec![Bytes::from("true"), Bytes(vec![0xff, b'x'])],
            cwd: Some("/".into()),
            comm: None,
            source: Source::Ptrace,
            sources: Vec::new(),
            container: None,
            step: None,
            partial: false,
            content: Vec::new(),
            blocked: false,
            attempt: None,
        };
        w.write(&Record::Exec(Box::new(e))).unwrap();
    }
    w.seal(0).unwrap()
}

/// Found by the property above: the seal's own `time` (and its spacing) was not bound by the
/// chain, so an edited seal line still read as sealed.
#[test]
fn an_edited_seal_line_is_altered() {
    let original = String::from_utf8(sample_trace()).unwrap();
    let seal_at = original.rfind("{\"type\":\"seal\"").unwrap();
    let time_at = seal_at + original[seal_at..].find("\"time\":\"").unwrap() + 8;
    let mut later = original.clone().into_bytes();
    later[time_at] = if later[time_at] == b'2' { b'3' } else { b'2' };
    let spaced = original.replacen("\"records\":", "\"records\": ", 1);
    // Found by the property below in CI: the file cut by its very last byte, the seal's newline.
    let no_newline = original.strip_suffix('\n').unwrap().to_string();
    for (name, bytes) in [
        ("time", later),
        ("spacing", spaced.into_bytes()),
        ("newline", no_newline.into_bytes()),
    ] {
        let path =
            std::env::temp_dir().join(format!("guard-seal-{}-{name}.jsonl", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let mut r = guard::trace::TraceReader::open(&path).unwrap();
        while let Ok(Some(_)) = r.next_record() {}
        assert!(
            matches!(r.integrity(), Some(guard::trace::Integrity::Altered { .. })),
            "{name}: {:?}",
            r.integrity()
        );
        std::fs::remove_file(&path).unwrap();
    }
}
