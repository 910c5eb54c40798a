"""The production-path crawl benchmark (issue 19 "Targets"): a crawl of a generated site of
100,000 pages, the same pages as a list, and the recovery of a queue that lost its data.

    bash benches/crawl/prodbench.sh crawl|list|recovery|all     # sets up, then runs this

Every phase starts its own stack and stops it at the end: `wordtally serve --workers 0` +
two `wordtally worker --workers W` (W = WORKERS, default 32, PER_HOST_CONCURRENCY = W),
Postgres (a fresh database `wtbench` on 127.0.0.1:5432, dropped and made again per phase),
our own redis-server on 127.0.0.1:6390 (`--save '' --appendonly no`, so a restart loses
everything; the machine's Redis on 6379 is never touched) and the project's NSQ test broker.
The site is benches/crawl/gensite.py's, served by the nginx of prodbench.sh on
localhost:8090 with an access log per phase (`$msec $http_host $server_port "$request_uri"
"$uri" $status $bytes_sent`; an off-site listener on 127.0.0.1:8091 logs separately).

* crawl    — POST /api/crawls from http://localhost:8090/p/000/0.html, follow host,
             obey_robots, max_depth 20, max_pages 200,000 (CRAWL_MAX_PAGES 200,000). The
             clock runs from the POST to the poll of GET /api/batches/{id} that shows nothing
             waiting or pending. Checked: every /p page fetched exactly once (per URI and per
             decoded path, from the access log), nothing of /private/ /nf/ /nfm/ nor the
             off-site listener fetched, per-page counts equal to the generator's. Sampled
             every 0.5 s: RSS and CPU of serve, both workers, nginx, broker, our redis and
             every postgres process. Per-page cost: wall time per 1,000 consecutive
             completions (tasks ordered by finished_at), and serve / postgres CPU per page.
* list     — the same 100,000 URLs (their normal spelling) submitted through POST /api/tasks
             in 10 submissions of 10,000 (MAX_SUBMIT_ADDRESSES), same words and options; the
             clock runs from the first POST to the poll that shows all 100,000 finished.
* recovery — RECOVER_N (default 50,000) list tasks submitted while no worker runs (all
             PENDING in the Redis stream), then our redis-server is killed and started
             again empty, and the two workers are started. Measured from the restart: when
             the Submitter noticed (its log), the stream's entries-added (re-queued jobs)
             every 0.1 s, and when every task finished.
Results: ROOT/results/<phase>.json and a summary on stdout.
"""
import collections, json, os, re, signal, socket, statistics, subprocess, sys, threading, time, urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("WORDTALLY_BIN", f"{REPO}/target/release/wordtally")
BROKER = os.environ.get("NSQ_BROKER_BIN", f"{REPO}/target/release/examples/nsq_test_broker")
ROOT = os.environ.get("ROOT", "/tmp/wt-gensite")
SITE = f"{ROOT}/site"
LOGS = f"{ROOT}/nginx/logs"
PG = os.environ.get("PG", "postgres://postgres@127.0.0.1:5432")
DB = os.environ.get("BENCH_DB", "wtbench")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6390"))
W = int(os.environ.get("WORKERS", "32"))
RECOVER_N = int(os.environ.get("RECOVER_N", "50000"))
CLK = os.sysconf("SC_CLK_TCK")
MANIFEST = json.load(open(f"{ROOT}/manifest.json"))
N = MANIFEST["pages"]
HOSTPORT = MANIFEST["host"]
OPTIONS = {"word": "python", "scope": "raw", "whole_word": False, "case_sensitive": False}
CRAWL = {"start": [MANIFEST["start"]], **OPTIONS, "obey_robots": True, "follow": "host",
         "max_depth": 20, "max_pages": int(os.environ.get("BENCH_MAX_PAGES", "200000"))}  # lower: a smoke run
LIST_N = int(os.environ.get("LIST_N", str(N)))  # lower: a smoke run
os.makedirs(f"{ROOT}/results", exist_ok=True)


def page_url(i):
    return f"http://{HOSTPORT}/p/{i // 1000:03d}/{i}.html"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {msg}", flush=True)


# ---------------------------------------------------------------- /proc
def stat(pid):
    """(cpu seconds, rss KiB) of a process, or None when it is gone."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        rss = 0
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return (int(f[11]) + int(f[12])) / CLK, rss
    except (FileNotFoundError, ProcessLookupError):
        return None


def pids_named(name):
    return [int(p) for p in subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()]


def nginx_pids():
    master = int(open(f"{ROOT}/nginx/nginx.pid").read())
    kids = [int(p) for p in subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()]
    return [master] + kids


class Sampler(threading.Thread):
    """Every `every` s: CPU and RSS of the named processes, postgres' total CPU, and
    `progress()` (tasks done)."""

    def __init__(self, procs, progress, every=0.25):
        super().__init__(daemon=True)
        self.procs, self.progress, self.every = procs, progress, every
        self.rows, self.stopped = [], threading.Event()

    def snap(self):
        row = {"t": time.time()}
        for name, pid in self.procs.items():
            s = stat(pid)
            if s:
                row[name] = {"cpu": s[0], "rss_kib": s[1]}
        pg = [stat(p) for p in pids_named("postgres")]
        row["postgres"] = {"cpu": sum(s[0] for s in pg if s)}
        row["nginx"] = {"cpu": sum(s[0] for s in (stat(p) for p in nginx_pids()) if s)}
        try:
            row["done"] = self.progress()
        except Exception as e:  # a slow poll is a missing sample, not a failed run
            row["done"] = None
            row["err"] = str(e)[:200]
        return row

    def run(self):
        while not self.stopped.is_set():
            self.rows.append(self.snap())
            self.stopped.wait(self.every)

    def stop(self):
        self.stopped.set()
        self.join()
        self.rows.append(self.snap())


# ---------------------------------------------------------------- the stack
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get_json(url, timeout=30):
    return json.load(urllib.request.urlopen(url, timeout=timeout))


def post_json(url, body, timeout=120):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        return json.load(urllib.request.urlopen(req, timeout=timeout))
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"POST {url}: {e.code} {e.read()[:500]!r}")


def wait_http(url, secs=60):
    deadline = time.time() + secs
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not answer within {secs} s")
            time.sleep(0.2)


class Stack:
    def __init__(self, phase):
        self.phase = phase
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs = {}
        self.logf = open(f"{ROOT}/results/{phase}.log", "w")

    def redis_up(self):
        os.makedirs(f"{ROOT}/redis", exist_ok=True)
        p = subprocess.Popen(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", f"{ROOT}/redis", "--loglevel", "warning"],
                             stdout=self.logf, stderr=self.logf)
        self.procs["redis"] = p
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                return
            time.sleep(0.2)
        raise RuntimeError("redis-server did not start")

    def redis_down(self):
        p = self.procs.pop("redis")
        p.send_signal(signal.SIGKILL)  # a crash: nothing saved (and --save '' anyway)
        p.wait()

    def start(self, workers=True):
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)",
                        "-c", f"CREATE DATABASE {DB}"], check=True, capture_output=True)
        self.redis_up()
        broker = subprocess.Popen([BROKER, "--tcp-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=self.logf, text=True)
        tcp = re.search(r"tcp=(\S+)", broker.stdout.readline()).group(1)
        self.procs["broker"] = broker
        self.env = {**os.environ, "DATABASE_URL": f"{PG}/{DB}", "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}",
                    "REDIS_PREFIX": "wtbench", "NSQD_TCP_ADDRESS": tcp, "PER_HOST_CONCURRENCY": str(W),
                    "CRAWL_MAX_PAGES": "200000", "ALLOW_PRIVATE_TARGETS": "true",
                    "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "warn,wordtally::actors::submitter=info,wordtally::queue=info")}
        self.procs["serve"] = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--workers", "0"],
                                               env=self.env, stdout=self.logf, stderr=self.logf)
        wait_http(self.base + "/healthz")
        if workers:
            self.start_workers()

    def start_workers(self):
        for k in (1, 2):
            self.procs[f"worker{k}"] = subprocess.Popen([BIN, "worker", "--workers", str(W)], env=self.env,
                                                        stdout=self.logf, stderr=self.logf)
        time.sleep(0.5)  # they connect to Redis and NSQ

    def pids(self):
        return {k: p.pid for k, p in self.procs.items()}

    def stop(self):
        order = ["worker1", "worker2", "serve", "broker", "redis"]
        for k in order:
            p = self.procs.get(k)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = {}


def rotate_access_log(phase):
    """Starts a fresh access log for this phase (nginx reopens its logs on USR1)."""
    for name in ("access.log", "offsite.log"):
        path = f"{LOGS}/{name}"
        if os.path.exists(path):
            os.rename(path, f"{LOGS}/{name}.before-{phase}-{int(time.time())}")
    os.kill(int(open(f"{ROOT}/nginx/nginx.pid").read()), signal.SIGUSR1)
    time.sleep(0.5)


def keep_access_log(phase):
    time.sleep(1.5)  # nginx flushes its buffered log every second
    os.kill(int(open(f"{ROOT}/nginx/nginx.pid").read()), signal.SIGUSR1)
    for name in ("access.log", "offsite.log"):
        path = f"{LOGS}/{name}"
        if os.path.exists(path):
            os.rename(path, f"{ROOT}/results/{phase}.{name}")
    os.kill(int(open(f"{ROOT}/nginx/nginx.pid").read()), signal.SIGUSR1)
    time.sleep(0.5)


LINE = re.compile(r'^(\S+) (\S+) (\S+) "([^"]*)" "([^"]*)" (\d+) (\d+)$')


def access_report(phase):
    """Requests per URI and per decoded path; what was fetched that must not be."""
    per_uri, per_path, by_part, hosts, status = (collections.Counter() for _ in range(5))
    n = bytes_sent = 0
    first = last = None
    for line in open(f"{ROOT}/results/{phase}.access.log"):
        m = LINE.match(line.strip())
        if not m:
            by_part["(unparsed)"] += 1
            continue
        msec, host, port, uri, path, st, b = m.groups()
        n += 1
        bytes_sent += int(b)
        first = first or float(msec)
        last = float(msec)
        per_uri[(host.lower(), uri)] += 1
        if path != "/trap.html":  # every /trap/... URI is this one file (try_files)
            per_path[path] += 1
        hosts[host] += 1
        status[st] += 1
        part = uri.split("/")[1] if uri.count("/") > 1 else uri.split("?")[0]
        by_part[part] += 1
    off = 0
    if os.path.exists(f"{ROOT}/results/{phase}.offsite.log"):
        off = sum(1 for _ in open(f"{ROOT}/results/{phase}.offsite.log"))
    dup_uri = {f"{h}{u}": c for (h, u), c in per_uri.items() if c > 1}
    dup_path = {p: c for p, c in per_path.items() if c > 1}
    p_paths = {p for p in per_path if p.startswith("/p/")}
    expect = {f"/p/{i // 1000:03d}/{i}.html" for i in range(N)}
    return {"requests": n, "bytes_sent": bytes_sent, "distinct_uris": len(per_uri), "distinct_paths": len(per_path),
            "uris_fetched_twice_or_more": len(dup_uri), "dup_uri_examples": dict(list(dup_uri.items())[:20]),
            "paths_fetched_twice_or_more": len(dup_path), "dup_path_examples": dict(list(dup_path.items())[:20]),
            "by_part": dict(by_part), "hosts": dict(hosts), "status": dict(status), "offsite_listener_requests": off,
            "p_pages_fetched": len(p_paths & expect), "p_pages_missing": len(expect - p_paths),
            "p_unexpected": sorted(p_paths - expect)[:20], "log_span_s": (last - first) if first else None}


def export_rows(base, batch=None):
    rows = []
    q = f"&batch={batch}" if batch is not None else ""
    with urllib.request.urlopen(f"{base}/api/tasks/export?format=jsonl{q}", timeout=600) as r:
        for line in r:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def windows(finished_ms, size=1000):
    """Wall seconds of each run of `size` consecutive completions (by finished time)."""
    f = sorted(finished_ms)
    return [(f[min(k + size, len(f)) - 1] - f[k]) / 1000 for k in range(0, len(f) - size + 1, size)]


def db_finished_ms(where):
    """updated_at (epoch ms, the DB writer's clock when it stored the result) of the
    finished tasks matching `where`, from the bench database (kept until the next phase)."""
    out = subprocess.run(["psql", f"{PG}/{DB}", "-Atc",
                          f"SELECT updated_at FROM task WHERE task_status = 'FINISHED' AND {where}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return [int(x) for x in out]


def cpu_per_page(rows, name, lo, hi):
    """CPU seconds of `name` per page between the samples where done first reached lo and hi."""
    a = next((r for r in rows if r.get("done") is not None and r["done"] >= lo and name in r), None)
    b = next((r for r in rows if r.get("done") is not None and r["done"] >= hi and name in r), None)
    if not a or not b or b["done"] == a["done"]:
        return None
    return (b[name]["cpu"] - a[name]["cpu"]) / (b["done"] - a["done"])


def rss_summary(rows, names):
    out = {}
    for name in names:
        v = [r[name]["rss_kib"] / 1024 for r in rows if name in r and "rss_kib" in r[name]]
        if v:
            q = len(v) // 4
            out[name] = {"min": round(min(v), 1), "max": round(max(v), 1), "first_quarter_max": round(max(v[:max(q, 1)]), 1),
                         "last_quarter_max": round(max(v[-max(q, 1):]), 1), "end": round(v[-1], 1), "samples": len(v)}
    return out


def cpu_totals(rows, names):
    return {n: round(rows[-1][n]["cpu"] - rows[0][n]["cpu"], 2) for n in names if n in rows[0] and n in rows[-1]}


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# ---------------------------------------------------------------- phases
def phase_crawl():
    st = Stack("crawl")
    rotate_access_log("crawl")
    try:
        st.start()
        batch = {}

        def progress():
            if "id" not in batch:
                return 0
            b = get_json(f"{st.base}/api/batches/{batch['id']}")
            batch["last"] = b
            return b["total"] - b["not_started"] - b["pending"]

        load0 = loadavg()
        sampler = Sampler(st.pids(), progress)
        sampler.start()
        time.sleep(1.0)
        t0 = time.time()
        created = post_json(st.base + "/api/crawls", CRAWL)
        batch["id"] = created["batch_id"]
        log(f"crawl batch {batch['id']} started, load {load0}")
        deadline = t0 + float(os.environ.get("CRAWL_TIMEOUT", "3600"))
        last_note = 0
        while True:
            b = get_json(f"{st.base}/api/batches/{batch['id']}")
            if b["total"] > 0 and b["not_started"] == 0 and b["pending"] == 0:
                break
            if time.time() > deadline:
                raise RuntimeError(f"crawl not finished: {json.dumps(b)[:800]}")
            if time.time() - last_note > 15:
                last_note = time.time()
                log(f"  total {b['total']} finished {b['finished']} pending {b['pending']} waiting {b['not_started']} load {loadavg()}")
            time.sleep(0.2)
        seconds = time.time() - t0
        load1 = loadavg()
        sampler.stop()
        log(f"crawl done in {seconds:.1f} s")
        rows = export_rows(st.base, batch["id"])
        keep_access_log("crawl")
    finally:
        st.stop()
    outcomes = collections.Counter(r.get("outcome") for r in rows)
    fetched = [r for r in rows if r.get("outcome") != "skipped"]
    per_page = {r["address"]: (r.get("result") or {}).get("words_count") for r in rows}
    wrong = [(i, per_page.get(page_url(i)), i % 7) for i in range(N) if per_page.get(page_url(i)) != i % 7]
    fin = [r["result"]["timestamp"] for r in fetched if r.get("result")]
    win = windows(fin)
    dbwin = windows(db_finished_ms(f"batch_id = {batch['id']} AND outcome IS DISTINCT FROM 'skipped'"))
    mid = len(win) // 2
    depth = collections.Counter(r.get("depth") for r in rows)
    parts = collections.Counter(r["address"].split("/")[3] for r in rows)
    s = sampler.rows
    done_total = len(rows)
    res = {"phase": "crawl", "seconds": seconds, "load_before": load0, "load_after": load1, "tasks": len(rows),
           "fetched_tasks": len(fetched), "pages_per_s": len(fetched) / seconds, "outcomes": dict(outcomes),
           "tasks_queued_more_than_once": sum(1 for r in rows if (r.get("attempts") or 0) > 1),
           "skipped_parts": dict(collections.Counter(r["address"].split("/")[3] for r in rows if r.get("outcome") == "skipped")),
           "task_parts": dict(parts), "depths": dict(sorted(depth.items(), key=lambda kv: (kv[0] is None, kv[0]))),
           "p_count_mismatches": len(wrong), "p_count_mismatch_examples": wrong[:10],
           "total_python_p": sum(per_page.get(page_url(i)) or 0 for i in range(N)), "expected_python_p": MANIFEST["total_python_p"],
           "batch": batch.get("last"), "crawl": b.get("crawl"),
           "windows_1000_s": [round(x, 3) for x in win],
           "db_windows_1000_s": [round(x, 3) for x in dbwin],
           "db_first_1000_s": dbwin[0] if dbwin else None, "db_last_1000_s": dbwin[-1] if dbwin else None,
           "db_median_window_s": statistics.median(dbwin) if dbwin else None,
           "first_1000_s": win[0] if win else None, "last_1000_s": win[-1] if win else None,
           "steady_first_s": win[5] if len(win) > 12 else None, "steady_last_s": win[-6] if len(win) > 12 else None,
           "median_window_s": statistics.median(win) if win else None, "mid_window_s": win[mid] if win else None,
           "cpu_per_page_ms": {n: {"first_10pct": _ms(cpu_per_page(s, n, 0.02 * done_total, 0.12 * done_total)),
                                   "last_10pct": _ms(cpu_per_page(s, n, 0.88 * done_total, 0.98 * done_total))}
                               for n in ("serve", "worker1", "worker2", "postgres", "redis", "broker", "nginx")},
           "cpu_s": cpu_totals(s, ("serve", "worker1", "worker2", "postgres", "redis", "broker", "nginx")),
           "rss_mib": rss_summary(s, ("serve", "worker1", "worker2", "redis", "broker")),
           "access": access_report("crawl"), "samples": s}
    json.dump(res, open(f"{ROOT}/results/crawl.json", "w"))
    summary(res)
    return res


def _ms(x):
    return None if x is None else round(x * 1000, 4)


def phase_list():
    st = Stack("list")
    rotate_access_log("list")
    try:
        st.start()
        done = {}

        def progress():
            s = get_json(f"{st.base}/api/tasks?limit=1")["stats"]
            done["last"] = s
            return s["finished"]

        load0 = loadavg()
        sampler = Sampler(st.pids(), progress)
        sampler.start()
        time.sleep(1.0)
        urls = [page_url(i) for i in range(LIST_N)]
        t0 = time.time()
        batches = []
        for k in range(0, LIST_N, 10_000):
            batches.append(post_json(st.base + "/api/tasks", {"addresses": urls[k:k + 10_000], **OPTIONS})["batch_id"])
        t_sub = time.time() - t0
        log(f"list: {N} submitted in {t_sub:.1f} s, load {load0}")
        deadline = t0 + 3600
        last_note = 0
        while True:
            s = get_json(f"{st.base}/api/tasks?limit=1")["stats"]
            if s["finished"] >= LIST_N:
                break
            if time.time() > deadline:
                raise RuntimeError(f"list not finished: {s}")
            if time.time() - last_note > 15:
                last_note = time.time()
                log(f"  finished {s['finished']} load {loadavg()}")
            time.sleep(0.2)
        seconds = time.time() - t0
        load1 = loadavg()
        sampler.stop()
        log(f"list done in {seconds:.1f} s")
        rows = []
        for b in batches:
            rows += export_rows(st.base, b)
        keep_access_log("list")
    finally:
        st.stop()
    per_page = {r["address"]: (r.get("result") or {}).get("words_count") for r in rows}
    wrong = [i for i in range(LIST_N) if per_page.get(page_url(i)) != i % 7]
    fin = [r["result"]["timestamp"] for r in rows if r.get("result")]
    win = windows(fin)
    dbwin = windows(db_finished_ms("TRUE"))
    s = sampler.rows
    res = {"phase": "list", "seconds": seconds, "submit_seconds": t_sub, "load_before": load0, "load_after": load1,
           "tasks": len(rows), "pages_per_s": len(rows) / seconds, "outcomes": dict(collections.Counter(r.get("outcome") for r in rows)),
           "count_mismatches": len(wrong), "total_python": sum(v or 0 for v in per_page.values()),
           "windows_1000_s": [round(x, 3) for x in win], "first_1000_s": win[0] if win else None,
           "db_windows_1000_s": [round(x, 3) for x in dbwin], "db_median_window_s": statistics.median(dbwin) if dbwin else None,
           "db_first_1000_s": dbwin[0] if dbwin else None, "db_last_1000_s": dbwin[-1] if dbwin else None,
           "last_1000_s": win[-1] if win else None, "median_window_s": statistics.median(win) if win else None,
           "cpu_per_page_ms": {n: {"first_10pct": _ms(cpu_per_page(s, n, 0.02 * LIST_N, 0.12 * LIST_N)),
                                   "last_10pct": _ms(cpu_per_page(s, n, 0.88 * LIST_N, 0.98 * LIST_N))}
                               for n in ("serve", "worker1", "worker2", "postgres", "redis", "broker", "nginx")},
           "cpu_s": cpu_totals(s, ("serve", "worker1", "worker2", "postgres", "redis", "broker", "nginx")),
           "rss_mib": rss_summary(s, ("serve", "worker1", "worker2", "redis", "broker")),
           "access": access_report("list"), "samples": s}
    json.dump(res, open(f"{ROOT}/results/list.json", "w"))
    summary(res)
    return res


def stream_added():
    """entries-added of the queue's stream (jobs ever XADDed since this Redis started)."""
    keys = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "--scan", "--pattern", "wtbench*"],
                          capture_output=True, text=True).stdout.split()
    best = 0
    for k in keys:
        if subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "TYPE", k], capture_output=True, text=True).stdout.strip() != "stream":
            continue
        out = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "XINFO", "STREAM", k], capture_output=True, text=True).stdout.split("\n")
        for a, b in zip(out, out[1:]):
            if a.strip() == "entries-added":
                best = max(best, int(b))
    return best


def phase_recovery():
    st = Stack("recovery")
    rotate_access_log("recovery")
    try:
        st.start(workers=False)
        urls = [page_url(i) for i in range(RECOVER_N)]
        t0 = time.time()
        for k in range(0, RECOVER_N, 10_000):
            post_json(st.base + "/api/tasks", {"addresses": urls[k:k + 10_000], **OPTIONS})
        t_sub = time.time() - t0
        s = get_json(f"{st.base}/api/tasks?limit=1")["stats"]
        queued_before = stream_added()
        log(f"recovery: {RECOVER_N} submitted in {t_sub:.1f} s with no worker running; stats {s}; stream entries-added {queued_before}")
        time.sleep(6)  # one sweep sees the queue's generation before the loss
        load0 = loadavg()
        st.logf.flush()
        log_mark = os.path.getsize(f"{ROOT}/results/recovery.log")
        # The loss: Redis dies and comes back empty.
        st.redis_down()
        t_loss = time.time()
        st.redis_up()
        st.start_workers()
        trace = []
        deadline = t_loss + 1800
        while True:
            s = get_json(f"{st.base}/api/tasks?limit=1")["stats"]
            added = stream_added()
            trace.append({"t": time.time() - t_loss, "added": added, "finished": s["finished"]})
            if s["finished"] >= RECOVER_N:
                break
            if time.time() > deadline:
                raise RuntimeError(f"not recovered: {s}")
            if len(trace) % 100 == 0:
                log(f"  +{trace[-1]['t']:.1f} s re-queued {added} finished {s['finished']}")
            time.sleep(0.1)
        seconds = time.time() - t_loss
        load1 = loadavg()
        keep_access_log("recovery")
    finally:
        st.stop()
    notice = None
    recover_lines = []
    with open(f"{ROOT}/results/recovery.log", errors="replace") as f:
        f.seek(log_mark)
        for line in f:
            if "lost its jobs" in line or "re-queued" in line or "group created" in line:
                recover_lines.append(line.strip()[:300])
    t_first = next((p["t"] for p in trace if p["added"] > 0), None)
    t_all = next((p["t"] for p in trace if p["added"] >= RECOVER_N), None)
    t_99 = next((p["t"] for p in trace if p["added"] >= 0.99 * RECOVER_N), None)
    res = {"phase": "recovery", "tasks": RECOVER_N, "submit_seconds": t_sub, "load_before": load0, "load_after": load1,
           "stream_added_before_loss": queued_before, "first_requeue_s": t_first, "all_requeued_s": t_all,
           "requeued_99pct_s": t_99, "all_finished_s": seconds,
           "requeue_rate_per_s": (RECOVER_N / (t_all - t_first)) if t_all and t_first is not None and t_all > t_first else None,
           "log_lines": recover_lines[:12] + (["…"] if len(recover_lines) > 14 else []) + recover_lines[-2:],
           "trace": trace, "access": access_report("recovery")}
    json.dump(res, open(f"{ROOT}/results/recovery.json", "w"))
    summary(res)
    return res


def summary(res):
    skip = {"samples", "trace", "windows_1000_s", "db_windows_1000_s"}
    short = {k: v for k, v in res.items() if k not in skip}
    if "windows_1000_s" in res:
        w = res["windows_1000_s"]
        short["windows_1000_s(first 8, last 8)"] = (w[:8], w[-8:])
    if "db_windows_1000_s" in res:
        w = res["db_windows_1000_s"]
        short["db_windows_1000_s(first 8, last 8)"] = (w[:8], w[-8:])
    print(json.dumps(short, indent=1, default=str), flush=True)


if __name__ == "__main__":
    for ph in (sys.argv[1] if len(sys.argv) > 1 else "all").split(","):
        if ph == "all":
            phase_crawl(); phase_list(); phase_recovery()
        else:
            {"crawl": phase_crawl, "list": phase_list, "recovery": phase_recovery}[ph]()
