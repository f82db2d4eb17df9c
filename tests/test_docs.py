"""The docs say what the code does: the target-profile example loads, counts match the code, and no
file of the repository points at documents that are not in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from edgekit.runtimes.errors import TargetError
from edgekit.targets.target_file import load_target_file

ROOT = Path(__file__).resolve().parents[1]


def _toml_example() -> str:
    text = (ROOT / "docs" / "targets.md").read_text(encoding="utf-8")
    return re.search(r"```toml\n(.*?)```", text, re.S).group(1)


def test_targets_doc_example_is_a_valid_profile(tmp_path):
    path = tmp_path / "my-board.toml"
    path.write_text(_toml_example(), encoding="utf-8")
    target = load_target_file(path)
    assert (target.name, target.aliases, target.default_unit) == ("my-board", ("board",), "npu")
    assert target.unit("cpu").peak["fp32"] == 0.0576 and target.unit("cpu").efficiency["fp32"] == 0.5
    npu = target.unit("npu")
    assert (npu.int8_only, npu.static_shapes, npu.max_batch, npu.precisions) == (True, True, 1, ("int8",))


def test_targets_doc_error_example_is_the_real_message(tmp_path):
    path = tmp_path / "my-board.toml"
    path.write_text(_toml_example().replace('formats = ["tflite"]', 'formats = ["tflite2"]'), encoding="utf-8")
    with pytest.raises(TargetError) as info:
        load_target_file(path)
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert f"`{message}`" in (ROOT / "docs" / "targets.md").read_text(encoding="utf-8")


def test_calibration_zoo_count_is_stated_once_and_right():
    from edgekit.calibration_zoo import calibration_zoo

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    counts = re.findall(r"(\d+) nets of the calibration zoo", readme)
    assert counts == [str(len(calibration_zoo()))]
    assert not re.search(r"~\s?\d+ (measured|varied) (nets|networks)", readme)


def test_no_file_points_outside_the_repository():
    """Design notes and device facts are written into docs/; nothing refers to the team's shared folder."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = re.compile(r"\b(DESIGN|TARGETS|ENVIRONMENT|PAPERS)\.md\b|\.\./shared")
    offenders = [
        name for name in tracked
        if name.endswith((".py", ".md", ".toml", ".cfg", ".txt")) and name != "tests/test_docs.py"
        and (ROOT / name).is_file()  # a file deleted in the working tree is still listed until committed
        and outside.search((ROOT / name).read_text(encoding="utf-8", errors="replace"))
    ]
    assert not offenders, offenders
    for doc in ("docs/ARCHITECTURE.md", "docs/targets.md", "docs/target-sources.md"):
        assert (ROOT / doc).is_file(), doc
