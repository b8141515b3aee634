"""The two evaluation protocols - full ranking and sampled negatives - over a leave-one-out split.

Both turn a model's scores into one 0-based rank per user (how many candidates beat the target) and then
into metrics with ``unisem.evaluate.metrics``. Their names are part of every metric key ("full/NDCG@10",
"sampled-99/NDCG@10") so that the honest figure and the paper's figure can never be confused.

Choices, fixed here once for every model:

- **full** ranks the target against every catalog item. Excluded: column 0 (padding) and the items of the
  user's input sequence (already consumed; production never re-recommends them), but never the target
  itself, even when the user had interacted with it before. The test split's input includes the validation
  item, so that one is excluded too; the future (the test item when validating) is not, since the model
  cannot know it.
- **sampled-N** ranks the target against N negatives drawn uniformly, without replacement, from the items the
  user never touched (history, validation and test items). They are drawn once per dataset from
  ``EvaluationConfig.seed`` - identical across models, runs, epochs, batch sizes and both splits (they
  depend on the seed, the users' order and what each user touched). A user with
  fewer than N untouched items is ranked against all of them (tiny catalogs only; a warning says so).
- **ties are pessimistic**: a candidate scoring the same as the target counts as ranked above it, so a model
  cannot gain by giving many items the same score (a constant scorer gets the worst rank, not the best).
  A NaN candidate score never ranks above the target, and a NaN target score gets the worst rank, so a
  numerically broken model scores zero rather than crashing an epoch's validation or looking good.
"""
from __future__ import annotations

import contextlib
import math
import re
import warnings
import weakref
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from unisem.config.schema import EvaluationConfig
from unisem.data.dataset import SequenceDataset, pad_left, split_inputs
from unisem.evaluate.metrics import metrics_from_ranks
from unisem.model.retrieval import StateScorer, chunked_full_ranks

FULL = "full"
SAMPLED_PREFIX = "sampled-"
_SAMPLED = re.compile(r"^sampled-([1-9][0-9]*)$")
# Users per block when drawing negatives, and the most random keys one block of the exact fallback draw may
# hold (16M keys, 128 MB); both are constants or depend on the catalog only, so the draw never depends on the
# caller's batch size.
NEGATIVE_BLOCK_USERS = 16384
NEGATIVE_BLOCK_KEYS = 1 << 24

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
# What evaluation accepts: a score function over the whole catalog, or a model as states x item table
# (``StateScorer``), which is ranked over the catalog in chunks of items with bounded memory.
Scorer = ScoreFn | StateScorer


def sampled_protocol(negatives: int) -> str:
    """The name of the sampled protocol with ``negatives`` negatives, e.g. ``sampled-99``."""
    return f"{SAMPLED_PREFIX}{int(negatives)}"


def default_protocols(cfg: EvaluationConfig) -> tuple[str, ...]:
    return (FULL, sampled_protocol(cfg.sampled_negatives))


def sampled_count(protocol: str) -> int | None:
    """The number of negatives of a ``sampled-N`` protocol name, None for ``full``; raises for anything else."""
    if protocol == FULL:
        return None
    match = _SAMPLED.match(protocol)
    if not match:
        raise ValueError(f"unknown evaluation protocol {protocol!r}: use 'full' or 'sampled-<N>', e.g. 'sampled-99'")
    return int(match.group(1))


def split_metric_name(name: str) -> tuple[str, str]:
    """``"full/NDCG@10"`` -> ``("full", "NDCG@10")``; a name without its protocol is refused (never guessed)."""
    protocol, sep, metric = name.partition("/")
    if not sep or not metric:
        raise ValueError(f"metric name {name!r} must be '<protocol>/<metric>', e.g. 'full/NDCG@10'")
    sampled_count(protocol)
    return protocol, metric


class EvaluationReport(NamedTuple):
    """Metrics of one split under each protocol, per slice, and the per-user ranks they came from."""

    protocols: dict[str, dict[str, float]]  # protocol -> metric -> value
    slices: dict[str, dict[str, Any]]  # slice -> {protocol: metrics, "users": n}
    users: int
    split: str
    ranks: dict[str, np.ndarray]  # protocol -> int64 [users] 0-based ranks (not serialised)

    def flat(self) -> dict[str, float]:
        """``{"full/NDCG@10": ..., "sampled-99/HR@10": ...}``: the names the registry and MLflow use."""
        return {f"{p}/{m}": v for p, metrics in self.protocols.items() for m, v in metrics.items()}

    def metric(self, name: str) -> float:
        protocol, metric = split_metric_name(name)
        try:
            return self.protocols[protocol][metric]
        except KeyError:
            raise KeyError(f"metric {name!r} not in this report; it has {', '.join(self.flat())}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN - a slice without users - becomes null)."""
        return _json_ready(
            {
                "split": self.split,
                "users": self.users,
                "protocols": self.protocols,
                "metrics": self.flat(),
                "slices": self.slices,
            }
        )


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------- negatives


def _touched_flat(data: SequenceDataset) -> tuple[np.ndarray, np.ndarray]:
    """Every (user, item) the user touched - history, validation and test - as two flat arrays."""
    lengths = np.fromiter((len(h) for h in data.histories), dtype=np.int64, count=data.num_users)
    has_history = data.num_users and lengths.sum()
    hist = np.concatenate(data.histories).astype(np.int64) if has_history else np.zeros(0, np.int64)
    users = np.arange(data.num_users, dtype=np.int64)
    user_of = np.concatenate([np.repeat(users, lengths), users, users])
    items = np.concatenate([hist, data.valid_items.astype(np.int64), data.test_items.astype(np.int64)])
    return user_of, items


def check_item_range(data: SequenceDataset) -> tuple[np.ndarray, np.ndarray]:
    """Refuse a dataset whose histories or targets name an item index outside 1..N (naming the user)."""
    user_of, items = _touched_flat(data)
    bad = (items < 1) | (items > data.num_items)
    if bad.any():
        first = int(np.argmax(bad))
        u = int(user_of[first])
        raise ValueError(
            f"user {data.user_ids[u]!r} (index {u}) has item index {int(items[first])} outside 1..{data.num_items}"
        )
    return user_of, items


def protocol_negatives(data: SequenceDataset, n: int, seed: int) -> np.ndarray:
    """int64 [users, n]: per user, ``n`` distinct items it never touched, uniformly at random; 0 = none left.

    Vectorised rejection sampling: every user gets a row of ``2n + 16`` uniform draws from 1..N; draws of
    touched items and repeats are dropped and the first ``n`` survivors kept - in draw order each survivor
    is uniform over the untouched items not yet chosen, so this is an exact uniform sample without
    replacement, at O(users x n) work whatever the catalog size. The rare user left short (a catalog too
    small, or one who touched most of it) is drawn exactly by random keys over the whole catalog instead.
    """
    if n < 1:
        raise ValueError(f"evaluation.sampled_negatives must be at least 1, got {n}")
    num_users, num_items = data.num_users, data.num_items
    out = np.zeros((num_users, n), dtype=np.int64)
    if num_users == 0 or num_items == 0:
        return out
    user_of, items = check_item_range(data)
    width = num_items + 1
    touched_keys = np.unique(user_of * width + items)  # sorted (user, item) pairs
    rng = np.random.default_rng(seed)
    draws = 2 * n + 16
    short: list[np.ndarray] = []
    for start in range(0, num_users, NEGATIVE_BLOCK_USERS):
        stop = min(start + NEGATIVE_BLOCK_USERS, num_users)
        users = np.arange(start, stop, dtype=np.int64)
        cand = rng.integers(1, width, size=(len(users), draws), dtype=np.int64)
        keep = ~_sorted_contains(touched_keys, users[:, None] * width + cand)
        order = np.argsort(cand, axis=1, kind="stable")  # equal draws stay in draw order: later ones repeat
        ordered = np.take_along_axis(cand, order, axis=1)
        repeat = np.zeros_like(keep)
        np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
        keep &= ~repeat
        rank = np.cumsum(keep, axis=1)
        done = rank[:, -1] >= n
        chosen = keep & (rank <= n)
        out[users[done]] = cand[done][chosen[done]].reshape(-1, n)
        short.append(users[~done])
    short_users = np.concatenate(short)
    if len(short_users):
        out[short_users] = _negatives_by_keys(short_users, user_of, items, width, n, rng)
        untouched = num_items - np.bincount(touched_keys // width, minlength=num_users)[short_users]
        if (few := int((untouched < n).sum())):
            warnings.warn(
                f"{few} of {num_users} users have fewer than {n} untouched items; they are ranked against all "
                f"their untouched items (a catalog of {num_items} items is too small for sampled-{n})",
                stacklevel=2,
            )
    return out


def _sorted_contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """bool, same shape as ``keys``: which of them occur in the sorted array ``sorted_keys``."""
    if not len(sorted_keys):
        return np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def _negatives_by_keys(
    users: np.ndarray, user_of: np.ndarray, items: np.ndarray, width: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Exact draw for a few users: a uniform key per item, touched items (and padding) keyed above all
    others, the ``n`` smallest keys win; slots beyond a user's untouched items stay 0."""
    out = np.zeros((len(users), n), dtype=np.int64)
    k = min(n, width)
    mine = np.isin(user_of, users)
    rows = np.searchsorted(users, user_of[mine])  # users is sorted
    cols = items[mine]
    block = max(1, NEGATIVE_BLOCK_KEYS // width)
    for start in range(0, len(users), block):
        stop = min(start + block, len(users))
        keys = rng.random((stop - start, width))
        keys[:, 0] = 2.0
        in_block = (rows >= start) & (rows < stop)
        keys[rows[in_block] - start, cols[in_block]] = 2.0
        chosen = np.argsort(keys, axis=1, kind="stable")[:, :k]
        out[start:stop, :k] = np.where(np.take_along_axis(keys, chosen, axis=1) > 1.0, 0, chosen)
    return out


# Negatives depend only on the dataset, n and the seed; training evaluates every epoch, so keep the last few.
_NEGATIVES_CACHE: list[tuple[weakref.ref, int, int, np.ndarray]] = []
_NEGATIVES_CACHE_SIZE = 4


def cached_negatives(data: SequenceDataset, n: int, seed: int) -> np.ndarray:
    """``protocol_negatives`` remembered for the same dataset object (the same draw, computed once)."""
    for ref, cn, cs, neg in _NEGATIVES_CACHE:
        if ref() is data and cn == n and cs == seed:
            return neg
    neg = protocol_negatives(data, n, seed)
    neg.setflags(write=False)
    _NEGATIVES_CACHE.insert(0, (weakref.ref(data), n, seed, neg))
    del _NEGATIVES_CACHE[_NEGATIVES_CACHE_SIZE:]
    return neg


# ---------------------------------------------------------------------------------------------- ranks


def _above_target(candidate_scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """bool: which candidates rank above the target, ties included; NaN handled as in the module docstring."""
    above = candidate_scores >= target_scores  # a NaN candidate compares False: never above
    nan_target = torch.isnan(target_scores[:, 0])
    if bool(nan_target.any()):
        above[nan_target] = True  # a NaN target is below every candidate
    return above


def full_ranks(scores: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Rank of each target among all items: padding and ``seen`` items (0 = padding) excluded, target never.

    scores float [B, N+1]; targets int64 [B]; seen int64 [B, S] (left-padded with 0) or None. One
    comparison and one count over the [B, N+1] matrix; the exclusions are scattered into the comparison.
    """
    above = _above_target(scores, scores.gather(1, targets[:, None]))
    above[:, 0] = False
    if seen is not None and seen.numel():
        above.scatter_(1, seen, False)
    above[torch.arange(len(targets), device=scores.device), targets] = False
    return above.sum(dim=1, dtype=torch.int32)  # int32 sums run about 3x faster than the default int64


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Rank of each target among its own negatives (int64 [B, n], 0 = no negative in that slot)."""
    above = _above_target(scores.gather(1, negatives), scores.gather(1, targets[:, None]))
    return (above & (negatives != 0)).sum(dim=1, dtype=torch.int32)


def compute_ranks(
    score_fn: Scorer,
    data: SequenceDataset,
    cfg: EvaluationConfig,
    split: str = "valid",
    max_len: int = 50,
    batch_size: int = 512,
    protocols: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per-user 0-based ranks under each protocol, scoring users in batches with one call of ``score_fn``."""
    protocols = tuple(protocols) if protocols is not None else default_protocols(cfg)
    if not protocols:
        raise ValueError("at least one evaluation protocol is needed")
    if batch_size < 1 or max_len < 1:
        raise ValueError(f"batch_size and max_len must be positive, got {batch_size} and {max_len}")
    counts = {p: sampled_count(p) for p in protocols}
    inputs, targets = split_inputs(data, split)
    targets = np.asarray(targets, dtype=np.int64)
    check_item_range(data)
    negatives = {p: cached_negatives(data, n, cfg.seed) for p, n in counts.items() if n is not None}
    ranks = {p: np.zeros(len(targets), dtype=np.int64) for p in protocols}
    if isinstance(score_fn, StateScorer):
        _state_ranks(score_fn, inputs, targets, max_len, batch_size, counts, negatives, ranks, data.num_items)
        return ranks
    width = data.num_items + 1
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        batch = inputs[start:stop]
        with torch.no_grad():
            scores = score_fn(torch.from_numpy(pad_left(batch, max_len)))
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (stop - start, width):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(
                f"score_fn returned {shape} for a batch of {stop - start} users; expected a tensor "
                f"[{stop - start}, {width}] (column 0 = padding, then the {data.num_items} items)"
            )
        device = scores.device
        tgt = torch.from_numpy(targets[start:stop]).to(device)
        with _one_cpu_thread(device):
            _rank_batch(scores, tgt, batch, start, counts, negatives, ranks)
    return ranks


def _state_ranks(
    scorer: StateScorer,
    inputs: list[np.ndarray],
    targets: np.ndarray,
    max_len: int,
    batch_size: int,
    counts: dict[str, int | None],
    negatives: dict[str, np.ndarray],
    ranks: dict[str, np.ndarray],
    num_items: int,
) -> None:
    """Ranks through user states and the item table: users in order of history length (so each batch's
    forward is as wide as its longest history), the catalog in chunks of ``scorer.chunk_items`` items."""
    table = scorer.table
    if table.shape[0] != num_items + 1:
        raise ValueError(f"the scorer's item table has {table.shape[0]} rows; expected {num_items + 1} (padding + items)")
    lengths = np.fromiter((min(len(s), max_len) for s in inputs), dtype=np.int64, count=len(inputs))
    order = np.argsort(lengths, kind="stable")
    device = table.device
    for start in range(0, len(order), batch_size):
        users = order[start : start + batch_size]
        batch = [inputs[u] for u in users]
        width = max(int(lengths[users].max()), 1)
        with torch.no_grad():
            states = scorer.states(torch.from_numpy(pad_left(batch, width)).to(device))
            tgt = torch.from_numpy(targets[users]).to(device)
            for protocol, n in counts.items():
                if n is None:
                    longest = max((len(s) for s in batch), default=0)
                    seen = torch.from_numpy(pad_left(batch, longest)).to(device) if longest else None
                    r = chunked_full_ranks(states, table, tgt, seen, scorer.chunk_items)
                else:
                    block = torch.from_numpy(negatives[protocol][users]).to(device)
                    cand = torch.cat([tgt[:, None], block], dim=1)
                    scores = torch.einsum("bd,bnd->bn", states, table[cand])
                    # column 0 is the target; negative slot j is column j + 1, an empty slot (0) stays 0 (ignored)
                    local = torch.where(block > 0, torch.arange(1, cand.shape[1], device=device), 0)
                    r = sampled_ranks(scores, torch.zeros_like(tgt), local)
                ranks[protocol][users] = r.cpu().numpy()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the rank bookkeeping on one CPU thread (the model's scoring keeps every thread).

    These are cheap, memory-bound passes and many tiny ops; on a busy machine (2 cores, several jobs)
    torch's thread pool spends most of its time waiting for its second thread at each op's barrier: the
    benchmark measured 2-5x longer wall time with 2 threads than with 1 for the same work.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _rank_batch(
    scores: torch.Tensor,
    targets: torch.Tensor,
    batch: list[np.ndarray],
    start: int,
    counts: dict[str, int | None],
    negatives: dict[str, np.ndarray],
    ranks: dict[str, np.ndarray],
) -> None:
    """Ranks of one batch of users under each protocol, written into ``ranks[protocol][start:...]``."""
    device, stop = scores.device, start + len(batch)
    for protocol, n in counts.items():
        if n is None:
            longest = max((len(s) for s in batch), default=0)
            seen = torch.from_numpy(pad_left(batch, longest)).to(device) if longest else None
            r = full_ranks(scores, targets, seen)
        else:
            # from_numpy(copy) rather than torch.tensor(array): the latter is ~30x slower on arrays
            block = torch.from_numpy(negatives[protocol][start:stop].copy()).to(device)
            r = sampled_ranks(scores, targets, block)
        ranks[protocol][start:stop] = r.cpu().numpy()


def evaluate(
    score_fn: Scorer,
    data: SequenceDataset,
    cfg: EvaluationConfig,
    split: str = "valid",
    max_len: int = 50,
    batch_size: int = 512,
    protocols: Iterable[str] | None = None,
    slices: bool = True,
) -> EvaluationReport:
    """Evaluate ``score_fn`` on one leave-one-out split under each protocol (and per slice).

    ``score_fn(LongTensor [B, max_len], left-padded with 0) -> Tensor [B, N+1]``; it is called under
    ``torch.no_grad()``, and putting the model in eval mode is the caller's job. A ``StateScorer`` (e.g.
    ``Recommender.scorer()``) gives the same ranks with memory bounded by users x chunk instead of x N. ``protocols`` defaults to
    ``("full", "sampled-<cfg.sampled_negatives>")``, i.e. ``("full", "sampled-99")``.
    """
    ranks = compute_ranks(score_fn, data, cfg, split, max_len, batch_size, protocols)
    per_protocol = {p: metrics_from_ranks(r, cfg.ks) for p, r in ranks.items()}
    slice_report: dict[str, dict[str, Any]] = {}
    if slices:
        from unisem.evaluate.slices import slice_metrics

        slice_report = slice_metrics(ranks, data, cfg, split)
    return EvaluationReport(
        protocols=per_protocol, slices=slice_report, users=data.num_users, split=split, ranks=ranks
    )
