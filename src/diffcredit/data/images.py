"""Image files: what describing needs of them, and decoding to uint8 (C, H, W).

Images are decoded as viewers show them: an EXIF orientation (what phones and
cameras write instead of rotating the pixels) is applied. An image file whose
decoded pixels depend on more than its bytes' plain decoding (16-bit values
scaled to 8 bits, transparent pixels composited over `data.background`, an EXIF
rotation) has that rule in its item hash.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..keys import sha256_hex
from .contributors import DataError

# The raster formats Pillow reads that people keep training images in (an animation in
# any of them is refused when described).
IMAGE_SUFFIXES = {".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".bmp", ".dib", ".gif",
                  ".tif", ".tiff", ".jp2", ".j2k", ".jpx", ".jpf", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi",
                  ".pcx", ".sgi"}
# Formats people keep photos and art in that Pillow cannot decode: phones' HEIF, cameras'
# raw files, vector drawings, HDR and layered files. Refused by name, never skipped.
UNREADABLE_SUFFIXES = {".heic", ".heif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2",
                       ".orf", ".rw2", ".raf", ".pef", ".srw", ".raw", ".svg", ".svgz", ".eps", ".ai", ".pdf", ".exr",
                       ".hdr", ".psd", ".psb", ".kra", ".xcf"}

# Pillow modes decoded by Pillow's own conversion to L or RGB (through RGBA when
# transparent), and 16/32-bit integer grayscale, scaled to 8 bits as 16-bit values.
EIGHT_BIT_MODES = {"1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr"}
ALPHA_MODES = {"RGBA", "LA", "PA"}
WIDE_GRAY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
WHITE = (255, 255, 255)
# The version of `image_facts`' record: cached facts of another version are computed again.
FACTS_TAG = "image-3"
EXIF_ORIENTATION = 0x0112  # 1 = as stored; 2..8 = mirrored and/or rotated


def exif_turn(im) -> int | None:
    """The EXIF orientation of an open image when it mirrors or rotates (2..8), else None."""
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    return int(orientation) if orientation in range(2, 9) else None


def image_facts(path: Path) -> dict:
    """What describing needs of an image file: its bytes' hash, its mode and
    whether any pixel is transparent (decoded only for modes that can be)."""
    from PIL import Image

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            facts = {"hash": sha256_hex(data), "mode": im.mode, "size": list(im.size)}
            turn = exif_turn(im)
            if turn:
                facts["orientation"] = turn
            if getattr(im, "n_frames", 1) > 1:
                facts["frames"] = int(im.n_frames)
            if im.mode == "I":
                facts["range"] = [int(v) for v in im.getextrema()]
            if (im.mode in ALPHA_MODES or "transparency" in im.info) and not unsupported(facts):
                facts["transparent"] = bool((split_alpha(im)[1] < 255).any())
    except Exception as exc:  # PIL raises many types for bad files
        return {"error": f"{type(exc).__name__}: {exc}"}
    return facts


def unsupported(facts: dict) -> str | None:
    """Why an image of this mode (and value range) cannot be decoded, or None."""
    mode = facts["mode"]
    if facts.get("frames", 1) > 1:
        return (f"it holds {facts['frames']} frames (an animation or a multi-page file), not one image; "
                "save the frame to train on as a PNG")
    if mode == "F":
        return ("its pixels are 32-bit floats, which have no fixed 0..255 scale; "
                "save it as an 8- or 16-bit image")
    if mode == "I":
        lo, hi = facts["range"]
        if lo < 0 or hi > 65535:
            return (f"its 32-bit integer pixels range over {lo}..{hi}, outside the 16-bit range 0..65535 "
                    "they are read in; save it as an 8- or 16-bit image")
    elif mode not in EIGHT_BIT_MODES | WIDE_GRAY_MODES:
        return (f"image mode {mode} is not supported (supported: {', '.join(sorted(EIGHT_BIT_MODES))}, "
                "and 16-bit grayscale); save it as an RGB, RGBA, grayscale or palette image")
    return None


def file_item_hash(facts: dict, background: tuple) -> str:
    """The hash of the file's bytes, or of the bytes and the rule decoding them
    where the pixels depend on more than the bytes."""
    rules = []
    if facts["mode"] in WIDE_GRAY_MODES:
        rules.append("16-bit/257")
    if facts.get("transparent"):
        rules.append("over {},{},{}".format(*background))
    if facts.get("orientation"):
        rules.append(f"exif orientation {facts['orientation']}")
    return sha256_hex(f"{facts['hash']} {'; '.join(rules)}") if rules else facts["hash"]


def background_of(spec: dict) -> tuple[int, int, int]:
    """data.background as an RGB triple: a grey level 0..255 or [r, g, b]; white when unset."""
    value = spec.get("background")
    if value is None:
        return WHITE
    rgb = [value] * 3 if isinstance(value, int) else list(value)
    if len(rgb) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in rgb):
        raise DataError(f"data.background must be a grey level 0..255 or [r, g, b] with each in 0..255, not {value!r}")
    return tuple(rgb)


def split_alpha(im):
    """A PIL image as (colour image without alpha, alpha as uint8 (H, W) or None).

    16- and 32-bit grayscale (read as 16-bit values) is scaled to 8 bits (value / 257,
    rounded); a transparent colour or palette entry becomes alpha through RGBA.
    """
    from PIL import Image

    mode = im.mode
    if mode in WIDE_GRAY_MODES:
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(unsupported({"mode": mode, "range": [int(values.min()), int(values.max())]}))
        gray = Image.fromarray(np.rint(values / 257.0).astype(np.uint8))
        key = im.info.get("transparency")
        alpha = None if key is None else np.where(values == key, 0, 255).astype(np.uint8)
        return gray, alpha
    if mode not in EIGHT_BIT_MODES:
        raise DataError(unsupported({"mode": mode, "range": [0, 0]}))
    if mode in ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), np.asarray(rgba.getchannel("A"))
    return im, None


def flatten(im, channels: int, background: tuple = WHITE):
    """A PIL image in mode L (channels 1) or RGB, transparent pixels composited over
    `background` (an RGB triple)."""
    from PIL import Image

    colour, alpha = split_alpha(im)
    if alpha is not None:
        rgb = np.asarray(colour.convert("RGB"), dtype=np.float64)
        a = alpha[..., None].astype(np.float64)
        over = (rgb * a + np.asarray(background, dtype=np.float64) * (255 - a)) / 255
        colour = Image.fromarray(np.rint(over).astype(np.uint8))
    return colour.convert("L" if channels == 1 else "RGB")


def _array(im, resolution: int) -> np.ndarray:
    """An L or RGB PIL image resized (bicubic) as uint8 (C, H, W)."""
    from PIL import Image

    arr = np.asarray(im.resize((resolution, resolution), Image.Resampling.BICUBIC), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def resized(im, resolution: int, channels: int, background: tuple = WHITE) -> np.ndarray:
    """A PIL image as uint8 (C, H, W) of the data's shape (bicubic)."""
    return _array(flatten(im, channels, background), resolution)


def conform(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """uint8 (N, C, H, W) images resized (bicubic) and converted to the data's shape."""
    from PIL import Image

    if images.shape[1:] == (channels, resolution, resolution):
        return images
    return np.stack([resized(Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)),
                             resolution, channels) for img in images])


def load_image(path: str, resolution: int, channels: int, background: tuple = WHITE) -> np.ndarray:
    """An image file, turned by its EXIF orientation and centre-cropped to a square,
    as uint8 (C, H, W)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if exif_turn(im):
            im = ImageOps.exif_transpose(im)
        im = flatten(im, channels, background)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return _array(im.crop((left, top, left + side, top + side)), resolution)
