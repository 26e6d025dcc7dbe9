"""decode_image / to_rgb_array / fit_within on images generated here with Pillow."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, features

from mrcnn.inputs.uploads import (
    SUPPORTED_EXTENSIONS,
    CorruptImageError,
    EmptyImageError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageError,
    decode_image,
    fit_within,
)
from mrcnn.pixels import to_rgb_array

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise_image(h=120, w=160, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def close(pixel, colour, tol=12):
    return np.abs(np.asarray(pixel, int) - np.asarray(colour, int)).max() <= tol


# ------------------------------------------------------------ formats / modes

def test_png_rgb_exact():
    arr = np.asarray(noise_image())
    out = decode_image(encode(Image.fromarray(arr), "PNG"))
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_jpeg_exif_orientation_6_rotates_clockwise():
    # 40 wide x 20 high, red block in the stored top-left corner.
    im = Image.new("RGB", (40, 20), BLUE)
    im.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(im, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (40, 20)  # stored unrotated
    out = decode_image(data)
    assert out.shape == (40, 20, 3)  # now 20 wide x 40 high
    # After a clockwise quarter turn the top-left goes to the top-right.
    assert close(out[2, 17], RED)
    assert close(out[2, 2], BLUE)
    assert close(out[37, 2], BLUE)


def test_png_rgba_composited_over_white():
    arr = np.zeros((4, 6, 4), np.uint8)
    arr[..., :3] = (200, 100, 0)
    arr[0, :, 3] = 255   # opaque row
    arr[1, :, 3] = 0     # transparent row -> white
    arr[2, :, 3] = 128   # half
    out = decode_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert out.shape == (4, 6, 3)
    assert tuple(out[0, 0]) == (200, 100, 0)
    assert tuple(out[1, 0]) == (255, 255, 255)
    a = 128 / 255
    expected = np.rint(np.array([200, 100, 0]) * a + 255 * (1 - a))
    np.testing.assert_array_equal(out[2, 0], expected)


def test_palette_png_without_and_with_transparency():
    im = Image.new("P", (8, 4), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    im.paste(1, (4, 0, 8, 4))
    out = decode_image(encode(im, "PNG"))
    assert tuple(out[0, 0]) == RED and tuple(out[0, 7]) == GREEN

    data = encode(im, "PNG", transparency=1)
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode_image(data)
    assert tuple(out[0, 0]) == RED
    assert tuple(out[0, 7]) == (255, 255, 255)  # transparent index -> white


def test_grayscale_and_la_and_bilevel():
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    out = decode_image(encode(Image.fromarray(gray, "L"), "PNG"))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)

    la = Image.fromarray(np.stack([gray, np.zeros_like(gray)], -1), "LA")
    np.testing.assert_array_equal(decode_image(encode(la, "PNG")), 255)

    bits = Image.new("1", (5, 3), 0)
    bits.putpixel((4, 2), 1)
    out = decode_image(encode(bits, "PNG"))
    assert tuple(out[2, 4]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 0)


def test_16bit_png_scaled_by_257():
    values = (np.arange(32 * 64).reshape(32, 64) * 31).astype(np.uint16)
    values[0, 0], values[0, 1] = 65535, 257
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    out = decode_image(data)
    assert out.dtype == np.uint8 and out.shape == (32, 64, 3)
    np.testing.assert_array_equal(out[..., 0], np.rint(values / 257.0))
    assert out[0, 0, 0] == 255 and out[0, 1, 1] == 1


def test_mode_i_and_f_tiff():
    ints = Image.fromarray((np.arange(12).reshape(3, 4) * 5000).astype(np.int32), "I")
    out = decode_image(encode(ints, "TIFF"))
    np.testing.assert_array_equal(out[..., 0], np.rint(np.arange(12).reshape(3, 4) * 5000 / 257))

    floats = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    out = decode_image(encode(Image.fromarray(floats, "F"), "TIFF"))
    np.testing.assert_array_equal(out[..., 1], np.rint(floats.astype(np.float64) * 255))


def test_cmyk_jpeg():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.shape == (16, 16, 3) and close(out[8, 8], RED)


@pytest.mark.parametrize("fmt,kw", [("TIFF", {}), ("BMP", {}),
                                    ("WEBP", {"lossless": True}),
                                    ("TIFF", {"compression": "tiff_lzw"})])
def test_lossless_formats_roundtrip(fmt, kw):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    arr = np.asarray(noise_image(30, 50, seed=3))
    np.testing.assert_array_equal(decode_image(encode(Image.fromarray(arr), fmt, **kw)), arr)


def test_gif_first_frame():
    frames = [Image.new("RGB", (10, 6), RED), Image.new("RGB", (10, 6), BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    out = decode_image(buf.getvalue())
    assert out.shape == (6, 10, 3)
    assert tuple(out[3, 5]) == RED


def test_output_is_writeable_and_contiguous():
    out = decode_image(encode(noise_image(10, 12), "PNG"))
    assert out.flags.c_contiguous and out.flags.writeable


# ----------------------------------------------------------------- failures

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_is_corrupt(fmt, fraction):
    data = encode(noise_image(), fmt)
    with pytest.raises(CorruptImageError) as info:
        decode_image(data[: int(len(data) * fraction)])
    assert "damaged or incomplete" in str(info.value)
    assert "re-export or re-download" in str(info.value)


def test_header_only_png_is_corrupt():
    with pytest.raises(CorruptImageError):
        decode_image(b"\x89PNG\r\n\x1a\n")


def test_empty_bytes():
    with pytest.raises(EmptyImageError) as info:
        decode_image(b"")
    assert isinstance(info.value, ImageDecodeError)
    assert isinstance(info.value, ValueError)


def test_text_file_is_unsupported():
    with pytest.raises(UnsupportedImageError) as info:
        decode_image(b"name,score\nperson,0.98\n" * 20)
    assert "JPEG, PNG, WebP, BMP, TIFF or GIF" in str(info.value)


def test_other_image_format_is_unsupported():
    with pytest.raises(UnsupportedImageError):
        decode_image(encode(Image.new("RGB", (16, 16)), "ICO"))


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched to claim width x height."""
    data = bytearray(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def forbid_decoding(monkeypatch):
    from PIL import ImageFile

    def no_decoding(self, *a, **k):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)


def test_forbid_decoding_helper_works(monkeypatch):
    data = encode(Image.new("RGB", (4, 4)), "PNG")
    forbid_decoding(monkeypatch)
    with pytest.raises(CorruptImageError):  # load() ran and was refused
        decode_image(data)


def test_png_header_claiming_huge_size_rejected_without_decoding(monkeypatch):
    data = png_with_size(100_000, 100_000)
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data)
    msg = str(info.value)
    assert "10,000,000,000" in msg and "40,000,000" in msg
    assert info.value.pixels == 10_000_000_000


def test_too_large_below_pillows_own_limit(monkeypatch):
    data = png_with_size(8000, 8000)  # 64 M > 40 M, < Pillow's 89 M
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data)
    assert "8000 x 8000" in str(info.value) and "64,000,000" in str(info.value)
    assert info.value.pixels == 64_000_000 and info.value.limit == 40_000_000


def test_max_pixels_is_respected():
    data = encode(Image.new("RGB", (20, 10)), "PNG")
    assert decode_image(data, max_pixels=200).shape == (10, 20, 3)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data, max_pixels=199)
    assert "200" in str(info.value) and "199" in str(info.value)


def test_does_not_enable_truncated_loading_globally():
    from PIL import ImageFile
    data = encode(noise_image(), "JPEG")
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ------------------------------------------------------------- to_rgb_array

def test_to_rgb_array_variants():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for arr in (gray, gray[..., None]):
        out = to_rgb_array(arr)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[..., 2], gray)

    rgba = np.dstack([np.full((3, 4, 3), 7, np.uint8), np.zeros((3, 4), np.uint8)])
    np.testing.assert_array_equal(to_rgb_array(rgba), 7)  # alpha dropped

    u16 = np.full((2, 2, 3), 65535, np.uint16)
    u16[0, 0] = 514
    out = to_rgb_array(u16)
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 2

    unit = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(to_rgb_array(unit)[0, :, 0], [0, 128, 255])
    wide = np.array([[-3.0, 100.4, 300.0]])
    np.testing.assert_array_equal(to_rgb_array(wide)[0, :, 0], [0, 100, 255])

    np.testing.assert_array_equal(to_rgb_array(np.array([[True, False]]))[0, :, 0], [255, 0])

    with pytest.raises(ValueError):
        to_rgb_array(np.zeros((2, 2, 5), np.uint8))


def test_to_rgb_array_keeps_uint8_rgb_values():
    arr = np.asarray(noise_image(5, 7))
    np.testing.assert_array_equal(to_rgb_array(arr), arr)


# ---------------------------------------------------------------- fit_within

def test_fit_within():
    arr = np.zeros((300, 1200, 3), np.uint8)
    small, scale = fit_within(arr, 600)
    assert small.shape == (150, 600, 3) and scale == 0.5

    same, scale = fit_within(arr, 1200)
    assert same.shape == arr.shape and scale == 1.0

    im = Image.new("RGB", (100, 400))
    out, scale = fit_within(im, 100)
    assert isinstance(out, Image.Image) and out.size == (25, 100) and scale == 0.25
    out, scale = fit_within(im, 1000)  # never upscales
    assert out.size == (100, 400) and scale == 1.0


def test_supported_extensions():
    for ext in ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"):
        assert ext in SUPPORTED_EXTENSIONS


# ------------------------------------------------------- bounded decode memory

@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16", "CMYK"])
def test_large_images_convert_in_little_more_than_their_decoded_size(tmp_path, mode):
    """Decoding a 12-megapixel RGBA (palette with transparency, 16-bit, CMYK) image needs
    at most 2x its RGB size besides the RGB result itself; that includes Pillow's own
    decoded copy (1.33x for RGBA and CMYK). Measured in a fresh process (peak RSS)."""
    width, height = 4000, 3000
    ramp = (np.arange(width * height, dtype=np.uint32) % 251).reshape(height, width)
    if mode == "RGBA":
        im = Image.fromarray(np.dstack([ramp.astype(np.uint8)] * 3 + [(ramp * 7 % 256)
                                                                       .astype(np.uint8)]))
    elif mode == "P":
        im = Image.fromarray(ramp.astype(np.uint8), "L").convert("P")
    elif mode == "I;16":
        im = Image.fromarray((ramp * 250).astype(np.uint16))
    else:
        im = Image.fromarray(np.dstack([ramp.astype(np.uint8)] * 3)).convert("CMYK")
    path = tmp_path / ("image.tif" if mode == "CMYK" else "image.png")
    im.save(path, **({"transparency": 3} if mode == "P" else {}))
    assert Image.open(path).mode == mode
    del im, ramp
    from mrcnn.testing.memory import decode_extra_memory
    extra = decode_extra_memory(path)
    assert extra <= 2.0, f"{mode}: {extra:.2f}x the RGB size"


def test_running_out_of_memory_is_not_called_a_damaged_file(monkeypatch):
    import mrcnn.inputs.uploads as uploads

    def short_of_memory(image):
        raise MemoryError

    monkeypatch.setattr(uploads, "pil_to_rgb", short_of_memory)
    with pytest.raises(uploads.ImageMemoryError) as info:
        decode_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    assert "memory" in str(info.value) and "damaged" not in str(info.value)
    assert not isinstance(info.value, CorruptImageError)


def test_alpha_over_white_is_exact_for_every_colour_and_alpha():
    from mrcnn.pixels import pil_to_rgb
    colour, alpha = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = colour, 255 - colour, 7, alpha
    out = pil_to_rgb(Image.fromarray(rgba, "RGBA"))
    a = alpha / 255.0
    for channel in range(3):
        expected = np.rint(rgba[..., channel] * a + 255 * (1 - a))
        np.testing.assert_array_equal(out[..., channel], expected)


@pytest.mark.parametrize("mode,orientation", [("RGB", None), ("RGB", 6), ("L", 8), ("RGBA", 6),
                                              ("P", None)])
def test_decode_fitted_is_the_fitted_decode_and_names_the_upright_size(mode, orientation):
    """Scaling before converting (RGB and grayscale) gives the picture fit_within gives
    from the full decode, within rounding; other modes take the full-size path."""
    from mrcnn.inputs.uploads import decode_fitted, decode_image, fit_within
    im = noise_image(300, 500, seed=3).convert(mode)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    data = encode(im, "PNG", exif=exif.tobytes())
    fitted, original = decode_fitted(data, max_side=128)
    if mode in ("RGB", "L"):
        assert max(fitted.shape[:2]) == 128             # scaled before the conversion
    fitted = fit_within(fitted, 128)[0]                 # as the app does, for every mode
    reference = fit_within(decode_image(data), 128)[0]
    assert original == ((500, 300) if orientation in (6, 8) else (300, 500))
    assert fitted.shape == reference.shape and fitted.dtype == np.uint8
    assert np.abs(fitted.astype(int) - reference).max() <= 2
    assert decode_fitted(data)[0].shape == decode_image(data).shape      # no max_side
