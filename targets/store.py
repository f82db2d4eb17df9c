"""The latency store: measured latencies in SQLite under the user cache directory.

One row per (target, runtime, runtime version, precision, threads, kind, key), where ``kind`` is
"model" (key: sha256 of the model file), "block" (key: a block key string) or "node". Every row is
*measured*; modeled numbers never go here. The file lives at
``platformdirs.user_cache_dir("edgekit")/latency.sqlite`` unless ``EDGEKIT_CACHE_DIR`` or an explicit
path says otherwise. It runs in WAL mode with a busy timeout, and reads and writes are retried on
SQLITE_BUSY for at most BUSY_TIMEOUT_S, so several processes can share it. One process at a time opens
it (an flock on ``<name>.lock``), so a store that one process just rebuilt is never judged corrupt by
another. A file that is not a usable store (not SQLite, truncated, another schema version) is moved
aside to ``<name>.corrupt-<timestamp>`` with a one-line warning on stderr and replaced by an empty
store; another application's SQLite database is refused and left alone; a bad row is an error naming
the row and the field.

Example:
    >>> import tempfile, pathlib
    >>> store = LatencyStore(pathlib.Path(tempfile.mkdtemp()) / "latency.sqlite")
    >>> rec = LatencyRecord("host", "onnxruntime", "1.20.0", "fp32", 1, "model", "ab" * 32,
    ...                     p50_ms=3.2, p90_ms=3.5, runs=50, measured_at="2026-01-02T03:04:05Z", meta={})
    >>> store.record(rec)
    >>> store.lookup("host", "ab" * 32, runtime="onnxruntime", precision="fp32", threads=1).p50_ms
    3.2
    >>> store.lookup("host", "cd" * 32, runtime="onnxruntime", precision="fp32", threads=1) is None
    True
    >>> store.close()
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from edgekit.runtimes.files import atomic_write_text
from edgekit.runtimes.errors import EdgekitError

__all__ = [
    "SCHEMA_VERSION",
    "RECORD_KINDS",
    "CACHE_ENV",
    "StoreError",
    "LatencyRecord",
    "LatencyStore",
    "default_store_path",
    "now_iso",
]

SCHEMA_VERSION = 1
RECORD_KINDS = ("model", "block", "node")
CACHE_ENV = "EDGEKIT_CACHE_DIR"
FILE_NAME = "latency.sqlite"
EXPORT_FORMAT = "edgekit-latency-store"
BUSY_TIMEOUT_S = 30.0

_KEY_FIELDS = ("target", "runtime", "runtime_version", "precision", "threads", "kind", "key")
_ALL_FIELDS = _KEY_FIELDS + ("p50_ms", "p90_ms", "runs", "measured_at", "meta")

_CREATE = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS latency (
    target TEXT NOT NULL,
    runtime TEXT NOT NULL,
    runtime_version TEXT NOT NULL,
    precision TEXT NOT NULL,
    threads INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    p50_ms REAL NOT NULL,
    p90_ms REAL NOT NULL,
    runs INTEGER NOT NULL,
    measured_at TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY ({", ".join(_KEY_FIELDS)})
);
"""


class StoreError(EdgekitError):
    """The latency store cannot be read or written, or an import file is malformed."""


def now_iso() -> str:
    """The current UTC time as ISO 8601 with a ``Z`` suffix, to the second.

    Example:
        >>> now_iso().endswith("Z") and len(now_iso()) == 20
        True
    """
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be field ``name`` of a LatencyRecord, or None when it can."""
    if name in ("target", "runtime", "runtime_version", "precision", "key", "measured_at"):
        if not isinstance(value, str) or (name != "runtime_version" and not value.strip()):
            return f"expected a non-empty string, got {value!r}"
        if name == "measured_at":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return f"expected an ISO 8601 time such as 2026-01-02T03:04:05Z, got {value!r}"
        return None
    if name == "kind":
        return None if value in RECORD_KINDS else f"expected one of {RECORD_KINDS}, got {value!r}"
    if name in ("threads", "runs"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"expected an integer >= 1, got {value!r}"
        return None
    if name in ("p50_ms", "p90_ms"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"expected a finite number >= 0, got {value!r}"
        return None
    if name == "meta":
        if not isinstance(value, Mapping):
            return f"expected an object, got {type(value).__name__}"
        try:
            json.dumps(dict(value))
        except (TypeError, ValueError) as exc:
            return f"expected JSON-serializable values ({exc})"
        return None
    raise AssertionError(f"unknown LatencyRecord field {name}")


@dataclass(frozen=True)
class LatencyRecord:
    """One measured latency. ``key`` is a model file's sha256 (kind "model") or a block key string.

    Example:
        >>> LatencyRecord("host", "onnxruntime", "1.20.0", "fp32", 0, "model", "k", 1.0, 1.0, 5, "2026-01-01T00:00:00Z")
        Traceback (most recent call last):
        ...
        edgekit.targets.store.StoreError: latency record: field 'threads': expected an integer >= 1, got 0
    """

    target: str
    runtime: str
    runtime_version: str
    precision: str
    threads: int
    kind: str
    key: str
    p50_ms: float
    p90_ms: float
    runs: int
    measured_at: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    source = "measured"  # class constant: the store only ever holds measurements

    def __post_init__(self) -> None:
        for name in _ALL_FIELDS:
            problem = _field_problem(name, getattr(self, name))
            if problem:
                raise StoreError(f"latency record: field {name!r}: {problem}")

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (``meta`` as a plain dict, plus ``source``)."""
        data = {name: getattr(self, name) for name in _ALL_FIELDS}
        data["meta"] = dict(self.meta)
        data["source"] = self.source
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> "LatencyRecord":
        """Parse and validate one record; ``where`` prefixes the error (a file and record index)."""
        if not isinstance(data, Mapping):
            raise StoreError(f"{where}: expected an object, got {type(data).__name__}")
        if data.get("source", "measured") != "measured":
            raise StoreError(f"{where}: field 'source': expected 'measured', got {data.get('source')!r}")
        values = {}
        for name in _ALL_FIELDS:
            if name not in data:
                raise StoreError(f"{where}: missing field {name!r}")
            problem = _field_problem(name, data[name])
            if problem:
                raise StoreError(f"{where}: field {name!r}: {problem}")
            values[name] = data[name]
        values["p50_ms"], values["p90_ms"] = float(values["p50_ms"]), float(values["p90_ms"])
        values["meta"] = dict(values["meta"])
        return cls(**values)


def default_store_path() -> Path:
    """``$EDGEKIT_CACHE_DIR/latency.sqlite``, else the user cache directory's ``latency.sqlite``.

    Example:
        >>> default_store_path().name
        'latency.sqlite'
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser() / FILE_NAME
    import platformdirs

    return Path(platformdirs.user_cache_dir("edgekit")) / FILE_NAME


def _row_to_record(row: tuple, where: str) -> LatencyRecord:
    """A stored row as a record; a bad row is a StoreError naming the row (its key fields) and the field.

    Example:
        >>> _row_to_record(("host", "ort", "1", "fp32", 1, "model", "k", 1.0, 1.0, 5, "2026-01-01T00:00:00Z", "{x"), "s")
        Traceback (most recent call last):
        ...
        edgekit.targets.store.StoreError: s: row (target='host', kind='model', key='k'): field 'meta': expected a JSON object, got '{x'
    """
    values = dict(zip(_ALL_FIELDS, row))
    name = f"{where}: row (target={values['target']!r}, kind={values['kind']!r}, key={values['key']!r})"
    try:
        meta = json.loads(values["meta"]) if isinstance(values["meta"], str) else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise StoreError(f"{name}: field 'meta': expected a JSON object, got {str(values['meta'])[:40]!r}")
    values["meta"] = meta
    for field_name in _ALL_FIELDS:
        problem = _field_problem(field_name, values[field_name])
        if problem:
            raise StoreError(f"{name}: field {field_name!r}: {problem}")
    return LatencyRecord(**values)


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _retry_busy(call, budget_s: float = BUSY_TIMEOUT_S):
    """``call()``, retried with growing sleeps while SQLite answers BUSY or LOCKED, for at most ``budget_s``
    (SQLite's busy handler is skipped in some cases, e.g. while another process sets up the WAL)."""
    import time

    deadline, pause = time.monotonic() + budget_s, 0.005
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = (code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)) if code is not None else "locked" in str(exc)
            if not busy or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


class _OpenLock:
    """An exclusive flock on ``<store>.lock`` while a process opens (and maybe recovers) the store;
    waits up to BUSY_TIMEOUT_S for another process, then a StoreError. No-op where flock is missing."""

    def __init__(self, store: Path) -> None:
        self.path = store.with_name(store.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> "_OpenLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        import time

        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return self  # a read-only cache folder: open without the lock (SQLite still locks the file)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    self._fd = None
                    raise StoreError(f"{self.path}: another process kept the latency store locked for {BUSY_TIMEOUT_S:g} s") from None
                time.sleep(0.01)

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the empty file stays (removing it would race)
            self._fd = None


class LatencyStore:
    """Measured latencies in one SQLite file; see the module docstring. Use as a context manager or ``close()``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the store's directory ({exc.strerror})") from exc
        self._conn = self._open()

    # --- opening, checking, recovering ---------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        with _OpenLock(self.path):  # one process checks, creates or recovers at a time; the others wait
            return self._open_locked()

    def _open_locked(self) -> sqlite3.Connection:
        for _ in range(3):  # a concurrent process may move a corrupt file aside under us: re-open
            identity = self._identity()
            conn = None
            try:
                conn = self._connect()
                self._check_or_create(conn)
                return conn
            except StoreError:
                if conn is not None:
                    conn.close()
                raise
            except _Unusable as exc:
                if conn is not None:
                    conn.close()
                self._move_aside(identity, str(exc))
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                if not _is_corruption(exc):  # locked, read-only, disk full...: the file may be fine, leave it
                    raise StoreError(f"{self.path}: cannot open the latency store ({exc})") from exc
                self._move_aside(identity, str(exc))
        raise StoreError(f"{self.path}: cannot open the latency store (it kept changing while opening)")

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: cannot open the latency store ({exc})") from exc
        return conn  # WAL is switched on once the file is known to be ours (_check_or_create)

    def _check_or_create(self, conn: sqlite3.Connection) -> None:
        result = _retry_busy(lambda: conn.execute("PRAGMA quick_check").fetchone())
        if result is None or result[0] != "ok":
            raise _Unusable(f"integrity check failed: {result[0] if result else 'no answer'}")
        tables = _retry_busy(lambda: {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})
        if "schema_version" not in tables and tables - {"latency"}:  # another application's: not ours to change
            raise StoreError(
                f"{self.path}: is an SQLite database of another application (tables {sorted(tables)[:5]}), "
                "not an edgekit latency store; refusing to touch it (choose another --store path)"
            )
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "schema_version" not in tables:
                for statement in _CREATE.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
                if versions != [SCHEMA_VERSION]:
                    raise _Unusable(f"schema version {versions} is not {SCHEMA_VERSION}")
                columns = [row[1] for row in conn.execute("PRAGMA table_info(latency)")]
                if columns != list(_ALL_FIELDS):
                    raise _Unusable("table 'latency' has unexpected columns")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _move_aside(self, identity: tuple[int, int] | None, reason: str) -> None:
        if identity is None or self._identity() != identity:
            return  # gone or already replaced by another process: just open again
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for n in range(1, 1000):  # never overwrite an earlier corrupt copy
            if not any(aside.with_name(aside.name + s).exists() for s in ("", "-wal", "-shm")):
                break
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"{self.path}: not a usable latency store ({reason}) and it cannot be moved aside ({exc.strerror})") from exc
        # The write-ahead log belongs to the old database: keep it beside it when it holds anything.
        # The shared-memory index is rebuilt from the log, so it is just removed.
        wal, shm = (self.path.with_name(self.path.name + suffix) for suffix in ("-wal", "-shm"))
        try:
            if wal.exists() and wal.stat().st_size > 0:
                os.replace(wal, aside.with_name(aside.name + "-wal"))
            wal.unlink(missing_ok=True)
            shm.unlink(missing_ok=True)
        except OSError:
            pass
        print(
            f"warning: {self.path}: not a usable latency store ({reason}); moved it to {aside.name} "
            "and started an empty store",
            file=sys.stderr,
        )

    # --- the API -------------------------------------------------------------------------------
    def record(self, rec: LatencyRecord) -> None:
        """Insert ``rec``, replacing any record with the same key fields."""
        self._write([rec])

    def _write(self, recs: list[LatencyRecord]) -> None:
        rows = [tuple(json.dumps(dict(r.meta), sort_keys=True) if n == "meta" else getattr(r, n) for n in _ALL_FIELDS) for r in recs]
        marks = ", ".join("?" for _ in _ALL_FIELDS)
        def attempt() -> None:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(f"INSERT OR REPLACE INTO latency ({', '.join(_ALL_FIELDS)}) VALUES ({marks})", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

        try:
            _retry_busy(attempt)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write the latency store ({exc})") from exc

    def _query(self, sql: str, args: tuple) -> list[LatencyRecord]:
        try:
            rows = _retry_busy(lambda: self._conn.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the latency store ({exc})") from exc
        return [_row_to_record(row, str(self.path)) for row in rows]

    def lookup(
        self,
        target: str,
        key: str,
        *,
        runtime: str,
        precision: str,
        threads: int,
        kind: str = "model",
        runtime_version: str | None = None,
    ) -> LatencyRecord | None:
        """The record for these key fields, or None. Without ``runtime_version``: the newest measurement of any version."""
        sql = (
            f"SELECT {', '.join(_ALL_FIELDS)} FROM latency WHERE target = ? AND key = ? AND runtime = ? "
            "AND precision = ? AND threads = ? AND kind = ?"
        )
        args: tuple = (target, key, runtime, precision, threads, kind)
        if runtime_version is not None:
            sql += " AND runtime_version = ?"
            args += (runtime_version,)
        found = self._query(sql + " ORDER BY measured_at DESC, runtime_version DESC LIMIT 1", args)
        return found[0] if found else None

    def records(self, target: str | None = None, kind: str | None = None) -> list[LatencyRecord]:
        """Every record, optionally only one target's and/or one kind's, sorted by their key fields."""
        clauses, args = [], []
        for name, value in (("target", target), ("kind", kind)):
            if value is not None:
                clauses.append(f"{name} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query(f"SELECT {', '.join(_ALL_FIELDS)} FROM latency{where} ORDER BY {', '.join(_KEY_FIELDS)}", tuple(args))

    def export_json(self, path: str | Path) -> int:
        """Write every record to ``path`` as JSON (atomically); returns how many were written."""
        path = Path(path)
        recs = self.records()
        document = {"format": EXPORT_FORMAT, "schema_version": SCHEMA_VERSION, "records": [r.to_json() for r in recs]}
        try:
            atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise StoreError(f"{path}: cannot write the export ({exc.strerror or exc})") from exc
        return len(recs)

    def import_json(self, path: str | Path) -> int:
        """Validate every record of an export file, then upsert them all in one transaction; returns the count."""
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise StoreError(f"{path}: no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path}: cannot read it ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
            raise StoreError(f"{path}: not an edgekit latency export (expected \"format\": \"{EXPORT_FORMAT}\")")
        if document.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{path}: schema_version {document.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
        items = document.get("records")
        if not isinstance(items, list):
            raise StoreError(f"{path}: field 'records' must be a list")
        recs = [LatencyRecord.from_json(item, f"{path}: records[{i}]") for i, item in enumerate(items)]
        self._write(recs)
        return len(recs)

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self._conn.close()

    def __enter__(self) -> "LatencyStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LatencyStore {self.path}>"


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file itself is damaged or not a database (not: locked, read-only, full)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


class _Unusable(Exception):
    """Internal: the file opened as SQLite but is not a usable latency store."""

