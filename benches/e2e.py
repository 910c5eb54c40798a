"""End to end over separate processes (issue 11 item 2).

Run: `cargo build --release --bin wordtally --example nsq_test_broker`, then
    python3 benches/e2e.py [prod|embedded] [TASKS] [WORKERS_PER_PROC]
prod:     serve --workers 0 + two `wordtally worker` + Postgres + Redis + the NSQ test broker
embedded: one `wordtally serve` (SQLite, in-process queue and bus, in-process workers)
Pages: ~49 KB slices of Debian's python3.11-doc HTML, served by our own nginx in /tmp on
port 18780 (not the system one). Tasks are submitted through POST /api/tasks in batches
of 1,000; the clock stops when the API says every task is finished. Prints tasks/s and
the CPU seconds (utime+stime from /proc/PID/stat) of every process per 1,000 tasks.
Postgres and Redis are shared with other users of the machine: their CPU is the delta of
all their processes during the run.
"""
import json, os, re, shutil, signal, subprocess, sys, time, urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("WORDTALLY_BIN", f"{REPO}/target/release/wordtally")  # another build, side by side
BROKER = f"{REPO}/target/release/examples/nsq_test_broker"
DOCS = "/usr/share/doc/python3.11-doc/html"
MODE = sys.argv[1] if len(sys.argv) > 1 else "prod"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
WPP = int(sys.argv[3]) if len(sys.argv) > 3 else 32
ROOT = "/tmp/wt-e2e"
PORT = 18780
PAGE = 49 * 1024
CLK = os.sysconf("SC_CLK_TCK")

# ~49 KB pages: the first PAGE bytes of every doc page at least that big.
html = f"{ROOT}/html"
if not os.path.isdir(html):
    os.makedirs(html)
    k = 0
    for d, _, files in sorted(os.walk(DOCS)):
        for f in sorted(files):
            body = open(os.path.join(d, f), "rb").read() if f.endswith(".html") else b""
            if len(body) >= PAGE:
                open(f"{html}/p{k}.html", "wb").write(body[:PAGE] + b"\n</body></html>\n")
                k += 1
os.makedirs(f"{ROOT}/nginx/logs", exist_ok=True)
npages = len(os.listdir(html))
open(f"{ROOT}/nginx/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {ROOT}/nginx/nginx.pid; error_log {ROOT}/nginx/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; keepalive_timeout 60s;
  types {{ text/html html; }}
  server {{ listen 127.0.0.1:{PORT}; root {html}; }} }}
""")

procs = {}
def start(name, args, env=None, **kw):
    p = subprocess.Popen(args, env={**os.environ, **(env or {})}, **kw)
    procs[name] = p
    return p

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK

def pids_named(name):
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]

def snapshot():
    s = {}
    for name, p in procs.items():
        ids = [p.pid] + [int(c) for c in subprocess.run(["pgrep", "-P", str(p.pid)],
                                                            capture_output=True, text=True).stdout.split()]
        s[name] = sum(cpu(i) for i in ids if os.path.exists(f"/proc/{i}"))
    for shared in ("postgres", "redis-server"):
        s[shared + " (all)"] = sum(cpu(i) for i in pids_named(shared) if os.path.exists(f"/proc/{i}"))
    return s

start("nginx", ["/usr/sbin/nginx", "-p", f"{ROOT}/nginx", "-c", f"{ROOT}/nginx/nginx.conf"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
log = open(f"{ROOT}/{MODE}.log", "w")
common = {"RUST_LOG": "warn", "ALLOW_PRIVATE_TARGETS": "true", "PER_HOST_CONCURRENCY": str(WPP),
          "MAX_SUBMIT_ADDRESSES": "10000"}
if MODE == "prod":
    broker = start("broker", [BROKER, "--tcp-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"],
                   stdout=subprocess.PIPE, text=True)
    tcp = re.search(r"tcp=(\S+)", broker.stdout.readline()).group(1)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
                    "DROP DATABASE IF EXISTS wt_e2e WITH (FORCE)", "-c", "CREATE DATABASE wt_e2e"], check=True)
    subprocess.run(["redis-cli", "EVAL", "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
                    "0", "wt-e2e:*"], capture_output=True)
    env = {**common, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/wt_e2e", "REDIS_URL": "redis://127.0.0.1:6379",
           "REDIS_PREFIX": "wt-e2e", "NSQD_TCP_ADDRESS": tcp}
    start("serve", [BIN, "serve", "--listen", "127.0.0.1:5078", "--workers", "0"], env, stdout=log, stderr=log)
    for i in range(2):
        start(f"worker{i + 1}", [BIN, "worker", "--workers", str(WPP)], env, stdout=log, stderr=log)
else:
    db = f"{ROOT}/embedded.db"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    env = {**common, "DATABASE_URL": f"sqlite://{db}"}
    # WRAP="valgrind --tool=callgrind ..." profiles the embedded serve (BENCHMARKS.md).
    wrap = os.environ.get("WRAP", "").split()
    start("serve", wrap + [BIN, "serve", "--listen", "127.0.0.1:5078", "--workers", str(WPP)], env,
          stdout=log, stderr=log)

base = "http://127.0.0.1:5078"
deadline = time.time() + (120 if os.environ.get("WRAP") else 30)
while True:
    try:
        urllib.request.urlopen(base + "/healthz")
        urllib.request.urlopen(f"http://127.0.0.1:{PORT}/p0.html")
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.1)

def post(body):
    req = urllib.request.Request(base + "/api/tasks", json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))

def stats():
    return json.load(urllib.request.urlopen(base + "/api/tasks?limit=1"))["stats"]

# WORDS=a,b,c (default python) and SCOPE=text|raw: what each task counts, e.g. the cost of
# counting 20 words per task against one (issue 11: at most 1.5x).
WORDS = os.environ.get("WORDS", "python").split(",")
SCOPE = os.environ.get("SCOPE", "text")
load = open("/proc/loadavg").read().split()[:3]
before = snapshot()
t0 = time.time()
for i in range(0, N, 1000):
    post({"addresses": [f"http://127.0.0.1:{PORT}/p{j % npages}.html?t={j}" for j in range(i, min(N, i + 1000))],
          "words": WORDS, "scope": SCOPE})
t_sub = time.time() - t0
deadline = time.time() + 600
while True:
    s = stats()
    if s["finished"] >= N or time.time() > deadline:
        break
    time.sleep(0.02)
t_all = time.time() - t0
after = snapshot()
print(f"mode={MODE} tasks={N} pages={npages}x{PAGE}B workers/proc={WPP} words={len(WORDS)} scope={SCOPE} "
      f"load_before={' '.join(load)}")
print(f"submit={t_sub:.2f}s all_finished={t_all:.2f}s rate={N / t_all:.0f} tasks/s "
      f"ok={s['ok']} http_error={s['http_error']} failed={s['failed']} truncated={s['truncated']}")
total = 0.0
for name in after:
    d = after[name] - before.get(name, 0.0)
    total += d
    print(f"  cpu {name:20s} {d:7.2f} s  = {d / N * 1000:6.3f} s per 1,000 tasks")
print(f"  cpu total                {total:7.2f} s  = {total / N * 1000:6.3f} s per 1,000 tasks "
      f"(machine has {os.cpu_count()} cores x {t_all:.2f} s = {os.cpu_count() * t_all:.2f} s)")
for name, p in reversed(list(procs.items())):
    p.send_signal(signal.SIGTERM)
for name, p in procs.items():
    try:
        code = p.wait(timeout=30)
    except Exception:
        p.kill()
        code = "killed"
    print(f"  {name} exit {code}")
