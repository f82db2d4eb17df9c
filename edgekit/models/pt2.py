"""Load a ``torch.export`` archive (``.pt2``) without running code that the file carries.

``torch.export.load`` unpickles parts of the archive (sample inputs, ``use_pickle`` weights and
constants, opaque objects), evaluates shape expressions with ``sympy.sympify`` (which calls ``eval``)
and resolves any callable under ``torch`` as a graph node's target. :func:`check_archive` reads the
zip first and refuses every part that could run code; :func:`load_program` then loads the same bytes
with every ``torch.load`` forced to ``weights_only=True``. ``trust=True`` (``--trust-model-file``)
skips both and uses torch's own loader as is.

A normal ``torch.export.save`` archive (torch 2.13) holds: ``models/model.json`` (the program),
``data/weights/*`` and ``data/constants/*`` (raw tensor bytes, described by ``*_config.json``), and
``data/sample_inputs/model.pt`` (a ``torch.save`` archive of plain tensors, which ``weights_only=True``
loads without running code).

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.pt2"
    >>> torch.export.save(torch.export.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),)), path)
    >>> check_archive(path.read_bytes(), f"--model {path}")
    >>> type(load_program(path)).__name__
    'ExportedProgram'
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

from edgekit.runtimes.errors import ModelLoadError, UsageError

__all__ = ["check_archive", "load_program"]

_REFUSAL = "which can run code when loaded; refusing (pass --trust-model-file if you trust this file)"
_RAW_PREFIXES = ("weight_", "tensor_")  # torch.export's raw-bytes payloads; others are pickled objects
_PAYLOAD_DIRS = {"weights": "data/weights/", "constants": "data/constants/"}
# Graph targets torch serializes for symbolic-int arithmetic (torch._export.serde.serialize._SYM_OPS).
_SYM_OPS = frozenset(
    [f"_operator.{op}" for op in ("add", "and_", "eq", "floordiv", "ge", "getitem", "gt", "le", "lshift", "lt",
                                  "mod", "mul", "ne", "neg", "or_", "pos", "pow", "rshift", "sub", "truediv")]
    + ["math.trunc", "torch._sym_sqrt", "torch.sym_float", "torch.sym_int", "torch.sym_ite", "torch.sym_max",
       "torch.sym_min", "torch.sym_not"]
)
_OPERATOR = re.compile(r"torch\.ops\.([a-z][a-z0-9_]*)\.(?!__)\w+(\.(?!__)\w+)?")


def _refuse(where: str, what: str) -> ModelLoadError:
    return ModelLoadError(f"{where}: {what}, {_REFUSAL}")


def _is_pickle(data: bytes) -> bool:
    """Whether ``data`` is one whole pickle stream (any protocol)."""
    try:
        ops = list(pickletools.genops(io.BytesIO(data)))
    except Exception:
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


def _is_torch_save(data: bytes) -> bool:
    """Whether ``data`` is a ``torch.save`` zip (a pickle, ``data.pkl``, plus tensor storages)."""
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Archive members by their name under the archive's top folder."""
    members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
    tops = {name.split("/", 1)[0] for name in members}
    if len(tops) == 1 and all("/" in name for name in members):
        return {name.split("/", 1)[1]: info for name, info in members.items()}
    return members


def _raw_payloads(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], where: str) -> set[str]:
    """Members that hold raw tensor bytes; refuses configs that ask for unpickling."""
    raw: set[str] = set()
    for name, info in members.items():
        kind = next((k for k, d in _PAYLOAD_DIRS.items() if name.startswith(d) and name.endswith("_config.json")), None)
        if kind is None:
            continue
        try:
            config = json.loads(archive.read(info))["config"]
            entries = [(str(fqn), meta.get("use_pickle"), str(meta["path_name"])) for fqn, meta in config.items()]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f"{where}: {name} is not a valid payload config ({type(exc).__name__})") from exc
        for fqn, use_pickle, path_name in entries:
            if use_pickle or not path_name.startswith(_RAW_PREFIXES):
                raise _refuse(where, f"{name} stores {fqn!r} as a pickle")
            raw.add(_PAYLOAD_DIRS[kind] + path_name)
    return raw


def _plain_tensors(value: Any) -> bool:
    import torch

    if isinstance(value, (tuple, list)):
        return all(_plain_tensors(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_tensors(v) for k, v in value.items())
    return type(value) is torch.Tensor


def _check_sample_inputs(name: str, blob: bytes, where: str) -> None:
    import torch

    if not blob:
        return
    if not _is_torch_save(blob):
        what = "is a pickle" if _is_pickle(blob) else "is not a torch.save archive of tensors"
        raise _refuse(where, f"{name} {what}")
    try:
        value = torch.load(io.BytesIO(blob), weights_only=True)
    except Exception:
        value = None
    if not (isinstance(value, tuple) and len(value) == 2 and _plain_tensors(value)):
        raise _refuse(where, f"{name} holds objects other than plain tensors")


def _harmless_name(name: str) -> bool:
    """A name that ``sympify`` may meet: unknown names become symbols; sympy's own must be expressions."""
    import sympy

    value = getattr(sympy, name, None)
    if value is None:
        return True
    return isinstance(value, sympy.Basic) or (isinstance(value, type) and issubclass(value, sympy.Basic))


def _plain_expression(expr: str) -> bool:
    """Whether a shape expression is arithmetic on symbols (sympy evaluates it with ``eval``)."""
    if "__" in expr or not re.fullmatch(r"[\w\s+\-*/%(),=<>!'.&|~]*", expr):
        return False
    text = re.sub(r"'(?:[A-Za-z_]\w*|[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)'", "0", expr)  # Symbol('s0'), Float('1.5')
    text = re.sub(r"\d+\.\d*(?:e[-+]?\d+)?", "0", text)  # float literals: the only dots allowed
    if "'" in text or "." in text:
        return False
    for match in re.finditer(r"[A-Za-z_]\w*", text):
        rest = text[match.end():].lstrip()
        keyword_argument = rest.startswith("=") and not rest.startswith("==")
        if not keyword_argument and not _harmless_name(match.group()):
            return False
    return True


def _operator_target(target: str) -> bool:
    import torch

    match = _OPERATOR.fullmatch(target)
    if match:  # torch.ops.NAMESPACE.OP[.OVERLOAD], not an attribute of torch.ops itself (load_library, ...)
        return not hasattr(type(torch.ops), match.group(1))
    return target in _SYM_OPS


def _strings(value: Any, keys: frozenset[str]) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` pair under ``keys`` anywhere in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in keys:
                yield key, item
            yield from _strings(item, keys)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, keys)


def _check_program_json(name: str, blob: bytes, where: str) -> None:
    try:
        document = json.loads(blob)
    except ValueError:
        return  # not JSON: torch reads it as a string or not at all
    for key, value in _strings(document, frozenset({"target", "as_operator", "expr_str"})):
        if not isinstance(value, str):
            continue
        if key == "expr_str" and not _plain_expression(value):
            raise _refuse(where, f"{name} has a shape expression that is not plain arithmetic ({value[:60]!r})")
        if key != "expr_str" and not _operator_target(value):
            raise _refuse(where, f"{name} calls {value[:60]!r}, which is not a torch operator")


def check_archive(data: bytes, where: str) -> None:
    """Raise :class:`ModelLoadError` unless every part of the ``.pt2`` bytes loads without running code."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_members(archive, where)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelLoadError(f"{where}: not a torch.export archive ({exc})") from exc


def _check_members(archive: zipfile.ZipFile, where: str) -> None:
    members = _members(archive)
    raw = _raw_payloads(archive, members, where)  # raw tensor bytes are never unpickled: not read here
    for name, info in members.items():
        if name in raw:
            continue
        blob = archive.read(info)
        if name.startswith("data/sample_inputs/"):
            _check_sample_inputs(name, blob, where)
        elif _is_pickle(blob):
            raise _refuse(where, f"{name} is a pickle")
        elif _is_torch_save(blob):
            raise _refuse(where, f"{name} is a torch.save archive (a pickle inside)")
        elif name.endswith(".json"):
            _check_program_json(name, blob, where)


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Force ``weights_only=True`` on every ``torch.load`` (torch falls back to unpickling otherwise)."""
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def load_program(path: Path, *, trust: bool = False):
    """The ``ExportedProgram`` in ``path``; unless ``trust``, refuse parts that could run code.

    Raises UsageError for a missing file and ModelLoadError for a refused or unreadable archive.
    """
    import torch

    path = Path(path)
    where = f"--model {path}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    data = path.read_bytes()  # checked and loaded from the same bytes
    if not trust:
        check_archive(data, where)
    try:
        with warnings.catch_warnings(), (contextlib.nullcontext() if trust else _weights_only_loads()):
            warnings.simplefilter("ignore")
            return torch.export.load(io.BytesIO(data))
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"{where}: not a loadable torch.export archive ({type(exc).__name__}: {message})") from exc
