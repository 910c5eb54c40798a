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
pub(super) const FRAGMENTS: &[&str] = &[
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

/// The scanner's one-lookup path for `&name;` relies on this: html5ever's table holds
/// every prefix of every name (with `(0, 0)` when the prefix itself is no entity), which is
/// how its char-by-char walk knows when to stop.
#[test]
fn every_prefix_of_an_entity_is_a_key() {
    let table = &html5ever::data::NAMED_ENTITIES;
    let mut checked = 0;
    for (name, &(c1, _)) in table.entries() {
        if c1 == 0 {
            continue;
        }
        for end in 1..name.len() {
            assert!(
                table.get(&name[..end]).is_some(),
                "{name}: {}",
                &name[..end]
            );
        }
        checked += 1;
    }
    assert!(checked > 2000, "{checked} entities");
}

/// Every entity of the table, whole in one piece (the one-lookup path) and cut inside or
/// around the name (the char-by-char walk), decodes to the oracle's text: the word `q<decoded>q`
/// counts once, with the same count as html5ever's, in text and in an RCDATA element.
#[test]
fn every_named_entity_decodes_as_html5ever() {
    for (name, &(c1, c2)) in html5ever::data::NAMED_ENTITIES.entries() {
        if c1 == 0 {
            continue;
        }
        let decoded: String = [c1, c2]
            .iter()
            .filter(|&&c| c != 0)
            .filter_map(|&c| char::from_u32(c))
            .collect();
        let ws = vec![format!("q{decoded}q")];
        for html in [
            format!("<p>q&{name}q</p>"),
            format!("<title>q&{name}q</title>"),
        ] {
            let want = oracle_counts(&[&html], &ws, true, false);
            for cut in [html.len() / 2, 4, 5, 9] {
                let pieces = [&html[..cut], &html[cut..]];
                assert_eq!(
                    scanner_counts(&pieces, &ws, true, false),
                    want,
                    "{html:?} cut at {cut}"
                );
            }
            assert_eq!(scanner_counts(&[&html], &ws, true, false), want, "{html:?}");
            // The test is about decoding: a full name's text is the decoded word.
            if name.ends_with(';') && html.starts_with("<p>") {
                assert_eq!(want, vec![1], "{html:?}");
            }
        }
    }
}

/// Every `*.html` file under `dir`, sorted.
pub(super) fn html_files(dir: &Path) -> Vec<PathBuf> {
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
