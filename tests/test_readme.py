"""README.md opens with exactly two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
import shlex
import sys
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


# --- Every shell example of the README runs, in order, in one scratch directory ---------------------
#
# Examples that need what a test cannot have (a device on the network, a file the user downloaded) or
# that measure for minutes are listed here with the reason; they must still be in the README and use
# only options their command has. The files a user would bring (their package, a .pt2, a board profile,
# calibration images, a Hugging Face directory, a lookup table) are made by _bring_user_files.
NOT_RUN = {
    "edgekit export --model ofa-mbv3 --checkpoint ofa_mbv3_d234_e346_k357_w1.0 --subnet-file w10.json --out out/w10":
        "a released once-for-all checkpoint (tests/test_ofa_checkpoint.py runs that path on a generated one)",
    "edgekit select --model ofa-mbv3 --checkpoint ofa_mbv3_d234_e346_k357_w1.0 --accuracy ofa_acc_predictor.pth --target rpi5 --budget-ms 30":
        "once-for-all's released supernet and predictor (tests/test_released_predictor.py runs that path on generated ones)",
    "edgekit select --model seg-simple --target rpi5 --budget-ms 2":
        "minutes of fine-tuning per level (tests/test_select_measured.py runs it with 5 steps)",
    "edgekit select --model slm-encdec,slm-deconly --target host --budget-first-token-ms 5 --budget-tokens-per-s 1000":
        "a minute of exports and generation timing (tests/test_select_lm.py runs it at fp32)",
    "edgekit agent --token-file ~/.edgekit-token --port 8765": "a server that runs until stopped (tests/test_agent.py)",
    "edgekit profile out/rpi5 --target rpi5 --agent http://pi:8765 --token-file ~/.edgekit-token": "a Raspberry Pi on the network",
    "edgekit calibrate --target host --threads 1": "minutes of measurement (tests/test_profile.py runs it small)",
    "edgekit lut build --space ofa-mbv3-shapes": "minutes of measurement (tests/test_lut_cli.py runs it small)",
}


def _shell_examples() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)[1:]  # the first block is the quickstart
    commands = []
    for block in blocks:
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _bring_user_files(here: Path) -> None:
    import numpy as np
    import torch

    (here / "mypkg").mkdir()
    (here / "mypkg" / "__init__.py").write_text("")
    (here / "mypkg" / "models.py").write_text(
        "import torch\n\ndef build():\n"
        "    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.ReLU(),\n"
        "                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))\n"
        "    net.input_shape = (1, 3, 32, 32)\n"
        "    return net\n"
    )
    rng = np.random.default_rng(0)  # the user's labelled data for `select --eval-data`
    np.savez(here / "val.npz", inputs=rng.standard_normal((96, 3, 32, 32)).astype(np.float32),
             labels=rng.integers(0, 3, 96))
    (here / "mymodel.py").write_text((here / "mypkg" / "models.py").read_text())
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 8, 8),)), str(here / "program.pt2"))
    board = re.search(r"```toml\n(.*?)```", (ROOT / "docs" / "targets.md").read_text(encoding="utf-8"), re.S)
    (here / "my-board.toml").write_text(board.group(1))
    from edgekit.models.ofa import calibration_images

    np.save(here / "calib.npy", calibration_images(64, 64))
    (here / "note10_lut.yaml").write_text("Logits-input:1x1x1280-output:1000:\n  mean: 0.05\n")
    sys.path.insert(0, str(ROOT / "tests"))
    from test_slm_equality import build_hf_model

    build_hf_model("flan-t5", here / "my-t5")


def _options(command: str) -> list[str]:
    return [word.split("=")[0] for word in shlex.split(command) if word.startswith("--")]


GROUPS = {"lut", "targets", "store", "ofa"}  # commands with subcommands


def test_readme_examples_not_run_are_still_there_and_well_formed(capsys):
    from edgekit.cli import main

    commands = _shell_examples()
    for command, reason in NOT_RUN.items():
        assert command in commands, f"NOT_RUN lists {command!r} ({reason}), which the README no longer has"
        words = shlex.split(command)[1:]
        subcommand = words[:2] if words[0] in GROUPS else words[:1]
        assert main([*subcommand, "--help"]) == 0
        capsys.readouterr()
        known = _command_options(subcommand)  # from the command itself: the help table truncates long names
        for option in _options(command):
            assert option in known, f"{command!r}: 'edgekit {' '.join(subcommand)}' has no option {option}"


def _command_options(subcommand: list[str]) -> set[str]:
    import typer

    from edgekit.cli import app

    command = typer.main.get_command(app)
    for name in subcommand:
        command = command.commands[name]
    return {opt for param in command.params for opt in getattr(param, "opts", ())}


def test_readme_shell_examples_run(tmp_path, monkeypatch, capsys):
    """Each example exits 0 when run as written (in-process, in order: later ones use earlier bundles)."""
    from edgekit.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    _bring_user_files(tmp_path)
    ran = []
    for command in _shell_examples():
        if command in NOT_RUN:
            continue
        command, _, redirect = command.partition(" > ")
        words = shlex.split(command)
        assert words[0] == "edgekit", command
        code = main(words[1:])
        captured = capsys.readouterr()
        assert code == 0, f"README example failed: {command}\n{captured.err[-2000:]}"
        if redirect:
            (tmp_path / redirect.strip()).write_text(captured.out)
        ran.append(command)
    assert len(ran) >= 25, ran
