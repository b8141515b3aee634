"""The Amazon Beauty benchmark: one model variant per invocation, merged into benchmarks/results/beauty.json.

    python benchmarks/beauty.py --variant unified --distance hybrid --loss ce [--seed 42] [--max-epochs 200]

Trains on the leave-one-out split (early stopping on validation full-ranking NDCG@10), evaluates the best
checkpoint on the test split under both protocols ("full" and "sampled-99"), and writes one row per
protocol (replacing earlier rows of the same key, below), then regenerates beauty.md.
``--speed-only`` measures one training epoch and one validation pass without writing rows.

Besides the issue's fields, each row records the training budget (max_epochs, patience), whether early
stopping ended the run (a run cut by max_epochs may still have been improving), wall and CPU seconds, the
device, and any ``--set`` overrides of the paper configuration. Rows are keyed by variant, distance, loss,
seed, protocol, device and overrides, so a GPU rerun never replaces the CPU rows that the speed targets
are measured on. ``--time-budget`` stops training after the epoch that passes it and evaluates the best
checkpoint (the row says ``cut_by_time_budget``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from unisem.config.schema import MODEL_VARIANTS as MODELS  # noqa: E402
from unisem.config.schema import ModelConfig  # noqa: E402

RESULTS = HERE / "results" / "beauty.json"
METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR")
KEY = ("variant", "distance", "loss", "seed", "protocol", "device", "overrides", "cold_item_share", "slice")
# Rows written before these fields existed: on the CPU, the paper configuration, no cold holdout, all users.
ROW_DEFAULTS = {"device": "cpu", "overrides": "", "cold_item_share": 0.0, "slice": "all"}
# Untrained reference scorers (unisem.evaluate.baselines): no epochs, no codebooks.
BASELINES = ("text-knn", "popularity")
# The text-kNN window is chosen on the validation split among these (the test split never chooses).
KNN_WINDOWS = (1, 2, 3, 5)
# The text prior for items without interactions (model.new_item_prior=text) is set on the validation split:
# the best all-users full NDCG@10 among the settings that keep the warm slice's within WARM_TOLERANCE of the
# model without the prior (the cold-start target's own condition).
PRIOR_BIASES = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0)
PRIOR_TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
WARM_TOLERANCE = 0.02
SLICE_ORDER = {"all": 0, "warm": 1, "cold": 2}
# Where the product's defaults differ from the paper (Lin et al. 2025): 8-d ID embeddings.
PAPER = ("model.id_dim=8",)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=(*MODELS, *BASELINES), required=True)
    p.add_argument("--distance", choices=("hybrid", "cosine", "euclidean"), default="hybrid")
    p.add_argument("--loss", choices=("bce", "ce", "sampled"), default="ce")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--item-table", choices=("batch", "full"), default="batch")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the environment's default)")
    p.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1, ...")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override on top of the paper configuration, e.g. model.id_dim=32 (repeatable)")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds of training after which the run stops at the end of the epoch (0: none)")
    p.add_argument("--cold-share", type=float, default=0.0,
                   help="share of items held out of training entirely (data.cold_item_share; rows then give "
                        "all / warm / cold target slices)")
    p.add_argument("--results", type=Path, default=RESULTS, help="rows file (the table is written beside it)")
    p.add_argument("--speed-only", action="store_true", help="time one epoch; write no rows")
    p.add_argument("--work", type=Path, default=None, help="training folder (default: UNISEM_HOME/bench/...)")
    p.add_argument("--new-item-prior", action="store_true",
                   help="with --cold-share: also rank the held-out items by the text prior (model.new_item_prior=text), "
                        "its setting chosen on the validation split (in each row's new_item_setting)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="no training: evaluate the best model of an earlier (possibly interrupted) run in --work")
    return p.parse_args(argv)


class TimeBudgetExceeded(Exception):
    """Raised after an epoch's checkpoint once the run's time budget is spent."""


class TimingRuntime:
    """LocalRuntime that prints each epoch's record (for the log) and enforces the time budget."""

    def __init__(self, device: str = "cpu", time_budget: float = 0.0):
        from unisem.train import LocalRuntime

        self.inner = LocalRuntime(device)
        self.rank, self.world_size, self.device = 0, 1, self.inner.device
        self.deadline = time.perf_counter() + time_budget if time_budget > 0 else None

    is_main = property(lambda self: True)

    def prepare_model(self, model):
        return self.inner.prepare_model(model)

    def shard(self, indices):
        return indices

    def resume_from(self):
        return None

    def report(self, metrics, checkpoint_dir):
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}), flush=True)
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise TimeBudgetExceeded


ORDER = {v: i for i, v in enumerate((*MODELS, *BASELINES))}


def config_of(r: dict) -> tuple:
    """What a row measures apart from its seed: rows with equal config_of are seeds of one configuration."""
    return (r["protocol"], ORDER[r["variant"]], r["variant"], r["distance"], r["loss"], r["device"], r["overrides"],
            r["cold_item_share"], SLICE_ORDER[r["slice"]], r["slice"])


def render_table(rows: list[dict]) -> str:
    head = "| variant | distance | loss | overrides | device | protocol | seed | HR@1 | HR@5 | HR@10 | NDCG@5 | NDCG@10 | MRR | epochs (best/ran/max) | s/epoch train | s/valid | s to best | collisions | emb. params |\n"
    head += "|" + "---|" * 19 + "\n"
    rows = complete(rows)
    for r in sorted((r for r in rows if not r["cold_item_share"]), key=lambda r: (config_of(r), r["seed"])):
        m = r["metrics"]
        coll = "-" if r["collision_rate"] is None else f"{r['collision_rate']:.3f}"
        head += (
            f"| {r['variant']} | {r['distance']} | {r['loss']} | {r['overrides'] or '-'} | {r['device']} | {r['protocol']} | {r['seed']} | "
            + " | ".join(f"{m[k]:.4f}" for k in METRICS)
            + f" | {r['best_epoch']}/{r['epochs']}/{r['max_epochs']}{'' if r['stopped_early'] else '*'} | "
            f"{r['seconds_per_epoch']:.1f} | {r['valid_seconds']:.1f} | {r['wall_seconds_to_best']:.0f} | {coll} | {r['embedding_params']:,} |\n"
        )
    return head


def render_summary(rows: list[dict]) -> str:
    """Mean and sample standard deviation over seeds of each configuration (the headline figures)."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in complete(rows):
        if not r["cold_item_share"]:
            groups.setdefault(config_of(r), []).append(r)
    out = "| variant | distance | loss | overrides | device | protocol | seeds | HR@10 mean ± sd | NDCG@10 mean ± sd | MRR mean ± sd |\n"
    out += "|" + "---|" * 10 + "\n"
    for key in sorted(groups):
        group = groups[key]
        cells = []
        for k in ("HR@10", "NDCG@10", "MRR"):
            values = [g["metrics"][k] for g in group]
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            cells.append(f"{statistics.mean(values):.4f} ± {sd:.4f}" if len(values) > 1 else f"{values[0]:.4f}")
        protocol, _, variant, distance, loss, device, overrides = key[:7]
        seeds = ",".join(str(s) for s in sorted(g["seed"] for g in group))
        out += f"| {variant} | {distance} | {loss} | {overrides or '-'} | {device} | {protocol} | {seeds} | " + " | ".join(cells) + " |\n"
    return out


# The efficiency table's reference: id-only (SASRec) at its default width.
ID_ONLY_WIDTH = ModelConfig().id_only_dim


def id_width(r: dict) -> int | None:
    """The ID part's width of a unified or id-only row whose only override sets it (None for any other row)."""
    paper = dict(o.split("=") for o in PAPER)
    defaults = {"unified": ("model.id_dim", int(paper["model.id_dim"])), "id-only": ("model.id_only_dim", ID_ONLY_WIDTH)}
    if r["variant"] not in defaults or r["distance"] not in ("hybrid", "none"):
        return None
    key, width = defaults[r["variant"]]
    if not r["overrides"]:
        return width
    name, _, value = r["overrides"].partition("=")
    return int(value) if name == key and " " not in r["overrides"] else None


def render_efficiency(rows: list[dict]) -> str:
    """The efficiency question: full-ranking NDCG@10 by ID width, with the embedding parameters it costs and
    the ratio to id-only with 64-d IDs under the same loss and device."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in complete(rows):
        width = id_width(r)
        if r["protocol"] == "full" and not r["cold_item_share"] and width is not None:
            groups.setdefault((r["loss"], r["device"], ORDER[r["variant"]], r["variant"], width), []).append(r)
    out = ("| loss | device | variant | ID width | embedding params | seeds | NDCG@10 | vs id-only 64-d |\n"
           + "|" + "---|" * 8 + "\n")
    for key in sorted(groups):
        loss, device, _, variant, width = key
        mean = statistics.mean(g["metrics"]["NDCG@10"] for g in groups[key])
        ref = groups.get((loss, device, ORDER["id-only"], "id-only", ID_ONLY_WIDTH))
        ratio = f"{mean / statistics.mean(g['metrics']['NDCG@10'] for g in ref):.3f}" if ref else "-"
        seeds = ",".join(str(g["seed"]) for g in sorted(groups[key], key=lambda g: g["seed"]))
        out += (f"| {loss} | {device} | {variant} | {width} | {groups[key][0]['embedding_params']:,} | {seeds} "
                f"| {mean:.4f} | {ratio} |\n")
    return out


def render_cold(rows: list[dict]) -> str:
    """The cold-start question: per configuration and protocol, all / warm / cold target slices (mean ± sd
    over seeds) with the number of users in each slice."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in complete(rows):
        if r["cold_item_share"]:
            groups.setdefault(config_of(r), []).append(r)
    if not groups:
        return "No cold-start rows yet (`--cold-share 0.1`).\n"
    out = ("| cold share | variant | loss | overrides | device | protocol | slice | users | seeds "
           "| HR@10 | NDCG@10 | MRR |\n" + "|" + "---|" * 12 + "\n")
    for key in sorted(groups, key=lambda k: (k[7], k[0], k[1:])):
        group = groups[key]
        protocol, _, variant, _, loss, device, overrides, share, _, slice_name = key
        cells = []
        for k in ("HR@10", "NDCG@10", "MRR"):
            values = [g["metrics"][k] for g in group]
            cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1
                         else f"{values[0]:.4f}")
        seeds = ",".join(str(s) for s in sorted(g["seed"] for g in group))
        users = group[0].get("users", "-")
        loss_cell = "-" if variant in BASELINES else loss
        out += (f"| {share:g} | {variant} | {loss_cell} | {overrides or '-'} | {device} | {protocol} | {slice_name} "
                f"| {users} | {seeds} | " + " | ".join(cells) + " |\n")
    return out


def overrides_key(overrides) -> str:
    """How a row records its ``--set`` overrides: sorted, space-separated ("" for the paper configuration)."""
    return " ".join(sorted(overrides))


def complete(rows: list[dict]) -> list[dict]:
    """Rows completed with the fields they predate (``ROW_DEFAULTS``)."""
    return [{**ROW_DEFAULTS, **r} for r in rows]


def load_rows(results: Path = RESULTS) -> list[dict]:
    """The rows of a results file, older rows completed with the fields they predate."""
    return complete(json.loads(results.read_text()) if results.exists() else [])


def cpu_duration_estimate(rows: list[dict]) -> str:
    """What the GPU rows' runs would cost on the CPU machine: each run's epochs times the CPU seconds per
    epoch of the CPU row of the same variant, loss and overrides, else of that variant's paper configuration,
    else of the unified model's (an upper bound: the other variants drop a part of it)."""
    cost = {}
    rows = complete(rows)
    for r in rows:
        if r["device"] == "cpu" and r["protocol"] == "full" and r["slice"] == "all" and r.get("cpu_seconds_per_epoch"):
            cost.setdefault((r["variant"], r["loss"], r["overrides"]), r["cpu_seconds_per_epoch"])
    runs = [r for r in rows if r["device"] != "cpu" and r["protocol"] == "full" and r["slice"] == "all"]
    total, longest, approximated = 0.0, 0.0, 0
    for r in runs:
        tries = ((r["variant"], r["loss"], r["overrides"]), (r["variant"], r["loss"], ""), ("unified", r["loss"], ""))
        found = [cost[t] for t in tries if t in cost]
        if not found:
            return f"no CPU row of {r['loss']} to estimate the CPU duration from"
        per_epoch = found[0]
        approximated += (r["variant"], r["loss"], r["overrides"]) not in cost
        total += r["epochs"] * per_epoch
        longest = max(longest, r["epochs"] * per_epoch)
    if not runs:
        return "no GPU rows"
    return (f"{len(runs)} GPU runs would take about {total / 3600:.1f} CPU-hours on the CPU machine (one thread "
            f"per run; the longest {longest / 60:.0f} CPU-minutes); {approximated} of them priced at a related "
            f"configuration's cost per epoch for want of a CPU row of their own.")


def merge_rows(new_rows: list[dict], results: Path = RESULTS) -> list[dict]:
    """Replace this run's rows in the rows file under a file lock (several variants run side by side)."""
    import fcntl

    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results.parent / ".beauty.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _merge_rows_locked(new_rows, results)


def _merge_rows_locked(new_rows: list[dict], results: Path) -> list[dict]:
    rows, new_rows = load_rows(results), complete(new_rows)
    keys = {tuple(r[k] for k in KEY) for r in new_rows}
    rows = [r for r in rows if tuple(r[k] for k in KEY) not in keys] + new_rows
    from unisem.atomic import write_text_atomic

    write_text_atomic(results, json.dumps(rows, indent=1) + "\n")
    table = results.with_suffix(".md")
    text = table.read_text() if table.exists() else ""
    notes = text.split("<!-- rows -->")[-1] if "<!-- rows -->" in text else ""
    write_text_atomic(
        table,
        "# Amazon Beauty benchmark (generated tables; notes below)\n\n## Mean over seeds\n\n" + render_summary(rows)
        + "\n## Cold start (items held out of training; test targets by slice)\n\n" + render_cold(rows)
        + "\n## Efficiency: full ranking by ID width (no holdout)\n\n" + render_efficiency(rows)
        + "\n## Every run (no cold holdout)\n\n" + render_table(rows) + "\nExpected CPU duration of the GPU grid: "
        + cpu_duration_estimate(rows) + "\n\n<!-- rows -->" + notes,
    )
    return rows


def rerun_command(argv: list[str]) -> str:
    """The command that made a row, without the options that only say where outputs go."""
    from result_file import rerun_command as command

    return command("benchmarks/beauty.py", argv)


def result_from_checkpoint(work: Path):
    from unisem.train import TrainResult

    loop = json.loads((work / "checkpoint" / "state.json").read_text())["loop"]
    return TrainResult(work / "model", int(loop["best_epoch"]), loop["best_metrics"], loop["history"])


def runtime_device(args) -> str:
    """"cpu" or "cuda" (the kind, not the index), as the rows and their key record it."""
    return args.device.split(":")[0]


def slice_users(report, name: str) -> int:
    return int(report.users if name == "all" else report.slices[name]["users"])


def slice_metrics(report, protocol: str, name: str) -> dict:
    m = report.protocols[protocol] if name == "all" else report.slices[name][protocol]
    return {k: (None if m[k] is None or m[k] != m[k] else float(m[k])) for k in METRICS}


def baseline_scorer(args, data, text, cfg):
    """The untrained scorer of ``args.variant``; text-kNN picks its window on the validation split."""
    from unisem.evaluate.baselines import popularity_scorer, text_knn_scorer
    from unisem.evaluate.protocols import evaluate

    if args.variant == "popularity":
        return popularity_scorer(data), {}
    valid = {w: evaluate(text_knn_scorer(text, w), data, cfg.evaluation, split="valid", max_len=cfg.data.max_seq_len,
                         protocols=("full",), slices=False).metric("full/NDCG@10") for w in KNN_WINDOWS}
    window = max(valid, key=lambda w: (valid[w], -w))
    return text_knn_scorer(text, window), {"knn_window": window, "valid_ndcg10_by_window": valid}


def prior_overrides(bias: float, temperature: float) -> dict:
    return {"new_item_prior": "text", "new_item_bias": bias, "new_item_temperature": temperature}


def with_model_settings(model, settings: dict):
    """The trained ``model`` (a Recommender) scoring under other ``model.*`` settings (no retraining)."""
    from unisem.config import replace_in
    from unisem.model import Recommender

    return Recommender(model.network, replace_in(model.config, model=settings), model.item_ids, model.item_titles)


def choose_prior(model, data) -> tuple[dict | None, dict]:
    """The text prior's setting for a trained ``model`` (a Recommender), chosen on the validation split
    (``WARM_TOLERANCE``), and every setting's validation figures. None when no setting keeps the warm slice
    within tolerance."""
    from unisem.evaluate.protocols import evaluate

    def valid(model_cfg: dict) -> dict:
        rec = with_model_settings(model, model_cfg)
        cfg = rec.config
        r = evaluate(rec.scorer(), data, cfg.evaluation, split="valid", max_len=cfg.data.max_seq_len,
                     protocols=("full",), slices=True)
        return {"all": r.metric("full/NDCG@10"), "warm": r.slices["warm"]["full"]["NDCG@10"],
                "cold_hr10": r.slices["cold"]["full"]["HR@10"]}

    base = valid({"new_item_prior": "none"})
    grid = {f"{b:g}/{t:g}": valid(prior_overrides(b, t)) for b in PRIOR_BIASES for t in PRIOR_TEMPERATURES}
    extra = {"prior_valid_without": base, "prior_valid_grid": grid, "prior_warm_tolerance": WARM_TOLERANCE}
    best = pick_prior(base["warm"], grid, WARM_TOLERANCE)
    if best is None:
        return None, extra
    bias, temperature = (float(x) for x in best.split("/"))
    return prior_overrides(bias, temperature), extra


def pick_prior(base_warm: float, grid: dict[str, dict], tolerance: float) -> str | None:
    """The grid key with the best all-users NDCG@10 among those whose warm slice stays within ``tolerance``
    (relative) of ``base_warm``; ties go to the first key. None when none does."""
    allowed = [k for k, v in grid.items() if v["warm"] >= (1 - tolerance) * base_warm]
    return max(allowed, key=lambda k: grid[k]["all"], default=None)


def slice_rows(run: dict, report, cold: bool, overrides: str, extra: dict) -> list[dict]:
    """The rows of one evaluated scoring: per protocol, the all / warm / cold slices (all only without a
    holdout); ``run`` holds what the rows share (the training run's facts and its command)."""
    return [{**run, "protocol": protocol, "slice": slice_name, "users": slice_users(report, slice_name),
             "metrics": slice_metrics(report, protocol, slice_name), "overrides": overrides,
             "load_average": list(os.getloadavg()), **extra}
            for protocol in ("full", "sampled-99") for slice_name in (("all", "warm", "cold") if cold else ("all",))]


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    from beauty_data import beauty_embeddings, load_beauty

    from unisem.config import load_config, replace_in
    from unisem.evaluate.diagnostics import codebook_usage, collision_rate, embedding_params_for, item_codes
    from unisem.evaluate.protocols import evaluate
    from unisem.home import unisem_home
    from unisem.model import load_model
    from unisem.train import fit

    baseline = args.variant in BASELINES
    # The paper's configuration is the base whatever the product defaults say; --set changes it.
    base = load_config(overrides=[*PAPER, *args.overrides])
    cfg = replace_in(
        base,
        model={} if baseline else {"variant": args.variant},
        quantizer={"distance": args.distance},
        data={"cold_item_share": args.cold_share},
        training={"loss": args.loss, "seed": args.seed, "max_epochs": 1 if args.speed_only else args.max_epochs,
                  "patience": args.patience, "show_progress": False, "item_table": args.item_table},
        evaluation={"ks": [1, 5, 10, 20]},
    )
    data = load_beauty(cold_share=cfg.data.cold_item_share, cold_seed=cfg.data.seed)
    text = beauty_embeddings(data.item_texts)
    overrides = overrides_key(args.overrides)
    device = runtime_device(args)
    name = f"{args.variant}-{args.distance}-{args.loss}-s{args.seed}" + "".join(f"-{o}" for o in sorted(args.overrides))
    name += f"-cold{args.cold_share:g}" if args.cold_share else ""
    work = args.work or unisem_home() / "bench" / "beauty" / name
    extra: dict = {}
    if baseline:
        if args.speed_only or args.evaluate_only:
            raise SystemExit(f"--variant {args.variant} trains nothing: --speed-only/--evaluate-only do not apply")
        t0, c0 = time.perf_counter(), time.process_time()
        score, extra = baseline_scorer(args, data, text, cfg)
        hist, best, cut, wall_to_best = [], 0, False, 0.0
        train_s = valid_s = 0.0
        cpu_s = time.process_time() - c0
        wall = time.perf_counter() - t0
        embedding_params, codes = 0, None
    else:
        cut = bool(args.evaluate_only)
        if not args.evaluate_only:
            runtime = TimingRuntime(args.device, args.time_budget)
            try:
                result = fit(cfg, data, text, work, runtime)
            except TimeBudgetExceeded:
                cut = True
        if cut:
            # A run stopped by a time budget: its checkpoint holds the history, model/ the best epoch.
            result = result_from_checkpoint(work)
        wall = float(sum(h["train_seconds"] + h["valid_seconds"] for h in result.history))
        hist = result.history
        train_s = float(np.mean([h["train_seconds"] for h in hist]))
        valid_s = float(np.mean([h["valid_seconds"] for h in hist]))
        cpu_s = float(np.mean([h["cpu_seconds"] for h in hist]))
        print(json.dumps({"run": name, "train_seconds_per_epoch": train_s, "valid_seconds": valid_s,
                          "cpu_seconds_per_epoch": cpu_s, "threads": torch.get_num_threads()}), flush=True)
        if args.speed_only:
            return 0
        model = load_model(result.model_dir)
        score = model.score
        codes = None if model.semantic_ids is None else item_codes(np.asarray(model.semantic_ids))
        embedding_params = int(embedding_params_for(cfg, data.num_items).params)
        best = result.best_epoch
        wall_to_best = float(sum(h["train_seconds"] + h["valid_seconds"] for h in hist[:best]))
        extra = {"valid_best": result.best_metrics}
    cold = bool(args.cold_share)
    # (score function, overrides, extra fields) per set of rows: the model as trained, and with the text prior
    scorings = [(score, overrides, extra)]
    if args.new_item_prior:
        if baseline or not cold:
            raise SystemExit("--new-item-prior needs a trained model and --cold-share")
        chosen, prior_extra = choose_prior(model, data)
        if chosen is None:
            raise SystemExit(f"no text prior setting keeps the warm slice within {WARM_TOLERANCE:.0%}: {prior_extra}")
        with_prior = with_model_settings(model, chosen)
        # keyed by the procedure (the prior, its setting chosen on validation), so seeds that chose differently
        # still aggregate; the setting each chose is in the row
        scorings.append((with_prior.score, overrides_key([*args.overrides, "model.new_item_prior=text"]),
                         {**extra, **prior_extra, "new_item_setting": chosen}))
    run = {
        "variant": args.variant,
        "distance": args.distance if args.variant in ("unified", "semantic-only") else "none",
        "loss": "none" if baseline else args.loss,
        "cold_item_share": float(args.cold_share),
        "epochs": len(hist),
        "seconds_per_epoch": train_s,
        "embedding_params": embedding_params,
        "collision_rate": None if codes is None else float(collision_rate(codes)),
        "codebook_usage": [] if codes is None else [float(u) for u in codebook_usage(codes, cfg.quantizer.codebook_size)],
        "seed": args.seed,
        "command": rerun_command(argv if argv is not None else sys.argv[1:]),
        "best_epoch": best,
        "max_epochs": 0 if baseline else args.max_epochs,
        "patience": args.patience,
        "stopped_early": baseline or (len(hist) < args.max_epochs and not cut),
        "cut_by_time_budget": cut,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "time_budget": args.time_budget,
        "valid_seconds": valid_s,
        "cpu_seconds_per_epoch": cpu_s,
        "wall_seconds_to_best": wall_to_best,
        "wall_seconds": wall,
        "threads": torch.get_num_threads(),
        "item_table": args.item_table,
    }
    rows = []
    for score, overrides, extra in scorings:
        report = evaluate(score, data, cfg.evaluation, split="test", max_len=cfg.data.max_seq_len,
                          protocols=("full", "sampled-99"), slices=cold)
        rows += slice_rows(run, report, cold, overrides, extra)
        print(json.dumps({"run": name, "overrides": overrides, "test": {p: report.protocols[p] for p in report.protocols},
                          "slices": {k: v for k, v in report.slices.items() if k in ("warm", "cold")}}), flush=True)
    merge_rows(rows, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
