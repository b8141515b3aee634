"""``unisem train`` (fit a model on a features folder and its text embeddings) and ``unisem recommend``.

``train --ray`` trains on Ray Train and ``recommend --model models:/<name>@<alias>`` serves a registered
model: both are handled by ``unisem.cli.registry``, called from the handlers here, so each parser is
defined in one place.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", required=True, type=Path, help="features folder (unisem features)")
    p.add_argument("--embeddings", required=True, type=Path, help="text embeddings folder (unisem embed)")
    p.add_argument("--out", required=True, type=Path, help="training folder: model/ and checkpoint/ go here")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint if it exists")
    p.add_argument("--ray", action="store_true", help="train on Ray Train (training.num_workers workers)")


def add_recommend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="model folder (<training out>/model), or a registered model: models:/<name>@<alias>")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id from --features; recommends after the user's whole history")
    who.add_argument("--history", help="comma-separated item ids, oldest first")
    p.add_argument("--features", type=Path, help="features folder holding --user's history")
    p.add_argument("-k", type=int, default=10, help="how many items (default 10)")


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("train", parents=[common], help="train the recommender on a features folder")
    add_train_arguments(p)
    p.set_defaults(handler=run_train)
    r = subparsers.add_parser("recommend", parents=[common], help="top-K items for a user or a history")
    add_recommend_arguments(r)
    r.set_defaults(handler=run_recommend)


def run_train(args: argparse.Namespace) -> int:
    if args.ray:
        from unisem.cli.registry import run_train_ray

        return run_train_ray(args)
    from unisem.cli import config_from_args
    from unisem.data.dataset import load_features
    from unisem.text.embeddings import load_item_embeddings
    from unisem.train import LocalRuntime, fit
    from unisem.train.loop import CHECKPOINT_DIR, require_model

    cfg = config_from_args(args)
    data = load_features(args.features)
    text = load_item_embeddings(args.embeddings) if cfg.model.variant != "id-only" else None
    if text is not None and text.shape[0] != data.num_items + 1:
        raise ValueError(f"{args.embeddings}: {text.shape[0] - 1} item embeddings for {data.num_items} items in {args.features}")
    runtime = LocalRuntime(resume=args.out / CHECKPOINT_DIR if args.resume else None)
    result = fit(cfg, data, text, args.out, runtime)
    require_model(result.best_epoch, result.history, cfg, args.out, users=data.num_users)
    print(json.dumps({"model_dir": str(result.model_dir), "best_epoch": result.best_epoch, "best_metrics": result.best_metrics}, indent=2))
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    from unisem.cli.registry import REGISTRY_URI_PREFIX, run_recommend_registered

    if str(args.model).startswith(REGISTRY_URI_PREFIX):
        return run_recommend_registered(args)
    import numpy as np
    import torch

    from unisem.data.dataset import pad_left
    from unisem.model import load_model

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    model = load_model(args.model)
    if args.user is not None:
        if args.features is None:
            raise ValueError("--user needs --features (the folder holding the user's history)")
        from unisem.data.dataset import load_features

        data = load_features(args.features)
        if data.item_ids != model.item_ids:
            raise ValueError(f"{args.features}: its item vocabulary differs from the model's ({args.model})")
        try:
            u = data.user_ids.index(args.user)
        except ValueError:
            raise ValueError(f"unknown user id {args.user!r} in {args.features}") from None
        history = np.concatenate([data.histories[u], [data.valid_items[u], data.test_items[u]]])
    else:
        history = np.asarray([model.index_of(s.strip()) for s in args.history.split(",") if s.strip()], dtype=np.int64)
    hist = torch.from_numpy(pad_left([history], model.config.data.max_seq_len))
    items, scores = model.recommend(hist, args.k)
    for rank, (i, s) in enumerate(zip(items[0].tolist(), scores[0].tolist()), start=1):
        if s == float("-inf"):
            break
        print(f"{rank}\t{model.item_ids[i - 1]}\t{s:.4f}\t{model.item_titles[i - 1]}")
    return 0
