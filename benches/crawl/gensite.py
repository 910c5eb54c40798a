"""A generated site for the production-path crawl benchmark (issue 19 "Targets").

    python3 benches/crawl/gensite.py [OUT=/tmp/wt-gensite/site] [PAGES=100000] [SEED=19]

Deterministic (seeded). Writes static HTML under OUT (not committed; ~0.5 GB for 100,000
pages) and OUT/../manifest.json with what a correct crawl must find. Served by the nginx
instance of benches/crawl/prodbench.sh on localhost:8090 (and [::1]:8090); the crawl starts
at http://localhost:8090/p/000/0.html with follow=host, obey_robots=true.

* /p/DDD/I.html, I in 0..PAGES (DDD = I // 1000): the pages a complete crawl fetches, each
  once. ~50 links a page: the tree children 10I+1..10I+10 (so every page is reachable,
  depth <= 5), ~30 random pages, and ~4 duplicates of those in other spellings that
  normalise to the same URL: host case and scheme case (HTTP://LocalHost:8090), scheme-
  relative (//localhost:8090/...), `./`, `..` (also past the root), percent-escaped
  unreserved characters (%2e, %30), fragments.
* links that must never be fetched: rel=nofollow links to /nf/K.html (exist, linked only
  with nofollow); /private/K.html (exist; robots.txt disallows /private/ -> tasks with
  outcome `skipped`); off-site links (another host: http://127.0.0.1:8090/... — the same
  server under another host name, out of a follow=host crawl of localhost:8090 —
  http://127.0.0.1:8091/... — a listener with its own access log — and
  http://offsite.invalid/...); mailto:, javascript:, tel:, data: links; the links of
  /meta-nofollow.html (<meta name="robots" content="nofollow">) to /nfm/K.html.
* traps: /trap/K/ (K < TRAPS) served by nginx as /trap.html for any path under /trap/,
  which links `next/` relatively — ever deeper paths, an infinite trap bounded only by the
  crawl's max_depth — and `?sid=N` session-id spellings of itself (a new URL each depth).
* each page contains the word `python` (mixed case) I % 7 times in its text; the manifest
  has the total over the /p pages.
"""
import json, os, random, sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wt-gensite/site"
PAGES = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 19
HOST = "localhost:8090"
TRAPS = 50
SIDE = 1000  # /private/, /nf/, /nfm/ pages
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
PYTHON = ("python", "Python", "PYTHON", "pYthon")


def d(i):
    return f"{i // 1000:03d}"


def spell(rng, i, j):
    """One of many spellings of page j's URL as linked from page i (all normalise to
    http://localhost:8090/p/DDD/j.html)."""
    di, dj = d(i), d(j)
    rel = f"{j}.html" if di == dj else f"../{dj}/{j}.html"
    k = rng.randrange(14)
    if k == 0:
        return rel
    if k == 1:
        return f"./{rel}"
    if k == 2:
        return f"/p/{dj}/{j}.html"
    if k == 3:
        return f"http://{HOST}/p/{dj}/{j}.html"
    if k == 4:
        return f"HTTP://LocalHost:8090/p/{dj}/{j}.html"
    if k == 5:
        return f"//{HOST}/p/{dj}/{j}.html"
    if k == 6:
        return f"/p/{di}/../{dj}/{j}.html"
    if k == 7:
        return f"/p/./{dj}/./{j}.html#sec{rng.randrange(9)}"
    if k == 8:
        return f"../../../p/{dj}/{j}.html"  # `..` past the root stays at the root
    if k == 9:
        return f"/../p/{dj}/{j}.html#"
    if k == 10:
        return f"/p/{dj}/{j}%2ehtml"  # an escaped unreserved character: decoded
    if k == 11:
        return f"/p/%3{dj[0]}{dj[1:]}/{j}.html"  # an escaped digit in the directory
    if k == 12:
        return f"http://localhost:8090/p/{dj}/{j}.html#top"
    return f"  /p/{dj}/{j}.html  "  # surrounding whitespace, stripped


def text(rng, n_python, n_words=520):
    ws = [rng.choice(WORDS) for _ in range(n_words)]
    for _ in range(n_python):
        ws.insert(rng.randrange(len(ws) + 1), rng.choice(PYTHON))
    out, line = [], []
    for w in ws:
        line.append(w)
        if len(line) == 14:
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return "\n".join(out)


def page(rng, i):
    links = []
    for c in range(10 * i + 1, min(10 * i + 11, PAGES)):
        links.append(spell(rng, i, c))
    targets = [rng.randrange(PAGES) for _ in range(30)]
    links += [spell(rng, i, j) for j in targets]
    links += [spell(rng, i, j) for j in rng.sample(targets, 4)]  # the same pages again, other spellings
    links.append(spell(rng, i, i))  # itself
    other = []
    other.append(f'<a rel="nofollow" href="/nf/{rng.randrange(SIDE)}.html">nf</a>')
    other.append(f'<a rel="external nofollow" href="../../nf/{rng.randrange(SIDE)}.html">nf2</a>')
    if rng.random() < 0.2:
        other.append(f'<a href="/private/{rng.randrange(SIDE)}.html">private</a>')
    off = rng.randrange(3)
    other.append(f'<a href="http://127.0.0.1:8090/p/{d(i)}/{i}.html">same server, other host</a>'
                 if off == 0 else
                 f'<a href="http://127.0.0.1:8091/off/{i}.html">off-site listener</a>'
                 if off == 1 else f'<a href="http://offsite.invalid/p/{i}.html">off-site</a>')
    other.append(f'<a href="mailto:someone{i}@offsite.invalid">mail</a>')
    other.append('<a href="javascript:void(0)">js</a>')
    other.append(f'<a href="tel:+100{i}">tel</a>')
    other.append('<a href="data:text/html,hello">data</a>')
    other.append('<a href="#top">top</a>')
    if rng.random() < 0.05:
        other.append(f'<a href="/trap/{rng.randrange(TRAPS)}/">archive</a>')
    if rng.random() < 0.01:
        other.append('<a href="/meta-nofollow.html">meta</a>')
    body = [f'<li><a href="{h}">page</a></li>' for h in links]
    rng.shuffle(other)
    n_python = i % 7
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>page {i}</title></head>\n"
            f"<body><h1 id=\"top\">page {i}</h1>\n<p>{text(rng, n_python)}</p>\n"
            f"<ul>\n" + "\n".join(body) + "\n</ul>\n<p>" + " ".join(other) + "</p>\n</body></html>\n"), n_python, len(links) + len(other)


def main():
    rng = random.Random(SEED)
    os.makedirs(OUT, exist_ok=True)
    total_python, total_links, size = 0, 0, 0
    for i in range(PAGES):
        if i % 1000 == 0:
            os.makedirs(f"{OUT}/p/{d(i)}", exist_ok=True)
        html, n, nl = page(rng, i)
        total_python += n
        total_links += nl
        b = html.encode()
        size += len(b)
        with open(f"{OUT}/p/{d(i)}/{i}.html", "wb") as f:
            f.write(b)
    for sub in ("private", "nf", "nfm"):
        os.makedirs(f"{OUT}/{sub}", exist_ok=True)
        for k in range(SIDE):
            with open(f"{OUT}/{sub}/{k}.html", "w") as f:
                f.write(f"<html><body>{sub} {k} python <a href=\"/{sub}/{k + 1}.html\">next</a></body></html>\n")
    with open(f"{OUT}/robots.txt", "w") as f:
        f.write("User-agent: *\nDisallow: /private/\n")
    with open(f"{OUT}/trap.html", "w") as f:
        # Served for every path under /trap/: `next/` is one level deeper each time.
        f.write('<html><body>trap python <a href="next/">next</a> <a href="next/?sid=1">session</a> '
                '<a href="/p/000/0.html">home</a></body></html>\n')
    with open(f"{OUT}/meta-nofollow.html", "w") as f:
        f.write('<html><head><meta name="robots" content="NoFollow"></head><body>python '
                + " ".join(f'<a href="/nfm/{k}.html">x</a>' for k in range(20)) + "</body></html>\n")
    manifest = {"pages": PAGES, "seed": SEED, "host": HOST, "start": f"http://{HOST}/p/000/0.html",
                "total_python_p": total_python, "links_written": total_links, "bytes_p": size,
                "traps": TRAPS}
    with open(os.path.join(os.path.dirname(OUT.rstrip("/")), "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
