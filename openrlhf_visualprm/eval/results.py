"""Append-only, resumable results files for evaluators.

Each evaluator writes one JSON line per item to ``results.jsonl`` as soon as the item is done,
flushed, so a crash at item 2,000 loses at most the item in flight. The first line is a header
with the run's fingerprint (model, data file, scoring settings); a restart with the same
fingerprint skips ids already scored, a restart with a different one stops with a clear error
instead of mixing two runs (pass ``fresh=True`` / ``--fresh`` to start over). A partial last
line (a crash mid-write) is discarded on load; a line that cannot be trusted (bad UTF-8, not an
object, NaN, wrong field types) is reported and its item scored again.

Reports are strict JSON: a value that is not defined (the accuracy of a group with no items) is
``null``, never ``NaN``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openrlhf_visualprm.data.records import MAX_LINE_BYTES, iter_lines
from openrlhf_visualprm.errors import ConfigError


class ResumeMismatchError(ConfigError):
    """The results file on disk was written by a run with different settings."""


RecordCheck = Callable[[dict], None]  # raises ValueError / TypeError / KeyError naming the problem


# ----------------------------------------------------------------------------- record checks
# Small predicates the evaluators' ``check`` functions combine (one per results schema).
def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def list_of(pred: Callable[[Any], bool], length: int | None = None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (length is None or len(v) == length) and all(pred(x) for x in v)


def optional(pred: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or pred(v)


def field_of(record: dict, key: str, ok: Callable[[Any], bool], want: str) -> Any:
    """``record[key]`` when ``ok`` accepts it; else a TypeError naming the field and what it needs."""
    value = record[key]
    if not ok(value):
        shown = repr(value)
        raise TypeError(f"{key!r} must be {want}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")
    return value


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number a results line may hold")


class ResultsLog:
    """``done`` maps item id -> stored record (the latest line wins).

    Resuming trusts nothing on disk: the header must be this run's fingerprint (else
    :class:`ResumeMismatchError`), and a results line that is not valid UTF-8 JSON, holds NaN or
    Infinity, has no id, or fails the evaluator's ``check`` (wrong field types) is **not done**:
    a warning names the file, line and reason, and the item is scored again. The file is read
    line by line (bounded), never whole.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fingerprint: dict,
        fresh: bool = False,
        check: RecordCheck | None = None,
    ) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.check = check
        self.done: dict[str, dict] = {}
        self.resumed = 0
        self.redo: list[dict] = []  # {"line", "reason"} of results lines not trusted on resume
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not self.path.exists() or self.path.stat().st_size == 0:
            self._start()
        else:
            self._load()
        self._fh = self.path.open("a", encoding="utf-8")

    def _start(self) -> None:
        with self.path.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"_header": self.fingerprint}) + "\n")

    def _parse(self, raw: bytes | None) -> dict:
        if raw is None:
            raise ValueError(f"line over {MAX_LINE_BYTES} bytes")
        try:
            record = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        return record

    def _load(self) -> None:
        partial_at = None
        with self.path.open("rb") as f:
            lines = iter_lines(f, MAX_LINE_BYTES)
            first = next(lines, None)
            if first is None or (first[1] is not None and not first[1].endswith(b"\n")):
                self._start()  # the header itself was cut off (a crash while writing it)
                return
            try:
                header = self._parse(first[1])["_header"]
                if not isinstance(header, dict):
                    raise TypeError(f"its header is a {type(header).__name__}, not an object")
            except (ValueError, KeyError, TypeError) as exc:
                reason = f"line 1: {exc}" if not isinstance(exc, KeyError) else "no header line"
                raise ResumeMismatchError(
                    f"{self.path} is not a results file of this tool ({reason}); move it away or pass --fresh"
                ) from None
            self._check_header(header)
            line_end = f.tell()
            for n, raw in lines:
                if raw is not None and not raw.endswith(b"\n"):
                    partial_at = line_end  # crash mid-write: the fragment is cut off below
                    break
                line_end = f.tell()
                if raw is not None and not raw.strip():
                    continue
                try:
                    record = self._parse(raw)
                    item_id = record["id"]
                    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
                        raise TypeError(f"id is a {type(item_id).__name__}")
                    if self.check is not None and not record.get("skipped"):
                        self.check(record)
                except (ValueError, KeyError, TypeError) as exc:
                    reason = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
                    self.redo.append({"line": n, "reason": reason})
                    print(f"warning: {self.path}:{n}: {reason}; that item is scored again", flush=True)
                    continue
                self.done[str(item_id)] = record
        with self.path.open("r+b") as f:
            if partial_at is not None:
                f.truncate(partial_at)
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # an over-long last line without a newline: end it
                f.write(b"\n")
        self.resumed = len(self.done)

    def _check_header(self, header: dict) -> None:
        if header != self.fingerprint:
            diff = {
                k: (header.get(k), self.fingerprint.get(k))
                for k in set(header) | set(self.fingerprint)
                if header.get(k) != self.fingerprint.get(k)
            }
            raise ResumeMismatchError(
                f"{self.path} was written with different settings {diff} (on disk, now); "
                "use another --out folder or pass --fresh to start over"
            )

    def append(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done[str(record["id"])] = record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by None (JSON ``null``), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write a report as strict JSON (``null`` for undefined values, see :func:`finite_or_null`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    text = json.dumps(finite_or_null(data), indent=2, ensure_ascii=False, default=str, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(p)
    return p
