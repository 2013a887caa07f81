"""Image loading confined to roots, and InternVL tiling checked against transformers' own code."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from openrlhf_visualprm.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    ImageRoots,
    choose_grid,
    image_digest,
    load_image,
    preprocess_image,
    tile_image,
)

SIZES = [
    (448, 448),
    (900, 500),
    (500, 900),
    (1792, 448),
    (100, 3000),
    (3000, 100),
    (640, 480),
    (1000, 1000),
    (1344, 896),
    (672, 448),
    (1200, 400),
    (333, 777),
    (2048, 1536),
    (50, 60),
]


@pytest.mark.parametrize("max_tiles", [1, 6, 12])
def test_grid_choice_matches_transformers(max_tiles):
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    for w, h in SIZES:
        ours = choose_grid(w, h, 1, max_tiles)
        theirs = get_optimal_tiled_canvas((h, w), (448, 448), 1, max_tiles)
        assert ours == tuple(theirs), (w, h, max_tiles)


def test_tiles_thumbnail_and_normalisation():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (500, 900, 3), dtype=np.uint8))
    tiles = tile_image(img, max_tiles=12)
    assert len(tiles) == 3 and all(t.size == (448, 448) for t in tiles)  # 2x1 grid + thumbnail
    resized = img.resize((896, 448), Image.Resampling.BICUBIC)
    assert tiles[1].tobytes() == resized.crop((448, 0, 896, 448)).tobytes()
    assert tiles[2].tobytes() == img.resize((448, 448), Image.Resampling.BICUBIC).tobytes()
    pv = preprocess_image(img)
    assert pv.shape == (3, 3, 448, 448) and pv.dtype == torch.float32
    raw = np.asarray(tiles[0], dtype=np.float32)[5, 7] / 255.0
    expected = (raw - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert torch.allclose(pv[0, :, 5, 7], torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert len(tile_image(Image.new("RGB", (448, 448)))) == 1  # one tile: no thumbnail


def test_native_processor_differs_only_in_resampling(tiny_prm_path):
    """The native processor tiles the same grid but resizes with torch's bicubic, not PIL's."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_prm_path)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (500, 900, 3), dtype=np.uint8))
    native = proc.image_processor(images=[img], return_tensors="pt")["pixel_values"]
    ours = preprocess_image(img)
    assert native.shape == ours.shape
    diff = (native - ours).abs()
    assert diff.max() > 0  # not byte-identical: this is why we implement the PIL path
    assert diff.mean() < 0.25  # same tiles, same normalisation; only the resampling kernel differs


def _png_bytes(size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_load_confined_to_roots(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(_png_bytes())
    (tmp_path / "secret.png").write_bytes(_png_bytes())
    roots = ImageRoots.of(root)
    assert load_image("sub/a.png", roots).size == (8, 6)
    assert load_image(str(root / "sub" / "a.png"), roots).mode == "RGB"
    with pytest.raises(ImageError, match="outside the allowed image roots"):
        load_image("../secret.png", roots)
    with pytest.raises(ImageError, match="outside the allowed image roots"):
        load_image(str(tmp_path / "secret.png"), roots)
    os.symlink(tmp_path / "secret.png", root / "link.png")
    with pytest.raises(ImageError, match="outside the allowed image roots"):
        load_image("link.png", roots)
    with pytest.raises(ImageError, match="not found"):
        load_image("sub/missing.png", roots)
    with pytest.raises(ImageError, match="no image roots are configured"):
        load_image("sub/a.png")


def test_corrupt_oversize_and_inline_images(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "empty.png").write_bytes(b"")
    roots = ImageRoots.of(tmp_path)
    with pytest.raises(ImageError, match="bad.png.*not a readable image"):
        load_image("bad.png", roots)
    with pytest.raises(ImageError, match="not a readable image"):
        load_image("empty.png", roots)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(_png_bytes((100, 100)), ImageRoots.of(None, max_pixels=5000))
    uri = "data:image/png;base64," + base64.b64encode(_png_bytes()).decode()
    assert load_image(uri).size == (8, 6)
    with pytest.raises(ImageError, match="base64"):
        load_image("data:image/png;base64,!!!")
    with pytest.raises(ImageError, match="unsupported"):
        load_image(12345)  # type: ignore[arg-type]


def test_digest_depends_on_content():
    a, b = Image.new("RGB", (4, 4), (1, 1, 1)), Image.new("RGB", (4, 4), (1, 1, 2))
    assert image_digest(a) == image_digest(a.copy()) != image_digest(b)


def test_bare_base64_is_an_image_only_when_it_decodes_to_one(tmp_path):
    from openrlhf_visualprm.images import image_ref_kind

    noisy = Image.effect_noise((64, 64), 80).convert("RGB")  # noise: a PNG well over 256 base64 chars
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    text = base64.b64encode(buf.getvalue()).decode()
    assert len(text) > 256 and image_ref_kind(text) == "base64"
    assert load_image(text).size == (64, 64)
    # Long paths made only of base64 characters stay paths: confined to the roots, refused by name.
    for path in ("a" * 1000, "a/" * 200 + "b" * 300):
        assert image_ref_kind(path) == "path"
        with pytest.raises(ImageError, match="cannot be opened|not found under"):
            load_image(path, ImageRoots.of(tmp_path))
