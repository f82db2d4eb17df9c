"""The latency store: concurrent recovery loses nothing, writers survive contention, another
application's database is refused and left alone, bad rows name the row and the field."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.targets.store import LatencyRecord, LatencyStore, StoreError

from .helpers import ROOT, cli_error, snapshot

WRITER = """
import sys, time
from pathlib import Path
from edgekit.targets.store import LatencyRecord, LatencyStore
path, name, go, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
while not go.exists():
    time.sleep(0.002)
with LatencyStore(path) as store:
    for i in range(count):
        store.record(LatencyRecord("host", "onnxruntime", "1", "fp32", 1, "block", f"{name}-{i}", 1.0, 2.0, 5,
                                   "2026-01-01T00:00:00Z", {"writer": name}))
print("wrote", count)
"""


def _race(path: Path, writers: int, count: int) -> list[subprocess.CompletedProcess]:
    go = path.with_name("go")
    go.unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}", str(go), str(count)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(writers)]
    go.touch()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.mark.parametrize("trial", range(4))
def test_three_processes_opening_a_corrupt_store_at_once_lose_no_write(tmp_path, trial):
    path = tmp_path / "latency.sqlite"
    path.write_bytes(b"garbage, not sqlite\n" * 100)
    results = _race(path, 3, 70)
    for result in results:
        assert result.returncode == 0, result.stderr
    warnings = sum(result.stderr.count("warning:") for result in results)
    assert warnings == 1  # exactly one process recovered; the others found the rebuilt store fine
    with LatencyStore(path) as store:
        assert len(store.records(kind="block")) == 210
    assert len(list(tmp_path.glob("latency.sqlite.corrupt-*"))) == 1


def test_four_writers_on_a_fresh_store_all_succeed(tmp_path):
    path = tmp_path / "fresh.sqlite"
    for result in _race(path, 4, 50):
        assert result.returncode == 0, result.stderr
    with LatencyStore(path) as store:
        assert len(store.records(kind="block")) == 200


def test_another_applications_sqlite_file_is_refused_and_left_alone(tmp_path, capsys):
    path = tmp_path / "app.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"app.sqlite: is an SQLite database of another application \(tables \['customers'\]\)"):
        LatencyStore(path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.corrupt-*"))
    cli_error(capsys, ["store", "list", "--store", str(path)], 1, "not an edgekit latency store; refusing to touch it")
    assert path.read_bytes() == before


@pytest.mark.parametrize("column,value,message", [
    ("meta", "{not json", "field 'meta': expected a JSON object, got '{not json'"),
    ("meta", "[1, 2]", "field 'meta': expected a JSON object, got '[1, 2]'"),
    ("threads", 0, "field 'threads': expected an integer >= 1, got 0"),
    ("p50_ms", -3.0, "field 'p50_ms': expected a finite number >= 0, got -3.0"),
    ("kind", "weird", "field 'kind': expected one of"),
])
def test_a_bad_row_names_the_row_and_the_field(tmp_path, capsys, column, value, message):
    path = tmp_path / "latency.sqlite"
    with LatencyStore(path) as store:
        store.record(LatencyRecord("host", "onnxruntime", "1", "fp32", 1, "model", "abc", 1.0, 2.0, 5, "2026-01-01T00:00:00Z"))
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE latency SET {column} = ?", (value,))
    conn.commit()
    conn.close()
    with LatencyStore(path) as store:
        with pytest.raises(StoreError, match="row") as info:
            store.records()
    assert f"row (target='host', kind={'weird' if value == 'weird' else 'model'!r}, key='abc')" in str(info.value)
    assert message in str(info.value)
    before = snapshot(tmp_path)
    cli_error(capsys, ["store", "list", "--store", str(path)], 1, message)
    assert snapshot(tmp_path) == before
