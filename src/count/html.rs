//! HTML text extraction of the **count** step (submit → queue → fetch → **count** → NSQ → DB →
//! poll) with html5ever: the **oracle** that the production scanner (`scanner.rs`) is tested
//! against, and the `html5ever` row of the counting benchmark. It turns a decoded HTML
//! stream into the text a reader sees, for `text` scope.
//!
//! It drives html5ever's streaming tokenizer (not the tree builder, which would hold the
//! whole DOM) with a [`TokenSink`] that forwards visible text to the [`Counter`]:
//! * text of `script`, `style`, `noscript` and of anything inside `template` is dropped, as
//!   are comments, doctypes and attribute values;
//! * the sink switches the tokenizer into the raw states a browser's tree builder would
//!   (`script` → script data, `style`/`noscript`/`xmp`/`iframe`/`noembed`/`noframes` → raw
//!   text, `title`/`textarea` → RCDATA, `plaintext` → plaintext) so that markup-like text
//!   inside them is not mistaken for tags;
//! * every tag that is not one of [`INLINE_TAGS`] pushes a separator, so `<p>py</p><p>thon`
//!   is two words while `<b>py</b>thon` is one; comments do not separate (`py<!---->thon`
//!   renders as one word);
//! * inside inline `svg`/`math` ("foreign content") a browser never enters raw states and
//!   shows `CDATA` sections as text, so the sink tracks that depth: there `<style/>` is an
//!   empty element rather than the start of raw text that would swallow the page, and
//!   `<title>` is an ordinary element (its `<b>` joins words).

use std::cell::RefCell;

use html5ever::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use super::words::Counter;

/// Inline (phrasing) tags that do not break a word: their text joins the text around them.
pub(crate) const INLINE_TAGS: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd", "mark", "q",
    "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "wbr",
];

fn is_inline(name: &str) -> bool {
    INLINE_TAGS.contains(&name)
}

/// The tokenizer state a browser's tree builder would select after this start tag, if any.
pub(crate) fn raw_state_after(name: &str) -> Option<TokenSinkResult<()>> {
    Some(match name {
        "script" => TokenSinkResult::RawData(RawKind::ScriptData),
        // noscript is raw text in a browser with scripting enabled.
        "style" | "noscript" | "xmp" | "iframe" | "noembed" | "noframes" => {
            TokenSinkResult::RawData(RawKind::Rawtext)
        }
        "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
        "plaintext" => TokenSinkResult::Plaintext,
        _ => return None,
    })
}

/// Raw-text elements whose content a reader does not see.
fn is_hidden_raw(name: &str) -> bool {
    matches!(name, "script" | "style" | "noscript")
}

struct TextState {
    matcher: Counter,
    /// Depth of open `template` elements; their content is never rendered.
    template_depth: u32,
    /// Inside a `script`/`style`/`noscript` raw-text run (ended by the next end tag, which
    /// in a raw state can only be the matching one).
    in_hidden_raw: bool,
    /// Depth of open `svg`/`math` elements (foreign content: no raw states, CDATA is text).
    foreign_depth: u32,
    /// Depth of open `script`/`style` elements inside foreign content (tokenized normally
    /// there, but still not shown).
    foreign_hidden_depth: u32,
    /// Every start tag with its attributes, in order, when recording (the oracle of the
    /// link and region tests; unbounded, tests only).
    start_tags: Option<Vec<StartTag>>,
}

/// A start tag as html5ever's tokenizer emitted it: name and attributes (name, value).
pub(crate) type StartTag = (String, Vec<(String, String)>);

impl TextState {
    fn hidden(&self) -> bool {
        self.in_hidden_raw || self.template_depth > 0 || self.foreign_hidden_depth > 0
    }

    fn on_tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        let name: &str = &tag.name;
        if let Some(tags) = &mut self.start_tags
            && tag.kind == TagKind::StartTag
        {
            let attrs = tag
                .attrs
                .iter()
                .map(|a| (a.name.local.to_string(), a.value.to_string()))
                .collect();
            tags.push((name.to_owned(), attrs));
        }
        if !is_inline(name) {
            self.matcher.push_separator();
        }
        if self.foreign_depth > 0 && !self.on_foreign_tag(tag) {
            return TokenSinkResult::Continue;
        }
        if tag.kind == TagKind::StartTag && matches!(name, "svg" | "math") && !tag.self_closing {
            self.foreign_depth = 1;
            return TokenSinkResult::Continue;
        }
        match tag.kind {
            TagKind::EndTag => {
                self.in_hidden_raw = false;
                if name == "template" {
                    self.template_depth = self.template_depth.saturating_sub(1);
                }
                TokenSinkResult::Continue
            }
            TagKind::StartTag => {
                if name == "template" {
                    self.template_depth = self.template_depth.saturating_add(1);
                }
                match raw_state_after(name) {
                    Some(state) => {
                        self.in_hidden_raw = is_hidden_raw(name);
                        state
                    }
                    None => TokenSinkResult::Continue,
                }
            }
        }
    }
}

impl TextState {
    /// A tag inside `svg`/`math`: self-closing tags open nothing, no raw states. An HTML
    /// start tag from the tree builder's "breakout" list ends foreign content (returns
    /// true: the tag is then handled as HTML).
    fn on_foreign_tag(&mut self, tag: &Tag) -> bool {
        let name: &str = &tag.name;
        if tag.kind == TagKind::StartTag && BREAKOUT_TAGS.contains(&name) {
            self.foreign_depth = 0;
            self.foreign_hidden_depth = 0;
            return true;
        }
        let hides = matches!(name, "script" | "style");
        match tag.kind {
            TagKind::StartTag if tag.self_closing => {}
            TagKind::StartTag => {
                if matches!(name, "svg" | "math") {
                    self.foreign_depth += 1;
                } else if hides {
                    self.foreign_hidden_depth += 1;
                }
            }
            TagKind::EndTag => {
                if matches!(name, "svg" | "math") {
                    self.foreign_depth -= 1;
                    if self.foreign_depth == 0 {
                        self.foreign_hidden_depth = 0;
                    }
                } else if hides {
                    self.foreign_hidden_depth = self.foreign_hidden_depth.saturating_sub(1);
                }
            }
        }
        false
    }
}

/// HTML start tags that end foreign content (HTML's "rules for parsing tokens in foreign
/// content"; `font` is in the list only with some attributes and is left out here).
const BREAKOUT_TAGS: &[&str] = &[
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "center",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "embed",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "hr",
    "i",
    "img",
    "li",
    "listing",
    "menu",
    "meta",
    "nobr",
    "ol",
    "p",
    "pre",
    "ruby",
    "s",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "table",
    "tt",
    "u",
    "ul",
    "var",
];

/// Sink that forwards visible text to the matcher. `TokenSink` takes `&self` in html5ever
/// 0.40, hence the `RefCell` (never borrowed re-entrantly: the tokenizer calls the sink
/// one token at a time).
struct TextSink {
    state: RefCell<TextState>,
}

impl TokenSink for TextSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line_number: u64) -> TokenSinkResult<()> {
        let mut st = self.state.borrow_mut();
        match token {
            Token::CharacterTokens(text) => {
                if !st.hidden() {
                    st.matcher.push_str(&text);
                }
                TokenSinkResult::Continue
            }
            Token::TagToken(tag) => st.on_tag(&tag),
            // NUL in text is dropped by browsers; comments, doctypes, errors and EOF carry
            // no visible text.
            Token::NullCharacterToken
            | Token::CommentToken(_)
            | Token::DoctypeToken(_)
            | Token::ParseError(_)
            | Token::EOFToken => TokenSinkResult::Continue,
        }
    }

    /// Makes the tokenizer treat `<![CDATA[…]]>` as text inside `svg`/`math`, as browsers do.
    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        self.state.borrow().foreign_depth > 0
    }
}

/// Streaming "visible text" counter for an HTML document.
pub(crate) struct HtmlText {
    tokenizer: Tokenizer<TextSink>,
    queue: BufferQueue,
}

// SAFETY: `HtmlText` is `!Send` only because html5ever's `StrTendril`s use non-atomic
// reference counts (`Tokenizer` and `BufferQueue` hold tendrils that may share buffers).
// Every tendril that can share a buffer with them lives inside this one value: the input
// tendrils are created here and handed to the queue, the tokenizer's internal state is
// private, and the sink copies text out of each token and drops the token before returning
// (`TextSink`/`Counter` keep no tendril). Nothing is ever returned or stored elsewhere,
// so all reference counts are touched only by whichever thread owns this value, and moving
// the whole value to another thread is sound. `HtmlText` stays `!Sync` (Cell/RefCell).
unsafe impl Send for HtmlText {}

impl HtmlText {
    /// Starts a document in the data state.
    pub(crate) fn new(matcher: Counter) -> Self {
        let sink = TextSink {
            state: RefCell::new(TextState {
                matcher,
                template_depth: 0,
                in_hidden_raw: false,
                foreign_depth: 0,
                foreign_hidden_depth: 0,
                start_tags: None,
            }),
        };
        HtmlText {
            tokenizer: Tokenizer::new(sink, TokenizerOpts::default()),
            queue: BufferQueue::default(),
        }
    }

    /// Tokenizes the next piece of decoded text (may split tags, entities and words).
    pub(crate) fn push_str(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        self.queue.push_back(StrTendril::from_slice(s));
        // Our sink never blocks the tokenizer (no `Script`/`EncodingIndicator` results),
        // but keep feeding until it reports `Done` in case a future version does.
        while !matches!(self.tokenizer.feed(&self.queue), TokenizerResult::Done) {}
    }

    /// Ends the document and returns one count per word.
    pub(crate) fn finish(self) -> Vec<u64> {
        self.finish_with_tags().0
    }

    /// Like [`new`](Self::new), also recording every start tag (for
    /// [`finish_with_tags`](Self::finish_with_tags)).
    #[cfg(test)]
    pub(crate) fn recording_tags(matcher: Counter) -> Self {
        let h = Self::new(matcher);
        h.tokenizer.sink.state.borrow_mut().start_tags = Some(Vec::new());
        h
    }

    /// Ends the document: one count per word, and the start tags when recording.
    pub(crate) fn finish_with_tags(self) -> (Vec<u64>, Vec<StartTag>) {
        self.tokenizer.end();
        let st = self.tokenizer.sink.state.into_inner();
        (st.matcher.finish(), st.start_tags.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle's count, checked against the production scanner on the same input.
    fn count(html: &str, word: &str) -> u64 {
        let words = [word.to_owned()];
        let mut h = HtmlText::new(Counter::new(&words, false, true));
        h.push_str(html);
        let want = h.finish();
        let mut s = crate::count::scanner::Scanner::new(Counter::new(&words, false, true));
        s.push_str(html);
        assert_eq!(s.finish(), want, "scanner vs html5ever on {html:?}");
        want[0]
    }

    #[test]
    fn every_inline_tag_joins_and_other_tags_split() {
        for tag in INLINE_TAGS {
            let html = format!("<{tag}>py</{tag}>thon");
            assert_eq!(count(&html, "python"), 1, "{html}");
        }
        for tag in [
            "p", "div", "li", "td", "h1", "section", "unknown", "br", "img",
        ] {
            let html = format!("py<{tag}>thon");
            assert_eq!(count(&html, "python"), 0, "{html}");
            let html = format!("py</{tag}>thon");
            assert_eq!(count(&html, "python"), 0, "{html}");
        }
    }

    #[test]
    fn raw_states_hide_markup_like_text() {
        // Each case would give the other answer if the tokenizer stayed in the data state.
        assert_eq!(count("<script>x='</b>python'</script>python", "python"), 1);
        assert_eq!(count("<style>a{}</b>python</style>", "python"), 0);
        assert_eq!(count("<noscript></i>python</noscript>", "python"), 0);
        assert_eq!(count("<title>py<b>thon</title>", "python"), 0);
        assert_eq!(count("<textarea>py<i>thon</textarea>", "python"), 0);
        assert_eq!(count("<plaintext>py<b>thon", "python"), 0);
        assert_eq!(
            count("<title>python</title><textarea>python</textarea>", "python"),
            2
        );
    }

    #[test]
    fn svg_and_math_are_foreign_content() {
        // Self-closing raw-text tags do not swallow the rest of the page.
        assert_eq!(count("<svg><style/></svg><p>python</p>", "python"), 1);
        assert_eq!(
            count("<svg><script href='a.js'/></svg><p>python</p>", "python"),
            1
        );
        assert_eq!(
            count("<math><style/></math><p>python python</p>", "python"),
            2
        );
        // A self-closing title is not an RCDATA run that would expose a later script.
        assert_eq!(
            count("<svg><title/></svg><script>var python</script>", "python"),
            0
        );
        // Inside svg, title is an ordinary element: inline tags join, text counts.
        assert_eq!(
            count("<svg><title>py<b>thon</b></title></svg>", "python"),
            1
        );
        // CDATA is text in foreign content, a bogus comment in HTML.
        assert_eq!(
            count("<svg><text><![CDATA[python]]></text></svg>", "python"),
            1
        );
        assert_eq!(count("<p><![CDATA[python]]></p>", "python"), 0);
        // Scripts and styles inside svg are still not shown.
        assert_eq!(
            count(
                "<svg><style>python</style><script>python</script></svg>",
                "python"
            ),
            0
        );
        // After </svg>, HTML rules are back.
        assert_eq!(count("<svg></svg><style>python</style>python", "python"), 1);
        // An HTML breakout tag ends foreign content even without </svg>.
        assert_eq!(
            count("<svg><p>x</p><style>python</style>python", "python"),
            1
        );
    }
}
