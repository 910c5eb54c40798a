//! Differential tests of link collection in the **count** step (submit → queue → fetch →
//! **count** → NSQ → DB → poll): the scanner's links (hrefs, base, nofollow) must be what
//! html5ever's tokenizer gives for the same page, on generated HTML cut into pieces at
//! every boundary and on the documentation corpus; and collecting links must not change
//! any count.
//!
//! The oracle is independent of the production rules: html5ever's tokenizer (driven by
//! the same sink policy as the text oracle, `html.rs`) records every start tag with its
//! decoded attributes, and [`reference`] applies the link rules to that list in a few
//! plain lines.

use std::path::Path;

use super::html::{HtmlText, StartTag};
use super::links::LinkCollector;
use super::scanner::Scanner;
use super::words::Counter;
use super::*;

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| (*w).to_owned()).collect()
}

/// The link rules, applied to html5ever's start tags (see `links.rs` for the rules).
fn reference(tags: &[StartTag], o: LinkOptions) -> PageLinks {
    let attr = |attrs: &[(String, String)], n: &str| {
        attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    };
    let tokens_of = |v: &str, comma: bool| -> Vec<String> {
        v.split(|c: char| c.is_ascii_whitespace() || (comma && c == ','))
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let nofollow_page = tags.iter().any(|(n, a)| {
        n == "meta"
            && attr(a, "name").is_some_and(|v| v.eq_ignore_ascii_case("robots"))
            && attr(a, "content").is_some_and(|c| {
                tokens_of(&c, true)
                    .iter()
                    .any(|t| t == "nofollow" || t == "none")
            })
    });
    let base = tags
        .iter()
        .find(|(n, a)| n == "base" && attr(a, "href").is_some())
        .and_then(|(_, a)| attr(a, "href"))
        .filter(|h| h.len() <= o.max_href_bytes);
    let mut out = PageLinks {
        base,
        hrefs: Vec::new(),
        nofollow_page,
        dropped: 0,
    };
    if o.obey_nofollow && nofollow_page {
        return out;
    }
    for (n, a) in tags {
        if n != "a" && n != "area" {
            continue;
        }
        let Some(href) = attr(a, "href") else {
            continue;
        };
        let rel_nofollow =
            attr(a, "rel").is_some_and(|r| tokens_of(&r, false).iter().any(|t| t == "nofollow"));
        if o.obey_nofollow && rel_nofollow {
            continue;
        }
        if href.len() > o.max_href_bytes || out.hrefs.len() >= o.max_links {
            out.dropped += 1;
        } else {
            out.hrefs.push(href);
        }
    }
    out
}

/// Oracle: counts and links from html5ever's tokenizer, the text fed in `pieces`.
fn oracle(pieces: &[&str], ws: &[String], o: LinkOptions) -> (Vec<u64>, PageLinks) {
    let mut h = HtmlText::recording_tags(Counter::new(ws, false, true));
    for p in pieces {
        h.push_str(p);
    }
    let (counts, tags) = h.finish_with_tags();
    (counts, reference(&tags, o))
}

/// Production: the scanner with links, the text fed in `pieces`.
fn scanner(pieces: &[&str], ws: &[String], o: LinkOptions, mute: bool) -> (Vec<u64>, PageLinks) {
    let mut s = Scanner::with_links(Counter::new(ws, false, true), LinkCollector::new(o), mute);
    for p in pieces {
        s.push_str(p);
    }
    let (counts, links) = s.finish_all();
    (counts, links.expect("links were asked for"))
}

/// Link-heavy fragments: hrefs with entities (the attribute legacy rule), every kind of
/// quote and spacing, CR/LF/NUL inside values, duplicates, rel and meta variants, bases,
/// and fake links inside script, style, comments, RCDATA and end tags.
const LINK_FRAGMENTS: &[&str] = &[
    "<a href=x>",
    "<a href='a b'>",
    "<a href=\"q&amp;r\">",
    "<A HREF=\"/Up\">",
    "<aRea hRef=/m>",
    "<a href>",
    "<a href=>",
    "<a href=\"\" >",
    "<a href = \"sp\" >",
    "<a rel=nofollow href=n>",
    "<a href=n rel=\"NoFollow ugc\">",
    "<a rel='x nofollow'",
    " href='p'>",
    "<a rel=nofollowx href=nx>",
    "<a rel=\"\tnofollow\n\" href=nt>",
    "<a href=1 href=2>",
    "<a href=d rel=a rel=nofollow>",
    "<base href=/b/>",
    "<base target=x>",
    "<base href='/c/'>",
    "<base href=\"/a-much-longer-base-than-twenty/\">",
    "<meta name=robots content=nofollow>",
    "<meta name=\"ROBOTS\" content=\"noindex, none\">",
    "<meta content=NoFollow name=Robots>",
    "<meta name=robots content='index,follow'>",
    "<meta name=robots content='noindex,nofollow'>",
    "<meta name=googlebot content=nofollow>",
    "<meta name=robots>",
    "<a href=\"&copy=1&copy;&copy&not&notin;&#x41;&#65&#\">",
    "<a href='?a=1&amp=2&ampx&amp;y&amp'>",
    "<a href=x&lt;y&gt>",
    "<a href=&notit;&notin&noti=>",
    "<a href=\"&#x80;&#0;&#1114112;&#xD800;&#X;&#;&\">",
    "<a href=\"&CounterClockwiseContourIntegral;&CounterClockwiseContourIntegralx\">",
    "<a href=\"a\r\nb\rc\nd\r\">",
    "<a href=\"&#13;\n&#13;\r\n\">",
    "<a href='\r'>",
    "<a href=\"\0\">",
    "<a href=nul\0x>",
    "<a\nhref\n=\n'\n'\n>",
    "<a\r\nhref\r\n=\r\n\"v\"\r\n>",
    "<a href=a/>",
    "<a/href=s>",
    "<a href=\"x\"href=y>",
    "<a href=\"é€𝄞\">",
    "<a href='x>y'>",
    "<a href=\"it's\">",
    "<a href='say \"hi\"'>",
    "<a href=un\"quo'ted`=<>",
    "<a href=\"&amp\">",
    "<a href=\"&amp",
    "\">",
    "&",
    "'",
    "\"",
    "=",
    "\r",
    "</a href=end>",
    "<ab href=no>",
    "<abbr href=no>",
    "<link href=no rel=stylesheet>",
    "<script><a href=s></script>",
    "<script>document.write('<a href=sw>')</script>",
    "<!--<a href=c>-->",
    "<!-- <base href=/cb/> -->",
    "<style>a[href=x]{}</style>",
    "<textarea><a href=t></textarea>",
    "<title><a href=ti></title>",
    "<template><a href=tp></template>",
    "<svg><a href=sv></a></svg>",
    "<noscript><a href=ns></noscript>",
    "<a href=\"https://example.com/a?b=c&d=e#f\">",
    "<a href=\"javascript:void(0)\">",
    "<a href=\"mailto:x@y\">",
];

/// Links of the generated pages: mostly link fragments, the text scanner's fragments
/// (all the tokenizer's odd corners) mixed in.
fn html_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let frag = prop_oneof![
        3 => proptest::sample::select(LINK_FRAGMENTS).prop_map(str::to_owned),
        2 => proptest::sample::select(super::scanner_tests::FRAGMENTS).prop_map(str::to_owned),
    ];
    proptest::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

fn options_strategy() -> impl proptest::strategy::Strategy<Value = LinkOptions> {
    use proptest::prelude::*;
    (
        prop_oneof![Just(10_000usize), 0usize..6],
        prop_oneof![Just(2_048usize), 0usize..24],
        any::<bool>(),
    )
        .prop_map(|(max_links, max_href_bytes, obey_nofollow)| LinkOptions {
            max_links,
            max_href_bytes,
            obey_nofollow,
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    #[test]
    fn links_equal_html5ever_on_generated_html(
        html in html_strategy(),
        cuts in proptest::collection::vec(0usize..600, 0..12),
        o in options_strategy(),
    ) {
        let ws = words(&["python", "a", "x"]);
        let pieces = super::matcher::tests::split_at(&html, &cuts);
        let (want_counts, want) = oracle(&[&html], &ws, o);
        let (counts, got) = scanner(&pieces, &ws, o, false);
        proptest::prop_assert_eq!(&got, &want, "pieces={:?}", pieces);
        // Collecting links changes no count.
        proptest::prop_assert_eq!(&counts, &want_counts);
        // The raw scope's tags-only scanner finds the same links.
        let (_, raw) = scanner(&pieces, &ws, o, true);
        proptest::prop_assert_eq!(&raw, &want);
    }
}

/// Fixed cases, cut at every byte (every state at a chunk boundary).
#[test]
fn links_equal_html5ever_on_fixed_cases_at_every_cut() {
    let cases = [
        "<a href=\"?a=1&copy=2&amp;b&ampc&not;&notit\">x</a>",
        "<a href='&#x41;&#65&#&#x;&#128;'>",
        "<a href=\"a\r\nb\r\rc\"><a href='&#13;\n'>",
        "<a href=&amp&lt=>",
        "<meta name=Robots content=\"noindex , NOFOLLOW\"><a href=x>",
        "<a rel=\"ugc nofollow\" href=y><a href=z>",
        "<base href=/one/><base href=/two/><a href=three>",
        "<script><a href=s></script><!--<a href=c>--><a href=real>",
        "<a href=\"x\"href=y href=z>",
        "<a href=un&quot;q>",
        "<a href=\"\0&\0\">",
        "<a href='&CounterClockwiseContourIntegral;'>",
    ];
    let ws = words(&["python"]);
    for o in [
        LinkOptions::default(),
        LinkOptions {
            obey_nofollow: false,
            ..LinkOptions::default()
        },
        LinkOptions {
            max_links: 1,
            max_href_bytes: 4,
            obey_nofollow: true,
        },
    ] {
        for html in cases {
            let (_, want) = oracle(&[html], &ws, o);
            for cut in 0..=html.len() {
                if html.is_char_boundary(cut) {
                    let pieces = [&html[..cut], &html[cut..]];
                    assert_eq!(
                        scanner(&pieces, &ws, o, false).1,
                        want,
                        "{html:?} cut at {cut}"
                    );
                    assert_eq!(scanner(&pieces, &ws, o, true).1, want, "raw {html:?}");
                }
            }
        }
    }
}

/// The rules, one example each, through the public API.
#[test]
fn links_through_body_counter() {
    let page = "<html><head><base href='/docs/'><meta name=robots content=noindex></head>\
        <body><p>Python <a href=\"intro.html?a=1&amp;b=2\">python</a> \
        <a href=\"/x?q=1&copy=2\" rel=\"nofollow\">x</a> \
        <map><area href=\"m.html\"></map> <a name=anchor>no href</a>\
        <script>var s = '<a href=\"fake.html\">';</script><!-- <a href=\"c.html\"> -->\
        </body></html>";
    let run = |opts: &CountOptions, ct: Option<&str>, links: LinkOptions| {
        let mut c = BodyCounter::new_with_links(opts, ct, links);
        for part in page.as_bytes().chunks(7) {
            c.feed(part);
        }
        c.finish()
    };
    let text = CountOptions::default();
    let s = run(&text, Some("text/html"), LinkOptions::default());
    assert_eq!(s.count, 2);
    let l = s.links.expect("HTML page");
    assert_eq!(l.base.as_deref(), Some("/docs/"));
    assert_eq!(l.hrefs, ["intro.html?a=1&b=2", "m.html"]);
    assert!(!l.nofollow_page);
    // Not obeying nofollow: the rel=nofollow link is there, its legacy `&copy` kept.
    let all = LinkOptions {
        obey_nofollow: false,
        ..LinkOptions::default()
    };
    let l = run(&text, None, all).links.expect("HTML page");
    assert_eq!(l.hrefs, ["intro.html?a=1&b=2", "/x?q=1&copy=2", "m.html"]);
    // Raw scope: raw counts (markup included), the same links.
    let raw = CountOptions {
        scope: Scope::Raw,
        case_sensitive: true,
        whole_word: false,
        ..CountOptions::default()
    };
    let s = run(&raw, Some("text/html"), all);
    assert_eq!(s.count, page.matches("python").count() as u64);
    assert_eq!(s.links.expect("HTML page").hrefs.len(), 3);
    // Several words.
    let mut several = CountOptions::default();
    several.set_words(words(&["python", "href"]));
    let s = run(&several, Some("text/html"), all);
    assert_eq!(s.counts, [2, 1]);
    assert_eq!(s.links.expect("HTML page").hrefs.len(), 3);
    // Not HTML: no links. Not asked: no links.
    assert_eq!(run(&text, Some("text/plain"), all).links, None);
    let mut c = BodyCounter::new(&text, Some("text/html"));
    c.feed(page.as_bytes());
    assert_eq!(c.finish().links, None);
}

#[test]
fn nofollow_page_yields_no_links_when_obeyed() {
    let page = "<a href=a><META NAME=\"robots\" CONTENT=\"NONE\"><a href=b>";
    for (obey, want) in [(true, vec![]), (false, vec!["a", "b"])] {
        let o = LinkOptions {
            obey_nofollow: obey,
            ..LinkOptions::default()
        };
        let mut c = BodyCounter::new_with_links(&CountOptions::default(), None, o);
        c.feed(page.as_bytes());
        let l = c.finish().links.expect("HTML");
        assert!(l.nofollow_page);
        assert_eq!(l.hrefs, want);
    }
}

/// Memory stays bounded: a page of 100,000 links and one huge href keeps `max_links`
/// hrefs of at most `max_href_bytes` bytes.
#[test]
fn a_page_of_many_links_is_bounded() {
    let o = LinkOptions {
        max_links: 100,
        max_href_bytes: 50,
        obey_nofollow: true,
    };
    let mut c = BodyCounter::new_with_links(&CountOptions::default(), None, o);
    c.feed(b"<a href=\"");
    let long = vec![b'x'; 1 << 20];
    c.feed(&long);
    c.feed(b"\">");
    for i in 0..100_000 {
        c.feed(format!("<a href=/p{i}>").as_bytes());
    }
    let l = c.finish().links.expect("HTML");
    assert_eq!(l.hrefs.len(), 100);
    assert_eq!(l.hrefs[0], "/p0");
    assert_eq!(l.dropped, 100_000 - 100 + 1);
}

/// Every page of the corpus (`WORDTALLY_CORPUS`): the production path (bytes in 16 KiB
/// chunks through `BodyCounter::new_with_links`, text and raw scope) finds exactly the
/// links html5ever's tokenizer gives, and the same counts as without links.
#[test]
fn links_equal_html5ever_on_corpus() {
    let Some(dir) = std::env::var_os("WORDTALLY_CORPUS") else {
        println!(
            "corpus link check NOT run: set WORDTALLY_CORPUS=/usr/share/doc/python3.11/html \
             (apt-get install python3.11-doc)"
        );
        return;
    };
    let files = super::scanner_tests::html_files(Path::new(&dir));
    assert!(!files.is_empty(), "no .html files under {dir:?}");
    let ws = words(&["python"]);
    let (mut pages, mut links, mut with_base) = (0usize, 0usize, 0usize);
    for path in &files {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
        let (text, _, _) = encoding_rs::UTF_8.decode(&body);
        for o in [
            LinkOptions::default(),
            LinkOptions {
                max_links: 50,
                max_href_bytes: 40,
                obey_nofollow: false,
            },
        ] {
            let (_, want) = oracle(&[&text], &ws, o);
            for scope in [Scope::Text, Scope::Raw] {
                let opts = CountOptions {
                    scope,
                    ..CountOptions::default()
                };
                let mut c = BodyCounter::new_with_links(&opts, Some("text/html"), o);
                let mut plain = BodyCounter::new(&opts, Some("text/html"));
                for part in body.chunks(16 * 1024) {
                    c.feed(part);
                    plain.feed(part);
                }
                let s = c.finish();
                assert_eq!(s.links.as_ref(), Some(&want), "{path:?} {scope}");
                assert_eq!(s.counts, plain.finish().counts, "{path:?} {scope}");
            }
            if o == LinkOptions::default() {
                links += want.hrefs.len();
                with_base += usize::from(want.base.is_some());
            }
        }
        pages += 1;
    }
    println!(
        "corpus link check: {pages} pages, {links} links, {with_base} with a base: scanner == html5ever"
    );
}
