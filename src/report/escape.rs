//! Escaping attacker-controlled text (argv, paths) for each output medium.

/// Characters that change how a terminal shows text: C0/C1 controls, DEL, and the Unicode
/// bidirectional overrides/isolates that can make text read differently from what it is.
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

/// Text for a terminal: dangerous characters and invalid UTF-8 bytes become visible escapes
/// (`\x1b`, `\u{202e}`, `\xff`); a backslash is doubled so that escapes cannot be forged.
pub fn terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if is_dangerous(c) && (c as u32) < 0x100 => {
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
        ];
        for (input, want) in cases {
            assert_eq!(terminal(input), *want);
            assert!(!terminal(input).chars().any(is_dangerous));
        }
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
