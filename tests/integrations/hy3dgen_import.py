"""Import hy3dgen 2.0.2's ShapeVAE without its package ``__init__`` chain (which needs torchvision)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

INSTALL_HINT = "pip install --no-deps hy3dgen==2.0.2 einops (what .ci/run installs)"


def import_hy3dgen_autoencoders() -> types.ModuleType | None:
    """``hy3dgen.shapegen.models.autoencoders`` or None when hy3dgen or einops is absent."""
    if "hy3dgen.shapegen.models.autoencoders" in sys.modules:  # imported already (its bare parents have no spec)
        return sys.modules["hy3dgen.shapegen.models.autoencoders"]
    spec = importlib.util.find_spec("hy3dgen")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("einops") is None:
        return None
    root = Path(spec.submodule_search_locations[0])
    for name, folder in (
        ("hy3dgen", root),
        ("hy3dgen.shapegen", root / "shapegen"),
        ("hy3dgen.shapegen.models", root / "shapegen" / "models"),
    ):
        if name not in sys.modules:  # bare parents: their __init__ files would import torchvision
            module = types.ModuleType(name)
            module.__path__ = [str(folder)]
            sys.modules[name] = module
    return importlib.import_module("hy3dgen.shapegen.models.autoencoders")


def import_hy3dgen_pipeline() -> types.SimpleNamespace | None:
    """hy3dgen's flow-matching pipeline, its DiT and its scheduler (None when hy3dgen or einops is absent).

    ``hy3dgen.shapegen``'s ``__init__`` imports its image preprocessors (cv2, rembg) and its conditioner
    (torchvision), so only the pipeline, DiT and scheduler files are imported, under bare parent packages."""
    autoencoders = import_hy3dgen_autoencoders()
    if autoencoders is None:
        return None
    root = Path(autoencoders.__file__).parents[1]
    if "hy3dgen.shapegen.models.denoisers" not in sys.modules:
        module = types.ModuleType("hy3dgen.shapegen.models.denoisers")
        module.__path__ = [str(root / "denoisers")]
        sys.modules[module.__name__] = module
    return types.SimpleNamespace(
        ShapeVAE=autoencoders.ShapeVAE,
        Hunyuan3DDiT=importlib.import_module("hy3dgen.shapegen.models.denoisers.hunyuan3ddit").Hunyuan3DDiT,
        FlowMatchEulerDiscreteScheduler=importlib.import_module("hy3dgen.shapegen.schedulers").FlowMatchEulerDiscreteScheduler,
        Hunyuan3DDiTFlowMatchingPipeline=importlib.import_module("hy3dgen.shapegen.pipelines").Hunyuan3DDiTFlowMatchingPipeline,
    )
