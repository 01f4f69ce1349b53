"""Argument checks that name the argument and say what was expected.

Every knob of an accelerator, pipeline, decoder or job goes through one of these
before any work starts, so a typo or a non-finite value fails at once with a
message such as ``band: expected a finite number >= 0, got nan`` instead of a
wrong result minutes later. Counts are ints, ratios are floats: the type says
which, and a bool, a string or NaN is never read as a number. A numpy scalar, a
0-d numpy array or a 0-d torch tensor is read as the number it holds (a tensor
of several values, or of bools, is not a number).

Example::

    from accel3d.core.validate import check_float, check_int

    band = check_float("band", band, low=0.0)
    repeats = check_int("repeats", repeats, low=1)
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a tensor is checked: configs import this module without torch
    import torch


class ArgumentError(ValueError, TypeError):
    """A knob with a wrong type or value; a ``ValueError`` and a ``TypeError``, so either ``except`` catches it."""


def _bounds_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    fmt = lambda v: str(v) if isinstance(v, int) else f"{v:g}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {fmt(low)}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {fmt(high)}")
    return " and ".join(parts)


def _in_bounds(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def _number_of(value: Any) -> Any:
    """A 0-d torch tensor or numpy array as the Python number it holds (``.item()``); anything else as it is.

    A bool one stays as it is (and is refused as a bool is), and so does one of several values. torch and
    numpy are not imported here: a value can only be one of theirs if its module is already loaded."""
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        scalar = value.ndim == 0 and value.dtype != torch.bool and not value.is_meta
    elif np is not None and isinstance(value, np.ndarray):
        scalar = value.ndim == 0 and value.dtype != np.bool_
    else:
        return value
    return value.item() if scalar else value


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
    allow_inf: bool = False,
) -> float | None:
    """``value`` as a finite float within the bounds, or a ``ValueError``/``TypeError`` naming ``name``.

    Any real number is taken (an int, a numpy scalar, a 0-d float or integer tensor); a bool never is."""
    if value is None and allow_none:
        return None
    what = "a finite number" if not allow_inf else "a number (inf allowed)"
    bounds = _bounds_text(low, high, low_open, high_open)
    expected = f"{what}{' ' + bounds if bounds else ''}{' or None' if allow_none else ''}"
    number = _number_of(value)
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise ArgumentError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")
    try:
        value = float(number)
    except OverflowError:  # an int too large for a float (a 400-digit literal)
        raise ArgumentError(f"{name}: expected {expected}, got an integer too large for a float") from None
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ArgumentError(f"{name}: expected {expected}, got {value}")
    if not _in_bounds(value, low, high, low_open, high_open):
        raise ArgumentError(f"{name}: expected {expected}, got {value:g}")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int within the bounds (a float, even 2.0, is refused: a count is an int).

    A numpy integer and a 0-d integer tensor are ints; a bool, a float tensor and a tensor of several values are not."""
    if value is None and allow_none:
        return None
    bounds = _bounds_text(low, high, False, False)
    expected = f"an integer{' ' + bounds if bounds else ''}{' or None' if allow_none else ''}"
    number = _number_of(value)
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):
        raise ArgumentError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")
    if not _in_bounds(int(number), low, high, False, False):
        raise ArgumentError(f"{name}: expected {expected}, got {number}")
    return int(number)


MAX_SEED = 2**63 - 1


def check_seed(name: str, value: Any) -> int:
    """A random seed: an int in [0, 2**63) (what torch and numpy generators accept)."""
    return check_int(name, value, low=0, high=MAX_SEED)


def check_bool(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """``value`` as a bool; the string ``'false'`` is refused, never read as True."""
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        extra = " (write it unquoted: true/false)" if isinstance(value, str) else ""
        raise ArgumentError(f"{name}: expected true or false{' or None' if allow_none else ''}, got {value!r}{extra}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if isinstance(value, bool) or value not in choices:
        raise ArgumentError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def check_str(name: str, value: Any, *, allow_none: bool = False, allow_empty: bool = False) -> str | None:
    """``value`` as a string (a path or a name); empty strings are refused unless allowed."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or (not value and not allow_empty):
        expected = "a non-empty string" + (" or None" if allow_none else "")
        raise ArgumentError(f"{name}: expected {expected}, got {value!r}")
    return value


def check_pair(name: str, value: Any, *, low: float | None = None, high: float | None = None, ordered: bool = True) -> tuple[float, float]:
    """A ``[low, high]`` pair of finite numbers within the bounds, ``low <= high`` when ``ordered``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ArgumentError(f"{name}: expected a [low, high] pair of numbers, got {value!r}")
    a = check_float(f"{name}[0]", value[0], low=low, high=high)
    b = check_float(f"{name}[1]", value[1], low=low, high=high)
    if ordered and a > b:
        raise ArgumentError(f"{name}: expected low <= high, got {list(value)}")
    return a, b


def check_floats(name: str, value: Any, count: int, what: str, **bounds: Any) -> tuple[float, ...]:
    """``value`` as ``count`` checked floats (``what`` says what they are), each named ``name[i]`` in an error."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != count:
        raise ArgumentError(f"{name}: expected {what}, got {value!r}")
    return tuple(check_float(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value))  # type: ignore[misc]


def check_names(name: str, value: Any) -> tuple[str, ...]:
    """A list of non-empty names (one string is a list of one)."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise ArgumentError(f"{name}: expected a list of names, got {value!r}")
    return tuple(value)


def count_nonfinite(tensor: torch.Tensor) -> int:
    """How many values of ``tensor`` are NaN or inf (0 for an integer tensor): one ``isfinite(...).all()``, and the
    count only when it fails, so that a per-step check of a healthy run costs one reduction."""
    import torch

    if not (tensor.is_floating_point() or tensor.is_complex()) or bool(torch.isfinite(tensor).all()):
        return 0
    return int((~torch.isfinite(tensor)).sum())


def check_finite_tensor(name: str, tensor: torch.Tensor, where: str = "") -> torch.Tensor:
    """Raise ``FloatingPointError`` naming ``name`` (and ``where``) if ``tensor`` holds NaN or inf."""
    if bad := count_nonfinite(tensor):
        at = f" {where}" if where else ""
        raise FloatingPointError(f"{name}: {bad} of {tensor.numel()} values are NaN or inf{at}")
    return tensor
