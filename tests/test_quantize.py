"""Residual quantizer and RQ-VAE invariants on small synthetic vectors (team B1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unisem.quantize import RQVAE, ResidualQuantizer, level_distances
from unisem.quantize.kmeans import assign, kmeans


pytestmark = pytest.mark.usefixtures("single_thread")


def test_level_distances_per_option():
    assert level_distances("hybrid", 3) == ("cosine", "cosine", "euclidean")
    assert level_distances("cosine", 2) == ("cosine", "cosine")
    assert level_distances("euclidean", 2) == ("euclidean", "euclidean")
    with pytest.raises(ValueError, match="quantizer.distance"):
        level_distances("manhattan", 2)


def test_cosine_picks_highest_cosine_and_euclidean_the_nearest():
    # Codeword 0 points the same way as x but is far away; codeword 1 is close but at an angle.
    codebook = torch.tensor([[10.0, 0.0], [0.8, 0.6]])
    x = torch.tensor([[1.0, 0.0]])
    assert assign(x, codebook, "cosine").item() == 0
    assert assign(x, codebook, "euclidean").item() == 1


def test_assignments_match_brute_force_on_random_data():
    x, codebook = torch.randn(200, 8), torch.randn(16, 8) * 3
    cos = F.normalize(x, dim=-1) @ F.normalize(codebook, dim=-1).T
    assert torch.equal(assign(x, codebook, "cosine"), cos.argmax(1))
    assert torch.equal(assign(x, codebook, "euclidean"), torch.cdist(x, codebook).argmin(1))


def test_hybrid_levels_use_their_metric_and_z_is_the_sum_of_codewords():
    q = ResidualQuantizer(4, levels=3, codebook_size=8, distance="hybrid", kmeans_init=False).eval()
    x = torch.randn(50, 4)
    out = q(x)
    residual = x.clone()
    for level, metric in enumerate(("cosine", "cosine", "euclidean")):
        assert torch.equal(out.codes[:, level], assign(residual, q.codebooks[level], metric))
        residual = residual - q.codebooks[level][out.codes[:, level]]
    z = sum(q.codebooks[level][out.codes[:, level]] for level in range(3))
    assert torch.allclose(out.quantized, z, atol=1e-6)
    assert torch.equal(q.codes_of(x), out.codes)


def test_kmeans_init_leaves_most_codewords_used():
    centers = torch.randn(32, 6) * 5
    x = centers[torch.arange(640) % 32] + 0.1 * torch.randn(640, 6)
    for distance in ("euclidean", "cosine"):
        q = ResidualQuantizer(6, levels=1, codebook_size=32, distance=distance, kmeans_init=True).train()
        codes = q(x).codes[:, 0]
        assert torch.unique(codes).numel() >= 28, distance
        assert bool(q.initialized.all())
    random_init = ResidualQuantizer(6, levels=1, codebook_size=32, distance="euclidean", kmeans_init=False).eval()
    assert torch.unique(random_init(x).codes).numel() < 28  # what k-means is there to fix


def test_kmeans_centroids_keep_member_magnitude_under_cosine():
    x = torch.cat([torch.tensor([[3.0, 0.0]]).repeat(10, 1), torch.tensor([[0.0, 0.5]]).repeat(10, 1)])
    c = kmeans(x, 2, 5, "cosine", torch.Generator().manual_seed(0))
    norms = sorted(c.norm(dim=1).tolist())
    assert norms == pytest.approx([0.5, 3.0])


def test_straight_through_gradient_reaches_the_input():
    q = ResidualQuantizer(4, levels=2, codebook_size=4, kmeans_init=False).train()
    x = torch.randn(10, 4, requires_grad=True)
    out = q(x)
    (out.quantized.sum() + out.commit_loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_ema_moves_codewords_to_the_mean_of_their_members():
    q = ResidualQuantizer(2, levels=1, codebook_size=2, distance="euclidean", ema_decay=0.0, kmeans_init=False,
                          dead_code_threshold=0.0).train()
    q.codebooks.data[0] = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    x = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]])
    q(x)
    assert torch.allclose(q.codebooks[0], torch.tensor([[2.0, 1.0], [9.0, 9.0]]))


def test_dead_codes_are_replaced_by_batch_residuals():
    q = ResidualQuantizer(2, levels=1, codebook_size=4, distance="euclidean", ema_decay=0.0, kmeans_init=False,
                          dead_code_threshold=1.0).train()
    q.codebooks.data[0] = torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 50.0], [50.0, -100.0]])
    x = torch.randn(20, 2)
    q(x)
    # Codewords 1..3 got no members; each now sits on one of the batch's vectors.
    for k in (1, 2, 3):
        assert (torch.cdist(q.codebooks[0][k : k + 1], x).min() < 1e-5).item()


def test_gradient_update_mode_trains_codebooks():
    q = ResidualQuantizer(4, levels=2, codebook_size=4, update="gradient", kmeans_init=False).train()
    out = q(torch.randn(16, 4))
    out.commit_loss.backward()
    assert q.codebooks.grad is not None and q.codebooks.grad.abs().sum() > 0


def test_commit_loss_is_summed_over_levels():
    q = ResidualQuantizer(4, levels=2, codebook_size=4, commitment_beta=1.0, kmeans_init=False).eval()
    x = torch.randn(30, 4)
    out = q(x)
    c0 = q.codebooks[0][out.codes[:, 0]]
    c1 = q.codebooks[1][out.codes[:, 1]]
    expected = F.mse_loss(x, c0) + F.mse_loss(x - c0, c1)
    assert out.commit_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rqvae_shapes_and_reconstruction():
    from unisem.config import QuantizerConfig

    vae = RQVAE.from_config(12, QuantizerConfig(levels=2, codebook_size=4, code_dim=6, encoder_hidden=(10,)))
    x = torch.randn(9, 12)
    out = vae(x)
    assert out.z.shape == (9, 6) and out.codes.shape == (9, 2) and out.residual_norms.shape == (2,)
    assert vae.reconstruction_loss(out.z, x).item() > 0
    assert vae.reconstruction_loss(out.z[:0], x[:0]).item() == 0
