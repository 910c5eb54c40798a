//! The **count** step of wordtally (submit → queue → fetch → **count** → NSQ → DB → poll):
//! counts one word in one HTTP response body while it streams in.
//!
//! Flow inside this module: bytes → `charset` (BOM / header / `<meta>` / guess, buffering
//! at most the first 1024 bytes) → `encoding_rs` streaming decoder → either `html` (the
//! text a reader sees, `text` scope of an HTML page) or straight on → `matcher` (the
//! word, case and whole-word rules). Memory stays bounded by the chunk size plus the word
//! length, never by the body size.

mod charset;
mod html;
mod matcher;

use std::fmt;
use std::str::FromStr;

use encoding_rs::Decoder;
use serde::{Deserialize, Serialize};

use self::charset::{ContentType, SNIFF_LEN};
use self::html::HtmlText;
use self::matcher::Matcher;

/// Longest word (in chars) a task may count; keeps the carry-over buffer tiny.
pub const MAX_WORD_CHARS: usize = 100;

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
}

impl Default for CountOptions {
    /// The product default: the whole word `python`, any case, in the visible text.
    fn default() -> Self {
        CountOptions {
            word: "python".to_owned(),
            case_sensitive: false,
            whole_word: true,
            scope: Scope::Text,
        }
    }
}

impl CountOptions {
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
    /// Number of non-overlapping matches.
    pub count: u64,
    /// `encoding_rs` name of the charset used, e.g. `"UTF-8"`, `"windows-1251"`.
    pub charset: &'static str,
    /// Why that charset was used.
    pub charset_source: CharsetSource,
}

/// The stage after decoding: plain text goes straight to the matcher, HTML text scope
/// goes through the tokenizer first.
enum Pipeline {
    Plain(Box<Matcher>),
    Html(Box<HtmlText>),
}

impl Pipeline {
    fn new(opts: &CountOptions, content_is_html: bool) -> Self {
        let matcher = Matcher::new(&opts.word, opts.case_sensitive, opts.whole_word);
        if opts.scope == Scope::Text && content_is_html {
            Pipeline::Html(Box::new(HtmlText::new(matcher)))
        } else {
            Pipeline::Plain(Box::new(matcher))
        }
    }

    fn push_str(&mut self, s: &str) {
        match self {
            Pipeline::Plain(m) => m.push_str(s),
            Pipeline::Html(h) => h.push_str(s),
        }
    }

    fn finish(self) -> u64 {
        match self {
            Pipeline::Plain(m) => m.finish(),
            Pipeline::Html(h) => h.finish(),
        }
    }
}

/// Capacity of the reusable decode buffer: input is decoded in slices of about this much
/// output, so a large chunk from the caller does not allocate a large buffer.
const DECODE_BUF_BYTES: usize = 16 * 1024;

struct Decoding {
    decoder: Decoder,
    charset: &'static str,
    source: CharsetSource,
}

/// Streaming counter for one HTTP response body.
///
/// Feed the body in chunks of any size and split anywhere (inside a UTF-8 sequence, a tag,
/// an entity or the word); the count is the same as for the whole body at once. Only the
/// first 1024 bytes are ever buffered (to find the charset); after that, memory does not
/// grow with the body. One caveat: html5ever keeps a single comment, tag or attribute value
/// in memory until it ends, so the fetch step should still cap the body size.
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
        let content_type = charset::parse_content_type(content_type);
        BodyCounter {
            content_type,
            prefix: Vec::new(),
            decoding: None,
            decode_buf: String::new(),
            pipeline: Pipeline::new(opts, content_type.is_html),
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
        CountSummary {
            count: self.pipeline.finish(),
            charset,
            charset_source,
        }
    }

    /// Settles the charset and decodes the buffered prefix.
    fn start_decoding(&mut self, early: Option<charset::Detected>, at_eof: bool) {
        let detected =
            early.unwrap_or_else(|| charset::detect(&self.prefix, self.content_type, at_eof));
        self.decoding = Some(Decoding {
            decoder: detected.encoding.new_decoder_without_bom_handling(),
            charset: detected.encoding.name(),
            source: detected.source,
        });
        self.decode_buf = String::with_capacity(DECODE_BUF_BYTES);
        let prefix = std::mem::take(&mut self.prefix);
        self.decode(prefix.get(detected.bom_len..).unwrap_or_default(), false);
    }

    /// Decodes `src` (malformed sequences become U+FFFD) and pushes the text on.
    fn decode(&mut self, mut src: &[u8], last: bool) {
        let Some(decoding) = &mut self.decoding else {
            return;
        };
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
}

/// Counts in an already-decoded string (same rules, no charset step). Handy for tests and
/// benchmarks, and for callers that already hold the text.
pub fn count_text(opts: &CountOptions, content_is_html: bool, text: &str) -> u64 {
    let mut pipeline = Pipeline::new(opts, content_is_html);
    pipeline.push_str(text);
    pipeline.finish()
}

#[cfg(test)]
mod tests;
