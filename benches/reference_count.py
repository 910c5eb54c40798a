"""Independent reference of wordtally's counting rules (stdlib only)."""
import codecs
import html
import re
from html.parser import HTMLParser

INLINE = set("a abbr b bdi bdo cite code data dfn em i kbd mark q s samp small span strong "
             "sub sup time u var wbr".split())
HIDDEN_RAW = {"script", "style", "noscript"}
# elements whose content is not markup (html.parser only knows script/style)
RAWTEXT = {"script", "style", "noscript", "xmp", "iframe", "noembed", "noframes"}
RCDATA = {"title", "textarea"}
SEP = "\x00"


class TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.template = 0
        self.hidden = False
        self.rc = False

    def _sep(self, tag):
        if tag not in INLINE:
            self.out.append(SEP)

    def handle_starttag(self, tag, attrs):
        self._sep(tag)
        if tag == "template":
            self.template += 1
        if tag in RAWTEXT or tag in RCDATA:
            self.set_cdata_mode(tag)
            self.hidden = tag in HIDDEN_RAW
            self.rc = tag in RCDATA

    def handle_startendtag(self, tag, attrs):
        # html5ever ignores the self-closing flag on HTML elements: a start tag only.
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self._sep(tag)
        self.hidden = False
        self.rc = False
        if tag == "template":
            self.template = max(0, self.template - 1)

    def handle_data(self, data):
        if self.hidden or self.template:
            return
        if self.rc:
            data = html.unescape(data)  # cdata mode does not convert charrefs
        self.out.append(data)

    def text(self):
        return "".join(self.out)


def extract_text(s):
    p = TextExtractor()
    p.feed(s)
    p.close()
    return p.text()


def lower(s):
    return "".join(c.lower() for c in s)


def is_word(c):
    return c is not None and (c.isalnum() or c == "_")


def count(text, word, case_sensitive, whole_word):
    if not case_sensitive:
        text, word = lower(text), lower(word)
    if not word:
        return 0
    if not whole_word:
        return text.count(word)
    n, pos, c = len(word), 0, 0
    while True:
        m = text.find(word, pos)
        if m < 0:
            return c
        before = text[m - 1] if m > 0 else None
        after = text[m + n] if m + n < len(text) else None
        if not is_word(before) and not is_word(after):
            c += 1
            pos = m + n
        else:
            pos = m + 1


META_RE = re.compile(rb'<meta[^>]*?charset\s*=\s*["\']?\s*([A-Za-z0-9_.:-]+)', re.I)


def detect_charset(body, header_charset=None):
    for bom, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                     (codecs.BOM_UTF16_BE, "utf-16-be")):
        if body.startswith(bom):
            return enc, len(bom), "bom"
    if header_charset:
        return header_charset, 0, "header"
    m = META_RE.search(body[:1024])
    if m:
        return m.group(1).decode().lower(), 0, "meta"
    try:
        body[:1024].decode("utf-8")
        return "utf-8", 0, "guess"
    except UnicodeDecodeError:
        return "cp1252", 0, "guess"


def reference_count(body, word, case_sensitive, whole_word, scope, header_charset=None):
    enc, skip, _ = detect_charset(body, header_charset)
    s = body[skip:].decode(enc, errors="replace")
    if scope == "text":
        s = extract_text(s)
    return count(s, word, case_sensitive, whole_word)
