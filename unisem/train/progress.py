"""The one line per epoch a person watching training reads: ``epoch 7/20 loss 3.12 valid NDCG@10 0.521 (best)``."""
from __future__ import annotations

from typing import Any, Mapping


def epoch_line(record: Mapping[str, Any], max_epochs: int, metric: str, best: bool) -> str:
    """The epoch's number out of the most it may run, its mean training loss, the early-stopping metric on
    the validation split, and whether that is the best so far (the epoch whose model is kept)."""
    value = record.get(f"valid/{metric}")
    shown = "n/a" if value is None else f"{float(value):.3f}"
    return (f"epoch {int(record['epoch'])}/{int(max_epochs)} loss {float(record['loss']):.2f} "
            f"valid {metric} {shown}" + (" (best)" if best else ""))
