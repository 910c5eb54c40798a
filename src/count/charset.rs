//! Charset detection of the **count** step (submit → queue → fetch → **count** → NSQ → DB →
//! poll): decides how the fetched bytes are decoded before anything is counted.
//!
//! Order (first that yields a known `encoding_rs` label wins): byte order mark, HTTP
//! `Content-Type` `charset` parameter, `<meta charset>` / `<meta http-equiv=content-type>`
//! in the first [`SNIFF_LEN`] bytes (HTML only, found with html5ever's tokenizer on that
//! prefix decoded as windows-1252), then a `chardetng` guess over the same prefix. Unknown
//! labels are ignored, falling through to the next source.

use std::cell::Cell;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_8, WINDOWS_1252, X_USER_DEFINED};
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use super::CharsetSource;
use super::html::raw_state_after;

/// How many leading bytes may be buffered to find a `<meta>` charset or guess one.
pub(crate) const SNIFF_LEN: usize = 1024;

/// What the `Content-Type` header tells the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContentType {
    /// `text/html`, `application/xhtml+xml`, or no (usable) header at all.
    pub(crate) is_html: bool,
    /// The `charset` parameter, if it is a label `encoding_rs` knows.
    pub(crate) charset: Option<&'static Encoding>,
}

/// Parses a raw `Content-Type` header value (missing or empty means HTML).
pub(crate) fn parse_content_type(value: Option<&str>) -> ContentType {
    let Some(value) = value else {
        return ContentType {
            is_html: true,
            charset: None,
        };
    };
    let mut parts = value.split(';');
    let mime = parts.next().unwrap_or("").trim();
    let is_html = mime.is_empty()
        || mime.eq_ignore_ascii_case("text/html")
        || mime.eq_ignore_ascii_case("application/xhtml+xml");
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .and_then(|(_, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Encoding::for_label(v.as_bytes())
        });
    ContentType { is_html, charset }
}

/// The chosen encoding, why, and how many leading bytes (a BOM) to skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Detected {
    pub(crate) encoding: &'static Encoding,
    pub(crate) source: CharsetSource,
    pub(crate) bom_len: usize,
}

/// Decides without the `<meta>`/guess steps when a BOM or a valid header charset settles
/// it; needs 3 bytes to rule out a BOM. `None` means "keep buffering".
pub(crate) fn detect_early(prefix: &[u8], ct: ContentType) -> Option<Detected> {
    if prefix.len() < 3 {
        return None;
    }
    detect_bom_or_header(prefix, ct)
}

fn detect_bom_or_header(prefix: &[u8], ct: ContentType) -> Option<Detected> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(prefix) {
        return Some(Detected {
            encoding,
            source: CharsetSource::Bom,
            bom_len,
        });
    }
    ct.charset.map(|encoding| Detected {
        encoding,
        source: CharsetSource::Header,
        bom_len: 0,
    })
}

/// Full decision on the buffered prefix (at most [`SNIFF_LEN`] bytes); `at_eof` says the
/// prefix is the whole body.
pub(crate) fn detect(prefix: &[u8], ct: ContentType, at_eof: bool) -> Detected {
    if let Some(d) = detect_bom_or_header(prefix, ct) {
        return d;
    }
    if ct.is_html
        && let Some(encoding) = meta_charset(prefix)
    {
        return Detected {
            encoding,
            source: CharsetSource::Meta,
            bom_len: 0,
        };
    }
    let encoding = if prefix.is_empty() {
        WINDOWS_1252
    } else {
        let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
        detector.feed(prefix, at_eof);
        detector.guess(None, Utf8Detection::Allow)
    };
    Detected {
        encoding,
        source: CharsetSource::Guess,
        bom_len: 0,
    }
}

/// Finds the first `<meta>` in `prefix` that declares a known charset.
pub(crate) fn meta_charset(prefix: &[u8]) -> Option<&'static Encoding> {
    let prefix = &prefix[..prefix.len().min(SNIFF_LEN)];
    let (text, _) = WINDOWS_1252.decode_without_bom_handling(prefix);
    // A tag is named `meta` only if the text holds `<meta` (ASCII case-insensitively: the
    // tokenizer lowercases ASCII only), so most prefixes need no tokenizer at all.
    let mut candidates = meta_candidate_ends(&text).peekable();
    candidates.peek()?;
    let sink = MetaSink {
        found: Cell::new(None),
    };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let queue = BufferQueue::default();
    // The tokenizer streams: feeding the text in pieces gives the same tokens as feeding it
    // whole, and a start tag is handed to the sink as soon as its `>` is read. So the text
    // is fed up to the end of each `<meta` candidate in turn, and the rest (where a `>`
    // inside a quoted value ended a candidate too early) only when none declared a charset.
    // On a typical page that stops after the first hundred bytes instead of all of them
    // (html5ever costs ~150 instructions a byte here; DESIGN §9, BENCHMARKS.md).
    let mut fed = 0;
    for end in candidates.chain(std::iter::once(text.len())) {
        if end <= fed {
            continue;
        }
        queue.push_back(StrTendril::from_slice(&text[fed..end]));
        fed = end;
        // The sink never blocks; loop only to be robust to a tokenizer that does.
        while !matches!(tokenizer.feed(&queue), html5ever::TokenizerResult::Done) {}
        if let Some(found) = tokenizer.sink.found.get() {
            return Some(found);
        }
    }
    // No `end()`: a tag cut off by the prefix limit must not count as complete.
    tokenizer.sink.found.get()
}

/// For each `<meta` in `text` (ASCII case-insensitive), the offset just past the first `>`
/// after it: where a start tag begun there ends at the earliest.
fn meta_candidate_ends(text: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = text.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        while let Some(at) = memchr::memchr(b'<', &bytes[from..]) {
            let start = from + at;
            from = start + 1;
            if bytes
                .get(start + 1..start + 5)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"meta"))
            {
                let end = memchr::memchr(b'>', &bytes[start..])? + start + 1;
                from = end;
                return Some(end);
            }
        }
        None
    })
}

/// The whole prefix through the tokenizer at once: the reference [`meta_charset`] is
/// checked against.
#[cfg(test)]
fn meta_charset_whole(prefix: &[u8]) -> Option<&'static Encoding> {
    let prefix = &prefix[..prefix.len().min(SNIFF_LEN)];
    let (text, _) = WINDOWS_1252.decode_without_bom_handling(prefix);
    let sink = MetaSink {
        found: Cell::new(None),
    };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(&text));
    while !matches!(tokenizer.feed(&queue), html5ever::TokenizerResult::Done) {}
    tokenizer.sink.found.get()
}

/// Collects the first usable `<meta>` charset; switches raw states like the counter so a
/// `<meta>` inside a script string or a style block is not taken for a real one.
struct MetaSink {
    found: Cell<Option<&'static Encoding>>,
}

impl TokenSink for MetaSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line_number: u64) -> TokenSinkResult<()> {
        let Token::TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        if tag.kind != TagKind::StartTag {
            return TokenSinkResult::Continue;
        }
        if &*tag.name == "meta" && self.found.get().is_none() {
            let attr = |name: &str| {
                tag.attrs
                    .iter()
                    .find(|a| &*a.name.local == name)
                    .map(|a| a.value.trim().to_owned())
            };
            let label = match attr("charset") {
                Some(label) => Some(label),
                None if attr("http-equiv")
                    .is_some_and(|v| v.eq_ignore_ascii_case("content-type")) =>
                {
                    attr("content").and_then(|c| charset_from_content(&c).map(str::to_owned))
                }
                None => None,
            };
            if let Some(encoding) = label.and_then(|l| Encoding::for_label(l.as_bytes())) {
                // WHATWG prescan: a page cannot claim UTF-16 in ASCII-compatible bytes.
                let encoding =
                    if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
                        UTF_8
                    } else if encoding == X_USER_DEFINED {
                        WINDOWS_1252
                    } else {
                        encoding
                    };
                self.found.set(Some(encoding));
            }
        }
        raw_state_after(&tag.name).unwrap_or(TokenSinkResult::Continue)
    }
}

/// WHATWG "extracting a character encoding from a meta element" on a `content` value such
/// as `text/html; charset="koi8-r"`. This reads an attribute value, not markup.
pub(crate) fn charset_from_content(content: &str) -> Option<&str> {
    let bytes = content.as_bytes();
    let mut i = 0;
    loop {
        let rest = &bytes[i..];
        let at = rest
            .windows(7)
            .position(|w| w.eq_ignore_ascii_case(b"charset"))?;
        i += at + 7;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        return match bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let start = i + 1;
                let len = bytes.get(start..)?.iter().position(|&b| b == q)?;
                content.get(start..start + len)
            }
            Some(_) => {
                let len = bytes[i..]
                    .iter()
                    .position(|&b| b == b';' || b.is_ascii_whitespace())
                    .unwrap_or(bytes.len() - i);
                content.get(i..i + len)
            }
            None => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parsing() {
        let ct = parse_content_type(Some("text/html; charset=windows-1251"));
        assert!(ct.is_html);
        assert_eq!(ct.charset, Some(encoding_rs::WINDOWS_1251));
        let ct = parse_content_type(Some("Text/HTML;Charset=\"KOI8-R\""));
        assert!(ct.is_html);
        assert_eq!(ct.charset, Some(encoding_rs::KOI8_R));
        let ct = parse_content_type(Some("application/xhtml+xml"));
        assert!(ct.is_html && ct.charset.is_none());
        let ct = parse_content_type(Some("text/plain; charset=bogus-label"));
        assert!(!ct.is_html && ct.charset.is_none());
        assert!(!parse_content_type(Some("application/json")).is_html);
        assert!(parse_content_type(None).is_html);
        assert!(parse_content_type(Some("")).is_html);
    }

    #[test]
    fn content_attribute_charset() {
        assert_eq!(
            charset_from_content("text/html; charset=utf-8"),
            Some("utf-8")
        );
        assert_eq!(
            charset_from_content("text/html;CHARSET = 'koi8-r' x"),
            Some("koi8-r")
        );
        assert_eq!(charset_from_content("charsetx; charset=a;b"), Some("a"));
        assert_eq!(charset_from_content("charset=\"unterminated"), None);
        assert_eq!(charset_from_content("text/html"), None);
        assert_eq!(charset_from_content("charset="), None);
    }

    #[test]
    fn meta_detection() {
        let m = |s: &str| meta_charset(s.as_bytes()).map(Encoding::name);
        assert_eq!(m("<meta charset=windows-1251>"), Some("windows-1251"));
        assert_eq!(m("<META CHARSET='KOI8-R'>"), Some("KOI8-R"));
        assert_eq!(
            m(r#"<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-2">"#),
            Some("ISO-8859-2")
        );
        // content without http-equiv is not a pragma.
        assert_eq!(m(r#"<meta content="text/html; charset=koi8-r">"#), None);
        // Bogus label skipped, the next meta is used.
        assert_eq!(
            m("<meta charset=nope><meta charset=koi8-r>"),
            Some("KOI8-R")
        );
        assert_eq!(m("<meta charset=utf-16le>"), Some("UTF-8"));
        assert_eq!(m("<!-- <meta charset=koi8-r> -->"), None);
        assert_eq!(m("<script>'<meta charset=koi8-r>'</script>"), None);
        // Only the first SNIFF_LEN bytes count.
        let late = format!("{}<meta charset=koi8-r>", " ".repeat(SNIFF_LEN));
        assert_eq!(m(&late), None);
    }

    /// Markup pieces that make and break `<meta>` charsets: quotes holding `>`, comments,
    /// raw-text elements, cut-off tags, upper case, non-ASCII bytes.
    fn meta_piece() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let pieces: &[&[u8]] = &[
            b"<meta",
            b"<META",
            b"<Meta ",
            b" charset=",
            b"charset",
            b"koi8-r",
            b"utf-8",
            b"windows-1251",
            b"nope",
            b"\"",
            b"'",
            b">",
            b"/>",
            b"<",
            b" ",
            b"x",
            b"=",
            b"<!--",
            b"-->",
            b"<script>",
            b"</script>",
            b"<style>",
            b"</style>",
            b"<title>",
            b"</title>",
            b"<textarea>",
            b"<!DOCTYPE html>",
            b" http-equiv=content-type",
            b" content=\"text/html; charset=iso-8859-2\"",
            b" content='a>b'",
            b"&amp;",
            b"\xe9",
            b"\x00",
            b"<p>",
            b"<![CDATA[",
            b"]]>",
            // Whole declarations, so that most cases hold a few (and the first may be
            // hidden in a comment or a script, cut off, or undone by a quoted `>`).
            b"<meta charset=koi8-r>",
            b"<META CHARSET='UTF-8'/>",
            b"<meta charset=nope>",
            b"<meta content='a>b' charset=windows-1251>",
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-2\">",
            b"<meta\tcharset=\"windows-1251\"",
            b"<metal charset=koi8-r>",
        ];
        prop_oneof![
            proptest::sample::select(pieces.to_vec()).prop_map(<[u8]>::to_vec),
            proptest::collection::vec(any::<u8>(), 1..4),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Feeding the tokenizer up to each `<meta` candidate finds what feeding it the
        /// whole prefix finds, including prefixes longer than SNIFF_LEN.
        #[test]
        fn meta_charset_in_pieces_agrees_with_whole(
            parts in proptest::collection::vec(meta_piece(), 0..80),
            pad in 0usize..1100,
        ) {
            let mut prefix = Vec::new();
            if pad > 1000 {
                prefix.resize(pad, b' ');
            }
            for p in &parts {
                prefix.extend_from_slice(p);
            }
            proptest::prop_assert_eq!(
                meta_charset(&prefix).map(Encoding::name),
                meta_charset_whole(&prefix).map(Encoding::name)
            );
        }
    }
}
