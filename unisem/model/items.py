"""Item vectors for the whole catalog, in the three variants: unified [z ; e], id-only e, semantic-only z.

The table is computed once per training step from the N catalog items (the RQ-VAE runs on N rows, not on
every padded position of every sequence), and scores are one matmul against it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from unisem.config.schema import MODEL_VARIANTS
from unisem.model.cold_ids import shared_prefix_means
from unisem.quantize.rqvae import RQVAE

# Catalog rows per encoder pass when the whole catalog is encoded without gradient (evaluation tables, code
# refreshes): bounds the encoder's activations (rows x 512 floats) whatever the catalog size.
ENCODE_CHUNK_ROWS = 65536
# Items the quantizer's k-means initialisation sees: a uniform sample, so its [rows x codebook] distance
# matrices stay bounded on a million-item catalog (k-means of 256 centroids needs far fewer points).
KMEANS_SAMPLE_ROWS = 65536


class ItemTable(NamedTuple):
    vectors: torch.Tensor  # [N+1, d]; row 0 (padding) is zeros
    codes: torch.Tensor | None  # int64 [N+1, L] semantic IDs, row 0 = -1; None without semantic part
    commit_loss: torch.Tensor  # scalar (0 without semantic part)
    recon_loss: torch.Tensor  # scalar (0 without semantic part)
    residual_norms: torch.Tensor | None  # [L]


class ItemRepresentation(nn.Module):
    """Semantic part from the item's text through the RQ-VAE, ID part from an embedding table.

    Row ``N+1`` of the ID table is the shared "unknown" vector: cold items (no interactions) always use it,
    and with ``id_dropout`` > 0 training replaces each item's ID by it at random so the model learns to
    lean on ``z`` when the ID says nothing.
    """

    def __init__(
        self,
        variant: str,
        num_items: int,
        text_embeddings: torch.Tensor | None,
        cold_items: torch.Tensor,
        quantizer_cfg,
        id_dim: int,
        id_only_dim: int,
        id_dropout: float = 0.0,
        sparse_ids: bool = False,
        cold_id: str = "unknown",
    ) -> None:
        super().__init__()
        if variant not in MODEL_VARIANTS:
            raise ValueError(f"model.variant: unknown value {variant!r}; expected one of {', '.join(MODEL_VARIANTS)}")
        self.variant, self.num_items, self.id_dropout, self.cold_id = variant, num_items, id_dropout, cold_id
        self.has_semantic = variant in ("unified", "semantic-only")
        self.has_id = variant in ("unified", "id-only")
        cold = torch.zeros(num_items + 1, dtype=torch.bool)
        cold[cold_items.long()] = True
        self.register_buffer("cold", cold)
        self.dim = 0
        if self.has_semantic:
            if text_embeddings is None or text_embeddings.shape[0] != num_items + 1:
                got = None if text_embeddings is None else tuple(text_embeddings.shape)
                raise ValueError(f"text embeddings must have N+1={num_items + 1} rows (row 0 padding), got {got}")
            self.register_buffer("text", text_embeddings.float().contiguous())
            self.rqvae = RQVAE.from_config(text_embeddings.shape[1], quantizer_cfg)
            # Semantic IDs of all items as of the last refresh (row 0 unused), for the "batch" table mode.
            self.register_buffer("cached_codes", torch.zeros(num_items + 1, quantizer_cfg.levels, dtype=torch.long))
            self.dim += quantizer_cfg.code_dim
        if self.has_id:
            width = id_dim if variant == "unified" else id_only_dim
            # sparse: its gradient holds the rows a step touched only (for lazy Adam on large catalogs)
            self.ids = nn.Embedding(num_items + 2, width, sparse=sparse_ids)
            # Small init (as BERT/RecBole): Adam's steps have a fixed size, so small vectors reshape fast.
            nn.init.normal_(self.ids.weight, std=0.02)
            self.dim += width

    @property
    def unknown_id(self) -> int:
        """Row of the ID table that holds the shared "unknown" vector (after the N items and padding)."""
        return self.num_items + 1

    @property
    def borrows_ids(self) -> bool:
        """Cold items take the ID vectors of the warm items sharing their semantic ID (``model.cold_id``)."""
        return self.cold_id == "neighbours" and self.has_id and self.has_semantic

    @torch.no_grad()
    def borrowed_ids(self, query_codes: torch.Tensor, catalog_codes: torch.Tensor, catalog_ids: torch.Tensor) -> torch.Tensor:
        """ID parts [M, width] of items known by their semantic IDs [M, L] only: the mean ID vector of the
        warm catalog items sharing the longest code prefix (``unisem.model.cold_ids``), else the unknown
        vector. ``catalog_codes`` [N, L] and ``catalog_ids`` [N, width] are the catalog's rows 1..N."""
        warm = ~self.cold[1:]
        means, found = shared_prefix_means(catalog_codes[warm], catalog_ids[warm], query_codes, self.rqvae.quantizer.codebook_size)
        unknown = self.ids.weight[self.unknown_id].expand_as(means)
        return torch.where(found[:, None], means, unknown)

    def id_part(self, vectors: torch.Tensor) -> torch.Tensor:
        """The ID columns of item vectors [M, d] (the last ones: an item vector is [z ; e])."""
        return vectors[:, self.dim - self.ids.weight.shape[1] :]

    def id_vectors(self, items: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
        """ID parts [M, width] of ``items``; where ``unknown`` is set, the shared unknown vector instead.

        The one rule for a cold item's ID part: held-out items, ID dropout and items added after training
        (``text_only_vectors``) all go through here; with ``model.cold_id=neighbours`` the evaluation table
        and new items then replace the unknown vector by ``borrowed_ids`` where a neighbour exists.
        """
        return self.ids(torch.where(unknown, self.unknown_id, items))

    @torch.no_grad()
    def text_only_vectors(
        self, text_embeddings: torch.Tensor, catalog_vectors: torch.Tensor | None = None, catalog_codes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Item vectors [M, d] and semantic IDs [M, L] (or None) of items known only by their text embedding.

        Built as the table builds a cold item: ``z`` from the RQ-VAE of the text and the unknown ID vector
        (or the borrowed one, ``model.cold_id``); an id-only model has nothing but the unknown vector. For
        items that arrived after training. Borrowing reads the catalog's evaluation table (vectors [N+1, d] and
        codes [N+1, L]): pass both when they are already computed (a serving model holds them), else it is
        computed here.
        """
        x = torch.as_tensor(text_embeddings, dtype=torch.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"text embeddings of new items must be a non-empty [M, dim] array, got shape {tuple(x.shape)}")
        parts, codes = [], None
        if self.has_semantic:
            want = self.text.shape[1]
            if x.shape[1] != want:
                raise ValueError(
                    f"text embeddings of new items have width {x.shape[1]} but the model was trained on width {want}"
                    " (a different text encoder?)"
                )
            out = self.rqvae(x.to(self.text.device))
            parts.append(out.z)
            codes = out.codes
        if self.has_id and self.borrows_ids:
            if catalog_vectors is None or catalog_codes is None:
                table = self(recon_rows=self.cold.new_zeros(0, dtype=torch.long))  # the evaluation table
                catalog_vectors, catalog_codes = table.vectors, table.codes
            n = self.num_items  # the trained catalog's rows only, not items appended after it
            parts.append(self.borrowed_ids(codes, catalog_codes[1 : n + 1], self.id_part(catalog_vectors[1 : n + 1])))
        elif self.has_id:
            index = torch.zeros(x.shape[0], dtype=torch.long, device=self.ids.weight.device)
            parts.append(self.id_vectors(index, torch.ones_like(index, dtype=torch.bool)))
        return torch.cat(parts, dim=1), codes

    @torch.no_grad()
    def initialize_codebooks(self, generator: torch.Generator | None = None) -> None:
        """Start the codebooks from k-means of a uniform sample of the catalog (at most KMEANS_SAMPLE_ROWS).

        Without this the first training batch initialises them, which with a pool-based loss is a few
        thousand popular items rather than the catalog.
        """
        if not (self.has_semantic and self.training and not bool(self.rqvae.quantizer.initialized.all())):
            return
        n = self.num_items
        rows = torch.arange(1, n + 1) if n <= KMEANS_SAMPLE_ROWS else torch.randperm(n, generator=generator)[:KMEANS_SAMPLE_ROWS] + 1
        self.rqvae.quantizer(self.rqvae.encoder(self.text[rows.to(self.text.device)]))

    @torch.no_grad()
    def refresh_codes(self) -> None:
        """Encode the whole catalog (no gradient, in chunks) and keep every item's semantic ID for "batch" tables.

        On the first call in training mode the codebooks are initialised first (``initialize_codebooks``).
        """
        if not self.has_semantic:
            return
        self.initialize_codebooks()
        for start in range(1, self.num_items + 1, ENCODE_CHUNK_ROWS):
            stop = min(start + ENCODE_CHUNK_ROWS, self.num_items + 1)
            self.cached_codes[start:stop] = self.rqvae.quantizer.codes_of(self.rqvae.encoder(self.text[start:stop]))

    def rows(self, items: torch.Tensor, recon_rows: torch.Tensor | None = None) -> ItemTable:
        """Vectors [M, d] of the given items only (sorted unique indices >= 1), all with gradient.

        The table a pool-based loss needs: nothing outside ``items`` enters the loss, so encoding just these
        rows through the RQ-VAE is exact (not an approximation, unlike the cached rows of ``forward``'s
        batch mode under a full softmax). ``codes`` holds the rows' semantic IDs; ``recon_rows`` (a subset
        of ``items``) limits the reconstruction loss.
        """
        parts: list[torch.Tensor] = []
        zero = self.cold.new_zeros((), dtype=torch.float32)
        codes, commit, recon, norms = None, zero, zero, None
        if self.has_semantic:
            out = self.rqvae(self.text[items])
            rows = items if recon_rows is None else recon_rows
            pos = torch.searchsorted(items, rows)
            recon = self.rqvae.reconstruction_loss(out.z[pos], self.text[rows])
            parts.append(out.z)
            codes, commit, norms = out.codes, out.commit_loss, out.residual_norms
        if self.has_id:
            unknown = self.cold[items]
            if self.training and self.id_dropout > 0:
                unknown = unknown | (torch.rand(len(items), device=items.device) < self.id_dropout)
            parts.append(self.id_vectors(items, unknown))
        return ItemTable(torch.cat(parts, dim=1), codes, commit, recon, norms)

    def forward(self, recon_rows: torch.Tensor | None = None, batch_items: torch.Tensor | None = None) -> ItemTable:
        """The item table; ``recon_rows`` (item indices >= 1) limits the reconstruction loss to those items.

        With ``batch_items`` (sorted unique item indices >= 1) only those items go through the RQ-VAE with
        gradient; every other row is its cached semantic ID (``refresh_codes``) looked up in the current
        codebooks, without gradient. Exact for BCE (whose loss touches batch items only); NOT for full-softmax
        CE: there the items outside the batch sit in the denominator without gradient, and the encoder learns
        to inflate every batch item against them - on Beauty the encoder outputs diverged within 30 steps -
        so the network uses this path for BCE only.
        """
        parts: list[torch.Tensor] = []
        zero = self.cold.new_zeros((), dtype=torch.float32)
        codes, commit, recon, norms = None, zero, zero, None
        if self.has_semantic and batch_items is not None:
            out = self.rqvae(self.text[batch_items])
            rows = batch_items if recon_rows is None else recon_rows
            pos = torch.searchsorted(batch_items, rows)
            recon = self.rqvae.reconstruction_loss(out.z[pos], self.text[rows])
            with torch.no_grad():
                self.cached_codes[batch_items] = out.codes
                books = self.rqvae.quantizer.codebooks.detach()
                levels = torch.arange(books.shape[0], device=books.device)
                z_all = books[levels[None, :], self.cached_codes[1:]].sum(1)
            z = z_all.index_put((batch_items - 1,), out.z)
            parts.append(z)
            codes = self.cached_codes.clone()
            codes[0] = -1
            commit, norms = out.commit_loss, out.residual_norms
        elif self.has_semantic and not (torch.is_grad_enabled() or self.training):
            z_parts, code_parts, commit, norms = [], [], zero, None
            for start in range(1, self.num_items + 1, ENCODE_CHUNK_ROWS):
                stop = min(start + ENCODE_CHUNK_ROWS, self.num_items + 1)
                out = self.rqvae(self.text[start:stop])
                z_parts.append(out.z)
                code_parts.append(out.codes)
                share = (stop - start) / self.num_items  # both are row means: weight each chunk by its rows
                commit = commit + share * out.commit_loss
                if recon_rows is None:
                    recon = recon + share * self.rqvae.reconstruction_loss(out.z, self.text[start:stop])
                norms = share * out.residual_norms if norms is None else norms + share * out.residual_norms
            z_all, all_codes = torch.cat(z_parts), torch.cat(code_parts)
            if recon_rows is not None:
                recon = self.rqvae.reconstruction_loss(z_all[recon_rows - 1], self.text[recon_rows])
            parts.append(z_all)
            codes = torch.cat([all_codes.new_full((1, all_codes.shape[1]), -1), all_codes])
        elif self.has_semantic:
            out = self.rqvae(self.text[1:])
            rows = torch.arange(1, self.num_items + 1, device=self.text.device) if recon_rows is None else recon_rows
            recon = self.rqvae.reconstruction_loss(out.z[rows - 1], self.text[rows])
            parts.append(out.z)
            codes = torch.cat([out.codes.new_full((1, out.codes.shape[1]), -1), out.codes])
            commit, norms = out.commit_loss, out.residual_norms
        if self.has_id:
            index = torch.arange(1, self.num_items + 1, device=self.cold.device)
            unknown = self.cold[1:].clone()
            if self.training and self.id_dropout > 0:
                unknown |= torch.rand(self.num_items, device=index.device) < self.id_dropout
            ids = self.id_vectors(index, unknown)
            if codes is not None and not self.training and self.borrows_ids and bool(self.cold[1:].any()):
                ids = ids.index_put((self.cold[1:],), self.borrowed_ids(codes[1:][self.cold[1:]], codes[1:], ids))
            parts.append(ids)
        vectors = torch.cat(parts, dim=1)
        vectors = torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])
        return ItemTable(vectors, codes, commit, recon, norms)
