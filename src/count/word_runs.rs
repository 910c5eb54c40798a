//! Whole-word counting of several words by their **word runs**: the fast path of the
//! several-words matcher ([`super::words::MultiMatcher`]) for the common case, every word
//! made of ASCII letters, digits and `_` only, in whole-word mode (DESIGN §4, §14).
//!
//! Why it gives the same counts. Such a word's match lies inside one maximal run of ASCII
//! word bytes (`[A-Za-z0-9_]`) of the (folded) text. A match that is not the whole run
//! has an ASCII word byte beside it, so the whole-word test rejects it; a match that is
//! the whole run has, on each side, either an ASCII non-word byte (accepted at once) or a
//! non-ASCII char, which gets the very test the general path applies ([`word_before`],
//! [`word_after`]). Runs are disjoint, so one word's matches never overlap, and one run
//! equals at most one (deduplicated) word. Counting every word is therefore: cut the text
//! into runs, look each run of a word's length up among the words, test its non-ASCII
//! neighbours.
//!
//! Why it is faster. The general path finds every occurrence of every word with Teddy and
//! restarts the search after each one; in raw scope a page holds thousands (`class`,
//! `code`, `the`, ... in its markup and text), and each restart costs more than the search.
//! Here the text is classified 16 bytes at a time (SSE2 on x86_64, byte by byte elsewhere), runs
//! come out of a bitmask, and a run costs a length test and, rarely, one comparison.
//! `words.rs`' proptest checks this path against the Teddy path, the overlapping DFA and
//! the single-word matcher on every piece cut.

use super::matcher::{word_after, word_before};

/// Whether `b` is an ASCII word byte (a letter, a digit or `_`).
#[inline]
fn ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The words, indexed for the run lookup. Built only when every word qualifies.
#[derive(Clone, Debug)]
pub(crate) struct RunTable {
    /// For each first byte, the ids of the words starting with it.
    by_first: Vec<Vec<u32>>,
    words: Vec<Vec<u8>>,
    /// For each first byte, bit `n` set when a word starting with it is `n` bytes long
    /// (`n < 64`): the one test most runs get. Longer words set `long`.
    first_lens: Vec<u64>,
    long: bool,
    max_len: usize,
}

impl RunTable {
    /// `None` unless every needle is non-empty and made of ASCII word bytes only.
    pub(crate) fn new(needles: &[String]) -> Option<RunTable> {
        if needles.is_empty()
            || !needles
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(ascii_word_byte))
        {
            return None;
        }
        let mut by_first = vec![Vec::new(); 256];
        let mut first_lens = vec![0u64; 256];
        let mut long = false;
        for (id, n) in needles.iter().enumerate() {
            let first = usize::from(n.as_bytes()[0]);
            by_first[first].push(u32::try_from(id).ok()?);
            if n.len() < 64 {
                first_lens[first] |= 1 << n.len();
            } else {
                long = true;
            }
        }
        Some(RunTable {
            by_first,
            words: needles.iter().map(|n| n.as_bytes().to_vec()).collect(),
            first_lens,
            long,
            max_len: needles.iter().map(String::len).max().unwrap_or(0),
        })
    }

    /// Whether some word has the first byte and the length of the run `bytes[s..e]`.
    #[inline(always)]
    fn may_match(&self, bytes: &[u8], s: usize, e: usize) -> bool {
        let len = e - s;
        if len < 64 {
            self.first_lens[usize::from(bytes[s])] >> len & 1 == 1
        } else {
            self.long
        }
    }

    /// The id of the word equal to `run`, if any.
    fn lookup(&self, run: &[u8]) -> Option<usize> {
        self.by_first[usize::from(run[0])]
            .iter()
            .map(|&id| id as usize)
            .find(|&id| self.words[id] == run)
    }
}

/// Counts, into `counts` (indexed by word id), every whole-word match decided within
/// `hay`, and returns where the undecided rest of `hay` starts (the pending buffer keeps
/// `hay[keep..]`).
///
/// `prev` is the char before `hay` (`None` at the start of the text) and `folded` whether
/// `hay` is the folded text of a case-insensitive search (both as for [`word_before`]). A
/// run that reaches the end of `hay` is undecided unless `at_end`: the next piece may
/// continue it. One longer than every word is dropped all the same, so the buffer stays
/// bounded: its tail, at the start of the next `hay`, follows a word char (`prev`), so no
/// match is counted there.
pub(crate) fn scan(
    table: &RunTable,
    hay: &str,
    prev: Option<char>,
    folded: bool,
    at_end: bool,
    counts: &mut [u64],
) -> usize {
    let bytes = hay.as_bytes();
    let n = bytes.len();
    // Runs come out of the transitions of the word-byte mask: bit `i` of `t` is set where
    // byte `i` differs from the byte before it, so set bits alternate run start, run end.
    let mut in_run = false;
    let mut start = 0;
    let mut carry = 0u64;
    let mut blk = 0;
    while blk < n {
        // Bits past the end of the text are 0: a run reaching it ends there.
        let m = word_mask(&bytes[blk..]);
        let mut t = m ^ (m << 1 | carry);
        carry = m >> 63;
        while t != 0 {
            let p = blk + t.trailing_zeros() as usize;
            t &= t - 1;
            if !in_run {
                start = p;
                in_run = true;
                continue;
            }
            in_run = false;
            if p == n && !at_end {
                return undecided(table, start, n);
            }
            if table.may_match(bytes, start, p) {
                count_run(table, hay, start, p, prev, folded, counts);
            }
        }
        blk += 64;
    }
    if in_run {
        // The text's length is a multiple of 64 and it ends inside this run.
        if !at_end {
            return undecided(table, start, n);
        }
        count_run(table, hay, start, n, prev, folded, counts);
    }
    n
}

/// Where to keep the text from when the run at `start` reaches the end `n`: the run may go
/// on in the next piece, unless it is already longer than every word (see [`scan`]).
#[inline]
fn undecided(table: &RunTable, start: usize, n: usize) -> usize {
    if n - start > table.max_len { n } else { start }
}

/// Counts the maximal run `hay[s..e]` if it is a word and its non-ASCII neighbours (an
/// ASCII neighbour of a maximal run is a non-word byte) pass the general path's test. The
/// end of the text (`e == hay.len()`, at the end) is not a word char.
#[inline(never)]
fn count_run(
    table: &RunTable,
    hay: &str,
    s: usize,
    e: usize,
    prev: Option<char>,
    folded: bool,
    counts: &mut [u64],
) {
    let bytes = hay.as_bytes();
    let Some(id) = table.lookup(&bytes[s..e]) else {
        return;
    };
    let after_ok = match bytes.get(e) {
        Some(b) if !b.is_ascii() => word_after(bytes, e, folded) == Some(false),
        _ => true,
    };
    let before_ok = (s > 0 && bytes[s - 1].is_ascii()) || !word_before(hay, s, prev, folded);
    if after_ok && before_ok {
        counts[id] += 1;
    }
}

/// Bit `i` set when `b[i]` (for `i < 64`, `i < b.len()`) is an ASCII word byte.
#[inline]
fn word_mask(b: &[u8]) -> u64 {
    if b.len() >= 64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: SSE2 is part of the x86_64 baseline; four unaligned 16-byte loads
            // within `b[..64]`.
            return unsafe { sse2::mask64(b.as_ptr()) };
        }
    }
    scalar_mask(&b[..b.len().min(64)])
}

/// [`word_mask`] one byte at a time (the tail of the text, other architectures, the
/// tests' reference).
fn scalar_mask(b: &[u8]) -> u64 {
    b.iter()
        .enumerate()
        .fold(0, |m, (i, &c)| m | (u64::from(ascii_word_byte(c)) << i))
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };

    /// Word bytes of 16 bytes as a 16-bit mask: `b | 0x20` in `a..=z` (a signed compare
    /// after shifting the range to the bottom of `i8`), `b` in `0..=9`, or `b == '_'`.
    /// Bytes ≥ 0x80 fall outside both shifted ranges.
    #[inline]
    unsafe fn mask16(p: *const u8) -> u32 {
        unsafe {
            let v = _mm_loadu_si128(p.cast::<__m128i>());
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let alpha_t = _mm_add_epi8(lower, _mm_set1_epi8((0x80u8.wrapping_sub(b'a')) as i8));
            let alpha = _mm_cmpgt_epi8(_mm_set1_epi8((0x80u8 + 26) as i8), alpha_t);
            let digit_t = _mm_add_epi8(v, _mm_set1_epi8((0x80u8.wrapping_sub(b'0')) as i8));
            let digit = _mm_cmpgt_epi8(_mm_set1_epi8((0x80u8 + 10) as i8), digit_t);
            let under = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(alpha, digit), under)) as u32
        }
    }

    /// [`super::word_mask`] of `p[..64]`.
    #[inline]
    pub(super) unsafe fn mask64(p: *const u8) -> u64 {
        unsafe {
            u64::from(mask16(p))
                | u64::from(mask16(p.add(16))) << 16
                | u64::from(mask16(p.add(32))) << 32
                | u64::from(mask16(p.add(48))) << 48
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_mask_equals_scalar_mask_for_every_byte() {
        let all: Vec<u8> = (0..=255u8).cycle().take(256 * 3 + 64).collect();
        for start in 0..all.len() - 64 {
            assert_eq!(
                word_mask(&all[start..]),
                scalar_mask(&all[start..start + 64])
            );
        }
        for b in 0..=255u8 {
            assert_eq!(word_mask(&[b; 64]) & 1 == 1, ascii_word_byte(b), "{b:#x}");
        }
    }

    #[test]
    fn only_ascii_word_needles_take_the_run_path() {
        let s = |v: &[&str]| v.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert!(RunTable::new(&s(&["python", "a_1", "Z"])).is_some());
        for bad in [&["python", "a-b"][..], &["é"], &["a b"], &[""], &[]] {
            assert!(RunTable::new(&s(bad)).is_none(), "{bad:?}");
        }
    }
}
