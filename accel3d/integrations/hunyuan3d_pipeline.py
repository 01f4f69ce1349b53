"""``pipeline=hunyuan3d``: Hunyuan3D-2's own ``ShapeVAE`` (hy3dgen) decoding a shape, as an accel3d pipeline.

The comparison job, records, reports and pictures of ``vecset_shape``, with the decoding done by hy3dgen's class and
its own ``latents2mesh`` call (its volume-decoder call, its marching cubes): accel3d's accelerators reach it through
the ``volume_decoder`` and ``geo_decoder`` stages of :mod:`accel3d.integrations.hunyuan3d_stages`, installed for
the pipeline's life. ``weights`` is null (the shipped vecset weights, loaded into hy3dgen's class) or a Hunyuan3D-2 VAE
folder (``config.yaml`` + ``model*.safetensors``); ``input`` is null (the bundled bunny, encoded by accel3d's encoder:
the shipped weights only) or a latents file from a generator.

Example::

    pipe = Hunyuan3DShapePipeline(resolution=128)         # needs hy3dgen 2.0.2 installed
    accel3d.apply(pipe, "flashvdm")
    result = pipe.run(pipe.load_inputs())
"""

from __future__ import annotations

from typing import Any

import torch
import trimesh

from accel3d.core.memory import StageClock
from accel3d.core.validate import check_float
from accel3d.integrations.hunyuan3d import hy3dgen_autoencoders, to_shape_vae
from accel3d.integrations.hunyuan3d_stages import stages as hunyuan_stages
from accel3d.models.vecset.pipeline import ShapeInputs, ShapeResult, VecsetShapePipeline


class Hunyuan3DShapePipeline(VecsetShapePipeline):
    """``vecset_shape`` decoded by hy3dgen's ``ShapeVAE`` through its own ``latents2mesh`` (see the module).

    Example::

        pipe = Hunyuan3DShapePipeline(resolution=128)
        baseline = pipe.run(pipe.load_inputs())
    """

    name = "hunyuan3d"

    def __init__(
        self,
        weights: str | None = None,
        input: str | None = None,
        resolution: int = 256,
        num_points: int = 2048,
        mc_level: float = 0.0,
        chunk_size: int = 20000,
        seed: int = 0,
        progress: bool = True,
        fscore_threshold: float = 0.01,
    ) -> None:
        check_float("mc_level", mc_level)
        shape_vae_type = hy3dgen_autoencoders().ShapeVAE  # refuses at once where hy3dgen is absent
        super().__init__(
            weights=weights, input=input, resolution=resolution, num_points=num_points, level=mc_level,
            chunk_size=chunk_size, seed=seed, progress=progress, fscore_threshold=fscore_threshold,
        )  # fmt: skip
        self.mc_level, self.chunk_size, self.progress = float(mc_level), int(chunk_size), bool(progress)
        self.shape_vae = to_shape_vae(self.vae, shape_vae_type)
        found = hunyuan_stages(self.shape_vae)
        for stage in found.values():  # installed for the pipeline's life: the job's accelerators attach to them
            stage.attach()
        self.volume_decoder = found["volume_decoder"]
        self.volume_decoder.level = self.mc_level
        self.stages = {"encoder": self.vae, "volume_decoder": self.volume_decoder, "geo_decoder": found["geo_decoder"]}

    @torch.inference_mode()
    def run(self, inputs: ShapeInputs, resolution: int | None = None) -> ShapeResult:
        """Encode (or take the input's latents), run hy3dgen's ``ShapeVAE`` and its ``latents2mesh`` at ``resolution``."""
        resolution = self.resolution if resolution is None else resolution
        clock = StageClock()
        with clock("encode_s"):
            if inputs.latents is not None:
                latents = inputs.latents[None] / self.vae.config.scale_factor  # as hy3dgen's pipeline does before decoding
            else:
                latents = self.vae.encode(inputs.points[None], inputs.normals[None])
            decoded = self.shape_vae(latents)
        with clock("decode_s"):  # hy3dgen's latents2mesh: its volume decoding, then its marching cubes
            outputs = self.shape_vae.latents2mesh(
                decoded, bounds=self.vae.bounds, octree_resolution=resolution, num_chunks=self.chunk_size,
                mc_level=self.mc_level, enable_pbar=self.progress,
            )  # fmt: skip
        total = clock.timings.pop("decode_s")
        timings = {"encode_s": clock.timings["encode_s"], "decode_s": self.volume_decoder.last_seconds}
        timings["surface_s"] = total - timings["decode_s"]
        timings["total_s"] = timings["encode_s"] + total
        memory = {"encode_s": clock.peaks["encode_s"], "decode_s": clock.peaks["decode_s"]}  # decode_s: the volume and the mesh
        found = outputs[0]
        mesh = trimesh.Trimesh(found.mesh_v, found.mesh_f, process=False) if found is not None else trimesh.Trimesh()
        return ShapeResult(self.volume_decoder.last_grids[0], mesh, timings, {**memory, "total_s": max(memory.values())})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "decoder": f"hy3dgen {type(self.shape_vae).__name__}.latents2mesh"}
