"""Device profiles: bundled TOMLs load, names resolve, malformed files fail with file + field path."""

from __future__ import annotations

import doctest
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgekit.targets as targets
from edgekit.runtimes.errors import EdgekitError, TargetError
from edgekit.targets import ComputeUnit, Target, list_targets, load_target, load_target_file, target_names
from edgekit.targets import host as host_module
from edgekit.targets import target as target_module
from edgekit.targets import target_file as target_file_module
from edgekit.targets.host import HostInfo, detect_host

BUNDLED = Path(targets.__file__).parent
EXPECTED = {
    "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-nano", "raspberry-pi-5",
    "raspberry-pi-4", "pixel-8", "snapdragon-8-gen-3", "coral-edgetpu", "host",
}

# A minimal valid profile; each malformed case below edits one thing in it.
GOOD = """\
name = "board"
description = "a test board"
memory_gb = 8
default_unit = "gpu"

[units.gpu]
kind = "gpu"
runtime = "tensorrt"
formats = ["tensorrt"]

[units.gpu.peak]
fp16 = 10
int8 = 20
"""


def write(tmp_path: Path, text: str, name: str = "board.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- bundled profiles --------------------------------------------------------------------------------


def test_every_bundled_target_loads_and_names_match_files():
    loaded = list_targets()
    assert len(loaded) >= 10
    assert {t.name for t in loaded} >= EXPECTED
    assert [t.name for t in loaded] == sorted(t.name for t in loaded) == target_names()
    for t in loaded:
        assert Path(t.source).stem == t.name
        assert t.unit(t.default_unit).name == t.default_unit
        assert t.formats and t.precisions


def test_aliases_are_unique_across_targets():
    keys = [k for t in list_targets() for k in (t.name, *t.aliases)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    "query, name",
    [("jetson", "jetson-orin-nano"), ("orin-nano", "jetson-orin-nano"), ("rpi5", "raspberry-pi-5"),
     ("RPI4", "raspberry-pi-4"), ("  Coral ", "coral-edgetpu"), ("Jetson-AGX-Orin", "jetson-agx-orin")],
)
def test_names_and_aliases_resolve_case_insensitively(query, name):
    assert load_target(query).name == name


def test_unknown_name_suggests_the_closest():
    with pytest.raises(TargetError) as err:
        load_target("jetsn")
    assert str(err.value) == "unknown target 'jetsn'; did you mean 'jetson'? (see: edgekit targets list)"
    with pytest.raises(TargetError, match=r"did you mean 'raspberry-pi-5'"):
        load_target("raspbery-pi-5")
    with pytest.raises(TargetError, match=r"known: coral-edgetpu, host, .*jetson-agx-orin"):
        load_target("zzzzzzzz")
    assert issubclass(TargetError, EdgekitError)


def test_bundled_loads_are_cached():
    assert load_target("jetson") is load_target("jetson-orin-nano")


def test_jetson_tops_are_stored_dense():
    nano = load_target("jetson-orin-nano").unit("gpu")
    assert nano.peak["int8"] == pytest.approx(67 / 2)  # 67 TOPS sparse in Super mode
    assert nano.peak["fp16"] == pytest.approx(nano.peak["int8"] / 2)
    assert nano.peak["fp32"] == pytest.approx(1024 * 2 * 1.02 / 1000, rel=1e-3)
    agx = load_target("jetson-agx-orin")
    assert agx.unit("gpu").peak["int8"] == pytest.approx(171 / 2)
    assert agx.unit("dla0").peak["int8"] + agx.unit("dla1").peak["int8"] == pytest.approx(105 / 2)


def test_dla_units_are_static_shape_fp16_int8_tensorrt_only():
    dlas = [u for t in list_targets() for u in t.units if u.kind == "dla"]
    assert len(dlas) == 4  # 2 on Orin NX, 2 on AGX Orin
    for unit in dlas:
        assert unit.static_shapes
        assert unit.precisions == ("fp16", "int8")
        assert set(unit.peak) <= {"fp16", "int8"}
        assert unit.formats == ("tensorrt",)
        assert unit.runtime == "tensorrt"
        assert unit.max_batch == 4096


def test_coral_is_int8_tflite_only():
    coral = load_target("coral")
    assert coral.precisions == ("int8",)
    assert coral.formats == ("tflite",)
    tpu = coral.unit("tpu")
    assert tpu.int8_only and tpu.static_shapes and tpu.runtime == "edgetpu"
    assert dict(tpu.peak) == {"int8": 4.0}
    assert all(u.int8_only for u in coral.units)


def test_phone_leaks_are_unverified_and_unpublished_figures_are_absent():
    assert load_target("pixel-8").verified is False
    assert load_target("snapdragon-8-gen-3").verified is False
    assert load_target("jetson").verified is True
    assert load_target("pixel-8").memory_bandwidth_gbps is None
    assert dict(load_target("pixel-8").unit("gpu").peak) == {}
    assert load_target("rpi4").memory_bandwidth_gbps is None
    assert load_target("sm8650").unit("npu").precisions == ("fp16", "int8")


def test_jetson_nano_has_no_int8_on_gpu():
    assert load_target("jetson-nano").unit("gpu").precisions == ("fp32", "fp16")


def test_every_number_in_bundled_files_has_a_source_comment():
    number = re.compile(r"^\s*[a-z0-9_]+\s*=\s*[0-9.]+\s*(#.*)?$")
    for path in BUNDLED.glob("*.toml"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if number.match(line):
                same_line = "#" in line
                previous = i > 0 and lines[i - 1].lstrip().startswith("#")
                assert same_line or previous, f"{path.name}:{i + 1}: number without a source: {line!r}"


def test_unit_lookup_and_error_names_available_units():
    agx = load_target("agx-orin")
    assert agx.unit("DLA1").kind == "dla"
    with pytest.raises(TargetError, match=r"has no unit 'npu'; units: gpu, dla0, dla1, cpu"):
        agx.unit("npu")


def test_targets_are_frozen_hashable_and_picklable():
    t = load_target("jetson-orin-nx")
    with pytest.raises(AttributeError):
        t.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.unit("gpu").peak["int8"] = 1.0  # type: ignore[index]
    assert hash(t) == hash(pickle.loads(pickle.dumps(t)))
    assert pickle.loads(pickle.dumps(t)) == t
    assert t.to_dict()["units"][1]["peak"] == {"int8": 10.0}


def test_dataclasses_can_be_built_directly_and_validate():
    unit = ComputeUnit(name="cpu", kind="cpu", runtime="onnxruntime", formats=("onnx",), peak={"fp32": 1.0})
    t = Target(name="mine", description="d", units=(unit,), default_unit="cpu")
    assert t.precisions == ("fp32",)
    with pytest.raises(TargetError, match="default_unit 'gpu' is not a unit; units: cpu"):
        Target(name="mine", description="d", units=(unit,), default_unit="gpu")
    with pytest.raises(TargetError, match="unknown precision 'fp8'; allowed: fp32, fp16, int8"):
        ComputeUnit(name="x", kind="cpu", runtime="onnxruntime", formats=("onnx",), peak={"fp8": 1.0})


# --- strict loading -----------------------------------------------------------------------------------


def test_minimal_profile_loads(tmp_path):
    t = load_target_file(write(tmp_path, GOOD))
    assert t.name == "board" and t.memory_bandwidth_gbps is None and t.verified is True
    assert t.unit("gpu").precisions == ("fp16", "int8")
    assert t.source == str(tmp_path / "board.toml")


@pytest.mark.parametrize(
    "old, new, field_path, message",
    [
        # unknown field
        ('memory_gb = 8', 'memory_gb = 8\nmemroy_bandwidth = 3', "memroy_bandwidth", "unknown field; allowed:"),
        ('kind = "gpu"', 'kind = "gpu"\npeek = 3', "units.gpu.peek", "unknown field; allowed:"),
        # missing field
        ('description = "a test board"\n', '', "description", "missing required field"),
        ('runtime = "tensorrt"\n', '', "units.gpu.runtime", "missing required field"),
        # wrong type
        ('int8 = 20', 'int8 = "abc"', "units.gpu.peak.int8", "expected a positive number, got 'abc'"),
        ('memory_gb = 8', 'memory_gb = true', "memory_gb", "expected a positive number, got True"),
        ('memory_gb = 8', 'memory_gb = -1', "memory_gb", "expected a positive number, got -1"),
        ('formats = ["tensorrt"]', 'formats = "tensorrt"', "units.gpu.formats", "expected a list of strings"),
        ('kind = "gpu"', 'kind = "gpu"\ncores = 2.5', "units.gpu.cores", "expected a whole number >= 1"),
        ('name = "board"', 'name = "Board X"', "name", "expected a lowercase name"),
        # values outside the allowed sets, listing them
        ('int8 = 20', 'fp8 = 20', "units.gpu.peak.fp8", "unknown precision; allowed: fp32, fp16, int8"),
        ('kind = "gpu"', 'kind = "fpga"', "units.gpu.kind", "unknown value 'fpga'; allowed: cpu, gpu, npu, dla, tpu"),
        ('formats = ["tensorrt"]', 'formats = ["tensorrt", "pt"]', "units.gpu.formats[1]",
         "unknown value 'pt'; allowed: onnx, tflite, tensorrt"),
        ('runtime = "tensorrt"', 'runtime = "tvm"', "units.gpu.runtime", "allowed: onnxruntime, litert, tensorrt, qnn, edgetpu"),
        ('runtime = "tensorrt"', 'runtime = "litert"', "units.gpu.runtime", "loads none of the unit's formats"),
        # cross-field checks
        ('default_unit = "gpu"', 'default_unit = "npu"', "default_unit", "'npu' is not a unit; units: gpu"),
        ('kind = "gpu"', 'kind = "gpu"\nint8_only = true', "units.gpu.int8_only", "is true but the unit runs fp16"),
        ('kind = "gpu"', 'kind = "gpu"\nprecisions = ["int8"]', "units.gpu.precisions", "misses 'fp16'"),
        ('kind = "gpu"', 'kind = "gpu"\nefficiency = { conv = 1.5 }', "units.gpu.efficiency.conv",
         "expected a fraction in (0, 1]"),
    ],
)
def test_malformed_profile_names_file_and_field(tmp_path, old, new, field_path, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(TargetError) as err:
        load_target_file(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {field_path}: "), text
    assert message in text, text


def test_invalid_toml_syntax_names_file_and_position(tmp_path):
    path = write(tmp_path, GOOD.replace('name = "board"', 'name = "board'))
    with pytest.raises(TargetError) as err:
        load_target_file(path)
    text = str(err.value)
    assert text.startswith(f"{path}: invalid TOML: ")
    assert "line 1" in text and "\n" not in text


def test_missing_file_and_non_utf8_raise_target_error(tmp_path):
    with pytest.raises(TargetError, match="no such target file"):
        load_target_file(tmp_path / "absent.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace("a test board", "caf\xe9").encode("latin-1"))
    with pytest.raises(TargetError, match="latin1.toml: invalid TOML"):
        load_target_file(path)


# --- host ---------------------------------------------------------------------------------------------


def test_host_detection_gives_cores_and_peak():
    host = load_target("host")
    cpu = host.unit("cpu")
    assert cpu.cores is not None and cpu.cores >= 1
    assert cpu.peak["fp32"] > 0
    assert cpu.peak["int8"] >= cpu.peak["fp32"]
    assert host.memory_bandwidth_gbps is None
    assert host.formats == ("onnx", "tflite") and cpu.runtime == "onnxruntime"
    info = detect_host()
    assert info.logical_cores >= 1 and host.description.startswith("this machine: ")


@pytest.mark.parametrize(
    "flags, per_cycle, int8_factor, note",
    [
        ({"avx512f", "avx2", "fma", "avx512_vnni"}, 64, 4, "VNNI"),
        ({"avx512f", "avx2", "fma"}, 64, 1, "no VNNI: int8 not faster"),
        ({"avx2", "fma"}, 32, 1, "no VNNI: int8 not faster"),
        ({"avx2", "fma", "avx_vnni"}, 32, 4, "VNNI"),
        ({"asimd"}, 16, 1, "no VNNI"),
    ],
)
def test_host_peak_derivation(flags, per_cycle, int8_factor, note):
    info = HostInfo("cpu", 8, 2.5, frozenset(flags), 16.0)
    assert info.flops_per_cycle == per_cycle
    assert info.peak["fp32"] == pytest.approx(8 * 2.5 * per_cycle / 1000)
    assert info.peak["int8"] == pytest.approx(info.peak["fp32"] * int8_factor)
    assert note in info.notes


def test_host_without_clock_has_no_peak_and_toml_values_win():
    assert HostInfo("cpu", 4, None, frozenset(), None).peak == {}
    base = load_target_file(BUNDLED / "host.toml")
    assert base.unit("cpu").peak["fp32"] > 0
    pinned = Target(
        name="host", description="this machine", default_unit="cpu",
        units=(ComputeUnit(name="cpu", kind="cpu", runtime="onnxruntime", formats=("onnx",), cores=2),),
    )
    filled = target_file_module.apply_host(pinned, HostInfo("cpu", 64, 3.0, frozenset({"avx2", "fma"}), 1.0))
    assert filled.unit("cpu").cores == 2
    assert filled.unit("cpu").peak["fp32"] == pytest.approx(2 * 3.0 * 32 / 1000)
    assert filled.memory_gb == 1.0


# --- boundaries ---------------------------------------------------------------------------------------


def test_import_is_torch_free_and_cheap():
    code = (
        "import sys, edgekit.targets as t\n"
        "assert 'torch' not in sys.modules\n"
        "assert 'edgekit.targets.host' not in sys.modules\n"
        "assert not t._CACHE\n"
        "t.load_target('host'); t.list_targets()\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", [targets, target_module, target_file_module, host_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
