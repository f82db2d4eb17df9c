"""``edgekit export --precision int8|fp16`` for language models: the decoder variant is measured against fp32
on the family's data (token agreement, task score), recorded in the manifest, shown by ``inspect``, refused
below ``--min-agreement``; the bundle generates without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgekit.cli import main  # noqa: E402
from edgekit.runtimes.bundle import read_bundle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_slm_equality import build_hf_model  # noqa: E402


@pytest.fixture(scope="module")
def encdec_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "b"
    assert main(["export", "--model", "slm-encdec", "--precision", "int8", "--out", str(out), "--json"]) == 0
    return out


def test_int8_slm_records_agreement_and_task_score(encdec_int8, capsys):
    manifest = read_bundle(encdec_int8).manifest
    record = manifest.validation["precision"]
    assert manifest.precision == "int8" and manifest.graph("decoder").file == "decoder.int8.onnx"
    assert record["token_agreement"] >= 0.99 and record["min_token_agreement"] == 0.99
    assert record["exact_match_fp32"] > 0.9 and abs(record["exact_match_variant"] - record["exact_match_fp32"]) < 0.03
    assert "200 held-out examples of the letters task" in record["on"]
    assert set(record["decoder_step_ms"]) == {"fp32", "int8"}
    host = [e for e in manifest.latency if e["source"] == "measured"]
    assert host and host[0]["precision"] == "int8" and host[0]["ms"] == record["decoder_step_ms"]["int8"]
    capsys.readouterr()
    assert main(["inspect", str(encdec_int8)]) == 0
    assert "int8 vs fp32: greedy token agreement" in capsys.readouterr().out
    assert main(["generate", str(encdec_int8), "--text", "qzzqaabbq", "--max-new-tokens", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == ["qab"]


def test_variant_below_the_threshold_is_refused_with_both_numbers(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["export", "--model", "slm-encdec", "--precision", "int8", "--min-agreement", "1.0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and not out.exists()
    assert "agrees with fp32 on 99." in err and "below the threshold 100.00% (--min-agreement)" in err
    assert "exact match" in err


def test_hf_int8_and_fp16_generate_without_torch(tmp_path, capsys):
    build_hf_model("t5", tmp_path / "hf")
    for precision, extra in (("fp16", []), ("int8", ["--min-agreement", "0.95"])):
        out = tmp_path / precision
        assert main(["export", "--model", f"hf:{tmp_path / 'hf'}", "--precision", precision, "--out", str(out), *extra]) == 0
        record = read_bundle(out).manifest.validation["precision"]
        assert record["token_agreement"] >= (0.99 if precision == "fp16" else 0.95)
        assert "random prompts" in record["on"] and "exact_match_fp32" not in record
        code = (
            "import sys, json\n"
            "sys.modules['torch'] = None  # any import of torch fails\n"
            "from edgekit.cli import main\n"
            f"assert main(['generate', {str(out)!r}, '--input-ids', '5,6,7', '--max-new-tokens', '6', '--json']) == 0\n"
            "assert 'transformers' not in sys.modules\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sequences"][0][0] == 0  # T5's decoder start token
