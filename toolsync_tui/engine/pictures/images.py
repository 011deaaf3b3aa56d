"""Make Moodle's three user picture icons (f1 100px, f2 35px, f3 512px) from an uploaded image.

The image is untrusted: its format is read from its content, its dimensions are checked before
any pixel is decoded, and nothing but pixels reaches the output (no EXIF, ICC profile or comment).
The geometry follows Moodle's process_new_icon() in lib/gdlib.php so that pictures look the same
as if a user had uploaded them in Moodle.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
"""48-megapixel phone photos pass; decoding one takes ~150 MB (RGB) to ~200 MB (RGBA), twice when rotated."""

ICON_SIZES = (("f1", 100), ("f2", 35), ("f3", 512))
_ACCEPTED = ("JPEG", "PNG", "GIF", "WEBP")
_NOT_ACCEPTED = "not a JPEG, PNG, GIF or WebP image"


@dataclass(frozen=True)
class Icons:
    """The icons to store: files are (("f1.jpg", bytes), ("f2.jpg", bytes), ("f3.jpg", bytes)) in that order."""

    extension: str
    mimetype: str
    files: tuple[tuple[str, bytes], ...]

    @property
    def f1_sha1(self) -> str:
        """The content hash of f1: what the user's current picture is compared with."""
        return hashlib.sha1(self.files[0][1]).hexdigest()


@dataclass(frozen=True)
class ImageProblem:
    """Why the image cannot become a user picture, in plain words."""

    problem: str


def centre_square(width: int, height: int) -> tuple[int, int, int, int]:
    """The crop box of process_new_icon(): a square of the smaller side (rounded down to even) around the centre."""
    cx, cy = width // 2, height // 2
    half = min(width, height) // 2
    # Moodle's box is empty for a 1-pixel-wide image; take that single pixel instead.
    side = max(2 * half, 1)
    return (cx - half, cy - half, cx - half + side, cy - half + side)


def _open(data: bytes, max_pixels: int) -> tuple[Image.Image, bool] | ImageProblem:
    """The decoded, upright image and whether it is a JPEG; other formats and huge sizes refused before decoding."""
    try:
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both mean "too large" here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # formats= keeps the other decoders (and their attack surface) out of the way.
            im = Image.open(io.BytesIO(data), formats=_ACCEPTED)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return ImageProblem("the image is too large (too many pixels)")
    except UnidentifiedImageError:
        return ImageProblem(_NOT_ACCEPTED)
    except Exception as error:  # a hostile header can make a plugin fail in many ways
        return ImageProblem(f"the image cannot be read ({error})")
    width, height = im.size
    if width * height > max_pixels:
        return ImageProblem(f"the image is too large: {width} x {height} pixels, more than {max_pixels:,}")
    # MPO is the JPEG variant of phone cameras that store several pictures; Pillow opens it through "JPEG".
    is_jpeg = im.format in ("JPEG", "MPO")
    try:
        # LOAD_TRUNCATED_IMAGES stays False, so a truncated file raises here instead of half-decoding.
        im.load()
        upright = ImageOps.exif_transpose(im)
    except Exception as error:  # decoders raise OSError, SyntaxError, ValueError... for damaged data
        return ImageProblem(f"the image is damaged or truncated ({error})")
    return upright, is_jpeg


def _encode(icon: Image.Image, as_jpeg: bool) -> bytes:
    # Drop everything Pillow carries along in info (ICC profile, EXIF, comment, XMP, dpi) so only pixels are saved.
    icon.info = {}
    buffer = io.BytesIO()
    if as_jpeg:
        icon.save(buffer, "JPEG", quality=90)
    else:
        # Moodle calls imagepng($im, $file, 1): fast compression.
        icon.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def make_icons(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Icons | ImageProblem:
    """The three icons of the picture in data, or why it cannot be used.

    A JPEG gives JPEG icons (quality 90, RGB); a PNG, GIF or WebP gives PNG icons with an alpha channel.
    Animated GIF and WebP give their first frame. The same input always gives the same bytes.
    """
    opened = _open(data, max_pixels)
    if isinstance(opened, ImageProblem):
        return opened
    upright, as_jpeg = opened
    # Brings CMYK, 16-bit and palette images (GIF transparency becoming alpha) to the two modes of the output.
    image = upright.convert("RGB" if as_jpeg else "RGBA")
    box = centre_square(*image.size)
    extension = "jpg" if as_jpeg else "png"
    files = tuple(
        (f"{name}.{extension}", _encode(image.resize((size, size), Image.Resampling.BICUBIC, box=box), as_jpeg))
        for name, size in ICON_SIZES
    )
    return Icons(
        extension=extension,
        mimetype="image/jpeg" if as_jpeg else "image/png",
        files=files,
    )
