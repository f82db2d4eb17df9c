"""Model families: the one registry that turns a ``--model`` reference into a :class:`ModelSource`.

A reference is one of:
- a built-in name (``edgekit export --model NAME``): ``mobilenet-v3-small``, ``ofa-mbv3``, the
  small language models ``slm-encdec`` / ``slm-deconly``, the segmenters ``seg-simple`` / ``seg-vwformer``;
- a prefixed reference: ``slm:FILE.pt`` (your own SLM checkpoint), ``hf:DIR`` (a Hugging Face T5/BART),
  ``hf-seg:DIR`` (a Hugging Face SegFormer);
- ``package.module:factory`` or ``path/to/file.py:factory``, a callable returning an ``nn.Module``;
- a ``.pt2`` archive written by ``torch.export.save``.

Each is a :class:`Family` record: how references are spelled, the ``"module:function"`` that resolves
them (``(ModelRequest) -> ModelSource``, single- or multi-graph alike), and what the family accepts
(precisions, ``--dynamo``, ``--bn-data``, ``--budget-ms``), so that the pipeline refuses an option before
loading anything. A new family is one :func:`register_family` call.

Example:
    >>> source = resolve_model(ModelRequest("mobilenet-v3-small"))
    >>> source.inputs[0].shape
    ('batch', 3, 224, 224)
    >>> find_family("hf:/models/t5").name, find_family("hf:/models/t5").dynamo
    ('hf:DIR', False)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.formats import import_ref

from .source import FamilyData, HostTiming, ModelRequest, ModelSource, Tokenizer, load_samples
from .user import is_factory_ref, parse_dynamic, parse_input_shapes, parse_names, parse_shape

__all__ = [
    "Family", "register_family", "unregister_family", "find_family", "families", "resolve_model", "DEFAULT_MODEL",
    "ModelRequest", "ModelSource", "FamilyData", "HostTiming", "Tokenizer",
    "parse_shape", "parse_input_shapes", "parse_names", "parse_dynamic", "load_samples",
]


@dataclass(frozen=True)
class Family:
    """One model family. ``name`` is the reference itself, or how a prefix/pattern family's references
    are spelled in messages (``slm:FILE.pt``). A reference belongs to the family when it equals ``name``
    (no ``prefix`` or ``match``), starts with ``prefix``, or satisfies ``match``.

    ``precisions`` limits what it exports (None: whatever the format writes; ``precision_note`` says
    where the others come from); ``dynamo`` is False when its graphs cannot take the torch.export-based
    exporter (``dynamo_note`` says why); ``bn_data``: it recalibrates BatchNorm, so ``--bn-data`` applies;
    ``searchable``: ``--budget-ms`` selects among its subnets; ``variant``: the ``"module:function"`` that
    writes a precision variant of a model of several graphs from its fp32 bundle
    (``(fp32_dir, out, precision, *, min_agreement, threads, force, say) -> Manifest``).
    """

    name: str
    source: str  # "module:function", (ModelRequest) -> ModelSource
    prefix: str | None = None
    match: Callable[[str], bool] | None = None
    precisions: tuple[str, ...] | None = None
    precision_note: str = ""
    dynamo: bool = True
    dynamo_note: str = ""
    bn_data: bool = False
    searchable: bool = False
    variant: str | None = None

    def matches(self, ref: str) -> bool:
        if self.prefix is not None:
            return ref.startswith(self.prefix)
        if self.match is not None:
            return self.match(ref)
        return ref == self.name

    @property
    def named(self) -> bool:
        """A built-in name (not a prefix or pattern)."""
        return self.prefix is None and self.match is None

    def load(self, request: ModelRequest) -> ModelSource:
        """Resolve ``request`` with this family's source function."""
        return import_ref(self.source, f"family {self.name}")(request)


_SLM = "edgekit.models.slm.export:slm_source"
_SLM_LIMITS = dict(
    precisions=("fp32", "int8", "fp16"),
    precision_note="int8 / fp16 apply to the decoder and LM head, measured against fp32 (--min-agreement)",
    variant="edgekit.models.slm.quantize:export_variant",
    dynamo=False,
    dynamo_note="torch.export cannot take the dynamic KV-cache axes of its graphs yet; export without --dynamo",
)
_SEG = "edgekit.models.seg.source:seg_source"
_FAMILIES: list[Family] = [
    Family("mobilenet-v3-small", "edgekit.models.user:mobilenet_source"),
    Family("ofa-mbv3", "edgekit.models.ofa_family:ofa_source", bn_data=True, searchable=True),
    Family("slm-encdec", _SLM, **_SLM_LIMITS),
    Family("slm-deconly", _SLM, **_SLM_LIMITS),
    Family("slm:FILE.pt", _SLM, prefix="slm:", **_SLM_LIMITS),
    Family("hf:DIR", _SLM, prefix="hf:", **_SLM_LIMITS),
    Family("seg-simple", _SEG),
    Family("seg-vwformer", _SEG),
    Family("hf-seg:DIR", _SEG, prefix="hf-seg:"),
    Family("a .pt2 file", "edgekit.models.user:pt2_source", match=lambda ref: ref.endswith(".pt2")),
    Family("package.module:factory; path/to/file.py:factory", "edgekit.models.user:factory_source",
           match=is_factory_ref),
]
# The trained once-for-all supernet's largest subnet (99.0% held-out top-1 on the shapes task).
DEFAULT_MODEL = "ofa-mbv3"


def register_family(family: Family) -> Family:
    """Add a model family; references are matched by name first, then by prefix, then by pattern (in
    registration order, so a pattern must not overlap the factory form ``location:attribute``)."""
    if any(f.name == family.name for f in _FAMILIES):
        raise UsageError(f"model family {family.name!r} is registered already")
    _FAMILIES.append(family)
    return family


def unregister_family(name: str) -> None:
    """Remove the family called ``name`` (a plug-in's, or a test's)."""
    _FAMILIES.remove(next(f for f in _FAMILIES if f.name == name))


def families() -> tuple[Family, ...]:
    """Every registered family, built-ins first."""
    return tuple(_FAMILIES)


def _accepted_forms() -> str:
    names = [f"built-in names {', '.join(f.name for f in _FAMILIES if f.named)}"]
    forms = names + [f.name for f in _FAMILIES if not f.named]
    return "; ".join(forms[:-1]) + f"; or {forms[-1]}"


def find_family(ref: str | None) -> Family:
    """The family of ``ref`` (None: the default model's); UsageError listing every accepted form.

    Example:
        >>> find_family("slm:my.pt").name
        'slm:FILE.pt'
        >>> find_family("ofa-mbv")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --model 'ofa-mbv' is not a model reference (did you mean 'ofa-mbv3'?); accepted: built-in names mobilenet-v3-small, ofa-mbv3, slm-encdec, slm-deconly, seg-simple, seg-vwformer; slm:FILE.pt; hf:DIR; hf-seg:DIR; a .pt2 file; or package.module:factory; path/to/file.py:factory
    """
    ref = ref or DEFAULT_MODEL
    for kind in (lambda f: f.named, lambda f: f.prefix is not None, lambda f: f.match is not None):
        family = next((f for f in _FAMILIES if kind(f) and f.matches(ref)), None)
        if family is not None:
            return family
    close = difflib.get_close_matches(ref, [f.name for f in _FAMILIES if f.named], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(f"--model {ref!r} is not a model reference{hint}; accepted: {_accepted_forms()}")


def resolve_model(request: ModelRequest) -> ModelSource:
    """Resolve ``request.ref`` (None means the default built-in) into a :class:`ModelSource`."""
    return find_family(request.ref).load(request)
