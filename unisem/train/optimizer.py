"""The training optimizer: Adam, with lazy (row-wise) Adam for an ID table that has sparse gradients.

One object with the optimizer interface the loop and the checkpoint use (``step``, ``zero_grad``,
``state_dict``, ``load_state_dict``), so a checkpoint stores one flat state whichever parts it has.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


class TrainingOptimizer:
    """Fused Adam over the dense parameters; ``SparseAdam`` over the parameters of sparse embeddings.

    Lazy Adam updates a row's moments only in steps that touch the row (the usual choice for large
    embedding tables); dense Adam would decay every row's moments at every step, a pass over the whole
    table per step whose cost grows with the catalog while the step's useful work does not.
    """

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> None:
        sparse = {id(p): p for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse for p in m.parameters()}
        dense = [p for p in model.parameters() if id(p) not in sparse]
        self.parts: list[torch.optim.Optimizer] = [
            torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))
        ]
        if sparse:
            if weight_decay:
                warnings.warn(f"training.weight_decay={weight_decay} does not apply to the sparse ID table "
                              "(lazy Adam has none); it applies to every other parameter", stacklevel=2)
            self.parts.append(torch.optim.SparseAdam(list(sparse.values()), lr=lr))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.parts:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.parts:
            opt.step()

    def state_dict(self) -> dict:
        """The parts' states in torch's format, parameter indices numbered on across the parts."""
        state, groups, offset = {}, [], 0
        for opt in self.parts:
            sd = opt.state_dict()
            state.update({offset + int(k): v for k, v in sd["state"].items()})
            groups += [{**g, "params": [offset + i for i in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in opt.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        expected = sum(len(opt.param_groups) for opt in self.parts)
        if len(sd["param_groups"]) != expected:
            raise ValueError(
                f"optimizer state has {len(sd['param_groups'])} parameter groups, this model's optimizer {expected}"
                " (a checkpoint from a run with another training.sparse_id_min_items or catalog size?)"
            )
        offset, first = 0, 0
        for opt in self.parts:
            n_groups, n = len(opt.param_groups), sum(len(g["params"]) for g in opt.param_groups)
            groups = [{**g, "params": [i - offset for i in g["params"]]} for g in sd["param_groups"][first : first + n_groups]]
            state = {int(k) - offset: v for k, v in sd["state"].items() if offset <= int(k) < offset + n}
            opt.load_state_dict({"state": state, "param_groups": groups})
            offset, first = offset + n, first + n_groups
