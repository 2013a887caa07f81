"""Data adapters on files generated in the released formats (exact field names), incl. bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_visualprm.cli import main as cli_main
from openrlhf_visualprm.data import samples
from openrlhf_visualprm.data.benchmarks import read_bon, read_processbench, read_vlrewardbench
from openrlhf_visualprm.data.convert import convert_visualprm400k
from openrlhf_visualprm.data.image_refs import ImageStore
from openrlhf_visualprm.data.math_prompts import convert_math, detect_dataset
from openrlhf_visualprm.data.records import BadDataError, ErrorLog, iter_rows, write_jsonl
from openrlhf_visualprm.data.visualprm400k import read_v1, read_v11_raw, to_internvl, to_stepwise
from openrlhf_visualprm.images import ImageError, ImageRoots
from openrlhf_visualprm.labels import decode_label


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    samples.write_samples(out)
    return out


# ------------------------------------------------------------------ math prompts -> OpenRLHF rows


@pytest.mark.parametrize(
    "kind,answer,n_rows",
    [
        ("geometry3k", "7", 2),
        ("mathvista", "1", 2),
        ("mathverse", "B", 1),
        ("mathvision", "A", 1),
        ("wemath", "B", 1),
        ("dynamath", "12", 1),
    ],
)
def test_math_adapters_write_openrlhf_rows(sample_dir, tmp_path, kind, answer, n_rows):
    path = sample_dir / f"{kind}.jsonl"
    assert detect_dataset(json.loads(path.read_text().splitlines()[0])) == kind
    errors = ErrorLog("stop")
    rows = convert_math(path, ImageStore(ImageRoots.of(sample_dir), tmp_path / "img"), errors)
    assert len(rows) == n_rows and len(errors) == 0
    row = rows[0]
    assert set(row) == {"id", "prompt", "images", "label", "datasource"}
    assert row["prompt"].startswith("<image>\n") and row["prompt"].count("<image>") == len(row["images"]) == 1
    assert "<image1>" not in row["prompt"]  # MathVision's own tag replaced by ours
    assert Path(row["images"][0]).is_absolute() and Path(row["images"][0]).is_file()
    label = decode_label(row["label"])
    assert label.truth() == answer and label.raw["source"] == kind and label.raw["id"] == row["id"]
    assert len(label.images) == 1 and label.raw["images"] == list(label.images)
    assert not Path(label.images[0]).is_absolute()  # relative to the reward side's image root
    assert (sample_dir / label.images[0]).is_file()


def test_mathvision_choices_and_wemath_options_reach_the_prompt(sample_dir, tmp_path):
    store = ImageStore(ImageRoots.of(sample_dir), tmp_path / "img")
    mv = convert_math(sample_dir / "mathvision.jsonl", store, ErrorLog())[0]
    assert "(A) left\n(B) right" in mv["prompt"]
    we = convert_math(sample_dir / "wemath.jsonl", store, ErrorLog())[0]
    assert "A. 6; B. 12" in we["prompt"]


def test_parquet_with_embedded_bytes_becomes_files_not_base64(sample_dir, tmp_path):
    store = ImageStore(ImageRoots.of(sample_dir), tmp_path / "img")
    rows = convert_math(sample_dir / "mathvista.parquet", store, ErrorLog("stop"))
    assert len(rows) == 1 and store.written == 1
    image = Path(rows[0]["images"][0])
    assert image.parent == (tmp_path / "img").resolve() and image.suffix == ".png"
    assert len(json.dumps(rows[0])) < 1000  # no image payload inside the row
    assert decode_label(rows[0]["label"]).images == (image.name,)


def test_datasets_save_to_disk_folder(sample_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(samples.math_rows("dynamath"))
    ds.save_to_disk(str(tmp_path / "hf"))
    rows = convert_math(
        tmp_path / "hf", ImageStore(ImageRoots.of(sample_dir), tmp_path / "img"), ErrorLog("stop")
    )
    assert [decode_label(r["label"]).truth() for r in rows] == ["12"]


def test_bad_lines_are_reported_and_counted(sample_dir, tmp_path):
    good = samples.math_rows("geometry3k")
    bad_file = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps({"problem": "Find x.", "images": ["images/nope.png"], "answer": "1"}),  # missing image
        json.dumps({"images": ["images/a.png"], "problem": "No answer field"}),  # wrong schema
        json.dumps({"images": ["../../etc/passwd"], "problem": "escape", "answer": "1"}),  # outside root
        json.dumps(good[1]),
    ]
    bad_file.write_text("\n".join(lines) + "\n")
    errors = ErrorLog("skip")
    rows = convert_math(
        bad_file, ImageStore(ImageRoots.of(sample_dir), tmp_path / "img"), errors, "geometry3k"
    )
    assert len(rows) == 2
    by_line = {e["line"]: e["reason"] for e in errors.entries}
    assert set(by_line) == {2, 3, 4, 5}
    assert "malformed JSON" in by_line[2]
    assert "not found" in by_line[3]
    assert "missing field" in by_line[4] and "answer" in by_line[4]
    assert "outside the allowed image roots" in by_line[5]
    with pytest.raises(BadDataError, match=r"mixed.jsonl:2: malformed JSON"):
        convert_math(bad_file, ImageStore(ImageRoots.of(sample_dir), tmp_path / "img"), ErrorLog("stop"))


def test_absolute_path_outside_root_is_refused(sample_dir, tmp_path):
    outside = samples.make_png(tmp_path / "elsewhere" / "x.png", (0, 0, 0))
    store = ImageStore(ImageRoots.of(sample_dir))
    with pytest.raises(ImageError, match="outside the allowed image roots"):
        store.resolve(str(outside))
    assert store.resolve(str(sample_dir / "images" / "a.png")).is_file()  # absolute but inside: fine


def test_convert_data_cli_math_parquet_out(sample_dir, tmp_path, capsys):
    out = tmp_path / "prompts.parquet"
    rc = cli_main(
        [
            "convert-data",
            "math",
            "--input",
            str(sample_dir / "mathverse.jsonl"),
            "--input",
            str(sample_dir / "mathvista.parquet"),
            "--image-root",
            str(sample_dir),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = [r.record for r in iter_rows(out)]
    assert [r["datasource"] for r in rows] == ["mathverse", "mathvista"]
    assert "wrote 2 prompt rows" in capsys.readouterr().out


# ------------------------------------------------------------------ VisualPRM400K


def test_v1_parse_single_and_multi_image(sample_dir):
    rows = [r.record for r in iter_rows(sample_dir / "visualprm400k_v1_prm.jsonl")]
    one = read_v1(rows[0])
    assert one.question == "What is 3 + 4?" and one.steps[0] == "Read the numbers 3 and 4."
    assert one.labels == [True, True, True] and one.system.startswith("You are")
    multi = read_v1(rows[1])
    assert multi.images == ["images/a.png", "images/b.png"]
    assert multi.question == "Which is larger?" and multi.labels == [True, False]
    assert multi.steps[1] == "So the second is larger.\n\nThe answer is B."  # internal blank line kept


def test_v1_round_trip_through_internvl_format(sample_dir):
    for row in iter_rows(sample_dir / "visualprm400k_v1_prm.jsonl"):
        rec = read_v1(row.record)
        back = read_v1(to_internvl(rec))
        assert (back.question, back.steps, back.labels, back.images, back.system) == (
            rec.question,
            rec.steps,
            rec.labels,
            rec.images,
            rec.system,
        )
        assert to_internvl(rec)["conversations"] == row.record["conversations"]


def test_v11_labels_threshold_and_unestimated(sample_dir):
    rows = [r.record for r in iter_rows(sample_dir / "visualprm400k_v11_raw.jsonl")]
    # step 2 of row 1 has num_mc_total == 0: never '-'
    dropped = read_v11_raw(rows[1], unestimated="drop")
    assert dropped.steps == ["Read 6 and 2.", "6 x 2 = 14."] and dropped.labels == [True, False]
    masked = read_v11_raw(rows[1], unestimated="mask")
    assert masked.labels == [True, False, None] and masked.soft_labels == [3 / 16, 0.0, None]
    # threshold: mc 1/16 and 8/16; '+' iff mc > threshold
    assert read_v11_raw(rows[2]).labels == [True, True]
    assert read_v11_raw(rows[2], threshold=0.25).labels == [False, True]
    assert read_v11_raw(rows[2]).images == ["images/a.png", "images/b.png"]


def test_v11_to_internvl_cuts_at_unlabelled_and_reads_back(sample_dir):
    row = [r.record for r in iter_rows(sample_dir / "visualprm400k_v11_raw.jsonl")][1]
    conv = to_internvl(read_v11_raw(row, unestimated="mask"))
    back = read_v1(conv)
    assert back.labels == [True, False] and back.question == "What is 6 x 2?"
    assert conv["conversations"][0]["value"].startswith("### Question:\n<image>\nWhat is 6 x 2?")


def test_stepwise_is_trl_layout_with_soft_labels(sample_dir):
    row = [r.record for r in iter_rows(sample_dir / "visualprm400k_v11_raw.jsonl")][0]
    out = to_stepwise(read_v11_raw(row), soft=True)
    assert set(out) == {"id", "images", "prompt", "completions", "labels", "soft_labels"}
    assert out["labels"] == [True, True, True] and out["soft_labels"] == [0.75, 1.0, 1.0]


def test_convert_visualprm400k_statistics_and_bad_lines(sample_dir, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    rows = samples.visualprm400k_v11_rows()
    all_unestimated = dict(
        rows[0], steps_with_score=[{"step": "x", "score": 0, "num_mc_correct": 0, "num_mc_total": 0}]
    )
    lines = [
        json.dumps(rows[0]),
        json.dumps({"image": "images/a.png", "question": "q"}),
        "[1, 2]",
        json.dumps(all_unestimated),
        json.dumps(dict(rows[1], image="images/missing.png")),
    ]
    mixed.write_text("\n".join(lines) + "\n")
    errors = ErrorLog("skip")
    out, stats = convert_visualprm400k(
        [sample_dir / "visualprm400k_v1_prm.jsonl", mixed],
        errors,
        "stepwise",
        roots=ImageRoots.of(sample_dir),
    )
    assert len(out) == 3  # 2 v1 + 1 good v1.1
    assert stats["responses"] == 3 and stats["responses_dropped"] == 1  # the all-unestimated one
    assert stats["steps"] == 3 + 2 + 3 and stats["positive"] == 7 and stats["negative"] == 1
    assert stats["steps_per_response_mean"] == pytest.approx(8 / 3)
    reasons = {e["line"]: e["reason"] for e in errors.entries}
    assert set(reasons) == {2, 3, 5}
    assert "steps_with_score" in reasons[2] and "expected a JSON object" in reasons[3]
    assert "not found" in reasons[5]


def test_convert_data_cli_visualprm400k(sample_dir, tmp_path, capsys):
    out = tmp_path / "conv.jsonl"
    rc = cli_main(
        [
            "convert-data",
            "visualprm400k",
            "--input",
            str(sample_dir / "visualprm400k_v11_raw.jsonl"),
            "--to",
            "internvl",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "3 responses (0 dropped)" in printed and "+ fraction" in printed
    rows = [r.record for r in iter_rows(out)]
    assert [len(r["conversations"]) for r in rows] == [6, 4, 4]
    assert json.loads(Path(str(out) + ".stats.json").read_text())["negative"] == 1


# ------------------------------------------------------------------ benchmark readers


def test_processbench_reader_keeps_gold_steps_and_neutral(sample_dir):
    rows = list(iter_rows(sample_dir / "visualprocessbench.jsonl"))
    item = read_processbench(rows[1].record, rows[1].lineno)
    assert item.steps[0] == "Box A holds 5.\n\nBox B holds 2." and item.labels == [1, 0, 1]
    assert item.images == ["images/a.png", "images/b.png"] and item.id.startswith("L2-")
    with pytest.raises(ValueError, match="3 steps but process_correctness has 2"):
        read_processbench(
            dict(rows[0].record, response={"steps": ["a", "b", "c"], "process_correctness": [1, 1]}), 1
        )
    with pytest.raises(ValueError, match="1, -1 or 0"):
        read_processbench(dict(rows[0].record, response={"steps": ["a"], "process_correctness": [2]}), 1)


def test_vlrewardbench_reader_category_and_preferred(sample_dir):
    rows = [r.record for r in iter_rows(sample_dir / "vlrewardbench.jsonl")]
    pairs = [read_vlrewardbench(r, i + 1) for i, r in enumerate(rows)]
    assert [p.category for p in pairs] == ["general", "hallucination", "reasoning"]
    assert [p.preferred for p in pairs] == [0, 1, 0]
    # Hugging Face copy (no image_path): the official id rule; any other prefix is vlfeedback.
    assert read_vlrewardbench(dict(rows[0], id="LRVInstruction-000000007746"), 1).category == "general"
    assert read_vlrewardbench(dict(rows[0], id="hallucination_pair-12585"), 1).category == "hallucination"
    with pytest.raises(ValueError, match="human_ranking"):
        read_vlrewardbench(dict(rows[0], human_ranking=[0, 0]), 1)


def test_bon_reader_accepts_demo_candidates(demo_data):
    rec = json.loads(demo_data.read_text().splitlines()[0])
    item = read_bon(rec, 1)
    assert item.responses == [c["response"] for c in rec["candidates"]]
    assert item.steps == [c["steps"] for c in rec["candidates"]] and item.answer == rec["answer"]


def test_write_jsonl_is_atomic_and_readable(tmp_path):
    p = write_jsonl(tmp_path / "x.jsonl", [{"a": 1}, {"b": b"\x00\x01"}])
    assert not (tmp_path / "x.jsonl.tmp").exists()
    assert [r.record for r in iter_rows(p)] == [{"a": 1}, {"b": "AAE="}]


def test_rows_load_through_openrlhf_prompt_dataset(sample_dir, tmp_path):
    """The rows are what OpenRLHF 0.11's PromptDataset and image loader actually consume."""
    from types import SimpleNamespace

    from openrlhf.datasets.prompts_dataset import PromptDataset
    from openrlhf.utils.vlm_utils import load_images

    rows = convert_math(
        sample_dir / "mathvision.jsonl", ImageStore(ImageRoots.of(sample_dir), tmp_path), ErrorLog()
    )
    data_args = SimpleNamespace(
        input_key="prompt", label_key="label", image_key="images", apply_chat_template=False
    )
    strategy = SimpleNamespace(args=SimpleNamespace(data=data_args), is_rank_0=lambda: False)
    ds = PromptDataset(rows, tokenizer=None, strategy=strategy)
    source, prompt, label, images = ds[0]
    assert source == "mathvision" and prompt == rows[0]["prompt"]
    assert decode_label(label).truth() == "A"
    pil = load_images(images)
    assert len(pil) == 1 and pil[0].size == (64, 48)


def test_convert_data_cli_stop_exits_nonzero_naming_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "answer": "1", "images": ["a.png"]}\n{broken\n')
    rc = cli_main(
        [
            "convert-data",
            "math",
            "--input",
            str(bad),
            "--image-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--on-error",
            "stop",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("openrlhf-visualprm convert-data: error:")
        and "bad.jsonl:1: missing or refused image" in err
    )


def test_stepwise_parquet_keeps_null_labels_and_internvl_parquet_fails_clearly(sample_dir, tmp_path):
    from openrlhf_visualprm.data.records import write_records

    rows, _ = convert_visualprm400k(
        [sample_dir / "visualprm400k_v11_raw.jsonl"],
        ErrorLog("stop"),
        "stepwise",
        unestimated="mask",
        soft_labels=True,
    )
    back = [r.record for r in iter_rows(write_records(tmp_path / "s.parquet", rows))]
    assert back[1]["labels"] == [True, False, None] and back[1]["soft_labels"][2] is None
    conv, _ = convert_visualprm400k([sample_dir / "visualprm400k_v1_prm.jsonl"], ErrorLog("stop"), "internvl")
    with pytest.raises(BadDataError, match="write .jsonl instead"):
        write_records(tmp_path / "c.parquet", conv)


def test_datasets_folder_with_image_features_is_not_decoded_into_rows(sample_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    a = str(sample_dir / "images" / "a.png")
    ds = datasets.Dataset.from_dict({"images": [[a]], "problem": ["<image>Find x."], "answer": ["3"]})
    ds = ds.cast_column("images", datasets.List(datasets.Image()))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    store = ImageStore(ImageRoots.of(sample_dir), tmp_path / "img")
    rows = convert_math(tmp_path / "hf", store, ErrorLog("stop"), split="train")
    assert len(rows) == 1 and store.written == 1  # embedded bytes written once to a file
    assert Path(rows[0]["images"][0]).read_bytes() == Path(a).read_bytes()
    with pytest.raises(BadDataError, match="no split 'test'"):
        convert_math(tmp_path / "hf", store, ErrorLog("stop"), split="test")
