//! Regions of the **count** step (submit → queue → fetch → **count** → NSQ → DB → poll):
//! `within` / `outside` CSS selectors (DESIGN §17) matched while the page streams, over the
//! scanner's stack of open elements, so that only the text of the chosen parts of a page
//! is counted.
//!
//! Why our own small parser and matcher rather than lol_html's selector engine or the
//! `selectors` crate: the scanner already tokenizes the page for the count; lol_html would
//! tokenize it a second time (its bare text pass alone is ~5× slower than the scanner,
//! BENCHMARKS.md), and the `selectors` crate matches over a DOM with sibling access, which
//! a stream does not have. What a stream can match is exactly what needs only the element
//! and its ancestors, so that is the supported subset, parsed here and refused otherwise
//! with a sentence naming the construct:
//! * type `div` and universal `*`, `#id`, `.class`, attributes `[a]`, `[a=v]`, `[a~=v]`,
//!   `[a|=v]`, `[a^=v]`, `[a$=v]`, `[a*=v]` (quoted or not, an `i` flag for ASCII
//!   case-insensitive values), `:not(…)` of compound selectors (nesting bounded);
//! * descendant (whitespace) and child (`>`) combinators; selector lists (`a, b`);
//! * refused: sibling combinators `+` `~`, every other pseudo-class (`:nth-child`,
//!   `:first-child`, `:hover`, …), pseudo-elements, namespaces.
//!
//! Matching: each compound selector (a run without combinators) depends only on the
//! element itself, so when a start tag ends, every compound is evaluated once against the
//! tag's name and attributes and the results are kept as a bitset on its stack entry;
//! complex selectors then walk the stack right to left (with backtracking for the
//! descendant combinator). An element is *within* when it or an ancestor matches a
//! `within` selector, *outside* likewise; text is counted when it is within (or there is
//! no `within`) and not outside.
//!
//! The stack follows the HTML tree builder as far as counting real pages needs: void
//! elements never open; self-closing syntax opens an element anyway except in `svg` /
//! `math`; an end tag closes up to its matching open element (if any); `p`, `li`,
//! `dt`/`dd`, `option`/`optgroup`, `tr`/`td`/`th` are closed by the start tags that imply
//! their end, as is a heading right inside a heading and a link inside a link; `html`, `head` and `body` are implied when missing; `tbody` is implied for a
//! `tr` directly in a `table`. Not modelled: misnested formatting tags (the adoption
//! agency, and the reopening of formatting elements such as `<b>` after a block closed
//! them), foster parenting out of tables, `template` contents being a separate tree
//! (their text is hidden anyway), quirks mode (a page without a doctype: there a `<table>`
//! does not close an open `<p>`; here it does, as in every page with `<!doctype html>`).
//! The stack holds at most [`MAX_DEPTH`] elements; deeper
//! ones are not matched (they inherit their ancestors' region) — bounded memory whatever
//! the page. Attribute values are kept up to [`MAX_VALUE_BYTES`] bytes for matching;
//! a longer value matches only `[a]`.

use std::sync::Arc;

/// Most elements on the open-element stack; deeper elements are not matched.
pub(crate) const MAX_DEPTH: usize = 512;
/// Longest attribute value kept for matching (longer values match only `[attr]`).
pub(crate) const MAX_VALUE_BYTES: usize = 4096;
/// Most compound selectors in all of a task's `within` and `outside` selectors.
pub(crate) const MAX_COMPOUNDS: usize = 256;
/// Deepest nesting of `:not(…)`.
pub(crate) const MAX_NOT_NESTING: usize = 4;

/// How an attribute's value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `[a]`
    Exists,
    /// `[a=v]`
    Equals,
    /// `[a~=v]`: one of the whitespace-separated words.
    Includes,
    /// `[a|=v]`: `v` or starts with `v-`.
    DashMatch,
    /// `[a^=v]`
    Prefix,
    /// `[a$=v]`
    Suffix,
    /// `[a*=v]`
    Substring,
}

/// One test on an element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Simple {
    /// Tag name (ASCII-lowercased).
    Tag(String),
    /// An attribute test; `attr` indexes [`Regions::attr_names`].
    Attr {
        attr: usize,
        op: Op,
        value: String,
        ascii_ci: bool,
    },
    /// `:not(…)`: none of these compounds matches.
    Not(Vec<Compound>),
}

/// A compound selector: every test must hold (empty = `*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Compound(pub(crate) Vec<Simple>);

/// How a compound relates to the next one on its right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comb {
    Descendant,
    Child,
}

/// A complex selector: compounds left to right (indexes into [`Regions::compounds`]),
/// each but the first with the combinator that joins it to the one on its left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Complex(pub(crate) Vec<(Comb, usize)>);

/// A task's compiled regions.
#[derive(Debug, Default)]
pub(crate) struct Regions {
    pub(crate) within: Vec<Complex>,
    pub(crate) outside: Vec<Complex>,
    pub(crate) compounds: Vec<Compound>,
    /// Every attribute name a selector tests (lowercased), in first-use order.
    pub(crate) attr_names: Vec<String>,
}

impl Regions {
    /// Parses both lists; `Err` is a sentence naming the selector and the problem.
    pub(crate) fn compile(within: &[String], outside: &[String]) -> Result<Regions, String> {
        let mut r = Regions::default();
        for (what, list) in [("within", within), ("outside", outside)] {
            for sel in list {
                let complexes = Parser::new(sel, &mut r)
                    .selector_list()
                    .map_err(|e| format!("`{what}` selector {sel:?}: {e}"))?;
                if what == "within" {
                    r.within.extend(complexes);
                } else {
                    r.outside.extend(complexes);
                }
            }
        }
        if r.compounds.len() > MAX_COMPOUNDS {
            return Err(format!(
                "the regions use {} compound selectors; at most {MAX_COMPOUNDS} are supported",
                r.compounds.len()
            ));
        }
        Ok(r)
    }

    fn attr_index(&mut self, name: &str) -> usize {
        match self.attr_names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.attr_names.push(name.to_owned());
                self.attr_names.len() - 1
            }
        }
    }

    /// Whether compound `c` holds for an element (`name` lowercased; `attrs[i]` the value
    /// of attribute `attr_names[i]`, `None` when absent).
    pub(crate) fn compound_matches(c: &Compound, name: &str, attrs: &[Option<&str>]) -> bool {
        c.0.iter().all(|s| match s {
            Simple::Tag(t) => t == name,
            Simple::Attr {
                attr,
                op,
                value,
                ascii_ci,
            } => match attrs.get(*attr).copied().flatten() {
                None => false,
                Some(v) => attr_matches(*op, v, value, *ascii_ci),
            },
            Simple::Not(list) => !list.iter().any(|c| Self::compound_matches(c, name, attrs)),
        })
    }

    /// Whether complex selector `x` matches the element at the top of an ancestor chain:
    /// `matched(k, i)` says whether compound `i` holds for the `k`-th element of the chain
    /// (0 = the element itself, 1 = its parent, …, `len - 1` = the root).
    pub(crate) fn complex_matches(
        x: &Complex,
        len: usize,
        matched: &dyn Fn(usize, usize) -> bool,
    ) -> bool {
        fn go(
            parts: &[(Comb, usize)],
            k: usize,
            len: usize,
            matched: &dyn Fn(usize, usize) -> bool,
        ) -> bool {
            // `parts.last()` must hold at chain position `k`.
            let Some((&(comb, c), rest)) = parts.split_last() else {
                return true;
            };
            if k >= len || !matched(k, c) {
                return false;
            }
            if rest.is_empty() {
                return true;
            }
            match comb {
                Comb::Child => go(rest, k + 1, len, matched),
                Comb::Descendant => (k + 1..len).any(|a| go(rest, a, len, matched)),
            }
        }
        go(&x.0, 0, len, matched)
    }
}

fn attr_matches(op: Op, v: &str, want: &str, ci: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ci {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match op {
        Op::Exists => true,
        Op::Equals => eq(v, want),
        Op::Includes => {
            !want.is_empty()
                && !want.contains(|c: char| c.is_ascii_whitespace())
                && v.split(|c: char| c.is_ascii_whitespace())
                    .any(|t| eq(t, want))
        }
        Op::DashMatch => {
            eq(v, want)
                || (v.len() > want.len()
                    && v.is_char_boundary(want.len())
                    && eq(&v[..want.len()], want)
                    && v.as_bytes()[want.len()] == b'-')
        }
        Op::Prefix => {
            !want.is_empty()
                && v.len() >= want.len()
                && v.is_char_boundary(want.len())
                && eq(&v[..want.len()], want)
        }
        Op::Suffix => {
            !want.is_empty()
                && v.len() >= want.len()
                && v.is_char_boundary(v.len() - want.len())
                && eq(&v[v.len() - want.len()..], want)
        }
        Op::Substring => {
            !want.is_empty()
                && if ci {
                    v.to_ascii_lowercase().contains(&want.to_ascii_lowercase())
                } else {
                    v.contains(want)
                }
        }
    }
}

/// Checks `within` / `outside` selectors for a task (DESIGN §17): at most 20 selectors
/// each, each at most 1,000 chars, the syntax, and only what a stream can match. `Err` is
/// a human sentence naming the problem.
pub fn validate_regions(within: &[String], outside: &[String]) -> Result<(), String> {
    for (what, list) in [("within", within), ("outside", outside)] {
        if list.len() > super::MAX_SELECTORS {
            return Err(format!(
                "`{what}`: at most {} selectors",
                super::MAX_SELECTORS
            ));
        }
        for sel in list {
            if sel.chars().count() > super::MAX_SELECTOR_CHARS {
                return Err(format!(
                    "`{what}`: a selector must be at most {} characters long",
                    super::MAX_SELECTOR_CHARS
                ));
            }
        }
    }
    Regions::compile(within, outside).map(|_| ())
}

/// A small recursive-descent parser of the supported subset (CSS Syntax tokens as far as
/// selectors need them: identifiers with escapes, strings, whitespace).
struct Parser<'a, 'r> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    regions: &'r mut Regions,
    not_depth: usize,
}

type PResult<T> = Result<T, String>;

impl<'a, 'r> Parser<'a, 'r> {
    fn new(src: &'a str, regions: &'r mut Regions) -> Self {
        Parser {
            s: src.as_bytes(),
            src,
            i: 0,
            regions,
            not_depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C') {
                self.i += 1;
            } else if c == b'/' && self.s.get(self.i + 1) == Some(&b'*') {
                match self.src[self.i + 2..].find("*/") {
                    Some(k) => self.i += 2 + k + 2,
                    None => self.i = self.s.len(),
                }
            } else {
                break;
            }
        }
        self.i > start
    }

    fn selector_list(&mut self) -> PResult<Vec<Complex>> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            out.push(self.complex()?);
            self.skip_ws();
            match self.peek() {
                None => return Ok(out),
                Some(b',') => self.i += 1,
                Some(_) => return Err(self.unexpected()),
            }
        }
    }

    fn complex(&mut self) -> PResult<Complex> {
        let mut parts = vec![(Comb::Descendant, self.compound_index()?)];
        loop {
            let ws = self.skip_ws();
            let comb = match self.peek() {
                None | Some(b',') | Some(b')') => break,
                Some(b'>') => {
                    self.i += 1;
                    self.skip_ws();
                    Comb::Child
                }
                Some(b'+') => {
                    return Err(
                        "the sibling combinator `+` is not supported (a streamed page \
                                cannot look at siblings)"
                            .to_owned(),
                    );
                }
                Some(b'~') => {
                    return Err(
                        "the sibling combinator `~` is not supported (a streamed page \
                                cannot look at siblings)"
                            .to_owned(),
                    );
                }
                Some(_) if ws => Comb::Descendant,
                Some(_) => return Err(self.unexpected()),
            };
            parts.push((comb, self.compound_index()?));
        }
        Ok(Complex(parts))
    }

    fn compound_index(&mut self) -> PResult<usize> {
        let c = self.compound()?;
        self.regions.compounds.push(c);
        Ok(self.regions.compounds.len() - 1)
    }

    fn compound(&mut self) -> PResult<Compound> {
        let mut simples = Vec::new();
        let mut any = false;
        match self.peek() {
            Some(b'*') => {
                self.i += 1;
                any = true;
                if self.peek() == Some(b'|') {
                    return Err("namespaces (`|`) are not supported".to_owned());
                }
            }
            Some(c) if is_name_start(c) => {
                let name = self.ident()?.to_ascii_lowercase();
                if self.peek() == Some(b'|') {
                    return Err("namespaces (`|`) are not supported".to_owned());
                }
                simples.push(Simple::Tag(name));
                any = true;
            }
            _ => {}
        }
        loop {
            match self.peek() {
                Some(b'#') => {
                    self.i += 1;
                    let v = self.ident()?;
                    let attr = self.regions.attr_index("id");
                    simples.push(Simple::Attr {
                        attr,
                        op: Op::Equals,
                        value: v,
                        ascii_ci: false,
                    });
                }
                Some(b'.') => {
                    self.i += 1;
                    let v = self.ident()?;
                    let attr = self.regions.attr_index("class");
                    simples.push(Simple::Attr {
                        attr,
                        op: Op::Includes,
                        value: v,
                        ascii_ci: false,
                    });
                }
                Some(b'[') => {
                    self.i += 1;
                    simples.push(self.attribute()?);
                }
                Some(b':') => {
                    self.i += 1;
                    if self.peek() == Some(b':') {
                        return Err("pseudo-elements (`::…`) are not supported".to_owned());
                    }
                    let name = self.ident()?.to_ascii_lowercase();
                    if name != "not" || self.peek() != Some(b'(') {
                        let shown = if self.peek() == Some(b'(') {
                            format!(":{name}()")
                        } else {
                            format!(":{name}")
                        };
                        return Err(format!(
                            "the pseudo-class `{shown}` is not supported (only `:not(…)`; \
                             a streamed page cannot look at siblings or later content)"
                        ));
                    }
                    self.i += 1;
                    simples.push(self.not()?);
                }
                _ => break,
            }
            any = true;
        }
        if !any {
            return Err(match self.peek() {
                None => {
                    "a selector is missing (empty, or ends with a combinator or comma)".to_owned()
                }
                Some(_) => self.unexpected(),
            });
        }
        Ok(Compound(simples))
    }

    fn not(&mut self) -> PResult<Simple> {
        self.not_depth += 1;
        if self.not_depth > MAX_NOT_NESTING {
            return Err(format!(
                "`:not(…)` may be nested at most {MAX_NOT_NESTING} levels deep"
            ));
        }
        let mut list = Vec::new();
        loop {
            self.skip_ws();
            list.push(self.compound()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    break;
                }
                Some(b'>' | b'+' | b'~') => {
                    return Err("combinators inside `:not(…)` are not supported".to_owned());
                }
                None => return Err("`:not(` is not closed".to_owned()),
                Some(_) => {
                    return Err("combinators inside `:not(…)` are not supported".to_owned());
                }
            }
        }
        self.not_depth -= 1;
        Ok(Simple::Not(list))
    }

    fn attribute(&mut self) -> PResult<Simple> {
        self.skip_ws();
        if self.peek() == Some(b'|') || self.peek() == Some(b'*') {
            return Err("namespaces (`|`) are not supported".to_owned());
        }
        let name = self.ident()?.to_ascii_lowercase();
        if self.peek() == Some(b'|') && self.s.get(self.i + 1) != Some(&b'=') {
            return Err("namespaces (`|`) are not supported".to_owned());
        }
        let attr = self.regions.attr_index(&name);
        self.skip_ws();
        let op = match self.peek() {
            Some(b']') => {
                self.i += 1;
                return Ok(Simple::Attr {
                    attr,
                    op: Op::Exists,
                    value: String::new(),
                    ascii_ci: false,
                });
            }
            Some(b'=') => {
                self.i += 1;
                Op::Equals
            }
            Some(c @ (b'~' | b'|' | b'^' | b'$' | b'*'))
                if self.s.get(self.i + 1) == Some(&b'=') =>
            {
                self.i += 2;
                match c {
                    b'~' => Op::Includes,
                    b'|' => Op::DashMatch,
                    b'^' => Op::Prefix,
                    b'$' => Op::Suffix,
                    _ => Op::Substring,
                }
            }
            None => return Err("`[` is not closed".to_owned()),
            Some(_) => return Err(self.unexpected()),
        };
        self.skip_ws();
        let value = match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.i += 1;
                self.string(q)?
            }
            _ => self.ident()?,
        };
        self.skip_ws();
        let mut ascii_ci = false;
        if let Some(b'i' | b'I' | b's' | b'S') = self.peek() {
            ascii_ci = matches!(self.peek(), Some(b'i' | b'I'));
            self.i += 1;
            self.skip_ws();
        }
        if self.peek() != Some(b']') {
            return Err(match self.peek() {
                None => "`[` is not closed".to_owned(),
                Some(_) => self.unexpected(),
            });
        }
        self.i += 1;
        Ok(Simple::Attr {
            attr,
            op,
            value,
            ascii_ci,
        })
    }

    /// A CSS identifier (with escapes).
    fn ident(&mut self) -> PResult<String> {
        let mut out = String::new();
        let start = self.i;
        if self.peek() == Some(b'-') {
            out.push('-');
            self.i += 1;
        }
        loop {
            match self.peek() {
                Some(b'\\') => out.push(self.escape()?),
                Some(c) if is_name_char(c) => {
                    let ch = self.src[self.i..].chars().next().unwrap_or('\u{FFFD}');
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
                _ => break,
            }
        }
        let first = out.chars().next();
        let valid = match first {
            None => false,
            Some('-') => out
                .chars()
                .nth(1)
                .is_some_and(|c| c == '-' || !c.is_ascii_digit()),
            Some(c) => !c.is_ascii_digit() || self.s.get(start) == Some(&b'\\'),
        };
        if !valid {
            self.i = start;
            return Err(match self.peek() {
                None => "a name is missing at the end".to_owned(),
                Some(_) => self.unexpected(),
            });
        }
        Ok(out)
    }

    fn escape(&mut self) -> PResult<char> {
        self.i += 1; // the backslash
        let hex: String = self.src[self.i..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .take(6)
            .collect();
        if !hex.is_empty() {
            self.i += hex.len();
            if let Some(b' ' | b'\t' | b'\n' | b'\x0C') = self.peek() {
                self.i += 1;
            } else if self.peek() == Some(b'\r') {
                self.i += 1;
                if self.peek() == Some(b'\n') {
                    self.i += 1;
                }
            }
            let n = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
            return Ok(match n {
                0 | 0xD800..=0xDFFF => '\u{FFFD}',
                n => char::from_u32(n).unwrap_or('\u{FFFD}'),
            });
        }
        match self.src[self.i..].chars().next() {
            None => Ok('\u{FFFD}'),
            Some('\n') => Err("a backslash before a newline is not a valid escape".to_owned()),
            Some(c) => {
                self.i += c.len_utf8();
                Ok(c)
            }
        }
    }

    fn string(&mut self, q: u8) -> PResult<String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("a quoted value is not closed".to_owned()),
                Some(c) if c == q => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\n') => return Err("a newline inside a quoted value".to_owned()),
                Some(b'\\') => {
                    if self.s.get(self.i + 1) == Some(&b'\n') {
                        self.i += 2;
                    } else {
                        out.push(self.escape()?);
                    }
                }
                Some(_) => {
                    let ch = self.src[self.i..].chars().next().unwrap_or('\u{FFFD}');
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
    }

    fn unexpected(&self) -> String {
        let ch = self.src[self.i..].chars().next().unwrap_or(' ');
        format!(
            "unexpected `{ch}` at character {}",
            self.src[..self.i].chars().count() + 1
        )
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'-' || c == b'\\' || c >= 0x80
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c >= 0x80
}

// ------------------------------------------------------------------ streaming tracker

/// Elements that never open (HTML's void elements).
fn is_void(name: &[u8]) -> bool {
    matches!(
        name,
        b"area"
            | b"base"
            | b"basefont"
            | b"bgsound"
            | b"br"
            | b"col"
            | b"embed"
            | b"frame"
            | b"hr"
            | b"img"
            | b"input"
            | b"keygen"
            | b"link"
            | b"meta"
            | b"param"
            | b"source"
            | b"track"
            | b"wbr"
    )
}

/// Start tags that close an open `p` (HTML's "close a p element" in button scope).
fn closes_p(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"article"
            | b"aside"
            | b"blockquote"
            | b"center"
            | b"details"
            | b"dialog"
            | b"dir"
            | b"div"
            | b"dl"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"header"
            | b"hgroup"
            | b"main"
            | b"menu"
            | b"nav"
            | b"ol"
            | b"p"
            | b"search"
            | b"section"
            | b"summary"
            | b"ul"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"pre"
            | b"listing"
            | b"form"
            | b"plaintext"
            | b"table"
            | b"hr"
            | b"xmp"
            | b"li"
            | b"dd"
            | b"dt"
    )
}

/// Elements that bound the search for an element to close ("scope" markers).
fn is_scope_marker(name: &[u8]) -> bool {
    matches!(
        name,
        b"applet"
            | b"caption"
            | b"html"
            | b"table"
            | b"td"
            | b"th"
            | b"marquee"
            | b"object"
            | b"template"
            | b"button"
    )
}

/// Content of `head` (a start tag of anything else opens `body`).
fn is_head_content(name: &[u8]) -> bool {
    matches!(
        name,
        b"base"
            | b"basefont"
            | b"bgsound"
            | b"link"
            | b"meta"
            | b"title"
            | b"noscript"
            | b"noframes"
            | b"style"
            | b"script"
            | b"template"
    )
}

/// Bytes of an element name kept on the stack (longer names are compared by this prefix
/// when an end tag looks for its element, and match no type selector).
const ENTRY_NAME: usize = 24;

#[derive(Clone, Copy)]
struct Entry {
    name: [u8; ENTRY_NAME],
    len: u8,
    /// Compounds this element matches.
    bits: [u64; MAX_COMPOUNDS / 64],
    within: bool,
    outside: bool,
    /// An `svg`/`math` element or one inside them (self-closing syntax is honoured).
    foreign: bool,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.name[..self.len as usize]
    }
}

/// The streaming side of regions: the open-element stack with each element's matches
/// (see the module docs). Fed by the scanner's tag events.
pub(crate) struct RegionTracker {
    regions: Arc<Regions>,
    stack: Vec<Entry>,
    /// Elements opened beyond [`MAX_DEPTH`] (not on the stack).
    overflow: u32,
    /// Attribute values of the start tag being read, by `attr_names` index: present or
    /// not, the value (its buffer reused from tag to tag: no allocation per element), and
    /// `long` when over [`MAX_VALUE_BYTES`].
    present: Vec<bool>,
    vals: Vec<String>,
    long: Vec<bool>,
    /// The attribute whose value is being read.
    cur: Option<usize>,
    /// `head` was closed (or `body` opened): no more implied `head`.
    body_seen: bool,
}

impl RegionTracker {
    pub(crate) fn new(regions: Arc<Regions>) -> Self {
        let n = regions.attr_names.len();
        RegionTracker {
            regions,
            stack: Vec::with_capacity(64),
            overflow: 0,
            present: vec![false; n],
            vals: vec![String::new(); n],
            long: vec![false; n],
            cur: None,
            body_seen: false,
        }
    }

    /// Whether text here is counted.
    #[inline]
    pub(crate) fn counted(&self) -> bool {
        match self.stack.last() {
            Some(e) => (self.regions.within.is_empty() || e.within) && !e.outside,
            None => self.regions.within.is_empty(),
        }
    }

    /// A start tag's attributes begin.
    pub(crate) fn start_tag(&mut self) {
        self.present.fill(false);
        self.long.fill(false);
        self.cur = None;
    }

    /// An attribute name (lowercased) ended: whether its value is wanted (the first of
    /// duplicates wins, as in html5ever).
    pub(crate) fn attr(&mut self, name: &[u8]) -> bool {
        self.cur = self
            .regions
            .attr_names
            .iter()
            .position(|n| n.as_bytes() == name)
            .filter(|&i| !self.present[i]);
        if let Some(i) = self.cur {
            self.present[i] = true;
            self.vals[i].clear();
        }
        self.cur.is_some()
    }

    /// Decoded text of the wanted attribute's value.
    pub(crate) fn value(&mut self, s: &str) {
        if let Some(i) = self.cur
            && self.present[i]
            && !self.long[i]
        {
            let v = &mut self.vals[i];
            if v.len() + s.len() > MAX_VALUE_BYTES {
                self.long[i] = true;
                v.clear();
            } else {
                v.push_str(s);
            }
        }
    }

    fn pop_to(&mut self, k: usize) {
        self.stack.truncate(k);
    }

    /// Position of the topmost open `name` above any scope marker in `stop`.
    fn find_open(&self, name: &[u8], stop: fn(&[u8]) -> bool) -> Option<usize> {
        for (k, e) in self.stack.iter().enumerate().rev() {
            if e.name() == name {
                return Some(k);
            }
            if stop(e.name()) {
                return None;
            }
        }
        None
    }

    /// A start tag (`captured`: its attributes were read since
    /// [`start_tag`](Self::start_tag)). `in_foreign`: it is inside `svg`/`math` content;
    /// `breakout`: an HTML tag that ended foreign content.
    pub(crate) fn on_start(
        &mut self,
        name: &[u8],
        self_closing: bool,
        in_foreign: bool,
        breakout: bool,
        captured: bool,
    ) {
        if !captured {
            self.start_tag();
        }
        if breakout {
            while self.stack.last().is_some_and(|e| e.foreign) {
                self.stack.pop();
            }
        }
        let foreign = in_foreign || matches!(name, b"svg" | b"math");
        if !in_foreign {
            self.imply_before(name);
        }
        if (is_void(name) && !in_foreign) || (foreign && self_closing) {
            return;
        }
        self.push(name, foreign, false);
    }

    /// The implied start and end tags before a start tag `name` (see the module docs).
    fn imply_before(&mut self, name: &[u8]) {
        if name == b"html" {
            return;
        }
        if self.stack.is_empty() && self.overflow == 0 {
            self.push(b"html", false, true);
        }
        let top_is_html = self.stack.len() == 1 && self.stack[0].name() == b"html";
        let top_is_head = self.stack.last().is_some_and(|e| e.name() == b"head");
        if name == b"head" || name == b"body" {
            if name == b"body" {
                if top_is_head {
                    self.stack.pop();
                }
                self.body_seen = true;
            }
            return;
        }
        if is_head_content(name) {
            if top_is_html && !self.body_seen {
                self.push(b"head", false, true);
            }
            return;
        }
        if top_is_head {
            self.stack.pop();
        }
        if self.stack.len() == 1 && self.stack[0].name() == b"html" {
            self.body_seen = true;
            self.push(b"body", false, true);
        }
        if closes_p(name)
            && let Some(k) = self.find_open(b"p", is_scope_marker)
        {
            self.pop_to(k);
        }
        match name {
            // A heading right inside a heading closes it.
            b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6"
                if self.stack.last().is_some_and(|e| {
                    matches!(e.name(), b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6")
                }) =>
            {
                self.stack.pop();
            }
            // A link inside a link: the tree builder closes the open one first.
            b"a" => {
                if let Some(k) = self.find_open(b"a", is_scope_marker) {
                    self.pop_to(k);
                }
            }
            b"li" => {
                if let Some(k) =
                    self.find_open(b"li", |n| is_scope_marker(n) || matches!(n, b"ul" | b"ol"))
                {
                    self.pop_to(k);
                }
            }
            b"dt" | b"dd" => {
                let stop = |n: &[u8]| is_scope_marker(n) || n == b"dl";
                if let Some(k) = self.find_open(b"dd", stop).max(self.find_open(b"dt", stop)) {
                    self.pop_to(k);
                }
            }
            b"option" | b"optgroup" => {
                if self.stack.last().is_some_and(|e| e.name() == b"option") {
                    self.stack.pop();
                }
                if name == b"optgroup" && self.stack.last().is_some_and(|e| e.name() == b"optgroup")
                {
                    self.stack.pop();
                }
            }
            b"tr" => {
                if let Some(k) = self.find_open(b"tr", |n| n == b"table") {
                    self.pop_to(k);
                }
                if self.stack.last().is_some_and(|e| e.name() == b"table") {
                    self.push(b"tbody", false, true);
                }
            }
            b"td" | b"th" => {
                let stop = |n: &[u8]| matches!(n, b"tr" | b"table");
                if let Some(k) = self.find_open(b"td", stop).max(self.find_open(b"th", stop)) {
                    self.pop_to(k);
                }
            }
            _ => {}
        }
    }

    /// Opens an element; an `implied` one (no tag in the page) has no attributes.
    fn push(&mut self, name: &[u8], foreign: bool, implied: bool) {
        if self.stack.len() >= MAX_DEPTH {
            self.overflow += 1;
            return;
        }
        let (p_within, p_outside) = self
            .stack
            .last()
            .map_or((false, false), |e| (e.within, e.outside));
        let mut e = Entry {
            name: [0; ENTRY_NAME],
            len: name.len().min(ENTRY_NAME) as u8,
            bits: [0; MAX_COMPOUNDS / 64],
            within: p_within,
            outside: p_outside,
            foreign: foreign || matches!(name, b"svg" | b"math"),
        };
        e.name[..e.len as usize].copy_from_slice(&name[..e.len as usize]);
        if p_outside && (p_within || self.regions.within.is_empty()) {
            // Inside an `outside` element with `within` settled: so is every element below,
            // whatever it matches, and none of them tests this one's matches (each of them
            // takes this same path), so nothing is matched here.
            self.stack.push(e);
            return;
        }
        let long_name = name.len() > ENTRY_NAME;
        let name_str = if long_name {
            "\u{FFFF}"
        } else {
            std::str::from_utf8(name).unwrap_or("\u{FFFF}")
        };
        // A long value only ever satisfies `[a]`: "\u{FFFF}" stands for it (a selector
        // value would have to contain U+FFFF to tell).
        fn value(implied: bool, present: bool, v: &str, long: bool) -> Option<&str> {
            match () {
                _ if implied || !present => None,
                _ if long => Some("\u{FFFF}"),
                _ => Some(v),
            }
        }
        // The values as a slice, without allocating for the usual few attribute names.
        let mut small: [Option<&str>; 8] = [None; 8];
        let big: Vec<Option<&str>>;
        let attrs: &[Option<&str>] = if self.vals.len() <= small.len() {
            for (i, slot) in small.iter_mut().take(self.vals.len()).enumerate() {
                *slot = value(implied, self.present[i], &self.vals[i], self.long[i]);
            }
            &small[..self.vals.len()]
        } else {
            big = (0..self.vals.len())
                .map(|i| value(implied, self.present[i], &self.vals[i], self.long[i]))
                .collect();
            &big
        };
        for (i, c) in self.regions.compounds.iter().enumerate() {
            if Regions::compound_matches(c, name_str, attrs) {
                e.bits[i / 64] |= 1 << (i % 64);
            }
        }
        self.stack.push(e);
        let top = self.stack.len();
        let stack = &self.stack;
        let matched = |k: usize, c: usize| -> bool {
            let e = &stack[top - 1 - k];
            e.bits[c / 64] & (1 << (c % 64)) != 0
        };
        // A selector of one compound (`nav`, `div.body`: the usual kind) is this element's
        // own bit; only combinators need the walk up the chain.
        let bits = e.bits;
        let hit = |x: &Complex| match x.0.as_slice() {
            [(_, c)] => bits[c / 64] & (1 << (c % 64)) != 0,
            _ => Regions::complex_matches(x, top, &matched),
        };
        let within = p_within || self.regions.within.iter().any(hit);
        let outside = p_outside || self.regions.outside.iter().any(hit);
        if let Some(last) = self.stack.last_mut() {
            last.within = within;
            last.outside = outside;
        }
    }

    /// An end tag: closes up to its matching open element, if any.
    pub(crate) fn on_end(&mut self, name: &[u8]) {
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        if name == b"head" || name == b"body" || name == b"html" {
            if name == b"head" {
                if let Some(k) = self.find_open(b"head", |_| false) {
                    self.pop_to(k);
                }
                self.body_seen = true;
            }
            // `</body>` and `</html>` close nothing: text after them still goes to body.
            return;
        }
        let key = &name[..name.len().min(ENTRY_NAME)];
        if let Some(k) = self.stack.iter().rposition(|e| e.name() == key)
            && k > 0
        {
            self.pop_to(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn parses_the_supported_subset() {
        for ok in [
            "div",
            "*",
            "div.body",
            "#content",
            "nav, footer, div.sphinxsidebar, div.related",
            "[role=navigation]",
            "[role=\"navigation\"]",
            "a[href^='http'][href$=\".pdf\" i]",
            "[lang|=en]",
            "[class~=x]",
            "[title*=py]",
            "ul > li a",
            "div  >  p",
            "div:not(.x)",
            ":not(.a, #b)",
            "div:not(:not(.x))",
            "DIV.Body",
            "h1#\\31 23",
            "[data-x]",
            "body /* a comment */ p",
            "é.ü",
        ] {
            assert!(
                validate_regions(&v(&[ok]), &[]).is_ok(),
                "{ok}: {:?}",
                validate_regions(&v(&[ok]), &[])
            );
        }
    }

    #[test]
    fn refuses_what_a_stream_cannot_match_naming_it() {
        for (bad, says) in [
            ("h1 + p", "`+`"),
            ("h1 ~ p", "`~`"),
            ("li:nth-child(2)", ":nth-child()"),
            ("li:first-child", ":first-child"),
            ("a:hover", ":hover"),
            ("p::before", "pseudo-elements"),
            ("svg|a", "namespaces"),
            ("[*|a]", "namespaces"),
            ("", "missing"),
            ("div,", "missing"),
            ("div >", "missing"),
            ("div[", "missing"),
            ("div[a", "not closed"),
            ("[a='x]", "not closed"),
            ("div:not(.a", "not closed"),
            ("div:not(a b)", "combinators"),
            ("div:not(a > b)", "combinators"),
            ("1a", "unexpected"),
            ("div$", "unexpected"),
            (":not(:not(:not(:not(:not(a)))))", "nested"),
        ] {
            let e = validate_regions(&[], &v(&[bad])).expect_err(bad);
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(e.contains("`outside` selector"), "{e}");
        }
        let many = vec!["a".to_owned(); 21];
        assert!(
            validate_regions(&many, &[])
                .unwrap_err()
                .contains("at most 20")
        );
        let long = vec!["a".repeat(1001)];
        assert!(validate_regions(&long, &[]).unwrap_err().contains("1000"));
        let wide = vec![vec!["a b c d e f g h i j k l m n"; 20].join(", ")];
        assert!(
            validate_regions(&wide, &[])
                .unwrap_err()
                .contains("compound")
        );
    }

    #[test]
    fn attribute_operators() {
        use Op::*;
        assert!(attr_matches(Equals, "a", "a", false));
        assert!(!attr_matches(Equals, "A", "a", false));
        assert!(attr_matches(Equals, "A", "a", true));
        assert!(attr_matches(Includes, "x  y\tz", "y", false));
        assert!(!attr_matches(Includes, "x y", "x y", false));
        assert!(!attr_matches(Includes, "", "", false));
        assert!(attr_matches(DashMatch, "en-GB", "en", false));
        assert!(attr_matches(DashMatch, "en", "en", false));
        assert!(!attr_matches(DashMatch, "eng", "en", false));
        assert!(attr_matches(Prefix, "http://x", "http", false));
        assert!(!attr_matches(Prefix, "http", "", false));
        assert!(attr_matches(Suffix, "a.PDF", ".pdf", true));
        assert!(attr_matches(Substring, "python3", "on3", false));
        assert!(!attr_matches(Substring, "x", "", false));
        assert!(attr_matches(Exists, "", "", false));
    }

    fn tracker(within: &[&str], outside: &[&str]) -> RegionTracker {
        let r = Regions::compile(&v(within), &v(outside)).expect("valid");
        RegionTracker::new(Arc::new(r))
    }

    fn start(t: &mut RegionTracker, name: &str, attrs: &[(&str, &str)]) {
        t.start_tag();
        for (n, val) in attrs {
            if t.attr(n.as_bytes()) {
                t.value(val);
            }
        }
        t.on_start(name.as_bytes(), false, false, false, true);
    }

    #[test]
    fn stack_rules() {
        let mut t = tracker(&["div.body"], &["nav", "ul > li.x"]);
        assert!(!t.counted());
        start(&mut t, "div", &[("class", "a body")]);
        assert!(t.counted());
        start(&mut t, "p", &[]);
        // Void elements never open; `<p>` closes the open `p`.
        start(&mut t, "br", &[]);
        start(&mut t, "p", &[]);
        assert_eq!(t.stack.len(), 4, "html body div p");
        start(&mut t, "nav", &[]);
        assert!(!t.counted());
        t.on_end(b"nav");
        assert!(t.counted());
        start(&mut t, "ul", &[]);
        start(&mut t, "li", &[("class", "x")]);
        assert!(!t.counted());
        start(&mut t, "li", &[]);
        assert!(t.counted(), "li closes li");
        t.on_end(b"div");
        assert!(!t.counted());
        // An end tag without an open element closes nothing.
        t.on_end(b"section");
        assert_eq!(t.stack.len(), 2);
    }

    #[test]
    fn depth_is_bounded() {
        let mut t = tracker(&[], &["b"]);
        for _ in 0..MAX_DEPTH + 10 {
            start(&mut t, "div", &[]);
        }
        assert_eq!(t.stack.len(), MAX_DEPTH);
        start(&mut t, "b", &[]);
        assert!(t.counted(), "too deep to match");
        t.on_end(b"b");
        for _ in 0..MAX_DEPTH + 10 {
            t.on_end(b"div");
        }
        assert!(t.stack.len() <= 2);
    }
}
