"""Target profiles (TOML): size, nesting, special files and absurd figures are refused with one line
naming the file and field, before anything heavy runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgekit.targets
from edgekit.runtimes.errors import TargetError
from edgekit.targets.target_file import MAX_TARGET_FILE_BYTES, RANGES, load_target_file

from .helpers import cli_error, snapshot

RPI5 = Path(edgekit.targets.__file__).with_name("raspberry-pi-5.toml")


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = RPI5.read_text()
    assert old in text, old
    path = tmp_path / "board.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_profile_over_the_size_limit_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "big.toml"
    path.write_text(RPI5.read_text() + "#" * MAX_TARGET_FILE_BYTES)
    before = snapshot(tmp_path)
    cli_error(capsys, ["targets", "show", "--target-file", str(path)], 1,
              f"{path}: larger than the 1024 KiB a target profile may be")
    assert snapshot(tmp_path) == before


def test_dev_zero_as_a_profile_is_refused(capsys):
    cli_error(capsys, ["targets", "show", "--target-file", "/dev/zero"], 1, "/dev/zero: not a regular file")


def test_a_directory_as_a_profile_is_refused(tmp_path, capsys):
    cli_error(capsys, ["targets", "show", "--target-file", str(tmp_path)], 1, str(tmp_path))


@pytest.mark.parametrize("nesting", ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{b = " * 3000 + "1" + "}" * 3000])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path, capsys, nesting):
    path = tmp_path / "deep.toml"
    path.write_text(nesting + "\n")
    message = cli_error(capsys, ["targets", "show", "--target-file", str(path)], 1, str(path))
    assert "RecursionError" not in message


@pytest.mark.parametrize("old,new,field,message", [
    ("clock_ghz = 2.4", "clock_ghz = 1e9", "units.cpu.clock_ghz", "1e+09 is above the stated limit of 10"),
    ("cores = 4", "cores = 1000000000", "units.cpu.cores", "1e+09 is above the stated limit of 4096"),
    ("memory_gb = 4", "memory_gb = 1e12", "memory_gb", "1e+12 is above the stated limit of 65536"),
    ("memory_bandwidth_gbps = 17", "memory_bandwidth_gbps = 1e30", "memory_bandwidth_gbps", "1e+30 is above the stated limit"),
    ("fp32 = 0.1536", "fp32 = 1e12", "units.cpu.peak.fp32", "1e+12 is above the stated limit of 100000"),
    ("clock_ghz = 2.4", "clock_ghz = nan", "units.cpu.clock_ghz", "expected a positive number, got nan"),
    ("clock_ghz = 2.4", "clock_ghz = inf", "units.cpu.clock_ghz", "expected a positive number, got inf"),
    ("clock_ghz = 2.4", "clock_ghz = -2.4", "units.cpu.clock_ghz", "expected a positive number, got -2.4"),
    ("cores = 4", "cores = 0", "units.cpu.cores", "expected a whole number >= 1, got 0"),
    ('name = "raspberry-pi-5"', 'name = "../../etc"', "name", "expected a lowercase name"),
])
def test_absurd_or_invalid_figures_name_the_field(tmp_path, capsys, old, new, field, message):
    path = _variant(tmp_path, old, new)
    with pytest.raises(TargetError) as info:
        load_target_file(path)
    assert f"{path}: {field}: " in str(info.value) and message in str(info.value)
    before = snapshot(tmp_path)
    cli_error(capsys, ["targets", "show", "--target-file", str(path)], 1, message)
    assert snapshot(tmp_path) == before


def test_every_shipped_profile_is_within_the_stated_ranges():
    for path in sorted(RPI5.parent.glob("*.toml")):
        load_target_file(path)  # raises if a shipped figure were above RANGES
    assert RANGES["clock_ghz"] == 10.0


def test_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    cli_error(capsys, ["targets", "show", "--target-file", str(path)], 1, "not UTF-8")
