"""The latency store: round trips, upserts, misses, JSON export/import, corrupt files, two writers."""

from __future__ import annotations

import doctest
import importlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edgekit.cli import main
from edgekit.targets.store import (
    CACHE_ENV,
    LatencyRecord,
    LatencyStore,
    StoreError,
    default_store_path,
)

ROOT = Path(__file__).resolve().parents[1]


def make_record(key: str = "a" * 64, **changes) -> LatencyRecord:
    base = LatencyRecord(
        target="host", runtime="onnxruntime", runtime_version="1.32.0", precision="fp32", threads=1,
        kind="model", key=key, p50_ms=3.25, p90_ms=3.5, runs=50, measured_at="2026-01-02T03:04:05Z",
        meta={"model": "m.onnx", "nested": {"x": [1, 2]}},
    )
    return replace(base, **changes)


@pytest.fixture
def store(tmp_path):
    with LatencyStore(tmp_path / "latency.sqlite") as opened:
        yield opened


def lookup(store: LatencyStore, rec: LatencyRecord):
    return store.lookup(rec.target, rec.key, runtime=rec.runtime, precision=rec.precision, threads=rec.threads, kind=rec.kind)


@pytest.mark.parametrize("module", ["edgekit.targets.store", "edgekit.targets.profile",
                                    "edgekit.targets.agent", "edgekit.targets.agent_client"])
def test_docstring_examples(module):
    assert doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS).failed == 0


def test_round_trip_and_reopen(tmp_path):
    rec = make_record()
    with LatencyStore(tmp_path / "s.sqlite") as store:
        store.record(rec)
        assert lookup(store, rec) == rec
    with LatencyStore(tmp_path / "s.sqlite") as store:  # persisted, and WAL mode is on
        assert lookup(store, rec) == rec
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


def test_upsert_replaces_the_same_key(store):
    store.record(make_record())
    store.record(make_record(p50_ms=9.0, p90_ms=9.5, runs=7))
    (only,) = store.records()
    assert (only.p50_ms, only.p90_ms, only.runs) == (9.0, 9.5, 7)


def test_lookup_misses_on_every_key_field(store):
    rec = make_record()
    store.record(rec)
    for change in ({"target": "jetson-orin-nano"}, {"key": "b" * 64}, {"runtime": "tflite"},
                   {"precision": "int8"}, {"threads": 2}, {"kind": "block"}):
        assert lookup(store, replace(rec, **change)) is None, change
    assert store.lookup("host", rec.key, runtime="onnxruntime", precision="fp32", threads=1, runtime_version="0.1") is None


def test_lookup_without_version_takes_the_newest_measurement(store):
    store.record(make_record(runtime_version="1.31.0", measured_at="2026-03-01T00:00:00Z", p50_ms=1.0))
    store.record(make_record(runtime_version="1.32.0", measured_at="2026-02-01T00:00:00Z", p50_ms=2.0))
    assert lookup(store, make_record()).p50_ms == 1.0
    assert store.lookup("host", "a" * 64, runtime="onnxruntime", precision="fp32", threads=1,
                        runtime_version="1.32.0").p50_ms == 2.0


def test_records_filters_by_target_and_kind(store):
    store.record(make_record("m1"))
    store.record(make_record("blk-1", kind="block"))
    store.record(make_record("m2", target="raspberry-pi-5"))
    assert len(store.records()) == 3
    assert [r.key for r in store.records(target="host")] == ["blk-1", "m1"]
    assert [r.key for r in store.records(kind="model")] == ["m1", "m2"]
    assert [r.key for r in store.records(target="host", kind="block")] == ["blk-1"]


def test_record_fields_are_validated():
    with pytest.raises(StoreError, match="field 'kind'"):
        make_record(kind="layer")
    with pytest.raises(StoreError, match="field 'p50_ms'"):
        make_record(p50_ms=float("nan"))
    with pytest.raises(StoreError, match="field 'measured_at'"):
        make_record(measured_at="yesterday")
    with pytest.raises(StoreError, match="field 'meta'"):
        make_record(meta={"x": object()})
    assert make_record().source == "measured"


def test_export_import_round_trip(store, tmp_path):
    recs = [make_record("m1"), make_record("blk", kind="block", p50_ms=0.5), make_record("m1", threads=4)]
    for rec in recs:
        store.record(rec)
    out = tmp_path / "export.json"
    assert store.export_json(out) == 3
    data = json.loads(out.read_text())
    assert data["format"] == "edgekit-latency-store" and data["records"][0]["source"] == "measured"
    assert not list(tmp_path.glob(".export.json.*"))  # no temp file left by the atomic write
    with LatencyStore(tmp_path / "other.sqlite") as other:
        assert other.import_json(out) == 3
        assert other.records() == store.records()
        assert other.import_json(out) == 3  # importing again upserts, no duplicates
        assert len(other.records()) == 3


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"bad\.json: not valid JSON"),
        ('{"records": []}', r"bad\.json: not an edgekit latency export"),
        ('{"format": "edgekit-latency-store", "schema_version": 9, "records": []}', r"bad\.json: schema_version 9"),
        ('{"format": "edgekit-latency-store", "schema_version": 1, "records": {}}', r"'records' must be a list"),
    ],
)
def test_import_rejects_bad_files(store, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(StoreError, match=message):
        store.import_json(bad)


def test_import_names_the_record_and_field_and_imports_nothing(store, tmp_path):
    good = make_record("ok").to_json()
    missing = {k: v for k, v in make_record("x").to_json().items() if k != "p50_ms"}
    wrong = {**make_record("y").to_json(), "threads": "one"}
    bad = tmp_path / "bad.json"
    for items, message in (([good, missing], r"records\[1\]: missing field 'p50_ms'"),
                           ([wrong, good], r"records\[0\]: field 'threads': expected an integer >= 1, got 'one'"),
                           ([good, {**good, "source": "modeled"}], r"records\[1\]: field 'source'")):
        bad.write_text(json.dumps({"format": "edgekit-latency-store", "schema_version": 1, "records": items}))
        with pytest.raises(StoreError, match=message) as info:
            store.import_json(bad)
        assert str(bad) in str(info.value)
    assert store.records() == []  # all or nothing
    with pytest.raises(StoreError, match="no such file"):
        store.import_json(tmp_path / "absent.json")


def _make_schema_7(path: Path) -> None:
    LatencyStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 7")
    conn.commit()
    conn.close()


def _make_truncated(path: Path) -> None:
    with LatencyStore(path) as store:
        for i in range(300):
            store.record(make_record(f"key-{i:04d}" * 8, meta={"pad": "x" * 200}))
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "schema"])
def test_corrupt_store_is_moved_aside_and_rebuilt(tmp_path, capsys, damage):
    path = tmp_path / "latency.sqlite"
    if damage == "garbage":
        path.write_bytes(b"this is not a sqlite file\n" * 200)
    elif damage == "truncated":
        _make_truncated(path)
    else:
        _make_schema_7(path)
    for sidecar in ("latency.sqlite-wal", "latency.sqlite-shm"):
        (tmp_path / sidecar).unlink(missing_ok=True)
    original = path.read_bytes()
    capsys.readouterr()

    with LatencyStore(path) as store:
        assert store.records() == []
        store.record(make_record())
        assert len(store.records()) == 1
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and str(path) in err and "moved it to latency.sqlite.corrupt-" in err
    (aside,) = tmp_path.glob("latency.sqlite.corrupt-*")
    assert aside.read_bytes() == original  # nothing lost

    with LatencyStore(path) as store:  # the rebuilt store opens cleanly: no second warning
        assert len(store.records()) == 1
    assert "warning" not in capsys.readouterr().err


def test_two_corrupt_files_in_one_second_keep_both_copies(tmp_path, capsys):
    path = tmp_path / "latency.sqlite"
    for text in (b"first garbage" * 100, b"second garbage" * 100):
        path.write_bytes(text)
        LatencyStore(path).close()
    assert sorted(p.read_bytes()[:6] for p in tmp_path.glob("latency.sqlite.corrupt-*")) == [b"first ", b"second"]


def test_default_path_follows_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "latency.sqlite"
    with LatencyStore() as store:
        assert store.path == tmp_path / "cache" / "latency.sqlite" and store.path.is_file()
    monkeypatch.delenv(CACHE_ENV)
    assert default_store_path().name == "latency.sqlite" and "edgekit" in str(default_store_path())


WRITER = """
import sys, time
from pathlib import Path
from edgekit.targets.store import LatencyRecord, LatencyStore
path, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
deadline = time.monotonic() + 20
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
with LatencyStore(path) as store:
    for i in range(40):
        store.record(LatencyRecord("host", "onnxruntime", "1", "fp32", 1, "block", f"{name}-{i}", 1.0 + i, 2.0 + i,
                                   5, "2026-01-01T00:00:00Z", {"writer": name}))
        store.records(kind="block")
"""


def test_two_processes_write_concurrently(tmp_path):
    path, go = tmp_path / "shared.sqlite", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(go)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    go.touch()  # both start on a store that does not exist yet: creation races too
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "warning" not in err
    with LatencyStore(path) as store:
        recs = store.records(kind="block")
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(recs) == 80 and {r.meta["writer"] for r in recs} == {"a", "b"}


def test_cli_store_export_import_list_path(tmp_path, capsys):
    db, other, exported = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "e.json"
    with LatencyStore(db) as store:
        store.record(make_record("m1"))
        store.record(make_record("m2", target="raspberry-pi-5"))
    assert main(["store", "export", str(exported), "--store", str(db)]) == 0
    assert main(["store", "import", str(exported), "--store", str(other)]) == 0
    assert "imported 2 record(s)" in capsys.readouterr().out
    assert main(["store", "list", "--store", str(other), "--target", "raspberry-pi-5", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in listed] == ["m2"]
    assert main(["store", "list", "--store", str(other)]) == 0
    assert "2 measurement(s)" in capsys.readouterr().out
    assert main(["store", "path", "--store", str(other)]) == 0
    assert capsys.readouterr().out.strip() == str(other)
    exported.write_text("[]")
    assert main(["store", "import", str(exported), "--store", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(exported) in err and len(err.strip().splitlines()) == 1
    assert main(["store", "list", "--store", str(other), "--kind", "layer"]) == 2
