"""What `make run` costs: the nightly DAG through Airflow on the demo data, twice in a fresh UNISEM_HOME.

    python benchmarks/pipeline_run.py [--config configs/demo.yaml] [--runs 2] [--home DIR]

Each run is ``unisem run --config <config> --date <day i>`` (the command `make run` executes, with explicit
logical dates one day apart), so the first run builds everything (Airflow database, demo data, embedding
cache) and registers the first champion, and the second registers a challenger and decides its promotion.
Records per run: wall seconds, exit code, the run summary's status, gate verdict, model version, promotion
decision, full/NDCG@10, and every task's duration from Airflow's own metadata database. Also the load
average before and after, since the machine is shared. Writes benchmarks/results/pipeline_run.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "pipeline_run.json"
TABLE = HERE / "results" / "pipeline_run.md"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--home", type=Path, default=None, help="UNISEM_HOME to use (default: a fresh temporary one)")
    p.add_argument("--first-date", default="2026-01-01")
    return p.parse_args(argv)


def task_durations(home: Path, logical_date: str) -> dict[str, float | None]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT ti.task_id, ti.duration, ti.state FROM task_instance ti JOIN dag_run dr ON ti.run_id = dr.run_id"
            " AND ti.dag_id = dr.dag_id WHERE dr.dag_id = 'unisem_nightly' AND date(dr.logical_date) = ?",
            (logical_date,),
        ).fetchall()
    return {task: (round(d, 1) if d is not None else None) for task, d, _ in rows}


def one_run(home: Path, config: str, logical_date: str) -> dict:
    from unisem.pipeline.spec import run_id_for

    cmd = [str(Path(sys.executable).parent / "unisem"), "run", "--config", config, "--date", logical_date]
    env = {**os.environ, "UNISEM_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - start
    (home / f"unisem-run-{logical_date}.out").write_text(proc.stdout + proc.stderr)
    summary_path = home / "runs" / run_id_for(logical_date) / "report" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    promo = summary.get("promotion") or {}
    run = home / "runs" / run_id_for(logical_date)
    promotion = _read(run / "registry" / "promotion.json")
    registration = _read(run / "registry" / "registration.json")
    comparison = promotion.get("comparison") or {}
    return {
        "logical_date": logical_date,
        "wall_seconds": round(wall, 1),
        "exit_code": proc.returncode,
        "status": summary.get("status"),
        "gate_verdict": (summary.get("gate") or {}).get("verdict"),
        "model_version": (summary.get("model") or {}).get("version"),
        "promoted": promo.get("promoted"),
        "promotion_reason": promo.get("reason"),
        "full/NDCG@10": (summary.get("metrics") or {}).get("full/NDCG@10"),
        "task_seconds": task_durations(home, logical_date),
        "data_version": (registration.get("tags") or {}).get("data_version"),
        "interval": promotion.get("interval"),
        "guardrails": promotion.get("guardrails"),
        "comparison": {p: {m: e for m, e in table.items() if m in HEADLINE}
                       for p, table in (comparison.get("protocols") or {}).items()},
        "slices": {name: {"users": e.get("users"), **((e.get("full") or {}).get("NDCG@10") or {})}
                   for name, e in (comparison.get("slices") or {}).items()},
        "codebook_usage": {who: d.get("codebook_usage") for who, d in (comparison.get("diagnostics") or {}).items()},
        "epoch_lines": [line.strip() for line in proc.stdout.splitlines() if "epoch " in line and " loss " in line],
        "printed": proc.stdout.splitlines()[-20:],
    }


HEADLINE = ("NDCG@10", "HR@10", "MRR")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _f(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def comparison_lines(r: dict) -> list[str]:
    """The last night's comparison page in Markdown: both protocols, the slices, the interval."""
    iv = r.get("interval") or {}
    lines = [f"Night {r['logical_date']}: {'promoted' if r['promoted'] else 'not promoted'}: {r['promotion_reason']}", ""]
    if iv:
        lines += [f"Promotion interval ({iv.get('level', 0):.0%}, {iv.get('resamples')} paired resamples over "
                  f"{iv.get('users')} test users): gain {_f(iv.get('mean'), True)} "
                  f"[{_f(iv.get('low'), True)}, {_f(iv.get('high'), True)}]", ""]
    lines += ["| protocol | metric | challenger | champion | delta | interval |", "|---|---|---|---|---|---|"]
    for protocol, table in (r.get("comparison") or {}).items():
        for m, e in table.items():
            lines.append(f"| {protocol} | {m} | {_f(e.get('challenger'))} | {_f(e.get('champion'))} | "
                         f"{_f(e.get('delta'), True)} | [{_f(e.get('low'), True)}, {_f(e.get('high'), True)}] |")
    if r.get("slices"):
        lines += ["", "| slice (full/NDCG@10) | users | challenger | champion | delta | interval |", "|---|---|---|---|---|---|"]
        for name, e in r["slices"].items():
            lines.append(f"| {name} | {e.get('users')} | {_f(e.get('challenger'))} | {_f(e.get('champion'))} | "
                         f"{_f(e.get('delta'), True)} | [{_f(e.get('low'), True)}, {_f(e.get('high'), True)}] |")
    for g in r.get("guardrails") or ():
        state = "no users" if g.get("drop") is None else ("breached" if g.get("breached") else "ok")
        lines.append(f"- guardrail {g['slice']}: {state} (drop {_f(g.get('drop'), True)}, max {g.get('max_drop')})")
    usage = r.get("codebook_usage") or {}
    if usage:
        lines += ["", "Codebook usage per level: " + "; ".join(
            f"{who} {', '.join(f'{u:.0%}' for u in (levels or []))}" for who, levels in usage.items())]
    return lines


def main(argv=None) -> int:
    args = parse(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="unisem-pipeline-bench-"))
    load_before = os.getloadavg()
    first = date.fromisoformat(args.first_date)
    runs = [one_run(home, args.config, (first + timedelta(days=i)).isoformat()) for i in range(args.runs)]
    result = {
        "command": "python " + shlex.join(["benchmarks/pipeline_run.py", *(argv if argv is not None else sys.argv[1:])]),
        "each_run": f"unisem run --config {args.config} --date <day>  (what `make run` executes)",
        "config": args.config,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "note": "shared 2-core machine; other engineers' jobs ran at the same time (see load averages)",
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# `make run` on the demo data ({args.config})", "", f"Command: `{result['command']}`; "
             f"load average before {result['load_average_before']}, after {result['load_average_after']} "
             f"on {result['cpus']} CPUs.", "",
             "| run | wall s | exit | status | gate | version | promoted | full/NDCG@10 |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs, 1):
        ndcg = r["full/NDCG@10"]
        lines.append(f"| {i} | {r['wall_seconds']} | {r['exit_code']} | {r['status']} | {r['gate_verdict']} | "
                     f"{r['model_version']} | {r['promoted']} | {'-' if ndcg is None else f'{ndcg:.4f}'} |")
    lines += ["", "Task seconds (Airflow metadata):", "", "| task | " + " | ".join(f"run {i}" for i in range(1, len(runs) + 1)) + " |",
              "|---|" + "---|" * len(runs)]
    from unisem.pipeline.records import STAGES

    tasks = [t for t in (*STAGES, "watcher") if runs and t in runs[0]["task_seconds"]]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(str(r["task_seconds"].get(t)) for r in runs) + " |")
    versions = [r.get("data_version") for r in runs]
    if all(versions):
        lines += ["", "data_version of each night: " + ", ".join(f"`{v[:12]}`" for v in versions)
                  + (" (identical data, identical version)" if len(set(versions)) == 1 else "")]
    if runs and runs[-1].get("epoch_lines"):
        lines += ["", "Progress printed by the last night (`unisem run`):", ""]
        lines += [f"    {line}" for line in runs[-1]["epoch_lines"][:6]]
    if len(runs) > 1:
        lines += ["", "## The last night's comparison page (report/compare.html)", ""] + comparison_lines(runs[-1])
    TABLE.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
