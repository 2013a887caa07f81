"""Corrupt parquet and duplicate ids in the data tools (issue 14 item 8)."""

from __future__ import annotations

import json

import pytest

from openrlhf_visualprm.cli import main as cli_main


@pytest.fixture
def corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage, not a parquet footer\xff" * 20 + b"PAR1")
    return path


@pytest.mark.parametrize("command", ["eval-prm", "eval-judge", "convert-data"])
def test_corrupt_parquet_is_a_clean_error(command, corrupt_parquet, tmp_path, tiny_models, capsys):
    args = {
        "eval-prm": [
            "eval-prm",
            "--model",
            str(tiny_models["visualprm-tiny"]),
            "--data",
            str(corrupt_parquet),
        ],
        "eval-judge": [
            "eval-judge",
            "--judge",
            str(tiny_models["judge-tiny"]),
            "--data",
            str(corrupt_parquet),
        ],
        "convert-data": ["convert-data", "math", "--input", str(corrupt_parquet)],
    }[command]
    args += [
        "--image-root",
        str(tmp_path),
        "--out",
        str(tmp_path / "out.jsonl" if command == "convert-data" else tmp_path / "o"),
    ]
    if command != "convert-data":
        args.append("--no-progress")
    rc = cli_main(args)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc != 0
    assert f"{corrupt_parquet}: not a readable parquet file" in text, text[-2000:]
    assert "Traceback" not in text


def test_convert_math_keeps_the_first_of_duplicate_ids_and_reports_the_rest(tmp_path):
    from openrlhf_visualprm.data import samples
    from openrlhf_visualprm.data.image_refs import ImageStore
    from openrlhf_visualprm.data.math_prompts import convert_math
    from openrlhf_visualprm.data.records import ErrorLog
    from openrlhf_visualprm.images import ImageRoots

    sample_dir = tmp_path / "samples"
    samples.write_samples(sample_dir)
    records = [json.loads(line) for line in (sample_dir / "geometry3k.jsonl").read_text().splitlines()]
    assert len(records) >= 2
    first, second = dict(records[0], id="same"), dict(records[1], id="same")
    path = tmp_path / "dup.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    errors = ErrorLog("skip")
    rows = convert_math(path, ImageStore(ImageRoots.of(sample_dir), tmp_path / "img"), errors)
    assert [r["id"] for r in rows] == ["same"]
    assert rows[0]["label"] and json.loads(rows[0]["label"])["answer"] == str(
        first.get("answer", first.get("answers"))
    )
    assert len(errors) == 1 and errors.entries[0]["line"] == 2
    assert "duplicate id 'same' (first at line 1)" in errors.entries[0]["reason"]
