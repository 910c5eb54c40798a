//! Several-words matcher of the **count** step (submit → queue → fetch → **count** → NSQ → DB
//! → poll): the last stage of the counting pipeline when a task counts a list of words
//! (DESIGN §14). It receives the same text pieces as [`Matcher`] and counts every word in
//! one pass over them.
//!
//! Each word's count is exactly what [`Matcher`] returns for that word alone: within one
//! word matches are non-overlapping, left to right, with the same case folding and
//! whole-word test, while different words may overlap each other (`py` and `python` both
//! count in `python`). One Aho–Corasick automaton reports every occurrence of every word
//! (overlapping search); a per-word "next eligible start" filters them into each word's own
//! left-to-right, non-overlapping sequence.

use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind, Span};

use super::matcher::{
    Matcher, floor_char_boundary, fold_ascii_from, push_lowercased, word_after, word_before,
};
use super::pattern::PatternSet;
use super::word_runs::{self, RunTable};

/// Size at which the pending text is scanned (see the single-word matcher).
#[cfg(not(test))]
const SCAN_THRESHOLD: usize = 4096;
/// Tiny in tests, so that every test also exercises the carry-over between scans.
#[cfg(test)]
const SCAN_THRESHOLD: usize = 8;

/// The matching stage: one word takes the single-needle `memmem` path, several share one
/// automaton. Both report one count per requested word, in order.
pub(crate) enum Counter {
    One(Box<Matcher>),
    Many(Box<MultiMatcher>),
    /// Words and patterns (DESIGN §17): the same pieces go to both; the counts are the
    /// words' then the patterns'.
    WithPatterns(Box<Counter>, Box<PatternSet>),
    /// Tests only: keeps the text stream (a separator as `\0`) instead of counting, so an
    /// oracle can run over exactly what the pipeline produced.
    #[cfg(test)]
    Record(std::sync::Arc<std::sync::Mutex<String>>),
}

impl Counter {
    /// One count per entry of `words` (an empty word counts zero).
    pub(crate) fn new(words: &[String], case_sensitive: bool, whole_word: bool) -> Self {
        match words {
            [one] => Counter::One(Box::new(Matcher::new(one, case_sensitive, whole_word))),
            _ => Counter::Many(Box::new(MultiMatcher::new(
                words,
                case_sensitive,
                whole_word,
            ))),
        }
    }

    /// [`Counter::new`], then one count per pattern after the words' (none: just the
    /// words' counter).
    pub(crate) fn with_patterns(
        words: &[String],
        patterns: &[String],
        case_sensitive: bool,
        whole_word: bool,
    ) -> Self {
        let counter = Counter::new(words, case_sensitive, whole_word);
        if patterns.is_empty() {
            return counter;
        }
        Counter::WithPatterns(
            Box::new(counter),
            Box::new(PatternSet::new(patterns, case_sensitive, whole_word)),
        )
    }

    /// Feeds the next piece of text.
    #[inline]
    pub(crate) fn push_str(&mut self, s: &str) {
        match self {
            Counter::One(m) => m.push_str(s),
            Counter::Many(m) => m.push_str(s),
            Counter::WithPatterns(w, p) => {
                w.push_str(s);
                p.push_str(s);
            }
            #[cfg(test)]
            Counter::Record(r) => r.lock().expect("recorder").push_str(s),
        }
    }

    /// Whether [`push_bytes`](Counter::push_bytes) may be used (see
    /// [`Matcher::takes_bytes`]; the several-words path takes decoded text only).
    pub(crate) fn takes_bytes(&self) -> bool {
        match self {
            Counter::One(m) => m.takes_bytes(),
            _ => false,
        }
    }

    /// Feeds a word separator (a block boundary of an HTML page).
    pub(crate) fn push_separator(&mut self) {
        match self {
            Counter::One(m) => m.push_separator(),
            Counter::Many(m) => m.push_separator(),
            Counter::WithPatterns(w, p) => {
                w.push_separator();
                p.push_separator();
            }
            #[cfg(test)]
            Counter::Record(r) => r.lock().expect("recorder").push('\0'),
        }
    }

    /// Ends the text: one count per word, in the order given to [`Counter::new`].
    pub(crate) fn finish(self) -> Vec<u64> {
        match self {
            Counter::One(m) => vec![m.finish()],
            Counter::Many(m) => m.finish(),
            Counter::WithPatterns(w, p) => {
                let mut counts = w.finish();
                counts.extend(p.finish());
                counts
            }
            #[cfg(test)]
            Counter::Record(_) => Vec::new(),
        }
    }
}

/// Automata built recently, keyed by their (folded) needles. Building a DFA for 20 words
/// costs more than scanning a typical page with it, and a worker counts the same word list
/// on many pages, so bodies share the automaton (an `AhoCorasick` clone is an `Arc`).
static AUTOMATA: OnceLock<Mutex<Vec<CachedAutomaton>>> = OnceLock::new();
/// A cache entry: the needles and their automata.
type CachedAutomaton = (Vec<String>, Automata);

/// How a [`MultiMatcher`] finds every occurrence of every needle.
#[derive(Clone)]
enum Automata {
    /// SIMD (Teddy) search for the leftmost start of any needle, restarted one byte after
    /// each start; at every start the needles beginning there are compared directly
    /// (`by_first_byte`). Used when `aho_corasick::packed` can build a searcher (x86_64 or
    /// aarch64, few needles).
    Packed {
        searcher: Arc<packed::Searcher>,
        /// For each byte value, the ids of the needles whose first byte it is.
        by_first_byte: Arc<Vec<Vec<u32>>>,
        needles: Arc<Vec<Vec<u8>>>,
    },
    /// An overlapping Aho–Corasick search (no SIMD prefilter exists for it).
    Dfa(AhoCorasick),
}
/// Word lists kept in [`AUTOMATA`] (oldest dropped first); small, so lookup is a scan.
const AUTOMATA_CAP: usize = 16;

/// The automata for `needles` (`None` when there is none), from the cache if possible.
fn automaton(needles: &[String]) -> Option<Automata> {
    if needles.is_empty() {
        return None;
    }
    let cache = AUTOMATA.get_or_init(|| Mutex::new(Vec::new()));
    // A poisoned lock only means another thread panicked mid-update: skip the cache.
    if let Ok(c) = cache.lock()
        && let Some((_, a)) = c.iter().find(|(n, _)| n == needles)
    {
        return Some(a.clone());
    }
    let a = build_automata(needles, true)?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= AUTOMATA_CAP {
            c.remove(0);
        }
        c.push((needles.to_vec(), a.clone()));
    }
    Some(a)
}

/// Builds the automata for non-empty `needles`: the packed searcher when allowed and
/// possible, else the DFA.
fn build_automata(needles: &[String], allow_packed: bool) -> Option<Automata> {
    let packed = allow_packed
        .then(|| {
            packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(needles)
                .build()
        })
        .flatten();
    if let Some(searcher) = packed {
        let mut by_first_byte = vec![Vec::new(); 256];
        for (id, n) in needles.iter().enumerate() {
            if let (Some(&b), Ok(id)) = (n.as_bytes().first(), u32::try_from(id)) {
                by_first_byte[usize::from(b)].push(id);
            }
        }
        return Some(Automata::Packed {
            searcher: Arc::new(searcher),
            by_first_byte: Arc::new(by_first_byte),
            needles: Arc::new(needles.iter().map(|n| n.as_bytes().to_vec()).collect()),
        });
    }
    // A DFA is the fastest kind for a handful of short needles; fall back to the default
    // choice if it cannot be built (it always can for ≤ 20 × 400 bytes).
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(needles)
        .or_else(|_| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(needles)
        })
        .ok()?;
    Some(Automata::Dfa(ac))
}

/// Every occurrence `(needle id, start, end)` of every needle in `hay`, each needle's in
/// increasing order (different needles interleave in no particular order).
fn occurrences(a: &Automata, hay: &[u8], out: &mut Vec<(u32, usize, usize)>) {
    out.clear();
    match a {
        Automata::Dfa(ac) => {
            for m in ac.find_overlapping_iter(hay) {
                if let Ok(p) = u32::try_from(m.pattern().as_usize()) {
                    out.push((p, m.start(), m.end()));
                }
            }
        }
        Automata::Packed {
            searcher,
            by_first_byte,
            needles,
        } => {
            let mut pos = 0;
            while pos < hay.len() {
                let Some(m) = searcher.find_in(hay, Span::from(pos..hay.len())) else {
                    break;
                };
                let s = m.start();
                for &p in &by_first_byte[usize::from(hay[s])] {
                    let n = &needles[p as usize];
                    if hay[s..].starts_with(n) {
                        out.push((p, s, s + n.len()));
                    }
                }
                pos = s + 1;
            }
        }
    }
}

/// Streaming counter of several needles in one pass.
///
/// Memory: like [`Matcher`], the pending buffer is trimmed after every scan to at most the
/// longest needle (plus the char before it, kept as `prev`).
pub(crate) struct MultiMatcher {
    /// `None` when no word is non-empty: nothing can be counted.
    ac: Option<Automata>,
    /// Whole-word mode and every word ASCII letters, digits and `_`: the text is cut into
    /// word runs instead of searched ([`word_runs`]; same counts, far fewer steps).
    runs: Option<RunTable>,
    /// Reused list of the occurrences found by one scan.
    found: Vec<(u32, usize, usize)>,
    /// For each requested word, its pattern id (`None` for an empty word).
    word_to_pattern: Vec<Option<usize>>,
    max_len: usize,
    case_insensitive: bool,
    /// Case-insensitive and every needle ASCII: `buf` holds the folded text (see
    /// [`fold_ascii_from`]), and the whole-word test lowercases the char it looks at.
    fold_ascii: bool,
    whole_word: bool,
    /// Text not yet resolved.
    buf: String,
    /// With `fold_ascii`: `buf[..folded]` is folded, the rest is folded just before the
    /// next scan (see `Matcher`'s field of the same name).
    folded: usize,
    /// Absolute text offset (in bytes of the folded text) of `buf[0]`.
    base: u64,
    /// The char just before `buf[0]`, for the whole-word "before" test.
    prev: Option<char>,
    /// Per pattern: matches starting before this absolute offset are already decided or
    /// overlap the previous counted match of the same word.
    next_start: Vec<u64>,
    counts: Vec<u64>,
}

impl MultiMatcher {
    pub(crate) fn new(words: &[String], case_sensitive: bool, whole_word: bool) -> Self {
        let mut needles: Vec<String> = Vec::new();
        let mut word_to_pattern = Vec::with_capacity(words.len());
        for w in words {
            let mut needle = String::with_capacity(w.len());
            if case_sensitive {
                needle.push_str(w);
            } else {
                push_lowercased(&mut needle, w);
            }
            if needle.is_empty() {
                word_to_pattern.push(None);
                continue;
            }
            // Duplicates share one pattern (the automaton would report only one of them).
            let id = match needles.iter().position(|n| *n == needle) {
                Some(id) => id,
                None => {
                    needles.push(needle);
                    needles.len() - 1
                }
            };
            word_to_pattern.push(Some(id));
        }
        let ac = automaton(&needles);
        MultiMatcher {
            runs: if whole_word {
                RunTable::new(&needles)
            } else {
                None
            },
            ac,
            found: Vec::new(),
            max_len: needles.iter().map(String::len).max().unwrap_or(0),
            next_start: vec![0; needles.len()],
            counts: vec![0; needles.len()],
            word_to_pattern,
            case_insensitive: !case_sensitive,
            fold_ascii: !case_sensitive && needles.iter().all(|n| n.is_ascii()),
            whole_word,
            buf: String::new(),
            folded: 0,
            base: 0,
            prev: None,
        }
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        if self.ac.is_none() || s.is_empty() {
            return;
        }
        if self.fold_ascii {
            // Folded by `scan`, together with everything else pending.
            self.buf.push_str(s);
        } else if self.case_insensitive {
            push_lowercased(&mut self.buf, s);
        } else {
            self.buf.push_str(s);
        }
        self.maybe_scan();
    }

    pub(crate) fn push_separator(&mut self) {
        if self.ac.is_none() {
            return;
        }
        self.buf.push(super::matcher::SEPARATOR);
        self.maybe_scan();
    }

    fn maybe_scan(&mut self) {
        if self.buf.len() >= SCAN_THRESHOLD.max(self.max_len.saturating_mul(2)) {
            self.scan(false);
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u64> {
        self.scan(true);
        self.word_to_pattern
            .iter()
            .map(|p| p.map_or(0, |id| self.counts[id]))
            .collect()
    }

    /// Decides every match it can in `buf`, then trims `buf` to where an undecided match
    /// may still start (see `Matcher::scan` for the single-word version of these rules).
    fn scan(&mut self, at_end: bool) {
        let Some(ac) = &self.ac else {
            return;
        };
        if self.fold_ascii {
            fold_ascii_from(&mut self.buf, self.folded);
        }
        if let Some(table) = &self.runs {
            let keep = word_runs::scan(
                table,
                &self.buf,
                self.prev,
                self.fold_ascii,
                at_end,
                &mut self.counts,
            );
            self.trim(keep);
            return;
        }
        let hay = self.buf.as_str();
        let bytes = hay.as_bytes();
        // Any match starting before this is complete within `buf` (needles ≤ max_len).
        let mut keep_from = floor_char_boundary(hay, hay.len().saturating_sub(self.max_len - 1));
        occurrences(ac, bytes, &mut self.found);
        for &(p, s, e) in &self.found {
            let p = p as usize;
            let abs = self.base + s as u64;
            if abs < self.next_start[p] {
                continue;
            }
            if !self.whole_word {
                self.counts[p] += 1;
                self.next_start[p] = self.base + e as u64;
                continue;
            }
            let after = match word_after(bytes, e, self.fold_ascii) {
                Some(w) => w,
                None if at_end => false,
                None => {
                    // Undecided until the next char arrives: keep it for the next scan.
                    keep_from = keep_from.min(s);
                    continue;
                }
            };
            if !after && !word_before(hay, s, self.prev, self.fold_ascii) {
                self.counts[p] += 1;
                self.next_start[p] = self.base + e as u64;
            } else {
                // A failed candidate consumes only its first char.
                let first = hay[s..].chars().next().map_or(1, char::len_utf8);
                self.next_start[p] = abs + first as u64;
            }
        }
        self.trim(keep_from);
    }

    /// Drops `buf[..keep_from]`, decided: its last char becomes `prev`.
    fn trim(&mut self, keep_from: usize) {
        if keep_from > 0 {
            self.prev = self.buf[..keep_from].chars().next_back();
            self.buf.drain(..keep_from);
            self.base += keep_from as u64;
        }
        self.folded = self.buf.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(pieces: &[&str], word: &str, cs: bool, whole: bool) -> u64 {
        let mut m = Matcher::new(word, cs, whole);
        for p in pieces {
            m.push_str(p);
        }
        m.finish()
    }

    fn multi(pieces: &[&str], words: &[&str], cs: bool, whole: bool) -> Vec<u64> {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        let mut m = MultiMatcher::new(&words, cs, whole);
        for p in pieces {
            m.push_str(p);
            m.scan(false); // force a scan at every piece to exercise the tail logic
        }
        m.finish()
    }

    #[test]
    fn overlapping_words_each_count_alone() {
        let text = ["python py pythonic", " Py", "thon"];
        assert_eq!(
            multi(&text, &["py", "python", "thon"], false, true),
            vec![1, 2, 0]
        );
        assert_eq!(
            multi(&text, &["py", "python", "thon"], false, false),
            vec![4, 3, 3]
        );
        // Within one word, matches do not overlap: "aa" in "aaaa" is 2, "a" is 4.
        assert_eq!(multi(&["aaaa"], &["aa", "a"], true, false), vec![2, 4]);
    }

    #[test]
    fn duplicates_empty_and_no_words() {
        assert_eq!(
            multi(&["a b a"], &["a", "", "a", "b"], true, true),
            vec![2, 0, 2, 1]
        );
        assert_eq!(multi(&["abc"], &[], true, true), Vec::<u64>::new());
        assert_eq!(multi(&["abc"], &["", ""], true, true), vec![0, 0]);
    }

    impl MultiMatcher {
        /// Turns the word-run path off: every match comes from the automaton.
        fn search_only(&mut self) {
            self.runs = None;
        }

        /// Replaces the packed searcher (if any) by the overlapping DFA (and turns the
        /// word-run path off).
        fn use_dfa(&mut self) {
            self.search_only();
            if let Some(Automata::Packed { needles, .. }) = &self.ac {
                let strs: Vec<String> = needles
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect();
                self.ac = build_automata(&strs, false);
            }
        }
    }

    #[test]
    fn packed_and_dfa_paths_agree() {
        let words: Vec<String> = ["python", "py", "thon", "on", "n", "the", "a"]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        let text = "Python pythonic the thonny, a python; the pypy python".repeat(50);
        for cs in [false, true] {
            for whole in [false, true] {
                let mut packed = MultiMatcher::new(&words, cs, whole);
                #[cfg(target_arch = "x86_64")]
                assert!(matches!(packed.ac, Some(Automata::Packed { .. })));
                let mut dfa = MultiMatcher::new(&words, cs, whole);
                dfa.use_dfa();
                assert!(matches!(dfa.ac, Some(Automata::Dfa(_))));
                packed.push_str(&text);
                dfa.push_str(&text);
                let (p, d) = (packed.finish(), dfa.finish());
                assert_eq!(p, d);
                let single: Vec<u64> = words
                    .iter()
                    .map(|w| single(&[&text], w, cs, whole))
                    .collect();
                assert_eq!(p, single);
            }
        }
    }

    #[test]
    fn counter_with_one_word_uses_the_single_matcher() {
        let words = vec!["python".to_owned()];
        let mut c = Counter::new(&words, false, true);
        assert!(matches!(c, Counter::One(_)));
        c.push_str("Python and python");
        assert_eq!(c.finish(), vec![2]);
    }

    #[test]
    fn buffer_stays_bounded() {
        let words = vec!["python".to_owned(), "py".to_owned()];
        let mut m = MultiMatcher::new(&words, false, true);
        let chunk = "Python, pythonic and py thon; ".repeat(100);
        for _ in 0..500 {
            m.push_str(&chunk);
            assert!(m.buf.len() < 4096 + chunk.len() * 2);
        }
        m.scan(false);
        assert!(m.buf.len() <= 6, "{}", m.buf.len());
        assert_eq!(m.finish(), vec![100 * 500, 100 * 500]);
    }

    /// Scans `text` as one buffer (past the 64-byte blocks of the run path), with or
    /// without the word-run path, optionally cut in two at `cut`.
    fn whole_buffer(text: &str, words: &[String], cs: bool, cut: usize, runs: bool) -> Vec<u64> {
        let mut m = MultiMatcher::new(words, cs, true);
        if !runs {
            m.search_only();
        } else {
            assert!(m.runs.is_some(), "{words:?}");
        }
        let cut = floor_char_boundary(text, cut.min(text.len()));
        for part in [&text[..cut], &text[cut..]] {
            // Straight into the buffer: no threshold-sized scans in between.
            m.buf.push_str(part);
            m.scan(false);
        }
        m.finish()
    }

    #[test]
    fn word_runs_at_every_block_offset() {
        let words: Vec<String> = ["the", "a"].iter().map(|w| (*w).to_owned()).collect();
        for pad in 0..140 {
            for tail in ["the", "the ", "thé", "a", "x the"] {
                let text = format!("{}{tail}", ". ".repeat(pad / 2) + &"-".repeat(pad % 2));
                let want: Vec<u64> = words
                    .iter()
                    .map(|w| single(&[&text], w, false, true))
                    .collect();
                for cut in [0, text.len() / 2, text.len().saturating_sub(2), 64, 128] {
                    assert_eq!(
                        whole_buffer(&text, &words, false, cut, true),
                        want,
                        "{text:?} {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn runs_longer_than_every_word_are_skipped_across_pieces() {
        let words: Vec<String> = ["ab", "b"].iter().map(|w| (*w).to_owned()).collect();
        let long = "ab".repeat(100);
        let mut m = MultiMatcher::new(&words, true, true);
        assert!(m.runs.is_some());
        let parts = [long.as_str(), "ab", " ab b", &long, "é", "b ab"];
        for part in parts {
            m.buf.push_str(part);
            m.scan(false);
            assert!(m.buf.len() <= 2, "{:?}", m.buf);
        }
        // Only the two "ab" after a space count: the first "b" continues into the second
        // long run, and "éb" is one word (é is a word char).
        let got = m.finish();
        assert_eq!(got, vec![2, 0]);
        let want: Vec<u64> = words
            .iter()
            .map(|w| single(&parts, w, true, true))
            .collect();
        assert_eq!(got, want);
    }

    proptest::proptest! {
        #[test]
        fn word_runs_equal_search_on_large_buffers(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "the", "The", "THE", "then", "other", " ", "  ", ".", "<a class=\"x\">",
                    "_", "3", "class", "Class_", "é", "—", "日", "\u{212A}", "İ", "\0",
                    "data-type", "code", "list\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                ]),
                20..160,
            ),
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "the", "class", "code", "data", "type", "list", "k", "i", "a", "3", "_",
                    "then", "Class_", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                ]),
                1..8,
            ),
            cs in proptest::bool::ANY,
            cut in 0usize..4000,
        ) {
            let text: String = pieces.concat();
            let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
            let got = whole_buffer(&text, &words, cs, cut, true);
            proptest::prop_assert_eq!(&got, &whole_buffer(&text, &words, cs, cut, false));
            let want: Vec<u64> = words.iter().map(|w| single(&[&text], w, cs, true)).collect();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn each_word_equals_counting_it_alone(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "aa", "b", " ", "_", "3", "-", "İ", "i\u{307}", "ß", "ẞ", "Σ", "σ",
                    "A", "é", "É", "日", "ab", "ba", "a-a", "\u{212A}", "K", "k", "I",
                    "AB-ab_aB ab Ab aK", "kKkK\u{212A}kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
                    "\0", "—", "a3", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                ]),
                0..40,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "aa", "ab", "aba", "a-", "i", "ß", "σσ", "é_", "İ", "b", "aaa", "",
                    "k", "kk", "ik", "K", "ab a", "a3", "_", "A", "aB",
                ]),
                0..6,
            ),
            cs in proptest::bool::ANY,
            whole in proptest::bool::ANY,
        ) {
            let text: String = pieces.concat();
            let parts = crate::count::matcher::tests::split_at(&text, &cuts);
            let got = multi(&parts, &words, cs, whole);
            // The Teddy path against the overlapping DFA (the previous engine).
            let owned: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
            let mut dfa = MultiMatcher::new(&owned, cs, whole);
            dfa.use_dfa();
            for p in &parts {
                dfa.push_str(p);
                dfa.scan(false);
            }
            proptest::prop_assert_eq!(&dfa.finish(), &got);
            // The word-run path (taken by `got` when every word is ASCII word bytes)
            // against the Teddy search.
            let mut searched = MultiMatcher::new(&owned, cs, whole);
            searched.search_only();
            for p in &parts {
                searched.push_str(p);
                searched.scan(false);
            }
            proptest::prop_assert_eq!(&searched.finish(), &got);
            if !cs {
                // The folded-ASCII path against the general lowercasing path.
                let owned: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
                let mut general = MultiMatcher::new(&owned, cs, whole);
                general.fold_ascii = false;
                for p in &parts {
                    general.push_str(p);
                }
                proptest::prop_assert_eq!(&general.finish(), &got);
            }
            let want: Vec<u64> = words.iter().map(|w| single(&parts, w, cs, whole)).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
