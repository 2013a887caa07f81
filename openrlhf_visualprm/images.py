"""Safe image loading and InternVL dynamic tiling.

Image references arrive in dataset labels written by whoever built the dataset, and through the
reward service from the network, so a path is only opened when it resolves (symlinks followed)
inside one of the configured roots, and decoded images are bounded in pixels.

Tiling follows InternVL's ``dynamic_preprocess``: choose the grid (cols, rows) with
``min_tiles <= cols*rows <= max_tiles`` whose aspect ratio is closest to the image's (candidate
grids sorted by tile count; on an exact tie the later, larger grid wins only while the image
area exceeds half the grid's pixel area), resize to the grid with PIL bicubic, cut 448x448
tiles row-major, append a 448 thumbnail when there is more than one tile, scale to [0, 1] and
normalise with ImageNet mean/std. transformers' native ``GotOcr2ImageProcessor`` picks the same
grids but resizes with torch's antialiased bicubic, so its pixels differ from the reference
(tests/test_images.py measures it); we therefore implement the PIL path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from openrlhf_visualprm.errors import PART_IMAGE, ConfigError, InputError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TILE_SIZE = 448
DEFAULT_MAX_TILES = 12
# Upper bound of max_tiles on every route: 64 tiles are 16,384 image tokens per image, and the
# grid search grows with the cube of the bound (200: 0.13 s per image; 100,000: never ends).
MAX_TILES_LIMIT = 64
DEFAULT_MAX_PIXELS = 64_000_000  # refuse decompression bombs well before PIL's own limit
MAX_PATH_CHARS = 4096  # Linux PATH_MAX; longer references are refused before touching the disk
# ``Image.info`` key of the thumbnail kept by :func:`shrink_for_tiling` (Image.info survives
# pickling and ``convert``, so a shrunk image still tiles exactly like its original).
THUMBNAIL_KEY = "openrlhf_visualprm.thumbnail"


class ImageError(InputError):
    """An image reference could not be turned into a picture; the message says which and why.

    A bad *sample* (:class:`~openrlhf_visualprm.errors.InputError`, part ``image``): neutral reward
    for the components that read the image."""

    def __init__(self, message: str, part: str = PART_IMAGE, reason: str = "bad_image") -> None:
        super().__init__(message, part, reason)


@dataclass(frozen=True)
class ImageRoots:
    """Folders an image path may resolve into. Relative references resolve against the first."""

    roots: tuple[Path, ...] = field(default_factory=tuple)
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def of(cls, roots: Iterable[str | os.PathLike] | str | os.PathLike | None, **kw) -> ImageRoots:
        if roots is None:
            return cls((), **kw)
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        return cls(tuple(Path(r).resolve() for r in roots), **kw)

    def resolve(self, ref: str | os.PathLike) -> Path:
        """Return the real path of ``ref`` if it lies inside a root, else raise ``ImageError``."""
        if not self.roots:
            raise ImageError(
                f"image path {str(ref)!r} given but no image roots are configured: "
                "set the allowed folders (e.g. --image-root DIR) so paths from data can be confined"
            )
        text = os.fspath(ref)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        shown = repr(text if len(text) <= 120 else text[:120] + f"... ({len(text)} characters)")
        if "\0" in text:
            raise ImageError(f"image path {shown} contains a NUL character", reason="bad_path")
        if len(text) > MAX_PATH_CHARS:
            raise ImageError(
                f"image path {shown} is longer than {MAX_PATH_CHARS} characters", reason="bad_path"
            )
        try:
            os.fsencode(text)  # a lone surrogate cannot name a file: UnicodeEncodeError
            return self._resolve(Path(text), shown)
        except UnicodeError:
            raise ImageError(
                f"image path {shown} cannot be encoded as a file name (lone surrogate or invalid text)",
                reason="bad_path",
            ) from None
        except OSError as exc:  # a component over NAME_MAX, a permission error, a loop of links
            raise ImageError(
                f"image path {shown} cannot be opened ({type(exc).__name__}: {exc.strerror or exc})",
                reason="bad_path",
            ) from None

    def _resolve(self, raw: Path, shown: str) -> Path:
        candidates = [raw] if raw.is_absolute() else [root / raw for root in self.roots]
        for cand in candidates:
            real = cand.resolve()
            if any(real == root or root in real.parents for root in self.roots):
                if real.is_file():
                    return real
                continue
        inside = any(
            any(c.resolve() == r or r in c.resolve().parents for r in self.roots) for c in candidates
        )
        roots = ", ".join(str(r) for r in self.roots)
        if not inside:
            raise ImageError(f"image path {shown} resolves outside the allowed image roots ({roots})")
        raise ImageError(f"image file {shown} not found under the image roots ({roots})")


# Formats Pillow decodes by running an external program on the bytes (EPS: Ghostscript): never
# for data from datasets or the network.
REFUSED_FORMATS = frozenset({"EPS"})


def _decodable_formats() -> list[str]:
    Image.init()
    return [f for f in Image.ID if f not in REFUSED_FORMATS]


def _decode(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """Decode untrusted bytes; every failure is an :class:`ImageError` (a bad sample).

    Pillow's decoders raise far more than ``OSError`` on corrupt input (AVIF ``RuntimeError``,
    DDS / BLP ``NotImplementedError``, ``struct.error``, ``EOFError``, ...), and which one depends
    on the format plugin, so everything raised *here* (nothing but Pillow runs in this block) is
    a bad image, never a reason to stop a run or answer 500.
    """
    try:
        with Image.open(io.BytesIO(data), formats=_decodable_formats()) as probe:
            w, h = probe.size
            if w * h > max_pixels:
                raise ImageError(f"{what} is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
            img = probe.convert("RGB")
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{what} is not a readable image ({type(exc).__name__}: {exc}); "
            f"formats never decoded: {', '.join(sorted(REFUSED_FORMATS))}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - only Pillow's decoder runs in this block (see above)
        raise ImageError(f"{what} is not a readable image ({type(exc).__name__}: {exc})") from exc
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{what} has an empty size {img.size}")
    return img


_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]+={0,2}")
# Base64 of the file signatures of PNG, JPEG, GIF, WebP, BMP and TIFF: a long run of base64
# characters that starts otherwise (``a/a/.../b``) is a path, not an image.
_IMAGE_BASE64_MAGIC = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "Qk", "SUkqAA", "TU0AK")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def image_ref_kind(ref: object) -> str:
    """What an image reference is: ``pil``, ``bytes``, ``data_uri``, ``base64`` (bare, as
    OpenRLHF's own loader accepts: over 256 base64 characters, starting with an image file
    signature), ``url`` or ``path``; ``other``
    for anything else. Classification only: nothing is read."""
    if isinstance(ref, Image.Image):
        return "pil"
    if isinstance(ref, (bytes, bytearray)):
        return "bytes"
    if isinstance(ref, os.PathLike):
        return "path"
    if not isinstance(ref, str):
        return "other"
    text = ref.strip()
    if text.startswith("data:"):
        return "data_uri"
    if _URL.match(text):
        return "url"
    if len(text) > 256 and text.startswith(_IMAGE_BASE64_MAGIC) and _BASE64.fullmatch(text):
        return "base64"
    return "path"


def load_image(ref: str | os.PathLike | bytes | Image.Image, roots: ImageRoots | None = None) -> Image.Image:
    """Load an RGB image from a PIL image, raw bytes, a ``data:`` URI / base64 string, or a path.

    Paths must resolve inside ``roots``. Errors are ``ImageError`` naming the reference.
    """
    roots = roots or ImageRoots()
    if isinstance(ref, Image.Image):
        if ref.width * ref.height > roots.max_pixels:
            raise ImageError(
                f"image of {ref.width}x{ref.height} pixels is over the limit of {roots.max_pixels}"
            )
        return ref.convert("RGB")
    if isinstance(ref, (bytes, bytearray)):
        if len(ref) > roots.max_bytes:
            raise ImageError(f"image bytes ({len(ref)}) exceed the limit of {roots.max_bytes}")
        return _decode(bytes(ref), "image bytes", roots.max_pixels)
    kind = image_ref_kind(ref)
    if kind == "url":
        raise ImageError(
            f"image URL {str(ref)[:80]!r} refused: reward workers never fetch from the network (a dataset could "
            "make them request any address). Download the image under the image roots, or embed it as a "
            "data: URI or base64",
            reason="image_url",
        )
    if kind in ("data_uri", "base64"):
        text = ref.strip() if kind == "base64" else ref.split(",", 1)[1] if "," in ref else None
        if text is None:
            raise ImageError("data: URI image has no comma-separated payload")
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except ValueError as exc:
            raise ImageError(f"{kind.replace('_', ' ')} image is not valid base64") from exc
        return load_image(data, roots)
    if not isinstance(ref, (str, os.PathLike)):
        raise ImageError(f"unsupported image reference of type {type(ref).__name__}")
    if isinstance(ref, str) and not ref.strip():
        raise ImageError("empty image path")
    path = roots.resolve(ref)
    try:
        size = path.stat().st_size
        if size > roots.max_bytes:
            raise ImageError(f"image file {str(ref)!r} is {size} bytes, over the limit of {roots.max_bytes}")
        data = path.read_bytes()
    except OSError as exc:  # removed or made unreadable since it was resolved
        raise ImageError(f"image file {str(ref)!r} cannot be read ({exc.strerror or exc})") from None
    return _decode(data, f"image file {str(ref)!r}", roots.max_pixels)


def image_digest(image: Image.Image) -> str:
    """Content hash of a decoded image (size + RGB bytes), for caches keyed by what was seen."""
    h = hashlib.sha256(f"{image.width}x{image.height}".encode())
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # In strips of rows: the same bytes as ``rgb.tobytes()``, without a second full copy in memory.
    for top in range(0, rgb.height, 256):
        h.update(rgb.crop((0, top, rgb.width, min(rgb.height, top + 256))).tobytes())
    return h.hexdigest()[:32]


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """All (cols, rows) with min_tiles <= cols*rows <= max_tiles, ordered as InternVL orders them."""
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(grids, key=lambda g: g[0] * g[1])


def choose_grid(
    width: int, height: int, min_tiles: int = 1, max_tiles: int = DEFAULT_MAX_TILES, tile: int = TILE_SIZE
) -> tuple[int, int]:
    """The (cols, rows) tiling grid InternVL uses for an image of ``width`` x ``height``."""
    if max_tiles < 1 or min_tiles < 1 or min_tiles > max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {min_tiles}, {max_tiles}")
    if max_tiles > MAX_TILES_LIMIT:  # every route's last line of defence (configs refuse it first)
        raise ConfigError(f"max_tiles {max_tiles} is over the limit of {MAX_TILES_LIMIT}")
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for grid in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - grid[0] / grid[1])
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and area > 0.5 * tile * tile * grid[0] * grid[1]:
            best = grid
    return best


def tile_image(
    image: Image.Image,
    max_tiles: int = DEFAULT_MAX_TILES,
    min_tiles: int = 1,
    tile: int = TILE_SIZE,
    use_thumbnail: bool = True,
) -> list[Image.Image]:
    """Cut ``image`` into InternVL tiles (plus the thumbnail when more than one tile)."""
    cols, rows = choose_grid(image.width, image.height, min_tiles, max_tiles, tile)
    resized = image.resize((cols * tile, rows * tile), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
        for r in range(rows)
        for c in range(cols)
    ]
    if use_thumbnail and len(tiles) != 1:
        kept = image.info.get(THUMBNAIL_KEY)
        thumb = kept if isinstance(kept, Image.Image) and kept.size == (tile, tile) else None
        tiles.append(thumb.convert("RGB") if thumb else image.resize((tile, tile), Image.Resampling.BICUBIC))
    return tiles


def shrink_for_tiling(
    image: Image.Image, max_tiles: int = DEFAULT_MAX_TILES, tile: int = TILE_SIZE
) -> Image.Image:
    """The image at the size InternVL tiling reads, tiling exactly like the original.

    Tiling resizes the image to its grid (at most ``max_tiles`` x 448²) and cuts it; only the
    thumbnail is taken from the original. So an image larger than its grid is replaced by the
    grid-sized resize (the same PIL call :func:`tile_image` makes) with the original's thumbnail in
    ``info``: the grid chosen for it is the same (its aspect ratio is the grid's exactly), its
    resize is the identity, and the pixel values equal the original's. A 8000x8000 picture
    becomes 1344x1344 (+ a 448² thumbnail) before it is shipped to a worker. Smaller images are
    returned unchanged.
    """
    cols, rows = choose_grid(image.width, image.height, 1, max_tiles, tile)
    size = (cols * tile, rows * tile)
    if image.width * image.height <= size[0] * size[1] + tile * tile:
        return image
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    shrunk = rgb.resize(size, Image.Resampling.BICUBIC)
    shrunk.info = {}
    if cols * rows != 1:
        shrunk.info[THUMBNAIL_KEY] = rgb.resize((tile, tile), Image.Resampling.BICUBIC)
    return shrunk


def to_pixel_values(tiles: list[Image.Image]) -> torch.Tensor:
    """Stack tiles into a float32 ``(n, 3, H, W)`` tensor normalised with ImageNet mean/std."""
    import torch  # here, not at import: path checks and tiling need no torch

    arr = np.stack([np.asarray(t.convert("RGB"), dtype=np.float32) / 255.0 for t in tiles])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_image(image: Image.Image, max_tiles: int = DEFAULT_MAX_TILES) -> torch.Tensor:
    """Image -> InternVL ``pixel_values`` (tiles x 3 x 448 x 448)."""
    return to_pixel_values(tile_image(image.convert("RGB"), max_tiles=max_tiles))
