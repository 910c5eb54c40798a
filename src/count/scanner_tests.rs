//! Differential tests of the **count** step's HTML scanner (submit → queue → fetch →
//! **count** → NSQ → DB → poll): the production scanner must give exactly the counts of the
//! html5ever-based oracle, on generated HTML (property test, random chunking) and on a real
//! documentation corpus (every page × every option set, when `WORDTALLY_CORPUS` names it).

use std::path::{Path, PathBuf};

use super::html::HtmlText;
use super::scanner::Scanner;
use super::words::Counter;
use super::*;

/// The option sets of the differential tests: case × whole word.
const OPTION_SETS: [(bool, bool); 4] = [(false, true), (false, false), (true, true), (true, false)];

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| (*w).to_owned()).collect()
}

/// Scanner counts with the text fed in the given pieces.
fn scanner_counts(pieces: &[&str], ws: &[String], cs: bool, whole: bool) -> Vec<u64> {
    let mut s = Scanner::new(Counter::new(ws, cs, whole));
    for p in pieces {
        s.push_str(p);
    }
    s.finish()
}

/// Oracle counts with the text fed in the given pieces.
fn oracle_counts(pieces: &[&str], ws: &[String], cs: bool, whole: bool) -> Vec<u64> {
    let mut h = HtmlText::new(Counter::new(ws, cs, whole));
    for p in pieces {
        h.push_str(p);
    }
    h.finish()
}

/// Fragments the generator glues together: text, inline and block tags (quoted `>` in
/// attributes, odd case and spacing), raw-text elements, comments in their odd forms,
/// doctypes, processing instructions, entities (valid, legacy without `;`, malformed,
/// numeric edge cases), foreign content with CDATA, and stray `<`, `&`, `]`.
const FRAGMENTS: &[&str] = &[
    "python",
    "Python",
    "PYTHON",
    "py",
    "thon",
    "pythonic",
    " ",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "é",
    "É",
    "café",
    "x",
    "_",
    "1",
    "\0",
    "-",
    "--",
    ">",
    "<",
    "&",
    "]",
    "]]",
    ";",
    "=",
    "\"",
    "'",
    "/",
    "!",
    "?",
    "<b>",
    "</b>",
    "<i>",
    "</i>",
    "<B>",
    "</B >",
    "<span class=\"a>b\">",
    "</span>",
    "<a href='x>y'>",
    "</a>",
    "<a =\"x>\">",
    "<a b=c/>",
    "<a b = 'c' / >",
    "<a\tb\n=\"\"\r>",
    "<em/>",
    "<p>",
    "</p>",
    "<P>",
    "<div>",
    "</div id=x>",
    "<br/>",
    "<x-y>",
    "<unknownverylongtagname>",
    "</unknownverylongtagname>",
    "<3",
    "< b",
    "</>",
    "</ p>",
    "</3>",
    "<script>",
    "</script>",
    "</SCRIPT >",
    "</script/>",
    "<script type=x>",
    "<!--",
    "-->",
    "--!>",
    "<!-->",
    "<!--->",
    "<!---->",
    "<!-- -- -->",
    "<!",
    "<!-",
    "<!doctype html>",
    "<!DOCTYPE html PUBLIC \"a>b\">",
    "<?xml ?>",
    "<!x>",
    "&amp;",
    "&amp",
    "&AMP;",
    "&lt;",
    "&gt",
    "&not",
    "&notin;",
    "&notit;",
    "&noti",
    "&#",
    "&#x",
    "&#X",
    "&#65;",
    "&#x41;",
    "&#x41",
    "&#128;",
    "&#x9F;",
    "&#0;",
    "&#13;",
    "&#1114112;",
    "&#99999999999;",
    "&#xD800;",
    "&#x10FFFF;",
    "&foo;",
    "&eacute;",
    "&Eacute",
    "&para;",
    "&#8217;",
    "&hellip;",
    "&hellip",
    "&CounterClockwiseContourIntegral;",
    "&a",
    "&#;",
    "<style>",
    "</style>",
    "<noscript>",
    "</noscript>",
    "<template>",
    "</template>",
    "<title>",
    "</title>",
    "</titlex>",
    "<textarea>",
    "</textarea>",
    "<xmp>",
    "</xmp>",
    "<iframe>",
    "</iframe>",
    "<svg>",
    "</svg>",
    "<math>",
    "</math>",
    "<svg/>",
    "<math/>",
    "<style/>",
    "<script/>",
    "<title/>",
    "<![CDATA[",
    "]]>",
    "<![CDATA[py]]>",
    "<!--<script>",
    "<script>",
    "</script>-->",
    "<!--<script>x</script>-->",
    "<foreignObject>",
];

/// Words of the property test: ASCII, non-ASCII, and markup-like strings.
const WORDS: &[&str] = &[
    "python", "py", "thon", "é", "café", "<", "&", "amp", "-", "]]", "x", "a b", "¬it", "A",
    "\u{FFFD}", ">", "1",
];

fn html_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let frag = prop_oneof![
        200 => proptest::sample::select(FRAGMENTS).prop_map(str::to_owned),
        1 => Just("<plaintext>".to_owned()),
    ];
    proptest::collection::vec(frag, 0..60).prop_map(|v| v.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    #[test]
    fn scanner_equals_html5ever_on_generated_html(
        html in html_strategy(),
        cuts in proptest::collection::vec(0usize..600, 0..12),
        ws in proptest::collection::vec(proptest::sample::select(WORDS), 1..5),
    ) {
        let ws = words(&ws);
        let pieces = super::matcher::tests::split_at(&html, &cuts);
        for (cs, whole) in OPTION_SETS {
            let want = oracle_counts(&[&html], &ws, cs, whole);
            proptest::prop_assert_eq!(
                &scanner_counts(&pieces, &ws, cs, whole),
                &want,
                "cs={} whole={} pieces={:?}",
                cs,
                whole,
                pieces
            );
            // The oracle itself is chunking-independent too.
            proptest::prop_assert_eq!(&oracle_counts(&pieces, &ws, cs, whole), &want);
        }
    }
}

#[test]
fn scanner_equals_html5ever_on_fixed_cases() {
    let cases = [
        "<script><!--<script></script>python</script>python",
        "<script><!--</script>python",
        "<script><!-- --></script>python",
        "<script><!--<script>--></script>python",
        "<script><!-- --><script></script>python",
        "<script><!--<script></script>--></script>python",
        "<script><!--<SCRIPT/></script ><script>--></script>python",
        "<title>a</titlex>python</title>",
        "<textarea>&amp;python&lt;</TEXTAREA>",
        "<svg><![CDATA[py]]]>thon]]></svg>",
        "<svg><![CDATA[py]]thon</svg>",
        "&notit; &notin; &not python",
        "py&#0;thon py\0thon",
        "<!-- a --!> python <!--->python<!-->python",
        "<a title='>python'>python</a>",
        "<p =\"x>\">python",
        "<xmp><b>py</b>thon</xmp>",
        "<plaintext>python</plaintext>python",
        "<template><p>python</p></template>python",
        "py<!---->thon",
        "<math><style/></math>python",
        "<svg><p>python<style>python</style>",
        // Tags the fast path parses whole (and the state machine when cut).
        "<svg/><style/>python</style>python",
        "<svg><style/>python",
        "<math/ ><script / >python</script>python",
        "<a title='x\"y>python'>python</a>",
        "<a title=\"x'y>python\"x=y>python",
        "<b class=x/>py</b>thon<p/ >py<em\tid=a>thon",
        "<div a=\"\"b>python<div =\"python\">python</div =x>",
        "<span a = 'b'c d =e>py</span  >thon",
        "<style type=text/css>python</style>python",
        "<title x='</title>'>py</title>thon",
        "<b\0>py<b<>thon<a\"b>py",
    ];
    for html in cases {
        let ws = words(&["python", "py", "thon", "<", "&"]);
        for (cs, whole) in OPTION_SETS {
            let want = oracle_counts(&[html], &ws, cs, whole);
            // Every split point, to cover every state at a chunk boundary.
            for cut in 0..=html.len() {
                if html.is_char_boundary(cut) {
                    let pieces = [&html[..cut], &html[cut..]];
                    assert_eq!(
                        scanner_counts(&pieces, &ws, cs, whole),
                        want,
                        "{html:?} cut at {cut} cs={cs} whole={whole}"
                    );
                }
            }
        }
    }
}

/// Every `*.html` file under `dir`, sorted.
fn html_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The corpus check of the README test command: for every page of the corpus named by
/// `WORDTALLY_CORPUS` (Debian's python3.11-doc HTML: `/usr/share/doc/python3.11/html`)
/// and every option set (case × whole word × scope text/raw, several words including a
/// non-ASCII one), the production path (bytes in 16 KiB chunks through `BodyCounter`)
/// gives exactly the oracle's counts (html5ever over the decoded page). Without the
/// variable it says so and passes.
#[test]
fn scanner_equals_html5ever_on_corpus() {
    let Some(dir) = std::env::var_os("WORDTALLY_CORPUS") else {
        println!(
            "corpus check NOT run: set WORDTALLY_CORPUS=/usr/share/doc/python3.11/html \
             (apt-get install python3.11-doc)"
        );
        return;
    };
    let files = html_files(Path::new(&dir));
    assert!(!files.is_empty(), "no .html files under {dir:?}");
    let ws = words(&["python", "the", "é", "module", "a", "Γ", "—"]);
    let (mut pages, mut bytes, mut total) = (0usize, 0usize, 0u64);
    for path in &files {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
        let (text, _, _) = encoding_rs::UTF_8.decode(&body);
        for scope in [Scope::Text, Scope::Raw] {
            for (cs, whole) in OPTION_SETS {
                let want = count_text_html5ever(&ws, cs, whole, scope, true, &text, 16 * 1024);
                let mut c =
                    BodyCounter::new_words(&ws, cs, whole, scope, Some("text/html; charset=utf-8"));
                for part in body.chunks(16 * 1024) {
                    c.feed(part);
                }
                let got = c.finish().counts;
                assert_eq!(got, want, "{path:?} scope={scope} cs={cs} whole={whole}");
                if scope == Scope::Raw {
                    // Raw text has no oracle engine (both sides above run the same
                    // matchers): each word alone (the single-word matcher, searching in
                    // place) must give the several-words matcher's count, and `python`
                    // the plain reference's.
                    for (w, &n) in ws.iter().zip(&got) {
                        let one = std::slice::from_ref(w);
                        let mut c = BodyCounter::new_words(
                            one,
                            cs,
                            whole,
                            scope,
                            Some("text/html; charset=utf-8"),
                        );
                        for part in body.chunks(16 * 1024) {
                            c.feed(part);
                        }
                        assert_eq!(
                            c.finish().count,
                            n,
                            "{path:?} raw {w:?} cs={cs} whole={whole}"
                        );
                    }
                    let python = super::matcher::tests::reference(&text, "python", cs, whole);
                    assert_eq!(
                        python, got[0],
                        "{path:?} raw reference cs={cs} whole={whole}"
                    );
                }
                total += got.iter().sum::<u64>();
            }
        }
        // The single-word path (memmem matcher) with the product default.
        let o = CountOptions::default();
        let want = count_text_html5ever(
            std::slice::from_ref(&o.word),
            o.case_sensitive,
            o.whole_word,
            o.scope,
            true,
            &text,
            16 * 1024,
        );
        assert_eq!(vec![count_text(&o, true, &text)], want, "{path:?} default");
        pages += 1;
        bytes += body.len();
    }
    println!(
        "corpus check: {pages} pages, {bytes} bytes, 8 option sets x {} words, {total} matches: \
         scanner == html5ever",
        ws.len()
    );
}

/// Tag names of the tag fast-path tests: the names the policy looks at (inline, block,
/// raw text, hidden, foreign), odd case, too long for the name buffer, and names holding
/// bytes that end nothing in a tag name (NUL, `<`, quotes, `=`).
const TAG_NAMES: &[&str] = &[
    "b",
    "B",
    "span",
    "em",
    "p",
    "P",
    "div",
    "script",
    "SCRIPT",
    "style",
    "noscript",
    "template",
    "title",
    "textarea",
    "svg",
    "math",
    "x-y",
    "blockquotex",
    "averyveryverylongname",
    "b\0",
    "b<",
    "b\"",
    "b'x",
    "b=",
];

/// Attribute names: plain, starting with `=` (a name in `BeforeAttrName`), holding `/`,
/// quotes or `<`, and one that is a counted word.
const ATTR_NAMES: &[&str] = &[
    "class", "href", "data-x", "=x", "a/b", "'", "\"", "<", "python", "\0",
];

/// Quoted attribute contents: empty, words, and the bytes that end a tag or a value
/// elsewhere (`>`, `/>`, the other quote, `<`, `=`), so that a quoted value ended at the
/// wrong place shows words that must stay hidden.
const ATTR_CONTENT: &[&str] = &[
    "",
    "python",
    ">",
    "a>python<b",
    "/>",
    "=",
    "<script>",
    " ",
    "x\0y",
    "py\nthon",
];

/// Unquoted values: no whitespace or `>` (those end them) but `/`, `=`, quotes, `<`.
const ATTR_UNQUOTED: &[&str] = &["python", "a/b", "x=y", "\"q", "a'b", "/", "<p", "py/"];

/// What separates attributes (and the name from the first one): whitespace of every kind,
/// nothing (after a quoted value), and `/` not followed by `>`.
const ATTR_SEP: &[&str] = &[" ", "\t", "\n", "\r\n", "\x0C", "", "/", " / ", "  "];

/// Tag ends: `>`, the self-closing `/>` and its near misses, and none (the tag goes on
/// into whatever follows).
const TAG_ENDS: &[&str] = &[">", ">", ">", "/>", "/>", " />", "/ >", " >", "//>", ""];

/// Text between the tags: words that a wrong tag boundary or policy would count
/// differently, and the end tags of the raw-text and hidden elements.
const TAG_TEXT: &[&str] = &[
    "python",
    "py",
    "thon",
    " ",
    "\n",
    "x",
    "&amp;",
    "</script>",
    "</style>",
    "</title>",
    "</svg>",
    "<",
    "<!-- c -->",
];

/// One attribute: separator, name, and maybe `=` (with optional whitespace around it)
/// and a double-quoted, single-quoted or unquoted value.
fn attr_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    use proptest::sample::select;
    let value = prop_oneof![
        select(ATTR_CONTENT).prop_map(|c| format!("\"{c}'\"")),
        select(ATTR_CONTENT).prop_map(|c| format!("\"{c}\"")),
        select(ATTR_CONTENT).prop_map(|c| format!("'{c}\"'")),
        select(ATTR_CONTENT).prop_map(|c| format!("'{c}'")),
        select(ATTR_UNQUOTED).prop_map(str::to_owned),
        Just(String::new()),
    ];
    let eq = select(&["=", " =", "= ", " = ", "\t=\n"][..]);
    (
        select(ATTR_SEP),
        select(ATTR_NAMES),
        proptest::option::of((eq, value)),
    )
        .prop_map(|(sep, name, v)| match v {
            Some((eq, value)) => format!("{sep}{name}{eq}{value}"),
            None => format!("{sep}{name}"),
        })
}

/// A document of tags with attributes of every quoting kind between words: what the tag
/// fast path parses whole, and the near misses it must leave to the state machine.
fn tag_html_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    use proptest::sample::select;
    let tag = (
        proptest::bool::weighted(0.3),
        select(TAG_NAMES),
        proptest::collection::vec(attr_strategy(), 0..4),
        select(TAG_ENDS),
    )
        .prop_map(|(end, name, attrs, close)| {
            format!(
                "<{}{name}{}{close}",
                if end { "/" } else { "" },
                attrs.concat()
            )
        });
    let piece = prop_oneof![
        3 => tag,
        3 => select(TAG_TEXT).prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    /// The tag fast path parses a tag whole only when it ends inside the piece; cut in two
    /// at every char boundary (every tag state at a chunk end, so the state machine
    /// resumes it) and in one-char pieces (no tag ever whole), the counts must be the
    /// oracle's and the uncut document's.
    #[test]
    fn scanner_tags_equal_html5ever_at_every_cut(
        html in tag_html_strategy(),
        ws in proptest::collection::vec(
            proptest::sample::select(&["python", "py", "thon", "x", "b", "&"][..]),
            1..4,
        ),
    ) {
        let ws = words(&ws);
        let chars: Vec<&str> = html
            .char_indices()
            .map(|(k, c)| &html[k..k + c.len_utf8()])
            .collect();
        for (cs, whole) in OPTION_SETS {
            let want = oracle_counts(&[&html], &ws, cs, whole);
            proptest::prop_assert_eq!(
                &scanner_counts(&[&html], &ws, cs, whole),
                &want,
                "whole document cs={} whole={}",
                cs,
                whole
            );
            proptest::prop_assert_eq!(
                &scanner_counts(&chars, &ws, cs, whole),
                &want,
                "one-char pieces cs={} whole={}",
                cs,
                whole
            );
            for cut in (0..=html.len()).filter(|&c| html.is_char_boundary(c)) {
                let pieces = [&html[..cut], &html[cut..]];
                proptest::prop_assert_eq!(
                    &scanner_counts(&pieces, &ws, cs, whole),
                    &want,
                    "cut at {} cs={} whole={}",
                    cut,
                    cs,
                    whole
                );
            }
        }
    }
}
