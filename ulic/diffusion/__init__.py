"""Stage 2: the compression-aware diffusion decoder (CDM) and its distortion-aware
reconstruction module (DRM), in the TAEF2 latent space."""

# The decoders a file can be decoded with (`ulic decompress --decoder`): mse, the stage-1
# latent straight into TAEF2; fast, the DRM's coarse latent; diffusion, the CDM sampler.
DECODERS = ("mse", "fast", "diffusion")

# The perceptual fidelity optimiser's levels (`ulic compress --effort`, `ulic.diffusion.pfo`): 0 is off.
MAX_EFFORT = 3
