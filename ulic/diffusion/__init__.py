"""Stage 2: the compression-aware diffusion decoder (CDM) and its distortion-aware
reconstruction module (DRM), in the TAEF2 latent space."""
