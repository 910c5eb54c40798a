//! Tests of the **count** step (submit → queue → fetch → **count** → NSQ → DB → poll)
//! through its public API: options, text extraction rules, charsets and streaming.

use super::*;
use encoding_rs::{UTF_8, WINDOWS_1251};

fn opts(word: &str, case_sensitive: bool, whole_word: bool, scope: Scope) -> CountOptions {
    CountOptions {
        word: word.to_owned(),
        case_sensitive,
        whole_word,
        scope,
        ..CountOptions::default()
    }
}

/// Default options (whole word, any case, text scope) for `word`.
fn w(word: &str) -> CountOptions {
    CountOptions {
        word: word.to_owned(),
        ..CountOptions::default()
    }
}

fn html(o: &CountOptions, text: &str) -> u64 {
    count_text(o, true, text)
}

fn body(o: &CountOptions, content_type: Option<&str>, bytes: &[u8]) -> CountSummary {
    let mut c = BodyCounter::new(o, content_type);
    c.feed(bytes);
    c.finish()
}

fn body_chunked(
    o: &CountOptions,
    content_type: Option<&str>,
    bytes: &[u8],
    cuts: &[usize],
) -> CountSummary {
    let mut c = BodyCounter::new(o, content_type);
    let mut last = 0;
    for &cut in cuts {
        c.feed(&bytes[last..cut]);
        last = cut;
    }
    c.feed(&bytes[last..]);
    c.finish()
}

// ---- options -------------------------------------------------------------------------

#[test]
fn defaults() {
    let d = CountOptions::default();
    assert_eq!(d.word, "python");
    assert!(!d.case_sensitive);
    assert!(d.whole_word);
    assert_eq!(d.scope, Scope::Text);
    assert_eq!(Scope::default(), Scope::Text);
}

#[test]
fn validation() {
    assert_eq!(CountOptions::default().validate(), Ok(()));
    assert!(w("").validate().is_err());
    assert!(w("  \t ").validate().is_err());
    assert!(w("py\u{0}thon").validate().is_err());
    assert!(w("py\nthon").validate().is_err());
    assert!(w(&"é".repeat(100)).validate().is_ok());
    assert!(w(&"é".repeat(101)).validate().is_err());
    assert!(w("c++ ").validate().is_ok());
    let msg = w("").validate().unwrap_err();
    assert!(msg.starts_with("the word"), "{msg}");
}

#[test]
fn scope_strings_and_serde() {
    assert_eq!("text".parse::<Scope>(), Ok(Scope::Text));
    assert_eq!("RAW".parse::<Scope>(), Ok(Scope::Raw));
    assert_eq!(" Raw ".parse::<Scope>(), Ok(Scope::Raw));
    assert!("html".parse::<Scope>().unwrap_err().contains("\"html\""));
    assert_eq!(Scope::Raw.to_string(), "raw");
    assert_eq!(Scope::Text.as_str(), "text");
    let o = opts("Питон", true, false, Scope::Raw);
    let json = serde_json::to_string(&o).unwrap();
    assert_eq!(
        json,
        r#"{"word":"Питон","case_sensitive":true,"whole_word":false,"scope":"raw"}"#
    );
    assert_eq!(serde_json::from_str::<CountOptions>(&json).unwrap(), o);
    // Missing fields take the defaults.
    let partial: CountOptions = serde_json::from_str(r#"{"scope":"raw"}"#).unwrap();
    assert_eq!(
        partial,
        CountOptions {
            scope: Scope::Raw,
            ..CountOptions::default()
        }
    );
    assert!(serde_json::from_str::<CountOptions>(r#"{"scope":"Raw"}"#).is_err());
}

#[test]
fn charset_source_strings() {
    let all = [
        (CharsetSource::Bom, "bom"),
        (CharsetSource::Header, "header"),
        (CharsetSource::Meta, "meta"),
        (CharsetSource::Guess, "guess"),
    ];
    for (s, name) in all {
        assert_eq!(s.as_str(), name);
    }
}

// ---- text scope: what a reader sees --------------------------------------------------

#[test]
fn inline_tags_join_block_tags_split() {
    let o = CountOptions::default();
    assert_eq!(html(&o, "<b>py</b>thon"), 1);
    assert_eq!(html(&o, "p<span>y<em>th</em></span>on"), 1);
    assert_eq!(html(&o, "<a href=x>py</a>thon"), 1);
    assert_eq!(html(&o, "py<wbr>thon"), 1);
    assert_eq!(html(&o, "<p>py</p><p>thon</p>"), 0);
    assert_eq!(html(&o, "py<br>thon"), 0);
    assert_eq!(html(&o, "py<div>thon</div>"), 0);
    assert_eq!(html(&o, "<li>py</li><li>thon</li>"), 0);
    assert_eq!(html(&o, "<td>py<td>thon"), 0);
    assert_eq!(html(&o, "py<img src=a.png>thon"), 0);
    // A block tag also makes a word boundary for whole-word matching.
    assert_eq!(html(&o, "x<p>python</p>y"), 1);
    assert_eq!(html(&o, "x<b>python</b>y"), 0);
    // Comments are invisible and do not split.
    assert_eq!(html(&o, "py<!-- x -->thon"), 1);
    // Same input as raw text: markup is not stripped.
    assert_eq!(count_text(&o, false, "<b>py</b>thon"), 0);
}

#[test]
fn entities_are_decoded() {
    let o = CountOptions::default();
    assert_eq!(html(&o, "&#112;ython"), 1);
    assert_eq!(html(&o, "&#x50;YTHON"), 1);
    assert_eq!(html(&o, "&nbsp;python&nbsp;"), 1);
    assert_eq!(html(&o, "python&amp;java"), 1);
    assert_eq!(html(&o, "&lt;python&gt;"), 1);
    let o = w("fish & chips");
    assert_eq!(html(&o, "fish &amp; chips, fish &amp chips"), 2);
    // U+00AD stays in the text (it is not dropped), so it splits the word but, being no
    // letter, it is a word boundary.
    assert_eq!(html(&CountOptions::default(), "py&shy;thon"), 0);
    assert_eq!(html(&CountOptions::default(), "&shy;python&shy;"), 1);
    // Raw scope sees the entity, not the char.
    let raw = opts("python", false, true, Scope::Raw);
    assert_eq!(html(&raw, "&#112;ython"), 0);
    // An entity split across chunks.
    let mut c = BodyCounter::new(&CountOptions::default(), Some("text/html; charset=utf-8"));
    for part in ["&#1", "12;yt", "h", "on &a", "mp; x"] {
        c.feed(part.as_bytes());
    }
    assert_eq!(c.finish().count, 1);
}

#[test]
fn hidden_content_is_excluded() {
    let o = CountOptions::default();
    assert_eq!(html(&o, "<script>python</script>"), 0);
    assert_eq!(
        html(&o, "<script>if (a<b) { s = '<p>python</p>' }</script>"),
        0
    );
    assert_eq!(html(&o, "<style>.python { }</style>"), 0);
    assert_eq!(html(&o, "<noscript>python</noscript>"), 0);
    assert_eq!(html(&o, "<template>python</template>"), 0);
    assert_eq!(
        html(&o, "<template><template>x</template>python</template>"),
        0
    );
    assert_eq!(html(&o, "<!-- python -->"), 0);
    assert_eq!(html(&o, "<a title=\"python\" href='python'>x</a>"), 0);
    assert_eq!(html(&o, "<!DOCTYPE python>"), 0);
    // ...and counting resumes after each of them.
    let page = "<script>python</script>python<style>python</style>python\
                <noscript>python</noscript>python<template>python</template>python\
                <!--python--> python<img alt=python>python";
    assert_eq!(html(&o, page), 6);
    // Raw scope counts all of them.
    assert_eq!(html(&opts("python", false, true, Scope::Raw), page), 12);
}

#[test]
fn title_and_textarea_are_counted() {
    let o = CountOptions::default();
    assert_eq!(html(&o, "<title>Python &amp; you</title>"), 1);
    assert_eq!(html(&o, "<textarea>python</textarea>"), 1);
}

#[test]
fn unicode_words_and_case() {
    let text = "<p>Питон, питон и ПИТОН; питоны</p>";
    assert_eq!(html(&w("питон"), text), 3);
    assert_eq!(html(&opts("питон", true, true, Scope::Text), text), 1);
    assert_eq!(html(&opts("питон", false, false, Scope::Text), text), 4);
    // German: lowercase is not case folding, so ß never equals "ss"; capital ẞ lowercases
    // to ß.
    let text = "Straße STRASSE STRAẞE straße";
    assert_eq!(html(&w("straße"), text), 3);
    assert_eq!(html(&w("strasse"), text), 1);
    assert_eq!(html(&opts("Straße", true, true, Scope::Text), text), 1);
    // Turkish dotted İ lowercases per char to "i" + U+0307 (combining dot), so the
    // dotless-i spelling does not match it, the İ spelling matches both spellings...
    let text = "İstanbul ISTANBUL istanbul";
    assert_eq!(html(&w("istanbul"), text), 2);
    assert_eq!(html(&w("İstanbul"), text), 1);
    assert_eq!(html(&w("İstanbul"), "İSTANBUL i\u{307}stanbul"), 2);
    // ...and, since U+0307 is not a letter, a word right after İ counts as whole in
    // case-insensitive mode (the boundary test looks at the lowercased text) but not in
    // case-sensitive mode.
    assert_eq!(html(&w("python"), "İpython"), 1);
    assert_eq!(html(&opts("python", true, true, Scope::Text), "İpython"), 0);
    // Greek: per-char lowercase maps Σ to σ everywhere, never to final ς.
    assert_eq!(html(&w("οδοσ"), "ΟΔΟΣ"), 1);
    assert_eq!(html(&w("οδος"), "ΟΔΟΣ"), 0);
    // Non-Latin letters and digits are word chars.
    assert_eq!(html(&w("python"), "питонpython python٣ 日python"), 0);
}

#[test]
fn whole_word_versus_substring() {
    let text = "python pythonic _python python3 python. (python) Python, cpython python_";
    assert_eq!(html(&CountOptions::default(), text), 4);
    assert_eq!(html(&opts("python", false, false, Scope::Text), text), 9);
    assert_eq!(html(&opts("python", true, false, Scope::Text), text), 8);
    assert_eq!(html(&opts("python", true, true, Scope::Text), text), 3);
}

// ---- raw scope -----------------------------------------------------------------------

#[test]
fn raw_scope_is_python_str_count() {
    let exact = |word: &str| opts(word, true, false, Scope::Raw);
    // Hand-checked against CPython's str.count.
    assert_eq!(html(&exact("aa"), "aaaa"), 2); // "aaaa".count("aa") == 2
    assert_eq!(html(&exact("aa"), "aaaaa"), 2); // == 2
    assert_eq!(html(&exact("aba"), "abababa"), 2); // == 2
    assert_eq!(html(&exact("p"), "<p>python</p>"), 3); // == 3
    assert_eq!(html(&exact("b"), "<b>py</b>thon"), 2); // == 2
    assert_eq!(html(&exact("python"), "<!--python--><b>Python</b>"), 1); // == 1
    assert_eq!(html(&exact("é"), "éeé&eacute;"), 2); // == 2
    // Whole-word and case options apply in raw scope too.
    let page = r#"<a href="python.html">Python</a> pythonic"#;
    assert_eq!(html(&opts("python", false, true, Scope::Raw), page), 2);
    assert_eq!(html(&opts("python", true, true, Scope::Raw), page), 1);
    assert_eq!(html(&opts("python", false, false, Scope::Raw), page), 3);
    assert_eq!(html(&CountOptions::default(), page), 1);
}

#[test]
fn non_html_content_is_counted_as_is() {
    let text = b"<b>py</b>thon <p>python</p> <script>python</script>";
    let o = CountOptions::default();
    assert_eq!(body(&o, Some("text/html"), text).count, 2);
    assert_eq!(body(&o, None, text).count, 2);
    assert_eq!(body(&o, Some("text/plain; charset=utf-8"), text).count, 2);
    assert_eq!(body(&o, Some("application/json"), text).count, 2);
    // Distinguish: "<b>py</b>thon" joins only in HTML; the script text counts only as text.
    let text = b"<b>py</b>thon <script>python</script>";
    assert_eq!(body(&o, Some("text/html"), text).count, 1);
    assert_eq!(body(&o, Some("text/plain"), text).count, 1);
    let text = b"<script>python</script>";
    assert_eq!(body(&o, Some("text/html"), text).count, 0);
    assert_eq!(body(&o, Some("text/plain"), text).count, 1);
    assert_eq!(
        body(&o, Some("application/json"), b"{\"python\": 1}").count,
        1
    );
    // A <meta> in a text/plain body is just text: not used for the charset.
    let mut bytes = b"<meta charset=windows-1251>".to_vec();
    bytes.extend_from_slice(&WINDOWS_1251.encode("Питон").0);
    let s = body(&w("питон"), Some("text/plain"), &bytes);
    assert_eq!(s.charset_source, CharsetSource::Guess);
}

// ---- charsets ------------------------------------------------------------------------

fn cp1251(s: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = WINDOWS_1251.encode(s);
    assert!(!unmappable);
    bytes.into_owned()
}

#[test]
fn windows_1251_via_meta() {
    let bytes = cp1251(
        "<html><head><meta charset=\"windows-1251\"><title>Питон</title></head>\
         <body><p>питон и ПИТОН</p></body></html>",
    );
    let s = body(&w("питон"), None, &bytes);
    assert_eq!(
        s,
        CountSummary {
            count: 3,
            counts: vec![3],
            charset: "windows-1251",
            charset_source: CharsetSource::Meta,
            links: None,
        }
    );
    let pragma =
        cp1251("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=cp1251\">Питон");
    let s = body(&w("питон"), Some("text/html"), &pragma);
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "windows-1251", CharsetSource::Meta)
    );
}

#[test]
fn windows_1251_via_header() {
    let bytes = cp1251("<p>Питон питон</p>");
    let s = body(&w("питон"), Some("text/html; charset=windows-1251"), &bytes);
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (2, "windows-1251", CharsetSource::Header)
    );
    // The header wins over a contradicting meta.
    let bytes = cp1251("<meta charset=koi8-r><p>Питон питон</p>");
    let s = body(
        &w("питон"),
        Some("text/html; charset=\"Windows-1251\""),
        &bytes,
    );
    assert_eq!((s.count, s.charset_source), (2, CharsetSource::Header));
}

#[test]
fn bom_wins() {
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice("python Питон".as_bytes());
    let s = body(&w("питон"), Some("text/html; charset=windows-1251"), &bytes);
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "UTF-8", CharsetSource::Bom)
    );
    // The BOM is not text: raw scope str.count of the decoded body without it.
    let s = body(&opts("\u{feff}", true, false, Scope::Raw), None, &bytes);
    assert_eq!(s.count, 0);

    let mut le = vec![0xFF, 0xFE];
    for u in "<p>Питон python</p><b>py</b>thon".encode_utf16() {
        le.extend_from_slice(&u.to_le_bytes());
    }
    let s = body(&w("питон"), None, &le);
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "UTF-16LE", CharsetSource::Bom)
    );
    assert_eq!(body(&CountOptions::default(), None, &le).count, 2);
    // Byte-by-byte feeding splits every UTF-16 code unit.
    let cuts: Vec<usize> = (1..le.len()).collect();
    assert_eq!(
        body_chunked(&CountOptions::default(), None, &le, &cuts).count,
        2
    );
}

#[test]
fn bogus_labels_are_ignored() {
    let bytes = cp1251("<meta charset=windows-1251><p>Питон</p>");
    let s = body(
        &w("питон"),
        Some("text/html; charset=x-no-such-thing"),
        &bytes,
    );
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "windows-1251", CharsetSource::Meta)
    );
    let bytes = "<meta charset=bogus-9><p>Питон</p>".as_bytes();
    let s = body(&w("питон"), Some("text/html; charset=bogus-8"), bytes);
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "UTF-8", CharsetSource::Guess)
    );
}

#[test]
fn guessing_and_default() {
    // Undeclared UTF-8 is guessed.
    let s = body(&w("питон"), None, "<p>Питон — это язык</p>".as_bytes());
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "UTF-8", CharsetSource::Guess)
    );
    // Undeclared Cyrillic in windows-1251 is guessed as such.
    let s = body(
        &w("питон"),
        None,
        &cp1251("<p>Питон — это язык программирования</p>"),
    );
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (1, "windows-1251", CharsetSource::Guess)
    );
    // An empty body defaults to windows-1252.
    let s = body(&CountOptions::default(), None, b"");
    assert_eq!(
        (s.count, s.charset, s.charset_source),
        (0, "windows-1252", CharsetSource::Guess)
    );
    // A meta beyond the first 1024 bytes is not looked at.
    let mut late = " ".repeat(1100);
    late.push_str("<meta charset=koi8-r>python");
    let s = body(&CountOptions::default(), None, late.as_bytes());
    assert_eq!((s.count, s.charset_source), (1, CharsetSource::Guess));
    assert_ne!(s.charset, "KOI8-R");
}

#[test]
fn meta_split_across_chunks_near_sniff_limit() {
    let mut page = cp1251("<meta charset=windows-1251>");
    page.extend(std::iter::repeat_n(b' ', 2000));
    page.extend(cp1251("<p>Питон</p>"));
    for cuts in [
        vec![5],
        vec![1023],
        vec![1024],
        vec![1025],
        vec![1, 2, 3, 1500],
    ] {
        let s = body_chunked(&w("питон"), None, &page, &cuts);
        assert_eq!((s.count, s.charset), (1, "windows-1251"), "{cuts:?}");
    }
}

// ---- streaming -----------------------------------------------------------------------

#[test]
fn byte_by_byte_equals_whole() {
    let page = "<html><meta charset=utf-8><title>Python</title><script>python</script>\
                <p>Питон &#112;ython <b>py</b>thon py<!-- -->thon python3 pythonic</p>\
                <template>python</template><a title=python>x</a> PYTHON";
    let bytes = page.as_bytes();
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    for o in [
        CountOptions::default(),
        opts("python", true, false, Scope::Text),
        opts("python", false, false, Scope::Raw),
        opts("Питон", true, true, Scope::Raw),
    ] {
        let whole = body(&o, None, bytes);
        let split = body_chunked(&o, None, bytes, &cuts);
        assert_eq!(whole, split, "{o:?}");
    }
    assert_eq!(body(&CountOptions::default(), None, bytes).count, 5);
}

#[test]
fn large_body_in_small_chunks() {
    let unit = "<div>Python <b>py</b>thon <script>python</script> pythonic</div>\n";
    let o = CountOptions::default();
    let mut c = BodyCounter::new(&o, Some("text/html; charset=utf-8"));
    let n = 50_000;
    let data = unit.repeat(100);
    for _ in 0..n / 100 {
        for piece in data.as_bytes().chunks(997) {
            c.feed(piece);
        }
    }
    assert_eq!(c.finish().count, 2 * n as u64);
}

#[test]
fn counter_is_send() {
    let mut c = BodyCounter::new(&CountOptions::default(), None);
    c.feed(b"<p>pyth");
    let handle = std::thread::spawn(move || {
        c.feed(b"on</p>");
        c.finish().count
    });
    assert_eq!(handle.join().unwrap(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    #[test]
    fn chunking_does_not_change_the_count(
        pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "python", "Python", "PYTHON", "pyth", "on", "py", "thon", "Питон", "питон",
                " ", "_", "3", ".", "é", "日本", "ß", "İ", "\n", "<b>", "</b>", "<p>", "</p>",
                "<br/>", "<span class='python'>", "</span>", "<script>", "</script>",
                "<style>", "</style>", "<template>", "</template>", "<title>", "</title>",
                "<!--", "-->", "&amp;", "&#112;", "&#x50;", "&lt;", "&nbsp;", "&", "<", ">",
                "\"", "'", "=", "/",
            ]),
            0..120,
        ),
        cut_points in proptest::collection::vec(0usize..1500, 0..12),
        word in proptest::sample::select(vec!["python", "Питон", "py"]),
        content_type in proptest::sample::select(vec![
            None, Some("text/html; charset=utf-8"), Some("text/plain"),
        ]),
    ) {
        let page = pieces.concat();
        let bytes = page.as_bytes();
        let mut cuts: Vec<usize> = cut_points.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        for scope in [Scope::Text, Scope::Raw] {
            for case_sensitive in [false, true] {
                for whole_word in [false, true] {
                    let o = opts(word, case_sensitive, whole_word, scope);
                    let whole = body(&o, content_type, bytes);
                    let split = body_chunked(&o, content_type, bytes, &cuts);
                    proptest::prop_assert_eq!(&whole, &split);
                    if content_type.is_some() && (whole.charset == UTF_8.name() || page.is_ascii()) {
                        // Decoding was lossless, so counting the string directly must agree.
                        let direct = count_text(&o, content_type != Some("text/plain"), &page);
                        proptest::prop_assert_eq!(whole.count, direct);
                    }
                    if scope == Scope::Raw && case_sensitive && !whole_word
                        && whole.charset == UTF_8.name()
                    {
                        proptest::prop_assert_eq!(whole.count, page.matches(word).count() as u64);
                    }
                }
            }
        }
    }
}

proptest::proptest! {
    /// The in-place UTF-8 path (std validation, carried incomplete sequences) replaces
    /// malformed input exactly as encoding_rs does over the whole body, for any chunking.
    #[test]
    fn utf8_fast_path_equals_encoding_rs(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                &b"a"[..], b"py", b"thon ", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x90\x8d",
                b"\xc3", b"\xe2\x82", b"\xf0\x9f", b"\x80", b"\xff", b"\xed\xa0\x80", b"\xe0\x80",
                b"\xf4\x90\x80\x80", b"\xc0\xaf", b"<p>", b"&amp;", b"\xe2\x84\xaa", b"\xe2\x84",
                b"\xaa", b"\xc4\xb0", b"\xc4", b"\xb0", b"K", b"PY", b"_", b" ", b"k",
            ]),
            0..40,
        ),
        cuts in proptest::collection::vec(0usize..120, 0..20),
    ) {
        let mut bytes = Vec::new();
        for p in &parts {
            bytes.extend_from_slice(p);
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let (text, _) = UTF_8.decode_without_bom_handling(&bytes);
        for word in ["\u{FFFD}", "é", "python", "\u{FFFD}\u{FFFD}", "€", "k", "i", "py", "ki"] {
            for scope in [Scope::Raw, Scope::Text] {
                for (case_sensitive, whole_word) in [(true, false), (false, false), (false, true), (true, true)] {
                    let o = opts(word, case_sensitive, whole_word, scope);
                    // The header settles the charset at once, so the cuts reach the decoder
                    // (in the raw scope, a byte-exact word takes them unvalidated).
                    let got = body_chunked(&o, Some("text/html; charset=utf-8"), &bytes, &cuts);
                    proptest::prop_assert_eq!(got.charset, "UTF-8");
                    let want = count_text(&o, true, &text);
                    proptest::prop_assert_eq!(got.count, want, "{:?} {:?}", word, o);
                    if scope == Scope::Raw {
                        let reference =
                            super::matcher::tests::reference(&text, word, case_sensitive, whole_word);
                        proptest::prop_assert_eq!(got.count, reference, "{:?} {:?}", word, o);
                    }
                }
            }
        }
    }
}
