"""Append-only, resumable results files for evaluators.

Each evaluator writes one JSON line per item to ``results.jsonl`` as soon as the item is done,
flushed, so a crash at item 2,000 loses at most the item in flight. The first line is a header
with the run's fingerprint (model, data file, scoring settings); a restart with the same
fingerprint skips ids already scored, a restart with a different one stops with a clear error
instead of mixing two runs (pass ``fresh=True`` / ``--fresh`` to start over). A partial last
line (a crash mid-write) is discarded on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from openrlhf_visualprm.errors import ConfigError


class ResumeMismatchError(ConfigError):
    """The results file on disk was written by a run with different settings."""


class ResultsLog:
    """``done`` maps item id -> stored record (the latest line wins)."""

    def __init__(self, path: str | os.PathLike, fingerprint: dict, fresh: bool = False) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.done: dict[str, dict] = {}
        self.resumed = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not self.path.exists() or self.path.stat().st_size == 0:
            self._start()
        else:
            self._load()
        self._fh = self.path.open("a", encoding="utf-8")

    def _start(self) -> None:
        with self.path.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"_header": self.fingerprint}) + "\n")

    def _load(self) -> None:
        raw = self.path.read_text(encoding="utf-8")
        lines = raw.split("\n")
        complete, partial = lines[:-1], lines[-1]
        if partial.strip():  # crash mid-write: drop the fragment and rewrite the file without it
            self.path.write_text("\n".join(complete) + ("\n" if complete else ""), encoding="utf-8")
        if not complete:
            self._start()
            return
        try:
            header = json.loads(complete[0])["_header"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ResumeMismatchError(
                f"{self.path} is not a results file of this tool (no header line); move it away or pass --fresh"
            ) from exc
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
        for n, line in enumerate(complete[1:], start=2):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self.done[str(record["id"])] = record
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ResumeMismatchError(
                    f"{self.path}:{n}: unreadable results line ({exc}); pass --fresh"
                ) from exc
        self.resumed = len(self.done)

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


def write_json(path: str | os.PathLike, data: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(p)
    return p
