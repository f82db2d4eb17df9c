"""``edgekit inspect``, ``bench`` and ``generate`` on real bundles: shapes, every graph, batch, units, beams, text."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.cli import main  # noqa: E402
from edgekit.models.slm.config import SlmConfig  # noqa: E402
from edgekit.runtimes.errors import UsageError  # noqa: E402

TINY = SlmConfig.encoder_decoder(layers=3, d_model=32, n_heads=2, d_ff=64, max_length=40)
PROMPTS = [[10, 11, 12, 13, 14], [40, 41], [90, 91, 92, 93, 94, 95, 96, 97], [200]]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def slm(tmp_path_factory):
    from tests.fixtures.slm import export_tiny_pair

    return export_tiny_pair(tmp_path_factory.mktemp("slm"), TINY, seed=3, weight_std=0.3)


@pytest.fixture(scope="module")
def fixed_batch_bundle(tmp_path_factory):
    """The tiny CNN from a torch.export archive: its input is (1, 3, 16, 16), no dynamic batch."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle
    from tests.fixtures.tiny_models import tiny_cnn

    base = tmp_path_factory.mktemp("fixed")
    torch.export.save(torch.export.export(tiny_cnn().eval(), (torch.randn(1, 3, 16, 16),)), base / "tiny.pt2")
    export_bundle(ExportRequest(out=base / "b", model=ModelRequest(str(base / "tiny.pt2")), measure=MeasureConfig(runs=0)))
    return base / "b"


# ------------------------------------------------------------------------------------------- inspect
def test_inspect_shows_shapes_with_named_axes(tiny_bundle, capsys):
    code, stdout, _ = run_cli(capsys, "inspect", tiny_bundle)
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.count("│") >= 4}
    assert "[batch, 3, 16, 16]" in rows["input"]
    assert "[batch, 5]" in rows["output"]


def test_inspect_shows_every_graph_of_an_slm_bundle(slm, capsys):
    from edgekit.exporters.graph_stats import graph_stats

    bundle = rt.read_bundle(slm["encdec"])
    code, stdout, err = run_cli(capsys, "inspect", slm["encdec"], "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert sorted(data["graphs"]) == ["decoder", "encoder"]
    for name, graph in bundle.manifest.graphs.items():
        shown = data["graphs"][name]
        stats = graph_stats(bundle.file(name))
        assert [s["name"] for s in shown["inputs"]] == [s.name for s in graph.inputs]
        assert [s["name"] for s in shown["outputs"]] == [s.name for s in graph.outputs]
        assert shown["params"] == stats.params > 10_000 and shown["macs"] == stats.macs > 0
        assert shown["ops"]["MatMul"] == stats.ops["MatMul"] >= 6
    assert data["manifest"]["task"] == "seq2seq"

    code, stdout, _ = run_cli(capsys, "inspect", slm["encdec"])
    assert code == 0
    assert "graph encoder" in stdout and "graph decoder" in stdout
    assert "decoder_input_ids" in stdout and "[batch, tgt_len]" in stdout and "[batch, 2, past_len, 16]" in stdout
    assert stdout.count("parameters:") == 2 and stdout.count("MatMul") == 2


# --------------------------------------------------------------------------------------------- bench
def test_bench_refuses_a_batch_the_model_cannot_take(fixed_batch_bundle, capsys):
    code, stdout, err = run_cli(capsys, "bench", fixed_batch_bundle, "--batch", "4", "--runs", "3", "--warmup", "0")
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1
    assert "--batch 4: input 'input' has a fixed batch of 1 (shape [1, 3, 16, 16])" in err


def test_bench_fixed_batch_reports_the_batch_fed(fixed_batch_bundle, capsys):
    code, stdout, _ = run_cli(capsys, "bench", fixed_batch_bundle, "--runs", "5", "--warmup", "1", "--json")
    assert code == 0 and json.loads(stdout)["batch"] == 1


def test_bench_throughput_is_batch_times_runs_over_time(tiny_bundle, capsys):
    code, stdout, _ = run_cli(capsys, "bench", tiny_bundle, "--batch", "4", "--runs", "30", "--warmup", "2", "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["batch"] == 4 and data["throughput_unit"] == "samples/s"
    total_s = data["mean_ms"] * data["runs"] / 1000.0
    assert data["throughput_per_s"] == pytest.approx(4 * data["runs"] / total_s, rel=1e-3)

    code, stdout, _ = run_cli(capsys, "bench", tiny_bundle, "--batch", "4", "--runs", "5", "--warmup", "0")
    assert code == 0 and "samples/s" in stdout and "batch 4" in stdout
    code, stdout, _ = run_cli(capsys, "bench", tiny_bundle, "--runs", "5", "--warmup", "0")
    assert code == 0 and "inferences/s" in stdout and "throughput/s" not in stdout


@pytest.mark.parametrize("kind", ["encdec", "deconly"])
def test_bench_generation_bundle_reports_first_token_and_tokens_per_s(slm, kind, capsys):
    args = ("bench", slm[kind], "--runs", "6", "--warmup", "1", "--input-tokens", "12", "--new-tokens", "8")
    code, stdout, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["decoding"] == "greedy" and data["input_tokens"] == 12 and data["new_tokens"] == 8
    assert data["runs"] == 6 and data["batch"] == 1 and data["source"] == "measured"
    first, per_token, rate, total = (data[k] for k in ("first_token_ms", "decode_ms_per_token", "decode_tokens_per_s", "total_ms"))
    assert 0 < first["p50"] <= first["p90"] < total["p90"]
    assert 0 < per_token["p50"] <= per_token["p90"]
    assert rate["p50"] == pytest.approx(1000.0 / per_token["p50"], rel=1e-3)
    assert rate["p90"] == pytest.approx(1000.0 / per_token["p90"], rel=1e-3)

    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    assert "greedy" in stdout and "12 input tokens" in stdout and "8 new tokens" in stdout
    assert "tokens/s" in stdout and "first token" in stdout and "throughput/s" not in stdout
    for line in stdout.splitlines():  # every number carries its unit
        cells = [c.strip() for c in line.split("│")[2:-1]]
        for cell in cells:
            assert cell.endswith((" ms", " ms/token", " tokens/s")), line


def test_bench_generation_rejects_one_new_token(slm, capsys):
    code, _, err = run_cli(capsys, "bench", slm["encdec"], "--new-tokens", "1", "--runs", "2")
    assert code == 2 and "new_tokens must be >= 2" in err


# ------------------------------------------------------------------------------------------ generate
@pytest.mark.parametrize("kind", ["encdec", "deconly"])
@pytest.mark.parametrize("num_beams", [2, 4])
def test_streamed_beam_tokens_equal_the_beam_result(slm, kind, num_beams):
    """With beams, a token is streamed once every hypothesis still in the race agrees on it."""
    lm = rt.load(slm[kind], threads=1)
    expected = lm.generate(PROMPTS, max_new_tokens=12, num_beams=num_beams)
    steps, seen = [], []
    decoder_run = lm.decoder._run

    def counted(feeds):
        steps.append(1)
        return decoder_run(feeds)

    lm.decoder._run = counted
    got = lm.generate(PROMPTS, max_new_tokens=12, num_beams=num_beams, on_token=lambda t: seen.append((t.copy(), len(steps))))
    assert np.array_equal(got, expected)
    width = 1 if kind == "encdec" else max(map(len, PROMPTS))
    assert np.stack([t for t, _ in seen], axis=1).tolist() == expected[:, width:].tolist()
    if num_beams == 2:  # the beams agree early: some tokens are streamed before the search ends
        assert seen[0][1] < len(steps)


def test_cli_stream_with_beams_prints_the_beam_result(slm, capsys):
    bundle = slm["encdec"]
    base = ("generate", bundle, "--input-ids", "5,6,7", "--max-new-tokens", "8", "--num-beams", "4")
    code, stdout, _ = run_cli(capsys, *base, "--json")
    assert code == 0
    ids = json.loads(stdout)["new_tokens"][0]
    code, stdout, err = run_cli(capsys, *base, "--stream")
    assert code == 0, err
    assert stdout.split() == [str(i) for i in ids]


def test_generate_text_from_python_matches_the_cli(slm, capsys):
    for kind in ("encdec", "deconly"):
        lm = rt.load(slm[kind], threads=1)
        text = lm.generate(text="qzzqaabbq", max_new_tokens=8)
        ids = lm.generate([lm.tokenizer.encode("qzzqaabbq")], max_new_tokens=8)
        width = 1 if kind == "encdec" else len(lm.tokenizer.encode("qzzqaabbq"))
        assert isinstance(text, str) and text == lm.tokenizer.decode(ids[0, width:].tolist())
        both = lm.generate(text=["qzzqaabbq", "ab"], max_new_tokens=8)
        assert both[0] == text and len(both) == 2 and isinstance(both[1], str)

        code, stdout, _ = run_cli(capsys, "generate", slm[kind], "--text", "qzzqaabbq", "--text", "ab",
                                  "--max-new-tokens", "8", "--json")
        assert code == 0 and json.loads(stdout)["text"] == both


@pytest.mark.parametrize("kwargs, message", [
    ({"text": "ab", "input_ids": [[5]]}, "either text or input_ids"),
    ({}, "either text or input_ids"),
    ({"text": ["ab", 3]}, "text: expected a string or a list of strings"),
])
def test_generate_text_usage_errors(slm, kwargs, message):
    lm = rt.load(slm["encdec"], threads=1)
    with pytest.raises(UsageError, match=message):
        lm.generate(**kwargs)


def test_readme_t5_beam_stream_example(tmp_path, capsys):
    """README: ``edgekit generate out/t5 --input-ids 5,6,7 --num-beams 4 --stream`` prints transformers' beam result."""
    pytest.importorskip("transformers")
    from tests.test_slm_equality import build_hf_model

    model = build_hf_model("t5", tmp_path / "hf")
    assert main(["export", "--model", f"hf:{tmp_path / 'hf'}", "--target", "host", "--out", str(tmp_path / "t5"),
                 "--bench-runs", "0"]) == 0
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "generate", tmp_path / "t5", "--input-ids", "5,6,7", "--num-beams", "4", "--stream")
    assert code == 0, err
    reference = model.generate(torch.tensor([[5, 6, 7]]), num_beams=4, max_new_tokens=rt.load(tmp_path / "t5").generation["max_new_tokens"])
    assert stdout.split() == [str(i) for i in reference[0, 1:].tolist()]
