"""Test-only loaders of the real TRELLIS v1 and SAM 3D Objects model classes, on CPU, without their package ``__init__`` chains.

Both packages' ``__init__`` files import far more than the flow models (TRELLIS: torchvision, renderers;
SAM 3D Objects: a Gaussian decoder, plyfile, a web service), so only the model and sampler files are
imported, the way ``tests/integrations/hy3dgen_import.py`` imports hy3dgen's VAE:

- TRELLIS (``trellis-3d-ms`` 0.1.0, MIT): ``trellis`` and ``trellis.pipelines`` are registered as empty
  packages whose ``__path__`` is the installed folder; ``ATTN_BACKEND=sdpa``; the sparse attention runs on
  ``SPARSE_ATTN_BACKEND=xformers`` with a pure-torch stand-in for ``xformers.ops`` written here;
  ``SPCONV_ALGO=native``.
- SAM 3D Objects (vendored in ``sam3d`` 0.1.2 under ``sam3d/third_party/meta``, Meta's SAM License):
  ``sam3d`` itself is never imported; its ``third_party/meta`` folder goes on ``sys.path``,
  ``LIDRA_SKIP_INIT=1``, and ``sam3d_objects.model.backbone.tdfy_dit.models`` is registered empty.

The environment variables are read by those packages at import, so they are set only while importing and
put back afterwards. On leaving the context, every ``sys.modules`` entry of ``trellis``, ``xformers``,
``sam3d`` and ``sam3d_objects`` that the loader added is removed (entries that were there before are put
back), and so is the ``sys.path`` entry; the ordinary packages they import (spconv, loguru, optree, ...)
stay imported, like any other import.

Example::

    with trellis_modules() as trellis:            # None when trellis-3d-ms (or spconv, easydict) is absent
        model = trellis.SparseStructureFlowModel(resolution=8, ...)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch

TRELLIS_INSTALL = (
    "TRELLIS v1 is not installed: pip install --no-deps trellis-3d-ms==0.1.0 && pip install easydict spconv==2.3.8 (what .ci/run installs)"
)
SAM3D_INSTALL = (
    "SAM 3D Objects is not installed: pip install --no-deps sam3d==0.1.2 && pip install loguru optree astor spconv==2.3.8 "
    "(what .ci/run installs; omegaconf comes with accel3d's hydra-core)"
)

TRELLIS_REQUIRES = ("trellis", "easydict", "spconv")
SAM3D_REQUIRES = ("sam3d", "loguru", "optree", "astor", "omegaconf", "spconv")
OWNED_PREFIXES = ("trellis", "xformers", "sam3d", "sam3d_objects")  # what the loaders may add to sys.modules


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def _package_folder(name: str) -> Path:
    """The installed folder of a package, found without executing its ``__init__``."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(list(spec.submodule_search_locations)[0])


def _empty_package(name: str, folder: Path) -> types.ModuleType:
    """Register ``name`` as a package with no code of its own whose submodules import from ``folder`` (kept if already there)."""
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = [str(folder)]  # what find_spec(name) reads while it is registered
    module.__path__ = [str(folder)]
    module.__package__ = name
    module.__file__ = str(folder / "__init__.py")
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


class _BlockDiagonalMask:
    """Stand-in for ``xformers.ops.fmha.BlockDiagonalMask``: consecutive (query, key) blocks attend only within themselves."""

    def __init__(self, q_seqlen: list[int], kv_seqlen: list[int]) -> None:
        if len(q_seqlen) != len(kv_seqlen):
            raise ValueError(f"{len(q_seqlen)} query blocks but {len(kv_seqlen)} key blocks")
        self.q_seqlen, self.kv_seqlen = [int(n) for n in q_seqlen], [int(n) for n in kv_seqlen]

    @classmethod
    def from_seqlens(cls, q_seqlen: list[int], kv_seqlen: list[int] | None = None) -> _BlockDiagonalMask:
        return cls(q_seqlen, q_seqlen if kv_seqlen is None else kv_seqlen)


def _memory_efficient_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_bias: _BlockDiagonalMask | None = None, **_: object
) -> torch.Tensor:
    """Stand-in for ``xformers.ops.memory_efficient_attention`` on ``[B, tokens, heads, channels]`` tensors, by SDPA.

    With a block-diagonal mask (batch 1, the tokens of several samples concatenated), each block attends
    separately.
    """
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if attn_bias is None:
        return sdpa(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)).transpose(1, 2)
    outs, q0, k0 = [], 0, 0
    for nq, nk in zip(attn_bias.q_seqlen, attn_bias.kv_seqlen):
        q, k, v = (x[:, a : a + n].transpose(1, 2) for x, a, n in ((query, q0, nq), (key, k0, nk), (value, k0, nk)))
        outs.append(sdpa(q, k, v).transpose(1, 2))
        q0, k0 = q0 + nq, k0 + nk
    return torch.cat(outs, dim=1)


def _xformers_stand_in() -> None:
    package, ops, fmha = (types.ModuleType(n) for n in ("xformers", "xformers.ops", "xformers.ops.fmha"))
    package.__path__ = []
    ops.__path__ = []
    fmha.BlockDiagonalMask = _BlockDiagonalMask
    ops.fmha = fmha
    ops.memory_efficient_attention = _memory_efficient_attention
    package.ops = ops
    sys.modules.update({"xformers": package, "xformers.ops": ops, "xformers.ops.fmha": fmha})


@contextlib.contextmanager
def _isolated(env: dict[str, str], path: str | None = None) -> Iterator[None]:
    """Set ``env`` (and put ``path`` first on sys.path) for the imports; on exit remove the owned modules added."""
    before = {name: module for name, module in sys.modules.items() if name.split(".")[0] in OWNED_PREFIXES}
    saved_env = {k: os.environ.get(k) for k in env}
    added_path = path is not None and path not in sys.path
    try:
        os.environ.update(env)
        if added_path:
            sys.path.insert(0, path)
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for name in [n for n in sys.modules if n.split(".")[0] in OWNED_PREFIXES]:
            if name not in before:
                del sys.modules[name]
        sys.modules.update(before)
        if added_path:
            sys.path.remove(path)
        importlib.invalidate_caches()


@contextlib.contextmanager
def trellis_modules() -> Iterator[types.SimpleNamespace | None]:
    """TRELLIS's flow models, sparse tensor and Euler samplers (None when trellis-3d-ms, easydict or spconv is absent)."""
    if not _installed(*TRELLIS_REQUIRES):
        yield None
        return
    env = {"ATTN_BACKEND": "sdpa", "SPARSE_ATTN_BACKEND": "xformers", "SPCONV_ALGO": "native"}
    with _isolated(env):
        _xformers_stand_in()
        root = _package_folder("trellis")
        _empty_package("trellis", root)
        _empty_package("trellis.pipelines", root / "pipelines")  # its __init__ imports the image pipeline (torchvision)
        flow_euler = importlib.import_module("trellis.pipelines.samplers.flow_euler")
        ss_flow = importlib.import_module("trellis.models.sparse_structure_flow")
        slat_flow = importlib.import_module("trellis.models.structured_latent_flow")
        sparse = importlib.import_module("trellis.modules.sparse")
        for name in ("attention.full_attn", "spatial"):  # imported lazily by TRELLIS; here, while the environment is set
            importlib.import_module(f"trellis.modules.sparse.{name}")
        # The image pipeline's module imports torchvision and rembg for its image preprocessing, which the tests never
        # run: empty stand-ins while it imports, where they are absent.
        stand_ins = [n for n in ("torchvision", "torchvision.transforms", "rembg") if importlib.util.find_spec(n.split(".")[0]) is None]
        sys.modules.update({n: types.ModuleType(n) for n in stand_ins})
        if "torchvision.transforms" in stand_ins:
            sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        try:
            image_pipeline = importlib.import_module("trellis.pipelines.trellis_image_to_3d")
        finally:
            for n in stand_ins:
                sys.modules.pop(n, None)
        ss_vae = importlib.import_module("trellis.models.sparse_structure_vae")
        loaded = types.SimpleNamespace(
            SparseStructureFlowModel=ss_flow.SparseStructureFlowModel,
            SLatFlowModel=slat_flow.SLatFlowModel,
            SparseTensor=sparse.SparseTensor,
            FlowEulerSampler=flow_euler.FlowEulerSampler,
            FlowEulerCfgSampler=flow_euler.FlowEulerCfgSampler,
            FlowEulerGuidanceIntervalSampler=flow_euler.FlowEulerGuidanceIntervalSampler,
            TrellisImageTo3DPipeline=image_pipeline.TrellisImageTo3DPipeline,
            SparseStructureDecoder=ss_vae.SparseStructureDecoder,
        )
        yield loaded


@contextlib.contextmanager
def sam3d_modules() -> Iterator[types.SimpleNamespace | None]:
    """SAM 3D Objects' SS and SLaT backbones, latent mappings, generators and CFG module (None when sam3d or a dependency is absent)."""
    if not _installed(*SAM3D_REQUIRES):
        yield None
        return
    meta = _package_folder("sam3d") / "third_party" / "meta"
    env = {"LIDRA_SKIP_INIT": "1", "ATTN_BACKEND": "sdpa", "SPARSE_ATTN_BACKEND": "sdpa", "SPCONV_ALGO": "native"}
    with _isolated(env, str(meta)):
        tdfy = importlib.import_module("sam3d_objects.model.backbone.tdfy_dit")
        _empty_package("sam3d_objects.model.backbone.tdfy_dit.models", Path(tdfy.__file__).parent / "models")  # its __init__: plyfile
        models = "sam3d_objects.model.backbone.tdfy_dit.models"
        mot = importlib.import_module(f"{models}.mot_sparse_structure_flow")
        latent = importlib.import_module(f"{models}.mm_latent")
        slat_flow = importlib.import_module(f"{models}.structured_latent_flow")
        generators = "sam3d_objects.model.backbone.generator"
        inference = _import_with_stand_ins("sam3d_objects.pipeline.inference_pipeline")
        yield types.SimpleNamespace(
            InferencePipeline=inference.InferencePipeline,
            SparseStructureDecoder=importlib.import_module(f"{models}.sparse_structure_vae").SparseStructureDecoder,
            SparseStructureFlowTdfyWrapper=mot.SparseStructureFlowTdfyWrapper,
            Latent=latent.Latent,
            ShapePositionEmbedder=latent.ShapePositionEmbedder,
            LearntPositionEmbedder=latent.LearntPositionEmbedder,
            SLatFlowModelTdfyWrapper=slat_flow.SLatFlowModelTdfyWrapper,
            ShortCut=importlib.import_module(f"{generators}.shortcut.model").ShortCut,
            FlowMatching=importlib.import_module(f"{generators}.flow_matching.model").FlowMatching,
            cfg=importlib.import_module(f"{generators}.classifier_free_guidance"),
        )


class _StandIn(type):
    """A class that answers any attribute with another such class (``transforms.InterpolationMode.BICUBIC``)."""

    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StandIn(name, (), {"__init__": lambda self, *args, **kwargs: None})


class _StandInModule(types.ModuleType):
    """An empty module whose every attribute is a :class:`_StandIn` class."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StandIn(name, (), {"__init__": lambda self, *args, **kwargs: None})


def _import_with_stand_ins(name: str, attempts: int = 60) -> types.ModuleType:
    """Import ``name``, standing in for each module it imports that is not installed (SAM 3D Objects' pipeline
    module imports torchvision, open3d, pytorch3d, kaolin, gsplat, utils3d, lightning and more, for rendering and
    post-processing the tests never run). The stand-ins are removed from ``sys.modules`` afterwards."""
    added: list[str] = []
    try:
        for _ in range(attempts):
            try:
                return importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if not exc.name or exc.name in added or exc.name.split(".")[0] in OWNED_PREFIXES:
                    raise
                parts = exc.name.split(".")
                for i in range(1, len(parts) + 1):
                    part = ".".join(parts[:i])
                    if part not in sys.modules:
                        module = _StandInModule(part)
                        module.__path__ = []
                        sys.modules[part] = module
                        added.append(part)
                        if i > 1:
                            setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], module)
        raise ImportError(f"{name}: still missing modules after {attempts} stand-ins")
    finally:
        for part in added:
            sys.modules.pop(part, None)


def keep_sparse_convs_training(module: torch.nn.Module) -> torch.nn.Module:
    """spconv's CPU path refuses conv bias in eval mode: after ``module.eval()``, put its sparse convolutions back in train mode.

    (They have no dropout or batch statistics, so train mode computes the same function.)
    """
    import spconv.pytorch as spconv

    for sub in module.modules():
        if isinstance(sub, spconv.conv.SparseConvolution):
            sub.train()
    return module
