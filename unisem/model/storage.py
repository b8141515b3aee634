"""The model folder: everything needed to score, without the training data and without pickle.

- ``weights.safetensors``  the network state (includes the frozen text embeddings and the cold-item mask)
- ``config.json``          the full UnisemConfig plus the catalog size and text width
- ``items.json``           item ids, titles and the cold items, aligned with the item indices
- ``codebooks.safetensors`` the quantizer codebooks [L, K, D] and the semantic-ID table [N+1, L] (row 0 = -1)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from unisem.atomic import atomic_dir
from unisem.model.network import UnisemNetwork, unwrap
from unisem.model.recommender import Recommender

FORMAT_VERSION = 1
WEIGHTS, CONFIG, ITEMS, CODEBOOKS = "weights.safetensors", "config.json", "items.json", "codebooks.safetensors"


def write_model_files(network: UnisemNetwork, cfg, item_ids, item_titles, folder: Path,
                      semantic_ids: np.ndarray | None = None) -> None:
    """Write the model files into an existing (temporary) folder; ``semantic_ids`` [N+1, L] are the current
    network's (e.g. from the table validation just computed), else encoded here."""
    from unisem.config import to_dict

    net = unwrap(network)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    text_dim = int(net.items.text.shape[1]) if net.items.has_semantic else 0
    meta = {"format": FORMAT_VERSION, "num_items": net.num_items, "text_dim": text_dim, "config": to_dict(cfg)}
    (folder / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
    cold = torch.nonzero(net.items.cold).flatten().tolist()
    (folder / ITEMS).write_text(json.dumps({"item_ids": list(item_ids), "item_titles": list(item_titles), "cold_items": cold}))
    if net.items.has_semantic:
        if semantic_ids is not None:
            codes = torch.as_tensor(semantic_ids)
        else:
            was_training = net.training
            net.eval()
            codes = net.item_table().codes
            net.train(was_training)
        save_file(
            {"codebooks": net.items.rqvae.quantizer.codebooks.detach().cpu().contiguous(), "semantic_ids": codes.cpu().contiguous()},
            str(folder / CODEBOOKS),
        )


def save_model(network: UnisemNetwork, cfg, item_ids, item_titles, model_dir: str | Path,
               semantic_ids: np.ndarray | None = None) -> Path:
    """Write the model folder atomically (a crash leaves the previous folder intact)."""
    with atomic_dir(model_dir) as tmp:
        write_model_files(network, cfg, item_ids, item_titles, tmp, semantic_ids)
    return Path(model_dir)


def load_network(model_dir: str | Path):
    """(network, config, items meta) from a model folder; only safetensors and JSON are read."""
    from unisem.config import config_from_dict

    folder = Path(model_dir)
    for name in (WEIGHTS, CONFIG, ITEMS):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: not a unisem model folder (missing {name})")
    meta = json.loads((folder / CONFIG).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder / CONFIG}: unsupported model format {meta.get('format')!r}")
    cfg = config_from_dict(meta["config"])
    items = json.loads((folder / ITEMS).read_text())
    n, text_dim = int(meta["num_items"]), int(meta["text_dim"])
    text = torch.zeros(n + 1, text_dim) if text_dim else None
    net = UnisemNetwork(cfg, n, text, torch.as_tensor(np.asarray(items["cold_items"], dtype=np.int64)))
    state = load_file(str(folder / WEIGHTS))
    net.load_state_dict(state)
    return net.eval(), cfg, items


def load_model(model_dir: str | Path) -> Recommender:
    net, cfg, items = load_network(model_dir)
    return Recommender(net, cfg, tuple(items["item_ids"]), tuple(items["item_titles"]))
