"""File output that is written whole or not at all, into folders checked before the work."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".part"  # atomic_write's temporary files: hidden, ``.NAME.XXXX.part``, beside their target


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    The temporary file is hidden (``.NAME.XXXX.part``) and is removed whatever ends the write: an error,
    Ctrl-C, or SIGTERM once ``accel3d`` turns it into an interruption.

    Example::

        with atomic_write("out/mesh.glb") as tmp:
            mesh.export(tmp, file_type="glb")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path: Path | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def remove_partial_files(folder: str | Path, since: float | None = None) -> list[Path]:
    """Remove the hidden ``.*.part`` files of unfinished atomic writes under ``folder``; return those removed.

    An atomic write removes its own temporary file whatever ends it; this is for a signal that came between
    the file's creation and the write's cleanup. ``since`` (a ``time.time()`` value) limits it to files modified
    from then on, e.g. by the job that owns the folder.
    """
    removed = []
    folder = Path(folder)
    for path in sorted(folder.rglob(f".*{PARTIAL_SUFFIX}")) if folder.is_dir() else []:
        try:
            if path.is_file() and (since is None or path.stat().st_mtime >= since):
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # removed meanwhile
            pass
    return removed


def check_output_folder(folder: str | Path, knob: str) -> Path:
    """Refuse, before any work, a folder that files cannot be written into; ``knob`` is what chose it.

    A folder that does not exist yet is judged by the nearest one above it that does (it will be created
    there). Raises ``NotADirectoryError`` when a file stands where a folder is needed and ``PermissionError``
    when the folder is not writable (``os.access``: permissions, a read-only filesystem), each one line
    naming ``knob`` and the folder, e.g. ``--out: cannot write to 'a/b': the folder 'a' is not writable``.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{knob}: cannot write to {_shown(folder)}: '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == folder else f"{_shown(existing)}, where it would be created,"
        raise PermissionError(f"{knob}: cannot write to {_shown(folder)}: {where} is not writable")
    return folder


def _shown(folder: Path) -> str:
    return f"the working directory '{Path.cwd()}'" if str(folder) in ("", ".") else f"'{folder}'"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, strict JSON, atomically.

    NaN and inf become ``null`` wherever they are: Python floats, numpy scalars and
    arrays, torch tensors. Paths become strings.
    """
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")
    return Path(path)


def _plain(obj: Any) -> Any:
    """``obj`` with containers, numpy and torch values turned into JSON-ready Python values."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(_plain(k)): _plain(v) for k, v in obj.items()}  # JSON keys are strings
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return _plain(obj.tolist())
    if hasattr(obj, "item"):
        return _plain(obj.item())
    raise TypeError(f"write_json: cannot serialise {type(obj).__name__} to JSON")


def expand_path(path: str | os.PathLike[str], name: str) -> Path:
    """``path`` with a leading ``~`` and ``$VAR`` / ``${VAR}`` expanded, as a shell would expand them.

    Config values and Python arguments get the same expansion as the command line,
    so ``weights: ~/models/vae`` in a YAML file, ``'pipeline.weights=$HOME/models/vae'``
    and ``load_vae("~/models/vae")`` all name one folder. A variable that is not set is
    an error naming the knob, not a path with a literal ``$`` in it.

    Example::

        expand_path("~/models/x.pt", "weights")        # PosixPath('/home/me/models/x.pt')
        expand_path("$DATA/bunny.ply", "input")         # PosixPath('/data/bunny.ply') when DATA=/data
    """
    text = os.fspath(path)
    expanded = os.path.expandvars(os.path.expanduser(text))
    unset = re.search(r"\$(\w+|\{[^}]*\})", expanded)
    if unset:
        var = unset.group(1).strip("{}")
        raise ValueError(f"{name}: environment variable {var} is not set (in '{text}')")
    return Path(expanded)


def path_origin(original: str | os.PathLike[str]) -> str:
    """`` (from '~/x')`` when :func:`expand_path` changes ``original``, else an empty string: a suffix for
    error messages that name the expanded path."""
    text = os.fspath(original)
    return f" (from '{text}')" if os.path.expandvars(os.path.expanduser(text)) != text else ""


def load_torch_file(path: str | Path, name: str) -> Any:
    """``torch.load`` with ``weights_only=True``, or a ``ValueError`` naming the argument ``name``.

    A file that is not a tensor file (a text file named ``.pt``, a truncated download,
    a pickle with arbitrary objects) is refused; accel3d never unpickles code, so it
    does not pass on torch's advice to retry with ``weights_only=False``.

    Example::

        latents = load_torch_file("latents.pt", "input")
    """
    import torch

    original, path = path, expand_path(path, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no file at '{path}'{path_origin(original)}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        kind = type(exc).__name__
        raise ValueError(
            f"{name}: '{path}' is not a readable PyTorch tensor file ({kind}); expected a file written by torch.save "
            "holding tensors (and plain dicts/lists of them)"
        ) from None
