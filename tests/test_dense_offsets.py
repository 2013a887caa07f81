"""Character offsets of policy tokens: the linear incremental path on non-canonical tokenisations.

A policy may sample a tokenisation the tokenizer would never produce (a word letter by letter,
a character byte by byte); re-tokenising then does not give its ids back and the offsets come
from incremental decoding. Checked against the old prefix-decoding method (exact but O(n^2),
written out here as the oracle) and for its cost: decoded tokens grow linearly, not quadratically.
The time ratio of the two is in ``benchmarks/char_offsets.py``.
"""

from __future__ import annotations

import pytest

from openrlhf_visualprm.rewards.dense import step_end_tokens, token_char_ends
from openrlhf_visualprm.steps import split_steps

TEXT = "Angle α = 30°, so β = 60° — done ✓.\n\nThe triangle 三角形 has area 21 cm².\n\nThe answer is \\boxed{21}."


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from openrlhf_visualprm.tiny_models import qwen2_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))


def prefix_decoding_ends(tok, ids):
    """The old method: decode every prefix (n decodes of up to n tokens)."""
    text = tok.decode(ids, skip_special_tokens=True)
    out = []
    for k in range(len(ids)):
        length = len(tok.decode(ids[: k + 1], skip_special_tokens=True))
        out.append(min(max(length, out[-1] if out else 0), len(text)))
    return out


def char_by_char(tok, text):
    ids = []
    for ch in text:
        ids += tok(ch, add_special_tokens=False)["input_ids"]
    return ids


class CountingTokenizer:
    """The real tokenizer, counting the tokens each decode is given (not fast: no offset mapping,
    so the incremental path runs whatever the ids)."""

    is_fast = False

    def __init__(self, tok):
        self.tok, self.decoded = tok, 0
        self.all_special_ids = tok.all_special_ids

    def decode(self, ids, **kw):
        self.decoded += len(ids)
        return self.tok.decode(ids, **kw)


def test_non_canonical_offsets_equal_the_prefix_decoding_oracle(tokenizer):
    ids = char_by_char(tokenizer, TEXT)
    assert tokenizer(TEXT, add_special_tokens=False)["input_ids"] != ids  # really non-canonical
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    text, ends = token_char_ends(tokenizer, ids + [eos])
    assert text == TEXT
    assert ends[:-1] == prefix_decoding_ends(tokenizer, ids) and ends[-1] == ends[-2]
    steps = split_steps(text)
    positions = step_end_tokens(ends, [(s.start, s.end) for s in steps])
    for step, k in zip(steps, positions):  # each step ends on the token completing it
        assert ends[k] >= step.end > (ends[k - 1] if k else 0)


def test_a_character_split_into_byte_tokens_ends_on_its_last_byte(tokenizer):
    # "✓" is 3 UTF-8 bytes; byte-level BPE has a token per byte: a policy can sample them one by one
    byte_tokens = tokenizer.convert_tokens_to_ids(
        list(tokenizer.convert_ids_to_tokens(tokenizer("✓")["input_ids"])[0])
    )
    ids = (
        tokenizer("ok ", add_special_tokens=False)["input_ids"]
        + byte_tokens
        + tokenizer("!", add_special_tokens=False)["input_ids"]
    )
    text, ends = token_char_ends(tokenizer, ids)
    assert text == "ok ✓!"
    n = len(ids)
    assert ends[n - 5 : n] == [3, 3, 3, 4, 5]  # "ok " then the 3 bytes of ✓ (complete on the third), "!"


def test_offset_recovery_is_linear_in_the_response_length(tokenizer):
    """The slow path is gone: the tokens decoded grow ~linearly (prefix decoding: n^2 / 2)."""
    counts = {}
    for repeat in (4, 16):
        ids = char_by_char(tokenizer, TEXT * repeat)
        counting = CountingTokenizer(tokenizer)
        text, ends = token_char_ends(counting, ids)
        assert text == TEXT * repeat and ends[-1] == len(text)
        counts[len(ids)] = counting.decoded
    (n1, c1), (n2, c2) = sorted(counts.items())
    assert c2 / c1 < 1.2 * n2 / n1, counts  # x4 tokens: ~x4 work (prefix decoding: ~x16)
    assert c2 < 8 * n2, counts  # a few short windows per token, plus one full decode
