//! Fast HTML text scanner of the **count** step (submit → queue → fetch → **count** → NSQ →
//! DB → poll): turns a decoded HTML stream into the text a reader sees (`text` scope) and
//! hands it to the word [`Counter`]. It replaces html5ever's tokenizer in production; the
//! html5ever-based [`HtmlText`](super::html::HtmlText) stays as the oracle that the tests
//! compare it with (same counts for generated HTML and for a 530-page documentation corpus).
//!
//! Why a scanner of its own: html5ever's tokenizer builds every token (tag names, attribute
//! lists, comment text) one char at a time, which is where ~87% of the text scope's time
//! went. Counting only needs the visible text, the names of a few tags, and where every
//! construct ends. So this is the subset of the WHATWG tokenizer state machine (as
//! html5ever 0.40 implements it) that decides those, and nothing else:
//! * text runs are found with `memchr` over `<`, `&` (and NUL) and passed on as slices;
//!   attribute values are skipped with `memchr` for the closing quote, comments with
//!   `memchr` for `-`, doctypes and bogus comments with `memchr` for `>`;
//! * tag names are kept in a 16-byte buffer (every name that matters is shorter; a longer
//!   one is just "some other tag"); attributes are never stored;
//! * character references are decoded with html5ever's own named-entity table
//!   (`html5ever::data::NAMED_ENTITIES`) and its numeric rules (C1 replacements, U+FFFD);
//! * raw-text states (script data with its escaped / double-escaped states, RAWTEXT,
//!   RCDATA, PLAINTEXT), CDATA sections in foreign content, and the same tag policy as
//!   `html.rs`: inline tags join words, other tags push a separator, `script`/`style`/
//!   `noscript`/`template` content is hidden, `svg`/`math` are foreign content.
//!
//! Every state is resumable at any byte, so chunks may split anything (a tag, an entity,
//! a comment terminator, a word); memory is a few fixed-size buffers, independent of the
//! size of any tag, comment or attribute. The input is `&str`, so every structural char is
//! ASCII and every slice taken at one of them is on a char boundary.
//!
//! Not modelled, because they cannot change a count: CR/LF normalization (both are
//! non-word chars and a word never contains a control char), parse errors, attribute
//! values and doctype details (all of a doctype ends at its first `>`, as in html5ever).

use memchr::{memchr, memchr2, memchr3};

use std::sync::Arc;

use super::links::{LinkCollector, LinkTag, PageLinks, Slot};
use super::select::{RegionTracker, Regions};
use super::words::Counter;

/// Longest tag name kept; longer names are "some other tag" (the longest name the policy
/// looks at is `blockquote`).
const NAME_CAP: usize = 16;
/// Longest named character reference (`CounterClockwiseContourIntegral;` is 32 bytes).
const REF_CAP: usize = 40;

/// A short ASCII-lowercased tag name (or original-case bytes, for `temp`).
#[derive(Clone, Copy)]
struct Name {
    bytes: [u8; NAME_CAP],
    len: u8,
    long: bool,
}

impl Name {
    const EMPTY: Name = Name {
        bytes: [0; NAME_CAP],
        len: 0,
        long: false,
    };

    #[inline]
    fn push(&mut self, b: u8) {
        if (self.len as usize) < NAME_CAP {
            self.bytes[self.len as usize] = b;
            self.len += 1;
        } else {
            self.long = true;
        }
    }

    /// The name, or a byte string that equals no known name when it was too long.
    #[inline]
    fn get(&self) -> &[u8] {
        if self.long {
            b"\xff"
        } else {
            &self.bytes[..self.len as usize]
        }
    }
}

/// html5ever's entry for a named reference (without the `&`): its code points (`(0, _)`
/// for a prefix of a longer name that is no entity itself), or `None` when no name starts
/// so.
#[inline]
fn entity(key: &[u8]) -> Option<(u32, u32)> {
    // Keys are ASCII; `from_utf8` cannot fail for what is looked up.
    html5ever::data::NAMED_ENTITIES
        .get(std::str::from_utf8(key).ok()?)
        .copied()
}

/// Which raw-text state a `<` / `</` / end-tag-name sub-state returns to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Raw {
    Rcdata,
    Rawtext,
    Script,
    /// Script data escaped (`<!--` inside a script).
    ScriptEsc,
}

/// Where a character reference returns to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ret {
    Data,
    Rcdata,
    /// An attribute value that is being read (links): double-quoted, single-quoted,
    /// unquoted. The decoded text goes to the value, not to the counter.
    AttrDq,
    AttrSq,
    AttrUnq,
}

/// Tokenizer states (names follow the WHATWG spec / html5ever).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Data,
    Rcdata,
    Rawtext,
    Plaintext,
    Script,
    ScriptEscStart,
    ScriptEscStartDash,
    ScriptEsc,
    ScriptEscDash,
    ScriptEscDashDash,
    ScriptEscLt,
    ScriptDblEscStart,
    ScriptDblEsc,
    ScriptDblEscDash,
    ScriptDblEscDashDash,
    ScriptDblEscLt,
    ScriptDblEscEnd,
    RawLt(Raw),
    RawEndTagOpen(Raw),
    RawEndTagName(Raw),
    TagOpen,
    EndTagOpen,
    TagName,
    BeforeAttrName,
    AttrName,
    AfterAttrName,
    BeforeAttrValue,
    AttrDq,
    AttrSq,
    AttrUnq,
    AfterAttrQuoted,
    SelfClosing,
    /// After `<!`.
    MdOpen,
    /// After `<!-`.
    MdDash,
    /// After `<!` and this many bytes of `[CDATA[` (foreign content only).
    MdCdata(u8),
    /// Doctype or bogus comment: everything up to the next `>` is skipped.
    SkipToGt,
    CommentStart,
    CommentStartDash,
    Comment,
    CommentEndDash,
    CommentEnd,
    CommentEndBang,
    Cdata,
    CdataBracket,
    CdataEnd,
    RefBegin,
    RefHash,
    RefNum,
    RefNamed,
}

#[inline]
fn is_ws(b: u8) -> bool {
    // CR included: html5ever turns it into LF before any state sees it.
    matches!(b, b'\t' | b'\n' | b'\x0C' | b' ' | b'\r')
}

/// Inline (phrasing) tags that do not break a word (same list as `html::INLINE_TAGS`).
fn is_inline(name: &[u8]) -> bool {
    matches!(
        name,
        b"a" | b"abbr"
            | b"b"
            | b"bdi"
            | b"bdo"
            | b"cite"
            | b"code"
            | b"data"
            | b"dfn"
            | b"em"
            | b"i"
            | b"kbd"
            | b"mark"
            | b"q"
            | b"s"
            | b"samp"
            | b"small"
            | b"span"
            | b"strong"
            | b"sub"
            | b"sup"
            | b"time"
            | b"u"
            | b"var"
            | b"wbr"
    )
}

/// HTML start tags that end foreign content (same list as `html::BREAKOUT_TAGS`).
fn is_breakout(name: &[u8]) -> bool {
    matches!(
        name,
        b"b" | b"big"
            | b"blockquote"
            | b"body"
            | b"br"
            | b"center"
            | b"code"
            | b"dd"
            | b"div"
            | b"dl"
            | b"dt"
            | b"em"
            | b"embed"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"head"
            | b"hr"
            | b"i"
            | b"img"
            | b"li"
            | b"listing"
            | b"menu"
            | b"meta"
            | b"nobr"
            | b"ol"
            | b"p"
            | b"pre"
            | b"ruby"
            | b"s"
            | b"small"
            | b"span"
            | b"strike"
            | b"strong"
            | b"sub"
            | b"sup"
            | b"table"
            | b"tt"
            | b"u"
            | b"ul"
            | b"var"
    )
}

/// The state a browser's tree builder selects after this HTML start tag, if any.
fn raw_state_after(name: &[u8]) -> Option<St> {
    Some(match name {
        b"script" => St::Script,
        // noscript is raw text in a browser with scripting enabled.
        b"style" | b"noscript" | b"xmp" | b"iframe" | b"noembed" | b"noframes" => St::Rawtext,
        b"title" | b"textarea" => St::Rcdata,
        b"plaintext" => St::Plaintext,
        _ => return None,
    })
}

/// html5ever's numeric character reference value (`finish_numeric`).
fn numeric_char(n: u32, too_big: bool) -> char {
    match n {
        _ if too_big || n > 0x10FFFF => '\u{FFFD}',
        0 | 0xD800..=0xDFFF => '\u{FFFD}',
        0x80..=0x9F => html5ever::data::C1_REPLACEMENTS[(n - 0x80) as usize]
            .or_else(|| char::from_u32(n))
            .unwrap_or('\u{FFFD}'),
        _ => char::from_u32(n).unwrap_or('\u{FFFD}'),
    }
}

/// Streaming "visible text" counter for an HTML document (see the module docs).
pub(crate) struct Scanner {
    out: Counter,
    st: St,
    // --- the tag being read
    end_tag: bool,
    self_closing: bool,
    name: Name,
    // --- raw text end tags
    /// Name of the start tag that opened the current raw-text run (the only end tag that
    /// can close it).
    last_start: Name,
    /// Original-case bytes of a possible raw end tag name, re-emitted as text if it is not
    /// the closing tag.
    temp: Name,
    /// Bytes of `script` matched by a `<script` / `</script` inside an escaped script.
    dbl: u8,
    dbl_ok: bool,
    // --- character references
    ref_ret: Ret,
    ref_buf: [u8; REF_CAP],
    ref_len: u8,
    /// Longest full entity match so far: its chars and its length in `ref_buf`.
    ref_match: Option<(u32, u32, u8)>,
    num: u32,
    num_too_big: bool,
    num_hex: Option<u8>,
    num_digits: bool,
    // --- text policy (as `html::TextState`)
    template_depth: u32,
    in_hidden_raw: bool,
    foreign_depth: u32,
    foreign_hidden_depth: u32,
    // --- tag events (links, DESIGN §15); all idle when `links` is `None`
    /// Text is not counted: the raw scope runs the scanner for its tag events only.
    mute: bool,
    /// Collects the page's links from the link tags' attributes, when asked for.
    links: Option<Box<LinkCollector>>,
    /// The current start tag is a link tag whose attributes are being read.
    tag_cap: bool,
    /// Name of the attribute being read (ASCII-lowercased), with `tag_cap`.
    attr_name: Name,
    /// Where the current attribute's value goes, when the collector wants it.
    val_slot: Option<Slot>,
    /// The value's last char was a CR turned into LF: an LF right after it is dropped
    /// (html5ever's newline normalization, which attribute values keep).
    val_cr: bool,
    // --- regions (DESIGN §17); idle when `regions` is `None`
    /// The open-element stack and each element's selector matches.
    regions: Option<Box<RegionTracker>>,
    /// The current attribute's value is wanted by the regions.
    val_region: bool,
    /// Text here is outside the counted regions.
    region_out: bool,
}

impl Scanner {
    /// Starts a document in the data state.
    pub(crate) fn new(out: Counter) -> Self {
        Scanner {
            out,
            st: St::Data,
            end_tag: false,
            self_closing: false,
            name: Name::EMPTY,
            last_start: Name::EMPTY,
            temp: Name::EMPTY,
            dbl: 0,
            dbl_ok: true,
            ref_ret: Ret::Data,
            ref_buf: [0; REF_CAP],
            ref_len: 0,
            ref_match: None,
            num: 0,
            num_too_big: false,
            num_hex: None,
            num_digits: false,
            template_depth: 0,
            in_hidden_raw: false,
            foreign_depth: 0,
            foreign_hidden_depth: 0,
            mute: false,
            links: None,
            tag_cap: false,
            attr_name: Name::EMPTY,
            val_slot: None,
            val_cr: false,
            regions: None,
            val_region: false,
            region_out: false,
        }
    }

    /// A scanner counting only the text of the regions (`within` / `outside` selectors,
    /// compiled), optionally collecting links too.
    pub(crate) fn with_regions(
        out: Counter,
        links: Option<LinkCollector>,
        regions: Arc<Regions>,
    ) -> Self {
        let mut s = Scanner::new(out);
        s.links = links.map(Box::new);
        let tracker = RegionTracker::new(regions);
        s.region_out = !tracker.counted();
        s.regions = Some(Box::new(tracker));
        s
    }

    /// A scanner that also collects the page's links (`links`), and counts the text only
    /// unless `mute` (the raw scope counts the raw text elsewhere and runs the scanner for
    /// its tags only: one pass over the chunks, nothing decoded twice).
    pub(crate) fn with_links(out: Counter, links: LinkCollector, mute: bool) -> Self {
        let mut s = Scanner::new(out);
        s.links = Some(Box::new(links));
        s.mute = mute;
        s
    }

    #[inline]
    fn hidden(&self) -> bool {
        self.mute
            || self.region_out
            || self.in_hidden_raw
            || self.template_depth > 0
            || self.foreign_hidden_depth > 0
    }

    /// Visible text (dropped while inside hidden content).
    #[inline]
    fn text(&mut self, s: &str) {
        if !s.is_empty() && !self.hidden() {
            self.out.push_str(s);
        }
    }

    /// Re-emits `</` and the bytes of a raw end tag that turned out not to be one.
    fn flush_raw_end(&mut self, kind: Raw) {
        if matches!(kind, Raw::Rcdata | Raw::Rawtext) {
            self.text("</");
            let temp = self.temp;
            // Only ASCII letters are ever stored in `temp`.
            if let Ok(s) = std::str::from_utf8(&temp.bytes[..temp.len as usize]) {
                self.text(s);
            }
        }
    }

    fn raw_state(kind: Raw) -> St {
        match kind {
            Raw::Rcdata => St::Rcdata,
            Raw::Rawtext => St::Rawtext,
            Raw::Script => St::Script,
            Raw::ScriptEsc => St::ScriptEsc,
        }
    }

    fn ret_state(&self) -> St {
        match self.ref_ret {
            Ret::Data => St::Data,
            Ret::Rcdata => St::Rcdata,
            Ret::AttrDq => St::AttrDq,
            Ret::AttrSq => St::AttrSq,
            Ret::AttrUnq => St::AttrUnq,
        }
    }

    /// Text produced by a character reference: visible text, or the attribute value
    /// being read.
    #[inline]
    fn ref_out(&mut self, s: &str) {
        match self.ref_ret {
            Ret::Data | Ret::Rcdata => self.text(s),
            Ret::AttrDq | Ret::AttrSq | Ret::AttrUnq => self.attr_text(s),
        }
    }

    fn ref_char(&mut self, c: char) {
        let mut b = [0; 4];
        self.ref_out(c.encode_utf8(&mut b));
    }

    /// Decoded text of the attribute value being read (only called with a slot).
    fn attr_text(&mut self, s: &str) {
        self.val_cr = false;
        if s.is_empty() {
            return;
        }
        if let (Some(slot), Some(l)) = (self.val_slot, &mut self.links) {
            l.value(slot, s);
        }
        if self.val_region
            && let Some(r) = &mut self.regions
        {
            r.value(s);
        }
    }

    /// Whether the current attribute's value is read (links or regions want it).
    #[inline]
    fn val_on(&self) -> bool {
        self.val_slot.is_some() || self.val_region
    }

    /// The tag name ended and attributes may follow: a link start tag starts being read.
    #[inline]
    fn tag_begin_attrs(&mut self) {
        if self.end_tag {
            return;
        }
        if let Some(l) = &mut self.links
            && let Some(t) = LinkTag::of(self.name.get())
        {
            l.start_tag(t);
            self.tag_cap = true;
        }
        if let Some(r) = &mut self.regions {
            r.start_tag();
            self.tag_cap = true;
        }
    }

    /// The attribute name being read (with `tag_cap`) ended: where its value goes.
    fn attr_name_done(&mut self) {
        let name = self.attr_name;
        self.val_slot = match &mut self.links {
            Some(l) => l.attr(name.get()),
            None => None,
        };
        self.val_region = match &mut self.regions {
            Some(r) => r.attr(name.get()),
            None => false,
        };
    }

    /// Reads a quoted attribute value that the collector wants, from `b[i..]`, up to the
    /// closing quote `q` (or a `&`, or the end of the piece); returns where it stopped.
    /// CR and CR LF become LF, NUL becomes U+FFFD, as html5ever's tokenizer does.
    fn attr_quoted(&mut self, s: &str, mut i: usize, q: u8) -> usize {
        let b = s.as_bytes();
        let n = b.len();
        let mut run = i;
        while i < n {
            let c = b[i];
            if c != q && !matches!(c, b'&' | b'\r' | b'\n' | 0) {
                i += 1;
                continue;
            }
            if run < i {
                self.attr_text(&s[run..i]);
            }
            i += 1;
            run = i;
            match c {
                b'&' => {
                    self.start_ref(if q == b'"' { Ret::AttrDq } else { Ret::AttrSq });
                    return i;
                }
                b'\r' => {
                    self.attr_text("\n");
                    self.val_cr = true;
                }
                b'\n' if self.val_cr => self.val_cr = false,
                b'\n' => self.attr_text("\n"),
                0 => self.attr_text("\u{FFFD}"),
                _ => {
                    self.st = St::AfterAttrQuoted;
                    return i;
                }
            }
        }
        if run < i {
            self.attr_text(&s[run..i]);
        }
        i
    }

    /// Reads an unquoted attribute value that the collector wants (see
    /// [`attr_quoted`](Self::attr_quoted)); CR, LF and other whitespace end it.
    fn attr_unquoted(&mut self, s: &str, mut i: usize) -> usize {
        let b = s.as_bytes();
        let n = b.len();
        let mut run = i;
        while i < n {
            let c = b[i];
            if !is_ws(c) && !matches!(c, b'&' | b'>' | 0) {
                i += 1;
                continue;
            }
            if run < i {
                self.attr_text(&s[run..i]);
            }
            i += 1;
            run = i;
            match c {
                b'&' => {
                    self.start_ref(Ret::AttrUnq);
                    return i;
                }
                b'>' => {
                    self.st = self.emit_tag();
                    return i;
                }
                0 => self.attr_text("\u{FFFD}"),
                _ => {
                    self.st = St::BeforeAttrName;
                    return i;
                }
            }
        }
        if run < i {
            self.attr_text(&s[run..i]);
        }
        i
    }

    fn start_ref(&mut self, ret: Ret) {
        self.ref_ret = ret;
        self.ref_len = 0;
        self.ref_match = None;
        self.num = 0;
        self.num_too_big = false;
        self.num_hex = None;
        self.num_digits = false;
        self.st = St::RefBegin;
    }

    /// Ends a named reference: the entity's chars (or `&`) and the consumed bytes after
    /// the longest match, as text. The byte that ended it (`next`, none at the end of the
    /// input) is reconsumed by the caller.
    ///
    /// In an attribute value, HTML's legacy rule: a match not ending in `;` followed by
    /// `=` or an ASCII alphanumeric is not a reference (`?a=1&copy=2` keeps `&copy`).
    fn finish_named(&mut self, next: Option<u8>) {
        let buf = self.ref_buf;
        let len = self.ref_len as usize;
        let in_attr = matches!(self.ref_ret, Ret::AttrDq | Ret::AttrSq | Ret::AttrUnq);
        let rest_from = match self.ref_match {
            Some((_, _, n))
                if in_attr && buf[n as usize - 1] != b';' && {
                    let after = if (n as usize) < len {
                        Some(buf[n as usize])
                    } else {
                        next
                    };
                    after.is_some_and(|c| c == b'=' || c.is_ascii_alphanumeric())
                } =>
            {
                self.ref_out("&");
                0
            }
            Some((c1, c2, n)) => {
                for c in [c1, c2] {
                    if let Some(ch) = char::from_u32(c).filter(|_| c != 0) {
                        self.ref_char(ch);
                    }
                }
                n as usize
            }
            None => {
                self.ref_out("&");
                0
            }
        };
        // Only ASCII alphanumerics (and a final `;` of a full match) are stored.
        if let Ok(rest) = std::str::from_utf8(&buf[rest_from..len]) {
            self.ref_out(rest);
        }
        self.st = self.ret_state();
    }

    /// The common case of a named reference in one look: `name;` wholly in `rest` (the
    /// bytes after `&`) and a full entity. Then the char-by-char walk below would find every
    /// prefix of it in the table (the table holds the prefixes of every name, which is how
    /// the walk knows when to stop: see the test `every_prefix_of_an_entity_is_a_key`) and
    /// end on it at the `;`, having looked up each of the name's prefixes; this looks up
    /// the whole key once. Returns how many bytes of `rest` it consumed, or `None` (nothing
    /// consumed) for the walk to decide: no `;` in reach, or not an entity.
    #[inline]
    fn whole_named_ref(&mut self, rest: &[u8]) -> Option<usize> {
        let name = rest
            .iter()
            .take(REF_CAP - 1)
            .position(|c| !c.is_ascii_alphanumeric())?;
        if rest[name] != b';' {
            return None;
        }
        let key = &rest[..=name];
        let (c1, c2) = entity(key)?;
        if c1 == 0 {
            return None;
        }
        self.ref_buf[..key.len()].copy_from_slice(key);
        // `key.len() < REF_CAP`, so it fits in a u8.
        self.ref_len = key.len() as u8;
        self.ref_match = Some((c1, c2, key.len() as u8));
        self.finish_named(None);
        Some(key.len())
    }

    /// Ends a numeric reference that had digits.
    fn finish_numeric(&mut self) {
        let c = numeric_char(self.num, self.num_too_big);
        self.ref_char(c);
        self.st = self.ret_state();
    }

    /// Text of a numeric reference without digits (`&#`, `&#x`), emitted as is.
    fn unconsume_numeric(&mut self) {
        self.ref_out("&#");
        if let Some(x) = self.num_hex {
            self.ref_out(if x == b'X' { "X" } else { "x" });
        }
        self.st = self.ret_state();
    }

    /// A complete tag: the same policy as `html::TextState::on_tag`; returns the next state.
    fn emit_tag(&mut self) -> St {
        let captured = self.tag_cap;
        if self.tag_cap {
            self.tag_cap = false;
            self.val_slot = None;
            self.val_region = false;
            if let Some(l) = &mut self.links {
                l.end_tag();
            }
        }
        if self.regions.is_none() {
            return self.emit_tag_text();
        }
        let was_foreign = self.foreign_depth > 0;
        let st = self.emit_tag_text();
        self.region_tag(was_foreign, captured);
        st
    }

    /// The regions' side of a tag: the open-element stack moves, and a change between
    /// counted and not counted is a word separator (DESIGN §17).
    fn region_tag(&mut self, was_foreign: bool, captured: bool) {
        let Some(r) = &mut self.regions else {
            return;
        };
        let name = self.name;
        let name = name.get();
        if self.end_tag {
            r.on_end(name);
        } else {
            let breakout = was_foreign && self.foreign_depth == 0;
            let in_foreign = was_foreign && !breakout;
            r.on_start(name, self.self_closing, in_foreign, breakout, captured);
        }
        let out = !r.counted();
        if out != self.region_out {
            self.region_out = out;
            self.out.push_separator();
        }
    }

    /// The text side of a tag (the policy of `html::TextState::on_tag`).
    fn emit_tag_text(&mut self) -> St {
        let name = self.name;
        let name = name.get();
        if !is_inline(name) {
            self.out.push_separator();
        }
        if self.foreign_depth > 0 && !self.on_foreign_tag(name) {
            return St::Data;
        }
        let is_svg_math = matches!(name, b"svg" | b"math");
        if !self.end_tag && is_svg_math && !self.self_closing {
            self.foreign_depth = 1;
            return St::Data;
        }
        if self.end_tag {
            self.in_hidden_raw = false;
            if name == b"template" {
                self.template_depth = self.template_depth.saturating_sub(1);
            }
            return St::Data;
        }
        if name == b"template" {
            self.template_depth = self.template_depth.saturating_add(1);
        }
        match raw_state_after(name) {
            Some(st) => {
                self.in_hidden_raw = matches!(name, b"script" | b"style" | b"noscript");
                self.last_start = self.name;
                st
            }
            None => St::Data,
        }
    }

    /// A tag inside `svg`/`math` (as `html::TextState::on_foreign_tag`): returns true when
    /// it ends foreign content and is to be handled as HTML.
    fn on_foreign_tag(&mut self, name: &[u8]) -> bool {
        if !self.end_tag && is_breakout(name) {
            self.foreign_depth = 0;
            self.foreign_hidden_depth = 0;
            return true;
        }
        let hides = matches!(name, b"script" | b"style");
        let svg_math = matches!(name, b"svg" | b"math");
        if !self.end_tag {
            if !self.self_closing {
                if svg_math {
                    self.foreign_depth += 1;
                } else if hides {
                    self.foreign_hidden_depth += 1;
                }
            }
        } else if svg_math {
            self.foreign_depth -= 1;
            if self.foreign_depth == 0 {
                self.foreign_hidden_depth = 0;
            }
        } else if hides {
            self.foreign_hidden_depth = self.foreign_hidden_depth.saturating_sub(1);
        }
        false
    }

    fn start_tag_name(&mut self, end_tag: bool, first: u8) {
        self.end_tag = end_tag;
        self.self_closing = false;
        self.tag_cap = false;
        self.val_slot = None;
        self.val_region = false;
        self.name = Name::EMPTY;
        self.name.push(first.to_ascii_lowercase());
        self.st = St::TagName;
    }

    /// Scans the next piece of decoded text (may split tags, entities and words).
    pub(crate) fn push_str(&mut self, s: &str) {
        let b = s.as_bytes();
        let n = b.len();
        let mut i = 0;
        while i < n {
            match self.st {
                St::Data => match memchr3(b'<', b'&', 0, &b[i..]) {
                    None => {
                        self.text(&s[i..]);
                        i = n;
                    }
                    Some(k) => {
                        self.text(&s[i..i + k]);
                        i += k;
                        match b[i] {
                            b'<' => self.st = St::TagOpen,
                            b'&' => self.start_ref(Ret::Data),
                            // NUL in data is dropped (html5ever: a NullCharacterToken).
                            _ => {}
                        }
                        i += 1;
                    }
                },
                St::Rcdata => match memchr3(b'<', b'&', 0, &b[i..]) {
                    None => {
                        self.text(&s[i..]);
                        i = n;
                    }
                    Some(k) => {
                        self.text(&s[i..i + k]);
                        i += k;
                        match b[i] {
                            b'<' => self.st = St::RawLt(Raw::Rcdata),
                            b'&' => self.start_ref(Ret::Rcdata),
                            _ => self.text("\u{FFFD}"),
                        }
                        i += 1;
                    }
                },
                St::Rawtext => match memchr2(b'<', 0, &b[i..]) {
                    None => {
                        self.text(&s[i..]);
                        i = n;
                    }
                    Some(k) => {
                        self.text(&s[i..i + k]);
                        i += k;
                        if b[i] == b'<' {
                            self.st = St::RawLt(Raw::Rawtext);
                        } else {
                            self.text("\u{FFFD}");
                        }
                        i += 1;
                    }
                },
                St::Plaintext => match memchr(0, &b[i..]) {
                    None => {
                        self.text(&s[i..]);
                        i = n;
                    }
                    Some(k) => {
                        self.text(&s[i..i + k]);
                        self.text("\u{FFFD}");
                        i += k + 1;
                    }
                },
                // Script data is always hidden (only an HTML `<script>` enters it), so the
                // script states only find where it ends.
                St::Script => match memchr(b'<', &b[i..]) {
                    None => i = n,
                    Some(k) => {
                        i += k + 1;
                        self.st = St::RawLt(Raw::Script);
                    }
                },
                St::ScriptEscStart => {
                    if b[i] == b'-' {
                        i += 1;
                        self.st = St::ScriptEscStartDash;
                    } else {
                        self.st = St::Script;
                    }
                }
                St::ScriptEscStartDash => {
                    if b[i] == b'-' {
                        i += 1;
                        self.st = St::ScriptEscDashDash;
                    } else {
                        self.st = St::Script;
                    }
                }
                St::ScriptEsc => match memchr2(b'-', b'<', &b[i..]) {
                    None => i = n,
                    Some(k) => {
                        i += k;
                        self.st = if b[i] == b'-' {
                            St::ScriptEscDash
                        } else {
                            St::ScriptEscLt
                        };
                        i += 1;
                    }
                },
                St::ScriptEscDash => {
                    self.st = match b[i] {
                        b'-' => St::ScriptEscDashDash,
                        b'<' => St::ScriptEscLt,
                        _ => St::ScriptEsc,
                    };
                    i += 1;
                }
                St::ScriptEscDashDash => {
                    self.st = match b[i] {
                        b'-' => St::ScriptEscDashDash,
                        b'<' => St::ScriptEscLt,
                        b'>' => St::Script,
                        _ => St::ScriptEsc,
                    };
                    i += 1;
                }
                St::ScriptEscLt => {
                    let c = b[i];
                    if c == b'/' {
                        i += 1;
                        self.temp = Name::EMPTY;
                        self.st = St::RawEndTagOpen(Raw::ScriptEsc);
                    } else if c.is_ascii_alphabetic() {
                        i += 1;
                        self.dbl = 0;
                        self.dbl_ok = true;
                        self.dbl_push(c);
                        self.st = St::ScriptDblEscStart;
                    } else {
                        self.st = St::ScriptEsc;
                    }
                }
                St::ScriptDblEscStart | St::ScriptDblEscEnd => {
                    let c = b[i];
                    let start = self.st == St::ScriptDblEscStart;
                    if is_ws(c) || c == b'/' || c == b'>' {
                        i += 1;
                        let is_script = self.dbl_ok && self.dbl == 6;
                        self.st = match (start, is_script) {
                            (true, true) | (false, false) => St::ScriptDblEsc,
                            (true, false) | (false, true) => St::ScriptEsc,
                        };
                    } else if c.is_ascii_alphabetic() {
                        i += 1;
                        self.dbl_push(c);
                    } else {
                        self.st = if start {
                            St::ScriptEsc
                        } else {
                            St::ScriptDblEsc
                        };
                    }
                }
                St::ScriptDblEsc => match memchr2(b'-', b'<', &b[i..]) {
                    None => i = n,
                    Some(k) => {
                        i += k;
                        self.st = if b[i] == b'-' {
                            St::ScriptDblEscDash
                        } else {
                            St::ScriptDblEscLt
                        };
                        i += 1;
                    }
                },
                St::ScriptDblEscDash => {
                    self.st = match b[i] {
                        b'-' => St::ScriptDblEscDashDash,
                        b'<' => St::ScriptDblEscLt,
                        _ => St::ScriptDblEsc,
                    };
                    i += 1;
                }
                St::ScriptDblEscDashDash => {
                    self.st = match b[i] {
                        b'-' => St::ScriptDblEscDashDash,
                        b'<' => St::ScriptDblEscLt,
                        b'>' => St::Script,
                        _ => St::ScriptDblEsc,
                    };
                    i += 1;
                }
                St::ScriptDblEscLt => {
                    if b[i] == b'/' {
                        i += 1;
                        self.dbl = 0;
                        self.dbl_ok = true;
                        self.st = St::ScriptDblEscEnd;
                    } else {
                        self.st = St::ScriptDblEsc;
                    }
                }
                St::RawLt(kind) => {
                    let c = b[i];
                    if c == b'/' {
                        i += 1;
                        self.temp = Name::EMPTY;
                        self.st = St::RawEndTagOpen(kind);
                    } else if c == b'!' && kind == Raw::Script {
                        i += 1;
                        self.st = St::ScriptEscStart;
                    } else {
                        if kind != Raw::Script {
                            self.text("<");
                        }
                        self.st = Self::raw_state(kind);
                    }
                }
                St::RawEndTagOpen(kind) => {
                    if b[i].is_ascii_alphabetic() {
                        self.st = St::RawEndTagName(kind);
                    } else {
                        self.flush_raw_end(kind);
                        self.st = Self::raw_state(kind);
                    }
                }
                St::RawEndTagName(kind) => {
                    let c = b[i];
                    let k = self.temp.len;
                    let want = self.last_start;
                    let want = want.get();
                    if k as usize == want.len() && (is_ws(c) || c == b'/' || c == b'>') {
                        i += 1;
                        self.end_tag = true;
                        self.self_closing = false;
                        self.name = self.last_start;
                        self.st = match c {
                            b'/' => St::SelfClosing,
                            b'>' => self.emit_tag(),
                            _ => St::BeforeAttrName,
                        };
                    } else if c.is_ascii_alphabetic()
                        && (k as usize) < want.len()
                        && c.to_ascii_lowercase() == want[k as usize]
                    {
                        i += 1;
                        self.temp.push(c);
                    } else {
                        // Not the closing tag: `</` and the letters are text; reconsume.
                        self.flush_raw_end(kind);
                        self.st = Self::raw_state(kind);
                    }
                }
                St::TagOpen => {
                    let c = b[i];
                    match c {
                        b'!' => {
                            i += 1;
                            self.st = St::MdOpen;
                        }
                        b'/' => {
                            i += 1;
                            self.st = St::EndTagOpen;
                        }
                        _ if c.is_ascii_alphabetic() => {
                            i += 1;
                            self.start_tag_name(false, c);
                        }
                        b'?' => self.st = St::SkipToGt,
                        _ => {
                            self.text("<");
                            self.st = St::Data;
                        }
                    }
                }
                St::EndTagOpen => {
                    let c = b[i];
                    if c.is_ascii_alphabetic() {
                        i += 1;
                        self.start_tag_name(true, c);
                    } else if c == b'>' {
                        i += 1;
                        self.st = St::Data;
                    } else {
                        self.st = St::SkipToGt;
                    }
                }
                St::TagName => {
                    while i < n {
                        let c = b[i];
                        i += 1;
                        match c {
                            _ if is_ws(c) => {
                                self.st = St::BeforeAttrName;
                                self.tag_begin_attrs();
                                break;
                            }
                            b'/' => {
                                self.st = St::SelfClosing;
                                self.tag_begin_attrs();
                                break;
                            }
                            b'>' => {
                                self.st = self.emit_tag();
                                break;
                            }
                            _ => self.name.push(c.to_ascii_lowercase()),
                        }
                    }
                }
                St::BeforeAttrName => {
                    let c = b[i];
                    i += 1;
                    match c {
                        _ if is_ws(c) => {}
                        b'/' => self.st = St::SelfClosing,
                        b'>' => self.st = self.emit_tag(),
                        _ => self.start_attr_name(c),
                    }
                }
                St::AttrName if self.tag_cap => {
                    while i < n {
                        let c = b[i];
                        i += 1;
                        match c {
                            _ if is_ws(c) => {
                                self.attr_name_done();
                                self.st = St::AfterAttrName;
                                break;
                            }
                            b'/' => {
                                self.attr_name_done();
                                self.st = St::SelfClosing;
                                break;
                            }
                            b'=' => {
                                self.attr_name_done();
                                self.st = St::BeforeAttrValue;
                                break;
                            }
                            b'>' => {
                                self.attr_name_done();
                                self.st = self.emit_tag();
                                break;
                            }
                            _ => self.attr_name.push(c.to_ascii_lowercase()),
                        }
                    }
                }
                St::AttrName => {
                    while i < n {
                        let c = b[i];
                        i += 1;
                        match c {
                            _ if is_ws(c) => {
                                self.st = St::AfterAttrName;
                                break;
                            }
                            b'/' => {
                                self.st = St::SelfClosing;
                                break;
                            }
                            b'=' => {
                                self.st = St::BeforeAttrValue;
                                break;
                            }
                            b'>' => {
                                self.st = self.emit_tag();
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                St::AfterAttrName => {
                    let c = b[i];
                    i += 1;
                    match c {
                        _ if is_ws(c) => {}
                        b'/' => self.st = St::SelfClosing,
                        b'=' => self.st = St::BeforeAttrValue,
                        b'>' => self.st = self.emit_tag(),
                        _ => self.start_attr_name(c),
                    }
                }
                St::BeforeAttrValue => {
                    let c = b[i];
                    self.val_cr = false;
                    match c {
                        _ if is_ws(c) => i += 1,
                        b'"' => {
                            i += 1;
                            self.st = St::AttrDq;
                        }
                        b'\'' => {
                            i += 1;
                            self.st = St::AttrSq;
                        }
                        b'>' => {
                            i += 1;
                            self.st = self.emit_tag();
                        }
                        // Reconsumed: the first char of the value.
                        _ => self.st = St::AttrUnq,
                    }
                }
                St::AttrDq | St::AttrSq if self.val_on() => {
                    let q = if self.st == St::AttrDq { b'"' } else { b'\'' };
                    i = self.attr_quoted(s, i, q);
                }
                St::AttrUnq if self.val_on() => i = self.attr_unquoted(s, i),
                St::AttrDq | St::AttrSq => {
                    let q = if self.st == St::AttrDq { b'"' } else { b'\'' };
                    match memchr(q, &b[i..]) {
                        None => i = n,
                        Some(k) => {
                            i += k + 1;
                            self.st = St::AfterAttrQuoted;
                        }
                    }
                }
                St::AttrUnq => {
                    while i < n {
                        let c = b[i];
                        i += 1;
                        if is_ws(c) {
                            self.st = St::BeforeAttrName;
                            break;
                        }
                        if c == b'>' {
                            self.st = self.emit_tag();
                            break;
                        }
                    }
                }
                St::AfterAttrQuoted => {
                    let c = b[i];
                    match c {
                        _ if is_ws(c) => {
                            i += 1;
                            self.st = St::BeforeAttrName;
                        }
                        b'/' => {
                            i += 1;
                            self.st = St::SelfClosing;
                        }
                        b'>' => {
                            i += 1;
                            self.st = self.emit_tag();
                        }
                        _ => self.st = St::BeforeAttrName,
                    }
                }
                St::SelfClosing => {
                    if b[i] == b'>' {
                        i += 1;
                        self.self_closing = true;
                        self.st = self.emit_tag();
                    } else {
                        self.st = St::BeforeAttrName;
                    }
                }
                St::MdOpen => {
                    let c = b[i];
                    if c == b'-' {
                        i += 1;
                        self.st = St::MdDash;
                    } else if c == b'[' && self.foreign_depth > 0 {
                        i += 1;
                        self.st = St::MdCdata(1);
                    } else {
                        // Doctype or bogus comment: both end at the next `>`.
                        self.st = St::SkipToGt;
                    }
                }
                St::MdDash => {
                    if b[i] == b'-' {
                        i += 1;
                        self.st = St::CommentStart;
                    } else {
                        self.st = St::SkipToGt;
                    }
                }
                St::MdCdata(k) => {
                    if b[i] == b"[CDATA["[k as usize] {
                        i += 1;
                        self.st = if k == 6 {
                            St::Cdata
                        } else {
                            St::MdCdata(k + 1)
                        };
                    } else {
                        self.st = St::SkipToGt;
                    }
                }
                St::SkipToGt => match memchr(b'>', &b[i..]) {
                    None => i = n,
                    Some(k) => {
                        i += k + 1;
                        self.st = St::Data;
                    }
                },
                St::CommentStart => {
                    let c = b[i];
                    i += 1;
                    self.st = match c {
                        b'-' => St::CommentStartDash,
                        b'>' => St::Data,
                        _ => St::Comment,
                    };
                }
                St::CommentStartDash => match b[i] {
                    b'-' => {
                        i += 1;
                        self.st = St::CommentEnd;
                    }
                    b'>' => {
                        i += 1;
                        self.st = St::Data;
                    }
                    _ => self.st = St::Comment,
                },
                St::Comment => match memchr(b'-', &b[i..]) {
                    None => i = n,
                    Some(k) => {
                        i += k + 1;
                        self.st = St::CommentEndDash;
                    }
                },
                St::CommentEndDash => {
                    if b[i] == b'-' {
                        i += 1;
                        self.st = St::CommentEnd;
                    } else {
                        self.st = St::Comment;
                    }
                }
                St::CommentEnd => match b[i] {
                    b'>' => {
                        i += 1;
                        self.st = St::Data;
                    }
                    b'!' => {
                        i += 1;
                        self.st = St::CommentEndBang;
                    }
                    b'-' => i += 1,
                    _ => self.st = St::Comment,
                },
                St::CommentEndBang => match b[i] {
                    b'-' => {
                        i += 1;
                        self.st = St::CommentEndDash;
                    }
                    b'>' => {
                        i += 1;
                        self.st = St::Data;
                    }
                    _ => self.st = St::Comment,
                },
                St::Cdata => match memchr2(b']', 0, &b[i..]) {
                    None => {
                        self.text(&s[i..]);
                        i = n;
                    }
                    Some(k) => {
                        self.text(&s[i..i + k]);
                        i += k;
                        if b[i] == b']' {
                            self.st = St::CdataBracket;
                        }
                        // NUL inside CDATA is dropped (html5ever: a NullCharacterToken).
                        i += 1;
                    }
                },
                St::CdataBracket => {
                    if b[i] == b']' {
                        i += 1;
                        self.st = St::CdataEnd;
                    } else {
                        self.text("]");
                        self.st = St::Cdata;
                    }
                }
                St::CdataEnd => match b[i] {
                    b']' => {
                        i += 1;
                        self.text("]");
                    }
                    b'>' => {
                        i += 1;
                        self.st = St::Data;
                    }
                    _ => {
                        self.text("]]");
                        self.st = St::Cdata;
                    }
                },
                St::RefBegin => {
                    let c = b[i];
                    if c.is_ascii_alphanumeric() {
                        self.st = St::RefNamed;
                    } else if c == b'#' {
                        i += 1;
                        self.st = St::RefHash;
                    } else {
                        self.ref_out("&");
                        self.st = self.ret_state();
                    }
                }
                St::RefHash => {
                    let c = b[i];
                    if c == b'x' || c == b'X' {
                        i += 1;
                        self.num_hex = Some(c);
                    }
                    self.st = St::RefNum;
                }
                St::RefNum => {
                    let c = b[i];
                    let base = if self.num_hex.is_some() { 16 } else { 10 };
                    match (c as char).to_digit(base) {
                        Some(d) => {
                            i += 1;
                            self.num = self.num.wrapping_mul(base);
                            if self.num > 0x10FFFF {
                                self.num_too_big = true;
                            }
                            self.num = self.num.wrapping_add(d);
                            self.num_digits = true;
                        }
                        None if !self.num_digits => self.unconsume_numeric(),
                        None => {
                            if c == b';' {
                                i += 1;
                            }
                            self.finish_numeric();
                        }
                    }
                }
                St::RefNamed => {
                    if self.ref_len == 0
                        && let Some(used) = self.whole_named_ref(&b[i..])
                    {
                        i += used;
                        continue;
                    }
                    let c = b[i];
                    let len = self.ref_len as usize;
                    let known = (c.is_ascii_alphanumeric() || c == b';') && len < REF_CAP && {
                        self.ref_buf[len] = c;
                        match entity(&self.ref_buf[..=len]) {
                            Some((c1, c2)) => {
                                if c1 != 0 {
                                    self.ref_match = Some((c1, c2, (len + 1) as u8));
                                }
                                true
                            }
                            None => false,
                        }
                    };
                    if known {
                        i += 1;
                        self.ref_len += 1;
                        if c == b';' {
                            // Nothing longer can match after a `;`.
                            self.finish_named(None);
                        }
                    } else {
                        // Reconsume `c` in the return state.
                        self.finish_named(Some(c));
                    }
                }
            }
        }
    }

    /// Tracks whether the letters after `<` / `</` in an escaped script spell `script`.
    fn dbl_push(&mut self, c: u8) {
        let k = self.dbl as usize;
        if k < 6 && c.to_ascii_lowercase() == b"script"[k] {
            self.dbl += 1;
        } else {
            self.dbl_ok = false;
        }
    }

    /// An attribute name starts with `c` (consumed); read when the tag is a link tag.
    #[inline]
    fn start_attr_name(&mut self, c: u8) {
        if self.tag_cap {
            self.attr_name = Name::EMPTY;
            self.attr_name.push(c.to_ascii_lowercase());
        }
        self.st = St::AttrName;
    }

    /// Ends the document and returns one count per word.
    #[cfg(test)]
    pub(crate) fn finish(self) -> Vec<u64> {
        self.finish_all().0
    }

    /// Ends the document: one count per word, and the links when they were collected.
    /// A tag still open at the end is not a tag (html5ever emits none), so its attributes
    /// are dropped.
    pub(crate) fn finish_all(mut self) -> (Vec<u64>, Option<PageLinks>) {
        match self.st {
            St::TagOpen => self.text("<"),
            St::EndTagOpen => self.text("</"),
            St::RawLt(kind) if kind != Raw::Script => self.text("<"),
            St::RawEndTagOpen(kind) | St::RawEndTagName(kind) => self.flush_raw_end(kind),
            St::RefBegin => self.ref_out("&"),
            St::RefHash => self.ref_out("&#"),
            St::RefNum if !self.num_digits => self.unconsume_numeric(),
            St::RefNum => self.finish_numeric(),
            St::RefNamed => self.finish_named(None),
            St::CdataBracket => self.text("]"),
            St::CdataEnd => self.text("]]"),
            _ => {}
        }
        let links = self.links.take().map(|l| l.finish());
        (self.out.finish(), links)
    }
}
