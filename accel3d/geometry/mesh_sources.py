"""The training and evaluation meshes of the image-to-3D reference pipeline: real meshes that ship inside packages, plus procedural shapes.

Every mesh is in its canonical frame (:func:`accel3d.geometry.meshes.normalize_mesh`: the
bounding box centred at the origin, its longest half-side 0.9) and has at most
``max_faces`` faces (default 5,000). Sources:

============  =====================================================================  ========================
source        meshes (faces after decimation to 5,000)                               needs
============  =====================================================================  ========================
bundled       ``bunny`` (5,000): ``accel3d/assets/bunny.ply``                          nothing
pymeshlab     ``cow`` (5,804 -> 5,000), ``airplane`` (10,796 -> 5,000), ``bone``       ``pip install -e ".[train]"``
              (3,022), from pymeshlab's ``tests/sample_meshes``
pyvista       ``ant`` (912), ``nut`` (1,046), ``pv_airplane`` (2,452, open), the PLY   ``pip install --no-deps pyvista``
              files in pyvista's wheel, read with trimesh (pyvista is never imported)  (opt-in, see below)
procedural    boxes, ellipsoids, capsules, cylinders, cones, tori, thin plates, rings,  nothing
              lathed vases, and unions of two or three of them (concatenated, so
              overlaps have winding number 2: still inside), each with random
              proportions, axis-aligned in its canonical frame (the pose rotates it)
============  =====================================================================  ========================

Left out on purpose: pymeshlab's ``bunny.obj`` and ``bunny10k_textured.obj`` (the same
Stanford bunny as the bundled one, which is its decimation), ``colored_airplane.ply``
(``airplane`` again), ``cube.obj`` (a procedural box) and the partial range scans.
pyvista's meshes are opt-in (``sources=(..., "pyvista")``): its wheel is 2.7 MB, but
``pip install pyvista`` also pulls VTK (a 140 MB wheel) and eight more packages for three
low-poly meshes, so it is not in the ``train`` extra; ``pip install --no-deps pyvista``
brings the files alone.

Split (:data:`HELD_OUT`): ``bunny``, the default input of the ``image_to_3d`` pipeline,
is held out for evaluation, with ``procedural_eval`` procedural shapes drawn from a
separate random stream (named ``eval_*``, never equal to a training shape). Everything
else trains. Decimation uses pymeshlab's quadric edge collapse (trimesh's
``simplify_quadric_decimation`` needs ``fast_simplification``, which is not a dependency);
without pymeshlab only meshes already under ``max_faces`` are accepted.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh

DEFAULT_MAX_FACES = 5000
PYMESHLAB_MESHES = {"cow": "cow.obj", "airplane": "airplane.obj", "bone": "bone.ply"}
PYVISTA_MESHES = {"ant": "ant.ply", "nut": "nut.ply", "pv_airplane": "airplane.ply"}
HELD_OUT = ("bunny",)
SOURCES = ("bundled", "pymeshlab", "pyvista", "procedural")
DEFAULT_SOURCES = ("bundled", "pymeshlab", "procedural")
PROCEDURAL_KINDS = ("box", "ellipsoid", "capsule", "cylinder", "cone", "torus", "plate", "ring", "vase", "union")
INSTALL = {"pymeshlab": 'pip install -e ".[train]"  (or: pip install pymeshlab)', "pyvista": "pip install --no-deps pyvista"}


@dataclass(frozen=True)
class MeshEntry:
    """One mesh of the set: its ``name``, ``source`` (see :data:`SOURCES`), ``split`` ("train" or "eval") and normalised ``mesh``.

    >>> entry = mesh_set(sources=("bundled",))["bunny"]
    >>> entry.source, entry.split, len(entry.mesh.faces)
    ('bundled', 'eval', 5000)
    """

    name: str
    source: str
    split: str
    mesh: trimesh.Trimesh


def _package_folder(package: str) -> Path:
    """The installed package's folder, found without importing it (pyvista's import would need VTK)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"sources: '{package}' needs the {package} package; install it with: {INSTALL[package]}")
    return Path(next(iter(spec.submodule_search_locations)))


def decimate(mesh: trimesh.Trimesh, max_faces: int, name: str = "mesh") -> trimesh.Trimesh:
    """``mesh`` with at most ``max_faces`` faces: pymeshlab's quadric edge collapse (normals preserved) when it has more.

    >>> box = trimesh.creation.box()
    >>> decimate(box, 100) is box  # already small enough: returned as it is
    True
    """
    if len(mesh.faces) <= max_faces:
        return mesh
    if importlib.util.find_spec("pymeshlab") is None:
        raise ModuleNotFoundError(
            f"{name}: decimating {len(mesh.faces)} faces to max_faces={max_faces} needs pymeshlab; install it with: {INSTALL['pymeshlab']}"
        )
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int32)))
    ms.meshing_remove_duplicate_vertices()
    ms.meshing_decimation_quadric_edge_collapse(targetfacenum=max_faces, preservenormal=True)
    out = ms.current_mesh()
    return trimesh.Trimesh(out.vertex_matrix(), out.face_matrix(), process=True)


def pymeshlab_meshes(max_faces: int = DEFAULT_MAX_FACES) -> dict[str, trimesh.Trimesh]:
    """pymeshlab's sample meshes (:data:`PYMESHLAB_MESHES`), decimated to ``max_faces`` and normalised.

    >>> meshes = pymeshlab_meshes()  # doctest: +SKIP
    >>> {name: len(m.faces) for name, m in meshes.items()}  # doctest: +SKIP
    {'cow': 5000, 'airplane': 5000, 'bone': 3022}
    """
    folder = _package_folder("pymeshlab") / "tests" / "sample_meshes"
    out = {}
    for name, file in PYMESHLAB_MESHES.items():
        mesh = load_mesh(folder / file, name=f"pymeshlab sample '{name}'")
        out[name] = normalize_mesh(decimate(mesh, max_faces, name))
    return out


def pyvista_meshes(max_faces: int = DEFAULT_MAX_FACES) -> dict[str, trimesh.Trimesh]:
    """The PLY meshes in pyvista's wheel (:data:`PYVISTA_MESHES`), read with trimesh, decimated and normalised.

    >>> sorted(pyvista_meshes())  # doctest: +SKIP
    ['ant', 'nut', 'pv_airplane']
    """
    folder = _package_folder("pyvista") / "examples"
    return {
        name: normalize_mesh(decimate(load_mesh(folder / file, name=f"pyvista example '{name}'"), max_faces, name))
        for name, file in PYVISTA_MESHES.items()
    }


def _primitive(kind: str, rng: np.random.Generator) -> trimesh.Trimesh:
    u = rng.uniform
    if kind == "box":
        return trimesh.creation.box(extents=u(0.3, 1.0, 3))
    if kind == "ellipsoid":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        mesh.apply_scale(u(0.4, 1.0, 3))
        return mesh
    if kind == "capsule":
        return trimesh.creation.capsule(height=u(0.3, 1.0), radius=u(0.1, 0.35), count=[24, 24])
    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=u(0.1, 0.5), height=u(0.2, 1.2), sections=40)
    if kind == "cone":
        return trimesh.creation.cone(radius=u(0.2, 0.6), height=u(0.4, 1.2), sections=40)
    if kind == "torus":
        return trimesh.creation.torus(u(0.35, 0.6), u(0.06, 0.2), 40, 20)
    if kind == "plate":
        return trimesh.creation.box(extents=[u(0.6, 1.2), u(0.6, 1.2), u(0.02, 0.06)])
    if kind == "ring":
        outer = u(0.3, 0.6)
        return trimesh.creation.annulus(r_min=outer * u(0.4, 0.8), r_max=outer, height=u(0.05, 0.4), sections=40)
    if kind == "vase":
        z = np.sort(u(-0.6, 0.6, 4))
        radii = u(0.1, 0.45, 4)
        profile = np.concatenate([[[0.0, z[0]]], np.stack([radii, z], axis=1), [[0.0, z[-1]]]])
        return trimesh.creation.revolve(profile, sections=40)
    raise ValueError(f"kind: unknown procedural shape {kind!r}; expected one of {PROCEDURAL_KINDS}")


def _union(rng: np.random.Generator) -> trimesh.Trimesh:
    """Two or three primitives (not unions, rings or vases), each turned and shifted at random, concatenated."""
    parts = []
    for _ in range(int(rng.integers(2, 4))):
        part = _primitive(str(rng.choice(PROCEDURAL_KINDS[:7])), rng)
        part.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
        part.apply_translation(rng.uniform(-0.35, 0.35, 3))
        parts.append(part)
    return trimesh.util.concatenate(parts)


def procedural_meshes(count: int, seed: int = 0, prefix: str = "proc", max_faces: int = DEFAULT_MAX_FACES) -> dict[str, trimesh.Trimesh]:
    """``count`` procedural shapes cycling through :data:`PROCEDURAL_KINDS`, named ``{prefix}{i:02d}_{kind}``, normalised.

    The same ``seed`` gives the same shapes; shapes are axis-aligned in their canonical
    frame (a union's parts are turned relative to each other).

    >>> sorted(procedural_meshes(3))
    ['proc00_box', 'proc01_ellipsoid', 'proc02_capsule']
    """
    if not (isinstance(count, int) and count >= 0):
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    rng = np.random.default_rng(seed)
    makers: dict[str, Callable[[], trimesh.Trimesh]] = {kind: (lambda k=kind: _primitive(k, rng)) for kind in PROCEDURAL_KINDS[:-1]}
    makers["union"] = lambda: _union(rng)
    out = {}
    for i in range(count):
        kind = PROCEDURAL_KINDS[i % len(PROCEDURAL_KINDS)]
        name = f"{prefix}{i:02d}_{kind}"
        out[name] = normalize_mesh(decimate(makers[kind](), max_faces, name))
    return out


def mesh_set(
    split: str = "all",
    sources: Sequence[str] = DEFAULT_SOURCES,
    procedural: int = 30,
    procedural_eval: int = 5,
    seed: int = 0,
    max_faces: int = DEFAULT_MAX_FACES,
    held_out: Sequence[str] | None = None,
) -> dict[str, MeshEntry]:
    """The mesh set, or its ``split`` ("train", "eval" or "all"), as ``{name: MeshEntry}`` in a fixed order.

    ``procedural`` training shapes come from ``seed``; ``procedural_eval`` held-out ones
    (named ``eval_*``) from a separate stream of the same seed. The names in ``held_out``
    go to the eval split with the ``eval_*`` shapes; by default those of :data:`HELD_OUT`
    (the bundled ``bunny``) that the chosen ``sources`` provide.
    Raises ``ValueError`` naming ``split``, ``sources`` or ``held_out``, and
    ``ModuleNotFoundError`` with the install line when a requested source's package is absent.

    >>> entries = mesh_set("eval", sources=("bundled", "procedural"), procedural=0, procedural_eval=2)
    >>> [(e.name, e.source, len(e.mesh.faces)) for e in entries.values()]
    [('bunny', 'bundled', 5000), ('eval_00_box', 'procedural', 12), ('eval_01_ellipsoid', 'procedural', 1280)]
    """
    if split not in ("train", "eval", "all"):
        raise ValueError(f"split must be 'train', 'eval' or 'all', got {split!r}")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or isinstance(sources, str):
        raise ValueError(f"sources must be a sequence of {SOURCES}, got {sources!r}")
    meshes: dict[str, tuple[str, trimesh.Trimesh]] = {}
    if "bundled" in sources:
        meshes["bunny"] = ("bundled", normalize_mesh(decimate(load_mesh(BUNDLED_MESH), max_faces, "bunny")))
    if "pymeshlab" in sources:
        meshes.update({name: ("pymeshlab", mesh) for name, mesh in pymeshlab_meshes(max_faces).items()})
    if "pyvista" in sources:
        meshes.update({name: ("pyvista", mesh) for name, mesh in pyvista_meshes(max_faces).items()})
    evaluation: dict[str, tuple[str, trimesh.Trimesh]] = {}
    if "procedural" in sources:
        train_seed, eval_seed = np.random.SeedSequence(seed).spawn(2)
        for name, mesh in procedural_meshes(procedural, train_seed.generate_state(1)[0], "proc", max_faces).items():
            meshes[name] = ("procedural", mesh)
        for name, mesh in procedural_meshes(procedural_eval, eval_seed.generate_state(1)[0], "eval_", max_faces).items():
            evaluation[name] = ("procedural", mesh)
    held_out = [name for name in HELD_OUT if name in meshes] if held_out is None else list(held_out)
    missing = [name for name in held_out if name not in meshes]
    if missing:
        raise ValueError(f"held_out names {missing} are not in the set (sources {tuple(sources)}: {sorted(meshes)})")
    entries = {}
    for name, (source, mesh) in list(meshes.items()) + list(evaluation.items()):
        part = "eval" if name in held_out or name in evaluation else "train"
        if split in ("all", part):
            entries[name] = MeshEntry(name, source, part, mesh)
    return entries


def train_meshes(**kwargs) -> dict[str, trimesh.Trimesh]:
    """``{name: mesh}`` of :func:`mesh_set`'s training split (same keyword arguments).

    >>> sorted(train_meshes(sources=("bundled", "procedural"), procedural=2))
    ['proc00_box', 'proc01_ellipsoid']
    """
    return {name: entry.mesh for name, entry in mesh_set("train", **kwargs).items()}


def eval_meshes(**kwargs) -> dict[str, trimesh.Trimesh]:
    """``{name: mesh}`` of :func:`mesh_set`'s held-out split (same keyword arguments).

    >>> sorted(eval_meshes(sources=("bundled", "procedural"), procedural_eval=1))
    ['bunny', 'eval_00_box']
    """
    return {name: entry.mesh for name, entry in mesh_set("eval", **kwargs).items()}


def face_counts(entries: dict[str, MeshEntry]) -> dict[str, int]:
    """``{name: faces}``, for reports.

    >>> face_counts(mesh_set("eval", sources=("bundled",)))
    {'bunny': 5000}
    """
    return {name: len(entry.mesh.faces) for name, entry in entries.items()}
