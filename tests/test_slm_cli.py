"""``edgekit export --model hf:DIR`` then ``edgekit generate``: the ids equal Hugging Face generate()."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgekit.cli import main  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_slm_equality import build_hf_model  # noqa: E402


@pytest.fixture(scope="module")
def t5_bundle(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    model = build_hf_model("flan-t5", base / "hf")
    assert main(["export", "--model", f"hf:{base / 'hf'}", "--target", "host", "--out", str(base / "b"), "--json"]) == 0
    return model, base / "b"


def test_export_then_generate_prints_hf_ids(t5_bundle, capsys):
    model, bundle = t5_bundle
    capsys.readouterr()
    for beams in ("1", "4"):
        assert main(["generate", str(bundle), "--input-ids", "5,6,7", "--max-new-tokens", "10", "--num-beams", beams, "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        ref = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=10, num_beams=int(beams))
        assert printed["sequences"] == ref.tolist()
        assert printed["new_tokens"] == [ref[0, 1:].tolist()]


def test_generate_stream_prints_tokens(t5_bundle, capsys):
    _, bundle = t5_bundle
    assert main(["generate", str(bundle), "--input-ids", "5,6,7", "--max-new-tokens", "4", "--json"]) == 0
    ids = json.loads(capsys.readouterr().out)["new_tokens"][0]
    assert main(["generate", str(bundle), "--input-ids", "5,6,7", "--max-new-tokens", "4", "--stream"]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in ids]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--input-ids", "5,x"], 2, "expected comma-separated integers"),
        (["--input-ids", "5,6", "--num-beams", "0"], 2, "num_beams must be an integer >= 1"),
        (["--input-ids", "5,6", "--max-new-tokens", "0"], 2, "max_new_tokens must be an integer >= 1"),
        (["--input-ids", "5,640"], 1, "outside the vocabulary 0..63"),
        (["--text", "hello"], 1, "has no tokenizer"),
        ([], 2, "pass either --text or --input-ids"),
        (["--input-ids", "5", "--stream", "--json"], 2, "do not mix"),
    ],
)
def test_generate_errors_are_one_line(t5_bundle, capsys, args, code, message):
    _, bundle = t5_bundle
    assert main(["generate", str(bundle), *args]) == code
    captured = capsys.readouterr()
    if "--json" in args:  # errors under --json are a JSON object on stdout
        err = json.loads(captured.out)["error"]["message"]
    else:
        err = captured.err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_generate_refuses_a_non_lm_bundle(tiny_bundle, capsys):
    assert main(["generate", str(tiny_bundle), "--input-ids", "1"]) == 2
    assert "not a generation task" in capsys.readouterr().err
