"""ID vectors for items without interactions, borrowed from the warm items that share their semantic ID.

A cold item's own ID row was never trained. Its semantic ID says which warm items its text resembles most:
those with the same codes, level by level. The mean ID vector of the warm items sharing the longest prefix
of its codes carries what the interactions taught about that region of the catalog (its popularity, the
histories it follows), which the shared "unknown" vector cannot.
"""
from __future__ import annotations

import torch


def prefix_keys(codes: torch.Tensor, length: int, codebook_size: int) -> torch.Tensor:
    """int64 [M]: the first ``length`` codes of each row [M, L] as one number (base ``codebook_size``)."""
    key = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
    for level in range(length):
        key = key * codebook_size + codes[:, level].long()
    return key


def shared_prefix_means(
    warm_codes: torch.Tensor, warm_vectors: torch.Tensor, query_codes: torch.Tensor, codebook_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(means [M, w], found [M] bool): for each query row of codes [M, L], the mean of the ``warm_vectors``
    [W, w] whose codes [W, L] share the longest prefix with it (all L levels first, then L-1, ... 1);
    ``found`` is False (and the mean 0) where no warm row shares even the first code."""
    means = warm_vectors.new_zeros(query_codes.shape[0], warm_vectors.shape[1])
    found = torch.zeros(query_codes.shape[0], dtype=torch.bool, device=query_codes.device)
    if warm_codes.shape[0] == 0:
        return means, found
    for length in range(query_codes.shape[1], 0, -1):
        keys, inverse = torch.unique(prefix_keys(warm_codes, length, codebook_size), return_inverse=True)
        sums = warm_vectors.new_zeros(len(keys), warm_vectors.shape[1]).index_add_(0, inverse, warm_vectors)
        counts = torch.bincount(inverse, minlength=len(keys)).to(warm_vectors.dtype)
        query = prefix_keys(query_codes, length, codebook_size)
        at = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        hit = (keys[at] == query) & ~found
        means[hit] = sums[at[hit]] / counts[at[hit], None]
        found |= hit
    return means, found
