"""Resume files are checked (issue 22 item 7): a results line that cannot be trusted is redone.

Before the fix invalid UTF-8, a header that is not an object and ``"correct": "yes"`` gave
tracebacks, NaN reached ``report.json`` with exit 0, and NaN step scores in one reused row
dropped eval-prm's F1 silently. Now the header is checked (a clear error naming the file), a bad
line is reported by file and line and its item scored again, and reports are strict JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_visualprm.data import samples
from openrlhf_visualprm.eval.bon import evaluate_bon
from openrlhf_visualprm.eval.judge_bench import evaluate_vlrewardbench
from openrlhf_visualprm.eval.prm_bench import evaluate_processbench
from openrlhf_visualprm.eval.results import ResultsLog, ResumeMismatchError, write_json
from openrlhf_visualprm.images import ImageRoots

FP = {"model": "scripted", "data": "x"}


def strict_json(path: Path):
    """json.loads that refuses NaN / Infinity (Python's default accepts them)."""

    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-samples")
    samples.write_samples(out)
    return out


class Scorer:
    """Step scores from a table keyed by step text (default 0.9); counts questions scored."""

    def __init__(self, table: dict[str, float] | None = None):
        self.table, self.questions = table or {}, []

    def __call__(self, images, question, steps):
        self.questions.append(question)
        return [[self.table.get(s, 0.9) for s in lst] for lst in steps]


def _rewrite_line(path: Path, index: int, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[index] = new
    path.write_bytes(b"\n".join(lines))


def test_eval_prm_redoes_untrusted_lines_and_keeps_the_f1(sample_dir, tmp_path, capsys):
    data, roots = sample_dir / "visualprocessbench.jsonl", ImageRoots.of(sample_dir)
    table = {"3 + 4 = 8.": 0.1}
    fresh = evaluate_processbench(data, Scorer(table), tmp_path / "fresh", roots, FP, progress=False)
    out = tmp_path / "resumed"
    evaluate_processbench(data, Scorer(table), out, roots, FP, progress=False)
    results = out / "results.jsonl"
    rows = [json.loads(x) for x in results.read_text().splitlines()[1:]]
    assert len(rows) == 3
    nan_row = json.dumps({**rows[0], "step_scores": [float("nan")] * len(rows[0]["step_scores"])})
    _rewrite_line(results, 1, nan_row.encode())  # NaN is valid for Python's json, not for us
    _rewrite_line(results, 2, b'{"id": "' + b"\xff\xfe" + b'", "labels": [1]}')  # invalid UTF-8
    _rewrite_line(results, 3, json.dumps({**rows[2], "labels": "yes"}).encode())  # wrong type
    capsys.readouterr()
    again = Scorer(table)
    rep = evaluate_processbench(data, again, out, roots, FP, progress=False)
    assert len(again.questions) == 3  # every untrusted line's item scored again
    printed = capsys.readouterr().out
    for n, needle in ((2, "NaN"), (3, "not valid UTF-8"), (4, "'labels' must be")):
        assert f"{results}:{n}: " in printed and needle in printed, printed
    assert rep["counts"]["previous_results_lines_not_trusted"] == 3
    assert rep["overall"]["macro_f1"] == pytest.approx(fresh["overall"]["macro_f1"])
    assert rep["overall"]["macro_f1"] > 0
    strict_json(out / "report.json")


@pytest.mark.parametrize(
    "header, needle",
    [
        (b'{"_header": [1, 2]}\n', "header is a list"),
        (b'["not", "an", "object"]\n', "expected a JSON object"),
        (b'{"_header": {"model": "\xff"}}\n', "not valid UTF-8"),
        (b'{"no_header": 1}\n', "no header line"),
    ],
)
def test_a_header_that_is_not_ours_is_a_clear_error_naming_the_file(tmp_path, header, needle):
    path = tmp_path / "results.jsonl"
    path.write_bytes(header + b'{"id": "a"}\n')
    with pytest.raises(ResumeMismatchError) as info:
        ResultsLog(path, FP)
    assert str(path) in str(info.value) and needle in str(info.value) and "--fresh" in str(info.value)


def test_torn_and_overlong_lines_are_cut_and_the_file_stays_appendable(tmp_path, monkeypatch):
    from openrlhf_visualprm.eval import results as results_mod

    monkeypatch.setattr(results_mod, "MAX_LINE_BYTES", 64)
    path = tmp_path / "results.jsonl"
    with ResultsLog(path, FP) as log:
        log.append({"id": "a", "x": 1})
    with path.open("ab") as f:
        f.write(b'{"id": "b", "pad": "' + b"x" * 200 + b'"}\n{"id": "c", "torn')
    log = ResultsLog(path, FP)
    log.append({"id": "d"})
    log.close()
    assert set(log.done) == {"a", "d"} and log.redo[0]["line"] == 3
    assert path.read_bytes().endswith(b'{"id": "d"}\n') and b"torn" not in path.read_bytes()


def test_eval_judge_reused_picks_of_the_wrong_type_are_redone(sample_dir, tmp_path):
    data, roots = sample_dir / "vlrewardbench.jsonl", ImageRoots.of(sample_dir)
    calls = []

    def first(images, query, a, b):
        calls.append(a)
        return 0

    evaluate_vlrewardbench(data, first, tmp_path, roots, {"judge": "first"}, progress=False)
    results = tmp_path / "results.jsonl"
    row = json.loads(results.read_text().splitlines()[1])
    _rewrite_line(results, 1, json.dumps({**row, "picks": ["yes", 0]}).encode())
    calls.clear()
    rep = evaluate_vlrewardbench(data, first, tmp_path, roots, {"judge": "first"}, progress=False)
    assert len(calls) == 2  # that pair judged again, both orders
    assert rep["counts"]["previous_results_lines_not_trusted"] == 1
    strict_json(tmp_path / "report.json")  # categories without pairs: null, not NaN


def test_eval_bon_reused_correct_yes_is_redone(sample_dir, tmp_path):
    row = {"id": "q1", "image": "images/a.png", "question": "3+4?", "answer": "7",
           "responses": ["ANS 7", "ANS 5"]}  # fmt: skip
    data = tmp_path / "bon.jsonl"
    data.write_text(json.dumps(row) + "\n")

    def extract(text):
        return text.split()[-1]

    def verify(preds, truths):
        return [p == t for p, t in zip(preds, truths)]

    args = (data, tmp_path / "o", ImageRoots.of(sample_dir), {"data": "b"})
    evaluate_bon(*args, extract=extract, verify=verify, progress=False)
    results = tmp_path / "o" / "results.jsonl"
    stored = json.loads(results.read_text().splitlines()[1])
    _rewrite_line(results, 1, json.dumps({**stored, "correct": ["yes", "yes"]}).encode())
    rep = evaluate_bon(*args, extract=extract, verify=verify, progress=False)
    assert rep["counts"]["scored_this_run"] == 1 and rep["accuracy"]["oracle (pass@N)"]["2"] == 1.0
    assert rep["accuracy"]["first response"]["2"] == 1.0
    strict_json(tmp_path / "o" / "report.json")


def test_write_json_writes_null_for_nan(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    assert strict_json(path) == {"a": None, "b": [1.0, None], "c": {"d": 2}}
