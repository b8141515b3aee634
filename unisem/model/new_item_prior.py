"""A text prior for items without interactions, blended with the model's scores as one inner product.

Why: a trained model ranks a new item (held out, or arrived after training) by its semantic tokens and a
borrowed or unknown ID part, and on Beauty that brings almost none of them into a top-10: about 11,000 warm
items carry learnt ID parts, popularity included, and a new item has neither. What a new item does have is
its text, and the text of the item a user just consumed is the best single hint of what comes next
(text-kNN, untrained, reaches cold HR@10 0.071 on Beauty where the model reaches 0.001). So new items get a
score on the model's own scale instead of competing with uncalibrated dot products:

- a warm item ``i`` keeps the model's log-probability ``h.v_i - logsumexp_warm(h.v)`` (the softmax over the
  items the model was trained to rank, whose logits the CE and logQ-corrected sampled losses calibrate);
- a new item ``j`` gets ``bias - (1 - cos(t_j, t_last)) / temperature``: ``bias`` is the score of a new
  item whose text equals that of the user's last item (on the warm log-probabilities' scale; -1 ranks it
  with a warm item holding 37% of the model's mass), and every ``temperature`` of cosine below that costs
  one unit. A new item enters a top-10 only when its text is close to what the user just had, so warm
  recommendations lose little (the Beauty benchmark measures the trade).

Both are dot products of an extended user state with an extended item row, so every path that ranks by
``state x table`` (chunked top-K, chunked full ranks, the sampled protocol) ranks the blend unchanged:

    state  = [h, -logsumexp_warm(h.v), t_last / temperature, 1]
    warm   = [v_i, 1, 0, 0]
    new    = [0, 0, t_j, bias - 1 / temperature]
    padding = 0 (never recommended anyway)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from unisem.config.schema import NEW_ITEM_PRIORS
from unisem.model.retrieval import DEFAULT_CHUNK_ITEMS

NONE, TEXT = NEW_ITEM_PRIORS


@dataclass(frozen=True)
class PriorSettings:
    bias: float  # score of a new item with the same text as the user's last item
    temperature: float  # cosine per unit of score (> 0)

    def __post_init__(self) -> None:
        if not self.temperature > 0.0:
            raise ValueError(f"model.new_item_temperature must be positive, got {self.temperature}")


def unit_text(text: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; all-zero rows (padding, items without text) stay zero."""
    text = text.float()
    norms = text.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, text / norms.clamp_min(1e-12), torch.zeros_like(text))


def warm_log_normaliser(states: torch.Tensor, table: torch.Tensor, warm: torch.Tensor,
                        chunk: int = DEFAULT_CHUNK_ITEMS) -> torch.Tensor:
    """[B]: ``logsumexp`` over the warm rows of ``states @ table.T``, walking the table in chunks (bounded
    memory at any catalog size). 0 where there is no warm item at all."""
    out = torch.full((states.shape[0],), float("-inf"), dtype=torch.float32, device=states.device)
    for start in range(0, table.shape[0], chunk):
        keep = warm[start : start + chunk]
        if not bool(keep.any()):
            continue
        scores = (states @ table[start : start + chunk][keep].T).float()
        out = torch.logaddexp(out, torch.logsumexp(scores, dim=1))
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def warm_items(new: torch.Tensor) -> torch.Tensor:
    """bool [N+1]: the items the model was trained to rank, i.e. neither ``new`` nor row 0 (padding)."""
    warm = ~new
    warm[0] = False
    return warm


def prior_table(table: torch.Tensor, text: torch.Tensor, new: torch.Tensor, settings: PriorSettings) -> torch.Tensor:
    """Extended item rows [N+1, d + 2 + T] (see the module docstring); ``text`` is unit rows [N+1, T] and
    ``new`` bool [N+1] marks the items without interactions. Row 0 (padding) is all zero."""
    n, d = table.shape
    warm = warm_items(new)
    out = table.new_zeros((n, d + 2 + text.shape[1]))
    out[warm, :d] = table[warm]
    out[warm, d] = 1.0
    out[new, d + 1 : d + 1 + text.shape[1]] = text[new].to(table.dtype)
    out[new, -1] = settings.bias - 1.0 / settings.temperature
    out[0] = 0.0
    return out


def prior_states(states: torch.Tensor, log_normaliser: torch.Tensor, last_text: torch.Tensor,
                 settings: PriorSettings) -> torch.Tensor:
    """Extended user states [B, d + 2 + T] from the model's states [B, d], their warm log-normaliser [B]
    and the unit text of each user's last item [B, T] (zero for an empty history: then a new item only gets
    ``bias - 1 / temperature``)."""
    ones = states.new_ones((states.shape[0], 1))
    return torch.cat([states, -log_normaliser[:, None].to(states.dtype),
                      last_text.to(states.dtype) / settings.temperature, ones], dim=1)
