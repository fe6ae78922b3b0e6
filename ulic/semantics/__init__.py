"""Semantics (ResULIC's semantic residual coding, on what loads offline): a frozen semantic
encoder gives regional embeddings, a concept vocabulary turns them into ids, and a predictor
that reads only the compressed latent's integer symbols prices those ids, so the SRC section
costs little where the latent already implies its concepts."""
