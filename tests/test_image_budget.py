"""Image memory on the request path (issue 14 item 2): decode once, bounded pixels, model-sized."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from openrlhf_visualprm import images as images_mod
from openrlhf_visualprm.errors import RequestTooLargeError
from openrlhf_visualprm.images import (
    TILE_SIZE,
    ImageRoots,
    choose_grid,
    preprocess_image,
    shrink_for_tiling,
)
from openrlhf_visualprm.rewards.groups import ImageLimits, prepare_groups


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize("size", [(3000, 3000), (2000, 600), (700, 3000), (2500, 2100), (6000, 450)])
def test_shrunk_image_tiles_exactly_like_the_original(size):
    original = _noise(*size)
    shrunk = shrink_for_tiling(original, max_tiles=12)
    cols, rows = choose_grid(*size, 1, 12)
    assert shrunk.size == (cols * TILE_SIZE, rows * TILE_SIZE)
    assert shrunk.width * shrunk.height < original.width * original.height
    # through pickling, as it travels to a worker
    shipped = pickle.loads(pickle.dumps(shrunk))
    assert torch.equal(preprocess_image(shipped, 12), preprocess_image(original, 12))


def test_grid_of_a_grid_sized_image_is_its_own_grid():
    """Why shrinking is exact: for every grid, an image of exactly that grid's size picks it."""
    for w in range(200, 6000, 97):
        for h in range(200, 6000, 89):
            cols, rows = choose_grid(w, h, 1, 12)
            assert choose_grid(cols * TILE_SIZE, rows * TILE_SIZE, 1, 12) == (cols, rows), (w, h)


def test_small_images_are_shipped_unchanged():
    small = _noise(300, 200)
    assert shrink_for_tiling(small) is small


def _bomb(folder) -> str:
    Image.new("1", (8000, 8000)).save(folder / "bomb.png", optimize=True)
    assert (folder / "bomb.png").stat().st_size < 20_000
    return "bomb.png"


def test_each_distinct_image_is_decoded_once_per_request(tmp_path, monkeypatch):
    _noise(500, 400).save(tmp_path / "a.png")
    calls = []
    real = images_mod._decode
    monkeypatch.setattr(images_mod, "_decode", lambda *a: calls.append(a[1]) or real(*a))
    roots = ImageRoots.of(tmp_path)
    group = {"images": ["a.png", str(tmp_path / "a.png")], "question": "q", "responses": ["x"]}
    prepared = prepare_groups([group, {**group, "images": ["./a.png"]}], roots)
    assert len(calls) == 1, calls
    assert prepared[0].image_hashes[0] == prepared[0].image_hashes[1] == prepared[1].image_hashes[0]


def test_the_pixel_bomb_request_is_refused_and_one_bomb_ships_small(tmp_path):
    bomb = _bomb(tmp_path)
    roots = ImageRoots.of(tmp_path)
    group = {"images": [bomb] * 4, "question": "q", "responses": ["x"]}
    pool = ImageLimits(shrink_tiles=12)  # a PRM pool's limits
    with pytest.raises(RequestTooLargeError, match=r"groups\[0\]\.images\[1\] brings the group to 128000000"):
        prepare_groups([group], roots, strict=True, limits=pool)
    with pytest.raises(RequestTooLargeError, match=r"groups\[2\]\.images\[0\] .* per request"):
        prepare_groups([{**group, "images": [bomb]}] * 3, roots, strict=True, limits=pool)
    with pytest.raises(RequestTooLargeError, match=r"3 images, over the limit of 2 per group"):
        prepare_groups(
            [{**group, "images": [bomb] * 3}], roots, strict=True, limits=ImageLimits(max_images_per_group=2)
        )
    # on a route that records bad samples, the same bomb is a bad sample, reason too_large
    (recorded,) = prepare_groups([group], roots, limits=pool)
    assert recorded.broken["image"].startswith("too_large:")
    (one,) = prepare_groups([{**group, "images": [bomb]}], roots, strict=True, limits=pool)
    assert one.images[0].size == (3 * TILE_SIZE, 3 * TILE_SIZE)  # a square: the 3x3 grid
    assert len(pickle.dumps(one)) < 10 * 1024 * 1024  # 192 MB as full RGB
