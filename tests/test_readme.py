"""README.md opens with exactly two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_two_commands_that_pin_torch():
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("pip install torch==2.13.0" in c for c in commands)
    assert "edgekit export" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = _quickstart_commands()[1]
    install_and_test = test_command[test_command.index("pip install torch"):]
    assert install_and_test in ci
