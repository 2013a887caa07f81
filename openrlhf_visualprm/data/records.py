"""Read dataset records from local files, keeping each record's line number, and report bad ones.

Released datasets come as jsonl, a JSON list, parquet, or a Hugging Face ``datasets`` folder
written by ``save_to_disk``. Every reader yields :class:`Row` objects: ``(lineno, record)`` with
``lineno`` the 1-based line in a jsonl file (the row index + 1 elsewhere), or ``(lineno, None,
reason)`` for a line that is not a JSON object. Callers decide what a bad row means through an
:class:`ErrorLog` configured with ``on_error="skip"`` (count, report, go on) or ``"stop"`` (raise
:class:`BadDataError` naming the file, line and reason), so nothing is silently dropped.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from openrlhf_visualprm.errors import VisualPRMError

ON_ERROR_CHOICES = ("skip", "stop")
# Memory bounds for files from elsewhere. A jsonl line longer than this is a bad line, skipped
# without being held in memory (a 2 GB file without a newline used to be read whole); a ``.json``
# list is parsed whole (Python needs several times its size), so larger ones are refused: convert
# them to jsonl (``jq -c '.[]' in.json > out.jsonl``).
MAX_LINE_BYTES = 64 * 1024 * 1024
MAX_JSON_BYTES = 256 * 1024 * 1024
_SKIP_CHUNK = 1024 * 1024


class BadDataError(VisualPRMError, ValueError):
    """A data file cannot be used (``--on-error stop`` on a bad line, nothing evaluated); the
    message names the file, the line and the reason. Offline tools only: in RL a bad sample is an
    :class:`~openrlhf_visualprm.errors.InputError`."""


@dataclass
class Row:
    lineno: int
    record: dict | None
    error: str | None = None


@dataclass
class ErrorLog:
    """Collects bad rows (file, line, reason) and applies the skip/stop policy."""

    on_error: str = "skip"
    entries: list[dict] = field(default_factory=list)
    max_print: int = 20

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")

    def add(self, path: str | os.PathLike, lineno: int, reason: str, item_id: str | None = None) -> None:
        entry = {"file": str(path), "line": lineno, "reason": reason}
        if item_id is not None:
            entry["id"] = item_id
        self.entries.append(entry)
        message = f"{path}:{lineno}: {reason}"
        if self.on_error == "stop":
            raise BadDataError(message + "  (use --on-error skip to report such lines and continue)")
        if len(self.entries) <= self.max_print:
            print(f"warning: skipped {message}", flush=True)
        elif len(self.entries) == self.max_print + 1:
            print("warning: more bad lines; see the report for the full list", flush=True)

    def __len__(self) -> int:
        return len(self.entries)

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for e in self.entries:
            key = e["reason"].split(":", 1)[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {"count": len(self.entries), "by_reason": reasons, "lines": self.entries}


def _jsonable(value: Any) -> Any:
    """Make parquet / datasets values JSON-friendly (bytes stay bytes inside image dicts)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def iter_lines(f: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """``(lineno, line)`` of a binary file, the newline kept (a last line without one is partial);
    ``line`` is None for a line over ``max_bytes``, which is skipped in bounded chunks."""
    lineno = 0
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            del raw
            while True:  # the rest of the over-long line, never held whole
                chunk = f.read(_SKIP_CHUNK)
                end = chunk.find(b"\n")
                if end >= 0:
                    f.seek(end + 1 - len(chunk), os.SEEK_CUR)
                if not chunk or end >= 0:
                    break
            yield lineno, None
            continue
        yield lineno, raw


def _iter_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as f:
        for lineno, raw in iter_lines(f, MAX_LINE_BYTES):
            if raw is None:
                yield Row(lineno, None, f"line too long: over {MAX_LINE_BYTES} bytes, not read")
                continue
            text = raw.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield Row(lineno, None, f"malformed JSON: {exc}")
                continue
            if not isinstance(record, dict):
                yield Row(lineno, None, f"wrong schema: expected a JSON object, got {type(record).__name__}")
                continue
            yield Row(lineno, record)


def _iter_json_list(path: Path) -> Iterator[Row]:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise BadDataError(
            f"{path}: a .json list is read whole and this one is {size} bytes, over the limit of "
            f"{MAX_JSON_BYTES}; write it as jsonl (one object per line, e.g. jq -c '.[]' {path.name}), "
            "which is streamed"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadDataError(f"{path}: not valid JSON ({exc}); expected a list of objects or jsonl") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise BadDataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, record in enumerate(data, start=1):
        if isinstance(record, dict):
            yield Row(i, record)
        else:
            yield Row(i, None, f"wrong schema: expected a JSON object, got {type(record).__name__}")


def _iter_parquet(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dev/openrlhf dependency
        raise BadDataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from exc
    import pyarrow as pa

    lineno = 0
    try:
        table = pq.ParquetFile(path)
        for batch in table.iter_batches(batch_size=256):
            for record in batch.to_pylist():
                lineno += 1
                yield Row(lineno, {k: _jsonable(v) for k, v in record.items()})
    except (pa.ArrowException, OSError) as exc:  # a truncated or corrupt file, at open or mid-way
        where = f" after {lineno} rows" if lineno else ""
        raise BadDataError(
            f"{path}: not a readable parquet file{where} ({type(exc).__name__}: {exc}); re-export or "
            "re-download it"
        ) from None


def _iter_hf_disk(path: Path, split: str | None) -> Iterator[Row]:
    try:
        import datasets
    except ImportError as exc:
        raise BadDataError(f"{path}: a `datasets` save_to_disk folder needs `pip install datasets`") from exc
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds.keys())
        if split is None:
            if len(names) != 1:
                raise BadDataError(f"{path}: holds splits {names}; choose one with --split")
            split = names[0]
        if split not in ds:
            raise BadDataError(f"{path}: no split {split!r} (has {names})")
        ds = ds[split]
    # Keep images as {"bytes", "path"} dicts instead of decoding every one into PIL.
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(getattr(feature, "feature", None), datasets.Image):
            ds = ds.cast_column(name, datasets.List(datasets.Image(decode=False)))
    for i, record in enumerate(ds, start=1):
        yield Row(i, dict(record))


def iter_rows(path: str | os.PathLike, split: str | None = None) -> Iterator[Row]:
    """Yield the rows of a jsonl / json / parquet file or a ``datasets.save_to_disk`` folder."""
    p = Path(path)
    if not p.exists():
        raise BadDataError(f"data file {str(p)!r} does not exist")
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            yield from _iter_hf_disk(p, split)
            return
        raise BadDataError(f"{p} is a folder but not a `datasets.save_to_disk` folder; pass a file")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(p)
    elif suffix == ".json":
        yield from _iter_json_list(p)
    else:
        yield from _iter_jsonl(p)


def count_rows(path: str | os.PathLike, split: str | None = None) -> int | None:
    """How many rows :func:`iter_rows` will yield, cheaply and in bounded memory, for progress
    bars: newlines of a jsonl file (blank lines included), a parquet footer's row count, a
    ``datasets`` folder's length; None for a ``.json`` list (it would be parsed twice) or when
    the file cannot be read (the reader then reports why)."""
    p = Path(path)
    try:
        if p.is_dir():
            import datasets

            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                names = list(ds.keys())
                ds = ds[split or names[0]] if (split in ds or len(names) == 1) else None
            return None if ds is None else len(ds)
        suffix = p.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(p).metadata.num_rows
        if suffix == ".json":
            return None
        lines, last = 0, b"\n"
        with p.open("rb") as f:
            while chunk := f.read(_SKIP_CHUNK):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        return lines + (last != b"\n")
    except Exception:  # noqa: BLE001 - a count for a progress bar; iter_rows reports the real problem
        return None


def read_records(path: str | os.PathLike, errors: ErrorLog, split: str | None = None) -> Iterator[Row]:
    """The good rows of ``path``, streamed in file order; bad ones go to ``errors`` as they come
    (which raises on ``stop``), so large files never sit in memory and errors keep line order."""
    for row in iter_rows(path, split):
        if row.error is not None:
            errors.add(path, row.lineno, row.error)
        else:
            yield row


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, bytes | bytearray):
            return base64.b64encode(o).decode("ascii")
        if isinstance(o, Path):
            return str(o)
        return super().default(o)


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> Path:
    """Write records atomically (temp file + rename), one JSON object per line."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, cls=_Encoder) + "\n")
    tmp.replace(p)
    return p


def write_parquet(path: str | os.PathLike, records: list[dict]) -> Path:
    """Write records to parquet (pyarrow infers the schema; nested lists and dicts are kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadDataError(
            f"cannot write {p} as parquet: a field mixes types across rows ({exc}); "
            "InternVL rows mix a single image path with lists for multi-image rows, so write .jsonl instead"
        ) from exc
    tmp = p.with_name(p.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(p)
    return p


def write_records(path: str | os.PathLike, records: list[dict]) -> Path:
    """jsonl unless ``path`` ends in ``.parquet``."""
    if str(path).lower().endswith(".parquet"):
        return write_parquet(path, records)
    return write_jsonl(path, records)
