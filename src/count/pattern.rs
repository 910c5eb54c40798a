//! Pattern matcher of the **count** step (submit → queue → fetch → **count** → NSQ → DB →
//! poll): counts regular expressions (DESIGN §17) over the same text pieces the word
//! matchers receive, beside them, each pattern with its own count.
//!
//! Semantics, identical to running `regex::Regex::find_iter` over each block of the text
//! (the oracle of the tests below):
//! * matches are leftmost-first and non-overlapping, like Rust's `regex` crate; a pattern
//!   that can match the empty string is refused ([`validate_patterns`]);
//! * Unicode-aware (`\w`, `\d`, `.` are Unicode); case-insensitive mode compiles the
//!   pattern with `(?i)` (Unicode simple case folding — the words use lowercasing instead,
//!   so `ß` vs `ẞ` may differ between a word and the same text as a pattern);
//! * a block boundary of an HTML page (the separator the scanner pushes) ends the text a
//!   match may cover: no match spans two blocks, `^`/`$` (and `\A`/`\z`) match at a block's
//!   edges. The raw scope is one block;
//! * in whole-word mode the whole-word rule of the words applies to a match's boundaries:
//!   the leftmost-first match found from the search position counts only when neither the
//!   char before its start nor the char after its end is a word char; a rejected match
//!   consumes only its first char and the search resumes there (exactly what the words
//!   do with a rejected occurrence). So `py\d*` in `py3x py3` counts 1: the match `py3` of
//!   `py3x` is rejected, not shortened to `py`.
//!
//! How: per pattern, a forward dense DFA (regex-automata, leftmost-first, unanchored) is
//! stepped byte by byte over the pieces as they arrive, its state kept between pieces, so
//! the end of each match is found without holding the text. The start (needed only for
//! the whole-word test and for the restart after a rejected match) comes from a reverse
//! DFA run back from the end over the text kept since the search position. That kept
//! text is the bounded carry: it is trimmed to one char before the search position after
//! every match, and when no match ends for [`WINDOW`] bytes it is cut to the last half of
//! that (attempts stay tracked by the forward state; only a match longer than
//! `WINDOW / 2` bytes can then lose its true start: without whole-word it still counts,
//! with whole-word it is not counted). No backtracking: time is linear in the text (plus
//! one rescan of the text after a match end while the DFA tried to extend that match).

use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

use super::matcher::is_word_char;

/// Most patterns one task may count.
pub const MAX_PATTERNS: usize = 20;
/// Longest pattern (in chars).
pub const MAX_PATTERN_CHARS: usize = 1000;
/// Size limit (bytes) of each automaton a pattern compiles to (the NFA, and each of the
/// forward and reverse DFAs); a pattern over it is refused. Keeps the compile time and the
/// memory of a worker bounded whatever a user types (`a{100000}{100000}`).
pub const AUTOMATON_LIMIT: usize = 1 << 20;
/// Nesting depth the parser accepts (deeper is refused with the parser's message).
const NEST_LIMIT: u32 = 100;

/// Text kept for one pattern at most, besides the current piece (see the module docs).
#[cfg(not(test))]
const WINDOW: usize = 64 * 1024;
/// Small in tests so the cut of a long attempt is exercised on short texts.
#[cfg(test)]
const WINDOW: usize = 256;

/// Checks a task's patterns: at most [`MAX_PATTERNS`], each at most
/// [`MAX_PATTERN_CHARS`], no duplicates and none equal to one of the `words` (each pattern
/// is a key of the result's `counts` beside the words), valid syntax (the parser's
/// message), no empty match, automata within [`AUTOMATON_LIMIT`]. `Err` is a human
/// sentence fit to show in the form.
pub fn validate_patterns(
    patterns: &[String],
    words: &[String],
    case_sensitive: bool,
) -> Result<(), String> {
    if patterns.len() > MAX_PATTERNS {
        return Err(format!(
            "at most {MAX_PATTERNS} patterns can be counted at once"
        ));
    }
    for (i, p) in patterns.iter().enumerate() {
        if p.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "pattern {}: must be at most {MAX_PATTERN_CHARS} characters long",
                i + 1
            ));
        }
        super::check_chars(&format!("pattern {}", i + 1), p)?;
        if patterns[..i].contains(p) {
            return Err(format!("pattern {p:?} is given twice"));
        }
        if words.contains(p) {
            return Err(format!(
                "pattern {p:?} is also a word: its count would have the same key"
            ));
        }
        compiled(p, case_sensitive).map_err(|e| format!("pattern {p:?}: {e}"))?;
    }
    Ok(())
}

/// The two automata of one pattern.
pub(crate) struct Compiled {
    /// Unanchored, leftmost-first: finds where each match ends.
    fwd: dense::DFA<Vec<u32>>,
    /// Reverse, anchored, all matches: run back from an end, finds the leftmost start.
    rev: dense::DFA<Vec<u32>>,
}

/// Automata built recently, keyed by (pattern, case-sensitive): a worker counts the same
/// patterns on many pages, and building a Unicode DFA costs more than scanning a page.
type CacheEntry = ((String, bool), Arc<Compiled>);
static CACHE: OnceLock<Mutex<Vec<CacheEntry>>> = OnceLock::new();
/// Patterns kept in [`CACHE`] (oldest dropped first).
const CACHE_CAP: usize = 64;

/// The automata of `pattern`, from the cache if possible; `Err` says why it is refused.
pub(crate) fn compiled(pattern: &str, case_sensitive: bool) -> Result<Arc<Compiled>, String> {
    let key = (pattern.to_owned(), case_sensitive);
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    // A poisoned lock only means another thread panicked mid-update: skip the cache.
    if let Ok(c) = cache.lock()
        && let Some((_, a)) = c.iter().find(|(k, _)| *k == key)
    {
        return Ok(Arc::clone(a));
    }
    let a = Arc::new(build(pattern, case_sensitive)?);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CACHE_CAP {
            c.remove(0);
        }
        c.push((key, Arc::clone(&a)));
    }
    Ok(a)
}

/// Parses (for the refusals with a clear reason) and builds both automata.
fn build(pattern: &str, case_sensitive: bool) -> Result<Compiled, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(!case_sensitive)
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(pattern)
        // The parser's own message names the error and points at it.
        .map_err(|e| e.to_string())?;
    let props = hir.properties();
    if props.minimum_len() == Some(0) {
        return Err("it can match the empty string (e.g. `a*`); use `a+`".to_owned());
    }
    if props.look_set().contains_word_unicode() {
        return Err(
            "Unicode word boundaries (`\\b`, `\\B`) cannot be matched while the \
                    text streams; use whole-word mode, or the ASCII `(?-u:\\b)`"
                .to_owned(),
        );
    }
    let syntax = syntax::Config::new()
        .case_insensitive(!case_sensitive)
        .nest_limit(NEST_LIMIT);
    let too_big = |e: regex_automata::dfa::dense::BuildError| {
        // The reason is at the end of the error's chain ("error building NFA: … exceeded").
        let mut s = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            source = inner.source();
        }
        if s.contains("exceeded") || s.contains("limit") {
            format!("its automaton is larger than the limit of {AUTOMATON_LIMIT} bytes ({s})")
        } else {
            s
        }
    };
    let dfa_config = |kind: MatchKind, start: StartKind| {
        dense::Config::new()
            .match_kind(kind)
            .start_kind(start)
            .dfa_size_limit(Some(AUTOMATON_LIMIT))
            .determinize_size_limit(Some(AUTOMATON_LIMIT))
    };
    let fwd = dense::Builder::new()
        .configure(dfa_config(MatchKind::LeftmostFirst, StartKind::Unanchored))
        .syntax(syntax)
        .thompson(thompson::Config::new().nfa_size_limit(Some(AUTOMATON_LIMIT)))
        .build(pattern)
        .map_err(too_big)?;
    let rev = dense::Builder::new()
        .configure(dfa_config(MatchKind::All, StartKind::Anchored).accelerate(false))
        .syntax(syntax)
        .thompson(
            thompson::Config::new()
                .reverse(true)
                .nfa_size_limit(Some(AUTOMATON_LIMIT)),
        )
        .build(pattern)
        .map_err(too_big)?;
    Ok(Compiled { fwd, rev })
}

/// Streaming counter of several patterns, each on its own (see the module docs).
pub(crate) struct PatternSet {
    matchers: Vec<PatternMatcher>,
}

impl PatternSet {
    /// One matcher per pattern. Patterns are expected to be
    /// [validated](validate_patterns); one that does not compile counts zero.
    pub(crate) fn new(patterns: &[String], case_sensitive: bool, whole_word: bool) -> Self {
        PatternSet {
            matchers: patterns
                .iter()
                .map(|p| PatternMatcher::new(compiled(p, case_sensitive).ok(), whole_word))
                .collect(),
        }
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        for m in &mut self.matchers {
            m.push_str(s);
        }
    }

    pub(crate) fn push_separator(&mut self) {
        for m in &mut self.matchers {
            m.end_block();
        }
    }

    /// Ends the text: one count per pattern, in order.
    pub(crate) fn finish(self) -> Vec<u64> {
        self.matchers
            .into_iter()
            .map(|mut m| {
                m.end_block();
                m.count
            })
            .collect()
    }
}

/// One pattern's search over the current block.
struct PatternMatcher {
    /// `None`: the pattern did not compile (counts zero).
    re: Option<Arc<Compiled>>,
    whole_word: bool,
    /// The block's text kept: from one char before `p` (or the block start) on.
    buf: String,
    /// Where the current search started (a match may start here or later).
    p: usize,
    /// The next byte to step the forward DFA over.
    at: usize,
    /// The forward DFA's state after `buf[p..at]`.
    state: StateID,
    /// End of the leftmost-first match found so far from `p` (it may still grow).
    last_end: Option<usize>,
    /// No match can end in the rest of the block (the DFA is dead).
    done: bool,
    count: u64,
}

impl PatternMatcher {
    fn new(re: Option<Arc<Compiled>>, whole_word: bool) -> Self {
        let mut m = PatternMatcher {
            re,
            whole_word,
            buf: String::new(),
            p: 0,
            at: 0,
            state: StateID::ZERO,
            last_end: None,
            done: false,
            count: 0,
        };
        m.restart(0);
        m
    }

    fn push_str(&mut self, s: &str) {
        if self.done || self.re.is_none() {
            return;
        }
        self.buf.push_str(s);
        self.run();
        self.bound();
    }

    /// Starts a new search at `q` (a char boundary of `buf`).
    fn restart(&mut self, q: usize) {
        self.p = q;
        self.at = q;
        self.last_end = None;
        let Some(re) = &self.re else {
            self.done = true;
            return;
        };
        let behind = q.checked_sub(1).map(|i| self.buf.as_bytes()[i]);
        let config = start::Config::new()
            .anchored(Anchored::No)
            .look_behind(behind);
        match re.fwd.start_state(&config) {
            Ok(s) => {
                self.state = s;
                self.done = false;
            }
            // Only a quit byte could cause it; none is configured.
            Err(_) => self.done = true,
        }
    }

    /// Steps the forward DFA over the rest of `buf`, deciding each match whose end is
    /// known (the DFA died after it).
    fn run(&mut self) {
        let Some(re) = self.re.clone() else {
            return;
        };
        let fwd = &re.fwd;
        while !self.done && self.at < self.buf.len() {
            let bytes = self.buf.as_bytes();
            let mut at = self.at;
            let mut state = self.state;
            let mut dead = false;
            while at < bytes.len() {
                state = fwd.next_state(state, bytes[at]);
                if fwd.is_special_state(state) {
                    if fwd.is_match_state(state) {
                        // Match states are delayed by one byte: the match ends at `at`.
                        self.last_end = Some(at);
                    } else if fwd.is_dead_state(state) || fwd.is_quit_state(state) {
                        dead = true;
                        break;
                    } else if fwd.is_accel_state(state) {
                        // Every byte but the accelerator's needles loops on this state.
                        let needles = fwd.accelerator(state);
                        at = find_any(needles, bytes, at + 1).unwrap_or(bytes.len());
                        continue;
                    }
                }
                at += 1;
            }
            self.at = at;
            self.state = state;
            if dead {
                match self.last_end {
                    Some(e) => self.decide(e),
                    None => self.done = true,
                }
            }
        }
    }

    /// Keeps the carry bounded (see the module docs).
    fn bound(&mut self) {
        if self.done {
            self.buf.clear();
            self.p = 0;
            self.at = 0;
            return;
        }
        if self.at - self.p > WINDOW {
            match self.last_end {
                // A match extended for over half a window: take it as it is.
                Some(e) if self.at - e > WINDOW / 2 => {
                    self.decide(e);
                    self.run();
                }
                Some(_) => {}
                None => self.p = floor_boundary(&self.buf, self.at - WINDOW / 2),
            }
        }
        if !self.whole_word && self.last_end.is_none() {
            // Without whole-word no start is ever looked for: only the restart point
            // (a match end, after `at`) and one char of look-behind are needed.
            self.p = floor_boundary(&self.buf, self.at);
        }
        self.trim();
    }

    /// Drops the text before the char before `p`.
    fn trim(&mut self) {
        if self.p < 2 {
            return;
        }
        let keep = floor_boundary(&self.buf, self.p - 1);
        // Amortized: only once the dropped part is at least half of what is kept.
        if keep == 0 || keep < self.buf.len() / 2 {
            return;
        }
        self.buf.drain(..keep);
        self.p -= keep;
        self.at -= keep;
        self.last_end = self.last_end.map(|e| e - keep);
    }

    /// The match from the search position that ends at `e` is final: counts it (whole-word
    /// rule permitting) and starts the next search.
    fn decide(&mut self, e: usize) {
        if !self.whole_word {
            // Where it started does not matter: only whole-word mode needs the start.
            self.count += 1;
            self.restart(e);
            return;
        }
        let Some(re) = &self.re else {
            return;
        };
        let input = Input::new(self.buf.as_bytes())
            .range(self.p..e)
            .anchored(Anchored::Yes);
        let start = re
            .rev
            .try_search_rev(&input)
            .ok()
            .flatten()
            .map(|h| h.offset());
        let next = match start {
            Some(s) => {
                let before = self.buf[..s].chars().next_back().is_some_and(is_word_char);
                // Whenever a match is decided the char after it is in `buf` (the DFA
                // died on it), or the block ended there.
                let after = self.buf[e..].chars().next().is_some_and(is_word_char);
                if before || after {
                    // A rejected match consumes only its first char.
                    s + self.buf[s..].chars().next().map_or(1, char::len_utf8)
                } else {
                    self.count += 1;
                    e
                }
            }
            // Its start was cut off with the window: cannot be tested, not counted.
            None => e,
        };
        self.restart(next);
    }

    /// Ends the block: decides the last matches, then forgets the text.
    fn end_block(&mut self) {
        if let Some(re) = self.re.clone() {
            loop {
                self.run();
                if self.done {
                    break;
                }
                let eoi = re.fwd.next_eoi_state(self.state);
                if re.fwd.is_match_state(eoi) {
                    self.last_end = Some(self.buf.len());
                }
                match self.last_end {
                    // Progress: the next search starts after `p` or with a fresh state,
                    // and no match is empty.
                    Some(e) => self.decide(e),
                    None => break,
                }
            }
        }
        self.buf.clear();
        self.restart(0);
    }
}

/// The first position at or after `from` holding one of `needles` (1 to 3 bytes).
fn find_any(needles: &[u8], hay: &[u8], from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    let i = match *needles {
        [a] => memchr::memchr(a, rest),
        [a, b] => memchr::memchr2(a, b, rest),
        [a, b, c] => memchr::memchr3(a, b, c, rest),
        _ => return Some(from),
    }?;
    Some(from + i)
}

/// The char boundary at or before `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
