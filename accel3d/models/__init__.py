"""Reference backbones shipped with accel3d (the vecset shape VAE)."""
