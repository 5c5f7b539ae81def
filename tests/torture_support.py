"""The operating torture (issue 11): secret shapes, local endpoints that fail and hang, rule
files that use them, and leak counts over everything an operator can see.

Shared by tests/test_service_torture.py (a small fixed sample) and bench/torture_ops.py.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Eight shapes a secret takes in practice; each must vanish from everything an operator sees.
SECRET_SHAPES: dict[str, str] = {
    "newline": "Bearer nl-7f3a\nq-second-line",
    "non-ascii": "clé-sécrète-ünï-☃-42",
    "quotes": 'q"uo\'te-s3cr"et',
    "percent": "pct%41%2Fsecret%zz-99",
    "long": "long-" + "0123456789abcdef" * 16,
    "base64": "c2VjcmV0LWJhc2U2NC1zaGFwZQ+/==",
    "url": "https://tok:pa55@example.invalid/cb?k=v&x=y%20z",
    "short": "Zq8#w",
}
SECRET_ENV = {f"TR_SECRET_{i}": value for i, value in enumerate(SECRET_SHAPES.values(), 1)}
SHAPE_OF = dict(zip(SECRET_ENV, SECRET_SHAPES, strict=True))


def spellings(secret: str) -> set[str]:
    """How a leaked secret shows up: as is, or escaped by repr, JSON, bytes repr or a URL.
    (Written here independently of the code under test, which has its own list.)"""
    found = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret.encode())[2:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        secret.replace("&", "&amp;").replace('"', "&#34;").replace("'", "&#39;"),
    }
    return {s for s in found if s}


def occurrences(text: str) -> int:
    return sum(text.count(form) for s in SECRET_SHAPES.values() for form in spellings(s))


class Endpoint:
    """A local HTTP API. `echo`: 200 with the request (path, headers, body) echoed back, as
    a careless API does. `bad`: 500 for the first `fail` requests, then hangs `hang` seconds.
    Every request's arrival time is kept by path."""

    def __init__(self, mode: str = "echo", fail: int = 1, hang: float = 60.0) -> None:
        self.mode, self.fail, self.hang = mode, fail, hang
        self.arrivals: list[tuple[float, str]] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                with endpoint._lock:
                    endpoint.arrivals.append((time.time(), self.path))
                    count = len(endpoint.arrivals)
                if endpoint.mode == "bad":
                    if count > endpoint.fail:
                        endpoint._release.wait(endpoint.hang)
                    status, answer = 500, b'{"error": "internal"}'
                else:
                    echoed = {"path": self.path, "headers": dict(self.headers), "body": body}
                    status, answer = 200, json.dumps(echoed).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """End the hangs now (the endpoint recovers)."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


TOPICS = Path(__file__).resolve().parent / "data" / "service_rules" / "topics.yaml"


def _rule_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TOPICS, folder / "topics.yaml")


def _yaml(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML: no quoting surprises


SWIFT_TRIGGER = """\
  - id: {id}
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK, gcn.classic.voevent.SWIFT_XRT_POSITION,
             gcn.classic.voevent.SWIFT_UVOT_POS]
    event_id: trig_id
    event_time: burst_time
    expiry: 36500 d
    fields:
      trig_id: {{xpath: "//Param[@name='TrigID']/@value", as: int}}
      burst_time: {{xpath: "//ISOTime", as: time}}
      ra: {{xpath: "//Position2D/Value2/C1", as: angle}}
      dec: {{xpath: "//Position2D/Value2/C2", as: angle}}
    conditions:
      always: trig_id > 0
    actions:
"""


def secret_rules(folder: Path, echo_url: str) -> Path:
    """Rules whose actions use all eight secrets every way an action can: webhook headers,
    query and body against an echoing API, a header no HTTP client accepts (the newline),
    commands printing their environment and reprs, a plugin script doing the same."""
    _rule_folder(folder)
    refs = {name: f"${{env:{name}}}" for name in SECRET_ENV}
    # HTTP headers take neither a newline nor a non-Latin-1 letter: those two go elsewhere.
    in_header = {k: v for k, v in refs.items() if SHAPE_OF[k] not in ("newline", "non-ascii")}
    printer = folder.parent / "print_env.py"
    printer.write_text(
        "import json, os, sys\n"
        "values = {k: v for k, v in os.environ.items() if k.startswith('S')}\n"
        "print(values)\nprint(json.dumps(values))\n"
        "print([v.encode() for v in values.values()])\n"
        "sys.stderr.write(repr(sys.argv))\n"
        "sys.exit(1)\n"
    )
    actions = [
        {
            "type": "webhook",
            "url": echo_url + "/hook",
            "headers": {f"X-{k}": v for k, v in in_header.items()},
            "query": refs,
            "body": {"secrets": refs, "event": "{event_id}"},
            "timeout": 10,
        },
        {
            "type": "webhook",
            "url": echo_url + "/newline",
            "headers": {"Authorization": refs["TR_SECRET_1"]},
            "timeout": 10,
        },
        {"type": "command", "argv": ["env"], "env": {f"S{k}": v for k, v in refs.items()}},
        {
            "type": "command",
            "argv": [sys.executable, str(printer), *refs.values()],
            "env": {f"S{k}": v for k, v in refs.items()},
        },
        {
            "type": "plugin",
            "script": str(printer),
            "args": list(refs.values()),
            "env": {f"S{k}": v for k, v in refs.items()},
        },
        {"type": "notice", "path": "notices/{event_id}-{offset}.xml"},
    ]
    lines = ["schema_version: 1", "triggers:", SWIFT_TRIGGER.format(id="secrets").rstrip()]
    lines += [f"      - {_yaml(a)}" for a in actions]
    (folder / "secrets.yaml").write_text("\n".join(lines) + "\n")
    return folder


def destination_rules(folder: Path, bad_url: str, good_url: str, bad_timeout: float = 70) -> Path:
    """Two triggers on the same notices: one calls a failing API, the other writes files and
    calls a healthy one. The second must not wait for the first."""
    _rule_folder(folder)
    bad = [
        {
            "type": "webhook",
            "url": f"{bad_url}/bad",
            "timeout": bad_timeout,
            "request_timeout": max(1, bad_timeout - 1),
            "attempts": 1,
        }
    ]
    good = [
        {"type": "notice", "path": "good/{event_id}-{topic}-{offset}.xml"},
        {"type": "webhook", "url": good_url + "/good", "timeout": 5},
    ]
    lines = ["schema_version: 1", "triggers:"]
    pairs = [("to-bad", bad), ("to-good", good)] if bad_url else [("to-good", good)]
    for name, actions in pairs:
        lines.append(SWIFT_TRIGGER.format(id=name).rstrip())
        lines += [f"      - {_yaml(a)}" for a in actions]
    (folder / "destinations.yaml").write_text("\n".join(lines) + "\n")
    return folder


def command_rules(folder: Path, *actions: dict[str, Any]) -> Path:
    """One trigger running these actions (a command, say) for every Swift notice."""
    _rule_folder(folder)
    lines = ["schema_version: 1", "triggers:", SWIFT_TRIGGER.format(id="cmd").rstrip()]
    lines += [f"      - {_yaml(action)}" for action in actions]
    (folder / "command.yaml").write_text("\n".join(lines) + "\n")
    return folder


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tracerules.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return done.stdout + done.stderr


@contextlib.contextmanager
def dashboard(store: Path, rules: Path) -> Iterator[str]:
    """`tracerules serve` on a free loopback port; its base URL."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracerules.cli",
            "serve",
            "--store",
            str(store),
            "--rules",
            str(rules),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _page(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return str(answer.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as err:
        return str(err.read().decode("utf-8", "replace"))


def leak_counts(work: Path, store: Path, out: Path, rules: Path) -> dict[str, int]:
    """Occurrences of the eight secrets (in any spelling) in everything an operator sees."""
    from tests.sql import rows_at

    dump = subprocess.run(
        ["sqlite3", str(store), ".dump"], capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8", "replace")
    logs = "".join(p.read_text(errors="replace") for p in sorted(work.glob("service-*.log")))
    events = rows_at(store, "SELECT trigger, event_id FROM events")
    notices = [n for (n,) in rows_at(store, "SELECT id FROM notices")]
    shown = "".join(
        _cli("events", "show", t, e, "--store", str(store), "--rules", str(rules), *fmt)
        for t, e in events
        for fmt in ((), ("--format", "json"))
    )
    with dashboard(store, rules) as url:
        paths = ["/", "/triggers", "/notices", "/log"]
        paths += [f"/triggers/{t}" for t in {t for t, _ in events}]
        paths += [f"/notices/{n}" for n in notices]
        pages = "".join(_page(url + p) for p in paths)
    report_file = work / "report.html"
    replay = work / "replay-products"
    _cli(
        "dry-run",
        str(store),
        "--rules",
        str(rules),
        "--report",
        str(report_file),
        "--products",
        str(replay),
        "--quiet",
        "--store",
        str(work / "replay.sqlite"),
    )
    report = report_file.read_text(errors="replace") if report_file.exists() else ""
    files = [p for root in (out, replay) if root.exists() for p in root.rglob("*") if p.is_file()]
    products = "".join(p.read_bytes().decode("utf-8", "replace") for p in files)
    return {
        "store dump": occurrences(dump),
        "logs": occurrences(logs),
        "events show": occurrences(shown),
        "dashboard": occurrences(pages),
        "report": occurrences(report),
        "products": occurrences(products),
    }


# -- commands that leave marks, and kill -9 trials ---------------------------------------------

MARKER = """\
import os, sys, time
marks, seconds = sys.argv[1], float(sys.argv[2])
key = sys.argv[3] if len(sys.argv) > 3 else "-"
with open(marks, "a") as f:
    f.write(f"start {os.getpid()} {time.time()} {key}\\n")
time.sleep(seconds)
with open(marks, "a") as f:
    f.write(f"end {os.getpid()} {time.time()} {key}\\n")
"""


def marker_action(folder: Path, marks: Path, seconds: float, key: str = "-") -> dict[str, Any]:
    """A command that writes `start` and `end` lines (pid, time, key) around a sleep."""
    script = folder / "marker.py"
    script.write_text(MARKER)
    argv = [sys.executable, str(script), str(marks), str(seconds), key]
    return {"type": "command", "argv": argv, "timeout": max(10.0, seconds * 3)}


def read_marks(path: Path) -> list[tuple[str, int, float, str]]:
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(kind, int(pid), float(at), key) for kind, pid, at, key in rows]


def overlapping_runs(marks: list[tuple[str, int, float, str]]) -> int:
    """Runs that started while an earlier run of the same action was still alive."""
    runs: dict[str, list[tuple[float, float]]] = {}
    ends = {pid: at for kind, pid, at, _ in marks if kind == "end"}
    for kind, pid, at, key in marks:
        if kind == "start":
            runs.setdefault(key, []).append((at, ends.get(pid, float("inf"))))
    overlaps = 0
    for spans in runs.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            overlaps += start < end
    return overlaps


def swift_copies(count: int, mark: str) -> list[tuple[str, bytes, str]]:
    """`count` distinct real Swift notices on subscribed topics, each with its own comment."""
    from tests.service_harness import SUBSCRIBED, notice_files, topic_of

    base = [p for p in notice_files("swift_chain") if topic_of(p) in SUBSCRIBED]
    out = []
    for i in range(count):
        path = base[i % len(base)]
        tail = f"\n<!-- {mark} {i} -->\n".encode()
        out.append((topic_of(path), path.read_bytes() + tail, f"{path.name}#{mark}{i}"))
    return out


def kill_trials(
    work: Path, bootstrap: str, trials: int, per_trial: int = 8, seed: int = 20261130
) -> dict[str, int]:
    """kill -9 of `tracerules run` while its commands run, `trials` times, then a last run
    to the end: notices lost, actions run while an earlier copy was alive, reruns."""
    import random
    import uuid

    from tests.service_harness import Produced, Publisher, ServiceProcess, iso_now

    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    marks = work / "marks.txt"
    action = marker_action(work, marks, 0.4, "{topic}-{partition}-{offset}")
    product = {"type": "notice", "path": "kept/{topic}-{partition}-{offset}.xml"}
    rules = command_rules(work / "rules", action, product)
    service = ServiceProcess(work, bootstrap, rules=rules)
    args = ("--start", iso_now(), "-X", f"group.instance.id=torture-{uuid.uuid4().hex[:8]}")
    publisher = Publisher(bootstrap)
    produced: list[Produced] = []
    try:
        for trial in range(trials):
            service.start(*args)
            service.wait_assigned()
            before = len(read_marks(marks))
            batch = swift_copies(per_trial, f"trial{trial}")
            sender = threading.Thread(
                target=lambda b=batch: produced.extend(publisher.send(b, pause=0.05))
            )
            sender.start()
            target = before + rng.randrange(1, per_trial)  # some commands running or done
            deadline = time.monotonic() + 30
            while len(read_marks(marks)) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.3))
            service.kill()
            sender.join(30)
        service.start(*args)
        service.wait_processed(produced, timeout=180)
        assert service.stop() == 0
    finally:
        service.close()
    stored = {
        (t, p, o) for t, p, o in service.sql_rows('SELECT topic, partition, "offset" FROM notices')
    }
    lost = sum((p.topic, p.partition, p.offset) not in stored for p in produced)
    runs = read_marks(marks)
    starts = [key for kind, _, _, key in runs if kind == "start"]
    return {
        "trials": trials,
        "notices": len(produced),
        "lost": lost,
        "overlapping": overlapping_runs(runs),
        "reruns": len(starts) - len(set(starts)),
        "not run": len(produced) - len(set(starts)),
    }


def destination_run(
    work: Path, bootstrap: str, bad_url: str | None, good_url: str, count: int, pace: float
) -> dict[str, list[float]]:
    """`count` notices through the destination rules (with or without the failing API): the
    healthy destination's action delays (planned -> done) and the ingestion latencies
    (Kafka create time -> decision), in seconds."""
    from tests.service_harness import Publisher, ServiceProcess, wait_until

    rules = destination_rules(work / "rules", bad_url, good_url)
    service = ServiceProcess(work, bootstrap, rules=rules)
    try:
        service.start("--start", "latest")
        service.wait_assigned()
        produced = Publisher(bootstrap).send(swift_copies(count, work.name), pause=pace)

        def good_done() -> bool:
            done = service.sql_rows(
                "SELECT count(*) FROM actions WHERE trigger='to-good' AND status='done'"
            )[0][0]
            planned = service.sql_rows("SELECT count(*) FROM actions WHERE trigger='to-good'")[0][0]
            return bool(service.processed(produced) and planned and done == planned)

        wait_until(good_done, 120, "the healthy destination's actions")
        delays = service.sql_rows(
            "SELECT updated_at - created_at FROM actions WHERE trigger='to-good'"
        )
        ingestion = service.sql_rows(
            "SELECT d.at - n.created FROM decisions d JOIN notices n ON n.id = d.notice_id "
            "WHERE d.trigger='to-good' AND n.created IS NOT NULL"
        )
        service.stop(timeout=60)
    finally:
        service.close()
    return {"delays": [float(d) for (d,) in delays], "ingestion": [float(i) for (i,) in ingestion]}


def wait_attempted(service: Any, produced: list[Any], timeout: float = 120) -> None:
    """Every notice evaluated and each of its actions run at least once (failing ones, which
    are tried again until their event expires, need not have settled)."""
    from tests.service_harness import wait_until

    def ready() -> bool:
        service.check_alive()
        unrun = service.sql_rows(
            "SELECT count(*) FROM actions WHERE status='running' OR "
            "(status='pending' AND retry_at IS NULL)"
        )[0][0]
        return bool(service.processed(produced) and not unrun)

    wait_until(ready, timeout, f"{len(produced)} notices and a first run of their actions")
