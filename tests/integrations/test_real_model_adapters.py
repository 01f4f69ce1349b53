"""accel3d's stage adapters on the real TRELLIS v1 and SAM 3D Objects samplers, with small random weights on CPU.

For each of TRELLIS's SS (``FlowEulerGuidanceIntervalSampler``, CFG) and SLaT (``FlowEulerCfgSampler``, sparse,
spconv) samplers and SAM3D's SS (``ShortCut``, CFG, dict token groups) and SLaT (``FlowMatching``, CFG, sparse)
generators: with the adapter attached and an identity ``PatchSet.wrap`` on its ``velocity``, the samples are
bit-identical to the unwrapped sampler's; the wrapper sees each step once (CFG's two model calls included);
the token groups name the model's real keys; after detaching, the sampler's instance dictionary is as before.
A non-identity wrapper (zero velocity) changes the samples, so the wrap is on the path. Tests of the
adapters without the real packages run everywhere.
"""

from __future__ import annotations

import ast
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from accel3d.core import PatchConflictError, PatchSet, detach_all
from accel3d.core.flow_stage import FlowStage, group_tensors, state_tensors
from accel3d.integrations import sam3d as sam3d_adapter
from accel3d.integrations import trellis as trellis_adapter
from accel3d.integrations.sam3d import Sam3DFlowStage
from accel3d.integrations.trellis import TrellisFlowStage
from tests.integrations import real_models
from tests.integrations.real_models import keep_sparse_convs_training

pytestmark = [
    pytest.mark.filterwarnings("ignore:'locale.getdefaultlocale' is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]  # spconv's ccimport

INTEGRATIONS = Path(__file__).resolve().parents[2] / "accel3d" / "integrations"


# ---------------------------------------------------------------- helpers


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Small random weights everywhere (the constructors zero the output and adaLN layers, which would give v = 0)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


class Probe:
    """A wrap of ``stage.velocity`` that records ``(step, progress)``; the identity, or (``zero``) a zero velocity."""

    def __init__(self, stage: Any, zero: bool = False) -> None:
        self.stage, self.zero = stage, zero
        self.calls: list[tuple[int, float]] = []
        self.patches = PatchSet("probe")
        self.patches.wrap(stage, "velocity", self._wrap)

    def _wrap(self, original: Any) -> Any:
        def velocity(x: Any, t: Any, cond: Any, step: int, **kwargs: Any) -> Any:
            self.calls.append((step, self.stage.progress(t)))
            v = original(x, t, cond, step, **kwargs)
            if not self.zero:
                return v
            return {k: torch.zeros_like(a) for k, a in v.items()} if isinstance(v, dict) else v * 0

        return velocity


def instance_dict(obj: Any) -> dict[str, Any]:
    return dict(vars(obj))


def assert_same_instance_dict(obj: Any, before: dict[str, Any]) -> None:
    now = vars(obj)
    assert set(now) == set(before), sorted(set(now) ^ set(before))
    assert all(now[k] is v for k, v in before.items())  # the very objects, not equal copies


def count_forwards(module: torch.nn.Module) -> tuple[list[int], Any]:
    calls: list[int] = []
    return calls, module.register_forward_pre_hook(lambda *_: calls.append(1))


# ---------------------------------------------------------------- TRELLIS


def trellis_ss_model(trellis: types.SimpleNamespace) -> torch.nn.Module:
    model = trellis.SparseStructureFlowModel(
        resolution=8, in_channels=4, out_channels=4, model_channels=64, cond_channels=32,
        num_blocks=2, num_heads=4, mlp_ratio=2, patch_size=2, pe_mode="ape", qk_rms_norm=True,
    )  # fmt: skip
    return randomized(model).eval()


def trellis_slat_model(trellis: types.SimpleNamespace) -> torch.nn.Module:
    model = trellis.SLatFlowModel(
        resolution=16, in_channels=8, out_channels=8, model_channels=64, cond_channels=32, num_blocks=2, num_heads=4,
        mlp_ratio=2, patch_size=2, num_io_res_blocks=2, io_block_channels=[16], pe_mode="ape", qk_rms_norm=True,
    )  # fmt: skip
    return keep_sparse_convs_training(randomized(model).eval())


def voxel_coords(counts: list[int], resolution: int, seed: int) -> torch.Tensor:
    """``[N, 4]`` int32 (batch, x, y, z): ``counts[b]`` distinct sorted voxels of sample ``b``."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b, n in enumerate(counts):
        flat = torch.randperm(resolution**3, generator=g)[:n].sort().values
        xyz = torch.stack([flat // resolution**2, flat // resolution % resolution, flat % resolution], 1)
        rows.append(torch.cat([torch.full((n, 1), b), xyz], 1))
    return torch.cat(rows).int()


def trellis_times(steps: int, rescale: float) -> list[float]:
    t = np.linspace(1, 0, steps + 1)
    return list(rescale * t / (1 + (rescale - 1) * t))[:-1]


def test_trellis_ss_guidance_interval_sampler_is_bit_identical_through_the_stage(trellis):
    model, sampler = trellis_ss_model(trellis), trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)
    g = torch.Generator().manual_seed(1)
    noise, cond = torch.randn(2, 4, 8, 8, 8, generator=g), torch.randn(2, 5, 32, generator=g)
    kwargs = {"neg_cond": torch.zeros_like(cond), "steps": 4, "rescale_t": 3.0, "cfg_strength": 7.5, "cfg_interval": (0.6, 1.0)}
    reference = sampler.sample(model, noise, cond, verbose=False, **kwargs).samples
    before = instance_dict(sampler)

    with TrellisFlowStage(sampler, model) as stage:
        probe = Probe(stage)
        forwards, hook = count_forwards(model)
        samples = sampler.sample(model, noise, cond, verbose=False, **kwargs).samples
        hook.remove()
        probe.patches.restore()
        assert stage.steps == 4
    assert torch.equal(samples, reference)
    assert [s for s, _ in probe.calls] == [0, 1, 2, 3]  # once per step ...
    assert len(forwards) == 7  # ... though the model ran twice where guided (t in [0.6, 1]: all but t = 0.5)
    assert [p for _, p in probe.calls] == pytest.approx([1 - t for t in trellis_times(4, 3.0)], abs=1e-12)
    assert stage.token_groups == {"shape": ()} and stage.model is model
    assert_same_instance_dict(sampler, before)
    assert "_inference_model" not in vars(sampler) and "sample" not in vars(sampler)

    with TrellisFlowStage(sampler, model) as stage:  # the wrap is on the path: zero velocity leaves the noise
        probe = Probe(stage, zero=True)
        frozen = sampler.sample(model, noise, cond, verbose=False, **kwargs).samples
        probe.patches.restore()
    assert torch.equal(frozen, noise)
    assert_same_instance_dict(sampler, before)


def test_trellis_slat_cfg_sampler_on_sparse_tensors_is_bit_identical_through_the_stage(trellis):
    model, sampler = trellis_slat_model(trellis), trellis.FlowEulerCfgSampler(sigma_min=1e-5)
    coords = voxel_coords([40, 47], resolution=16, seed=2)
    g = torch.Generator().manual_seed(3)
    noise = trellis.SparseTensor(feats=torch.randn(coords.shape[0], 8, generator=g), coords=coords)
    cond = torch.randn(2, 5, 32, generator=g)
    kwargs = {"neg_cond": torch.zeros_like(cond), "steps": 3, "rescale_t": 3.0, "cfg_strength": 3.0, "verbose": False}
    reference = sampler.sample(model, noise, cond, **kwargs).samples
    before = instance_dict(sampler)

    stage = trellis_adapter.attach_stage(sampler, model)
    probe = Probe(stage)
    samples = sampler.sample(model, noise, cond, **kwargs).samples
    again = sampler.sample(model, noise, cond, **kwargs).samples  # the step count restarts with each sample()
    probe.patches.restore()
    stage.detach()
    assert torch.equal(samples.feats, reference.feats) and torch.equal(samples.coords, reference.coords)
    assert torch.equal(again.feats, reference.feats)
    assert [s for s, _ in probe.calls] == [0, 1, 2, 0, 1, 2]
    assert stage.token_groups == {"slat": ()}
    assert group_tensors(samples, stage.token_groups) == {"slat": {"": samples.feats}} and state_tensors(samples) is samples.feats
    assert isinstance(stage, FlowStage)
    assert_same_instance_dict(sampler, before)


def test_trellis_pipeline_samplers_attach_as_named_stages_one_adapter_each(trellis):
    ss_model, slat_model = trellis_ss_model(trellis), trellis_slat_model(trellis)
    pipeline = types.SimpleNamespace(
        sparse_structure_sampler=trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5),
        slat_sampler=trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5),
        models={"sparse_structure_flow_model": ss_model, "slat_flow_model": slat_model},
    )
    before = {name: instance_dict(getattr(pipeline, name)) for name in ("sparse_structure_sampler", "slat_sampler")}
    stages = trellis_adapter.attach_pipeline(pipeline)
    assert list(stages) == ["ss_sampler", "slat_sampler"]
    assert stages["ss_sampler"].sampler is pipeline.sparse_structure_sampler and stages["ss_sampler"].model is ss_model
    assert stages["slat_sampler"].token_groups == {"slat": ()} and stages["ss_sampler"].token_groups == {"shape": ()}
    with pytest.raises(PatchConflictError, match="trellis_flow_stage"):
        TrellisFlowStage(pipeline.slat_sampler, slat_model).attach()
    assert detach_all(pipeline.sparse_structure_sampler) == 1 and not stages["ss_sampler"].attached
    stages["slat_sampler"].detach()
    for name, snapshot in before.items():
        assert_same_instance_dict(getattr(pipeline, name), snapshot)


# ---------------------------------------------------------------- SAM 3D Objects

POSE_KEYS = {"6drotation_normalized": 6, "translation": 3, "scale": 3, "translation_scale": 1}


def sam3d_ss_backbone(sam3d: types.SimpleNamespace) -> torch.nn.Module:
    channels, resolution = 64, 4  # SAM3D: 1024 channels over 16^3 shape tokens
    torch.manual_seed(0)
    mapping = {"shape": sam3d.Latent(8, channels, sam3d.ShapePositionEmbedder(channels, resolution, 1))}
    for key, width in POSE_KEYS.items():
        mapping[key] = sam3d.Latent(width, channels, sam3d.LearntPositionEmbedder(channels, 1))
    backbone = sam3d.SparseStructureFlowTdfyWrapper(
        latent_mapping=mapping, latent_share_transformer={"6drotation_normalized": list(POSE_KEYS)},
        in_channels=8, model_channels=channels, cond_channels=32, out_channels=8, num_blocks=2, num_heads=4,
        mlp_ratio=2, pe_mode="ape", qk_rms_norm=True, is_shortcut_model=True,
    )  # fmt: skip
    return randomized(backbone)


def sam3d_times(steps: int, rescale: float) -> list[float]:
    t = np.linspace(0, 1, steps + 1)
    return list(t / (1 + (rescale - 1) * (1 - t)))[:-1]


@pytest.mark.parametrize(("no_shortcut", "strength"), [(True, 7.0), (False, 0.0)], ids=["cfg", "shortcut"])
def test_sam3d_ss_shortcut_generator_with_dict_token_groups_is_bit_identical_through_the_stage(sam3d, no_shortcut, strength):
    backbone = sam3d_ss_backbone(sam3d)
    guided = sam3d.cfg.ClassifierFreeGuidanceWithExternalUnconditionalProbability(
        backbone=backbone, p_unconditional=0.1, strength=strength, interval=[0, 500], unconditional_handling="zeros"
    )
    generator = sam3d.ShortCut(reverse_fn=guided, inference_steps=4, rescale_t=3.0, time_scale=1000.0, no_shortcut=no_shortcut).eval()
    shapes = {k: (1, v.pos_emb.shape[0], v.input_layer.in_features) for k, v in backbone.latent_mapping.items()}  # as SAM3D's pipeline
    cond = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(5))

    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(42)  # SAM3D draws its noise from the global RNG
        with torch.no_grad():
            return generator(shapes, torch.device("cpu"), cond)

    reference = run()
    before = instance_dict(generator)
    with Sam3DFlowStage(generator) as stage:
        probe = Probe(stage)
        forwards, hook = count_forwards(backbone)
        samples = run()
        hook.remove()
        probe.patches.restore()
        assert stage.shortcut and stage.steps == 4
    assert set(samples) == set(reference) and all(torch.equal(samples[k], reference[k]) for k in reference)
    assert [s for s, _ in probe.calls] == [0, 1, 2, 3]
    assert len(forwards) == (8 if strength else 4)  # with strength: guided at each step (1000 t = 0, 100, 250, 500 <= 500)
    assert [p for _, p in probe.calls] == pytest.approx(sam3d_times(4, 3.0), abs=1e-12)

    keys = list(backbone.latent_mapping.keys())
    assert stage.token_groups == {"shape": ("shape",), "layout": tuple(backbone.latent_share_transformer["6drotation_normalized"])}
    assert sorted(k for members in stage.token_groups.values() for k in members) == sorted(keys)
    assert [len(ts) for ts in group_tensors(samples, stage.token_groups).values()] == [1, 4]
    assert isinstance(stage, FlowStage)
    assert_same_instance_dict(generator, before)

    with Sam3DFlowStage(generator) as stage:  # the wrap is on the path: zero velocity leaves the noise
        probe = Probe(stage, zero=True)
        frozen = run()
        probe.patches.restore()
    torch.manual_seed(42)
    noise = generator._generate_noise(shapes, torch.device("cpu"))
    assert all(torch.equal(frozen[k], noise[k]) for k in noise)
    assert_same_instance_dict(generator, before)


def sam3d_slat_backbone(sam3d: types.SimpleNamespace) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = sam3d.SLatFlowModelTdfyWrapper(
        resolution=16, in_channels=8, out_channels=8, model_channels=64, cond_channels=32, num_blocks=2, num_heads=4,
        mlp_ratio=2, patch_size=2, num_io_res_blocks=2, io_block_channels=[16], pe_mode="ape", qk_rms_norm=True,
    )  # fmt: skip
    return randomized(backbone)


def test_sam3d_slat_flow_matching_generator_is_bit_identical_through_the_stage(sam3d):
    backbone = sam3d_slat_backbone(sam3d)
    guided = sam3d.cfg.ClassifierFreeGuidance(backbone=backbone, strength=5.0, interval=[0, 500], unconditional_handling="zeros")
    generator = keep_sparse_convs_training(sam3d.FlowMatching(reverse_fn=guided, inference_steps=3, rescale_t=3.0).eval())
    coords = voxel_coords([50], resolution=16, seed=7).numpy()  # SAM3D's pipeline passes the coordinates last, as numpy
    cond = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(3))

    def run() -> torch.Tensor:
        torch.manual_seed(42)
        with torch.no_grad():
            return generator((1, coords.shape[0], 8), torch.device("cpu"), cond, coords)

    reference = run()
    before = instance_dict(generator)
    with sam3d_adapter.attach_stage(generator) as stage:
        probe = Probe(stage)
        forwards, hook = count_forwards(backbone)
        samples = run()
        hook.remove()
        probe.patches.restore()
        assert not stage.shortcut and stage.steps == 3
    assert torch.equal(samples, reference)
    assert [s for s, _ in probe.calls] == [0, 1, 2] and len(forwards) == 6  # guided at every step (1000 t <= 400)
    assert [p for _, p in probe.calls] == pytest.approx(sam3d_times(3, 3.0), abs=1e-6)  # float32 times
    assert stage.token_groups == {"slat": ()} and stage.model is backbone
    assert_same_instance_dict(generator, before)


def test_sam3d_pipeline_generators_attach_as_named_stages(sam3d):
    backbone = sam3d_ss_backbone(sam3d)
    ss = sam3d.ShortCut(reverse_fn=sam3d.cfg.ClassifierFreeGuidance(backbone=backbone), inference_steps=2).eval()
    slat = sam3d.FlowMatching(reverse_fn=backbone, inference_steps=2).eval()  # no CFG wrapper: the backbone is reverse_fn
    pipeline = types.SimpleNamespace(models=torch.nn.ModuleDict({"ss_generator": ss, "slat_generator": slat}))
    stages = sam3d_adapter.attach_pipeline(pipeline)
    assert list(stages) == ["ss_sampler", "slat_sampler"] and stages["ss_sampler"].generator is ss
    assert stages["slat_sampler"].model is backbone and stages["ss_sampler"].model is backbone
    assert detach_all(pipeline.models) == 2  # a pipeline's module dict reaches both generators
    assert not any(stage.attached for stage in stages.values())
    with pytest.raises(ValueError, match=r"\['rotation'\] are not keys of the backbone's latent_mapping"):
        Sam3DFlowStage(ss, token_groups={"shape": ("shape",), "layout": ("rotation",)})


# ---------------------------------------------------------------- without the real packages


class EulerLike:
    """A sampler shaped like TRELLIS's (sample -> sample_once -> self._inference_model), for tests without it."""

    def __init__(self) -> None:
        self.sigma_min = 0.0

    def _inference_model(self, model: Any, x_t: torch.Tensor, t: float, cond: Any = None, **kwargs: Any) -> torch.Tensor:
        return model(x_t, t, cond)

    def sample(self, model: Any, noise: torch.Tensor, cond: Any = None, steps: int = 3, **kwargs: Any) -> torch.Tensor:
        x, times = noise, np.linspace(1, 0, steps + 1)
        for t, t_prev in zip(times[:-1], times[1:]):
            x = x - (t - t_prev) * self._inference_model(model, x, t, cond, **kwargs)
        return x


class SLatFlowModel(torch.nn.Module):  # a class of TRELLIS's name, for default_token_groups
    def forward(self, x: torch.Tensor, t: float, cond: Any) -> torch.Tensor:
        return x * t + 1


def test_adapters_without_the_real_packages_attach_count_and_restore():
    sampler, model, noise = EulerLike(), SLatFlowModel(), torch.randn(2, 3)
    reference = sampler.sample(model, noise, steps=5)
    stage = TrellisFlowStage(sampler, model)
    with pytest.raises(RuntimeError, match="never attached"):
        stage.velocity(noise, 1.0, None, 0)
    with stage:
        with pytest.raises(RuntimeError, match="already attached"):
            stage.attach()
        probe = Probe(stage)
        assert torch.equal(sampler.sample(model, noise, steps=5), reference) and stage.steps == 5
        assert torch.equal(sampler.sample(model, noise), sampler.sample(model, noise, steps=3)) and stage.steps == 3
        probe.patches.restore()
    assert [s for s, _ in probe.calls] == [0, 1, 2, 3, 4] + [0, 1, 2] * 2
    assert vars(sampler) == {"sigma_min": 0.0} and not stage.attached
    assert "detached" in repr(stage)
    with pytest.raises(ValueError, match="token_groups: Linear is none of TRELLIS's flow models"):
        TrellisFlowStage(sampler, torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="has no callable '_inference_model'"):
        TrellisFlowStage(object(), model, token_groups={"x": ()}).attach()
    with pytest.raises(TypeError, match="pipeline: expected a TRELLIS pipeline"):
        trellis_adapter.attach_pipeline(object())
    with pytest.raises(TypeError, match="generator: expected a SAM3D generator"):
        Sam3DFlowStage(torch.nn.Linear(2, 2))


def test_integration_modules_never_import_trellis_or_sam3d():
    for path in sorted(INTEGRATIONS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("trellis", "sam3d", "sam3d_objects", "spconv", "xformers"), f"{path.name} imports {name}"


def test_the_loaders_leave_sys_modules_sys_path_and_the_environment_as_they_found_them():
    owned = lambda: {n: m for n, m in sys.modules.items() if n.split(".")[0] in real_models.OWNED_PREFIXES}  # noqa: E731
    env_keys = ("ATTN_BACKEND", "SPARSE_ATTN_BACKEND", "SPCONV_ALGO", "LIDRA_SKIP_INIT")
    before, path, env = owned(), list(sys.path), {k: os.environ.get(k) for k in env_keys}
    for loader in (real_models.trellis_modules, real_models.sam3d_modules):
        with loader() as loaded:
            assert loaded is None or type(loaded).__name__ == "SimpleNamespace"
    after = owned()
    assert set(after) == set(before) and all(after[n] is m for n, m in before.items())
    assert sys.path == path and {k: os.environ.get(k) for k in env_keys} == env


def test_the_xformers_stand_in_attends_within_each_block():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, n, 2, 8, generator=g) for n in (7, 9, 9))
    mask = real_models._BlockDiagonalMask.from_seqlens([3, 4], [5, 4])
    out = real_models._memory_efficient_attention(q, k, v, mask)
    allowed = torch.zeros(7, 9, dtype=torch.bool)
    allowed[:3, :5] = allowed[3:, 5:] = True
    dense = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), attn_mask=allowed).transpose(1, 2)
    assert torch.allclose(out, dense, atol=1e-6)
