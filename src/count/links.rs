//! Link collection of the **count** step (submit → queue → fetch → **count** → NSQ → DB →
//! poll): while the scanner counts words, it reports the start tags that carry links
//! (`a`, `area`, `base`, `meta`) and the decoded values of the few attributes that matter;
//! this collector turns them into a page's [`PageLinks`] for the crawl (DESIGN §15).
//!
//! The scanner does the tokenizing (attribute values decoded exactly as html5ever decodes
//! them, character references and the attribute-value legacy rule included, CR/LF
//! normalised); this file holds the rules, each small and separately tested:
//! * every `a[href]` and `area[href]` value, in document order;
//! * the first `base` element that has an `href` (HTML's "frozen base URL": a later one is
//!   ignored even when the first one's value is unusable);
//! * page-level nofollow: `<meta name="robots" content="…">` (the name compared ASCII
//!   case-insensitively, whole) whose tokens (split at commas and ASCII whitespace) include
//!   `nofollow` or `none`, ASCII case-insensitively;
//! * per-link nofollow: `rel` whose space-separated tokens include `nofollow`.
//!
//! Memory is bounded whatever the page: at most [`LinkOptions::max_links`] hrefs of at
//! most [`LinkOptions::max_href_bytes`] bytes each are kept (the rest are counted in
//! [`PageLinks::dropped`]); `rel` and `content` values are never stored, they are matched
//! token by token as they stream past; a `meta` name keeps at most a few bytes.
//!
//! Duplicate attributes follow html5ever's tokenizer: the first one wins, later ones with
//! the same name are ignored.

/// What the link collector keeps of one page (bounds) and whether it obeys nofollow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkOptions {
    /// Most hrefs kept per page; the excess is counted in [`PageLinks::dropped`].
    pub max_links: usize,
    /// Longest href kept, in bytes of its decoded value; longer ones are counted in
    /// [`PageLinks::dropped`]. A `base` longer than this is unusable (as a base URL that
    /// does not parse: [`PageLinks::base`] stays `None` and later bases are still ignored).
    pub max_href_bytes: usize,
    /// Leave out `rel=nofollow` links, and every link of a page whose robots `meta` says
    /// `nofollow` or `none` (DESIGN §15, when a crawl obeys robots).
    pub obey_nofollow: bool,
}

impl Default for LinkOptions {
    /// The crawl's defaults (issue 19): 10,000 links per page, URLs up to 2,048 bytes,
    /// nofollow obeyed.
    fn default() -> Self {
        LinkOptions {
            max_links: 10_000,
            max_href_bytes: 2_048,
            obey_nofollow: true,
        }
    }
}

/// The links of one HTML page, as found in the same pass as the count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageLinks {
    /// The first `<base href>` value (decoded, not resolved), if any.
    pub base: Option<String>,
    /// `a[href]` and `area[href]` values in document order (decoded, not resolved, not
    /// deduplicated); empty for a nofollow page when nofollow is obeyed.
    pub hrefs: Vec<String>,
    /// The page's robots `meta` says `nofollow` or `none` (reported whether obeyed or not).
    pub nofollow_page: bool,
    /// `a`/`area` hrefs left out by the bounds (too many, too long); links left out for
    /// nofollow are not counted here (a nofollow page that is obeyed reports 0).
    pub dropped: u64,
}

/// The start tags whose attributes the collector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkTag {
    /// `a` or `area`: `href`, `rel`.
    Anchor,
    /// `base`: `href`.
    Base,
    /// `meta`: `name`, `content`.
    Meta,
}

impl LinkTag {
    /// Which link tag an (ASCII-lowercased) start tag name is, if any.
    #[inline]
    pub(crate) fn of(name: &[u8]) -> Option<LinkTag> {
        match name {
            b"a" | b"area" => Some(LinkTag::Anchor),
            b"base" => Some(LinkTag::Base),
            b"meta" => Some(LinkTag::Meta),
            _ => None,
        }
    }
}

/// An attribute of a link tag whose value the collector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Href,
    Rel,
    Name,
    Content,
}

impl Slot {
    fn bit(self) -> u8 {
        match self {
            Slot::Href => 1,
            Slot::Rel => 2,
            Slot::Name => 4,
            Slot::Content => 8,
        }
    }
}

/// Streaming "does this token list contain one of these tokens" test, ASCII
/// case-insensitive; keeps at most one token's worth of bytes (the longest wanted token
/// plus one, to know a longer token is no match).
#[derive(Clone, Debug, Default)]
struct TokenMatch {
    buf: [u8; 9],
    len: u8,
    /// The current token is longer than any wanted one.
    long: bool,
    found: bool,
}

impl TokenMatch {
    fn reset(&mut self) {
        *self = TokenMatch::default();
    }

    /// Feeds value text; `sep` says which bytes separate tokens, `wanted` the tokens
    /// (lowercase ASCII, at most 8 bytes).
    fn push(&mut self, s: &str, sep: fn(u8) -> bool, wanted: &[&[u8]]) {
        for &b in s.as_bytes() {
            if sep(b) {
                self.end_token(wanted);
            } else if (self.len as usize) < self.buf.len() {
                self.buf[self.len as usize] = b.to_ascii_lowercase();
                self.len += 1;
            } else {
                self.long = true;
            }
        }
    }

    fn end_token(&mut self, wanted: &[&[u8]]) {
        if !self.long && wanted.contains(&&self.buf[..self.len as usize]) {
            self.found = true;
        }
        self.len = 0;
        self.long = false;
    }

    /// Ends the value: whether a wanted token was in it.
    fn finish(&mut self, wanted: &[&[u8]]) -> bool {
        self.end_token(wanted);
        self.found
    }
}

/// ASCII whitespace as HTML's "split on ASCII whitespace" knows it.
fn ascii_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
}

/// Separators of a robots `meta` content value: commas and ASCII whitespace.
fn comma_or_ws(b: u8) -> bool {
    b == b',' || ascii_ws(b)
}

const NOFOLLOW: &[&[u8]] = &[b"nofollow"];
const ROBOTS_NOFOLLOW: &[&[u8]] = &[b"nofollow", b"none"];

/// The link tag being read (reset at each start tag).
#[derive(Debug, Default)]
struct Pending {
    tag: Option<LinkTag>,
    /// Slots seen in this tag (duplicates are ignored, as html5ever does).
    seen: u8,
    href: String,
    href_long: bool,
    rel: TokenMatch,
    /// A `meta` name up to 7 bytes (`robots` is 6); longer is no match.
    name: [u8; 7],
    name_len: u8,
    name_long: bool,
    content: TokenMatch,
}

/// Collects one page's links from the scanner's tag events (see the module docs).
pub(crate) struct LinkCollector {
    opts: LinkOptions,
    out: PageLinks,
    /// A `base` with an `href` was seen (the first one wins, usable or not).
    base_done: bool,
    cur: Pending,
}

impl LinkCollector {
    pub(crate) fn new(opts: LinkOptions) -> Self {
        LinkCollector {
            opts,
            out: PageLinks::default(),
            base_done: false,
            cur: Pending::default(),
        }
    }

    /// A start tag of this kind begins (its attributes follow).
    pub(crate) fn start_tag(&mut self, tag: LinkTag) {
        self.cur.tag = Some(tag);
        self.cur.seen = 0;
        self.cur.href.clear();
        self.cur.href_long = false;
        self.cur.rel.reset();
        self.cur.name_len = 0;
        self.cur.name_long = false;
        self.cur.content.reset();
    }

    /// An attribute name (ASCII-lowercased) of the current tag has ended: the slot its
    /// value goes to, or `None` when the collector ignores it (not wanted here, or a
    /// duplicate). A wanted attribute without a value has the empty value.
    pub(crate) fn attr(&mut self, name: &[u8]) -> Option<Slot> {
        let slot = match (self.cur.tag?, name) {
            (LinkTag::Anchor | LinkTag::Base, b"href") => Slot::Href,
            (LinkTag::Anchor, b"rel") => Slot::Rel,
            (LinkTag::Meta, b"name") => Slot::Name,
            (LinkTag::Meta, b"content") => Slot::Content,
            _ => return None,
        };
        if self.cur.seen & slot.bit() != 0 {
            return None;
        }
        self.cur.seen |= slot.bit();
        Some(slot)
    }

    /// Decoded text of the current attribute's value (in pieces of any size).
    pub(crate) fn value(&mut self, slot: Slot, s: &str) {
        let cur = &mut self.cur;
        match slot {
            Slot::Href => {
                if cur.href_long {
                    return;
                }
                if cur.href.len() + s.len() > self.opts.max_href_bytes {
                    cur.href_long = true;
                    cur.href.clear();
                } else {
                    cur.href.push_str(s);
                }
            }
            Slot::Rel => cur.rel.push(s, ascii_ws, NOFOLLOW),
            Slot::Name => {
                for &b in s.as_bytes() {
                    if (cur.name_len as usize) < cur.name.len() {
                        cur.name[cur.name_len as usize] = b.to_ascii_lowercase();
                        cur.name_len += 1;
                    } else {
                        cur.name_long = true;
                    }
                }
            }
            Slot::Content => cur.content.push(s, comma_or_ws, ROBOTS_NOFOLLOW),
        }
    }

    /// The current start tag was emitted (`>` reached): apply the rules to it.
    pub(crate) fn end_tag(&mut self) {
        let Some(tag) = self.cur.tag.take() else {
            return;
        };
        let has_href = self.cur.seen & Slot::Href.bit() != 0;
        match tag {
            LinkTag::Meta => {
                let is_robots = self.cur.seen & Slot::Name.bit() != 0
                    && !self.cur.name_long
                    && &self.cur.name[..self.cur.name_len as usize] == b"robots";
                let nofollow = self.cur.seen & Slot::Content.bit() != 0
                    && self.cur.content.finish(ROBOTS_NOFOLLOW);
                if is_robots && nofollow {
                    self.out.nofollow_page = true;
                    if self.opts.obey_nofollow {
                        // Nothing of this page will be followed: free what was kept.
                        self.out.hrefs = Vec::new();
                        self.out.dropped = 0;
                    }
                }
            }
            LinkTag::Base if has_href && !self.base_done => {
                self.base_done = true;
                if !self.cur.href_long {
                    self.out.base = Some(std::mem::take(&mut self.cur.href));
                }
            }
            LinkTag::Base => {}
            LinkTag::Anchor if has_href => {
                if self.opts.obey_nofollow
                    && (self.out.nofollow_page || self.cur.rel.finish(NOFOLLOW))
                {
                    return;
                }
                if self.cur.href_long || self.out.hrefs.len() >= self.opts.max_links {
                    self.out.dropped += 1;
                } else {
                    self.out.hrefs.push(std::mem::take(&mut self.cur.href));
                }
            }
            LinkTag::Anchor => {}
        }
    }

    /// Ends the page.
    pub(crate) fn finish(self) -> PageLinks {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(c: &mut LinkCollector, t: LinkTag, attrs: &[(&str, &str)]) {
        c.start_tag(t);
        for (n, v) in attrs {
            if let Some(slot) = c.attr(n.as_bytes()) {
                // In pieces of one byte where possible, as a stream may cut them.
                for (i, ch) in v.char_indices() {
                    c.value(slot, &v[i..i + ch.len_utf8()]);
                }
            }
        }
        c.end_tag();
    }

    fn opts(obey: bool) -> LinkOptions {
        LinkOptions {
            max_links: 3,
            max_href_bytes: 10,
            obey_nofollow: obey,
        }
    }

    #[test]
    fn hrefs_in_order_and_the_first_base() {
        let mut c = LinkCollector::new(opts(true));
        tag(&mut c, LinkTag::Base, &[("target", "_top")]);
        tag(&mut c, LinkTag::Anchor, &[("href", "a")]);
        tag(&mut c, LinkTag::Base, &[("href", "/b/")]);
        tag(&mut c, LinkTag::Base, &[("href", "/c/")]);
        tag(&mut c, LinkTag::Anchor, &[("name", "x")]);
        tag(&mut c, LinkTag::Anchor, &[("href", "")]);
        let l = c.finish();
        assert_eq!(l.base.as_deref(), Some("/b/"));
        assert_eq!(l.hrefs, ["a", ""]);
        assert_eq!((l.nofollow_page, l.dropped), (false, 0));
    }

    #[test]
    fn duplicate_attributes_keep_the_first() {
        let mut c = LinkCollector::new(opts(true));
        tag(&mut c, LinkTag::Anchor, &[("href", "1"), ("href", "2")]);
        tag(
            &mut c,
            LinkTag::Anchor,
            &[("href", "3"), ("rel", "x"), ("rel", "nofollow")],
        );
        assert_eq!(c.finish().hrefs, ["1", "3"]);
    }

    #[test]
    fn bounds_drop_and_count() {
        let mut c = LinkCollector::new(opts(true));
        tag(&mut c, LinkTag::Anchor, &[("href", "12345678901")]);
        for h in ["a", "b", "c", "d", "e"] {
            tag(&mut c, LinkTag::Anchor, &[("href", h)]);
        }
        tag(&mut c, LinkTag::Anchor, &[("href", "1234567890")]);
        let l = c.finish();
        assert_eq!(l.hrefs, ["a", "b", "c"]);
        assert_eq!(l.dropped, 4);
        // A base too long to keep is the first base all the same.
        let mut c = LinkCollector::new(opts(true));
        tag(&mut c, LinkTag::Base, &[("href", "/very/long/base/")]);
        tag(&mut c, LinkTag::Base, &[("href", "/b/")]);
        let l = c.finish();
        assert_eq!((l.base, l.dropped), (None, 0));
    }

    #[test]
    fn rel_nofollow_is_a_token_ascii_case_insensitive() {
        for (rel, nofollow) in [
            ("nofollow", true),
            ("NoFollow", true),
            ("noopener  nofollow\tugc", true),
            ("\nnofollow\n", true),
            ("nofollowx", false),
            ("no-follow", false),
            ("nofollow,ugc", false),
            ("x nofollo", false),
            ("", false),
        ] {
            for obey in [true, false] {
                let mut c = LinkCollector::new(opts(obey));
                tag(&mut c, LinkTag::Anchor, &[("rel", rel), ("href", "h")]);
                let kept = c.finish().hrefs.len() == 1;
                assert_eq!(kept, !(nofollow && obey), "{rel:?} obey={obey}");
            }
        }
    }

    #[test]
    fn meta_robots_nofollow_or_none() {
        for (name, content, nofollow) in [
            ("robots", "nofollow", true),
            ("ROBOTS", "noindex,NOFOLLOW", true),
            ("robots", "noindex, none", true),
            ("robots", " index , follow ", false),
            ("robots", "nofollowing", false),
            ("robots", "noindex;nofollow", false),
            ("googlebot", "nofollow", false),
            (" robots", "nofollow", false),
            ("robotss", "nofollow", false),
        ] {
            for obey in [true, false] {
                let mut c = LinkCollector::new(opts(obey));
                tag(&mut c, LinkTag::Anchor, &[("href", "before")]);
                tag(
                    &mut c,
                    LinkTag::Meta,
                    &[("name", name), ("content", content)],
                );
                tag(&mut c, LinkTag::Anchor, &[("href", "after")]);
                let l = c.finish();
                assert_eq!(l.nofollow_page, nofollow, "{name:?} {content:?}");
                let want: &[&str] = if nofollow && obey {
                    &[]
                } else {
                    &["before", "after"]
                };
                assert_eq!(l.hrefs, want, "{name:?} {content:?} obey={obey}");
            }
        }
        // A meta without content, or a content without a name, says nothing.
        let mut c = LinkCollector::new(opts(true));
        tag(&mut c, LinkTag::Meta, &[("name", "robots")]);
        tag(&mut c, LinkTag::Meta, &[("content", "nofollow")]);
        assert!(!c.finish().nofollow_page);
    }

    #[test]
    fn attributes_of_other_tags_are_ignored() {
        let mut c = LinkCollector::new(opts(true));
        // `rel` on base, `href` on meta: no slot.
        c.start_tag(LinkTag::Base);
        assert_eq!(c.attr(b"rel"), None);
        c.end_tag();
        c.start_tag(LinkTag::Meta);
        assert_eq!(c.attr(b"href"), None);
        c.end_tag();
        assert_eq!(c.finish(), PageLinks::default());
    }
}
