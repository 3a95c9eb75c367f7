//! Escaping attacker-controlled text (argv, paths) for each output medium.
//!
//! One policy decides which characters are dangerous ([`is_dangerous`]); every medium starts from
//! it: [`terminal`] and [`inert`] show them as escapes, [`is_plain`] refuses text that has one,
//! [`markdown`] (the job summary, the PR comment, SARIF's Markdown) and [`sarif_text`] escape text
//! that is already visible.

/// The one policy of dangerous characters: those that change how text is shown. C0/C1 controls,
/// DEL, the Unicode bidirectional marks, overrides and isolates that can make text read
/// differently from what it is, and the invisible ones (zero-width spaces and joiners, word
/// joiner, soft hyphen, BOM, line/paragraph separators, fillers, tag characters) that can hide
/// text or make two different strings look the same.
pub fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// Whether text shows as what it is: it has no character that [`terminal`] would escape.
pub fn is_plain(text: &str) -> bool {
    !text.chars().any(is_dangerous)
}

/// Text for a terminal: dangerous characters and invalid UTF-8 bytes become visible escapes
/// (`\x1b`, C1 controls as `\x9b`, `\u{202e}`, `\u{ad}`, `\xff`); a backslash is doubled so that
/// escapes cannot be forged.
pub fn terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if is_dangerous(c) && (c as u32) < 0xa0 => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if is_dangerous(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// An argv for a terminal, shell-quoted where an argument is empty or has special characters,
/// so that `a b` and `"a b"` are told apart.
pub fn terminal_argv(argv: &[crate::event::Bytes]) -> String {
    argv.iter()
        .map(|a| {
            let text = terminal(a.as_bytes());
            let plain = !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                text
            } else {
                format!("'{}'", text.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text for a terminal: [dangerous](is_dangerous) characters become `\u{..}` (as Rust's `{:?}`
/// writes them), so that a hostile key or value quoted in an error cannot drive the terminal or
/// hide text. Backslashes are kept: messages quote values with `{:?}`, which escapes them already.
pub fn inert(s: &str) -> String {
    if is_plain(s) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if is_dangerous(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Literal text for GitHub-flavoured Markdown (and HTML): dangerous characters are made visible
/// as on the [`terminal`], then escaped as [`markdown_visible`] does.
pub fn markdown(text: &str) -> String {
    markdown_visible(&terminal(text.as_bytes()))
}

/// [`markdown`] of text whose dangerous characters are already visible: every ASCII punctuation
/// character is backslash-escaped (CommonMark allows it for all of them), `<`, `>`, `&` become
/// entities, so nothing can form a link, autolink (`://`, `www.`), emphasis, HTML or a table
/// cell boundary (`|`). GitHub finds mentions (`@team`) and issue references (`#123`) in the
/// rendered text, after backslash escapes are gone, so `@` and `#` are also followed by a
/// zero-width space, which breaks them (an attacker's own zero-width spaces are shown as
/// `\u{200b}`, so the inserted ones are told apart).
pub fn markdown_visible(visible: &str) -> String {
    let mut out = String::with_capacity(visible.len() + 8);
    for c in visible.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '@' | '#' => {
                out.push('\\');
                out.push(c);
                out.push('\u{200b}');
            }
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text for a SARIF plain-text message, its dangerous characters already visible: `\`, `[`, `]`
/// are backslash-escaped, as SARIF requires outside embedded links, so that text cannot forge
/// one.
pub fn sarif_text(visible: &str) -> String {
    let mut out = String::with_capacity(visible.len());
    for c in visible.chars() {
        if matches!(c, '\\' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The data part of a workflow command: `%`, CR and LF are escaped (`%` first).
pub fn workflow_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value (`file=`, `title=`): also `:` and `,`.
pub fn workflow_property(s: &str) -> String {
    workflow_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_output_is_inert() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (b"\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),
            (b"a\rb\nc", "a\\rb\\nc"),
            ("x\u{202e}cod.exe".as_bytes(), "x\\u{202e}cod.exe"),
            (b"\xff\xfe", "\\xff\\xfe"),
            (b"back\\x1b", "back\\\\x1b"),
            ("\u{9b}31m".as_bytes(), "\\x9b31m"),
            (
                "ng\u{200b}inx\u{2060}".as_bytes(),
                "ng\\u{200b}inx\\u{2060}",
            ),
            ("a\u{2028}b\u{feff}".as_bytes(), "a\\u{2028}b\\u{feff}"),
            ("soft\u{ad}hyphen".as_bytes(), "soft\\u{ad}hyphen"),
        ];
        for (input, want) in cases {
            assert_eq!(terminal(input), *want);
            assert!(!terminal(input).chars().any(is_dangerous));
            assert!(is_plain(&terminal(input)));
        }
        assert!(is_plain("scripts/run tests, #1 @org.sh"));
        assert!(!is_plain("scripts/x\u{202e}hs.sh") && !is_plain("a\nb"));
    }

    #[test]
    fn one_policy_for_every_medium() {
        for c in [
            '\u{1b}',
            '\u{9b}',
            '\u{202e}',
            '\u{2067}',
            '\u{200b}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            assert!(is_dangerous(c), "{c:?}");
            let text = format!("a{c}b");
            assert!(!is_plain(&text));
            assert!(is_plain(&inert(&text)), "{:?}", inert(&text));
            assert!(is_plain(&terminal(text.as_bytes())));
            assert!(!markdown(&text).contains(c));
        }
        assert_eq!(inert("key\u{200b}"), "key\\u{200b}");
    }

    #[test]
    fn markdown_breaks_mentions_and_references() {
        assert_eq!(
            markdown("@org #1 [x](y) <b> a\nb"),
            "\\@\u{200b}org \\#\u{200b}1 \\[x\\]\\(y\\) &lt;b&gt; a\\\\nb"
        );
        assert_eq!(sarif_text("a\\[b]"), "a\\\\\\[b\\]");
    }

    #[test]
    fn argv_quoting() {
        let argv: Vec<crate::event::Bytes> = ["nginx", "-g", "daemon off;", "", "it's"]
            .iter()
            .map(|a| (*a).into())
            .collect();
        assert_eq!(terminal_argv(&argv), "nginx -g 'daemon off;' '' 'it'\\''s'");
    }
}
