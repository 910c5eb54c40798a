//! Word matcher of the **count** step (submit → queue → fetch → **count** → NSQ → DB → poll):
//! the last stage of the counting pipeline. It receives decoded text (already stripped of
//! markup in `text` scope) in arbitrary pieces and counts the word with bounded memory.
//!
//! Semantics, identical to running the algorithm once over the whole text:
//! * case-insensitive mode lowercases both needle and text **per `char`** with
//!   [`char::to_lowercase`] (no context, so `Σ` is always `σ`, `İ` becomes `i` + U+0307,
//!   `ẞ` becomes `ß`, and `ß` never equals `ss`); every later step, including the
//!   whole-word boundary test, looks at the lowercased text;
//! * matches are non-overlapping, left to right (`"aa"` in `"aaaa"` is 2);
//! * in whole-word mode a match counts only when the char before and the char after it are
//!   not word chars ([`is_word_char`]); a candidate that fails does not consume text, the
//!   search resumes at the next char;
//! * [`SEPARATOR`] (pushed between blocks of an HTML page) is an ordinary non-word char that
//!   a validated word never contains, so no match can span it.

use memchr::memmem::Finder;

use super::fold_search::FoldFinder;

/// Inserted between text runs that a reader sees as separate (block tags); never part of a
/// valid word because validated words contain no control characters.
pub(crate) const SEPARATOR: char = '\0';

/// Size at which the pending text is scanned; small pieces (single characters from the
/// tokenizer) are batched so the scan cost stays linear.
#[cfg(not(test))]
const SCAN_THRESHOLD: usize = 4096;
/// Tiny in tests, so that every test also exercises the carry-over between scans.
#[cfg(test)]
const SCAN_THRESHOLD: usize = 8;

/// What makes a word char for whole-word matching: a Unicode letter or digit, or `_`.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(is_word_char)
}

/// Appends `s` to `out`, lowercased per char (ASCII runs take a fast path).
pub(crate) fn push_lowercased(out: &mut String, s: &str) {
    // SAFETY: `push_lowercased_bytes` appends only whole chars (valid UTF-8).
    push_lowercased_bytes(unsafe { out.as_mut_vec() }, s);
}

/// [`push_lowercased`] into a byte buffer (the single-word matcher's).
fn push_lowercased_bytes(out: &mut Vec<u8>, s: &str) {
    let mut rest = s;
    while !rest.is_empty() {
        let ascii_len = rest
            .bytes()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        let start = out.len();
        out.extend_from_slice(&rest.as_bytes()[..ascii_len]);
        out[start..].make_ascii_lowercase();
        rest = &rest[ascii_len..];
        if let Some(c) = rest.chars().next() {
            for l in c.to_lowercase() {
                out.extend_from_slice(l.encode_utf8(&mut [0; 4]).as_bytes());
            }
            rest = &rest[c.len_utf8()..];
        }
    }
}

/// Whether `c` is one of the two non-ASCII chars whose per-char lowercase contains an ASCII
/// char: U+212A KELVIN SIGN (→ `k`) and U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE
/// (→ `i` + U+0307). Every other non-ASCII char lowercases to non-ASCII chars only (the
/// test `only_two_non_ascii_chars_lowercase_to_ascii` checks every char); the folds
/// ([`fold_ascii_bytes`]) replace exactly these two.
#[cfg(test)]
fn lowercases_to_ascii(c: char) -> bool {
    c == '\u{212A}' || c == '\u{130}'
}

/// The chars around a match as the whole-word test must see them. Folded text (see
/// [`fold_ascii_from`]) keeps non-ASCII chars as they are, so test their lowercase, as
/// the lowercased text would (the char before is the last char of its lowercase).
pub(crate) fn folded_neighbours(
    folded: bool,
    before: Option<char>,
    after: Option<char>,
) -> (Option<char>, Option<char>) {
    if folded {
        (
            before.and_then(|c| c.to_lowercase().last()),
            after.and_then(|c| c.to_lowercase().next()),
        )
    } else {
        (before, after)
    }
}

/// Whether an ASCII byte is a word char (its lowercase is one exactly when it is one).
#[inline]
fn ascii_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The char a UTF-8 decoder ends with at the end of `w`: the last (at most 4) bytes before
/// a point where a decoded char starts, e.g. the start of a match (a needle begins with
/// an ASCII byte or a lead byte, and a decoder starts a char at every such byte). It is
/// the char `w` ends with when that is whole and valid, else U+FFFD: malformed bytes
/// decode to U+FFFD ("maximal subpart" rule, as `encoding_rs`, `simdutf8` and
/// `String::from_utf8_lossy` do). `None` for no bytes (the start of the text).
fn char_ending(w: &[u8]) -> Option<char> {
    let &last = w.last()?;
    if last.is_ascii() {
        return Some(char::from(last));
    }
    let lead = w.iter().rposition(|&b| b & 0xC0 != 0x80);
    let whole = lead.and_then(|p| std::str::from_utf8(&w[p..]).ok());
    Some(whole.and_then(|s| s.chars().next()).unwrap_or('\u{FFFD}'))
}

/// The char a UTF-8 decoder reads at `hay[at..]` (`at` is where a decoded char starts, e.g.
/// the end of a match): `Some(None)` at the end of `hay`, `None` while `hay` ends inside
/// a sequence that is valid so far (unknown yet), U+FFFD for malformed bytes.
fn char_starting(hay: &[u8], at: usize) -> Option<Option<char>> {
    let Some(&b) = hay.get(at) else {
        return Some(None);
    };
    if b.is_ascii() {
        return Some(Some(char::from(b)));
    }
    let w = &hay[at..hay.len().min(at + 4)];
    let valid = match std::str::from_utf8(w) {
        Ok(s) => s,
        Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&w[..e.valid_up_to()]).ok()?,
        Err(e) => return e.error_len().map(|_| Some('\u{FFFD}')),
    };
    Some(valid.chars().next())
}

/// Whole-word test of the char before `hay[at..]` (`prev` when `at == 0`), as
/// [`folded_neighbours`] sees it; an ASCII byte is decided without decoding a char.
#[inline]
pub(crate) fn word_before(hay: &str, at: usize, prev: Option<char>, folded: bool) -> bool {
    match at.checked_sub(1).map(|i| hay.as_bytes()[i]) {
        Some(b) if b.is_ascii() => ascii_word(b),
        Some(_) => is_word(folded_neighbours(folded, hay[..at].chars().next_back(), None).0),
        None => is_word(folded_neighbours(folded, prev, None).0),
    }
}

/// [`word_before`] on bytes that may be malformed UTF-8: `prev` holds the bytes before
/// `hay[0]`.
#[inline]
fn word_before_bytes(hay: &[u8], at: usize, prev: &Tail, folded: bool) -> bool {
    let c = match at.checked_sub(1).map(|i| hay[i]) {
        Some(b) if b.is_ascii() => return ascii_word(b),
        Some(_) if at >= 4 => char_ending(&hay[at - 4..at]),
        _ => char_ending(prev.then(&hay[..at]).get()),
    };
    is_word(folded_neighbours(folded, c, None).0)
}

/// Whole-word test of the char at `hay[at..]`: `None` when it is not known yet (`hay`
/// ends there, or inside that char), else as [`word_before`]. `hay` may be malformed
/// UTF-8 (see [`char_starting`]).
#[inline]
pub(crate) fn word_after(hay: &[u8], at: usize, folded: bool) -> Option<bool> {
    match *hay.get(at)? {
        b if b.is_ascii() => Some(ascii_word(b)),
        _ => Some(is_word(
            folded_neighbours(folded, None, char_starting(hay, at)?).1,
        )),
    }
}

/// The last (at most 4) bytes before a matcher's buffer: enough to decode the char before
/// it, whole or malformed (see [`char_ending`]), when its bytes came in another piece.
#[derive(Clone, Copy, Default)]
pub(crate) struct Tail {
    bytes: [u8; 4],
    len: u8,
}

impl Tail {
    /// The tail after `s` is appended.
    fn then(self, s: &[u8]) -> Tail {
        let mut all = [0u8; 8];
        let old = usize::from(self.len);
        let take = s.len().min(4);
        all[..old].copy_from_slice(&self.bytes[..old]);
        all[old..old + take].copy_from_slice(&s[s.len() - take..]);
        let n = old + take;
        let keep = n.min(4);
        let mut bytes = [0u8; 4];
        bytes[..keep].copy_from_slice(&all[n - keep..n]);
        Tail {
            bytes,
            len: keep as u8,
        }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// How many bytes at the end of `b` are a sequence that is valid so far but not whole
/// (its last bytes come with the next piece); 0 when `b` ends with a whole char, or with
/// malformed bytes.
fn incomplete_suffix(b: &[u8]) -> usize {
    let from = b.len().saturating_sub(3);
    let Some(p) = b[from..].iter().rposition(|&x| x & 0xC0 != 0x80) else {
        return 0;
    };
    let tail = &b[from + p..];
    match std::str::from_utf8(tail) {
        Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => tail.len(),
        _ => 0,
    }
}

/// Folds `out[start..]` in place for an ASCII needle: ASCII letters lowercased, the two
/// chars of [`lowercases_to_ascii`] replaced by their lowercase, every other char kept as
/// is. For a needle made of ASCII chars, the matches in the folded text are exactly those
/// in the per-char lowercased text ([`push_lowercased`]): both texts have the same ASCII
/// runs, separated by non-ASCII chars. Only the whole-word test has to lowercase the
/// (non-ASCII) char it looks at, see `Matcher::fold_ascii`. Folding is per char, so
/// folding a concatenation equals concatenating the folded pieces: the matchers append
/// pieces as they come and fold all that is pending once, just before a scan.
/// Pure-ASCII blocks of 32 bytes (nearly all of a typical page) take a SIMD-friendly path.
pub(crate) fn fold_ascii_from(out: &mut String, start: usize) {
    // SAFETY: `fold_ascii_bytes` changes only ASCII bytes, into ASCII bytes, and replaces
    // whole chars by whole chars, so the string stays valid UTF-8.
    fold_ascii_bytes(unsafe { out.as_mut_vec() }, start);
}

/// [`fold_ascii_from`] on bytes that may be malformed UTF-8 (the raw scope's): the two
/// special chars are replaced only where they are whole (a decoder reads them as such
/// wherever they are: each starts with a lead byte); every other byte is kept or, if
/// ASCII, lowercased.
fn fold_ascii_bytes(out: &mut Vec<u8>, start: usize) {
    let region = &mut out[start..];
    let mut special = false;
    let (blocks, tail) = region.as_chunks_mut::<32>();
    for block in blocks {
        // Fixed-size lanes: the compiler turns both loops into a few SIMD instructions.
        if block.iter().fold(0, |a, &b| a | b) < 0x80 {
            for b in block.iter_mut() {
                *b = b.to_ascii_lowercase();
            }
        } else {
            block.make_ascii_lowercase();
            special = true;
        }
    }
    special |= fold_ascii_swar(tail);
    // Only blocks with a non-ASCII byte can hold U+212A (E2 84 AA) or U+0130 (C4 B0).
    if special {
        const KELVIN: &[u8] = "\u{212A}".as_bytes();
        const DOTTED_I: &[u8] = "\u{130}".as_bytes();
        let bytes = &out[start..];
        let at_special =
            |i: usize| bytes[i..].starts_with(KELVIN) || bytes[i..].starts_with(DOTTED_I);
        if memchr::memchr2_iter(0xE2, 0xC4, bytes).any(at_special) {
            let mut folded = Vec::with_capacity(bytes.len() + 8);
            let mut last = 0;
            for i in memchr::memchr2_iter(0xE2, 0xC4, bytes) {
                if i < last || !at_special(i) {
                    continue;
                }
                folded.extend_from_slice(&bytes[last..i]);
                if bytes[i..].starts_with(KELVIN) {
                    folded.push(b'k');
                    last = i + KELVIN.len();
                } else {
                    folded.extend_from_slice("i\u{307}".as_bytes());
                    last = i + DOTTED_I.len();
                }
            }
            folded.extend_from_slice(&bytes[last..]);
            out.truncate(start);
            out.extend_from_slice(&folded);
        }
    }
}

/// Lowercases the ASCII letters of `bytes` in place, eight bytes at a time in a `u64`
/// (SWAR), and says whether any byte is non-ASCII; non-ASCII bytes are left as they are.
/// Text-scope pieces are short (≈ 23 bytes between tags on a documentation page), so they
/// rarely fill a 32-byte block: this is their path, at a few instructions per 8 bytes
/// instead of a branch per byte (callgrind: 134 → see BENCHMARKS.md, per piece).
#[inline]
fn fold_ascii_swar(bytes: &mut [u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut seen = 0u64;
    let (words, rest) = bytes.as_chunks_mut::<8>();
    for w in words {
        let x = u64::from_ne_bytes(*w);
        seen |= x;
        let h = x & LOW7;
        // Per byte, no carries (h <= 0x7f): the top bit of `h + (0x80 - c)` says h >= c.
        let at_least_a = h + 0x3f3f_3f3f_3f3f_3f3f;
        let past_z = h + 0x2525_2525_2525_2525;
        // An ASCII upper-case letter: >= 'A', not > 'Z', and its own top bit clear.
        let upper = at_least_a & !past_z & !x & HIGH;
        // 0x80 >> 2 = 0x20, the case bit, in the same byte.
        *w = (x | (upper >> 2)).to_ne_bytes();
    }
    for b in rest {
        seen |= u64::from(*b);
        b.make_ascii_lowercase();
    }
    seen & HIGH != 0
}

/// Largest char boundary of `s` that is `<= i`.
pub(crate) fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// [`floor_char_boundary`] on bytes that may be malformed: steps back over at most three
/// continuation bytes (a char has at most three), so the result is a char start in valid
/// text and never later than `i` in any text.
fn floor_boundary(b: &[u8], i: usize) -> usize {
    let mut i = i.min(b.len());
    for _ in 0..3 {
        if i == 0 || i == b.len() || b[i] & 0xC0 != 0x80 {
            break;
        }
        i -= 1;
    }
    i
}

/// Where the text a matcher keeps for its next scan starts, after a scan of `hay` that
/// stopped at `pos` (`pending`: the start of a match whose next char is unknown yet). A
/// match that straddles into the next piece starts in the last `n - 1` bytes — counted
/// before a char cut at the end of `hay`, which may fold into other bytes (U+0130 →
/// `i` + U+0307) once whole; that cut char is always kept.
fn keep_from(hay: &[u8], pos: usize, pending: Option<usize>, n: usize) -> usize {
    let whole = hay.len() - incomplete_suffix(hay);
    match pending {
        Some(m) => m,
        None => pos.max(floor_boundary(hay, whole.saturating_sub(n - 1))),
    }
    .min(whole)
}

/// Streaming, non-overlapping counter of one needle.
///
/// It takes decoded text ([`push_str`](Matcher::push_str)) or, when
/// [`takes_bytes`](Matcher::takes_bytes), a UTF-8 body's bytes as they came, not validated
/// ([`push_bytes`](Matcher::push_bytes)), with the same counts: a needle is valid UTF-8
/// and starts with an ASCII or lead byte, where a decoder starts a char whatever came
/// before, so its matches in the bytes are its matches in the decoded text (malformed
/// bytes decode to U+FFFD, which such a needle does not contain), and the whole-word test
/// decodes the neighbour chars itself ([`char_ending`], [`char_starting`]).
///
/// Memory: the pending buffer is trimmed after every scan to at most the needle length
/// (plus the bytes before, kept as `prev`), so it is independent of the text size.
pub(crate) struct Matcher {
    /// `None` when the needle is empty: nothing can be counted.
    finder: Option<Finder<'static>>,
    needle_len: usize,
    /// Bytes of the needle's first char: what a failed whole-word candidate consumes.
    first_len: usize,
    case_insensitive: bool,
    /// Case-insensitive with an all-ASCII (lowercased) needle: `buf` holds the text
    /// [folded](fold_ascii_from) instead of lowercased, a cheaper copy with the same
    /// matches; the whole-word test lowercases the neighbour char it looks at.
    fold_ascii: bool,
    /// With `fold_ascii`: the case-insensitive search that lets large pieces be searched
    /// where they are, unfolded (see [`Matcher::scan_in_place`]).
    fold_finder: Option<FoldFinder>,
    /// With `fold_ascii`: the special char sequence of [`lowercases_to_ascii`] (UTF-8)
    /// that can take part in a match of this needle, so a piece holding it must be folded:
    /// U+212A (→ `k`) when the needle has a `k`, U+0130 (→ `i` + U+0307) when it ends
    /// with `i` (no ASCII char can follow that `i` inside a match). One at most is kept
    /// for each: see `fold_needed`.
    specials: [Option<Finder<'static>>; 2],
    /// See [`Matcher::takes_bytes`].
    takes_bytes: bool,
    whole_word: bool,
    /// Text not yet resolved: a possible match may start in it. UTF-8, except after
    /// [`push_bytes`](Matcher::push_bytes) of malformed bytes.
    buf: Vec<u8>,
    /// With `fold_ascii`: `buf[..folded]` is folded, the rest is text as it came. Pieces
    /// are appended as they are and folded in one pass just before a scan: text-scope
    /// pieces are short (≈ 23 bytes between tags), and folding each on arrival cost ~130
    /// instructions a piece (callgrind), about a tenth of the embedded service's work.
    folded: usize,
    /// The bytes just before `buf[0]`, for the whole-word "before" test.
    prev: Tail,
    count: u64,
}

impl Matcher {
    /// Builds a matcher for `word` with the given options.
    pub(crate) fn new(word: &str, case_sensitive: bool, whole_word: bool) -> Self {
        let mut needle = String::with_capacity(word.len());
        if case_sensitive {
            needle.push_str(word);
        } else {
            push_lowercased(&mut needle, word);
        }
        let finder = (!needle.is_empty()).then(|| Finder::new(needle.as_bytes()).into_owned());
        let fold_ascii = !case_sensitive && needle.is_ascii();
        let fold_finder = fold_ascii
            .then(|| FoldFinder::new(needle.as_bytes()))
            .flatten();
        let special = |wanted: bool, c: char| {
            wanted.then(|| Finder::new(c.encode_utf8(&mut [0; 4]).as_bytes()).into_owned())
        };
        let specials = [
            special(needle.contains('k'), '\u{212A}'),
            special(needle.ends_with('i'), '\u{130}'),
        ];
        Matcher {
            finder,
            needle_len: needle.len(),
            first_len: needle.chars().next().map_or(1, char::len_utf8),
            case_insensitive: !case_sensitive,
            fold_ascii,
            fold_finder,
            specials,
            takes_bytes: fold_ascii || (case_sensitive && !needle.contains('\u{FFFD}')),
            whole_word,
            buf: Vec::new(),
            folded: 0,
            prev: Tail::default(),
            count: 0,
        }
    }

    /// Whether [`push_bytes`](Matcher::push_bytes) may be used: the needle is matched
    /// byte for byte (case-sensitive, or case-insensitive and ASCII: folding bytes never
    /// needs to decode them) and does not contain U+FFFD (which malformed bytes would
    /// decode to). A case-insensitive non-ASCII needle needs the text lowercased per char.
    pub(crate) fn takes_bytes(&self) -> bool {
        self.takes_bytes
    }

    /// Feeds the next piece of text.
    #[inline]
    pub(crate) fn push_str(&mut self, s: &str) {
        if self.case_insensitive && !self.fold_ascii {
            if self.finder.is_some() && !s.is_empty() {
                push_lowercased_bytes(&mut self.buf, s);
                self.maybe_scan();
            }
            return;
        }
        self.push_bytes(s.as_bytes());
    }

    /// Feeds the next bytes of a UTF-8 body as they came (cut anywhere, malformed or
    /// not); only when [`takes_bytes`](Matcher::takes_bytes). Saves validating the body:
    /// in the raw scope, that was a fifth of the work (callgrind, BENCHMARKS.md).
    #[inline]
    pub(crate) fn push_bytes(&mut self, s: &[u8]) {
        if self.finder.is_none() || s.is_empty() {
            return;
        }
        let large = s.len() >= SCAN_THRESHOLD.max(self.needle_len.saturating_mul(2) + 8);
        if large && self.may_search_in_place(s) {
            self.scan_in_place(s);
            return;
        }
        // Folded by `scan` (with `fold_ascii`), together with everything else pending.
        self.buf.extend_from_slice(s);
        self.maybe_scan();
    }

    /// Whether a large piece may be searched where it is: always, unless folding needs
    /// the copy (a special char in `s`, or one that may be cut between `buf` and `s`,
    /// i.e. `buf` ends inside a char).
    fn may_search_in_place(&self, s: &[u8]) -> bool {
        !self.fold_ascii
            || (self.fold_finder.is_some()
                && !self.fold_needed(s)
                && incomplete_suffix(&self.buf) == 0)
    }

    /// Whether `s` holds a special char ([`lowercases_to_ascii`]) that a match of this
    /// needle could run through, so that only the folded copy gives the right matches.
    /// Every other special char is a non-ASCII char the ASCII search never matches, and
    /// the whole-word test lowercases neighbours itself ([`folded_neighbours`]).
    fn fold_needed(&self, s: &[u8]) -> bool {
        self.specials.iter().flatten().any(|f| f.find(s).is_some())
    }

    /// Fast path for a large piece: searches `s` where it is instead of copying it into
    /// `buf` first, so the raw scope's cost is one search pass: memmem when case-sensitive,
    /// the [`FoldFinder`] over the unfolded text when folding (then `buf` stays folded
    /// text: the carried-over tail of `s` is folded when kept). Matches that start in the
    /// carried-over `buf` are decided on `buf` plus the head of `s`; the rest of `s` is
    /// searched in place, and only its unresolved tail is kept.
    fn scan_in_place(&mut self, s: &[u8]) {
        if self.fold_ascii {
            // What is pending must be folded text before it is searched with `s`'s head.
            fold_ascii_bytes(&mut self.buf, self.folded);
        }
        let n = self.needle_len;
        let old_len = self.buf.len();
        let mut pos_in_s = 0;
        let mut prev_of_s = self.prev;
        if old_len > 0 {
            // Enough of `s` for any match starting in `buf`, and the char after it.
            let head = (n + 4).min(s.len());
            self.buf.extend_from_slice(&s[..head]);
            let buf = std::mem::take(&mut self.buf);
            let (pos, _pending) = self.scan_hay(&buf, 0, old_len, self.prev, false, true);
            // `_pending` is always `None`: `head` holds the char after any such match.
            pos_in_s = pos.saturating_sub(old_len);
            prev_of_s = self.prev.then(&buf[..old_len]);
            self.buf = buf;
            self.buf.clear();
        }
        let (pos, pending) = self.scan_hay(s, pos_in_s, usize::MAX, prev_of_s, false, true);
        let keep_from = keep_from(s, pos, pending, n);
        self.prev = prev_of_s.then(&s[..keep_from]);
        // `buf` is empty here; with `fold_ascii` the kept tail is folded by the next scan.
        self.folded = 0;
        self.buf.extend_from_slice(&s[keep_from..]);
    }

    /// Feeds a word separator (a block boundary of an HTML page).
    pub(crate) fn push_separator(&mut self) {
        if self.finder.is_none() {
            return;
        }
        self.buf.push(SEPARATOR as u8);
        self.maybe_scan();
    }

    fn maybe_scan(&mut self) {
        if self.buf.len() >= SCAN_THRESHOLD.max(self.needle_len.saturating_mul(2)) {
            self.scan(false);
        }
    }

    /// Ends the text and returns the number of matches.
    pub(crate) fn finish(mut self) -> u64 {
        self.scan(true);
        self.count
    }

    /// Resolves every match it can in `buf`, then trims `buf` to the part where an
    /// unresolved match may still start, or a char cut at its end may still complete. At
    /// the end of the text (`at_end`) the char after a match that touches the end is
    /// "none" (or U+FFFD for a cut char), which is not a word char.
    fn scan(&mut self, at_end: bool) {
        if self.finder.is_none() {
            return;
        }
        if self.fold_ascii {
            fold_ascii_bytes(&mut self.buf, self.folded);
        }
        let buf = std::mem::take(&mut self.buf);
        let (pos, pending) = self.scan_hay(&buf, 0, usize::MAX, self.prev, at_end, false);
        let keep_from = keep_from(&buf, pos, pending, self.needle_len);
        self.buf = buf;
        if keep_from > 0 {
            self.prev = self.prev.then(&self.buf[..keep_from]);
            self.buf.drain(..keep_from);
        }
        // A cut char at the end is not folded yet: it may be a special one.
        self.folded = self.buf.len() - incomplete_suffix(&self.buf);
    }

    /// Counts the matches of `hay` that start in `start..limit`; `prev` holds the bytes
    /// before `hay[0]`. Returns where the search would go on, and the start of a
    /// whole-word match whose following char is not known yet (it ends at or just before
    /// the end of `hay`, not `at_end`). `unfolded`: `hay` may hold text that is not folded
    /// (only from `scan_in_place`), searched with the case-insensitive finder.
    fn scan_hay(
        &mut self,
        hay: &[u8],
        start: usize,
        limit: usize,
        prev: Tail,
        at_end: bool,
        unfolded: bool,
    ) -> (usize, Option<usize>) {
        let Some(finder) = &self.finder else {
            return (start, None);
        };
        let fold_finder = self.fold_finder.as_ref().filter(|_| unfolded);
        let find = |h: &[u8]| match fold_finder {
            Some(f) => f.find(h),
            None => finder.find(h),
        };
        let n = self.needle_len;
        let mut pos = start;
        let mut pending = None;
        while let Some(i) = find(&hay[pos..]) {
            let m = pos + i;
            if m >= limit {
                break;
            }
            let end = m + n;
            if !self.whole_word {
                self.count += 1;
                pos = end;
                continue;
            }
            let after = match word_after(hay, end, self.fold_ascii) {
                Some(w) => w,
                None if at_end => false,
                None => {
                    pending = Some(m);
                    break;
                }
            };
            if !after && !word_before_bytes(hay, m, &prev, self.fold_ascii) {
                self.count += 1;
                pos = end;
            } else {
                // A failed candidate consumes only its first char.
                pos = m + self.first_len;
            }
        }
        (pos, pending)
    }
}

/// Appends `s` to `out`, folded (the tests' way to fold a piece).
#[cfg(test)]
pub(crate) fn push_folded_ascii(out: &mut String, s: &str) {
    let start = out.len();
    out.push_str(s);
    fold_ascii_from(out, start);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Splits `text` at the given byte offsets (moved down to char boundaries).
    pub(crate) fn split_at<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|&c| floor_char_boundary(text, c.min(text.len())))
            .collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut last = 0;
        for c in cuts {
            parts.push(&text[last..c]);
            last = c;
        }
        parts.push(&text[last..]);
        parts
    }

    /// Independent, non-streaming reference of the documented semantics (char vectors).
    pub(crate) fn reference(text: &str, word: &str, case_sensitive: bool, whole: bool) -> u64 {
        let low = |s: &str| -> Vec<char> {
            if case_sensitive {
                s.chars().collect()
            } else {
                s.chars().flat_map(char::to_lowercase).collect()
            }
        };
        let (t, w) = (low(text), low(word));
        if w.is_empty() {
            return 0;
        }
        let (mut i, mut count) = (0, 0);
        while i + w.len() <= t.len() {
            if t[i..i + w.len()] == w[..] {
                let before = i.checked_sub(1).map(|j| t[j]);
                let after = t.get(i + w.len()).copied();
                if !whole || (!is_word(before) && !is_word(after)) {
                    count += 1;
                    i += w.len();
                    continue;
                }
            }
            i += 1;
        }
        count
    }

    fn streamed(pieces: &[&str], word: &str, cs: bool, whole: bool) -> u64 {
        let mut m = Matcher::new(word, cs, whole);
        for p in pieces {
            m.push_str(p);
            m.scan(false); // force a scan at every piece to exercise the tail logic
        }
        m.finish()
    }

    #[test]
    fn overlapping_is_non_overlapping_left_to_right() {
        assert_eq!(streamed(&["aaaa"], "aa", true, false), 2);
        assert_eq!(streamed(&["aaaaa"], "aa", true, false), 2);
        assert_eq!(streamed(&["a", "a", "a", "a"], "aa", true, false), 2);
        assert_eq!(streamed(&["abababa"], "aba", true, false), 2);
        assert_eq!("abababa".matches("aba").count(), 2);
    }

    #[test]
    fn straddling_matches_count() {
        assert_eq!(streamed(&["xx pyt", "hon yy"], "python", true, true), 1);
        assert_eq!(
            streamed(&["p", "y", "t", "h", "o", "n"], "python", true, true),
            1
        );
        assert_eq!(streamed(&["python", "ic"], "python", true, true), 0);
        assert_eq!(streamed(&["python", "ic"], "python", true, false), 1);
        assert_eq!(streamed(&["python", ""], "python", true, true), 1);
        assert_eq!(streamed(&["a", "python"], "python", true, true), 0);
    }

    #[test]
    fn whole_word_failure_does_not_consume() {
        // "aa" at 0 fails (followed by 'a'), 1 fails, 2 fails ... none is whole.
        assert_eq!(streamed(&["aaaa"], "aa", true, true), 0);
        // "a-" at 0 fails ('a' after), "a-" at 2 succeeds.
        assert_eq!(streamed(&["a-a-"], "a-", true, true), 1);
        // Failing candidate "xpython" must not hide the later whole one.
        assert_eq!(streamed(&["xpython python"], "python", true, true), 1);
        // "-a" in "-a-a": at 0 followed by '-', preceded by nothing: counts; then "-a" at 2:
        // preceded by 'a' (word): fails.
        assert_eq!(streamed(&["-a-a"], "-a", true, true), 1);
        // "a-a" at 1 fails ('x' before); the overlapping "a-a" at 3 is whole.
        assert_eq!(streamed(&["xa-a-a"], "a-a", true, true), 1);
    }

    #[test]
    fn separator_blocks_matches() {
        let mut m = Matcher::new("python", true, false);
        m.push_str("py");
        m.push_separator();
        m.push_str("thon");
        assert_eq!(m.finish(), 0);
    }

    #[test]
    fn case_folding_is_per_char() {
        assert_eq!(streamed(&["PYTHON Python"], "python", false, true), 2);
        assert_eq!(streamed(&["PYTHON Python"], "python", true, true), 0);
        // Greek: per-char lowercase maps Σ to σ even at word end, so ΟΔΟΣ matches οδοσ
        // but not the final-sigma spelling οδος.
        assert_eq!(streamed(&["ΟΔΟΣ"], "οδοσ", false, true), 1);
        assert_eq!(streamed(&["ΟΔΟΣ"], "οδος", false, true), 0);
    }

    #[test]
    fn buffer_stays_bounded() {
        let mut m = Matcher::new("python", false, true);
        let chunk = "Python, pythonic and py thon; ".repeat(100);
        for _ in 0..2000 {
            m.push_str(&chunk);
            assert!(m.buf.len() < 4096 + chunk.len() * 2);
        }
        m.scan(false);
        assert!(m.buf.len() <= 6, "{}", m.buf.len());
        assert_eq!(m.finish(), 100 * 2000);
    }

    #[test]
    fn only_two_non_ascii_chars_lowercase_to_ascii() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            if !c.is_ascii() {
                let has_ascii = c.to_lowercase().any(|l| l.is_ascii());
                assert_eq!(has_ascii, lowercases_to_ascii(c), "{c:?}");
            }
        }
    }

    #[test]
    fn folding_lowercases_ascii_and_the_two_specials() {
        let mut s = String::from("x");
        push_folded_ascii(
            &mut s,
            "HELLO, World! \u{212A}elvin İx ÉTÉ AbCdEfGhIjKlMnOp",
        );
        assert_eq!(s, "xhello, world! kelvin i\u{307}x ÉtÉ abcdefghijklmnop");
        // Long enough for the 32-byte blocks, with a special char in a block and in the tail.
        let text =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~ \u{212A}\u{130}xÉ"
                .repeat(5);
        let mut s = String::new();
        push_folded_ascii(&mut s, &text);
        let want: String = text
            .chars()
            .flat_map(|c| {
                let l: Vec<char> = if c.is_ascii() || lowercases_to_ascii(c) {
                    c.to_lowercase().collect()
                } else {
                    vec![c]
                };
                l
            })
            .collect();
        assert_eq!(s, want);
    }

    #[test]
    fn folded_ascii_path_handles_kelvin_and_dotted_i() {
        let m = Matcher::new("k", false, true);
        assert!(m.fold_ascii);
        // U+212A KELVIN SIGN lowercases to 'k'; U+0130 to 'i' + U+0307 (not a word char).
        assert_eq!(streamed(&["\u{212A} K k"], "k", false, true), 3);
        assert_eq!(streamed(&["\u{212A}\u{212A}"], "kk", false, false), 1);
        assert_eq!(streamed(&["\u{130}x"], "ix", false, false), 0);
        assert_eq!(streamed(&["\u{130}x"], "x", false, true), 1);
        assert_eq!(streamed(&["\u{130}"], "i", false, true), 1);
        assert_eq!(streamed(&["éx"], "x", false, true), 0);
        assert_eq!(streamed(&["Éx"], "x", false, true), 0);
    }

    #[test]
    fn in_place_fold_search_is_used_and_handles_the_specials() {
        let m = Matcher::new("Python", false, true);
        assert!(m.fold_finder.is_some());
        assert!(m.specials.iter().all(Option::is_none));
        let m = Matcher::new("kit", false, true);
        assert!(m.specials[0].is_some() && m.specials[1].is_none());
        let m = Matcher::new("hi", false, true);
        assert!(m.specials[0].is_none() && m.specials[1].is_some());
        // Large pieces (in place) with the specials inside and around matches.
        let big =
            "x PYTHON \u{212A}it KIT kit-\u{212A}IT hİ Hi hi\u{130} python_ Python ".repeat(3);
        for word in ["python", "kit", "hi", "i", "k", "t h"] {
            for whole in [false, true] {
                let text = format!("{big}{big}");
                assert_eq!(
                    streamed(&[&big, &big], word, false, whole),
                    reference(&text, word, false, whole),
                    "{word} {whole}"
                );
            }
        }
    }

    /// Counts with the in-place search (when `in_place`) or the folding copy only.
    fn fold_counted(pieces: &[&str], word: &str, whole: bool, in_place: bool) -> u64 {
        let mut m = Matcher::new(word, false, whole);
        assert!(m.fold_ascii);
        if !in_place {
            m.fold_finder = None;
        }
        for p in pieces {
            m.push_str(p);
        }
        m.finish()
    }

    proptest::proptest! {
        /// The in-place case-insensitive search against the folding path and a naive
        /// lowercase-and-count, on mixed-case text with the two special chars, short
        /// needles and needles with non-letters, cut anywhere (so matches straddle the
        /// pieces, as they straddle 16 KiB chunks).
        #[test]
        fn in_place_fold_search_equals_folding(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "p", "P", "y", "Y", "k", "K", "\u{212A}", "i", "I", "\u{130}", "-", " ",
                    "_", "é", "1", "ı", "h", "H", "PyK", "pYi", "\u{307}",
                ]),
                0..120,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            word in proptest::sample::select(vec![
                "p", "k", "i", "py", "pyk", "yi", "ki", "-k", "p-", "k k", "h_i", "pypy",
                "1p", "ik",
            ]),
            whole in proptest::bool::ANY,
        ) {
            let text = pieces.concat();
            let parts = split_at(&text, &cuts);
            let in_place = fold_counted(&parts, word, whole, true);
            proptest::prop_assert_eq!(in_place, fold_counted(&parts, word, whole, false));
            proptest::prop_assert_eq!(in_place, reference(&text, word, false, whole));
            if !whole {
                let naive = text.to_lowercase().matches(word).count() as u64;
                // `str::to_lowercase` maps a final Σ by context; there is none here.
                proptest::prop_assert_eq!(in_place, naive);
            }
        }
    }

    proptest::proptest! {
        /// Bytes pushed as they came ([`Matcher::push_bytes`]: cut anywhere, inside a
        /// char or not, malformed or not) count what the reference counts in their decoded
        /// text (malformed bytes become U+FFFD by the maximal-subpart rule, which
        /// `from_utf8_lossy` follows too). Pieces of every size, so both the copy and the
        /// in-place search see cut chars, cut special chars and malformed bytes at their
        /// edges.
        #[test]
        fn bytes_count_as_their_decoded_text(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"a"[..], b"A", b"k", b"K", b"i", b"I", b" ", b"_", b"1", b"-",
                    b"\xc3\xa9", b"\xc3", b"\xa9", b"\xe2\x84\xaa", b"\xe2\x84", b"\xaa",
                    b"\xc4\xb0", b"\xc4", b"\xb0", b"\xf0\x9f\x90\x8d", b"\xf0\x9f", b"\x80",
                    b"\xff", b"\xed\xa0\x80", b"\xe0\x80", b"\xc0\xaf", b"\xcc\x87",
                    b"kakikakikakikaki", b"\xc3\xa9a\xc3\xa9", b"\0",
                ]),
                0..80,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            word in proptest::sample::select(vec![
                "a", "k", "i", "ka", "ki", "é", "aé", "éa", "a a", "kk", "ik", "\u{307}",
                "a\u{FFFD}", "kakikaki",
            ]),
            cs in proptest::bool::ANY,
            whole in proptest::bool::ANY,
            scan_each in proptest::bool::ANY,
        ) {
            let bytes = parts.concat();
            let text = String::from_utf8_lossy(&bytes);
            let mut m = Matcher::new(word, cs, whole);
            if !m.takes_bytes() {
                // Lowercased per char or U+FFFD: `bytes_need_a_byte_exact_word`.
                return Ok(());
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut last = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                m.push_bytes(&bytes[last..c]);
                if scan_each {
                    m.scan(false);
                }
                last = c;
            }
            proptest::prop_assert_eq!(m.finish(), reference(&text, word, cs, whole));
        }
    }

    #[test]
    fn bytes_need_a_byte_exact_word() {
        assert!(Matcher::new("python", true, true).takes_bytes());
        assert!(Matcher::new("Python", false, true).takes_bytes());
        assert!(Matcher::new("é", true, false).takes_bytes());
        // Lowercasing a non-ASCII word's text needs chars; U+FFFD is what malformed bytes
        // become, so it cannot be looked for in the bytes.
        assert!(!Matcher::new("é", false, false).takes_bytes());
        assert!(!Matcher::new("a\u{FFFD}", true, false).takes_bytes());
    }

    #[test]
    fn empty_needle_counts_nothing() {
        assert_eq!(streamed(&["abc"], "", true, false), 0);
    }

    #[test]
    fn swar_fold_every_byte_in_every_lane() {
        for b in 0..=255u8 {
            for lane in 0..16 {
                let mut got = [b'Q'; 16];
                got[lane] = b;
                let mut want = got;
                want.make_ascii_lowercase();
                assert_eq!(fold_ascii_swar(&mut got), !b.is_ascii(), "byte {b:#x}");
                assert_eq!(got, want, "byte {b:#x} in lane {lane}");
            }
        }
    }

    proptest::proptest! {
        /// The SWAR fold is `make_ascii_lowercase` plus "was there a non-ASCII byte", on
        /// any bytes and at any length and alignment.
        #[test]
        fn swar_fold_is_ascii_lowercase(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            skip in 0usize..8,
        ) {
            let skip = skip.min(bytes.len());
            let mut got = bytes.clone();
            let non_ascii = fold_ascii_swar(&mut got[skip..]);
            let mut want = bytes.clone();
            want[skip..].make_ascii_lowercase();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(non_ascii, !bytes[skip..].is_ascii());
        }

        #[test]
        fn streaming_equals_reference(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "aa", "b", " ", "_", "3", "-", "İ", "i\u{307}", "ß", "ẞ", "Σ", "σ",
                    "A", "é", "É", "日", "ab", "ba", "a-a", "\u{212A}", "K", "k", "I", "ı", "ſ",
                    "AB-ab_aB ab Ab a", "kKkK\u{212A}kkkkkkkkkkkkkkkkk", "xxxxxxxxxxxxxxxxxIK",
                ]),
                0..40,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            word in proptest::sample::select(vec![
                "a", "aa", "ab", "aba", "a-", "i", "ß", "σσ", "é_", "İ", "k", "kk", "ik", "K",
                "ab a", "xi",
            ]),
            cs in proptest::bool::ANY,
            whole in proptest::bool::ANY,
        ) {
            let text: String = pieces.concat();
            let parts = split_at(&text, &cuts);
            proptest::prop_assert_eq!(
                streamed(&parts, word, cs, whole),
                reference(&text, word, cs, whole)
            );
            if !cs {
                // The folded-ASCII path against the general lowercasing path.
                let mut general = Matcher::new(word, cs, whole);
                general.fold_ascii = false;
                for p in &parts {
                    general.push_str(p);
                }
                proptest::prop_assert_eq!(general.finish(), reference(&text, word, cs, whole));
            }
            if cs && !whole {
                proptest::prop_assert_eq!(
                    streamed(&parts, word, cs, whole),
                    text.matches(word).count() as u64
                );
            }
        }
    }
}
