"""Hash3D feature caching for diffusion U-Nets (see the Hash3D issue)."""
