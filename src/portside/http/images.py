"""`GET /asset/...?processImage=true&...`: image filters on an asset file, with Pillow (spec core §10.2).

Parameters (applied in this order; all optional):
- `crop=x,y,w,h`: a box of the original image, in pixels;
- `width`, `height`: resize; with both the image fits inside the box (aspect kept), with one the other
  follows the aspect ratio;
- `rotate`: degrees counter-clockwise (the canvas grows to hold the result);
- `grayscale=true`;
- `format`: `png`, `jpeg`, `webp` or `gif` (default: the original's format, PNG when it has none);
- `quality`: 1-95 for JPEG/WebP (default 85).

Bounded: the source is read up to `MAX_INPUT` bytes; Pillow refuses images over `MAX_PIXELS` pixels
before decoding them (decompression bombs); only common raster formats are decoded (PNG, JPEG, GIF, WebP,
BMP, TIFF, ICO: never EPS, which Pillow would hand to Ghostscript); a result may not exceed `MAX_SIDE`
pixels a side or `MAX_PIXELS` in all. A file that is not such an image answers 415, a bad parameter 400.
The answer carries an `ETag` made of the file (name, MD5, size; for a stored file also its size and mtime
in the store) and the parameters, so a repeated request is a 304 without decoding anything.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from portside.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_INPUT = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 8192
FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF"}
MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# the decoders tried: common raster formats only (never EPS/PS, which Pillow hands to Ghostscript)
READABLE = ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO"]
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns past this and refuses past twice it; we refuse at the warning


@dataclass(frozen=True)
class Filters:
    crop: tuple[int, int, int, int] | None = None
    width: int | None = None
    height: int | None = None
    rotate: float = 0.0
    grayscale: bool = False
    format: str | None = None
    quality: int = 85


def _int(params: Mapping[str, str], key: str, low: int, high: int) -> int | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 7) or not low <= int(text) <= high:
        raise BadRequest(f"{key} must be a whole number from {low} to {high}", parameter=key)
    return int(text)


def parse(params: Mapping[str, str]) -> Filters:
    crop = None
    if params.get("crop"):
        bits = params["crop"].split(",")
        if len(bits) != 4 or not all(b.strip().isascii() and b.strip().isdigit() and len(b) <= 6 for b in bits):
            raise BadRequest("crop must be x,y,width,height in pixels", parameter="crop")
        x, y, w, h = (int(b) for b in bits)
        if w < 1 or h < 1:
            raise BadRequest("crop width and height must be positive", parameter="crop")
        crop = (x, y, w, h)
    rotate = 0.0
    if params.get("rotate"):
        try:
            rotate = float(params["rotate"])
        except ValueError:
            raise BadRequest("rotate must be a number of degrees", parameter="rotate") from None
        if not -360 <= rotate <= 360:
            raise BadRequest("rotate must be between -360 and 360", parameter="rotate")
    kind = None
    if params.get("format"):
        kind = FORMATS.get(params["format"].strip().lower())
        if kind is None:
            raise BadRequest(f"format must be one of {', '.join(sorted(FORMATS))}", parameter="format")
    gray = (params.get("grayscale") or "").strip().lower()
    if gray not in ("", "true", "false", "1", "0"):
        raise BadRequest("grayscale must be true or false", parameter="grayscale")
    return Filters(
        crop,
        _int(params, "width", 1, MAX_SIDE),
        _int(params, "height", 1, MAX_SIDE),
        rotate,
        gray in ("true", "1"),
        kind,
        _int(params, "quality", 1, 95) or 85,
    )


def etag(source_id: str, filters: Filters) -> str:
    return '"img-' + hashlib.sha256(f"{source_id}|{filters!r}".encode()).hexdigest()[:32] + '"'


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=READABLE)
            if img.width * img.height > MAX_PIXELS:
                raise PayloadTooLarge(f"images over {MAX_PIXELS} pixels are not processed")
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PayloadTooLarge(f"images over {MAX_PIXELS} pixels are not processed") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise UnsupportedMediaType("the file is not an image that can be processed") from None
    return img


def _fit(img: Image.Image, f: Filters) -> tuple[int, int]:
    w, h = img.size
    if f.width and f.height:
        scale = min(f.width / w, f.height / h)
    elif f.width:
        scale = f.width / w
    else:
        assert f.height is not None
        scale = f.height / h
    return max(1, round(w * scale)), max(1, round(h * scale))


def _check_size(size: tuple[int, int]) -> None:
    if size[0] > MAX_SIDE or size[1] > MAX_SIDE or size[0] * size[1] > MAX_PIXELS:
        raise BadRequest(f"the result would be larger than {MAX_SIDE} pixels a side or {MAX_PIXELS} in all")


def process(data: bytes, f: Filters) -> tuple[bytes, str]:
    """The filtered image (bytes) and its media type. Blocking: run in a thread."""
    if len(data) > MAX_INPUT:
        raise PayloadTooLarge(f"images over {MAX_INPUT} bytes are not processed")
    img = _open(data)
    kind = f.format or (img.format if img.format in MEDIA else "PNG")
    img = ImageOps.exif_transpose(img) or img
    if f.crop:
        x, y, w, h = f.crop
        if x + w > img.width or y + h > img.height:
            raise BadRequest("crop box lies outside the image", parameter="crop")
        img = img.crop((x, y, x + w, y + h))
    if f.width or f.height:
        size = _fit(img, f)
        _check_size(size)
        img = img.resize(size, Image.Resampling.LANCZOS)
    if f.rotate % 360:
        img = img.rotate(f.rotate, expand=True)
        _check_size(img.size)
    if f.grayscale:
        img = ImageOps.grayscale(img)
    if kind == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    out = io.BytesIO()
    options = {"quality": f.quality} if kind in ("JPEG", "WEBP") else {}
    img.save(out, kind, **options)
    return out.getvalue(), MEDIA[kind]
