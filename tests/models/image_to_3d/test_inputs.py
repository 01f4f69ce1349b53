"""Image inputs of every PIL mode and bit depth read into [0, 1] as their depth says (16-bit grey keeps its
levels), and non-finite or out-of-range pixels refused naming ``input``, ``mask`` or ``reference``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from accel3d.models.image_to_3d.inputs import load_image_inputs, load_image_to_3d_inputs
from accel3d.models.sds.reference import load_reference

SIDE = 16


def _white_mask(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(np.full((SIDE, SIDE), 255, dtype=np.uint8)).save(path)
    return path


def _loaded(path, mask=None) -> np.ndarray:
    """The image as the pipeline takes it, (H, W, 3): with a full mask and no margin the crop is the whole image."""
    inputs = load_image_inputs(path, mask, image_size=SIDE, margin=0.0)
    assert inputs.box == (0, 0, SIDE, SIDE)
    return inputs.image.permute(1, 2, 0).numpy()


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=-1)


# ---------------------------------------------------------------- every mode


def test_16_bit_grey_png_keeps_its_levels(tmp_path):
    raw = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 257).astype(np.uint16)  # 256 levels over the whole range
    path = tmp_path / "grey16.png"
    Image.fromarray(raw).save(path)
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I")
    image = _loaded(path, _white_mask(tmp_path))
    np.testing.assert_allclose(image, _grey(raw / 65535.0), atol=1e-6)
    assert len(np.unique(image)) == SIDE * SIDE


def test_16_bit_grey_of_fine_levels_keeps_them_in_the_crop(tmp_path):
    # the tester's case: dark 16-bit levels, all below 8-bit 1, must not collapse to a handful of greys
    raw = (1000 + np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 40).astype(np.uint16)
    path = tmp_path / "dark16.png"
    Image.fromarray(raw).save(path)
    image = load_image_to_3d_inputs(path, image_size=8, mask=_white_mask(tmp_path), margin=0.0).image
    assert len(torch.unique(image)) > 40  # read through 8 bits, every one of these levels was clipped to white
    assert 1000 / 65535 - 1e-6 < float(image.min()) and float(image.max()) < 11200 / 65535 + 1e-6


def test_16_bit_big_endian_tiff(tmp_path):
    raw = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 251).astype(np.uint16)
    path = tmp_path / "grey16b.tif"
    Image.frombytes("I;16B", (SIDE, SIDE), raw.astype(">u2").tobytes()).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16B"
    np.testing.assert_allclose(_loaded(path, _white_mask(tmp_path)), _grey(raw / 65535.0), atol=1e-6)


def test_32_bit_signed_integer_tiff_is_scaled_by_its_type_range(tmp_path):
    raw = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 8_000_000).astype(np.int32)
    path = tmp_path / "grey32.tif"
    Image.fromarray(raw).save(path)
    with Image.open(path) as img:
        assert img.mode == "I"
    np.testing.assert_allclose(_loaded(path, _white_mask(tmp_path)), _grey(raw / (2**31 - 1)), atol=1e-6)


def test_float_tiff_in_0_1_is_taken_as_it_is(tmp_path):
    raw = np.linspace(0.0, 1.0, SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE)
    path = tmp_path / "float.tif"
    Image.fromarray(raw).save(path)
    with Image.open(path) as img:
        assert img.mode == "F"
    np.testing.assert_allclose(_loaded(path, _white_mask(tmp_path)), _grey(raw.astype(np.float64)), atol=1e-6)


def test_eight_bit_modes(tmp_path):
    g = np.random.default_rng(0)
    rgb = g.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    grey = g.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    alpha = g.integers(128, 256, (SIDE, SIDE), dtype=np.uint8)  # all > 1/2: the alpha mask is the whole image
    a = alpha[..., None] / 255.0
    bits = (np.indices((SIDE, SIDE)).sum(0) % 2).astype(bool)
    palette = g.integers(0, 256, (16, 3), dtype=np.uint8)
    index = g.integers(0, 16, (SIDE, SIDE), dtype=np.uint8)
    indexed = Image.fromarray(index, "L").convert("P")
    indexed.putpalette(palette.flatten().tolist())
    cases = {
        "1": (Image.fromarray(bits), _grey(bits.astype(np.float64))),
        "L": (Image.fromarray(grey), _grey(grey / 255.0)),
        "LA": (Image.fromarray(np.dstack([grey, alpha]), "LA"), _grey(grey / 255.0) * a + 1 - a),
        "P": (indexed, palette[index] / 255.0),
        "RGB": (Image.fromarray(rgb), rgb / 255.0),
        "RGBA": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), rgb / 255.0 * a + 1 - a),
    }
    for mode, (img, expected) in cases.items():
        assert img.mode == mode
        path = tmp_path / f"mode_{mode}.png"
        img.save(path)
        mask = None if "A" in mode else _white_mask(tmp_path)
        np.testing.assert_allclose(_loaded(path, mask), expected, atol=1e-6, err_msg=f"mode {mode}")


# ---------------------------------------------------------------- alpha and masks of these modes


def test_a_16_bit_grey_mask_is_read_at_its_depth(tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(image)
    raw = np.full((SIDE, SIDE), 300, dtype=np.uint16)  # dark background: 300 / 65535, not white
    raw[4:12, 4:12] = 50000
    Image.fromarray(raw).save(tmp_path / "mask16.png")
    assert load_image_inputs(image, tmp_path / "mask16.png", image_size=8, margin=0.0).box == (4, 4, 12, 12)


def test_a_float_mask_is_read_as_it_is(tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(image)
    raw = np.full((SIDE, SIDE), 0.1, dtype=np.float32)
    raw[3:11, 5:13] = 0.9
    Image.fromarray(raw).save(tmp_path / "mask.tif")
    assert load_image_inputs(image, tmp_path / "mask.tif", image_size=8, margin=0.0).box == (5, 3, 13, 11)


def test_a_png_transparent_grey_value_is_alpha(tmp_path):
    for raw, name in [
        (np.random.default_rng(2).integers(1, 256, (SIDE, SIDE)).astype(np.uint8), "grey8.png"),
        (np.random.default_rng(2).integers(1, 65536, (SIDE, SIDE)).astype(np.uint16), "grey16.png"),
    ]:
        raw[:, :3] = raw[:2, :] = raw[-2:, :] = raw[:, -3:] = 0  # a border of the transparent value
        Image.fromarray(raw).save(tmp_path / name, transparency=0)
        inputs = load_image_to_3d_inputs(tmp_path / name, image_size=8, margin=0.0)  # no mask file: the alpha is the mask
        assert inputs.box == (2, 2, 14, 14), name  # the square around columns 3-12, rows 2-13


# ---------------------------------------------------------------- refused


def test_a_nan_float_tiff_is_refused_naming_input(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((SIDE, SIDE), np.nan, dtype=np.float32)).save(path)
    with pytest.raises(ValueError, match=rf"^input: '.*nan\.tif' has {SIDE * SIDE} NaN or infinite pixel values"):
        load_image_to_3d_inputs(path, image_size=8, mask=_white_mask(tmp_path))


def test_an_infinite_pixel_is_refused_too(tmp_path):
    raw = np.linspace(0.0, 1.0, SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE)
    raw[3, 4] = np.inf
    Image.fromarray(raw).save(tmp_path / "inf.tif")
    with pytest.raises(ValueError, match=r"^input: '.*inf\.tif' has 1 NaN or infinite pixel values"):
        load_image_to_3d_inputs(tmp_path / "inf.tif", image_size=8, mask=_white_mask(tmp_path))


def test_a_nan_mask_is_refused_naming_mask(tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(image)
    raw = np.ones((SIDE, SIDE), dtype=np.float32)
    raw[5:9, 5:9] = np.nan
    Image.fromarray(raw).save(tmp_path / "mask.tif")
    with pytest.raises(ValueError, match=r"^mask: '.*mask\.tif' has 16 NaN or infinite pixel values"):
        load_image_to_3d_inputs(image, image_size=8, mask=tmp_path / "mask.tif")


def test_a_float_image_outside_0_1_is_refused_not_rescaled(tmp_path):
    raw = np.linspace(0.0, 255.0, SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE)
    Image.fromarray(raw).save(tmp_path / "float255.tif")
    with pytest.raises(
        ValueError, match=r"^input: '.*float255\.tif' is a float image with values in \[0, 255\]; expected values in \[0, 1\]"
    ):
        load_image_to_3d_inputs(tmp_path / "float255.tif", image_size=8, mask=_white_mask(tmp_path))


def test_a_negative_integer_image_is_refused(tmp_path):
    raw = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) - 10).astype(np.int32)
    Image.fromarray(raw).save(tmp_path / "negative.tif")
    Image.fromarray(np.zeros((SIDE, SIDE, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"^mask: '.*negative\.tif' is a signed 32-bit grey image with values in \[-10, 245\]"):
        load_image_to_3d_inputs(tmp_path / "rgb.png", image_size=8, mask=tmp_path / "negative.tif")


# ---------------------------------------------------------------- the SDS reference view


def test_the_sds_reference_reads_a_16_bit_png_at_its_depth(tmp_path):
    raw = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 257).astype(np.uint16)
    Image.fromarray(raw).save(tmp_path / "ref16.png")
    ref = load_reference(str(tmp_path / "ref16.png"), pose=(0.0, 15.0, 1.6), fovy=50.0, size=SIDE, channels=3)
    expected = torch.as_tensor(2.0 * raw / 65535.0 - 1.0, dtype=torch.float32)
    assert ref.image.shape == (1, 3, SIDE, SIDE)
    torch.testing.assert_close(ref.image[0], expected.expand(3, SIDE, SIDE), atol=1e-6, rtol=0)
