"""Data tools on hostile or hopeless inputs (issue 22 items 8, 9; issue 20 item 12).

- ``convert-data`` that converts nothing (wrong ``--image-root``) exits 2 and writes nothing; its
  output is a summary (counts by reason, the first few lines), not one line per bad row.
- Huge inputs are not read whole: a 2 GB sparse ``.jsonl`` (no newline at all) is one bad line,
  skipped in bounded chunks; a ``.json`` list over the limit is refused before it is read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_visualprm.cli import main as cli_main
from openrlhf_visualprm.data import records
from openrlhf_visualprm.data.records import BadDataError, iter_rows

REPO = Path(__file__).resolve().parents[1]


def _math_rows(n: int) -> str:
    return "".join(
        json.dumps(
            {"id": f"q{i}", "problem": f"What is {i}+1?", "answer": str(i + 1), "images": [f"img{i}.png"]}
        )
        + "\n"
        for i in range(n)
    )


def _convert(inp: Path, root: Path, out: Path) -> int:
    return cli_main(
        ["convert-data", "math", "--input", str(inp), "--image-root", str(root), "--out", str(out)]
    )


def test_convert_data_that_converts_nothing_exits_2_with_a_summary(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text(_math_rows(500))  # images are nowhere under the root given
    empty_root = tmp_path / "wrong-root"
    empty_root.mkdir()
    out = tmp_path / "rows.jsonl"
    assert _convert(data, empty_root, out) == 2
    captured = capsys.readouterr()
    assert not out.exists()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "converted nothing" in err[0] and "500 bad line(s)" in err[0], err
    assert "prompts.jsonl:1: missing or refused image" in err[0]
    lines = captured.out.strip().splitlines()
    assert len(lines) < 20, lines  # not 500 lines
    assert "500 bad line(s): missing or refused image (500)" in captured.out
    assert "... 495 more" in captured.out
    listed = [json.loads(x) for x in Path(str(out) + ".bad_lines.jsonl").read_text().splitlines()]
    assert len(listed) == 500 and listed[-1]["line"] == 500


def test_convert_data_with_some_bad_lines_summarises_and_writes_the_rest(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text(_math_rows(3) + "{broken\n" + "[1]\n")
    for i in range(2):  # images for q0, q1 only
        from PIL import Image

        Image.new("RGB", (8, 8)).save(tmp_path / f"img{i}.png")
    out = tmp_path / "rows.jsonl"
    assert _convert(data, tmp_path, out) == 0
    text = capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2
    assert "3 bad line(s): " in text and "malformed JSON (1)" in text and "wrong schema (1)" in text
    assert "more" not in text


@pytest.mark.slow
def test_a_sparse_2gb_jsonl_is_one_bad_line_read_in_bounded_memory(tmp_path):
    """Peak RSS of a convert-data run over 2 GB without a newline, measured in that process."""
    big = tmp_path / "sparse.jsonl"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: no disk used, reads return NUL bytes
    code = (
        "import resource, sys\n"
        "from openrlhf_visualprm.cli import main\n"
        f"rc = main(['convert-data', 'math', '--input', {str(big)!r}, '--image-root', {str(tmp_path)!r},"
        f" '--out', {str(tmp_path / 'o.jsonl')!r}])\n"
        # VmHWM: this process image's peak RSS (ru_maxrss would include the forking parent's)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "peak = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('MAXRSS_KB', peak)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    peak_mb = int(proc.stdout.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 600, f"peak RSS {peak_mb:.0f} MB for a 2 GB line"  # was 4 GB: read whole
    assert proc.returncode == 2, proc.stderr
    assert "line too long" in proc.stderr + proc.stdout


def test_an_overlong_line_between_good_ones_is_skipped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 100)
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"pad": "' + "x" * 500 + '"}\n{"a": 3}')
    rows = list(iter_rows(path))
    assert [r.lineno for r in rows] == [1, 2, 3]
    assert rows[0].record == {"a": 1} and rows[2].record == {"a": 3}
    assert rows[1].record is None and "line too long" in rows[1].error


def test_a_json_list_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    with path.open("wb") as f:
        f.truncate(records.MAX_JSON_BYTES + 1)
    with pytest.raises(BadDataError, match=r"over the limit of .*write it as jsonl"):
        next(iter_rows(path))
    small = tmp_path / "small.json"
    small.write_text('[{"a": 1}]')
    assert next(iter_rows(small)).record == {"a": 1}
