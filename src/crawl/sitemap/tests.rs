use super::*;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn urlset(locs: &[&str]) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    for l in locs {
        s.push_str(&format!(
            "<url><loc>{l}</loc><lastmod>2024-01-01</lastmod></url>\n"
        ));
    }
    s.push_str("</urlset>");
    s
}

/// Feeds `body` in `chunk`-byte pieces, as the fetcher would; stops when the sink is full.
fn sink_read(body: &[u8], cap: u64, chunk: usize) -> (Result<Vec<u8>, String>, usize) {
    let mut sink = SitemapSink::new(cap);
    let mut fed = 0;
    for piece in body.chunks(chunk) {
        sink.feed(piece);
        fed += piece.len();
        if sink.is_full() {
            break;
        }
    }
    (sink.finish(), fed)
}

#[test]
fn a_urlset_gives_its_locs_only() {
    let xml = urlset(&[
        "https://a.test/",
        "https://a.test/x?y=1&amp;z=2",
        " https://a.test/sp ",
    ]);
    let read = parse_sitemap(xml.as_bytes(), &SitemapLimits::default()).expect("sitemap");
    assert_eq!(
        read.doc,
        SitemapDoc::Urls(vec![
            "https://a.test/".into(),
            "https://a.test/x?y=1&z=2".into(),
            "https://a.test/sp".into()
        ])
    );
    assert_eq!(read.dropped, 0);
    assert_eq!(read.note, None);
}

#[test]
fn an_index_gives_its_sitemaps_and_cdata_and_char_refs_are_text() {
    let xml = r#"<?xml version="1.0"?>
        <sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
          <sitemap><loc><![CDATA[https://a.test/s1.xml]]></loc></sitemap>
          <sitemap><loc>https://a.test/s&#50;.xml.gz</loc></sitemap>
        </sitemapindex>"#;
    let read = parse_sitemap(xml.as_bytes(), &SitemapLimits::default()).expect("index");
    assert_eq!(
        read.doc,
        SitemapDoc::Index(vec![
            "https://a.test/s1.xml".into(),
            "https://a.test/s2.xml.gz".into()
        ])
    );
}

#[test]
fn prefixed_namespaces_and_a_bom_are_fine() {
    let xml = "\u{feff}<sm:urlset xmlns:sm=\"http://www.sitemaps.org/schemas/sitemap/0.9\"><sm:url><sm:loc>http://a.test/p</sm:loc></sm:url></sm:urlset>";
    let read = parse_sitemap(xml.as_bytes(), &SitemapLimits::default()).expect("sitemap");
    assert_eq!(read.doc, SitemapDoc::Urls(vec!["http://a.test/p".into()]));
}

#[test]
fn bad_locs_are_dropped_and_counted() {
    let long = format!("https://a.test/{}", "x".repeat(3000));
    let xml = urlset(&[
        "https://a.test/ok",
        "/relative",
        "ftp://a.test/f",
        "javascript:alert(1)",
        &long,
        "",
    ]);
    let read = parse_sitemap(xml.as_bytes(), &SitemapLimits::default()).expect("sitemap");
    assert_eq!(read.doc, SitemapDoc::Urls(vec!["https://a.test/ok".into()]));
    assert_eq!(read.dropped, 5);
    assert!(
        read.note
            .as_deref()
            .is_some_and(|n| n.contains("5 <loc> values dropped"))
    );
}

#[test]
fn a_huge_sitemap_keeps_max_urls_and_counts_the_rest() {
    let locs: Vec<String> = (0..1500).map(|i| format!("https://a.test/p{i}")).collect();
    let refs: Vec<&str> = locs.iter().map(String::as_str).collect();
    let limits = SitemapLimits {
        max_urls: 1000,
        ..SitemapLimits::default()
    };
    let read = parse_sitemap(urlset(&refs).as_bytes(), &limits).expect("sitemap");
    let SitemapDoc::Urls(urls) = read.doc else {
        panic!("urlset")
    };
    assert_eq!(urls.len(), 1000);
    assert_eq!(urls[999], "https://a.test/p999");
    assert_eq!(read.dropped, 500);
}

#[test]
fn malformed_xml_keeps_what_came_before_or_says_why() {
    let cut = "<urlset><url><loc>https://a.test/1</loc></url><url><loc>https://a.test/2</loc></url><url><loc>https://a.test/3</lo";
    let read = parse_sitemap(cut.as_bytes(), &SitemapLimits::default()).expect("partial");
    assert_eq!(
        read.doc,
        SitemapDoc::Urls(vec!["https://a.test/1".into(), "https://a.test/2".into()])
    );
    let broken = "<urlset><url><loc>https://a.test/1</loc></url></wrong></urlset>";
    let read = parse_sitemap(broken.as_bytes(), &SitemapLimits::default()).expect("kept");
    assert!(
        read.note
            .as_deref()
            .is_some_and(|n| n.contains("malformed XML")),
        "{read:?}"
    );

    let html = "<!doctype html><html><body><a href=/x>x</a></body></html>";
    let e = parse_sitemap(html.as_bytes(), &SitemapLimits::default()).expect_err("html");
    assert!(e.contains("not a sitemap"), "{e}");
    assert_eq!(
        parse_sitemap(b"  \n", &SitemapLimits::default()).expect_err("empty"),
        "sitemap is empty"
    );
    let e = parse_sitemap(b"\x00\x01\x02binary", &SitemapLimits::default()).expect_err("binary");
    assert!(e.contains("not a sitemap"), "{e}");
    let e = parse_sitemap(b"<urlset/>", &SitemapLimits::default()).expect_err("nothing");
    assert!(e.contains("lists nothing"), "{e}");
}

#[test]
fn dtd_entities_are_never_expanded() {
    let lol = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
        <urlset><url><loc>https://a.test/&lol2;</loc></url></urlset>"#;
    let read = parse_sitemap(lol.as_bytes(), &SitemapLimits::default()).expect("sitemap");
    assert_eq!(read.doc, SitemapDoc::Urls(vec!["https://a.test/".into()]));
}

#[test]
fn a_text_sitemap_is_one_url_a_line() {
    let read = parse_sitemap(
        b"https://a.test/1\r\n\r\nhttps://a.test/2\nnot a url\n",
        &SitemapLimits::default(),
    )
    .expect("text");
    assert_eq!(
        read.doc,
        SitemapDoc::Urls(vec!["https://a.test/1".into(), "https://a.test/2".into()])
    );
    assert_eq!(read.dropped, 1);
}

#[test]
fn gzip_is_recognised_by_its_magic_and_inflated_in_any_chunking() {
    let xml = urlset(&["https://a.test/1", "https://a.test/2"]);
    let packed = gz(xml.as_bytes());
    for chunk in [1, 2, 3, 7, 4096] {
        let (out, _) = sink_read(&packed, 1 << 20, chunk);
        assert_eq!(out.expect("inflates"), xml.as_bytes(), "chunk size {chunk}");
    }
    let (plain, _) = sink_read(xml.as_bytes(), 1 << 20, 5);
    assert_eq!(plain.expect("plain"), xml.as_bytes());
}

#[test]
fn a_gzip_bomb_stops_at_the_cap_with_a_reason() {
    // 64 MiB of zeros inflate from ~64 KiB; the cap is 1 MiB.
    let bomb = gz(&vec![0u8; 64 << 20]);
    let (out, fed) = sink_read(&bomb, 1 << 20, 1024);
    let e = out.expect_err("bomb refused");
    assert!(e.contains("larger than 1 MiB once decompressed"), "{e}");
    assert!(
        fed < bomb.len() / 8,
        "stopped early: fed {fed} of {}",
        bomb.len()
    );
}

#[test]
fn a_plain_body_over_the_cap_and_broken_gzip_are_refused() {
    let (out, _) = sink_read(&vec![b'a'; 3000], 1000, 100);
    assert_eq!(
        out.expect_err("too big"),
        "sitemap is larger than 1000 bytes"
    );
    let mut broken = gz(urlset(&["https://a.test/1"]).as_bytes());
    broken.truncate(broken.len() / 2);
    let (out, _) = sink_read(&broken, 1 << 20, 64);
    assert!(out.is_err(), "a cut gzip stream is not a sitemap: {out:?}");
}
