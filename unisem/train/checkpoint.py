"""Resumable training checkpoints: network + optimizer state as safetensors, the loop's state as JSON.

Adam's state is tensors keyed by parameter position, so it is stored flat (``optim.<i>.<name>``) next to the
network weights, with the param groups (plain numbers) in JSON: resuming never unpickles anything.
The folder also holds ``best/``, the best model so far, so a checkpoint alone is enough to resume on
another machine (the Ray case).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from unisem.atomic import atomic_dir
from unisem.train.optimizer import TrainingOptimizer

STATE_TENSORS, STATE_JSON, BEST = "state.safetensors", "state.json", "best"


def _optimizer_tensors(opt: TrainingOptimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def save_checkpoint(
    folder: Path, network: torch.nn.Module, opt: TrainingOptimizer, loop_state: dict, generator: torch.Generator, best_model: Path | None
) -> Path:
    with atomic_dir(folder) as tmp:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        opt_tensors, opt_meta = _optimizer_tensors(opt)
        tensors.update(opt_tensors)
        tensors["rng.sampler"] = generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()  # dropout, ID dropout, dead-code picks
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps({"loop": loop_state, "optimizer": opt_meta}, indent=1))
        if best_model is not None and best_model.exists():
            shutil.copytree(best_model, tmp / BEST)
    return folder


def checkpoint_loop_state(folder: Path) -> dict | None:
    """The loop state (epoch, best epoch, history) of a checkpoint folder without loading its tensors;
    None when the folder holds no checkpoint. A state file cut short raises ``ValueError``."""
    path = Path(folder) / STATE_JSON
    if not path.exists():
        return None
    return json.loads(path.read_text())["loop"]


def load_checkpoint(folder: Path, network: torch.nn.Module, opt: TrainingOptimizer, generator: torch.Generator) -> dict:
    """Restore network, optimizer and sampler state in place; returns the loop state."""
    for name in (STATE_TENSORS, STATE_JSON):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: not a training checkpoint (missing {name})")
    tensors = load_file(str(folder / STATE_TENSORS))
    meta = json.loads((folder / STATE_JSON).read_text())
    network.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    generator.set_state(tensors["rng.sampler"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta["loop"]
