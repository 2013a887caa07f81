"""Seeded fuzz of the image loader (issue 22 item 2): mutated PNG / JPEG / WebP / AVIF and the odd
formats Pillow decodes give a picture or an ``InputError``, never anything else.

Before the fix 32 of 18,000 mutated images escaped as ``RuntimeError`` (AVIF) or
``NotImplementedError`` (DDS, BLP), and a path with a lone surrogate as ``UnicodeEncodeError``:
one such sample failed a whole OpenRLHF batch or stopped a ``reward_fns`` run.
"""

from __future__ import annotations

import collections
import io
import random
import time
import warnings

import numpy as np
import pytest
from PIL import Image, features

from openrlhf_visualprm.errors import InputError
from openrlhf_visualprm.images import ImageError, ImageRoots, load_image

# format -> the mode it is saved from (the formats that cannot store RGB take what they can)
FORMATS = {
    "PNG": "RGB", "JPEG": "RGB", "WEBP": "RGB", "AVIF": "RGB", "DDS": "RGB", "BLP": "P", "TIFF": "RGB",
    "GIF": "P", "BMP": "RGB", "ICO": "RGB", "TGA": "RGB", "SGI": "RGB", "PCX": "RGB", "QOI": "RGB",
    "JPEG2000": "RGB", "PPM": "RGB", "IM": "RGB", "SPIDER": "F", "MSP": "1", "XBM": "1",
    "ICNS": "RGB", "PALM": "P",
}  # fmt: skip
CASES = 3000


def _seeds() -> dict[str, bytes]:
    pixels = (np.random.default_rng(0).random((20, 28, 3)) * 255).astype("uint8")
    image = Image.fromarray(pixels)
    out = {}
    for fmt, mode in FORMATS.items():
        if fmt == "AVIF" and not features.check("avif"):
            continue  # this Pillow has no AVIF codec: nothing to fuzz
        buf = io.BytesIO()
        image.convert(mode).save(buf, fmt)
        out[fmt] = buf.getvalue()
    return out


def _mutate(data: bytes, rng: random.Random) -> bytes:
    d = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # random bytes anywhere
        for _ in range(rng.randint(1, 8)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif kind == 1:  # truncated
        d = d[: rng.randrange(1, len(d))]
    elif kind == 2:  # a header field set to all ones (sizes, counts, offsets)
        p = rng.randrange(min(64, len(d)))
        d[p : p + 4] = b"\xff" * len(d[p : p + 4])
    elif kind == 3:  # inserted garbage
        p = rng.randrange(len(d))
        d[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    elif kind == 4:  # a duplicated slice (repeated chunks, shifted offsets)
        a, b = rng.randrange(len(d)), rng.randrange(len(d))
        d[a:a] = d[b : b + rng.randint(1, 64)]
    else:  # one header byte at an edge value
        d[rng.randrange(min(48, len(d)))] = rng.choice([0, 0x7F, 0x80, 0xFF])
    return bytes(d)


def test_mutated_images_decode_or_raise_input_error_only():
    seeds = _seeds()
    assert {"PNG", "JPEG", "WEBP"} <= set(seeds) and len(seeds) >= 20
    rng = random.Random(1)
    names = sorted(seeds)
    escaped: collections.Counter = collections.Counter()
    outcomes: collections.Counter = collections.Counter()
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the truncated TIFF tags it skips
        for i in range(CASES):
            fmt = names[i % len(names)]
            try:
                image = load_image(_mutate(seeds[fmt], rng), ImageRoots())
                assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
                outcomes["decoded"] += 1
            except InputError as exc:
                assert exc.part == "image", exc
                outcomes["refused"] += 1
            except Exception as exc:  # what the test is for: name every escape
                escaped[(fmt, type(exc).__name__, str(exc)[:60])] += 1
    elapsed = time.monotonic() - start
    assert not escaped, escaped.most_common(10)
    # not vacuous: the mutations both keep pictures readable and break them
    assert outcomes["decoded"] > CASES // 5 and outcomes["refused"] > CASES // 5, outcomes
    assert elapsed < 60, elapsed


@pytest.mark.parametrize("path", ["a\ud800b.png", "images/\udfff", "\ud83d.png", "/abs/\udbff/x.png"])
def test_lone_surrogate_paths_are_bad_samples(tmp_path, path):
    with pytest.raises(ImageError, match="cannot be encoded as a file name") as info:
        load_image(path, ImageRoots.of(tmp_path))
    assert info.value.reason == "bad_path"


def test_eps_is_never_decoded(tmp_path):
    """EPS decodes by running Ghostscript on the bytes: refused whether or not gs is installed."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "EPS")
    with pytest.raises(ImageError, match="formats never decoded: EPS"):
        load_image(buf.getvalue(), ImageRoots())
