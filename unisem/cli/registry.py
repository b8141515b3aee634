"""``unisem register``, ``unisem promote`` and ``unisem recommend-all`` (the MLflow registry), and the
registry side of two commands of ``unisem.cli.train``: ``train --ray`` (``run_train_ray``) and
``recommend --model models:/<name>@<alias>`` (``run_recommend_registered``), which that module's handlers
call by name.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REGISTRY_URI_PREFIX = "models:/"


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "register", parents=[common], help="log a trained model to MLflow and register it (alias challenger)"
    )
    p.add_argument("--run", required=True, help="pipeline run id: reads <UNISEM_HOME>/runs/<run>/...; one "
                   "version per run id (a rerun with the same model reuses it)")
    p.add_argument("--training", type=Path, help="training folder (default: the run's training/)")
    p.add_argument("--features", type=Path, help="features folder (default: the run's features/)")
    p.add_argument("--embeddings", type=Path, help="embeddings folder (default: the run's embeddings/)")
    p.set_defaults(handler=run_register)

    q = subparsers.add_parser(
        "promote", parents=[common], help="move alias champion to the challenger if it wins on today's data"
    )
    q.add_argument("--features", required=True, type=Path, help="current features folder (test split)")
    q.add_argument("--embeddings", type=Path, help="current embeddings (to score items older models never saw)")
    q.add_argument("--run", help="pipeline run id: promotion.json goes to its registry/ folder")
    q.add_argument("--version", help="challenger version (default: the version with alias challenger)")
    q.set_defaults(handler=run_promote)

    b = subparsers.add_parser(
        "recommend-all", parents=[common],
        help="top-K for every user of a features folder with the champion, through Spark -> Parquet",
    )
    b.add_argument("--features", required=True, type=Path, help="features folder: whose users, with what history")
    b.add_argument("--out", required=True, type=Path, help="output folder (Parquet, replaced atomically)")
    b.add_argument("--run-id", required=True, help="pipeline run id written into every row")
    b.add_argument("--published", type=Path, help="also copy the output here (the stable location readers use)")
    b.set_defaults(handler=run_recommend_all)



def _train_result(training: Path):
    """The TrainResult of a finished training folder: model/ plus the loop state in checkpoint/."""
    from unisem.train import TrainResult
    from unisem.train.checkpoint import checkpoint_loop_state
    from unisem.train.loop import CHECKPOINT_DIR, MODEL_DIR

    model_dir = training / MODEL_DIR
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no trained model here (run `unisem train` first)")
    loop = checkpoint_loop_state(training / CHECKPOINT_DIR) or {}
    return TrainResult(model_dir, int(loop.get("best_epoch", 0)), dict(loop.get("best_metrics", {})), list(loop.get("history", [])))


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


def run_register(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.home import RunLayout
    from unisem.registry.registration import log_and_register

    cfg = config_from_args(args)
    layout = RunLayout.for_run(args.run)  # the CLI names the run folder's paths; the library is given them
    result = log_and_register(
        cfg, _train_result(args.training or layout.training), args.run, record_dir=layout.registry,
        features_dir=args.features or layout.features, embeddings_dir=args.embeddings or layout.embeddings,
        metrics_path=_existing(layout.evaluation / "metrics.json"), plots_dir=layout.evaluation,
        verdict_path=_existing(layout.quality / "verdict.json"),
    )
    print(json.dumps(result._asdict(), indent=2, sort_keys=True))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.home import RunLayout
    from unisem.registry.promotion import promote_if_better

    cfg = config_from_args(args)
    record_dir = RunLayout.for_run(args.run).registry if args.run else None
    decision = promote_if_better(cfg, args.features, args.embeddings, record_dir=record_dir,
                                 challenger_version=args.version)
    print(json.dumps(decision._asdict(), indent=2, sort_keys=True))
    return 0


def run_train_ray(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.train.ray_trainer import train_with_ray

    if getattr(args, "resume", False):
        raise ValueError("--resume is for in-process training; on Ray a run resumes from its checkpoint by itself")
    cfg = config_from_args(args)
    result = train_with_ray(cfg, args.features, args.embeddings, args.out)
    print(json.dumps({"model_dir": str(result.model_dir), "best_epoch": result.best_epoch,
                      "best_metrics": result.best_metrics}, indent=2))
    return 0


def run_recommend_registered(args: argparse.Namespace) -> int:
    """``unisem recommend --model models:/unisem@champion (--history a,b,c | --user U --features F)``.

    Goes through the pyfunc's ``predict``, the very code ``mlflow models serve`` runs, so the CLI and the
    REST endpoint give the same answer: unknown ids dropped and named, the fallback for a history with
    nothing known left (``unisem.registry.answers``). Ranked items go to stdout, ``source`` and the dropped
    ids to stderr.
    """
    import sys

    import mlflow
    import pandas as pd

    from unisem.cli import config_from_args
    from unisem.registry.tracking import configure

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    configure(config_from_args(args))
    uri = str(args.model)
    loaded = mlflow.pyfunc.load_model(uri)
    serving = loaded.unwrap_python_model().serving
    if args.user is not None:
        if args.features is None:
            raise ValueError("--user needs --features (the folder holding the user's history)")
        from unisem.data.dataset import load_features

        data = load_features(args.features)
        try:
            u = data.user_ids.index(args.user)
        except ValueError:
            raise ValueError(f"unknown user id {args.user!r} in {args.features}") from None
        indices = [*data.histories[u].tolist(), int(data.valid_items[u]), int(data.test_items[u])]
        history = [data.item_ids[i - 1] for i in indices]
    else:
        history = [s.strip() for s in args.history.split(",") if s.strip()]
    row = loaded.predict(pd.DataFrame({"history": [history]}), params={"k": args.k}).iloc[0]
    unknown = list(row["unknown_ids"])
    note = f"source: {row['source']}"
    if unknown:
        note += f"; unknown item ids dropped: {', '.join(unknown)}"
    print(note, file=sys.stderr)
    titles = serving.recommender.item_titles
    for rank, (item, score) in enumerate(zip(row["item_ids"], row["scores"]), start=1):
        i = serving.index[item]
        title = titles[i - 1] if i - 1 < len(titles) else ""
        print(f"{rank}\t{item}\t{float(score):.4f}\t{title}")
    return 0


def run_recommend_all(args: argparse.Namespace) -> int:
    """``unisem recommend-all``: also the body of ``jobs/recommend.py`` under spark-submit."""
    from unisem.cli import config_from_args
    from unisem.registry.batch import recommend_all

    manifest = recommend_all(config_from_args(args), args.features, args.out, args.run_id, published_dir=args.published)
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0
