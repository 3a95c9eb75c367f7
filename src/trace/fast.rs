//! A fast path for the records that make up nearly every trace: `exec`, `process`, `fork` and
//! `exit` lines exactly as guard writes them (compact JSON, the tag first).
//!
//! It accepts a strict subset of what the general parser (serde_json into the record types)
//! accepts, and gives the same record for it: any byte it is not sure about (whitespace, a
//! `null`, an unknown or repeated key, a number out of range, a byte-string object, an escaped
//! key, an `attempt`) makes it decline, and the line goes through the general parser, whose
//! errors are the ones reported. The differential tests below hold it to that.
//!
//! Each record type's keys, required fields and resets come from one table
//! ([`record_fields!`]), which a test holds to the type's serde fields.
//!
//! Records are filled in place, into records handed back once read ([`Pool`]): a trace is
//! millions of records, and allocating and freeing their strings one by one cost more than
//! reading them.

use crate::event::{Bytes, ExecEvent, ExitEvent, ExitStatus, ForkEvent, Source};

use super::Record;

/// Records already read, whose buffers are reused for the next ones.
#[derive(Default)]
pub(super) struct Pool {
    // Boxed as `Record` holds them: a pooled record goes back into a `Record` as it is.
    #[allow(clippy::vec_box)]
    execs: Vec<Box<ExecEvent>>,
    forks: Vec<ForkEvent>,
    exits: Vec<ExitEvent>,
}

/// Records kept for reuse, per kind, and the largest exec record kept (its buffers' capacity):
/// a record keeps the buffers of the longest line it held, so the pool is bounded in both (at
/// most 4,096 × 8 KiB of exec buffers per parsing thread; a link line of 100 KiB is read into
/// fresh buffers and dropped). 4,096 is about twice the records a parser has in flight: fewer,
/// and records are freed and allocated again all the time.
const POOL_MAX: usize = 4096;
const POOLED_EXEC_MAX: usize = 8 << 10;

/// The heap bytes an exec record holds (the capacity of its buffers).
fn held(e: &ExecEvent) -> usize {
    let bytes = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.0.capacity());
    e.time.capacity()
        + e.exe.0.capacity()
        + bytes(&e.execfn)
        + bytes(&e.script)
        + bytes(&e.cwd)
        + bytes(&e.comm)
        + bytes(&e.step)
        + e.container.as_ref().map_or(0, String::capacity)
        + e.argv.capacity() * std::mem::size_of::<Bytes>()
        + e.argv.iter().map(|a| a.0.capacity()).sum::<usize>()
        + e.content.iter().map(String::capacity).sum::<usize>()
}

impl Pool {
    /// Takes back records that were read.
    pub(super) fn recycle(&mut self, records: &mut Vec<Record>) {
        for r in records.drain(..) {
            match r {
                Record::Exec(e) | Record::Process(e)
                    if self.execs.len() < POOL_MAX && held(&e) <= POOLED_EXEC_MAX =>
                {
                    self.execs.push(e)
                }
                Record::Fork(f) if self.forks.len() < POOL_MAX => self.forks.push(f),
                Record::Exit(x) if self.exits.len() < POOL_MAX => self.exits.push(x),
                _ => {}
            }
        }
    }
}

/// The record on `line` (without its newline), or `None` when the general parser must decide.
#[cfg(test)]
fn parse(line: &[u8]) -> Option<Record> {
    let mut out = Vec::new();
    parse_into(line, &mut out, &mut Pool::default())
        .then(|| out.pop())
        .flatten()
}

/// Appends the record on `line` (without its newline) to `out` and returns `true`, or returns
/// `false` when the general parser must decide.
pub(super) fn parse_into(line: &[u8], out: &mut Vec<Record>, pool: &mut Pool) -> bool {
    let Some(rest) = line.strip_prefix(b"{\"type\":\"") else {
        return false;
    };
    let Some(q) = memchr::memchr(b'"', rest) else {
        return false;
    };
    let (tag, Some(body)) = (&rest[..q], rest[q + 1..].strip_prefix(b",")) else {
        return false;
    };
    // Bytes outside strings must be the ASCII of JSON's syntax to be accepted, and every
    // string is checked as UTF-8 when it is taken: a line that is not UTF-8 is never accepted.
    let mut cur = Cursor { s: body, i: 0 };
    // The object ends the line: serde_json would allow trailing whitespace, the fast path not.
    macro_rules! take {
        ($spare:expr, $blank:expr, $variant:path) => {{
            let mut r = $spare.pop().unwrap_or_else(|| $blank);
            if r.fill(&mut cur).is_some() && cur.i == cur.s.len() {
                out.push($variant(r));
                true
            } else {
                $spare.push(r);
                false
            }
        }};
    }
    match tag {
        b"exec" => take!(pool.execs, Box::new(ExecEvent::blank()), Record::Exec),
        b"process" => take!(pool.execs, Box::new(ExecEvent::blank()), Record::Process),
        b"fork" => take!(
            pool.forks,
            ForkEvent {
                seq: 0,
                time: String::new(),
                pid: 0,
                ppid: 0,
                source: Source::Ptrace,
            },
            Record::Fork
        ),
        b"exit" => take!(
            pool.exits,
            ExitEvent {
                seq: 0,
                time: String::new(),
                pid: 0,
                status: ExitStatus::Code(0),
            },
            Record::Exit
        ),
        _ => false,
    }
}

/// Reads `"key":value` pairs up to the closing brace, calling `field` for each key with the
/// cursor on its value; a key seen twice, or unknown to `field`, ends the fast path. Returns
/// the keys seen, as bits.
fn fields(
    cur: &mut Cursor,
    known: &[&[u8]],
    mut field: impl FnMut(usize, &mut Cursor) -> Option<()>,
) -> Option<u64> {
    let mut seen = 0u64;
    // Guard writes the keys in `known`'s order: the search starts after the last one found.
    let mut after = 0;
    loop {
        let index = cur.known_key(known, after)?;
        after = index + 1;
        if seen & (1 << index) != 0 {
            return None;
        }
        seen |= 1 << index;
        field(index, cur)?;
        match cur.next()? {
            b',' => continue,
            b'}' => return Some(seen),
            _ => return None,
        }
    }
}

/// A record type the fast path fills in place. Implemented only by [`record_fields!`], from
/// one table per type, so that its keys, its required fields and the resets of its optional
/// ones cannot drift apart.
trait Fields {
    /// The keys read, in the order guard writes them; a key's index is its bit in `seen`.
    const KEYS: &'static [&'static [u8]];
    /// The bits of the keys a line must have.
    const REQUIRED: u64;
    /// Fields the fast path never reads: a line that has one is left to the general parser.
    #[cfg(test)]
    const DECLINED: &'static [&'static str];

    /// Reads the value of key `index` into its field.
    fn read(&mut self, index: usize, cur: &mut Cursor) -> Option<()>;

    /// Resets every optional field whose key is not in `seen`, and every declined field.
    fn reset_absent(&mut self, seen: u64);

    /// Fills the record from the object at the cursor (after its tag); every field the line
    /// does not have is reset to its default.
    fn fill(&mut self, cur: &mut Cursor) -> Option<()> {
        let seen = fields(cur, Self::KEYS, |index, cur| self.read(index, cur))?;
        if seen & Self::REQUIRED != Self::REQUIRED {
            return None;
        }
        self.reset_absent(seen);
        Some(())
    }
}

/// What an optional field is on a line without it: serde's default (`None`, empty, `false`),
/// keeping a vector's buffer for the next record.
trait Absent {
    fn reset(&mut self);
}

impl<T> Absent for Option<T> {
    fn reset(&mut self) {
        *self = None;
    }
}

impl<T> Absent for Vec<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl Absent for bool {
    fn reset(&mut self) {
        *self = false;
    }
}

/// Implements [`Fields`] for a record type from its table: one row per field the fast path
/// reads, in the order guard writes them — the field (its name is its key), `required` or
/// `optional` (reset with [`Absent`] when a line lacks it), and how its value is read (`$v`
/// is the field, `$cur` the cursor). `declined` lists the fields left to the general parser.
/// `$keys` names the table's keys, `$index` a module of each key's index.
macro_rules! record_fields {
    (
        $ty:ty, keys $keys:ident, index $index:ident, declined [$($declined:ident),*],
        |$cur:ident, $v:ident| { $($field:ident: $presence:ident => $read:expr,)+ }
    ) => {
        const $keys: &[&[u8]] = &[$(stringify!($field).as_bytes()),+];
        const _: () = assert!($keys.len() <= 64, "`seen` has a bit per key");

        #[allow(non_camel_case_types, non_upper_case_globals, dead_code)]
        mod $index {
            enum Index {
                $($field),+
            }
            $(pub(super) const $field: usize = Index::$field as usize;)+
        }

        impl Fields for $ty {
            const KEYS: &'static [&'static [u8]] = $keys;
            const REQUIRED: u64 = 0 $(| record_fields!(@bit $presence) << $index::$field)+;
            #[cfg(test)]
            const DECLINED: &'static [&'static str] = &[$(stringify!($declined)),*];

            #[inline]
            fn read(&mut self, index: usize, $cur: &mut Cursor) -> Option<()> {
                match index {
                    $($index::$field => {
                        let $v = &mut self.$field;
                        $read;
                    })+
                    _ => return None,
                }
                Some(())
            }

            // (`seen` is unused in a table with no optional field.)
            #[inline]
            fn reset_absent(&mut self, #[allow(unused_variables)] seen: u64) {
                $(record_fields!(@reset $presence, self.$field, seen & 1 << $index::$field);)+
                $(Absent::reset(&mut self.$declined);)*
            }
        }
    };
    (@bit required) => { 1u64 };
    (@bit optional) => { 0u64 };
    (@reset required, $place:expr, $bit:expr) => {};
    (@reset optional, $place:expr, $bit:expr) => {
        if $bit == 0 {
            Absent::reset(&mut $place);
        }
    };
}

record_fields! {
    ExecEvent, keys EXEC_KEYS, index exec_key, declined [attempt], |cur, v| {
        seq: required => *v = cur.unsigned()?,
        time: required => cur.string_into(v)?,
        pid: required => *v = cur.u32()?,
        tgid: required => *v = cur.u32()?,
        ppid: required => *v = cur.u32()?,
        former_tid: optional => *v = Some(cur.u32()?),
        uid: required => *v = cur.u32()?,
        euid: optional => *v = Some(cur.u32()?),
        exe: required => cur.bytes_into(v)?,
        execfn: optional => cur.some_bytes(v)?,
        script: optional => cur.some_bytes(v)?,
        argv: required => cur.array_into(v, Bytes::default, |cur, b| cur.bytes_into(b))?,
        cwd: optional => cur.some_bytes(v)?,
        comm: optional => cur.some_bytes(v)?,
        source: required => *v = cur.source()?,
        sources: optional => cur.array_into(v, || Source::Ptrace, |cur, s| {
            *s = cur.source()?;
            Some(())
        })?,
        container: optional => cur.some_string(v)?,
        step: optional => cur.some_bytes(v)?,
        partial: optional => *v = cur.boolean()?,
        content: optional => cur.array_into(v, String::new, |cur, s| cur.string_into(s))?,
        blocked: optional => *v = cur.boolean()?,
    }
}

record_fields! {
    ForkEvent, keys FORK_KEYS, index fork_key, declined [], |cur, v| {
        seq: required => *v = cur.unsigned()?,
        time: required => cur.string_into(v)?,
        pid: required => *v = cur.u32()?,
        ppid: required => *v = cur.u32()?,
        source: required => *v = cur.source()?,
    }
}

record_fields! {
    ExitEvent, keys EXIT_KEYS, index exit_key, declined [], |cur, v| {
        seq: required => *v = cur.unsigned()?,
        time: required => cur.string_into(v)?,
        pid: required => *v = cur.u32()?,
        status: required => *v = cur.exit_status()?,
    }
}

/// The length of the run of bytes at the start of `s` that a JSON string holds as they are and
/// that are ASCII: not `"`, `\`, a control character or a byte of 0x80 or more. Eight bytes at a
/// time: one pass over a string instead of a search for its end, a scan for control characters
/// and a UTF-8 check.
fn plain_prefix(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// The high bit of each byte of `x` that is zero; exact for the lowest such byte (a borrow
    /// can only mark bytes above it), which is the only one used.
    fn zero_bytes(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let stop = zero_bytes(x ^ (ONES * u64::from(b'"')))
            | zero_bytes(x ^ (ONES * u64::from(b'\\')))
            // Below 0x20: the subtraction borrows into the byte's high bit (bytes of 0x80 and
            // more are marked by `x & HIGH` below).
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
            | (x & HIGH);
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + s[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
        .unwrap_or(s.len() - i)
}

/// A position in a line.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.i)?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// `"key":` for one of the `known` keys, written without escapes; its index. The keys are
    /// tried from `from` on, then from the first.
    fn known_key(&mut self, known: &[&[u8]], from: usize) -> Option<usize> {
        let rest = &self.s[self.i..];
        let (&b'"', rest) = rest.split_first()? else {
            return None;
        };
        // Keys are a few bytes: compared byte by byte, inline (not a call to memcmp per key).
        let index = (from..known.len()).chain(0..from).find(|&i| {
            let k = known[i];
            rest.len() >= k.len() + 2
                && k.iter().zip(rest).all(|(a, b)| a == b)
                && rest[k.len()] == b'"'
                && rest[k.len() + 1] == b':'
        })?;
        self.i += known[index].len() + 3;
        Some(index)
    }

    /// `"key":` for a key without escapes.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = &self.s[self.i..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.i += end + 1;
        self.expect(b':')?;
        Some(&rest[..end])
    }

    /// Digits of a JSON integer that fits a `u64` (no sign, no leading zero, no fraction).
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&b) = self.s.get(self.i) {
            if !b.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.s[start] == b'0') {
            return None;
        }
        // `1.5`, `1e3`: floats, which serde_json does not give to an integer field.
        match self.s.get(self.i) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(n),
        }
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.unsigned()?).ok()
    }

    /// An integer with an optional minus sign (not `-0`, which serde_json reads as a float).
    fn signed(&mut self) -> Option<i64> {
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
            let n = self.unsigned()?;
            if n == 0 {
                return None;
            }
            0i64.checked_sub_unsigned(n)
        } else {
            i64::try_from(self.unsigned()?).ok()
        }
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// A JSON string, unescaped, into `out` (cleared first). Raw control characters and lone
    /// surrogates end the fast path (serde_json refuses both). Returns whether `out` holds raw
    /// bytes that are not ASCII, which the caller must check as UTF-8 (what escapes produce is
    /// UTF-8 by construction, and ASCII is).
    fn text_into(&mut self, out: &mut Vec<u8>) -> Option<bool> {
        out.clear();
        self.expect(b'"')?;
        let mut raw_non_ascii = false;
        loop {
            let rest = &self.s[self.i..];
            let k = plain_prefix(rest);
            out.extend_from_slice(&rest[..k]);
            self.i += k;
            match *rest.get(k)? {
                b'"' => {
                    self.i += 1;
                    return Some(raw_non_ascii);
                }
                b'\\' => {
                    self.i += 1;
                    self.escape_into(out)?;
                }
                c if c >= 0x80 => {
                    raw_non_ascii = true;
                    out.push(c);
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }

    /// The escape after a backslash, unescaped onto `out`.
    fn escape_into(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let escaped = self.next()?;
        match escaped {
            b'"' | b'\\' | b'/' => out.push(escaped),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let unit = self.hex4()?;
                let c = match unit {
                    0xd800..=0xdbff => {
                        if !self.literal(b"\\u") {
                            return None;
                        }
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return None;
                        }
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    }
                    0xdc00..=0xdfff => return None,
                    _ => unit,
                };
                let c = char::from_u32(c)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let mut n = 0u32;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16)?;
        }
        self.i += 4;
        Some(n)
    }

    /// A string into `s`, reusing its buffer.
    fn string_into(&mut self, s: &mut String) -> Option<()> {
        let mut buf = std::mem::take(s).into_bytes();
        if self.text_into(&mut buf)? {
            *s = String::from_utf8(buf).ok()?;
        } else {
            debug_assert!(std::str::from_utf8(&buf).is_ok());
            // SAFETY: `text_into` put no raw byte of 0x80 or more in `buf`, and what it put
            // there for escapes is UTF-8 (`char::encode_utf8`): the bytes are UTF-8.
            *s = unsafe { String::from_utf8_unchecked(buf) };
        }
        Some(())
    }

    /// A byte string written as a plain string (the `{"bytes": …}` form is left to serde),
    /// into `b`, reusing its buffer.
    fn bytes_into(&mut self, b: &mut Bytes) -> Option<()> {
        if self.text_into(&mut b.0)? {
            std::str::from_utf8(&b.0).ok()?;
        }
        Some(())
    }

    fn some_bytes(&mut self, field: &mut Option<Bytes>) -> Option<()> {
        let mut b = field.take().unwrap_or_default();
        self.bytes_into(&mut b)?;
        *field = Some(b);
        Some(())
    }

    fn some_string(&mut self, field: &mut Option<String>) -> Option<()> {
        let mut text = field.take().unwrap_or_default();
        self.string_into(&mut text)?;
        *field = Some(text);
        Some(())
    }

    /// `{"code":N}` or `{"signal":N}`.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.expect(b'{')?;
        let kind = self.key()?;
        let n = i32::try_from(self.signed()?).ok()?;
        self.expect(b'}')?;
        match kind {
            b"code" => Some(ExitStatus::Code(n)),
            b"signal" => Some(ExitStatus::Signal(n)),
            _ => None,
        }
    }

    /// `"ptrace"` or `"connector"`, as written (an escaped form is left to serde).
    fn source(&mut self) -> Option<Source> {
        if self.literal(b"\"ptrace\"") {
            Some(Source::Ptrace)
        } else if self.literal(b"\"connector\"") {
            Some(Source::Connector)
        } else {
            None
        }
    }

    /// An array into `v`, reusing its items' buffers.
    fn array_into<T>(
        &mut self,
        v: &mut Vec<T>,
        fresh: fn() -> T,
        mut item: impl FnMut(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'[')?;
        if self.literal(b"]") {
            v.clear();
            return Some(());
        }
        let mut n = 0;
        loop {
            if n == v.len() {
                v.push(fresh());
            }
            item(self, &mut v[n])?;
            n += 1;
            match self.next()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
        v.truncate(n);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the general parser makes of a line (the fast path's reference).
    fn general(line: &[u8]) -> Option<Record> {
        serde_json::from_slice(line).ok()
    }

    fn exec_record() -> ExecEvent {
        let mut e = ExecEvent::new(42, Source::Ptrace);
        e.seq = 7;
        e.time = "2026-01-01T00:00:00.000000Z".into();
        e.ppid = 1;
        e.uid = 1000;
        e.exe = "/usr/bin/cc".into();
        e.execfn = Some("/usr/bin/cc".into());
        e.argv = vec![
            "cc".into(),
            "-DX=\"1\"".into(),
            "é\u{1F600}\t".into(),
            "".into(),
        ];
        e.cwd = Some("/w".into());
        e.comm = Some("cc".into());
        e
    }

    /// The field names serde gives `T` (what its derived `Deserialize` asks a deserializer
    /// for), in declaration order.
    fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
        use serde::de::{value::Error, Error as _, Visitor};
        struct Names(Option<&'static [&'static str]>);
        impl<'de> serde::Deserializer<'de> for &mut Names {
            type Error = Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
                Err(Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Error> {
                self.0 = Some(fields);
                Err(Error::custom("names taken"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut names = Names(None);
        let _ = T::deserialize(&mut names);
        names.0.expect("a struct with named fields")
    }

    /// `{"type":…` then the entries of `object` in the order of `keys`, as guard writes them.
    fn line_of(object: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Vec<u8> {
        let mut line = format!("{{\"type\":{}", object["type"]).into_bytes();
        for key in keys {
            if let Some(value) = object.get(*key) {
                line.extend_from_slice(format!(",\"{key}\":{value}").as_bytes());
            }
        }
        line.push(b'}');
        line
    }

    /// Holds a record type's table to serde's view of the type, given a record with every
    /// field set (no `None`, no empty vector, no `false`) and how it becomes a `Record`:
    /// - the table has every field serde knows, in order (but the declined ones);
    /// - a line read into a record that had the declined fields set has none of them;
    /// - a line without one of the table's required fields is declined, as serde refuses it;
    /// - a line without one of its optional fields, read into the record that held the full
    ///   line before, reads as serde reads it: nothing of the earlier line is left.
    fn check_table<T>(full: T, record: impl Fn(T) -> Record)
    where
        T: Fields + Clone + serde::Serialize + serde::de::DeserializeOwned,
    {
        let names = serde_fields::<T>();
        let keys: Vec<&str> = T::KEYS
            .iter()
            .map(|k| std::str::from_utf8(k).unwrap())
            .collect();
        let read: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !T::DECLINED.contains(n))
            .collect();
        assert_eq!(keys, read, "the fast path's table and the type's fields");
        assert!(T::DECLINED.iter().all(|d| names.contains(d)));
        let serde_json::Value::Object(mut object) =
            serde_json::to_value(record(full.clone())).unwrap()
        else {
            panic!("a record is an object");
        };
        let written: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| object.contains_key(*n))
            .collect();
        assert_eq!(written, names, "the full record has every field set");
        for declined in T::DECLINED {
            object.remove(*declined);
        }
        let full_line = line_of(&object, names);
        let full_read = general(&full_line).unwrap();
        assert_eq!(parse(&full_line).as_ref(), Some(&full_read));
        // A record the general parser read, declined fields and all, is reused as well.
        let mut pool = Pool::default();
        let mut out = vec![record(full)];
        pool.recycle(&mut out);
        assert!(parse_into(&full_line, &mut out, &mut pool));
        assert_eq!(out.pop().as_ref(), Some(&full_read));
        let full = full_read;
        for (index, key) in keys.iter().enumerate() {
            let mut lacking = object.clone();
            lacking.remove(*key);
            let line = line_of(&lacking, names);
            let text = String::from_utf8_lossy(&line);
            if T::REQUIRED & 1 << index != 0 {
                assert_eq!(general(&line), None, "serde requires {key}: {text}");
                assert_eq!(parse(&line), None, "{text}");
                continue;
            }
            let expected = general(&line).unwrap_or_else(|| panic!("serde reads {text}"));
            assert_ne!(expected, full, "{key} is set in the full record");
            let mut pool = Pool::default();
            let mut out = Vec::new();
            assert!(parse_into(&full_line, &mut out, &mut pool));
            pool.recycle(&mut out);
            assert!(parse_into(&line, &mut out, &mut pool), "{text}");
            assert_eq!(out.pop(), Some(expected), "{key} left out: {text}");
        }
    }

    #[test]
    fn each_table_has_every_field_of_its_type() {
        check_table(
            ExecEvent {
                seq: 1,
                time: "t".into(),
                pid: 2,
                tgid: 3,
                ppid: 4,
                former_tid: Some(5),
                uid: 6,
                euid: Some(7),
                exe: "/bin/e".into(),
                execfn: Some("/bin/f".into()),
                script: Some("/s".into()),
                argv: vec!["a".into()],
                cwd: Some("/w".into()),
                comm: Some("c".into()),
                source: Source::Connector,
                sources: vec![Source::Ptrace, Source::Connector],
                container: Some("k".into()),
                step: Some("build".into()),
                partial: true,
                content: vec!["nginx".into()],
                blocked: true,
                attempt: Some(crate::event::Attempt::new(2, true)),
            },
            |e| Record::Exec(Box::new(e)),
        );
        check_table(
            ForkEvent {
                seq: 1,
                time: "t".into(),
                pid: 2,
                ppid: 3,
                source: Source::Connector,
            },
            Record::Fork,
        );
        check_table(
            ExitEvent {
                seq: 1,
                time: "t".into(),
                pid: 2,
                status: ExitStatus::Signal(9),
            },
            Record::Exit,
        );
    }

    #[test]
    fn reads_what_guard_writes() {
        let mut full = exec_record();
        full.former_tid = Some(43);
        full.euid = Some(0);
        full.script = Some("/s.sh".into());
        full.sources = vec![Source::Ptrace, Source::Connector];
        full.container = Some("abc".into());
        full.step = Some("build".into());
        full.partial = true;
        full.content = vec!["nginx".into()];
        full.blocked = true;
        let records = [
            Record::Exec(Box::new(exec_record())),
            Record::Exec(Box::new(full.clone())),
            Record::Process(Box::new(full)),
            Record::Fork(ForkEvent {
                seq: u64::MAX,
                time: "t".into(),
                pid: u32::MAX,
                ppid: 0,
                source: Source::Connector,
            }),
            Record::Exit(ExitEvent {
                seq: 3,
                time: "t".into(),
                pid: 9,
                status: ExitStatus::Code(-1),
            }),
            Record::Exit(ExitEvent {
                seq: 3,
                time: "t".into(),
                pid: 9,
                status: ExitStatus::Signal(9),
            }),
            Record::Exit(ExitEvent {
                seq: 3,
                time: "t".into(),
                pid: 9,
                status: ExitStatus::Code(i32::MIN),
            }),
        ];
        for r in records {
            let line = serde_json::to_vec(&r).unwrap();
            assert_eq!(parse(&line), Some(r), "{}", String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn leaves_everything_else_to_the_general_parser() {
        let line =
            String::from_utf8(serde_json::to_vec(&Record::Exec(Box::new(exec_record()))).unwrap())
                .unwrap();
        let cases = [
            line.replace(",\"pid\":42", ", \"pid\":42"),
            line.replace("\"pid\":42", "\"pid\":042"),
            line.replace("\"pid\":42", "\"pid\":42.0"),
            line.replace("\"pid\":42", "\"pid\":4e1"),
            line.replace("\"pid\":42", "\"pid\":-42"),
            line.replace("\"pid\":42", "\"pid\":4294967296"),
            line.replace("\"pid\":42", "\"pid\":null"),
            line.replace("\"pid\":42", "\"pid\":42,\"pid\":42"),
            line.replace("\"pid\":42,", ""),
            line.replace("\"pid\":42", "\"pid\":42,\"bogus\":1"),
            line.replace("\"pid\"", "\"p\\u0069d\""),
            line.replace("\"cwd\":\"/w\"", "\"cwd\":null"),
            line.replace("\"cwd\":\"/w\"", "\"cwd\":{\"bytes\":\"L3c=\"}"),
            line.replace("\"cwd\":\"/w\"", "\"cwd\":\"/\\ud800\""),
            line.replace("\"cwd\":\"/w\"", "\"cwd\":\"/\\udc00\""),
            line.replace("\"cwd\":\"/w\"", "\"cwd\":\"/\\x\""),
            line.replace("\"cwd\":\"/w\"", "\"cwd\":\"/\u{1}\""),
            line.replace("\"source\":\"ptrace\"", "\"source\":\"other\""),
            line.replace("\"argv\":[", "\"argv\":[,"),
            line.clone() + " ",
            line.clone() + "}",
            line[..line.len() - 1].to_string(),
            line.replace("{\"type\":\"exec\",", "{\"type\":\"end\","),
        ];
        for case in cases {
            assert_eq!(parse(case.as_bytes()), None, "{case}");
        }
        assert_eq!(parse(b"{\"type\":\"exec\",\"seq\":1,\xff}"), None);
        // Bytes that are not UTF-8 inside strings, raw or next to an escape, in a byte string
        // (argv) and in a text field (time).
        let bytes = line.as_bytes();
        for (from, to) in [
            (&b"\"cc\""[..], &b"\"c\xffc\""[..]),
            (b"\"cc\"", b"\"c\xc3\\u00e9\""),
            (b"\"cc\"", b"\"\\u00e9\xa9\""),
            (b"\"cc\"", b"\"abcdefgh\xe2\x82\""),
            (b"\"2026", b"\"\xff2026"),
        ] {
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
            let case = [&bytes[..at], to, &bytes[at + from.len()..]].concat();
            assert_eq!(parse(&case), None, "{}", String::from_utf8_lossy(&case));
            assert_eq!(general(&case), None);
        }
        // Escapes the general parser decodes, the fast path too.
        let escaped = line.replace(
            "\"cwd\":\"/w\"",
            "\"cwd\":\"\\/\\u00e9\\ud83d\\ude00\\b\\f\\n\\r\\t\\\"\\\\\"",
        );
        assert_eq!(parse(escaped.as_bytes()), general(escaped.as_bytes()));
        assert!(parse(escaped.as_bytes()).is_some());
    }

    #[test]
    fn plain_prefix_stops_where_a_byte_needs_a_look() {
        let reference = |s: &[u8]| {
            s.iter()
                .position(|&c| matches!(c, b'"' | b'\\' | 0..=0x1f | 0x80..=0xff))
                .unwrap_or(s.len())
        };
        let mut s = b"abcdefghijklmnopqrstuvwxyz/._-ABCDEFGHIJ".to_vec();
        assert_eq!(plain_prefix(&s), s.len());
        // Every byte value at every position of a 16-byte run, after every earlier position
        // of a second stop byte (a word's borrow must not hide or fake a stop).
        for len in [0, 1, 7, 8, 9, 16, 17] {
            for at in 0..len {
                for byte in 0..=255u8 {
                    s.clear();
                    s.resize(len, b'a');
                    s[at] = byte;
                    assert_eq!(plain_prefix(&s), reference(&s), "{s:?}");
                    if at + 1 < len {
                        s[at + 1] = 0x00;
                        assert_eq!(plain_prefix(&s), reference(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_matches_exactly_its_own_name() {
        for (index, name) in EXEC_KEYS.iter().enumerate() {
            for (other_index, other) in EXEC_KEYS.iter().enumerate() {
                for tail in [&b"1,\"pid\":2}"[..], b"", b"1"] {
                    let line = [b"\"", *other, b"\":", tail].concat();
                    // Whole, and cut anywhere (a line near its end).
                    for cut in 0..=line.len() {
                        let mut cur = Cursor {
                            s: &line[..cut],
                            i: 0,
                        };
                        let expected = (cut >= other.len() + 3).then_some(other_index);
                        assert_eq!(cur.known_key(EXEC_KEYS, index), expected);
                        assert_eq!(cur.i, expected.map_or(0, |_| other.len() + 3));
                    }
                }
            }
            // One byte off anywhere in the key, its quotes or its colon.
            let line = [b"\"", *name, b"\":1"].concat();
            for i in 0..name.len() + 3 {
                let mut off = line.clone();
                off[i] ^= 0x20;
                let mut cur = Cursor { s: &off, i: 0 };
                assert_ne!(
                    cur.known_key(EXEC_KEYS, index),
                    Some(index),
                    "{:?}",
                    String::from_utf8_lossy(&off)
                );
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z/._-]{0,12}",
            any::<String>(),
            proptest::collection::vec(any::<char>(), 0..6).prop_map(|v| v.into_iter().collect()),
        ]
    }

    prop_compose! {
        fn any_exec()(
            seq in any::<u64>(), time in text(), pid in any::<u32>(), ppid in any::<u32>(),
            former in proptest::option::of(any::<u32>()), euid in proptest::option::of(any::<u32>()),
            exe in text(), execfn in proptest::option::of(text()),
            argv in proptest::collection::vec(text(), 0..5), cwd in proptest::option::of(text()),
            container in proptest::option::of(text()), partial in any::<bool>(),
            content in proptest::collection::vec(text(), 0..2), two in any::<bool>(),
        ) -> ExecEvent {
            let mut e = ExecEvent::new(pid, if two { Source::Connector } else { Source::Ptrace });
            e.seq = seq;
            e.time = time;
            e.ppid = ppid;
            e.former_tid = former;
            e.euid = euid;
            e.exe = exe.as_str().into();
            e.execfn = execfn.map(|s| s.as_str().into());
            e.argv = argv.iter().map(|s| s.as_str().into()).collect();
            e.cwd = cwd.map(|s| s.as_str().into());
            e.container = container;
            e.partial = partial;
            e.content = content;
            if two {
                e.sources = vec![Source::Ptrace, Source::Connector];
            }
            e
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every exec guard can write is read by the fast path, as the general parser reads it.
        #[test]
        fn agrees_with_the_general_parser(e in any_exec()) {
            let line = serde_json::to_vec(&Record::Exec(Box::new(e.clone()))).unwrap();
            prop_assert_eq!(parse(&line), Some(Record::Exec(Box::new(e))));
        }

        /// Records are filled into the buffers of records read before: nothing of an earlier
        /// record may remain in a later one.
        #[test]
        fn reused_records_keep_nothing_of_earlier_ones(execs in proptest::collection::vec(any_exec(), 1..12), order in any::<u64>()) {
            let mut pool = Pool::default();
            let mut out = Vec::new();
            for (i, e) in execs.into_iter().enumerate() {
                let record = match (order >> (i % 64)) & 3 {
                    0 => Record::Process(Box::new(e)),
                    1 => Record::Fork(ForkEvent { seq: e.seq, time: e.time, pid: e.pid, ppid: e.ppid, source: e.source }),
                    2 => Record::Exit(ExitEvent { seq: e.seq, time: e.time, pid: e.pid, status: ExitStatus::Signal(e.ppid as i32) }),
                    _ => Record::Exec(Box::new(e)),
                };
                let line = serde_json::to_vec(&record).unwrap();
                prop_assert!(parse_into(&line, &mut out, &mut pool));
                prop_assert_eq!(out.last(), Some(&record));
                // A line the fast path declines leaves nothing behind either.
                const DECLINED: &[u8] = b"{\"type\":\"exec\",\"seq\":1,\"seq\":2}";
                let before = out.len();
                prop_assert!(!parse_into(DECLINED, &mut out, &mut pool));
                prop_assert_eq!(out.len(), before);
                if i % 3 == 2 {
                    pool.recycle(&mut out);
                }
            }
        }

        /// Whatever a line becomes (bytes changed, cut, inserted), the fast path either leaves
        /// it to the general parser or reads exactly what the general parser reads.
        #[test]
        fn never_reads_a_line_differently(
            e in any_exec(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4),
        ) {
            let mut line = serde_json::to_vec(&Record::Exec(Box::new(e))).unwrap();
            for (at, op, byte) in edits {
                let i = at.index(line.len() + 1);
                let byte = *b"\"\\,:{}[]0-9u .ntfe\x01\xc3"
                    .get(usize::from(byte) % 24)
                    .unwrap_or(&byte);
                match op {
                    0 if i < line.len() => line[i] = byte,
                    1 => line.insert(i, byte),
                    2 if i < line.len() => { line.remove(i); }
                    _ => line.truncate(i),
                }
            }
            if let Some(fast) = parse(&line) {
                prop_assert!(std::str::from_utf8(&line).is_ok());
                prop_assert_eq!(Some(fast), general(&line), "{}", String::from_utf8_lossy(&line));
            }
        }
    }
}
