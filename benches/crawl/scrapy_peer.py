"""Crawl benchmark peer (issue 19 "Targets"): Scrapy over the same site as wordtally.

Same rules as benches/crawl/spider-peer and as run.sh asks wordtally: start at one URL,
follow a[href] and area[href] (LinkExtractor) on the same host (allowed_domains plus a
host:port check), 32 concurrent requests, no delay, robots.txt not obeyed, every
response (404s too) counted: case-insensitive substring `python` in the raw body bytes.

Run with the venv from setup.sh:
    /tmp/wt-crawl-bench/venv/bin/python benches/crawl/scrapy_peer.py [START_URL] [PER_PAGE_JSON]
Prints {"tool":"scrapy","urls":N,"total":T,"seconds":S,...}; per-page counts {url: count}
go to PER_PAGE_JSON (default /tmp/wt-crawl-bench/scrapy.json).
"""
import json
import os
import re
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor

START = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8089/index.html"
OUT = sys.argv[2] if len(sys.argv) > 2 else "/tmp/wt-crawl-bench/scrapy.json"
WORD = os.environ.get("WORD", "python")
# Non-overlapping, ASCII case-insensitive; the raw bytes, no decoding (as the spider peer).
PATTERN = re.compile(re.escape(WORD.encode()), re.IGNORECASE)
HOST = urlsplit(START).netloc

per_page = {}
statuses = Counter()
twice = []  # URLs answered more than once (a redirect onto a page already fetched)


class Peer(scrapy.Spider):
    name = "peer"
    allowed_domains = [urlsplit(START).hostname]
    custom_settings = {
        "ROBOTSTXT_OBEY": False,
        "CONCURRENT_REQUESTS": 32,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 32,
        "CONCURRENT_REQUESTS_PER_IP": 0,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "RETRY_ENABLED": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "HTTPERROR_ALLOW_ALL": True,  # the 404 page is a page of the crawl like the others
        "DEPTH_LIMIT": 0,
        "DOWNLOAD_MAXSIZE": 0,
        "DOWNLOAD_WARNSIZE": 0,
    }
    # Scrapy's default deny_extensions skip .py (and images, archives, ...). wordtally and
    # the spider crate fetch every in-scope link whatever its extension, so none denied.
    links = LinkExtractor(tags=("a", "area"), attrs=("href",), deny_extensions=[], unique=True)

    async def start(self):
        # Not start_urls: their requests skip the duplicate filter, so the link back to
        # index.html on every page would fetch the start page a second time.
        yield scrapy.Request(START, callback=self.parse)

    def parse(self, response):
        url = response.url
        if url in per_page:
            twice.append((url, response.status, response.request.url))
        per_page[url] = len(PATTERN.findall(response.body))
        statuses[response.status] += 1
        if not isinstance(response, scrapy.http.TextResponse):
            return  # a download (.py served as text/x-python is still text; images etc. are not)
        if "html" not in response.headers.get("Content-Type", b"").decode("latin-1").lower():
            return  # non-HTML pages have no links (the .py file)
        for link in self.links.extract_links(response):
            if urlsplit(link.url).netloc == HOST:
                yield scrapy.Request(link.url, callback=self.parse)


t0, c0 = time.time(), time.process_time()  # CPU from the crawl's start, imports excluded
process = CrawlerProcess(settings={"LOG_LEVEL": "WARNING"})
process.crawl(Peer)
process.start()
seconds, cpu_seconds = time.time() - t0, time.process_time() - c0
with open(OUT, "w") as f:
    json.dump(per_page, f, sort_keys=True)
print(json.dumps({"tool": "scrapy", "urls": len(per_page), "total": sum(per_page.values()),
                  "seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 3), "statuses": dict(sorted(statuses.items())), "twice": twice,
                  "per_page_file": OUT}))
