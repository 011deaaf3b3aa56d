"""Making Moodle's icons from uploaded images: formats, hostile files, orientation, crop and metadata."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import ExifTags, Image, ImageFile

from tests.support.images import png_header_only
from toolsync_tui.engine.pictures.images import Icons, ImageProblem, centre_square, make_icons

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def icons_of(data: bytes) -> Icons:
    result = make_icons(data)
    assert isinstance(result, Icons), result
    return result


def decoded(icons: Icons) -> list[Image.Image]:
    return [Image.open(io.BytesIO(content)) for _, content in icons.files]


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return tuple(int(v) for v in value)


def close(value: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    """The RGB part of value is within tolerance of colour."""
    return all(abs(a - b) <= tolerance for a, b in zip(value[:3], colour, strict=True))


def test_jpeg_gives_jpeg_icons_of_moodle_sizes() -> None:
    data = encode(Image.new("RGB", (640, 480), RED), "JPEG")
    icons = icons_of(data)
    assert (icons.extension, icons.mimetype) == ("jpg", "image/jpeg")
    assert [name for name, _ in icons.files] == ["f1.jpg", "f2.jpg", "f3.jpg"]
    images = decoded(icons)
    assert [im.size for im in images] == [(100, 100), (35, 35), (512, 512)]
    assert all(im.format == "JPEG" and im.mode == "RGB" for im in images)
    assert icons.f1_sha1 == hashlib.sha1(icons.files[0][1]).hexdigest()


def test_small_images_are_upscaled() -> None:
    icons = icons_of(encode(Image.new("RGB", (20, 30), RED), "PNG"))
    assert [im.size for im in decoded(icons)] == [(100, 100), (35, 35), (512, 512)]


def test_cmyk_jpeg_gives_rgb() -> None:
    icons = icons_of(encode(Image.new("CMYK", (50, 50), (0, 255, 255, 0)), "JPEG"))
    assert decoded(icons)[0].mode == "RGB"


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_png_and_webp_give_png_icons_with_alpha_kept(fmt: str, params: dict[str, object]) -> None:
    image = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    image.paste((*BLUE, 255), (20, 20, 40, 40))
    icons = icons_of(encode(image, fmt, **params))
    assert (icons.extension, icons.mimetype) == ("png", "image/png")
    assert [name for name, _ in icons.files] == ["f1.png", "f2.png", "f3.png"]
    f3 = decoded(icons)[2]
    assert (f3.format, f3.mode) == ("PNG", "RGBA")
    assert pixel(f3, 5, 5)[3] == 0
    centre = pixel(f3, 256, 256)
    assert centre[3] == 255
    assert close(centre, BLUE)


def test_gif_transparency_becomes_alpha() -> None:
    image = Image.new("P", (60, 60), 0)
    image.putpalette([255, 255, 255, *RED] + [0] * (254 * 3))
    image.paste(1, (20, 20, 40, 40))
    icons = icons_of(encode(image, "GIF", transparency=0))
    f3 = decoded(icons)[2]
    assert (icons.extension, f3.mode) == ("png", "RGBA")
    assert pixel(f3, 5, 5)[3] == 0
    assert pixel(f3, 256, 256)[3] == 255
    assert close(pixel(f3, 256, 256), RED)


def test_format_is_read_from_content() -> None:
    # What would be named jdoe.jpg is a PNG: the output follows the content.
    assert icons_of(encode(Image.new("RGB", (10, 10), RED), "PNG")).extension == "png"


@pytest.mark.parametrize(
    "data",
    [
        b"hello, I am a text file",
        b"",
        encode(Image.new("RGB", (10, 10), RED), "BMP"),
        encode(Image.new("RGB", (10, 10), RED), "TIFF"),
    ],
)
def test_other_formats_are_refused(data: bytes) -> None:
    assert make_icons(data) == ImageProblem("not a JPEG, PNG, GIF or WebP image")


def test_truncated_jpeg_is_refused() -> None:
    noise = Image.frombytes("RGB", (200, 200), bytes(range(256)) * 468 + bytes(192))
    data = encode(noise, "JPEG")
    result = make_icons(data[: len(data) // 2])
    assert isinstance(result, ImageProblem)
    assert "truncated" in result.problem
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_is_refused() -> None:
    data = bytearray(encode(Image.new("RGB", (100, 100), RED), "PNG"))
    data[60:80] = bytes(20)
    result = make_icons(bytes(data))
    assert isinstance(result, ImageProblem)
    assert "damaged" in result.problem


def test_huge_dimensions_are_refused_before_decoding() -> None:
    # 8000 x 7000 = 56 million pixels: over our limit, under Pillow's own bomb check.
    result = make_icons(png_header_only(8000, 7000))
    assert isinstance(result, ImageProblem)
    assert "too large: 8000 x 7000" in result.problem
    assert isinstance(make_icons(png_header_only(100, 100), max_pixels=9_999), ImageProblem)


def test_decompression_bomb_is_refused() -> None:
    result = make_icons(png_header_only(100_000, 100_000))
    assert result == ImageProblem("the image is too large (too many pixels)")


def test_exif_orientation_is_applied() -> None:
    """A tall picture, top half red, stored sideways: orientation 6 turns it so red ends up on the right."""
    image = Image.new("RGB", (60, 100), BLUE)
    image.paste(RED, (0, 0, 60, 50))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    f3 = decoded(icons_of(encode(image, "JPEG", exif=exif)))[2]
    assert close(pixel(f3, 500, 256), RED)
    assert close(pixel(f3, 10, 256), BLUE)


def test_metadata_is_stripped() -> None:
    image = Image.new("RGB", (80, 80), RED)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    data = encode(image, "JPEG", exif=exif, icc_profile=b"fake-icc-profile", comment=b"secret")
    assert ExifTags.IFD.GPSInfo in Image.open(io.BytesIO(data)).getexif()
    for im, (_, content) in zip(decoded(icons_of(data)), icons_of(data).files, strict=True):
        assert len(im.getexif()) == 0
        assert "icc_profile" not in im.info
        assert "comment" not in im.info
        assert b"SpyCam" not in content
        assert b"secret" not in content
    png = encode(image, "PNG", exif=exif, icc_profile=b"fake-icc-profile")
    for im in decoded(icons_of(png)):
        assert len(im.getexif()) == 0
        assert "icc_profile" not in im.info


def test_centre_square_is_cropped() -> None:
    """Green and blue bands on the sides of a wide image are cut off; only the red centre remains."""
    image = Image.new("RGB", (400, 100), RED)
    image.paste(GREEN, (0, 0, 100, 100))
    image.paste(BLUE, (300, 0, 400, 100))
    for im in decoded(icons_of(encode(image, "PNG"))):
        rgb = im.convert("RGB")
        assert all(close(pixel(rgb, x, y), RED, 10) for x in range(im.width) for y in range(im.height))


def test_centre_square_follows_moodle() -> None:
    assert centre_square(400, 100) == (150, 0, 250, 100)
    assert centre_square(100, 400) == (0, 150, 100, 250)
    assert centre_square(7, 5) == (1, 0, 5, 4)  # cx=3, cy=2, half=2
    assert centre_square(1, 9) == (0, 4, 1, 5)


def test_same_input_gives_same_bytes() -> None:
    image = Image.frombytes("RGB", (120, 90), bytes(range(256)) * 126 + bytes(144))
    for data in (encode(image, "JPEG"), encode(image, "PNG")):
        assert make_icons(data) == make_icons(data)
