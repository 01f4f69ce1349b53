"""Score distillation (SDS) on diffusion U-Nets: a voxel field optimised on the CPU, ``pipeline=sds``.

- ``unets.py``: the random-init text-conditioned U-Nets (``tiny``, the SD-2.1-base architecture);
  a local diffusers folder loads through :mod:`accel3d.integrations.diffusers`;
- ``novel_view.py``: the trained image- and pose-conditioned novel-view U-Net (Zero123-style);
- ``pipeline.py``: :class:`~accel3d.models.sds.pipeline.SDSPipeline`, the SDS loop, with one subclass per
  kind of U-Net (text embeddings, or the novel-view model's reference view);
- ``scene.py``, ``cameras.py``, ``images.py``: the differentiable voxel field, its cameras and its pictures;
- ``reference.py``, ``mesh_views.py``: the reference view (a mesh rendered at a pose, an image or a latent)
  and the shaded mesh views that train the novel-view model and score SDS against the truth.
"""
