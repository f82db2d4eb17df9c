"""The Edge TPU kit: compile the bundle's full-int8 .tflite with ``edgetpu_compiler`` (coral.ai/docs/edgetpu/compiler).

The compiler runs on a 64-bit Debian-based x86-64 host only and is not installable where edgekit exports,
so the bundle carries ``compile_edgetpu.sh`` (``edgetpu_compiler -s -o OUT model.tflite``: ``-s`` prints
which ops were mapped to the Edge TPU, ``-o`` the output directory), ``EDGETPU.md``, and the op-coverage
prediction of which nodes stay on the CPU (the compiler cuts the graph once: the first op it cannot map and
everything after it run on the CPU). The compiled ``model_edgetpu.tflite`` goes beside the bundle, not into
it (a bundle refuses files its manifest does not list).

Example:
    >>> "edgetpu_compiler -s -o" in compile_script("model.tflite")
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from edgekit.runtimes.files import atomic_write_text
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec

from .coverage import coverage_of_file

__all__ = ["compile_script", "write_edgetpu_kit", "EDGETPU_FILES"]

EDGETPU_FILES = ("compile_edgetpu.sh", "EDGETPU.md")


def compile_script(model: str) -> str:
    """``compile_edgetpu.sh``: checks the host, runs the compiler into ``../<bundle>-edgetpu/`` (or $OUT)."""
    stem = Path(model).stem
    return f"""#!/usr/bin/env bash
# Compile {model} for the Edge TPU (edgekit Edge TPU kit; see EDGETPU.md). Needs edgetpu_compiler on a
# 64-bit Debian-based x86-64 host (coral.ai/docs/edgetpu/compiler); the output goes beside the bundle.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
OUT="${{OUT:-$here-edgetpu}}"
if [ "$(uname -m)" != "x86_64" ]; then
  echo "compile_edgetpu.sh: edgetpu_compiler runs on x86-64 hosts only (this is $(uname -m))" >&2
  exit 2
fi
if ! command -v edgetpu_compiler >/dev/null 2>&1; then
  echo "compile_edgetpu.sh: edgetpu_compiler not found; install the edgetpu-compiler package (coral.ai/docs/edgetpu/compiler)" >&2
  exit 2
fi
mkdir -p "$OUT"
edgetpu_compiler -s -o "$OUT" "$here/{model}" "$@"
echo "wrote $OUT/{stem}_edgetpu.tflite; the log ($OUT/{stem}_edgetpu.log) lists the ops left on the CPU"
"""


def _readme(model: str, coverage: Mapping[str, Any] | None) -> str:
    if coverage and coverage.get("nodes"):
        first = coverage["nodes"][0]
        predicted = (f"edgekit predicts {len(coverage['nodes'])} of {coverage['total_nodes']} ops stay on the CPU, from "
                     f"{first['name']} ({first['op_type']}: {first['reason']}) on; `edgekit inspect` lists them.")
    elif coverage:
        predicted = f"edgekit predicts all {coverage['total_nodes']} ops map to the Edge TPU."
    else:
        predicted = "edgekit could not read the graph's ops here; the compiler's log lists them."
    return f"""# Edge TPU kit

`{model}` is fully int8-quantized (weights, activations, input and output). The Edge TPU runs it only after
`edgetpu_compiler` (64-bit Debian-based x86-64 host) compiles it:

    bash compile_edgetpu.sh            # writes ../<bundle>-edgetpu/{Path(model).stem}_edgetpu.tflite and its log

Tensor sizes are fixed at compile time; at most 3 innermost dimensions may be larger than 1; the compiler cuts
the graph once: the first op it cannot map and everything after it run on the CPU. {predicted}
On the device, load the compiled file with the Edge TPU delegate (libedgetpu) in LiteRT.

## What was and was not verified

Verified where edgekit ran: the int8 .tflite runs in LiteRT with its parity reported in manifest.json, this
kit's script passes `bash -n`, and the op-coverage prediction against Coral's published op list.
Not verified: edgetpu_compiler was not run (not installable there), nor the compiled model on an Edge TPU.
"""


def write_edgetpu_kit(model_file: Path, kit_dir: Path, target: Any, precision: str, inputs: Sequence[TensorSpec],
                      example_sizes: Mapping[str, int], unit: str | None = None, *,
                      compression: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the Edge TPU kit for the bundle's int8 ``model_file``; returns the manifest's record of it
    (``compression`` changes nothing: the Edge TPU has no sparse kernels)."""
    if precision != "int8":
        raise UsageError(f"--precision {precision}: the Edge TPU runs fully int8-quantized TFLite only (--precision int8)")
    units = [u.name for u in target.units if u.runtime == "edgetpu"]
    chosen = unit or (target.default_unit if target.default_unit in units else units[0])
    try:
        coverage = coverage_of_file(model_file, target, [chosen])[0].to_json()
    except Exception as exc:  # reading the ops is a prediction only: the compiler's log is the authority
        coverage, note = None, f"{type(exc).__name__}: {exc}"
    else:
        note = ""
    atomic_write_text(kit_dir / "compile_edgetpu.sh", compile_script(model_file.name))
    (kit_dir / "compile_edgetpu.sh").chmod(0o755)
    atomic_write_text(kit_dir / "EDGETPU.md", _readme(model_file.name, coverage))
    return {"files": list(EDGETPU_FILES), "model": model_file.name, "unit": chosen, "coverage": coverage,
            **({"coverage_note": note} if note else {}),
            "verified": "kit generated and checked here; edgetpu_compiler not run (not installable here)"}
