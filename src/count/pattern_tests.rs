//! Tests of the pattern matcher of the **count** step (submit → queue → fetch → **count** →
//! NSQ → DB → poll): the oracle is `regex::Regex` over each whole block, with the
//! whole-word rule applied the same way (a rejected match consumes its first char).

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::count::matcher::is_word_char;
use crate::count::{BodyCounter, CountOptions, Scope, text_stream_html5ever};

/// What `regex` finds in the blocks of `stream` (split at `\0`), whole-word filtered.
fn oracle(pattern: &str, case_sensitive: bool, whole_word: bool, stream: &str) -> u64 {
    let re = regex::RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .build()
        .expect("oracle regex");
    let mut n = 0;
    for block in stream.split('\0') {
        let mut p = 0;
        while p <= block.len() {
            let Some(m) = re.find_at(block, p) else {
                break;
            };
            assert!(!m.is_empty(), "validated patterns never match empty");
            if !whole_word {
                n += 1;
                p = m.end();
                continue;
            }
            let before = block[..m.start()]
                .chars()
                .next_back()
                .is_some_and(is_word_char);
            let after = block[m.end()..].chars().next().is_some_and(is_word_char);
            if before || after {
                p = m.start() + block[m.start()..].chars().next().map_or(1, char::len_utf8);
            } else {
                n += 1;
                p = m.end();
            }
        }
    }
    n
}

/// The streaming count of `stream` (blocks split at `\0`) fed in `pieces` (byte cuts,
/// moved to char boundaries).
fn streamed(
    patterns: &[String],
    case_sensitive: bool,
    whole_word: bool,
    stream: &str,
    cuts: &[usize],
) -> Vec<u64> {
    let mut set = PatternSet::new(patterns, case_sensitive, whole_word);
    for (i, block) in stream.split('\0').enumerate() {
        if i > 0 {
            set.push_separator();
        }
        let mut prev = 0;
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| floor_boundary(block, c % (block.len() + 1)))
            .collect();
        points.sort_unstable();
        for c in points.into_iter().chain([block.len()]) {
            if c > prev {
                set.push_str(&block[prev..c]);
                prev = c;
            }
        }
    }
    set.finish()
}

fn one(pattern: &str, cs: bool, whole: bool, stream: &str, cuts: &[usize]) -> u64 {
    validate_patterns(&[pattern.to_owned()], &[], cs).expect("valid pattern");
    streamed(&[pattern.to_owned()], cs, whole, stream, cuts)[0]
}

#[test]
fn counts_like_find_iter() {
    let text = "Python 3.11, python3, py2 and PY — pythonic py3.12x";
    for (cs, whole) in [(false, false), (false, true), (true, false), (true, true)] {
        for p in [
            r"py(thon)?\d*",
            r"py(thon)?3\.\d+",
            r"\d+",
            r"[a-z]+ic",
            r"\w+",
        ] {
            for cuts in [&[][..], &[1, 7, 8, 20], &[3, 4, 5, 6, 30, 31, 32]] {
                assert_eq!(
                    one(p, cs, whole, text, cuts),
                    oracle(p, cs, whole, text),
                    "{p:?} cs={cs} whole={whole} cuts={cuts:?}"
                );
            }
        }
    }
}

#[test]
fn whole_word_rejects_a_match_rather_than_shortening_it() {
    // `py3` in `py3x` is the leftmost-first match and touches `x`: rejected, and the
    // search goes on at `y`, never trying the shorter `py`.
    assert_eq!(one(r"py\d*", false, true, "py3x py3", &[]), 1);
    assert_eq!(one(r"py\d*", false, false, "py3x py3", &[]), 2);
    // Case option = `(?i)`.
    assert_eq!(one("python", false, true, "PYTHON Python python", &[2]), 3);
    assert_eq!(one("python", true, true, "PYTHON Python python", &[2]), 1);
}

#[test]
fn no_match_spans_a_block_boundary_and_anchors_are_block_edges() {
    let stream = "py\0thon python\0pyth";
    assert_eq!(one("python", false, false, stream, &[1]), 1);
    assert_eq!(one("^py", false, false, stream, &[]), 2);
    assert_eq!(one("th$", false, false, stream, &[]), 1);
    assert_eq!(
        one("^py", false, false, stream, &[]),
        oracle("^py", false, false, stream)
    );
}

#[test]
fn a_long_match_across_many_pieces_counts_once() {
    // Longer than the test window is not needed for exactness below half of it.
    let digits = "7".repeat(WINDOW / 2 - 10);
    let text = format!("x py{digits} y py3");
    let cuts: Vec<usize> = (0..text.len()).step_by(7).collect();
    assert_eq!(one(r"py\d*", false, true, &text, &cuts), 2);
    assert_eq!(one(r"py\d*", false, false, &text, &cuts), 2);
}

#[test]
fn memory_stays_bounded_without_matches() {
    let re = compiled("a[^x]*b", true).expect("compiles");
    let mut m = PatternMatcher::new(Some(re), true);
    let piece = "a".repeat(100);
    for _ in 0..1000 {
        m.push_str(&piece);
        assert!(m.buf.len() <= 2 * WINDOW + piece.len(), "{}", m.buf.len());
    }
    let mut m = PatternMatcher::new(compiled("python", false).ok(), false);
    for _ in 0..1000 {
        m.push_str(&piece);
        assert!(m.buf.len() <= 2 * piece.len() + 8, "{}", m.buf.len());
    }
}

#[test]
fn refusals_say_why() {
    let refused = |p: &str| validate_patterns(&[p.to_owned()], &[], false).unwrap_err();
    assert!(refused("a*").contains("empty string"), "{}", refused("a*"));
    assert!(refused("(?:)").contains("empty string"));
    assert!(
        refused("a{100000}{100000}").contains("limit"),
        "{}",
        refused("a{100000}{100000}")
    );
    assert!(
        refused(r"\w{200}").contains("limit"),
        "{}",
        refused(r"\w{200}")
    );
    assert!(
        refused("py(thon").contains("unclosed group"),
        "{}",
        refused("py(thon")
    );
    assert!(refused(r"\bpy").contains("word boundaries"));
    let deep = format!("{}a{}", "(".repeat(300), ")".repeat(300));
    assert!(refused(&deep).contains("nest"), "{}", refused(&deep));
    let long = "a".repeat(MAX_PATTERN_CHARS + 1);
    assert!(refused(&long).contains("at most"));
    let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("p{i}")).collect();
    assert!(
        validate_patterns(&many, &[], false)
            .unwrap_err()
            .contains("at most 20")
    );
    let words = vec!["python".to_owned()];
    assert!(
        validate_patterns(&words, &words, false)
            .unwrap_err()
            .contains("also a word")
    );
    assert!(validate_patterns(&["a+".into(), "a+".into()], &[], false).is_err());
    assert_eq!(
        validate_patterns(
            &[r"py(thon)?\d*".into(), "(?-u:\\b)x+".into()],
            &words,
            true
        ),
        Ok(())
    );
}

/// Pattern syntax pieces the generator combines (never a Unicode `\b`, refused).
fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("py".to_owned()),
        Just("é".to_owned()),
        Just("É".to_owned()),
        Just(" ".to_owned()),
        Just(r"\d".to_owned()),
        Just(r"\w".to_owned()),
        Just(r"\W".to_owned()),
        Just("[a-c]".to_owned()),
        Just("[^a ]".to_owned()),
        Just(".".to_owned()),
        Just("^".to_owned()),
        Just("$".to_owned()),
        Just(r"\.".to_owned()),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("(?:{a}|{b})")),
            inner.clone().prop_map(|a| format!("(?:{a})+")),
            inner.clone().prop_map(|a| format!("(?:{a})*")),
            inner.clone().prop_map(|a| format!("(?:{a})?")),
            inner.clone().prop_map(|a| format!("(?:{a}){{1,3}}")),
            inner.prop_map(|a| format!("(?:{a})+?")),
        ]
    })
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('a'),
            Just('b'),
            Just('c'),
            Just('p'),
            Just('y'),
            Just('P'),
            Just('Y'),
            Just('3'),
            Just('_'),
            Just(' '),
            Just('.'),
            Just('é'),
            Just('É'),
            Just('ß'),
            Just('\0'),
        ],
        0..60,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]
    #[test]
    fn streaming_equals_regex_find_iter(
        p in pattern(),
        t in text(),
        cuts in prop::collection::vec(0usize..80, 0..8),
        cs in any::<bool>(),
        whole in any::<bool>(),
    ) {
        // A pattern that can match the empty string is refused: make it need one char.
        let p = if validate_patterns(std::slice::from_ref(&p), &[], cs).is_ok() {
            p
        } else {
            format!("(?:{p})[aé3]")
        };
        prop_assume!(validate_patterns(std::slice::from_ref(&p), &[], cs).is_ok());
        let got = streamed(std::slice::from_ref(&p), cs, whole, &t, &cuts)[0];
        prop_assert_eq!(got, oracle(&p, cs, whole, &t), "pattern {:?} text {:?}", p, t);
    }
}

/// The corpus check of the README test command (see `scanner_equals_html5ever_on_corpus`):
/// for every page, `py(thon)?\d*` and `\d+\.\d+` counted by the production path (bytes in
/// 16 KiB chunks through `BodyCounter::for_options`, scanner and pattern DFAs) equal
/// `regex` over the text html5ever extracts; in the raw scope, `regex` over the page.
#[test]
fn patterns_equal_regex_on_corpus() {
    let Some(dir) = std::env::var_os("WORDTALLY_CORPUS") else {
        println!("pattern corpus check NOT run: set WORDTALLY_CORPUS (see the README)");
        return;
    };
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(&dir).to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("corpus dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty());
    let patterns = vec![r"py(thon)?\d*".to_owned(), r"\d+\.\d+".to_owned()];
    let (mut pages, mut total) = (0, 0);
    for path in &files {
        let body = std::fs::read(path).expect("read page");
        let (text, _, _) = encoding_rs::UTF_8.decode(&body);
        let stream = text_stream_html5ever(&text);
        for scope in [Scope::Text, Scope::Raw] {
            for (cs, whole) in [(false, true), (true, false)] {
                let o = CountOptions {
                    case_sensitive: cs,
                    whole_word: whole,
                    scope,
                    patterns: patterns.clone(),
                    ..CountOptions::default()
                };
                let mut c = BodyCounter::for_options(&o, Some("text/html; charset=utf-8"));
                for part in body.chunks(16 * 1024) {
                    c.feed(part);
                }
                let got = c.finish().counts;
                let hay: &str = if scope == Scope::Text { &stream } else { &text };
                for (i, p) in patterns.iter().enumerate() {
                    let want = oracle(p, cs, whole, hay);
                    assert_eq!(
                        got[1 + i],
                        want,
                        "{path:?} {p:?} {scope} cs={cs} whole={whole}"
                    );
                    total += want;
                }
            }
        }
        pages += 1;
    }
    println!("pattern corpus check: {pages} pages, {total} matches: streaming == regex");
}
