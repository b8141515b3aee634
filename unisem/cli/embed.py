"""``unisem embed``: encode the item texts of a features folder with the cached sentence encoder."""
from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "embed",
        parents=[common],
        help="text embeddings of a features folder's items (cached by text hash and model)",
        description="Writes item_embeddings.safetensors (float32 [N+1, dim], row 0 = padding) and meta.json.",
    )
    p.add_argument("--features", required=True, help="features folder (its items table has the texts)")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--cache", default=None, help="embedding cache folder (default: UNISEM_HOME/cache/embeddings)")
    p.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unisem.cli import config_from_args
    from unisem.data.dataset import read_item_texts
    from unisem.text.embeddings import embed_item_texts, load_embedding_meta

    cfg = config_from_args(args)
    features = Path(args.features)
    out = embed_item_texts(read_item_texts(features).texts, Path(args.out), cfg.text,
                           Path(args.cache) if args.cache else None, features_dir=features)
    meta = load_embedding_meta(out)
    s = meta["stats"]
    print(
        f"embedded {meta['items']:,} items with {meta['model']} (dim {meta['dim']}): {s['encoded']:,} encoded, "
        f"{s['cache_hits']:,} from the cache -> {out}"
    )
    return 0
