"""Character offsets of a non-canonically tokenised response: incremental decoding vs prefix decoding.

The experience hook maps each PRM step to the policy token that completes it through character
offsets. When re-tokenising the text does not give the sampled ids back (the policy spelled a word
letter by letter), offsets come from decoding; this compares the plugin's incremental decoding
(``rewards/dense.py``, O(n)) with decoding every prefix (the old method, O(n^2)) on the Qwen2
tokenizer, and checks that both give the same ends.

    python benchmarks/char_offsets.py                 # 4k tokens
    python benchmarks/char_offsets.py --tokens 8000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARAGRAPH = "The triangle has sides 3, 4 and 5 cm, so angle C = 90° and its area is 6 cm².\n\n"


def prefix_decoding_ends(tok, ids: list[int]) -> list[int]:
    text = tok.decode(ids, skip_special_tokens=True)
    out: list[int] = []
    for k in range(len(ids)):
        length = len(tok.decode(ids[: k + 1], skip_special_tokens=True))
        out.append(min(max(length, out[-1] if out else 0), len(text)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4000, help="response length in (non-canonical) tokens")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    from openrlhf_visualprm.rewards.dense import token_char_ends
    from openrlhf_visualprm.tiny_models import qwen2_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))
    ids: list[int] = []
    while len(ids) < args.tokens:  # letter by letter: never what the tokenizer would produce
        for ch in PARAGRAPH:
            ids += tok(ch, add_special_tokens=False)["input_ids"]
    ids = ids[: args.tokens]
    start = time.perf_counter()
    _, ends = token_char_ends(tok, ids)
    incremental = time.perf_counter() - start
    start = time.perf_counter()
    oracle = prefix_decoding_ends(tok, ids)
    prefix = time.perf_counter() - start
    result = {
        "tokens": len(ids),
        "incremental_s": round(incremental, 4),
        "prefix_decoding_s": round(prefix, 4),
        "ratio": round(prefix / incremental, 1),
        "same_ends": ends == oracle,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['tokens']} tokens: incremental {incremental:.3f} s, prefix decoding {prefix:.3f} s "
            f"(x{result['ratio']}), same ends: {result['same_ends']}"
        )
    return 0 if result["same_ends"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
