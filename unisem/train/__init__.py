"""Training: the per-worker ``fit`` function, the runtime it reports to, checkpoints."""
from unisem.train.loop import TrainResult, fit
from unisem.train.runtime import LocalRuntime, TrainRuntime

__all__ = ["LocalRuntime", "TrainResult", "TrainRuntime", "fit"]
