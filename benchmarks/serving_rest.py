"""REST latency and throughput of the champion behind ``mlflow models serve`` on Amazon Beauty.

1. A Beauty champion (once per ``--home``; ``--retrain`` to redo it): the Beauty features, the cached MiniLM
   embeddings (``beauty_data.py``), a short in-process training (``--epochs``, ``--loss``: CPU time on the
   shared machine is scarce, so this model is for timing, not for quality), registered and promoted.
2. ``mlflow models serve -m models:/unisem@champion --env-manager local`` on 127.0.0.1 on a free port, one
   worker, waited for with a bounded ``/ping`` loop; stopped by its PID (process group) at the end.
3. ``--singles`` requests of one user each and ``--batches`` requests of ``--batch-users`` users, one client,
   sequential, keep-alive; the histories are real Beauty test-time histories (every user's history up to the
   test item), top-10 with seen items excluded. Plus one request with an unknown id and an empty history, to
   record what the response says.

Writes benchmarks/results/serving_rest.json. Skips (exit 0, with a message) when the Beauty data is absent.

    .venv/bin/python benchmarks/serving_rest.py --epochs 2 --loss bce [--text random]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "serving_rest.json"
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from result_file import machine_fields, write_result  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, default=None, help="UNISEM_HOME of the benchmark (default .unisem/bench/serving)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--loss", default="bce", choices=("bce", "ce", "sampled"))
    p.add_argument("--text", default="minilm", choices=("minilm", "random"),
                   help="item text embeddings: the cached MiniLM ones (beauty_data.py; encoding takes long on a "
                        "busy CPU), or seeded random 384-d vectors (the model's size and serving cost are the same)")
    p.add_argument("--retrain", action="store_true", help="train and register a new champion even if one exists")
    p.add_argument("--singles", type=int, default=500)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--batch-users", type=int, default=64)
    p.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the server's /ping")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_champion(home: Path, epochs: int, loss: str, retrain: bool, text_source: str = "minilm") -> dict:
    """Features + embeddings + a short training of Beauty, registered and promoted, unless already there."""
    from beauty_data import beauty_embeddings, load_beauty
    from safetensors.numpy import save_file

    from unisem.config import load_config
    from unisem.data.dataset import write_features
    from unisem.home import RunLayout
    from unisem.registry.promotion import promote_if_better
    from unisem.registry.registration import CHAMPION, log_and_register
    from unisem.registry.tracking import client as registry_client
    from unisem.train import fit

    overrides = [f"training.max_epochs={epochs}", f"training.loss={loss}", "training.show_progress=false"]
    cfg = load_config(None, overrides)
    record = home / "champion.json"
    if record.exists() and not retrain:
        try:
            registry_client(cfg).get_model_version_by_alias(cfg.registry.model_name, CHAMPION)
            return json.loads(record.read_text())
        except Exception:  # noqa: BLE001 - a stale record: build the champion again
            pass
    data = load_beauty(max_seq_len=cfg.data.max_seq_len)
    if text_source == "minilm":
        text = beauty_embeddings(data.item_texts)
    else:
        text = np.random.default_rng(0).normal(size=(data.num_items + 1, 384)).astype(np.float32)
        text[0] = 0
    features, embeddings = home / "features", home / "embeddings"
    write_features(data, features)
    embeddings.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": text}, str(embeddings / "item_embeddings.safetensors"))
    encoder = "all-MiniLM-L6-v2" if text_source == "minilm" else "random-normal-seed-0"
    (embeddings / "meta.json").write_text(json.dumps({"model": encoder, "dim": int(text.shape[1])}))
    start, cpu = time.perf_counter(), time.process_time()
    result = fit(cfg, data, text, home / "training")
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    layout = RunLayout.for_run(f"serving-bench-{int(time.time())}", home)
    reg = log_and_register(cfg, result, layout.root.name, record_dir=layout.registry, features_dir=features,
                           embeddings_dir=embeddings)
    decision = promote_if_better(cfg, features, embeddings, record_dir=layout.registry, challenger_version=reg.version)
    out = {"version": reg.version, "overrides": overrides, "text_embeddings": text_source, "train_wall_s": round(train_s, 1),
           "train_cpu_s": round(train_cpu, 1), "best_epoch": result.best_epoch,
           "best_valid": {k: float(v) for k, v in result.best_metrics.items() if isinstance(v, (int, float))},
           "promoted": decision.promoted, "users": data.num_users, "items": data.num_items}
    record.write_text(json.dumps(out, indent=2))
    return out


def test_histories(features: Path) -> list[list[str]]:
    """Each user's history up to the test item (what the model sees at test time), in item ids."""
    from unisem.data.dataset import load_features, split_inputs

    data = load_features(features)
    inputs, _ = split_inputs(data, "test")
    return [[data.item_ids[i - 1] for i in h.tolist()] for h in inputs]


def start_server(uri: str, port: int, env: dict, log: Path) -> subprocess.Popen:
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_bin, "models", "serve", "-m", uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
           "-w", "1"]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, timeout: float, log: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve at 127.0.0.1:{port} exited with {proc.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow models serve at 127.0.0.1:{port} did not answer /ping within {timeout:.0f}s; log {log}")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server's process group by its PID (the uvicorn workers are its children)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def post(conn: http.client.HTTPConnection, histories: list[list[str]], k: int = 10) -> tuple[float, dict]:
    body = json.dumps({"dataframe_records": [{"history": h} for h in histories], "params": {"k": k}})
    start = time.perf_counter()
    conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - start
    if resp.status != 200:
        raise RuntimeError(f"/invocations returned HTTP {resp.status}: {data[:500]!r}")
    return elapsed, json.loads(data)


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "max_ms": round(float(ms.max()), 2)}


def main(argv=None) -> int:
    args = parse(argv)
    from beauty_data import BEAUTY_DIR

    if not (BEAUTY_DIR / "sequences.txt").exists():
        print(f"skipped: Amazon Beauty data not found in {BEAUTY_DIR}")
        return 0
    from unisem.home import unisem_home

    home = (args.home or unisem_home() / "bench" / "serving").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["UNISEM_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_start = os.getloadavg()
    champion = prepare_champion(home, args.epochs, args.loss, args.retrain, args.text)
    histories = test_histories(home / "features")
    rng = np.random.default_rng(0)
    singles = [histories[i] for i in rng.integers(0, len(histories), args.singles)]
    batches = [[histories[i] for i in rng.integers(0, len(histories), args.batch_users)] for _ in range(args.batches)]

    from unisem.config import load_config
    from unisem.registry.tracking import tracking_uri

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(load_config())}
    log = home / "serve.log"
    proc = start_server("models:/unisem@champion", port, env, log)
    cpu_client = time.process_time()
    try:
        ready_s = wait_ready(proc, port, args.start_timeout, log)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for h in singles[:20]:  # warm-up
            post(conn, [h])
        start = time.perf_counter()
        single_lat = [post(conn, [h])[0] for h in singles]
        single_wall = time.perf_counter() - start
        start = time.perf_counter()
        batch_lat = [post(conn, b)[0] for b in batches]
        batch_wall = time.perf_counter() - start
        _, example = post(conn, [[singles[0][-1], "no-such-item"], []], k=3)
        conn.close()
    finally:
        stop_server(proc)
    server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    single, batch = percentiles(single_lat), percentiles(batch_lat)
    out = {
        "benchmark": "serving_rest",
        "command": ".venv/bin/python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"],
        "rps": round(len(single_lat) / single_wall, 1),
        "single": {**single, "requests": len(single_lat)},
        "batch_users": args.batch_users,
        "batch": {**batch, "requests": len(batch_lat), "users_per_s": round(len(batch_lat) * args.batch_users / batch_wall, 1)},
        "items": champion["items"], "users": champion["users"],
        "k": 10,
        "client": "one client, sequential requests, HTTP keep-alive, JSON dataframe_records; warm-up of 20 requests",
        "server": "mlflow models serve --env-manager local -w 1 (one uvicorn worker), 127.0.0.1",
        "server_ready_s": round(ready_s, 1),
        "example_response": example,
        "model": {"training": champion["overrides"], "text_embeddings": champion["text_embeddings"], "train_wall_s": champion["train_wall_s"],
                  "train_cpu_s": champion["train_cpu_s"], "best_epoch": champion["best_epoch"],
                  "best_valid": champion["best_valid"], "note": "short CPU training for timing only, not for quality"},
        "cpu_seconds": {"client": round(time.process_time() - cpu_client, 2),
                        "server_children": round(server_cpu.ru_utime + server_cpu.ru_stime, 2)},
        **machine_fields(load_start),
    }
    write_result(RESULT, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
