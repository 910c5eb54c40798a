"""Real pages through the production shape (run: python3 benches/real_pages.py after
`cargo build --release --bin wordtally --example nsq_test_broker` and `apt-get install python3-doc`): serve --workers 0 + two worker processes over Postgres, Redis and
NSQ (the project's test broker binary), 1060 tasks over Debian's python3-doc pages."""
import json, os, re, signal, subprocess, sys, time, urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = f"{REPO}/target/release/wordtally"
BROKER = f"{REPO}/target/release/examples/nsq_test_broker"
DOCS = "/usr/share/doc/python3.11-doc/html"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_count import reference_count  # independent stdlib implementation of the rules

DEFAULT = {"word": "python", "case_sensitive": False, "whole_word": True, "scope": "text"}
combos = [{"word": "python"}, {"word": "Python", "case_sensitive": True, "whole_word": False, "scope": "raw"}]
pages = sorted(
    os.path.relpath(os.path.join(d, f), DOCS)
    for d, _, files in os.walk(DOCS) for f in files if f.endswith(".html")
)
expected = {}
for p in pages:
    body = open(os.path.join(DOCS, p), "rb").read()
    for ci, c in enumerate(combos):
        o = {**DEFAULT, **c}
        expected[(p, ci)] = reference_count(body, o["word"], o["case_sensitive"], o["whole_word"], o["scope"])


procs = []
def start(args, env=None, **kw):
    p = subprocess.Popen(args, env={**os.environ, **(env or {})}, **kw)
    procs.append(p)
    return p

http = start(["python3", "-m", "http.server", "--bind", "127.0.0.1", "18766"], cwd=DOCS,
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
broker = start([BROKER, "--tcp-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"],
               stdout=subprocess.PIPE, text=True)
line = broker.stdout.readline()
tcp = re.search(r"tcp=(\S+)", line).group(1)
subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
                "DROP DATABASE IF EXISTS wt_scale WITH (FORCE)", "-c", "CREATE DATABASE wt_scale"], check=True)
env = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/wt_scale", "REDIS_URL": "redis://127.0.0.1:6379",
       "REDIS_PREFIX": "wt-scale", "NSQD_TCP_ADDRESS": tcp, "RUST_LOG": "warn"}
log = open(os.environ.get("REAL_PAGES_LOG", "/tmp/real_pages.log"), "w")
start([BIN, "serve", "--listen", "127.0.0.1:5077", "--workers", "0"], env, stdout=log, stderr=log)
for _ in range(2):
    start([BIN, "worker", "--allow-private-targets", "--workers", "16", "--per-host-concurrency", "16"], env,
          stdout=log, stderr=log)
base = "http://127.0.0.1:5077"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/healthz"); break
    except Exception:
        time.sleep(0.1)

def post(body):
    req = urllib.request.Request(base + "/api/tasks", json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))

ids = {}
t0 = time.time()
for ci, combo in enumerate(combos):
    for i in range(0, len(pages), 200):
        chunk = pages[i:i + 200]
        res = post({"addresses": [f"http://127.0.0.1:18766/{p}" for p in chunk], **combo})
        for p, t in zip(chunk, res["tasks"]):
            ids[t["id"]] = (p, ci)
t_sub = time.time() - t0
while True:
    s = json.load(urllib.request.urlopen(base + "/api/tasks?limit=1"))["stats"]
    if s["finished"] >= len(ids):
        break
    time.sleep(0.05)
t_all = time.time() - t0
bad = 0
for tid, key in ids.items():
    t = json.load(urllib.request.urlopen(f"{base}/api/tasks/{tid}"))
    if t["status"] != "FINISHED" or t["result"]["words_count"] != expected[key]:
        bad += 1
        print("MISMATCH", key, t["result"], expected[key])
rows = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "wt_scale", "-tAc",
                       "SELECT COUNT(*), COUNT(DISTINCT task_id), SUM(bytes_read) FROM result"],
                      capture_output=True, text=True).stdout.strip()
print(f"tasks={len(ids)} submit={t_sub:.2f}s all_finished={t_all:.2f}s rate={len(ids)/t_all:.0f}/s "
      f"mismatches={bad} result_rows,distinct,bytes={rows}")
for p in reversed(procs):
    p.send_signal(signal.SIGTERM)
for p in procs:
    try:
        print(p.args[0].split('/')[-1], p.args[1] if len(p.args) > 1 else '', "exit", p.wait(timeout=30))
    except Exception as e:
        print("no exit", p.args, e)
subprocess.run(["redis-cli", "--scan", "--pattern", "wt-scale:*"], capture_output=True)
