"""The crawl benchmark (issue 19 "Targets"), side by side in ONE sitting.

    bash benches/crawl/run.sh [ROUNDS] [VARIANTS]        # see run.sh; it builds nothing

Tools, every one over Debian's python3.11-doc served by our nginx on 127.0.0.1:8089
(benches/crawl/setup.sh), crawled from index.html, same host only, 32 connections, no
delay, robots.txt not obeyed, counting the case-insensitive substring `python` in each
page's raw bytes:
* spider  — benches/crawl/spider-peer (the `spider` crate), release build;
* scrapy  — benches/crawl/scrapy_peer.py (Scrapy, the venv of setup.sh);
* wordtally variants, each a fresh server per round, the clock running from the POST of
  /api/crawls to the poll of GET /api/batches/{id} that shows no task waiting or running:
  `embedded-W`  one `wordtally serve --workers W` on a fresh SQLite file in /tmp;
  `prod-W`      `serve --workers 0` + two `wordtally worker --workers W` on Postgres
                (127.0.0.1:5432, a fresh database), Redis (unique REDIS_PREFIX) and the
                project's NSQ test broker (release example `nsq_test_broker`).
Rounds rotate the order of the tools. CPU seconds: utime+stime from /proc of the tool's
own processes over the crawl (peers: measured by themselves from their crawl's start;
wordtally: serve [+ workers]; for prod also the delta of every postgres and
redis-server process, shared with the machine, shown separately). After every round each
wordtally run's export is compared with both peers: URL sets and per-page counts, the
differences printed in full; with no peer in the sitting, every variant is compared with
the first one (e.g. `run.py 3 embedded-32,prod-32`: the production path against the
embedded default). BENCH_DB and BENCH_REDIS_URL choose prod-W's database and Redis.
"""
import json, os, re, signal, socket, statistics, subprocess, sys, time, urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("WORDTALLY_BIN", f"{REPO}/target/release/wordtally")
BROKER = os.environ.get("NSQ_BROKER_BIN", f"{REPO}/target/release/examples/nsq_test_broker")
SPIDER = os.environ.get("SPIDER_PEER_BIN", "/tmp/spider-peer-target/release/spider-peer")
ROOT = os.environ.get("ROOT", "/tmp/wt-crawl-bench")
VENV_PY = os.environ.get("VENV_PY", f"{ROOT}/venv/bin/python")
START = os.environ.get("START", "http://127.0.0.1:8089/index.html")
PG = os.environ.get("PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")  # prod-W: a unique REDIS_PREFIX in it
CLK = os.sysconf("SC_CLK_TCK")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
VARIANTS = (sys.argv[2] if len(sys.argv) > 2 else "spider,scrapy,embedded-32").split(",")
CRAWL = {"start": [START], "word": "python", "scope": "raw", "whole_word": False,
         "case_sensitive": False, "obey_robots": False, "follow": "host"}
os.makedirs(ROOT, exist_ok=True)


def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK


def tree_cpu(pids):
    total = 0.0
    for pid in pids:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        total += cpu(pid) + sum(cpu(int(k)) for k in kids)
    return total


def shared_cpu():
    s = {}
    for name in ("postgres", "redis-server"):
        ids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
        s[name] = sum(cpu(int(i)) for i in ids)
    return s


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get_json(url, timeout=10):
    return json.load(urllib.request.urlopen(url, timeout=timeout))


def wait_http(url, secs=60):
    deadline = time.time() + secs
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not answer within {secs} s")
            time.sleep(0.05)


def run_peer(name, argv):
    out = f"{ROOT}/{name}.json"
    p = subprocess.run(argv + [START, out], capture_output=True, text=True, timeout=900)
    line = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"{name} failed ({p.returncode}): {p.stderr[-2000:]}")
    r = json.loads(line[-1])
    r["per_page"] = json.load(open(out))
    return r


def stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def export_per_page(base, batch):
    """{address: words_count} of the batch's tasks, from the JSON Lines export."""
    per_page, rows = {}, []
    with urllib.request.urlopen(f"{base}/api/tasks/export?format=jsonl&batch={batch}", timeout=60) as r:
        for line in r:
            if line.strip():
                rows.append(json.loads(line))
    for t in rows:
        if t.get("role"):  # a sitemap or robots.txt task (none here: no sitemaps asked)
            continue
        res = t.get("result") or {}
        n = t.get("words_count", res.get("words_count"))
        per_page[t["address"]] = n
    return per_page, rows


def run_wordtally(variant):
    mode, w = variant.rsplit("-", 1)
    w = int(w)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(f"{ROOT}/{variant}.log", "w")
    env = {**os.environ, "RUST_LOG": "warn", "ALLOW_PRIVATE_TARGETS": "true"}
    procs, extra = [], {}
    if mode == "embedded":
        db = f"{ROOT}/{variant}.db"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        env.update(DATABASE_URL=f"sqlite://{db}", PER_HOST_CONCURRENCY=str(w))
        wrap = os.environ.get("WRAP", "").split()  # e.g. valgrind --tool=callgrind
        procs.append(subprocess.Popen(wrap + [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", str(w)],
                                      env=env, stdout=log, stderr=log))
    elif mode == "prod":
        broker = subprocess.Popen([BROKER, "--tcp-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, text=True)
        tcp = re.search(r"tcp=(\S+)", broker.stdout.readline()).group(1)
        dbname = os.environ.get("BENCH_DB", "wt_crawl_bench")
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)",
                        "-c", f"CREATE DATABASE {dbname}"], check=True, capture_output=True)
        prefix = f"wt-crawl-bench-{os.getpid()}-{time.time_ns()}"
        env.update(DATABASE_URL=f"{PG}/{dbname}", REDIS_URL=REDIS, REDIS_PREFIX=prefix,
                   NSQD_TCP_ADDRESS=tcp, PER_HOST_CONCURRENCY=str(w))
        procs.append(subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "0"],
                                      env=env, stdout=log, stderr=log))
        for _ in range(2):
            procs.append(subprocess.Popen([BIN, "worker", "--workers", str(w)], env=env, stdout=log, stderr=log))
        extra = {"broker": broker, "prefix": prefix}
    else:
        raise SystemExit(f"unknown variant {variant}")
    try:
        wait_http(base + "/healthz", 120 if os.environ.get("WRAP") else 60)
        time.sleep(0.5 if mode == "prod" else 0.0)  # workers connect to Redis / NSQ
        pids = [p.pid for p in procs]
        c0, s0 = tree_cpu(pids), shared_cpu()
        t0 = time.time()
        req = urllib.request.Request(base + "/api/crawls", json.dumps(CRAWL).encode(),
                                     {"content-type": "application/json"})
        try:
            created = json.load(urllib.request.urlopen(req, timeout=30))
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"POST /api/crawls: {e.code} {e.read()[:500]!r}")
        batch = created["batch_id"]
        deadline = t0 + float(os.environ.get("CRAWL_TIMEOUT", "600"))
        polls = 0
        while True:
            b = get_json(f"{base}/api/batches/{batch}")
            polls += 1
            if b["total"] > 0 and b["not_started"] == 0 and b["pending"] == 0:
                break
            if time.time() > deadline:
                raise RuntimeError(f"crawl not finished after {deadline - t0:.0f} s: {json.dumps(b)[:800]}")
            time.sleep(0.005)
        seconds = time.time() - t0
        c1, s1 = tree_cpu(pids), shared_cpu()
        rss = [rss_kib(pid) for pid in pids]
        per_page, rows = export_per_page(base, batch)
        outcomes = {}
        for t in rows:
            outcomes[t.get("outcome")] = outcomes.get(t.get("outcome"), 0) + 1
        r = {"tool": variant, "urls": len(per_page), "total": sum(v or 0 for v in per_page.values()),
             "seconds": seconds, "cpu_seconds": c1 - c0, "per_page": per_page, "batch": b,
             "rss_mib": [round(k / 1024, 1) for k in rss], "outcomes": outcomes, "polls": polls,
             "shared_cpu": {k: round(s1[k] - s0[k], 2) for k in s1} if mode == "prod" else {}}
        return r
    finally:
        stop(procs)
        if extra:
            stop([extra["broker"]])
            subprocess.run(["redis-cli", "-u", REDIS, "EVAL",
                            "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1",
                            "0", extra["prefix"] + ":*"], capture_output=True)


def run(variant):
    if variant == "spider":
        return run_peer("spider", [SPIDER])
    if variant == "scrapy":
        return run_peer("scrapy", [VENV_PY, f"{HERE}/scrapy_peer.py"])
    return run_wordtally(variant)


def compare(a, b):
    pa, pb = a["per_page"], b["per_page"]
    only_a = sorted(set(pa) - set(pb))
    only_b = sorted(set(pb) - set(pa))
    diff = sorted((u, pa[u], pb[u]) for u in set(pa) & set(pb) if pa[u] != pb[u])
    ok = not (only_a or only_b or diff)
    print(f"  {a['tool']} vs {b['tool']}: {'same URL set and per-page counts' if ok else 'DIFFERENT'}"
          f" ({len(pa)} / {len(pb)} URLs, totals {a['total']} / {b['total']})")
    for u in only_a:
        print(f"    only {a['tool']}: {u} ({pa[u]})")
    for u in only_b:
        print(f"    only {b['tool']}: {u} ({pb[u]})")
    for u, x, y in diff:
        print(f"    count differs: {u}: {a['tool']} {x}, {b['tool']} {y}")
    return ok


def main():
    load = open("/proc/loadavg").read().split()[:3]
    print(f"# crawl bench {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, start {START}, "
          f"rounds {ROUNDS}, variants {VARIANTS}, load before {' '.join(load)}")
    results = {v: [] for v in VARIANTS}
    for rnd in range(ROUNDS):
        order = VARIANTS[rnd % len(VARIANTS):] + VARIANTS[:rnd % len(VARIANTS)]
        for v in order:
            la = open("/proc/loadavg").read().split()[0]
            r = run(v)
            r["load"] = la
            results[v].append(r)
            rest = "" if "batch" not in r else (
                f" outcomes={r['outcomes']} rss_mib={r['rss_mib']} crawl={json.dumps(r['batch'].get('crawl', {}).get('discovered'))}"
                + (f" shared_cpu={r['shared_cpu']}" if r["shared_cpu"] else ""))
            print(f"round {rnd + 1} {v:14s} urls={r['urls']} total={r['total']} seconds={r['seconds']:.3f} "
                  f"cpu={r['cpu_seconds']:.2f} load={la}{rest}", flush=True)
        peers = [results[p][-1] for p in ("spider", "scrapy") if p in results]
        for v in VARIANTS:
            if v not in ("spider", "scrapy"):
                for p in peers:
                    compare(results[v][-1], p)
        if len(peers) == 2 and rnd == 0:
            compare(peers[0], peers[1])
        if not peers:  # no peer in this sitting: every variant against the first one
            ours = [results[v][-1] for v in VARIANTS]
            for other in ours[1:]:
                compare(other, ours[0])
    # The table: medians over the rounds; ratios of pages/s to each peer's median.
    med = {v: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "cpu_seconds")} for v, rs in results.items()}
    pps = {v: statistics.median(r["urls"] / r["seconds"] for r in rs) for v, rs in results.items()}
    print()
    print("| tool | URLs | total `python` | seconds (median; each round) | pages/s | CPU s | × spider (pages/s) | × Scrapy (pages/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for v, rs in results.items():
        each = " · ".join(f"{r['seconds']:.2f}" for r in rs)
        xs = f"{pps[v] / pps['spider']:.2f}×" if "spider" in pps else "—"
        xc = f"{pps[v] / pps['scrapy']:.1f}×" if "scrapy" in pps else "—"
        print(f"| {v} | {rs[-1]['urls']} | {rs[-1]['total']:,} | {med[v]['seconds']:.2f} ({each}) | {pps[v]:,.0f} | "
              f"{med[v]['cpu_seconds']:.2f} | {xs} | {xc} |")
    print(f"load after {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
