//! The **count** step of wordtally (submit → queue → fetch → **count** → NSQ → DB → poll):
//! counts one word, or several (DESIGN §14), in one HTTP response body while it streams in.
//!
//! Flow inside this module: bytes → `charset` (BOM / header / `<meta>` / guess, buffering
//! at most the first 1024 bytes) → `encoding_rs` streaming decoder → either `scanner` (the
//! text a reader sees, `text` scope of an HTML page) or straight on → `words` (one word:
//! `matcher`'s memmem path; several: one Aho–Corasick pass), applying the case and
//! whole-word rules. Memory stays bounded by the chunk size plus the word length, never by
//! the body size. `html` is the html5ever-based text extractor the scanner replaced; it is
//! kept as the oracle of the differential tests and as a benchmark row. `fold_search` is the
//! in-place ASCII case-insensitive search of the raw scope (public for the benchmark rows).

mod charset;
pub mod fold_search;
mod html;
mod links;
#[cfg(test)]
mod links_tests;
mod matcher;
mod pattern;
mod scanner;
#[cfg(test)]
mod scanner_tests;
mod select;
#[cfg(test)]
mod select_tests;
mod word_runs;
mod words;

use std::fmt;
use std::str::FromStr;

use encoding_rs::Decoder;
use serde::{Deserialize, Serialize};

use self::charset::{ContentType, SNIFF_LEN};
use self::html::HtmlText;
use self::links::LinkCollector;
pub use self::links::{LinkOptions, PageLinks};
use self::scanner::Scanner;
pub use self::select::validate_regions;
use self::words::Counter;

pub use self::pattern::{AUTOMATON_LIMIT, MAX_PATTERN_CHARS, MAX_PATTERNS, validate_patterns};

/// Most CSS selectors in each of `within` and `outside` (DESIGN §17).
pub const MAX_SELECTORS: usize = 20;
/// Longest CSS selector (in chars).
pub const MAX_SELECTOR_CHARS: usize = 1000;
/// Deepest nesting of brackets in a selector (`:not(:not(…))`): a cheap bound on what a
/// selector parser must recurse through, whatever engine checks the rest.
pub const MAX_SELECTOR_NESTING: usize = 32;

/// Refuses raw control characters and U+FFFD in a user's selector or pattern: U+FFFD is
/// what a form or JSON decoder leaves of invalid UTF-8, so the request was not what its
/// sender meant (escapes like `\t` in a pattern are fine).
pub(crate) fn check_chars(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\u{FFFD}') {
        return Err(format!(
            "{what} contains U+FFFD (invalid UTF-8 in the request?)"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

/// Checks the limits of the regions this module owns: at most [`MAX_SELECTORS`] selectors
/// in each list, each non-empty and at most [`MAX_SELECTOR_CHARS`], and regions only with
/// the text scope (the raw scope has no elements). The selector syntax itself is checked
/// by the regions engine (`count::validate_regions`, H-links' `select.rs`).
pub fn validate_region_limits(
    within: &[String],
    outside: &[String],
    scope: Scope,
) -> Result<(), String> {
    for (name, list) in [("within", within), ("outside", outside)] {
        if list.len() > MAX_SELECTORS {
            return Err(format!("`{name}`: at most {MAX_SELECTORS} selectors"));
        }
        for sel in list {
            if sel.trim().is_empty() {
                return Err(format!("`{name}`: a selector must not be empty"));
            }
            if sel.chars().count() > MAX_SELECTOR_CHARS {
                return Err(format!(
                    "`{name}`: a selector must be at most {MAX_SELECTOR_CHARS} characters long"
                ));
            }
            check_chars(&format!("`{name}` selector"), sel)?;
            let mut depth = 0usize;
            for c in sel.chars() {
                match c {
                    '(' | '[' => depth += 1,
                    ')' | ']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if depth > MAX_SELECTOR_NESTING {
                    return Err(format!(
                        "`{name}`: a selector may nest at most {MAX_SELECTOR_NESTING} levels \
                         of brackets (`:not(:not(…))`)"
                    ));
                }
            }
        }
    }
    if scope == Scope::Raw && !(within.is_empty() && outside.is_empty()) {
        return Err(
            "regions (`within`, `outside`) apply to the text scope only, not to `raw`".to_owned(),
        );
    }
    Ok(())
}

/// Longest word (in chars) a task may count; keeps the carry-over buffer tiny.
pub const MAX_WORD_CHARS: usize = 100;

/// Most words (or phrases) one task may count in one pass (DESIGN §14).
pub const MAX_WORDS: usize = 20;

/// Checks a user-supplied list of words for [`BodyCounter::new_words`]: 1 to
/// [`MAX_WORDS`] entries, each valid as [`CountOptions::validate`] requires; `Err` is a
/// human sentence fit to show in the form.
pub fn validate_words(words: &[String]) -> Result<(), String> {
    if words.is_empty() {
        return Err("give at least one word".to_owned());
    }
    if words.len() > MAX_WORDS {
        return Err(format!("at most {MAX_WORDS} words can be counted at once"));
    }
    for w in words {
        let o = CountOptions {
            word: w.clone(),
            ..CountOptions::default()
        };
        o.validate().map_err(|e| format!("{w:?}: {e}"))?;
    }
    Ok(())
}

/// What a task counts. Missing fields deserialize to the defaults, so a client may send
/// only what it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CountOptions {
    /// The word (or any string) to count.
    pub word: String,
    /// Compare exactly; otherwise both sides are lowercased per char.
    pub case_sensitive: bool,
    /// Count only matches not touching a letter, digit or `_` on either side.
    pub whole_word: bool,
    /// Visible text of the page, or the raw decoded body.
    pub scope: Scope,
    /// Several words counted in one pass (DESIGN §14): when not empty, the whole list in
    /// order, and `word` is its first entry (so readers that know only `word` still see
    /// the first word). Empty = just `word`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    /// Regions (DESIGN §17): CSS selectors whose elements are the only ones counted.
    /// Empty = the whole page. Text scope only (the raw scope has no elements).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub within: Vec<String>,
    /// Regions (DESIGN §17): CSS selectors whose elements are never counted (navigation,
    /// footers, sidebars repeated on every page). Text scope only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside: Vec<String>,
    /// Regular expressions counted beside the words over the same text stream, each with
    /// its own count keyed by the pattern text (leftmost-first, non-overlapping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
}

impl Default for CountOptions {
    /// The product default: the whole word `python`, any case, in the visible text.
    fn default() -> Self {
        CountOptions {
            word: "python".to_owned(),
            case_sensitive: false,
            whole_word: true,
            scope: Scope::Text,
            words: Vec::new(),
            within: Vec::new(),
            outside: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

impl CountOptions {
    /// The words this task counts, in order (`words`, or just `word`).
    pub fn word_list(&self) -> Vec<String> {
        if self.words.is_empty() {
            vec![self.word.clone()]
        } else {
            self.words.clone()
        }
    }

    /// Sets the list of words: `word` becomes the first, `words` the list when it holds
    /// more than one (a one-word list is stored as just `word`).
    pub fn set_words(&mut self, words: Vec<String>) {
        if let Some(first) = words.first() {
            self.word = first.clone();
        }
        self.words = if words.len() > 1 { words } else { Vec::new() };
    }

    /// Everything a submitted task asks for, checked in one place (the task form, the API
    /// and the crawls reuse it): every word ([`validate`](Self::validate)), the regions'
    /// limits and syntax, and the patterns ([`validate_patterns`]).
    pub fn validate_all(&self) -> Result<(), String> {
        if self.words.is_empty() {
            self.validate()?;
        } else {
            validate_words(&self.words)?;
        }
        validate_region_limits(&self.within, &self.outside, self.scope)?;
        validate_regions(&self.within, &self.outside)?;
        validate_patterns(&self.patterns, &self.word_list(), self.case_sensitive)
    }

    /// The keys of a result's `counts`, in the order of [`CountSummary::counts`] from
    /// [`BodyCounter::for_options`]: the words, then the patterns (their text).
    pub fn count_keys(&self) -> Vec<String> {
        let mut keys = self.word_list();
        keys.extend(self.patterns.iter().cloned());
        keys
    }

    /// Checks a user-supplied option set; `Err` is a human sentence fit to show in the form.
    ///
    /// Control characters are refused because the text matcher uses one as a block
    /// separator, and a bounded length keeps streaming memory small.
    pub fn validate(&self) -> Result<(), String> {
        if self.word.trim().is_empty() {
            return Err("the word must not be empty or only whitespace".to_owned());
        }
        if self.word.chars().count() > MAX_WORD_CHARS {
            return Err(format!(
                "the word must be at most {MAX_WORD_CHARS} characters long"
            ));
        }
        if self.word.chars().any(char::is_control) {
            return Err("the word must not contain control characters".to_owned());
        }
        Ok(())
    }
}

/// Where the word is looked for.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The text a reader sees (markup, scripts, styles, comments and attributes removed).
    #[default]
    Text,
    /// The decoded body as is, markup included.
    Raw,
}

impl Scope {
    /// The wire/database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Text => "text",
            Scope::Raw => "raw",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    /// Accepts `text` or `raw` in any ASCII case (surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("text") {
            Ok(Scope::Text)
        } else if t.eq_ignore_ascii_case("raw") {
            Ok(Scope::Raw)
        } else {
            Err(format!("unknown scope {s:?}: expected \"text\" or \"raw\""))
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the charset used to decode a body came from (stored with the result so odd
/// counts can be explained).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharsetSource {
    /// A byte order mark at the start of the body.
    Bom,
    /// The `charset` parameter of the HTTP `Content-Type` header.
    Header,
    /// A `<meta>` declaration in the first 1024 bytes.
    Meta,
    /// `chardetng`'s guess over the first 1024 bytes (windows-1252 for an empty body).
    Guess,
}

impl CharsetSource {
    /// The wire/database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CharsetSource::Bom => "bom",
            CharsetSource::Header => "header",
            CharsetSource::Meta => "meta",
            CharsetSource::Guess => "guess",
        }
    }
}

/// The outcome of counting one body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountSummary {
    /// Number of non-overlapping matches of the first word (0 when there is none).
    pub count: u64,
    /// One count per word, in the order given (`[count]` for a single-word counter).
    pub counts: Vec<u64>,
    /// `encoding_rs` name of the charset used, e.g. `"UTF-8"`, `"windows-1251"`.
    pub charset: &'static str,
    /// Why that charset was used.
    pub charset_source: CharsetSource,
    /// The page's links (DESIGN §15), collected in the same pass: `None` unless asked for
    /// ([`BodyCounter::new_with_links`]) and the body is HTML.
    pub links: Option<PageLinks>,
}

/// Which extractor turns an HTML page into its visible text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    /// The production scanner (`scanner.rs`).
    Scanner,
    /// html5ever's tokenizer (`html.rs`): the oracle of the tests and benchmarks.
    Html5ever,
}

/// The stage after decoding: plain text goes straight to the words counter, HTML text
/// scope goes through the scanner (or the oracle) first.
enum Pipeline {
    Plain(Box<Counter>),
    Html(Box<Scanner>),
    Oracle(Box<HtmlText>),
    /// Raw scope with links: the counter gets the raw text, a muted scanner the same
    /// pieces for its tag events.
    RawLinks(Box<Counter>, Box<Scanner>),
}

impl Pipeline {
    fn new(spec: &Spec<'_>, content_is_html: bool, engine: Engine) -> Self {
        let counter = Counter::with_patterns(
            spec.words,
            spec.patterns,
            spec.case_sensitive,
            spec.whole_word,
        );
        if spec.scope == Scope::Text
            && content_is_html
            && engine == Engine::Scanner
            && !(spec.within.is_empty() && spec.outside.is_empty())
        {
            match select::Regions::compile(spec.within, spec.outside) {
                Ok(regions) => {
                    return Pipeline::Html(Box::new(Scanner::with_regions(
                        counter,
                        spec.links.map(LinkCollector::new),
                        std::sync::Arc::new(regions),
                    )));
                }
                // Options are validated on submission (`validate_regions`); a task that
                // slipped through is counted without regions rather than not at all.
                Err(e) => tracing::warn!(error = %e, "invalid regions ignored"),
            }
        }
        if let (Some(links), true, Engine::Scanner) = (spec.links, content_is_html, engine) {
            let collector = LinkCollector::new(links);
            return match spec.scope {
                Scope::Text => {
                    Pipeline::Html(Box::new(Scanner::with_links(counter, collector, false)))
                }
                Scope::Raw => {
                    let idle = Counter::new(&[String::new()], true, false);
                    Pipeline::RawLinks(
                        Box::new(counter),
                        Box::new(Scanner::with_links(idle, collector, true)),
                    )
                }
            };
        }
        if spec.scope == Scope::Text && content_is_html {
            match engine {
                Engine::Scanner => Pipeline::Html(Box::new(Scanner::new(counter))),
                Engine::Html5ever => Pipeline::Oracle(Box::new(HtmlText::new(counter))),
            }
        } else {
            Pipeline::Plain(Box::new(counter))
        }
    }

    fn push_str(&mut self, s: &str) {
        match self {
            Pipeline::Plain(m) => m.push_str(s),
            Pipeline::Html(h) => h.push_str(s),
            Pipeline::Oracle(h) => h.push_str(s),
            Pipeline::RawLinks(m, t) => {
                m.push_str(s);
                t.push_str(s);
            }
        }
    }

    /// Whether a UTF-8 body's bytes may be pushed as they are, unvalidated: the raw
    /// scope (or a non-HTML body) counted by one byte-exact matcher.
    fn takes_bytes(&self) -> bool {
        matches!(self, Pipeline::Plain(m) if m.takes_bytes())
    }

    fn finish(self) -> (Vec<u64>, Option<PageLinks>) {
        match self {
            Pipeline::Plain(m) => (m.finish(), None),
            Pipeline::Html(h) => h.finish_all(),
            Pipeline::Oracle(h) => (h.finish(), None),
            Pipeline::RawLinks(m, t) => (m.finish(), t.finish_all().1),
        }
    }
}

/// What to count, borrowed: the words and the options shared by all of them.
struct Spec<'a> {
    words: &'a [String],
    /// Regular expressions counted after the words (DESIGN §17).
    patterns: &'a [String],
    /// Regions (DESIGN §17): CSS selectors (text scope of an HTML page only).
    within: &'a [String],
    outside: &'a [String],
    case_sensitive: bool,
    whole_word: bool,
    scope: Scope,
    /// Collect the page's links too (HTML bodies only).
    links: Option<LinkOptions>,
}

impl<'a> Spec<'a> {
    fn of(opts: &'a CountOptions) -> Self {
        Spec {
            words: std::slice::from_ref(&opts.word),
            patterns: &[],
            within: &[],
            outside: &[],
            case_sensitive: opts.case_sensitive,
            whole_word: opts.whole_word,
            scope: opts.scope,
            links: None,
        }
    }
}

/// Capacity of the reusable decode buffer: input is decoded in slices of about this much
/// output, so a large chunk from the caller does not allocate a large buffer.
const DECODE_BUF_BYTES: usize = 16 * 1024;

struct Decoding {
    decoder: Decoder,
    /// UTF-8 bodies skip `decoder`: they are validated where they are (`simdutf8`'s
    /// std-compatible validator; malformed input becomes U+FFFD by the same "maximal
    /// subpart" rule as encoding_rs) and passed on without a copy.
    utf8: bool,
    /// With `utf8`, when the pipeline [takes bytes](Pipeline::takes_bytes): not even
    /// validated, the bytes go straight to the matcher (which reads malformed bytes as a
    /// decoder would).
    bytes: bool,
    /// The incomplete UTF-8 sequence at the end of the previous chunk (at most 3 bytes).
    carry: Vec<u8>,
    charset: &'static str,
    source: CharsetSource,
}

/// Streaming counter for one HTTP response body.
///
/// Feed the body in chunks of any size and split anywhere (inside a UTF-8 sequence, a tag,
/// an entity or the word); the count is the same as for the whole body at once. Only the
/// first 1024 bytes are ever buffered (to find the charset); after that, memory does not
/// grow with the body (the HTML scanner keeps no tag, comment or attribute text).
pub struct BodyCounter {
    content_type: ContentType,
    /// Leading bytes kept until the charset is known.
    prefix: Vec<u8>,
    /// `None` while the charset is still being sniffed.
    decoding: Option<Decoding>,
    decode_buf: String,
    pipeline: Pipeline,
}

// Compile-time proof that a counter can move between the worker's async tasks/threads.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<BodyCounter>();
};

impl BodyCounter {
    /// `content_type` is the raw `Content-Type` header value, if any (none means HTML).
    /// Options are expected to be [validated](CountOptions::validate); an empty word
    /// simply counts zero.
    pub fn new(opts: &CountOptions, content_type: Option<&str>) -> Self {
        Self::with_spec(&Spec::of(opts), content_type)
    }

    /// Counts several words (or phrases) in one pass (DESIGN §14): the summary's `counts`
    /// has one entry per word, in order, each equal to what counting that word alone with
    /// [`BodyCounter::new`] gives (words may overlap each other; matches of one word do
    /// not). Words are expected to be [validated](validate_words); an empty word counts
    /// zero.
    pub fn new_words(
        words: &[String],
        case_sensitive: bool,
        whole_word: bool,
        scope: Scope,
        content_type: Option<&str>,
    ) -> Self {
        let spec = Spec {
            words,
            patterns: &[],
            within: &[],
            outside: &[],
            case_sensitive,
            whole_word,
            scope,
            links: None,
        };
        Self::with_spec(&spec, content_type)
    }

    /// Counts everything `opts` asks for, like [`BodyCounter::for_options`] (words,
    /// patterns, regions) and, in the same pass, collects the page's links for a crawl
    /// (DESIGN §15): the summary's `links` is `Some` for an HTML body, `None` otherwise.
    /// Works in both scopes: in `raw` the words are counted on the raw text while the
    /// scanner reads only the tags.
    pub fn new_with_links(
        opts: &CountOptions,
        content_type: Option<&str>,
        links: LinkOptions,
    ) -> Self {
        let words = opts.word_list();
        let spec = Spec {
            words: &words,
            patterns: &opts.patterns,
            within: &opts.within,
            outside: &opts.outside,
            case_sensitive: opts.case_sensitive,
            whole_word: opts.whole_word,
            scope: opts.scope,
            links: Some(links),
        };
        Self::with_spec(&spec, content_type)
    }

    /// Counts everything `opts` asks for in one pass: its words (one or several) and its
    /// patterns, only in its regions (`within` / `outside`, text scope of an HTML page);
    /// the summary's `counts` follow [`CountOptions::count_keys`]. Options are
    /// expected to be [validated](CountOptions::validate_all).
    pub fn for_options(opts: &CountOptions, content_type: Option<&str>) -> Self {
        let words = opts.word_list();
        let spec = Spec {
            words: &words,
            patterns: &opts.patterns,
            within: &opts.within,
            outside: &opts.outside,
            case_sensitive: opts.case_sensitive,
            whole_word: opts.whole_word,
            scope: opts.scope,
            links: None,
        };
        Self::with_spec(&spec, content_type)
    }

    fn with_spec(spec: &Spec<'_>, content_type: Option<&str>) -> Self {
        let content_type = charset::parse_content_type(content_type);
        BodyCounter {
            content_type,
            prefix: Vec::new(),
            decoding: None,
            decode_buf: String::new(),
            pipeline: Pipeline::new(spec, content_type.is_html, Engine::Scanner),
        }
    }

    /// Counts the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if self.decoding.is_none() {
            let take = (SNIFF_LEN - self.prefix.len()).min(rest.len());
            self.prefix.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let early = charset::detect_early(&self.prefix, self.content_type);
            if early.is_none() && self.prefix.len() < SNIFF_LEN {
                return;
            }
            self.start_decoding(early, false);
        }
        self.decode(rest, false);
    }

    /// Ends the body and reports the count and the charset used.
    pub fn finish(mut self) -> CountSummary {
        if self.decoding.is_none() {
            self.start_decoding(None, true);
        }
        self.decode(&[], true);
        let (charset, charset_source) = match &self.decoding {
            Some(d) => (d.charset, d.source),
            // Unreachable: start_decoding always sets it.
            None => (encoding_rs::WINDOWS_1252.name(), CharsetSource::Guess),
        };
        let (counts, links) = self.pipeline.finish();
        CountSummary {
            count: counts.first().copied().unwrap_or(0),
            counts,
            charset,
            charset_source,
            links,
        }
    }

    /// Settles the charset and decodes the buffered prefix.
    fn start_decoding(&mut self, early: Option<charset::Detected>, at_eof: bool) {
        let detected =
            early.unwrap_or_else(|| charset::detect(&self.prefix, self.content_type, at_eof));
        let utf8 = detected.encoding == encoding_rs::UTF_8;
        self.decoding = Some(Decoding {
            decoder: detected.encoding.new_decoder_without_bom_handling(),
            utf8,
            bytes: utf8 && self.pipeline.takes_bytes(),
            carry: Vec::new(),
            charset: detected.encoding.name(),
            source: detected.source,
        });
        if !utf8 {
            self.decode_buf = String::with_capacity(DECODE_BUF_BYTES);
        }
        let prefix = std::mem::take(&mut self.prefix);
        self.decode(prefix.get(detected.bom_len..).unwrap_or_default(), false);
    }

    /// Decodes `src` (malformed sequences become U+FFFD) and pushes the text on.
    fn decode(&mut self, mut src: &[u8], last: bool) {
        let Some(decoding) = &mut self.decoding else {
            return;
        };
        if decoding.bytes {
            // Set only for this pipeline (`Pipeline::takes_bytes`).
            if let Pipeline::Plain(counter) = &mut self.pipeline
                && let Counter::One(m) = counter.as_mut()
            {
                m.push_bytes(src);
            }
            return;
        }
        if decoding.utf8 {
            let carry = std::mem::take(&mut decoding.carry);
            let carry = self.decode_utf8(carry, src, last);
            if let Some(d) = &mut self.decoding {
                d.carry = carry;
            }
            return;
        }
        loop {
            self.decode_buf.clear();
            let (result, read, _replaced) =
                decoding
                    .decoder
                    .decode_to_string(src, &mut self.decode_buf, last);
            self.pipeline.push_str(&self.decode_buf);
            src = &src[read..];
            if result == encoding_rs::CoderResult::InputEmpty {
                break;
            }
        }
    }

    /// The UTF-8 path of [`decode`](Self::decode): `carry` is the incomplete sequence left
    /// by the previous chunk; returns the one this chunk leaves (empty when `last`).
    fn decode_utf8(&mut self, mut carry: Vec<u8>, src: &[u8], last: bool) -> Vec<u8> {
        let mut rest = src;
        if !carry.is_empty() {
            // Complete (or reject) the carried sequence with the first bytes of `src`.
            let held = carry.len();
            let take = (4 - held).min(rest.len());
            carry.extend_from_slice(&rest[..take]);
            match std::str::from_utf8(&carry) {
                Ok(s) => {
                    self.pipeline.push_str(s);
                    rest = &rest[take..];
                }
                Err(e) if e.valid_up_to() > 0 => {
                    let v = e.valid_up_to();
                    if let Ok(s) = std::str::from_utf8(&carry[..v]) {
                        self.pipeline.push_str(s);
                    }
                    rest = &rest[v - held..];
                }
                Err(e) => match e.error_len() {
                    Some(l) => {
                        self.pipeline.push_str("\u{FFFD}");
                        rest = &rest[l.saturating_sub(held).min(take)..];
                    }
                    None if last => {
                        self.pipeline.push_str("\u{FFFD}");
                        return Vec::new();
                    }
                    // Still incomplete: `src` was shorter than the sequence.
                    None => return carry,
                },
            }
            carry.clear();
        }
        loop {
            // simdutf8's std-compatible validator: same `valid_up_to`/`error_len` as
            // `std::str::from_utf8`, several times faster on mostly-ASCII pages.
            match simdutf8::compat::from_utf8(rest) {
                Ok(s) => {
                    self.pipeline.push_str(s);
                    return carry;
                }
                Err(e) => {
                    let v = e.valid_up_to();
                    if let Ok(s) = simdutf8::compat::from_utf8(&rest[..v]) {
                        self.pipeline.push_str(s);
                    }
                    match e.error_len() {
                        Some(l) => {
                            self.pipeline.push_str("\u{FFFD}");
                            rest = &rest[v + l..];
                        }
                        None if last => {
                            self.pipeline.push_str("\u{FFFD}");
                            return carry;
                        }
                        None => {
                            carry.extend_from_slice(&rest[v..]);
                            return carry;
                        }
                    }
                }
            }
        }
    }
}

/// Counts in an already-decoded string (same rules, no charset step). Handy for tests and
/// benchmarks, and for callers that already hold the text.
pub fn count_text(opts: &CountOptions, content_is_html: bool, text: &str) -> u64 {
    let mut pipeline = Pipeline::new(&Spec::of(opts), content_is_html, Engine::Scanner);
    pipeline.push_str(text);
    pipeline.finish().0.first().copied().unwrap_or(0)
}

/// [`count_text`] for several words: one count per word, in order.
pub fn count_text_words(
    words: &[String],
    case_sensitive: bool,
    whole_word: bool,
    scope: Scope,
    content_is_html: bool,
    text: &str,
) -> Vec<u64> {
    let spec = Spec {
        words,
        patterns: &[],
        within: &[],
        outside: &[],
        case_sensitive,
        whole_word,
        scope,
        links: None,
    };
    let mut pipeline = Pipeline::new(&spec, content_is_html, Engine::Scanner);
    pipeline.push_str(text);
    pipeline.finish().0
}

/// The same count with html5ever's tokenizer instead of the scanner, text fed in pieces
/// of `piece` bytes (rounded to char boundaries). Not for production: it is the oracle of
/// the differential tests and the old engine in the counting benchmark.
#[doc(hidden)]
pub fn count_text_html5ever(
    words: &[String],
    case_sensitive: bool,
    whole_word: bool,
    scope: Scope,
    content_is_html: bool,
    text: &str,
    piece: usize,
) -> Vec<u64> {
    let spec = Spec {
        words,
        patterns: &[],
        within: &[],
        outside: &[],
        case_sensitive,
        whole_word,
        scope,
        links: None,
    };
    let mut pipeline = Pipeline::new(&spec, content_is_html, Engine::Html5ever);
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = piece.clamp(1, rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        pipeline.push_str(&rest[..cut]);
        rest = &rest[cut..];
    }
    pipeline.finish().0
}

/// Tests only: the text stream html5ever's extractor gives for an HTML page (a block
/// boundary as `\0`), the input of the pattern oracle on the corpus.
#[cfg(test)]
pub(crate) fn text_stream_html5ever(text: &str) -> String {
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut h = HtmlText::new(Counter::Record(std::sync::Arc::clone(&out)));
    h.push_str(text);
    h.finish();
    out.lock().map(|s| s.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
