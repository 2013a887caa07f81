"""Turn the image fields of released records into files under a root the reward side may read.

Released records hold images as a relative path (``"images/12.png"``), a list of paths
(multi-image rows), or, in parquet / ``datasets`` exports, ``{"bytes": ..., "path": ...}`` dicts.
Paths are confined to the configured image roots (``..`` escapes and absolute paths elsewhere
are refused with :class:`~openrlhf_visualprm.images.ImageError`); embedded bytes are written
once to a content-addressed file, so outputs reference files instead of carrying base64.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from openrlhf_visualprm.images import ImageError, ImageRoots

_EXT = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tiff"}


def as_ref_list(value: Any) -> list:
    """Normalise an image field (None, str, dict, or a list of them) to a list of references."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    return [value]


def _image_ext(data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return _EXT.get(img.format or "", ".png")
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"embedded image bytes are not a readable image ({exc})") from exc


class ImageStore:
    """Resolve references to real files: paths inside ``roots``, bytes written under ``out_dir``."""

    def __init__(self, roots: ImageRoots, out_dir: str | Path | None = None) -> None:
        self.roots = roots
        self.out_dir = Path(out_dir).resolve() if out_dir is not None else None
        self.written = 0

    def _write_bytes(self, data: bytes) -> Path:
        if self.out_dir is None:
            raise ImageError(
                "record embeds image bytes but no output image folder was configured (--image-out)"
            )
        name = hashlib.sha256(data).hexdigest()[:24] + _image_ext(data)
        path = self.out_dir / name
        if not path.exists():
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            self.written += 1
        return path

    def resolve(self, ref: Any) -> Path:
        """The real path for one reference; raises ``ImageError`` naming the reference."""
        if isinstance(ref, dict):
            data, path = ref.get("bytes"), ref.get("path")
            if data:
                return self._write_bytes(bytes(data))
            if path:
                return self.roots.resolve(path)
            raise ImageError(f"image entry {ref!r} has neither bytes nor a path")
        if isinstance(ref, (bytes, bytearray)):
            return self._write_bytes(bytes(ref))
        if isinstance(ref, str):
            if not ref.strip():
                raise ImageError("empty image path")
            return self.roots.resolve(ref)
        raise ImageError(f"unsupported image reference of type {type(ref).__name__}")

    def resolve_all(self, value: Any) -> list[Path]:
        return [self.resolve(r) for r in as_ref_list(value)]


def relative_to_roots(path: Path, roots: ImageRoots, extra: list[Path] | None = None) -> str:
    """``path`` relative to the first root (or extra folder) containing it, else absolute."""
    for root in list(roots.roots) + list(extra or []):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(path)
