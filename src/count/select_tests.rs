//! Differential tests of regions in the **count** step (submit → queue → fetch → **count**
//! → NSQ → DB → poll): counting with `within` / `outside` selectors while streaming (the
//! scanner's open-element stack) must give the counts of a full-document implementation:
//! html5ever's tree builder builds the whole tree (a small `Rc` DOM below), each element's
//! selectors are matched over its real ancestors, and the text is walked with the same
//! rules (DESIGN §4: hidden elements, inline tags join words, other elements and region
//! boundaries separate them).
//!
//! The oracle shares the selector parser and the per-element compound test with
//! production (`Regions`); what it checks is everything a stream has to guess: which
//! elements are open (implied ends, voids, self-closing, foreign content), chunking, the
//! attribute values read from the tokenizer, and the separators at region boundaries.

use std::cell::RefCell;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use html5ever::interface::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::{Attribute, QualName, ns, parse_document};

use super::html::{HtmlText, INLINE_TAGS};
use super::scanner::Scanner;
use super::select::Regions;
use super::words::Counter;
use super::*;

// ------------------------------------------------------------------ the oracle's DOM

#[derive(Default)]
struct Node {
    /// `Some` for elements.
    name: Option<QualName>,
    attrs: RefCell<Vec<(String, String)>>,
    text: RefCell<Option<String>>,
    parent: RefCell<Option<Weak<Node>>>,
    children: RefCell<Vec<Rc<Node>>>,
    template: Option<Rc<Node>>,
}

type Handle = Rc<Node>;

struct Dom {
    doc: Handle,
}

impl Dom {
    fn new() -> Self {
        Dom {
            doc: Rc::new(Node::default()),
        }
    }
}

fn text_node(t: &str) -> Handle {
    Rc::new(Node {
        text: RefCell::new(Some(t.to_owned())),
        ..Node::default()
    })
}

fn detach(child: &Handle) {
    let parent = child.parent.borrow_mut().take().and_then(|w| w.upgrade());
    if let Some(p) = parent {
        p.children.borrow_mut().retain(|c| !Rc::ptr_eq(c, child));
    }
}

fn append_to(parent: &Handle, child: NodeOrText<Handle>) {
    match child {
        NodeOrText::AppendNode(n) => {
            detach(&n);
            *n.parent.borrow_mut() = Some(Rc::downgrade(parent));
            parent.children.borrow_mut().push(n);
        }
        NodeOrText::AppendText(t) => {
            if let Some(last) = parent.children.borrow().last()
                && let Some(s) = last.text.borrow_mut().as_mut()
            {
                s.push_str(&t);
                return;
            }
            let n = text_node(&t);
            *n.parent.borrow_mut() = Some(Rc::downgrade(parent));
            parent.children.borrow_mut().push(n);
        }
    }
}

impl TreeSink for Dom {
    type Handle = Handle;
    type Output = Self;
    type ElemName<'a> = &'a QualName;

    fn finish(self) -> Self {
        self
    }
    fn parse_error(&self, _msg: std::borrow::Cow<'static, str>) {}
    fn get_document(&self) -> Handle {
        Rc::clone(&self.doc)
    }
    fn elem_name<'a>(&'a self, target: &'a Handle) -> &'a QualName {
        target.name.as_ref().expect("elem_name of an element")
    }
    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> Handle {
        let attrs = attrs
            .into_iter()
            .map(|a| (a.name.local.to_string(), a.value.to_string()))
            .collect();
        Rc::new(Node {
            name: Some(name),
            attrs: RefCell::new(attrs),
            template: flags.template.then(|| Rc::new(Node::default())),
            ..Node::default()
        })
    }
    fn create_comment(&self, _text: StrTendril) -> Handle {
        Rc::new(Node::default())
    }
    fn create_pi(&self, _target: StrTendril, _data: StrTendril) -> Handle {
        Rc::new(Node::default())
    }
    fn append(&self, parent: &Handle, child: NodeOrText<Handle>) {
        append_to(parent, child);
    }
    fn append_based_on_parent_node(
        &self,
        element: &Handle,
        prev_element: &Handle,
        child: NodeOrText<Handle>,
    ) {
        if element.parent.borrow().is_some() {
            self.append_before_sibling(element, child);
        } else {
            append_to(prev_element, child);
        }
    }
    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {}
    fn get_template_contents(&self, target: &Handle) -> Handle {
        target
            .template
            .clone()
            .expect("template contents of a template")
    }
    fn same_node(&self, x: &Handle, y: &Handle) -> bool {
        Rc::ptr_eq(x, y)
    }
    fn set_quirks_mode(&self, _mode: QuirksMode) {}
    fn append_before_sibling(&self, sibling: &Handle, child: NodeOrText<Handle>) {
        let Some(parent) = sibling.parent.borrow().as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let pos = parent
            .children
            .borrow()
            .iter()
            .position(|c| Rc::ptr_eq(c, sibling))
            .unwrap_or(0);
        let node = match child {
            NodeOrText::AppendText(t) => {
                if pos > 0
                    && let Some(s) = parent.children.borrow()[pos - 1].text.borrow_mut().as_mut()
                {
                    s.push_str(&t);
                    return;
                }
                text_node(&t)
            }
            NodeOrText::AppendNode(n) => {
                detach(&n);
                n
            }
        };
        let pos = parent
            .children
            .borrow()
            .iter()
            .position(|c| Rc::ptr_eq(c, sibling))
            .unwrap_or(0);
        *node.parent.borrow_mut() = Some(Rc::downgrade(&parent));
        parent.children.borrow_mut().insert(pos, node);
    }
    fn add_attrs_if_missing(&self, target: &Handle, attrs: Vec<Attribute>) {
        let mut have = target.attrs.borrow_mut();
        for a in attrs {
            let k = a.name.local.to_string();
            if !have.iter().any(|(n, _)| *n == k) {
                have.push((k, a.value.to_string()));
            }
        }
    }
    fn remove_from_parent(&self, target: &Handle) {
        detach(target);
    }
    fn reparent_children(&self, node: &Handle, new_parent: &Handle) {
        let children = std::mem::take(&mut *node.children.borrow_mut());
        for c in children {
            *c.parent.borrow_mut() = Some(Rc::downgrade(new_parent));
            new_parent.children.borrow_mut().push(c);
        }
    }
}

// ------------------------------------------------------------------ the oracle's walk

struct Walk<'a> {
    out: Counter,
    regions: &'a Regions,
}

/// An element as the selectors see it: lowercased name and the wanted attributes.
struct Elem {
    name: String,
    attrs: Vec<Option<String>>,
}

impl Walk<'_> {
    fn counted(&self, within: bool, outside: bool) -> bool {
        (self.regions.within.is_empty() || within) && !outside
    }

    fn matches(&self, list: &[super::select::Complex], chain: &[Elem]) -> bool {
        let r = self.regions;
        let matched = |k: usize, c: usize| {
            let e = &chain[chain.len() - 1 - k];
            let attrs: Vec<Option<&str>> = e.attrs.iter().map(|a| a.as_deref()).collect();
            Regions::compound_matches(&r.compounds[c], &e.name, &attrs)
        };
        list.iter()
            .any(|x| Regions::complex_matches(x, chain.len(), &matched))
    }

    /// Walks `node`'s children; `chain` is the elements from the root down to `node`.
    fn children(
        &mut self,
        node: &Handle,
        chain: &mut Vec<Elem>,
        state: (bool, bool),
        hidden: bool,
        foreign: bool,
    ) {
        let kids: Vec<Handle> = node.children.borrow().clone();
        for k in kids {
            if let Some(t) = k.text.borrow().as_ref() {
                if !hidden && self.counted(state.0, state.1) {
                    self.out.push_str(t);
                }
                continue;
            }
            let Some(name) = &k.name else {
                continue;
            };
            let local = name.local.to_string().to_ascii_lowercase();
            let is_html = name.ns == ns!(html);
            let attrs = self
                .regions
                .attr_names
                .iter()
                .map(|n| {
                    k.attrs
                        .borrow()
                        .iter()
                        .find(|(a, _)| a.to_ascii_lowercase() == *n)
                        .map(|(_, v)| v.clone())
                })
                .collect();
            chain.push(Elem {
                name: local.clone(),
                attrs,
            });
            let within = state.0 || self.matches(&self.regions.within, chain);
            let outside = state.1 || self.matches(&self.regions.outside, chain);
            let inline = INLINE_TAGS.contains(&local.as_str());
            let changes = self.counted(within, outside) != self.counted(state.0, state.1);
            if !inline || changes {
                self.out.push_separator();
            }
            let hides = if is_html && !foreign {
                matches!(local.as_str(), "script" | "style" | "noscript")
            } else {
                matches!(local.as_str(), "script" | "style")
            };
            let child_foreign = !is_html;
            // Template contents are a separate tree: their text is never shown.
            self.children(&k, chain, (within, outside), hidden || hides, child_foreign);
            if !inline || changes {
                self.out.push_separator();
            }
            chain.pop();
        }
    }
}

/// Oracle: counts of `text` (whole) with the regions, over html5ever's tree.
fn oracle(text: &str, ws: &[String], within: &[String], outside: &[String]) -> Vec<u64> {
    let regions = Regions::compile(within, outside).expect("valid selectors");
    let dom = parse_document(Dom::new(), Default::default()).one(StrTendril::from(text));
    let mut w = Walk {
        out: Counter::new(ws, false, true),
        regions: &regions,
    };
    let root = (false, false);
    w.children(&dom.doc, &mut Vec::new(), root, false, false);
    w.out.finish()
}

/// Production: the scanner with regions, the text fed in `pieces`.
fn streaming(pieces: &[&str], ws: &[String], within: &[String], outside: &[String]) -> Vec<u64> {
    let regions = Regions::compile(within, outside).expect("valid selectors");
    let mut s = Scanner::with_regions(Counter::new(ws, false, true), None, Arc::new(regions));
    for p in pieces {
        s.push_str(p);
    }
    s.finish()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ------------------------------------------------------------------ generated pages

/// A generated element tree.
#[derive(Clone, Debug)]
enum Gen {
    Text(&'static str),
    El(&'static str, String, Vec<Gen>, bool),
    Raw(&'static str),
}

const WORDS: &[&str] = &[
    "python",
    "py",
    "thon",
    "Python",
    " ",
    "\n",
    "é",
    "a&amp;b",
    "&lt;python&gt;",
    "x",
];
const BLOCKS: &[&str] = &[
    "div", "section", "nav", "footer", "main", "article", "aside", "header", "h1", "DIV",
];
/// (No `a`: a link inside a link is closed by the adoption agency, which reopens the
/// formatting elements between them; only the direct case is modelled.)
const INLINES: &[&str] = &["span", "b", "i", "em", "code", "SPAN"];
const ATTRS: &[&str] = &[
    "",
    " class=x",
    " class=\"x y\"",
    " class='body'",
    " class=\"sphinxsidebar\"",
    " id=content",
    " ID=\"a\"",
    " role=navigation",
    " data-k=\"v1\"",
    " class=\"a&amp;b\"",
    " class=x class=y",
    " CLASS=X",
    " class=\"related\" id=\"content\"",
];
/// Things that are not elements of the tree: comments, scripts with fake tags, voids
/// (phrasing ones only: an `<hr>` inside `<p><b>` closes the `p`, and the tree builder
/// then reopens the `b` after it, which the stack does not model).
const RAWS: &[&str] = &[
    "<!-- <nav>python</nav> -->",
    "<script>var s = '<div class=x>python</div>';</script>",
    "<style>.x{}</style>",
    "<br>",
    "<img src=x alt=python>",
    "<input value=python>",
    "<wbr>",
];

fn gen_strategy() -> impl proptest::strategy::Strategy<Value = Vec<Gen>> {
    use proptest::prelude::*;
    let text = prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(Gen::Text),
        1 => proptest::sample::select(RAWS).prop_map(Gen::Raw),
    ];
    let inline = text.clone().prop_recursive(3, 12, 3, |inner| {
        (
            proptest::sample::select(INLINES),
            proptest::sample::select(ATTRS),
            proptest::collection::vec(inner, 0..3),
        )
            .prop_map(|(t, a, c)| Gen::El(t, a.to_owned(), c, true))
    });
    let phrasing = proptest::collection::vec(inline, 0..4);
    let leaf_blocks = prop_oneof![
        2 => (proptest::sample::select(ATTRS), phrasing.clone(), any::<bool>())
            .prop_map(|(a, c, close)| Gen::El("p", a.to_owned(), c, close)),
        1 => (proptest::sample::select(ATTRS), proptest::collection::vec(
                (proptest::sample::select(ATTRS), phrasing.clone(), any::<bool>())
                    .prop_map(|(a, c, close)| Gen::El("li", a.to_owned(), c, close)), 0..3))
            .prop_map(|(a, c)| Gen::El("ul", a.to_owned(), c, true)),
        1 => phrasing.clone().prop_map(|c| Gen::El("table", String::new(),
                vec![Gen::El("tr", String::new(), vec![Gen::El("td", " class=x".to_owned(), c, true)], true)], true)),
        2 => phrasing.prop_map(|c| Gen::El("div", String::new(), c, true)),
    ];
    let blocks = leaf_blocks.prop_recursive(4, 40, 4, |inner| {
        (
            proptest::sample::select(BLOCKS),
            proptest::sample::select(ATTRS),
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(t, a, c)| Gen::El(t, a.to_owned(), c, true))
    });
    proptest::collection::vec(blocks, 0..5)
}

fn render(g: &[Gen], out: &mut String) {
    for n in g {
        match n {
            Gen::Text(t) | Gen::Raw(t) => out.push_str(t),
            Gen::El(t, a, c, close) => {
                out.push('<');
                out.push_str(t);
                out.push_str(a);
                out.push('>');
                render(c, out);
                if *close {
                    out.push_str("</");
                    out.push_str(t);
                    out.push('>');
                }
            }
        }
    }
}

/// Selectors of the generated tests (each valid).
const SELECTORS: &[&str] = &[
    "div",
    "p",
    ".x",
    "#content",
    "div.body",
    "nav",
    "footer",
    "ul > li",
    "section p",
    "[role=navigation]",
    "div:not(.x)",
    "span.y",
    "[data-k^=v]",
    "li.x a",
    "body > div",
    "html p",
    "td",
    "table > tr",
    "table > tbody > tr",
    ".sphinxsidebar, .related",
    "*",
    "b",
    "[class~=y]",
    "[class*=\"&\"]",
    "p:not(.x):not(#content)",
    "header span",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(600))]

    #[test]
    fn regions_equal_the_tree_on_generated_html(
        page in gen_strategy(),
        head in proptest::bool::ANY,
        within in proptest::collection::vec(proptest::sample::select(SELECTORS), 0..3),
        outside in proptest::collection::vec(proptest::sample::select(SELECTORS), 0..3),
        cuts in proptest::collection::vec(0usize..800, 0..10),
    ) {
        // A doctype: the page is in no-quirks mode, as the stack assumes (in quirks mode
        // a `<table>` does not close an open `<p>`; see select.rs).
        let mut html = String::from("<!doctype html>");
        if head {
            html.push_str("<html><head><title>python</title></head><body>");
        }
        render(&page, &mut html);
        let ws = strings(&["python", "py", "thon", "x"]);
        let (within, outside) = (strings(&within), strings(&outside));
        // The tree walk itself gives the tokenizer's counts without regions.
        let mut h = HtmlText::new(Counter::new(&ws, false, true));
        h.push_str(&html);
        proptest::prop_assert_eq!(oracle(&html, &ws, &[], &[]), h.finish(), "walk vs tokens");
        let want = oracle(&html, &ws, &within, &outside);
        let pieces = super::matcher::tests::split_at(&html, &cuts);
        proptest::prop_assert_eq!(
            streaming(&pieces, &ws, &within, &outside),
            want,
            "html={:?} within={:?} outside={:?}",
            html,
            within,
            outside
        );
    }
}

#[test]
fn regions_fixed_cases() {
    let ws = strings(&["python"]);
    let cases: &[(&str, &[&str], &[&str], u64)] = &[
        ("<nav>python</nav><p>python</p>", &[], &["nav"], 1),
        (
            "<div class=body><p>python<p>python</div>python",
            &["div.body"],
            &[],
            2,
        ),
        // A region boundary separates words, even at an inline tag.
        ("<p>py<span class=x>zz</span>thon</p>", &[], &[".x"], 0),
        ("<p>py<span class=x>thon</span></p>", &[".x"], &[], 0),
        ("<p>py<b>thon</b></p>", &["p"], &[], 1),
        // Implied ends: li closes li, p closes at div.
        ("<ul><li class=x>python<li>python</ul>", &[], &["li.x"], 1),
        ("<p class=x>python<div>python</div>", &[], &[".x"], 1),
        // Voids never open; self-closing div still opens in HTML.
        ("<br class=x>python", &[], &[".x"], 1),
        ("<div class=\"x\"/>python</div>python", &[], &[".x"], 1),
        ("<div class=x/>python</div>python", &[], &[".x"], 2),
        ("<a class=x>py<a>python</a>", &[], &[".x"], 1),
        // Foreign content: self-closing is honoured.
        ("<svg><g class=x/></svg>python", &[], &[".x"], 1),
        // Implied tbody.
        (
            "<table><tr><td>python</td></tr></table>",
            &["table > tr"],
            &[],
            0,
        ),
        (
            "<table><tr><td>python</td></tr></table>",
            &["table > tbody > tr"],
            &[],
            1,
        ),
        ("python<p>python", &["body > p"], &[], 1),
        ("<div id=a>python</div>", &["#a"], &["div:not(#b)"], 0),
        (
            "<div title='a&amp;b'>python</div>",
            &["[title='a&b']"],
            &[],
            1,
        ),
    ];
    for (html, within, outside, n) in cases {
        let (within, outside) = (strings(within), strings(outside));
        let want = oracle(html, &ws, &within, &outside);
        assert_eq!(want, vec![*n], "oracle {html:?}");
        for cut in 0..=html.len() {
            if html.is_char_boundary(cut) {
                let pieces = [&html[..cut], &html[cut..]];
                assert_eq!(
                    streaming(&pieces, &ws, &within, &outside),
                    want,
                    "{html:?} cut at {cut}"
                );
            }
        }
    }
}

#[test]
fn regions_through_body_counter_and_validation() {
    let opts = CountOptions {
        outside: strings(&["nav"]),
        ..CountOptions::default()
    };
    assert!(opts.validate_all().is_ok());
    let mut c = BodyCounter::for_options(&opts, Some("text/html"));
    c.feed(b"<nav>python</nav><p>python");
    assert_eq!(c.finish().count, 1);
    let bad = CountOptions {
        within: strings(&["h1 + p"]),
        ..CountOptions::default()
    };
    assert!(bad.validate_all().unwrap_err().contains("`+`"));
}

/// The corpus with a few selector sets: streaming (bytes in 16 KiB chunks through
/// `BodyCounter::for_options`) equals the tree oracle on every page.
#[test]
fn regions_equal_the_tree_on_corpus() {
    let Some(dir) = std::env::var_os("WORDTALLY_CORPUS") else {
        println!(
            "corpus region check NOT run: set WORDTALLY_CORPUS=/usr/share/doc/python3.11/html"
        );
        return;
    };
    let files = super::scanner_tests::html_files(Path::new(&dir));
    assert!(!files.is_empty(), "no .html files under {dir:?}");
    let sets: &[(&[&str], &[&str])] = &[
        (&[], &["nav", "footer", "div.sphinxsidebar", "div.related"]),
        (&["div.body"], &[]),
        (&["div.body"], &["div.highlight", "pre", "a.headerlink"]),
        (
            &["[role=main]", "#searchbox"],
            &["[role=navigation]", "span:not(.pre)"],
        ),
    ];
    let ws = strings(&["python", "the", "module"]);
    let mut totals = vec![0u64; sets.len()];
    for path in &files {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
        let (text, _, _) = encoding_rs::UTF_8.decode(&body);
        for (k, (within, outside)) in sets.iter().enumerate() {
            let (within, outside) = (strings(within), strings(outside));
            let want = oracle(&text, &ws, &within, &outside);
            let mut opts = CountOptions {
                within,
                outside,
                ..CountOptions::default()
            };
            opts.set_words(ws.clone());
            let mut c = BodyCounter::for_options(&opts, Some("text/html"));
            for part in body.chunks(16 * 1024) {
                c.feed(part);
            }
            assert_eq!(c.finish().counts, want, "{path:?} set {k}");
            totals[k] += want.iter().sum::<u64>();
        }
    }
    println!(
        "corpus region check: {} pages x {} selector sets, totals {totals:?}: streaming == tree",
        files.len(),
        sets.len()
    );
}
