"""Kill -9 `aigc generate` at random moments and at every step of a batch.

Right after each kill: no picture without its record, and every record's picture is there,
under its final name or (a kill between the commit and the renames) under its temporary name
with the recorded bytes. After recovery (the next opening, by the next run or here): no
temporary left, pictures and records one to one, each file's SHA-256 the recorded one.

The runs are forked from one process that has imported everything once (a fresh interpreter
costs 2 s on the 2-core development machine; a fork a few milliseconds), with torch on one
thread so forking is safe. Hooks on os.replace / os.fsync / os.unlink and around the ledger
commit count the steps (a child can kill itself at step k) and, for the random kills, sleep a
little at each, so that most of a run's time is its writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigcguard.fileio import file_sha256
from aigcguard.provenance.credentials import c2pa as credentials
from aigcguard.provenance.credentials.ledger import Ledger
from aigcguard.service.pipeline import recover_output

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its runs"),
]

ROOT = Path(__file__).resolve().parents[1]
KEY = "kill test key"
FINAL = re.compile(r"^[^.].*-[0-9a-f]{16}\.png$")
TEMP = re.compile(r"^\.(?P<name>[^.].*-[0-9a-f]{16}\.png)\.[0-9a-f]{12}\.tmp$")

ZYGOTE = r"""
import json, os, signal, sys, time
import torch
torch.set_num_threads(1)  # no thread pool before a fork
from aigcguard.cli import main
from aigcguard.provenance.credentials.ledger import Ledger
import aigcguard.service.pipeline, aigcguard.watermark, tests.test_pipeline
import aigcguard.provenance.credentials.c2pa, aigcguard.provenance.credentials.labels

STATE = {"events": 0, "kill_at": 0, "sleep": 0.0}

def event():
    STATE["events"] += 1
    if STATE["kill_at"] and STATE["events"] >= STATE["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if STATE["sleep"]:
        time.sleep(STATE["sleep"])

def hooked(fn):
    def step(*args, **kwargs):
        event()
        return fn(*args, **kwargs)
    return step

os.replace, os.fsync, os.unlink = hooked(os.replace), hooked(os.fsync), hooked(os.unlink)
_record = Ledger.record

def record(self, records):
    event()
    _record(self, records)
    event()

Ledger.record = record
print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        STATE.update(kill_at=cmd["kill_at"], sleep=cmd["sleep"])
        fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 0
        try:
            main(["generate", "--config", cmd["config"], "--key", cmd["key"]],
                 standalone_mode=False)
        except BaseException as exc:
            print("child:", repr(exc))
            code = 1
        print("events:", STATE["events"])
        sys.stdout.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    print(json.dumps({"status": os.waitpid(pid, 0)[1]}), flush=True)
"""


class Zygote:
    """The forking parent of the runs, spoken to in JSON lines."""

    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.buffer = ""
        assert self.line(120) == "ready"

    def line(self, timeout: float) -> str:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while "\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("the forking parent did not answer")
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                raise RuntimeError("the forking parent died")
            self.buffer += chunk
        out, self.buffer = self.buffer.split("\n", 1)
        return out

    def run(self, config: Path, log: Path, *, kill_at=0, sleep=0.0, kill_after=None) -> dict:
        """One `aigc generate` run; killed after ``kill_after`` seconds if it is still going.
        Returns the run's wall time and whether it died of SIGKILL."""
        cmd = dict(config=str(config), key=KEY, log=str(log), kill_at=kill_at, sleep=sleep)
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        start = time.monotonic()
        pid = json.loads(self.line(30))["pid"]
        if kill_after is not None:
            time.sleep(kill_after)
            with contextlib.suppress(ProcessLookupError):  # it finished first
                os.kill(pid, signal.SIGKILL)
        status = json.loads(self.line(120))["status"]
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if not killed:
            assert os.WEXITSTATUS(status) == 0, log.read_text()
        return {"seconds": time.monotonic() - start, "killed": killed, "log": log.read_text()}

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def write_config(folder: Path, ca, *, count: int, batch_size: int) -> Path:
    config = folder / "gen.toml"
    config.write_text(
        f"""
[pipeline]
callable = "tests.test_pipeline:toy_generator"

[generate]
count = {count}
batch_size = {batch_size}

[output]
dir = "out"

[provenance]
ledger = "ledger.sqlite"
sign = {{ cert_chain = "{ca.chain}", key = "{ca.key}" }}
"""
    )
    return config


def state(folder: Path) -> dict:
    """The folder and the ledger as a kill left them: what is consistent and what is not."""
    out = folder / "out"
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    finals = {n for n in names if FINAL.match(n)}
    temps = {n for n in names if n.endswith(".tmp")}
    with Ledger(folder / "ledger.sqlite") as ledger:
        records = {Path(path).name: digest for _, _, path, digest in ledger.iter_files()}
    unrecorded = [n for n in finals if records.get(n) != file_sha256(out / n)]
    pending, lost = [], []
    for name, digest in records.items():
        if name in finals:
            continue
        ok = [t for t in temps if (m := TEMP.match(t)) and m["name"] == name]
        (pending if any(file_sha256(out / t) == digest for t in ok) else lost).append(name)
    return {
        "records": len(records),
        "pictures": len(finals),
        "temps": len(temps),
        "unrecorded": unrecorded,  # pictures without a record (or with other bytes)
        "pending": pending,  # recorded, picture under its temporary name
        "lost": lost,  # recorded, picture nowhere
        "others": [n for n in names if n not in finals and n not in temps],
    }


def check_immediate(s: dict) -> None:
    assert s["unrecorded"] == [] and s["lost"] == [] and s["others"] == [], s


def check_recovered(s: dict) -> None:
    check_immediate(s)
    assert s["temps"] == 0 and s["pending"] == [] and s["records"] == s["pictures"], s


@pytest.fixture(scope="module")
def dev_ca(tmp_path_factory):
    return credentials.make_dev_ca(tmp_path_factory.mktemp("ca"))


def test_kill_at_random_moments(zygote, dev_ca, tmp_path):
    config = write_config(tmp_path, dev_ca, count=12, batch_size=4)
    sleep = 0.002  # at each step: most of the run is then its writing
    # how long a whole run takes here: the kills are spread over it
    whole = zygote.run(config, tmp_path / "calibrate.log", sleep=sleep)
    check_recovered(state(tmp_path))
    rng = random.Random(18)
    seen = {"pending": 0, "temps": 0, "clean": 0, "finished": 0}
    for trial in range(12):
        delay = rng.uniform(0.05, 0.95) * whole["seconds"]
        r = zygote.run(config, tmp_path / f"r{trial}.log", sleep=sleep, kill_after=delay)
        s = state(tmp_path)
        check_immediate(s)
        if not r["killed"]:
            seen["finished"] += 1
        seen["pending" if s["pending"] else "temps" if s["temps"] else "clean"] += 1
        if trial % 2 == 0:  # odd trials: the next run's opening recovers
            with Ledger(tmp_path / "ledger.sqlite") as ledger:
                recovered = recover_output(tmp_path / "out", ledger)
            assert not recovered.missing and not recovered.skipped
            check_recovered(state(tmp_path))
    zygote.run(config, tmp_path / "last.log")  # an ordinary run recovers, then makes its own
    check_recovered(state(tmp_path))
    print("random kills landed:", seen)
    assert seen["pending"] + seen["temps"] >= 1  # some landed mid-batch (the rest: embedding)


def test_kill_at_every_step_of_a_batch(zygote, dev_ca, tmp_path):
    config = write_config(tmp_path, dev_ca, count=2, batch_size=2)
    steps = int(zygote.run(config, tmp_path / "count.log")["log"].split("events:")[1])
    assert steps >= 10  # per picture: save, label, sign, sync; then the commit, the renames
    seen = set()
    for k in range(1, steps + 1):
        r = zygote.run(config, tmp_path / f"k{k}.log", kill_at=k)
        assert r["killed"]
        s = state(tmp_path)
        check_immediate(s)
        seen.add("pending" if s["pending"] else "temps" if s["temps"] else "clean")
        if s["pending"]:  # killed after the commit: kill the next run inside its recovery
            r = zygote.run(config, tmp_path / f"k{k}-recovery.log", kill_at=2)
            assert r["killed"]
            check_immediate(state(tmp_path))
        with Ledger(tmp_path / "ledger.sqlite") as ledger:
            recover_output(tmp_path / "out", ledger)
        check_recovered(state(tmp_path))
    assert seen == {"pending", "temps", "clean"}, seen
