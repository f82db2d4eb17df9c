"""Fuzzing (hypothesis): manifests, target TOML, subnet configs and store rows built at random; only
edgekit's own errors may escape. Example counts stay small so the suite stays fast."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgekit.runtimes.bundle import Manifest  # noqa: E402
from edgekit.runtimes.errors import EdgekitError  # noqa: E402

# derandomized (the same examples every run: no flaky suite); EDGEKIT_FUZZ_EXAMPLES=2000 searches harder
FAST = settings(max_examples=int(os.environ.get("EDGEKIT_FUZZ_EXAMPLES", "60")), derandomize=True, deadline=None,
                database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
VALID_MANIFEST = {
    "schema_version": 1, "target": "host", "format": "onnx", "precision": "fp32", "name": "m", "task": "generic",
    "graphs": {"model": {"file": "model.onnx", "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
                         "outputs": [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]}},
    "files": {"model.onnx": {"sha256": "0" * 64, "bytes": 1}}, "example_sizes": {"batch": 1},
}


def _mutations():
    paths = [("schema_version",), ("target",), ("graphs",), ("files",), ("example_sizes",), ("extra",),
             ("graphs", "model"), ("graphs", "model", "file"), ("graphs", "model", "inputs"),
             ("files", "model.onnx"), ("latency",), ("provenance",)]
    return st.lists(st.tuples(st.sampled_from(paths), json_values), min_size=1, max_size=3)


def _apply(data: dict, mutations) -> dict:
    data = json.loads(json.dumps(data))
    for path, value in mutations:
        node = data
        for key in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node[path[-1]] = value
    return data


@FAST
@given(_mutations())
def test_manifest_fuzz_only_edgekit_errors(mutations):
    data = _apply(VALID_MANIFEST, mutations)
    try:
        Manifest.from_json(data, "fuzz/manifest.json")
    except EdgekitError as exc:
        assert "\n" not in str(exc)


@FAST
@given(json_values)
def test_manifest_any_json_only_edgekit_errors(value):
    try:
        Manifest.from_json(value, "fuzz/manifest.json")
    except EdgekitError as exc:
        assert "\n" not in str(exc)


RPI5 = Path(__file__).resolve().parents[2] / "targets" / "raspberry-pi-5.toml"
toml_scalars = st.one_of(st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                         st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n\r'), max_size=10))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


@FAST
@given(st.sampled_from(["memory_gb", "memory_bandwidth_gbps", "clock_ghz", "cores", "fp32", "fp16", "kind", "runtime",
                        "default_unit", "verified", "name", "arch"]), toml_scalars)
def test_target_toml_field_fuzz_only_edgekit_errors(tmp_path_factory, field, value):
    from edgekit.targets.target_file import load_target_file

    lines = RPI5.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split("=")[0].strip() == field:
            lines[i] = f"{field} = {_toml_value(value)}"
            break
    path = tmp_path_factory.mktemp("toml") / "board.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        load_target_file(path)
    except EdgekitError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


@FAST
@given(st.binary(max_size=300))
def test_target_toml_random_bytes_only_edgekit_errors(tmp_path_factory, blob):
    from edgekit.targets.target_file import load_target_file

    path = tmp_path_factory.mktemp("toml") / "board.toml"
    path.write_bytes(blob)
    with pytest.raises(EdgekitError):
        load_target_file(path)


@FAST
@given(st.one_of(json_values, st.fixed_dictionaries({"ks": json_values, "e": json_values, "d": json_values}, optional={"r": json_values})))
def test_subnet_config_fuzz_only_edgekit_errors(value):
    from edgekit.models.ofa.config import SubnetConfig
    from edgekit.models.ofa.space import get_space

    try:
        SubnetConfig.from_json(json.dumps(value), get_space("ofa-mbv3-shapes"))
    except EdgekitError as exc:
        assert "\n" not in str(exc)
    except ValueError:  # json.dumps of nan is fine; reaching here means a non-edgekit error escaped
        raise


store_values = st.one_of(st.none(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=15), st.binary(max_size=8))


@FAST
@given(st.sampled_from(["target", "threads", "kind", "p50_ms", "p90_ms", "runs", "measured_at", "meta", "key"]), store_values)
def test_store_row_fuzz_only_edgekit_errors(tmp_path_factory, column, value):
    from edgekit.targets.store import LatencyRecord, LatencyStore

    path = tmp_path_factory.mktemp("store") / "latency.sqlite"
    with LatencyStore(path) as store:
        store.record(LatencyRecord("host", "onnxruntime", "1", "fp32", 1, "model", "k", 1.0, 2.0, 5, "2026-01-01T00:00:00Z"))
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"UPDATE latency SET {column} = ?", (value,))
    except sqlite3.IntegrityError:  # NOT NULL: SQLite itself keeps such a row out
        assume(False)
    finally:
        conn.commit()
        conn.close()
    with LatencyStore(path) as store:
        try:
            store.records()
            store.lookup("host", "k", runtime="onnxruntime", precision="fp32", threads=1)
        except EdgekitError as exc:
            assert "\n" not in str(exc) and "row (" in str(exc)
