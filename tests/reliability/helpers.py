"""Shared by the reliability tests: run the CLI in-process and check its one-line error, snapshot a folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from edgekit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def cli_error(capsys, args: list[str], code: int, message: str) -> str:
    """Run ``edgekit ARGS``; assert the exit code, one error line holding ``message``, no traceback."""
    assert main(args) == code
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert "Traceback" not in text and "internal" not in text, text
    if "--json" in args:
        error = json.loads(captured.out.strip().splitlines()[-1])["error"]
        assert message in error["message"], error
        return error["message"]
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert message in captured.err, captured.err
    return lines[-1]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` with its bytes (None for folders), to compare byte for byte."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def load_benchmark(name: str):
    """Import benchmarks/NAME.py as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
