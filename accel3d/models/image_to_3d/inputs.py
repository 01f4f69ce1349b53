"""Inputs of the ``image_to_3d`` pipeline: an object crop and its mask, from an image or a rendered mesh.

Sources (``input``):

- ``None``: the bundled bunny (``accel3d/assets/bunny.ply``) rendered at
  :func:`~accel3d.geometry.render.default_pose`;
- a mesh file (PLY/OBJ/GLB/STL/OFF): normalised (:func:`~accel3d.geometry.meshes.normalize_mesh`)
  and rendered the same way;
- an image (PNG/JPEG/WebP/BMP/TIFF): its alpha channel is the mask, or ``mask`` names a
  mask image of the same size (its alpha where it has transparent pixels, else its
  grey level above one half). Transparent pixels are composited on white, the
  background of the rendered training views.

Pixels are read into [0, 1] floats by the mode PIL opens the file in (:func:`read_image`):

- 8-bit modes (``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBX``, ``CMYK``, ``YCbCr``, ...):
  converted to RGBA by PIL and divided by 255 (a PNG with 16 bits per colour channel is opened by PIL
  at 8 bits per channel: the same colours, less precision);
- 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): divided by 65535;
- 32-bit integer grey (``I``): divided by the largest value of the file's sample type: 65535 for a
  PNG (older PILs open 16-bit grey PNGs as ``I``), ``2**bits - 1`` (unsigned) or ``2**(bits - 1) - 1``
  (signed) for a TIFF by its BitsPerSample and SampleFormat tags, else ``2**31 - 1`` (the mode's own
  signed 32 bits); a negative value or one above that maximum is refused;
- float grey (``F``): taken as it is; values outside [0, 1] (beyond a rounding slack of 1e-6, which is
  clipped) are refused, never rescaled, since no white level can be guessed from the pixels.

Every image is refused if it holds NaN or infinite values. A grey image's grey is each of its three
channels; where a PNG names a transparent grey value (its tRNS chunk), the pixels of that value are
transparent (alpha 0) and the others opaque.

Either way the object is cropped to a square around the mask (``margin`` of its side
added on each side) and resized to the model's ``image_size``; the inputs keep the crop's
box and the full image's camera matrix (an image is taken to come from a pinhole camera
with ``fov_degrees`` across its width), from which a crop-relative layout translation
is mapped back into the camera frame.

Refused, each naming the argument: a missing or unreadable file (``input``, ``mask``);
non-finite or out-of-range pixel values, as above (``input``, ``mask``);
an image without alpha and no ``mask`` (``mask``); a mask of another size than the
image (``mask``); an empty mask (``mask``); an image with no object in the mask,
meaning that every masked pixel has the same colour (within 2/255 on each channel), so
there is no shading, edge or texture of an object to see (``image``); and a mask so thin
that nothing of it is left in the resized crop (``mask``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accel3d.core.io import expand_path, path_origin
from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh
from accel3d.geometry.render import DEFAULT_FOV_DEGREES, Camera, crop_to_mask, default_pose, render_crop

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
CONSTANT_COLOUR = 2.0 / 255.0  # masked pixels all within this of each other, per channel: no object to see


@dataclass
class ImageTo3DInputs:
    """One object crop: ``image`` float32 ``(3, S, S)`` in [0, 1], ``mask`` bool ``(S, S)``, and where it came from.

    Example::

        inputs = load_image_to_3d_inputs(None, image_size=64)   # the bundled bunny at the default pose
        inputs.image.shape, inputs.mask.shape                    # (3, 64, 64), (64, 64)
    """

    image: torch.Tensor
    mask: torch.Tensor
    source: str
    box: tuple[int, int, int, int] | None = None  # the square (x0, y0, x1, y1) of the full image the crop shows
    intrinsics: np.ndarray | None = None  # 3x3 camera matrix of the full image (pixel-edge coordinates)

    @property
    def crop_intrinsics(self) -> np.ndarray | None:
        """The 3x3 camera matrix of the crop itself (as :func:`accel3d.geometry.render.crop_intrinsics` gives it)."""
        if self.box is None or self.intrinsics is None:
            return None
        x0, y0, x1, _ = self.box
        k = self.image.shape[-1] / (x1 - x0)
        K = np.array(self.intrinsics, dtype=np.float64)
        K[0, 0], K[1, 1] = K[0, 0] * k, K[1, 1] * k
        K[0, 2], K[1, 2] = (K[0, 2] - x0) * k, (K[1, 2] - y0) * k
        return K


def _file(path: str | Path, name: str) -> Path:
    if not isinstance(path, str | Path) or not str(path).strip():
        raise ValueError(f"{name}: expected a file path, got {path!r}")
    expanded = expand_path(path, name)
    if expanded.is_dir():
        raise ValueError(f"{name}: '{expanded}' is a folder; expected a file")
    if not expanded.is_file():
        raise FileNotFoundError(f"{name}: no file at '{expanded}'{path_origin(path)}")
    return expanded


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
FLOAT_SLACK = 1e-6  # a float image may exceed [0, 1] by this much (rounding); it is clipped


def _int_top(img: Any) -> tuple[int, str]:
    """The largest value of a mode-``I`` image's sample type, and the type in words (see the module docstring)."""
    if img.format == "PNG":
        return 65535, "16-bit"
    tags = getattr(img, "tag_v2", None)
    if tags is not None:
        first = lambda v: v[0] if isinstance(v, tuple) and v else v
        bits, sample_format = first(tags.get(258, 32)), first(tags.get(339, 1))
        if isinstance(bits, int) and 1 <= bits <= 32:
            if sample_format == 2:  # TIFF SampleFormat 2: signed integers
                return 2 ** (bits - 1) - 1, f"signed {bits}-bit"
            return 2**bits - 1, f"unsigned {bits}-bit"
    return 2**31 - 1, "signed 32-bit"


def _grey_values(raw: np.ndarray, mode: str, top: int | None, kind: str, path: Path, name: str) -> np.ndarray:
    """A high-depth grey image (``I;16*``, ``I``, ``F``) as floats in [0, 1], or an error naming ``name``."""
    values = raw.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name}: '{path}' has {int(bad.sum())} NaN or infinite pixel values (of {values.size}); expected finite values")
    low, high = float(values.min()), float(values.max())
    if mode == "F":
        if low < -FLOAT_SLACK or high > 1.0 + FLOAT_SLACK:
            raise ValueError(
                f"{name}: '{path}' is a float image with values in [{low:g}, {high:g}]; expected values in [0, 1] "
                "(a float image is taken as it is, never rescaled: divide it by its white level first)"
            )
        return values.clip(0.0, 1.0)
    if low < 0 or high > top:
        raise ValueError(
            f"{name}: '{path}' is a {kind} grey image with values in [{low:g}, {high:g}]; expected values in [0, {top}] "
            f"(read as 0 = black, {top} = white)"
        )
    return values / top


def read_image(path: Path, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb (H, W, 3) float64 in [0, 1], alpha (H, W) in [0, 1] or None)`` of an image file of any PIL mode.

    How each mode is scaled, and what is refused (naming ``name``), is in the module docstring.

    Example::

        rgb, alpha = read_image(Path("scan.png"), "input")   # a 16-bit grey PNG keeps its 65536 levels
    """
    from PIL import Image, UnidentifiedImageError

    raw = rgba = None
    try:
        with Image.open(path) as img:
            img.load()
            mode, transparency = img.mode, img.info.get("transparency")
            if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
                raw = np.asarray(img)
                top, kind = (65535, "16-bit") if mode in SIXTEEN_BIT_MODES else _int_top(img) if mode == "I" else (None, "float")
            else:
                has_alpha = any(band in ("A", "a") for band in img.getbands()) or transparency is not None
                rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"{name}: could not read '{path}' as an image ({type(exc).__name__}: {exc})") from None
    if rgba is not None:
        return rgba[..., :3], rgba[..., 3] if has_alpha else None
    grey = _grey_values(raw, mode, top, kind, path, name)
    alpha = None
    if isinstance(transparency, int) and not isinstance(transparency, bool) and mode != "F":  # a PNG's transparent grey
        alpha = (raw != transparency).astype(np.float64)
    return np.repeat(grey[..., None], 3, axis=-1), alpha


def _read_mask(path: Path) -> np.ndarray:
    """A mask image as bool (H, W): its alpha where any pixel is transparent, else its grey level > 1/2."""
    rgb, alpha = read_image(path, "mask")
    if alpha is not None and (alpha < 1.0).any():
        return alpha > 0.5
    return rgb @ np.array([0.299, 0.587, 0.114]) > 0.5


def check_object(image: torch.Tensor, mask: torch.Tensor, image_name: str, mask_name: str) -> None:
    """Refuse a mask of another size than the image, an empty mask, and a mask over one flat colour."""
    if tuple(mask.shape) != tuple(image.shape[1:]):
        (h, w), (mh, mw) = image.shape[1:], mask.shape
        raise ValueError(f"mask: {mask_name} is {mw}x{mh} pixels but the image {image_name} is {w}x{h}; expected the same size")
    count = int(mask.sum())
    if count == 0:
        raise ValueError(f"mask: {mask_name} is empty (no pixel is set); expected the object's pixels set")
    masked = image[:, mask]  # (3, count)
    spread = (masked.max(dim=1).values - masked.min(dim=1).values).max()
    if float(spread) < CONSTANT_COLOUR:
        colour = [round(float(c), 3) for c in masked[:, 0]]
        raise ValueError(
            f"image: {image_name} shows no object inside the mask: all {count} masked pixels have the same colour {colour}, "
            "so there is no shading, edge or texture to reconstruct; check that the mask belongs to this image"
        )


def image_intrinsics(width: int, height: int, fov_degrees: float = DEFAULT_FOV_DEGREES) -> np.ndarray:
    """The 3x3 camera matrix of a ``width`` x ``height`` image: square pixels, ``fov_degrees`` across its width, centred."""
    focal = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def load_image_inputs(
    image_path: str | Path, mask_path: str | Path | None, image_size: int, margin: float = 0.1, fov_degrees: float = DEFAULT_FOV_DEGREES
) -> ImageTo3DInputs:
    """An image and its mask (the image's alpha, or ``mask_path``) -> the model's object crop.

    The image is taken to come from a pinhole camera with ``fov_degrees`` across its width and
    the principal point at its centre (the training views' camera), for the layout's translation."""
    path = _file(image_path, "input")
    rgb, alpha = read_image(path, "input")
    if mask_path is not None:
        mpath = _file(mask_path, "mask")
        mask, mask_name = _read_mask(mpath), f"'{mpath}'"
    elif alpha is None:
        raise ValueError(f"mask: '{path}' has no alpha channel; pass mask=<a mask image of the same size> (object pixels white)")
    else:
        mask, mask_name = alpha > 0.5, f"the alpha channel of '{path}'"
    if alpha is not None:  # composite transparent pixels on the white background of the training views
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])
    image = torch.as_tensor(rgb.transpose(2, 0, 1).copy(), dtype=torch.float32)
    mask_t = torch.as_tensor(np.ascontiguousarray(mask))
    check_object(image, mask_t, f"'{path}'", mask_name)
    crop = crop_to_mask(image, mask_t, size=image_size, margin=margin, background=1.0)
    if not crop.mask.any():
        raise ValueError(f"mask: {mask_name} is too thin: nothing of it is left in the {image_size}x{image_size} crop")
    source = str(path) + (f" (mask {mpath})" if mask_path is not None else "")
    intrinsics = image_intrinsics(image.shape[2], image.shape[1], fov_degrees)
    return ImageTo3DInputs(crop.rgb, crop.mask, source, tuple(crop.box), intrinsics)


def render_mesh_inputs(
    mesh_path: str | Path | None,
    image_size: int,
    render_size: int = 128,
    margin: float = 0.1,
    fov_degrees: float = DEFAULT_FOV_DEGREES,
) -> ImageTo3DInputs:
    """A mesh (None: the bundled bunny), normalised and rendered at the default pose -> the object crop."""
    path = BUNDLED_MESH if mesh_path is None else _file(mesh_path, "input")
    mesh = normalize_mesh(load_mesh(path, name="input"))
    camera = Camera(size=render_size, fov_degrees=fov_degrees)
    crop = render_crop(mesh, default_pose(), camera, size=image_size, margin=margin)
    where = "the bundled bunny" if mesh_path is None else f"'{path}'"
    source = f"{where} rendered at the default pose ({render_size} px)"
    return ImageTo3DInputs(crop.rgb, crop.mask, source, tuple(crop.box), camera.intrinsics)


def load_image_to_3d_inputs(
    input: str | Path | None,
    image_size: int,
    mask: str | Path | None = None,
    render_size: int = 128,
    margin: float = 0.1,
    fov_degrees: float = DEFAULT_FOV_DEGREES,
) -> ImageTo3DInputs:
    """Dispatch on ``input``: None or a mesh file is rendered; an image file (by suffix) is read with its mask.

    Example::

        load_image_to_3d_inputs("chair.png", image_size=64)                   # RGBA: alpha is the mask
        load_image_to_3d_inputs("photo.jpg", image_size=64, mask="photo_mask.png")
        load_image_to_3d_inputs("cow.obj", image_size=64)                     # rendered at the default pose
    """
    if input is not None and Path(str(input)).suffix.lower() in IMAGE_SUFFIXES:
        return load_image_inputs(input, mask, image_size, margin, fov_degrees)
    if mask is not None:
        raise ValueError(f"mask: a mask goes with an image input ({', '.join(IMAGE_SUFFIXES)}); input is {input or 'the bundled bunny'}")
    return render_mesh_inputs(input, image_size, render_size, margin, fov_degrees)
