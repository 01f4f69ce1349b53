"""Reference backbones shipped with accel3d (the vecset shape VAE) and checkpoint loaders."""

from accel3d.models.hunyuan import config_from_hunyuan, load_hunyuan_state_dict, load_hunyuan_vae
from accel3d.models.loading import load_vae
from accel3d.models.vecset_vae import VecsetVAE, VecsetVAEConfig

__all__ = ["VecsetVAE", "VecsetVAEConfig", "config_from_hunyuan", "load_hunyuan_state_dict", "load_hunyuan_vae", "load_vae"]
