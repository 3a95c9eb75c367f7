//! The hardened YAML loader of recipe and config files.
//!
//! Both are untrusted input (a pull request can change them), so loading one is bounded before
//! the YAML parser sees it: a regular file of at most [`MAX_FILE_BYTES`], valid UTF-8, flow
//! collections nested at most [`MAX_FLOW_DEPTH`] deep (libyaml's scanner is quadratic in that
//! depth), at most [`MAX_YAML_NODES`] nodes once aliases are expanded (alias bombs). Every error
//! names the file, and the line and column where there is one.

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Visitor};

use crate::escape::inert;

/// Recipe (and config) files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Flow collections (`[` and `{`) nested deeper than this are refused before parsing. The YAML
/// deserialiser stops at 128 levels of any nesting anyway; the scanner before it spends time
/// proportional to the depth on every token, so 100,000 `[` would take hours.
pub const MAX_FLOW_DEPTH: u32 = 128;

/// Nodes (scalars, lists, mappings) a YAML document may have once its aliases are expanded: a
/// recipe or config file has a few thousand at most (the built-in recipe file 680), an alias
/// bomb (a billion laughs) billions. Counting them costs no memory; loading them does, about
/// 250 bytes each.
pub const MAX_YAML_NODES: u64 = 250_000;

/// Errors shown longer than this are cut (a hostile value can be megabytes long).
const MAX_MESSAGE_CHARS: usize = 1000;

/// A YAML file that could not be loaded: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    /// 1-based; `None` when the error is not tied to a position (I/O).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = inert(&self.file);
        let mut message = inert(&self.message);
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
            let more = message.len() - cut;
            message.truncate(cut);
            message.push_str(&format!("… ({more} more bytes)"));
        }
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{file}:{l}:{c}: {message}"),
            _ => write!(f, "{file}: {message}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// The 1-based line and column (in characters, as libyaml counts them) of a byte offset.
pub fn line_col(text: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let column = before[line_start..]
        .iter()
        .filter(|b| (**b & 0xc0) != 0x80)
        .count()
        + 1;
    (line, column)
}

impl LoadError {
    pub(crate) fn io(file: &Path, e: impl fmt::Display) -> LoadError {
        LoadError {
            file: file.display().to_string(),
            line: None,
            column: None,
            message: e.to_string(),
        }
    }

    fn at(file: &str, text: &[u8], offset: usize, message: String) -> LoadError {
        let (line, column) = line_col(text, offset);
        LoadError {
            file: file.to_string(),
            line: Some(line),
            column: Some(column),
            message,
        }
    }

    /// Turns a serde_norway error into file:line:column + message (path inside the document
    /// kept, position suffix removed). `text` is the document, for the errors that libyaml
    /// places by byte offset and those it does not place at all.
    pub fn from_yaml(file: &str, text: &[u8], e: &serde_norway::Error) -> LoadError {
        let mut message = e.to_string();
        let (mut line, mut column) = match e.location() {
            Some(loc) => {
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(i) = message.rfind(&suffix) {
                    message.replace_range(i..i + suffix.len(), "");
                }
                (Some(loc.line()), Some(loc.column()))
            }
            None => (None, None),
        };
        // libyaml's reader places its errors by byte offset ("control characters are not
        // allowed at position 198") and leaves the mark at 1:1.
        if let Some(i) = message.find(" at position ") {
            let digits: String = message[i + 13..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(offset) = digits.parse::<usize>() {
                let (l, c) = line_col(text, offset);
                (line, column) = (Some(l), Some(c));
                let quoted = text
                    .get(offset)
                    .map(|b| format!(" (byte 0x{b:02x})"))
                    .unwrap_or_default();
                message.replace_range(i..i + 13 + digits.len(), &quoted);
            }
        }
        if message.contains("recursion limit exceeded") {
            message = message.replace(
                "recursion limit exceeded",
                "nested more than 128 levels deep (recursion limit exceeded)",
            );
        }
        if message.contains("repetition limit exceeded") {
            // serde_norway does not say where; the first alias is where the expansion starts.
            let alias = first_alias(text);
            message = message.replace(
                "repetition limit exceeded",
                &format!(
                    "aliases are expanded too many times (repetition limit exceeded: a YAML alias bomb?){}",
                    alias
                        .as_ref()
                        .map(|(_, name)| format!("; first alias {name:?}"))
                        .unwrap_or_default()
                ),
            );
            if let (None, Some((offset, _))) = (line, alias) {
                let (l, c) = line_col(text, offset);
                (line, column) = (Some(l), Some(c));
            }
        }
        if let (Some(l), Some(c), Some(key)) = (line, column, duplicate_field(&message)) {
            if let Some(l2) = find_duplicate_key(text, l, c, &key) {
                line = Some(l2);
            }
        }
        // The document is a list: its paths read `.[0].bases[2]`; `[0].bases[2]` is enough.
        if message.starts_with(".[") {
            message.remove(0);
        }
        LoadError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// The key of serde's "duplicate field `name`" (possibly after a `path: ` prefix).
fn duplicate_field(message: &str) -> Option<String> {
    let i = message.find("duplicate field `")? + "duplicate field `".len();
    let rest = &message[i..];
    Some(rest[..rest.find('`')?].to_string())
}

/// serde places a duplicate field at the start of its mapping: the line of the second `key:`
/// at the mapping's column (a block mapping), when there is one.
fn find_duplicate_key(text: &[u8], line: usize, column: usize, key: &str) -> Option<usize> {
    let text = std::str::from_utf8(text).ok()?;
    let indent = column.checked_sub(1)?;
    let mut seen = 0;
    for (i, l) in text.lines().enumerate().skip(line - 1) {
        let rest = if i + 1 == line {
            l.get(indent..)?
        } else {
            let spaces = l.len() - l.trim_start_matches(' ').len();
            let trimmed = l.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if spaces < indent {
                return None;
            }
            if spaces > indent {
                continue;
            }
            &l[indent..]
        };
        let is_key = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ]
        .iter()
        .any(|k| {
            rest.strip_prefix(k.as_str())
                .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\t']))
        });
        if is_key {
            seen += 1;
            if seen == 2 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The first alias (`*name`) outside comments and quoted scalars, roughly as YAML reads it:
/// only to point an error at it.
fn first_alias(text: &[u8]) -> Option<(usize, String)> {
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < text.len() {
        let b = text[i];
        let prev = if i == 0 { b'\n' } else { text[i - 1] };
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'#' if matches!(prev, b' ' | b'\t' | b'\n') => {
                    i = memchr::memchr(b'\n', &text[i..]).map_or(text.len(), |n| i + n);
                }
                b'\'' | b'"' if matches!(prev, b' ' | b'\t' | b'\n' | b'[' | b'{' | b',') => {
                    quote = Some(b);
                }
                b'*' if matches!(prev, b' ' | b'\t' | b'\n' | b'[' | b'{' | b',') => {
                    let name: String = text[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b'_')
                        .map(|c| *c as char)
                        .collect();
                    if !name.is_empty() {
                        return Some((i, name));
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Reads a recipe or config file (`what`: "recipe file", "config file") with its bounds: a
/// regular file (a FIFO would block, a device never end), at most [`MAX_FILE_BYTES`], checked
/// before reading and enforced while reading (a file that grows meanwhile).
pub fn read_yaml_file(path: &Path, what: &str) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| LoadError::io(path, e))?;
    not_regular(path, &meta, what)?;
    // O_NONBLOCK: if the path was swapped for a FIFO since, opening it does not wait for a
    // writer; O_NOCTTY: a terminal never becomes ours. The descriptor is checked again.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| LoadError::io(path, e))?;
    let meta = file.metadata().map_err(|e| LoadError::io(path, e))?;
    not_regular(path, &meta, what)?;
    let too_big = |len: u64| {
        LoadError::io(
            path,
            format!(
                "{len} bytes, larger than the {} MiB limit for a {what}",
                MAX_FILE_BYTES >> 20
            ),
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| LoadError::io(path, e))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}

/// An error unless `meta` is a regular file's.
fn not_regular(path: &Path, meta: &std::fs::Metadata, what: &str) -> Result<(), LoadError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(LoadError::io(
        path,
        format!("is {kind}, not a regular file: a {what} must be a regular file"),
    ))
}

/// Checks a YAML document before the parser sees it and returns the text to parse: a UTF-8 BOM
/// removed (serde_norway reads the values of a file that starts with one three bytes off),
/// valid UTF-8 (the first invalid byte placed and shown), flow collections at most
/// [`MAX_FLOW_DEPTH`] deep, and at most [`MAX_YAML_NODES`] nodes with aliases expanded.
pub fn check_yaml<'t>(file: &str, text: &'t [u8]) -> Result<&'t [u8], LoadError> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    if let Err(e) = std::str::from_utf8(text) {
        let at = e.valid_up_to();
        return Err(LoadError::at(
            file,
            text,
            at,
            format!(
                "invalid UTF-8 (byte 0x{:02x}): YAML files must be UTF-8",
                text[at]
            ),
        ));
    }
    if let Some(at) = flow_depth_exceeded(text) {
        return Err(LoadError::at(
            file,
            text,
            at,
            format!(
                "flow collections ('[' and '{{') nested more than {MAX_FLOW_DEPTH} levels deep"
            ),
        ));
    }
    let left = Cell::new(MAX_YAML_NODES);
    let counted = NodeCount(&left).deserialize(serde_norway::Deserializer::from_slice(text));
    counted.map_err(|e| LoadError::from_yaml(file, text, &e))?;
    Ok(text)
}

/// Counts the nodes of a document as the deserialiser expands its aliases, failing past
/// [`MAX_YAML_NODES`] (in bounded time: it keeps nothing).
#[derive(Clone, Copy)]
struct NodeCount<'a>(&'a Cell<u64>);

impl NodeCount<'_> {
    fn take<E: de::Error>(self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "the document has more than {MAX_YAML_NODES} nodes once its aliases are expanded (a YAML alias bomb, or far too large a file)"
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for NodeCount<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeCount<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.take()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.take()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        self.take()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): the tag, then the value.
        use de::VariantAccess;
        self.take()?;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

/// The lexical states of libyaml's scanner inside a flow collection (see
/// [`flow_depth_exceeded`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Where a token may start: whitespace, comments and line breaks are skipped.
    Start,
    /// In a plain scalar, after a character that is not blank.
    Plain,
    /// In a plain scalar, after blanks or line breaks.
    PlainSpace,
    Comment,
    /// An anchor or alias name.
    Anchor,
    Tag,
    /// `!<...>`
    TagVerbatim,
    Single,
    /// A `'` in a single-quoted scalar: the end, or the first half of `''`.
    SingleEnd,
    Double,
    DoubleEscape,
}

const LEX_STATES: usize = 11;

const LEX_ALL: [Lex; LEX_STATES] = [
    Lex::Start,
    Lex::Plain,
    Lex::PlainSpace,
    Lex::Comment,
    Lex::Anchor,
    Lex::Tag,
    Lex::TagVerbatim,
    Lex::Single,
    Lex::SingleEnd,
    Lex::Double,
    Lex::DoubleEscape,
];

/// A line break as libyaml reads one: CR, LF, and (as the last byte of their UTF-8 form) NEL,
/// LS and PS.
fn is_break_at(text: &[u8], i: usize) -> bool {
    match text[i] {
        b'\n' | b'\r' => true,
        0x85 => i >= 1 && text[i - 1] == 0xc2,
        0xa8 | 0xa9 => i >= 2 && text[i - 2] == 0xe2 && text[i - 1] == 0x80,
        _ => false,
    }
}

/// Blank, line break or the end, after position `i` (a non-ASCII byte may start a NEL, LS or
/// PS, so it counts both ways: `None`).
fn blankz_after(text: &[u8], i: usize) -> Option<bool> {
    match text.get(i + 1) {
        None | Some(b' ' | b'\t' | b'\n' | b'\r') => Some(true),
        Some(b) if *b >= 0x80 => None,
        Some(_) => Some(false),
    }
}

fn is_tag_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b";/?:@&=+$.%!~*'()-_".contains(&b)
}

/// Where flow collections first nest deeper than [`MAX_FLOW_DEPTH`], if they do. libyaml's
/// scanner walks a stack as deep as the flow nesting on every token, so that is checked before
/// it runs. Every state this scanner cannot rule out is followed (a flow collection may start at
/// any `[` or `{`, a non-ASCII byte may be a BOM or a line break, ...), keeping the deepest
/// nesting per state: the result is never below libyaml's depth, and a file that nests less
/// than the limit passes. Linear in the length of the text.
fn flow_depth_exceeded(text: &[u8]) -> Option<usize> {
    let mut depth = [0u32; LEX_STATES];
    let mut i = 0;
    while i < text.len() {
        if depth.iter().all(|d| *d == 0) {
            // Outside any flow collection: on to the next one that may start.
            i = i + memchr::memchr2(b'[', b'{', &text[i..])?;
            depth[Lex::Start as usize] = 1;
            i += 1;
            continue;
        }
        let mut next = [0u32; LEX_STATES];
        for state in LEX_ALL {
            let d = depth[state as usize];
            if d == 0 {
                continue;
            }
            let mut go = |to: Lex, delta: i32| -> bool {
                let nd = d as i64 + delta as i64;
                if nd > MAX_FLOW_DEPTH as i64 {
                    return false;
                }
                if nd > 0 {
                    let slot = &mut next[to as usize];
                    *slot = (*slot).max(nd as u32);
                }
                true
            };
            if !lex_step(state, text, i, &mut go) {
                return Some(i);
            }
        }
        if matches!(text[i], b'[' | b'{') {
            let slot = &mut next[Lex::Start as usize];
            *slot = (*slot).max(1);
        }
        depth = next;
        i += 1;
    }
    None
}

/// One byte of [`flow_depth_exceeded`]: calls `go(next state, depth change)` for each state
/// libyaml may be in after `text[i]`; false when `go` says the limit is passed.
fn lex_step(state: Lex, text: &[u8], i: usize, go: &mut dyn FnMut(Lex, i32) -> bool) -> bool {
    let b = text[i];
    let brk = is_break_at(text, i);
    let blank = b == b' ' || b == b'\t';
    match state {
        Lex::Start => lex_start(text, i, go),
        Lex::Plain | Lex::PlainSpace => {
            if blank || brk {
                go(Lex::PlainSpace, 0)
            } else if b == b'#' && state == Lex::PlainSpace {
                go(Lex::Comment, 0)
            } else if matches!(b, b',' | b'[' | b']' | b'{' | b'}') {
                lex_start(text, i, go)
            } else if b == b':' {
                // `: ` ends the scalar (a value indicator); `:x` is part of it.
                match blankz_after(text, i) {
                    Some(true) => go(Lex::Start, 0),
                    Some(false) => go(Lex::Plain, 0),
                    None => go(Lex::Start, 0) && go(Lex::Plain, 0),
                }
            } else {
                go(Lex::Plain, 0)
            }
        }
        Lex::Comment => go(if brk { Lex::Start } else { Lex::Comment }, 0),
        Lex::Anchor => {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                go(Lex::Anchor, 0)
            } else {
                lex_start(text, i, go)
            }
        }
        Lex::Tag => {
            if is_tag_char(b) {
                go(Lex::Tag, 0)
            } else {
                lex_start(text, i, go)
            }
        }
        Lex::TagVerbatim => {
            if b == b'>' {
                go(Lex::Start, 0)
            } else if is_tag_char(b) || matches!(b, b',' | b'[' | b']' | b'<') {
                go(Lex::TagVerbatim, 0)
            } else {
                lex_start(text, i, go)
            }
        }
        Lex::Single => go(
            if b == b'\'' {
                Lex::SingleEnd
            } else {
                Lex::Single
            },
            0,
        ),
        Lex::SingleEnd => {
            if b == b'\'' {
                go(Lex::Single, 0)
            } else {
                lex_start(text, i, go)
            }
        }
        Lex::Double => match b {
            b'\\' => go(Lex::DoubleEscape, 0),
            b'"' => go(Lex::Start, 0),
            _ => go(Lex::Double, 0),
        },
        Lex::DoubleEscape => go(Lex::Double, 0),
    }
}

/// A token starting at `text[i]` inside a flow collection (libyaml's fetch_next_token).
fn lex_start(text: &[u8], i: usize, go: &mut dyn FnMut(Lex, i32) -> bool) -> bool {
    match text[i] {
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b'?' | b':' => go(Lex::Start, 0),
        b'#' => go(Lex::Comment, 0),
        b'[' | b'{' => go(Lex::Start, 1),
        b']' | b'}' => go(Lex::Start, -1),
        b'-' => match blankz_after(text, i) {
            Some(true) => go(Lex::Start, 0),
            Some(false) => go(Lex::Plain, 0),
            None => go(Lex::Start, 0) && go(Lex::Plain, 0),
        },
        b'*' | b'&' => go(Lex::Anchor, 0),
        b'!' if text.get(i + 1) == Some(&b'<') => go(Lex::TagVerbatim, 0),
        b'!' => go(Lex::Tag, 0),
        b'\'' => go(Lex::Single, 0),
        b'"' => go(Lex::Double, 0),
        // Errors for libyaml, which stops there: any state will do.
        b'|' | b'>' | b'%' | b'@' | b'`' => go(Lex::Start, 0),
        // A BOM (skipped at a line's start), a NEL, LS or PS (line breaks), or a scalar.
        b if b >= 0x80 => go(Lex::Start, 0) && go(Lex::Plain, 0),
        _ => go(Lex::Plain, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::recipe::BUILTIN;

    #[test]
    fn flow_depth_is_never_below_libyamls() {
        let open = |n: usize| "[".repeat(n);
        let close = |n: usize| "]".repeat(n);
        assert_eq!(
            flow_depth_exceeded(format!("x: {}{}", open(128), close(128)).as_bytes()),
            None
        );
        assert_eq!(
            flow_depth_exceeded(format!("x: {}", open(129)).as_bytes()),
            Some(3 + 128)
        );
        // A `]` or `}` that libyaml reads as text does not close anything: in quotes (with
        // their escapes), comments (ended by a NEL too), verbatim tags.
        for hidden in [
            "'}'",
            "\"]\"",
            "\"\\\"]\"",
            "'it''s ]'",
            "# ]\n",
            "# x\u{85}",
            "!<x]>",
        ] {
            let text = format!("x: {}", format!("[ {hidden} ").repeat(200));
            let at = flow_depth_exceeded(text.as_bytes());
            assert!(at.is_some(), "{hidden:?} hides nesting");
        }
        // A bracket that libyaml reads as text (a block-level quote, a comment) does not
        // hide the real nesting that follows.
        for before in ["d: '[['\n", "# [[[[\n", "d: |\n  [[[\n", "d: a ]]] [[ 'b\n"] {
            let text = format!("{before}x: {}{}", open(129), close(129));
            assert!(flow_depth_exceeded(text.as_bytes()).is_some(), "{before:?}");
        }
        // Real files pass: the built-in recipes, brackets in regexes and flow mappings.
        for (_, text) in BUILTIN {
            assert_eq!(flow_depth_exceeded(text.as_bytes()), None);
        }
        let flowing =
            "- bases: [{regex: '^[a-z]+\\[x\\]$'}, {base: '[weird'}, {dir: /a}]\n".repeat(1000);
        assert_eq!(flow_depth_exceeded(flowing.as_bytes()), None);
    }

    #[test]
    fn positions_and_escapes() {
        assert_eq!(line_col(b"ab\ncd\xc3\xa9f", 7), (2, 4));
        assert_eq!(line_col(b"", 0), (1, 1));
        assert_eq!(inert("a\u{1b}[2J\u{202e}b\\n"), "a\\u{1b}[2J\\u{202e}b\\n");
        let e = LoadError {
            file: "x\u{7}.yaml".into(),
            line: Some(1),
            column: Some(2),
            message: "y".repeat(5000),
        };
        let shown = e.to_string();
        assert!(shown.starts_with("x\\u{7}.yaml:1:2: yyy"), "{shown}");
        assert!(shown.ends_with("… (4000 more bytes)"), "{shown}");
    }
}
