"""Evaluator progress bars show a total and an ETA (issue 20 item 14): a long run is not silent."""

from __future__ import annotations

import json
import re

from openrlhf_visualprm.data import samples
from openrlhf_visualprm.data.records import count_rows
from openrlhf_visualprm.eval.prm_bench import evaluate_processbench
from openrlhf_visualprm.images import ImageRoots


def scorer(images, question, steps):
    return [[0.9] * len(lst) for lst in steps]


def test_eval_bar_has_the_total_and_an_eta(tmp_path, capsys):
    samples.write_samples(tmp_path / "s")
    rows = samples.processbench_rows()
    data = tmp_path / "vpb.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")  # a trailing blank line
    evaluate_processbench(
        data, scorer, tmp_path / "o", ImageRoots.of(tmp_path / "s"), {"m": 1}, progress=True
    )
    bar = capsys.readouterr().err
    n = len(rows)
    assert re.search(rf"eval-prm: +\d+%.*\| *\d+/{n + 1} \[", bar), bar  # the counted total, early on
    assert re.search(rf"100%.*\| {n}/{n} \[\d\d:\d\d<\d\d:\d\d", bar), bar  # elapsed<remaining: an ETA


def test_count_rows_is_bounded_and_cheap(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n' * 1000 + b'{"a": 2}')  # no newline at the end
    assert count_rows(path) == 1001
    assert count_rows(tmp_path / "list.json") is None and count_rows(tmp_path / "missing.jsonl") is None
