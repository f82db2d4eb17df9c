"""What a model family hands the export pipeline: the request it reads, and the source it returns.

A :class:`ModelSource` carries one or more graphs (each an :class:`~edgekit.exporters.base.ExportGraph`:
a torch module with its input specs, example and validation inputs, output names and axes) and the
family's data: int8 calibration feeds, labelled held-out data, the generation config and tokenizer of a
language model. The pipeline builds every bundle from it the same way, whatever the family.

Example:
    >>> import torch
    >>> from edgekit.exporters.base import ExportGraph
    >>> net = torch.nn.Linear(4, 2).eval()
    >>> graph = ExportGraph("model", net, (TensorSpec("x", ("batch", 4)),), (torch.zeros(1, 4),))
    >>> source = ModelSource("linear", {"model": graph})
    >>> source.single_graph, source.inputs[0].name
    (True, 'x')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from edgekit.exporters.base import ExportGraph
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.session import Session
from edgekit.runtimes.spec import TensorSpec

__all__ = ["ModelRequest", "ModelSource", "FamilyData", "Tokenizer", "HostTiming", "ChainedCheck", "load_samples"]

Feeds = Mapping[str, Any]
# ``check(open_graph, atol, rtol) -> record``: run the exported graphs together (``open_graph(name)`` gives a
# session over each file, in the format's runtime) against the source model; ValidationError on failure.
ChainedCheck = Callable[[Callable[[str], Session], float, float], Mapping[str, Any]]


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for; model families read the fields they understand."""

    ref: str | None = None
    input_shape: tuple[int, ...] | None = None
    checkpoint: Path | None = None  # weights file for families that take one (ofa-mbv3)
    subnet: str | None = None  # a subnet config: JSON text or a .json file (ofa-mbv3)
    space: str | None = None  # search space name (ofa-mbv3; detected from the checkpoint otherwise)
    bn_data: Path | None = None  # .npy images (N, ...) to recalibrate BatchNorm (ofa-mbv3); default: the family's data
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # --input-shape NAME=SHAPE, per input
    input_names: tuple[str, ...] | None = None  # --input-names: instead of forward's argument names
    output_names: tuple[str, ...] | None = None  # --output-names: instead of the model's own (dict keys)
    dynamic_hw: bool = False  # --dynamic hw: the last two axes of image inputs are dynamic (height, width)
    trust_model_file: bool = False  # --trust-model-file: load a .pt2 with torch's loader, pickles included
    static_shapes: bool = False  # the format fixes every axis but the batch (TFLite): give static-shape graphs if any


@dataclass(frozen=True)
class Tokenizer:
    """A language model's tokenizer as the bundle carries it: its kind (``byte`` or ``hf``), the files
    to copy into the bundle's ``tokenizer/`` folder, and the ids framing every input."""

    kind: str
    source_files: tuple[Path, ...] = ()
    prefix: tuple[int, ...] | None = None
    suffix: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FamilyData:
    """The family's own data, when it has some.

    ``int8_calibration(n)`` returns n feed dicts that calibrate int8 quantization (never BatchNorm);
    ``held_out()`` returns labelled held-out feed dicts and their labels (accuracy checks);
    ``generation`` and ``tokenizer`` are what a language model's runtime needs from the manifest.
    """

    int8_calibration: Callable[[int], list[Feeds]] | None = None
    held_out: Callable[[], tuple[list[Feeds], Any]] | None = None
    generation: Mapping[str, Any] | None = None
    tokenizer: Tokenizer | None = None


@dataclass(frozen=True)
class HostTiming:
    """What the pipeline times on the host for a model that runs several graphs in a loop: one graph on
    fixed feeds, described in a few words for the manifest (``what``)."""

    graph: str
    feeds: Feeds
    what: str


@dataclass(frozen=True)
class ModelSource:
    """A model ready to export: its graphs (in export order) and the family's data.

    A single-graph model runs its one graph (``single_graph``); the pipeline writes precision variants,
    example sizes and accuracy for it. A model of several graphs (an LM's encoder and KV-cache decoder)
    supplies ``chained_check`` (its graphs run together against the source) and ``timing`` (what to time).
    """

    name: str
    graphs: Mapping[str, ExportGraph]
    task: str = "generic"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    data: FamilyData = field(default_factory=FamilyData)
    chained_check: ChainedCheck | None = None
    timing: HostTiming | None = None

    def __post_init__(self) -> None:
        assert self.graphs and all(name == g.name for name, g in self.graphs.items()), "graphs keyed by their names"

    @property
    def single_graph(self) -> bool:
        """One graph that is the whole model (no generation loop, no chained check)."""
        return len(self.graphs) == 1 and self.chained_check is None

    @property
    def graph(self) -> ExportGraph:
        """The model's only graph."""
        if len(self.graphs) != 1:
            raise UsageError(f"{self.name}: has {len(self.graphs)} graphs ({', '.join(self.graphs)}), not one")
        return next(iter(self.graphs.values()))

    @property
    def module(self):
        return self.graph.module

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.graph.inputs

    @property
    def example_inputs(self) -> tuple[Any, ...]:
        return self.graph.example_inputs

    @property
    def output_names(self) -> tuple[str, ...] | None:
        return self.graph.output_names


def load_samples(path: Path, spec: TensorSpec, option: str = "--calib-data"):
    """``--calib-data`` / ``--bn-data`` (``option``, named in errors): a .npy of samples stacked on the
    first axis, each shaped like one ``spec`` item.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
        >>> np.save(f, np.zeros((5, 3, 8, 8)))
        >>> load_samples(f, TensorSpec("image", ("batch", 3, 8, 8))).shape
        (5, 3, 8, 8)
    """
    import numpy as np

    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{option} {path}: not a readable .npy file ({exc})") from exc
    sample_shape = spec.shape[1:]  # named axes (height, width with --dynamic hw) take any size
    if data.ndim != len(spec.shape) or any(isinstance(w, int) and w != g for w, g in zip(sample_shape, data.shape[1:])):
        raise UsageError(
            f"{option} {path}: expected samples shaped (N, {', '.join(map(str, sample_shape))}) for input "
            f"{spec.name!r}, got {tuple(data.shape)}"
        )
    return data.astype(spec.dtype, copy=False)
