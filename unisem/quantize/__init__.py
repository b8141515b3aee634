"""Residual quantization of item text embeddings: per-level distance, k-means init, and the RQ-VAE around it."""
from unisem.quantize.residual import QuantizerOutput, ResidualQuantizer, level_distances
from unisem.quantize.rqvae import RQVAE, RQVAEOutput

__all__ = ["QuantizerOutput", "RQVAE", "RQVAEOutput", "ResidualQuantizer", "level_distances"]
