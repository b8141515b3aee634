"""The configuration sections, one frozen dataclass each.

Defaults here equal ``configs/default.yaml`` so that a partial YAML file is always complete. Allowed values
and ranges sit in each field's metadata; ``unisem.config.loader`` enforces them with the dotted key in the
message. Add a setting by adding a field (with metadata) to its section and a line to the default YAML.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, get_args


def _f(default, **meta):
    """A field with a default and validation metadata (choices / min / max)."""
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DemoConfig:
    items: int = _f(2000, min=10)
    users: int = _f(1000, min=10)
    seed: int = _f(7, min=0)


@dataclass(frozen=True)
class DataConfig:
    # Empty paths mean "the demo data under UNISEM_HOME", generated on first use.
    catalog: str = ""
    interactions: str = ""
    # The dataset's identity: the quality gate compares a run's drift only with accepted runs of the same
    # dataset. Empty: the two input paths (resolved) are the identity.
    name: str = ""
    # What to do with interactions that name an item absent from the catalog.
    unknown_items: Literal["drop", "fail"] = "drop"
    max_seq_len: int = _f(50, min=2, max=4096)
    # Share of catalog items held out of training entirely, for the cold-start slice.
    cold_item_share: float = _f(0.0, min=0.0, max=0.5)
    # Users with fewer interactions cannot be split leave-one-out (train + valid + test).
    min_user_interactions: int = _f(3, min=3)
    seed: int = _f(13, min=0)
    demo: DemoConfig = field(default_factory=DemoConfig)


@dataclass(frozen=True)
class TextConfig:
    # Python format string over catalog fields; empty parts and their separators are dropped.
    template: str = "{title};{price};{brand};{categories}"
    # "all-MiniLM-L6-v2" is the packaged, offline model; anything else is a local sentence-transformers path.
    encoder: str = "all-MiniLM-L6-v2"
    batch_size: int = _f(256, min=1)
    device: str = "cpu"
    show_progress: bool = True
    # Torch CPU threads while encoding; 0 = every core this process may use (its CPU affinity).
    num_threads: int = _f(0, min=0)


@dataclass(frozen=True)
class QuantizerConfig:
    levels: int = _f(3, min=1, max=8)
    codebook_size: int = _f(256, min=2)
    code_dim: int = _f(64, min=2)
    # hybrid = cosine for levels 1..L-1 and Euclidean for the last; cosine / euclidean = every level alike.
    distance: Literal["hybrid", "cosine", "euclidean"] = "hybrid"
    encoder_hidden: tuple[int, ...] = _f((512, 256), min=1)
    codebook_update: Literal["ema", "gradient"] = "ema"
    ema_decay: float = _f(0.8, min=0.0, max=0.9999)
    commitment_beta: float = _f(0.25, min=0.0)
    kmeans_init: bool = True
    kmeans_iters: int = _f(20, min=1)
    # A codeword chosen fewer times than this (EMA count) is replaced by a random encoder output.
    dead_code_threshold: float = _f(1.0, min=0.0)


# The item representations (DESIGN.md 1.3): [z ; e], e alone (SASRec), z alone. Spelled here only.
ModelVariant = Literal["unified", "id-only", "semantic-only"]
MODEL_VARIANTS: tuple[str, ...] = get_args(ModelVariant)
NewItemPrior = Literal["none", "text"]
NEW_ITEM_PRIORS: tuple[str, ...] = get_args(NewItemPrior)


@dataclass(frozen=True)
class ModelConfig:
    variant: ModelVariant = "unified"
    # Width of the ID part of a unified item vector. The paper uses 8 (81% fewer embedding parameters than
    # SASRec on Beauty) and wins on sampled-99, but loses to id-only by 25% on full ranking; 64 beats id-only
    # on full ranking (benchmarks/results/beauty.md), and full ranking is what production and promotion see.
    id_dim: int = _f(64, min=1)
    # Width of the ID embedding in the id-only variant (SASRec).
    id_only_dim: int = _f(64, min=2)
    num_blocks: int = _f(2, min=1)
    num_heads: int = _f(2, min=1)
    ffn_dim: int = _f(256, min=1)
    dropout: float = _f(0.5, min=0.0, max=0.95)
    # Probability of replacing an item's ID part by the shared "unknown" vector during training (cold start).
    id_dropout: float = _f(0.0, min=0.0, max=1.0)
    # The ID part of an item without interactions (held out, or new since training) in a unified model:
    # unknown = the shared unknown vector; neighbours = the mean ID vector of the warm items sharing the
    # longest prefix of its semantic ID (unisem.model.cold_ids), the unknown vector where none does.
    cold_id: Literal["unknown", "neighbours"] = "unknown"
    # How items without interactions are ranked beside the warm ones: none = by the model's dot product
    # alone; text = the text prior of unisem.model.new_item_prior (a new item scores by the cosine of its text
    # to the user's last item, on the scale of the model's log-probabilities over the warm items).
    new_item_prior: NewItemPrior = "none"
    # text prior: score of a new item whose text equals the user's last item's, on the scale of the warm
    # items' log-probabilities (0: as likely as the model's whole warm mass) ... (bias 0 and temperature 0.02:
    # what Beauty's validation split chose for 2 of 3 seeds, the third bias 1: benchmarks/results/beauty.md)
    new_item_bias: float = 0.0
    # ... and the cosine below that which costs one unit of log-probability.
    new_item_temperature: float = _f(0.02, min=1e-4)


@dataclass(frozen=True)
class TrainingConfig:
    # ce: full softmax over the catalog; bce: one sampled negative per position (the paper's); sampled:
    # softmax against a shared pool (in-batch targets + num_negatives drawn items), logQ-corrected, on a
    # table of the touched items only - bounded cost per step whatever the catalog size (1M items).
    # auto (the default): ce below sampled_min_items items, sampled from there on. On Beauty (12,101 items)
    # ce is the more accurate (full NDCG@10 0.0532 against sampled's 0.0515, 3 seeds each; beauty.md) and
    # still affordable (82 against 30 CPU-s an epoch, one thread). Its step encodes every item and scores
    # positions x catalog logits, so that gap grows with the catalog: at 50,000 items a batch of long
    # histories needs 12,800 x 50,000 logits (2.6 GB); a million items are out of reach.
    loss: Literal["auto", "bce", "ce", "sampled"] = "auto"
    sampled_min_items: int = _f(50_000, min=1)
    # loss=sampled: items drawn per step beyond the batch's own targets, and from which distribution
    # (uniform over warm items, or proportional to training popularity; cold items are never drawn).
    num_negatives: int = _f(256, min=1)
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    # loss=sampled: in-batch negatives, a uniform sample of this many of the batch's target positions (0 = all).
    # The softmax costs positions x pool: a batch of 256 long histories has 12,800 positions, and all of
    # them as negatives made that 12,800 x 12,800 logits per step.
    in_batch_negatives: int = _f(2048, min=0)
    # Catalogs of at least this many items (0 = never) train the ID table with sparse gradients and lazy
    # Adam (torch's SparseAdam: a step updates the rows it touched). A dense step reads and writes every
    # row's weights and both moments, a cost that grows with the catalog, not the batch. Not with ce, whose
    # softmax touches every row anyway; weight_decay does not apply to a sparse ID table.
    sparse_id_min_items: int = _f(200_000, min=0)
    # loss=sampled: a step's reconstruction loss on a uniform sample of at most this many of its batch's
    # items (0 = all of them). The loss is a mean over rows, so the sample's mean is an unbiased estimate of
    # it; decoding every batch item back to its text embedding was as much work as encoding it, and the
    # reconstruction only keeps the encoder's latent faithful to the text, which a sample does as well.
    recon_rows: int = _f(512, min=0)
    lr: float = _f(1e-3, min=0.0)
    weight_decay: float = _f(0.0, min=0.0)
    batch_size: int = _f(256, min=1)
    max_epochs: int = _f(200, min=1)
    patience: int = _f(10, min=1)
    lambda_rq: float = _f(1.0, min=0.0)
    lambda_text: float = _f(1.0, min=0.0)
    seed: int = _f(42, min=0)
    # The validation metric that picks the best checkpoint and stops early.
    early_stopping_metric: str = "NDCG@10"
    # Users each epoch's validation ranks (a sample fixed for the run, drawn with training.seed, when there are
    # more; 0 = all): full ranking is U x N dot products per epoch, hours at a million users and items, while
    # the early-stopping decision needs a few thousand users. 25,000 keeps Beauty (22,363 users) whole; at a
    # million items 10,000 users took 377 s (valid_seconds of the 1M row in benchmarks/results/scale.json).
    valid_users: int = _f(25_000, min=0)
    show_progress: bool = True
    # full: the RQ-VAE encodes every catalog item at every step; batch: with loss=bce (where it is exact),
    # only the batch's items, the others use their semantic IDs cached each epoch; with loss=sampled only
    # the touched items (batch + pool) exist in the step's table (exact too). CE always encodes all.
    item_table: Literal["full", "batch"] = "batch"
    # Users per bucket of similar history length (in batches): short batches skip most of the padding.
    length_buckets: int = _f(16, min=1)
    # Ray Train (see unisem.train): workers, GPU use and CPUs per worker.
    num_workers: int = _f(1, min=0)
    use_gpu: bool = False
    cpus_per_worker: int = _f(1, min=1)
    max_failures: int = _f(2, min=0)

    def loss_for(self, num_items: int) -> str:
        """The loss a catalog of ``num_items`` items trains with: ``loss``, with ``auto`` decided by size."""
        if self.loss != "auto":
            return self.loss
        return "sampled" if num_items >= self.sampled_min_items else "ce"

    def sparse_ids_for(self, num_items: int) -> bool:
        """Whether the ID table trains with sparse gradients: a catalog of at least ``sparse_id_min_items``
        items and a loss that touches only some rows per step (not ce)."""
        limit = self.sparse_id_min_items
        return bool(limit) and num_items >= limit and self.loss_for(num_items) != "ce"


@dataclass(frozen=True)
class EvaluationConfig:
    ks: tuple[int, ...] = _f((1, 5, 10, 20), min=1)
    sampled_negatives: int = _f(99, min=1)
    seed: int = _f(2024, min=0)
    # Popularity slices: the most popular items making up head_share of interactions are "head", the least
    # popular making up tail_share are "tail", the rest "torso".
    head_share: float = _f(0.5, min=0.0, max=1.0)
    tail_share: float = _f(0.2, min=0.0, max=1.0)


@dataclass(frozen=True)
class QualityConfig:
    """Gate thresholds (unisem.quality). Each check is a pair ``[warn, fail]``.

    ``max_*`` checks trip when the observed value rises above a level, ``min_*`` checks when it falls below;
    crossing the first level warns, crossing the second fails the run. Equal levels make a fail-only check;
    a fail level that cannot be crossed (a share of 1.0, a minimum of 0) makes a warn-only one. Shares are
    fractions in [0, 1]. Drift checks compare with the last accepted run of the same dataset
    (``<UNISEM_HOME>/quality/baselines/``, keyed by ``data.name`` or the input paths).
    """

    # Catalog text quality.
    max_missing_item_id_share: tuple[float, ...] = _f((0.0, 0.0), min=0.0, max=1.0)
    max_duplicate_item_id_share: tuple[float, ...] = _f((0.0, 0.0), min=0.0, max=1.0)
    min_title_share: tuple[float, ...] = _f((1.0, 0.95), min=0.0, max=1.0)
    min_median_title_length: tuple[float, ...] = _f((10.0, 3.0), min=0.0)
    max_html_share: tuple[float, ...] = _f((0.01, 0.2), min=0.0, max=1.0)
    max_control_char_share: tuple[float, ...] = _f((0.0, 0.05), min=0.0, max=1.0)
    max_mojibake_share: tuple[float, ...] = _f((0.0, 0.05), min=0.0, max=1.0)
    max_duplicate_title_share: tuple[float, ...] = _f((0.05, 0.3), min=0.0, max=1.0)
    max_normalized_duplicate_title_share: tuple[float, ...] = _f((0.1, 0.4), min=0.0, max=1.0)
    # Items whose built text (text.template) has fewer than min_text_chars characters.
    max_empty_text_share: tuple[float, ...] = _f((0.0, 0.05), min=0.0, max=1.0)
    min_text_chars: int = _f(8, min=1)
    min_brand_share: tuple[float, ...] = _f((0.5, 0.0), min=0.0, max=1.0)
    min_category_share: tuple[float, ...] = _f((0.5, 0.0), min=0.0, max=1.0)
    # Prices that are negative or above max_price, among items with a price.
    max_invalid_price_share: tuple[float, ...] = _f((0.0, 0.05), min=0.0, max=1.0)
    max_price: float = _f(100000.0, min=0.0)
    # Item-ID frequency distribution (interactions).
    max_unknown_item_share: tuple[float, ...] = _f((0.0, 0.01), min=0.0, max=1.0)
    max_duplicate_event_share: tuple[float, ...] = _f((0.0, 0.05), min=0.0, max=1.0)
    max_top1pct_share: tuple[float, ...] = _f((0.3, 0.5), min=0.0, max=1.0)
    max_gini: tuple[float, ...] = _f((0.9, 0.99), min=0.0, max=1.0)
    # Catalog items with fewer than min_item_interactions interactions (fails when almost none has enough).
    max_items_below_min_share: tuple[float, ...] = _f((0.5, 0.9), min=0.0, max=1.0)
    min_item_interactions: int = _f(5, min=0)
    # Users with fewer than data.min_user_interactions events (the feature job drops them; fails when it
    # would drop most of them).
    max_short_user_share: tuple[float, ...] = _f((0.2, 0.8), min=0.0, max=1.0)
    # Drift against the last accepted run: KL(now || then) of the share of items per log2 popularity bucket,
    # relative catalog shrinkage, and relative change of the user count (either way).
    max_popularity_kl: tuple[float, ...] = _f((0.2, 0.5), min=0.0)
    max_catalog_shrinkage: tuple[float, ...] = _f((0.1, 0.5), min=0.0, max=1.0)
    max_user_count_change: tuple[float, ...] = _f((0.5, 0.9), min=0.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            if not f.name.startswith(("min_", "max_")) or not isinstance(getattr(self, f.name), tuple):
                continue
            levels = getattr(self, f.name)
            if len(levels) != 2:
                raise ValueError(f"{f.name}: expected two levels [warn, fail], got {list(levels)}")
            warn, fail = levels
            if f.name.startswith("max_") and warn > fail:
                raise ValueError(f"{f.name}: the warn level {warn} must not be above the fail level {fail}")
            if f.name.startswith("min_") and warn < fail:
                raise ValueError(f"{f.name}: the warn level {warn} must not be below the fail level {fail}")


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "unisem"
    # Empty: SQLite under UNISEM_HOME. MLFLOW_TRACKING_URI beats the config file; --mlflow-uri beats both.
    tracking_uri: str = ""
    experiment: str = "unisem"
    # "<protocol>/<metric>" on the test split, e.g. full/NDCG@10.
    promotion_metric: str = "full/NDCG@10"
    min_improvement: float = _f(0.0, min=0.0)
    # Promotion needs the lower bound of a paired bootstrap interval (test users resampled, seeded) of the
    # challenger-minus-champion gain to be above min_improvement: a gain the test users' noise explains is no gain.
    bootstrap_resamples: int = _f(1000, min=1)
    bootstrap_level: float = _f(0.95, min=0.5, max=0.999)
    bootstrap_seed: int = _f(2024, min=0)
    # Slices (cold, new = items the champion never saw, head, torso, tail) whose promotion metric may not
    # drop below the champion's by more than guardrail_max_drop (absolute), however well the whole set does.
    guardrail_slices: tuple[str, ...] = _f(("tail", "cold", "new"), choices=("head", "torso", "tail", "cold", "new"))
    guardrail_max_drop: float = _f(0.02, min=0.0)
    # Nights of run history shown as trends on the comparison page.
    report_nights: int = _f(14, min=1)
    # Catalogs of at least this many items get an approximate item index (unisem.model.index) built at
    # registration and stored with the model, which then serves from it; 0 = never (exact top-K always).
    # Its probe count is calibrated on the training users to index_target_recall of the exact top-10.
    index_min_items: int = _f(1_000_000, min=0)
    index_target_recall: float = _f(0.95, min=0.0, max=1.0)


@dataclass(frozen=True)
class TimeoutsConfig:
    """Bounds on every wait for an external service, so a lost worker or a down server fails the task with a
    message naming the service instead of hanging the night (and, with one active run, every later night)."""

    # One spark-submit of a jobs/ entry point (validate, features), from start to exit.
    spark_submit_s: float = _f(3600.0, min=1.0)
    # One Ray Job (the train stage on the cluster), from submission to a terminal state.
    ray_job_s: float = _f(21600.0, min=1.0)
    # One HTTP request to the MLflow tracking server, and how often the client retries it.
    mlflow_request_s: float = _f(30.0, min=1.0)
    mlflow_max_retries: int = _f(2, min=0)
    mlflow_backoff_factor: float = _f(1.0, min=0.0)
    # Reachability checks (TCP connect to a Spark master, HTTP to the Ray dashboard and MLflow) before use.
    service_connect_s: float = _f(10.0, min=0.1)
    # Airflow's execution_timeout of every nightly task: the last bound, above the ones before it.
    task_execution_s: float = _f(25200.0, min=1.0)


@dataclass(frozen=True)
class OrchestrationConfig:
    schedule: str = "@daily"
    # Service addresses: a --spark-master / --ray-address / --mlflow-uri flag or DAG param (non-empty) wins,
    # then SPARK_MASTER / RAY_ADDRESS / MLFLOW_TRACKING_URI, then the config file, then these defaults.
    spark_master: str = "local[*]"
    # Empty: a local Ray instance; http(s)://head:8265 submits Ray Jobs; host:port joins that cluster.
    ray_address: str = ""
    # Ray clusters with token authentication (RAY_AUTH_MODE=token): the token for the Jobs API; empty:
    # $RAY_AUTH_TOKEN or Ray's token file, as Ray itself looks them up.
    ray_auth_token: str = ""
    retries: int = _f(2, min=0)
    retry_delay_minutes: float = _f(5.0, min=0.0)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)


@dataclass(frozen=True)
class ServingConfig:
    # Top-K per user written by the nightly ``recommend`` stage (unisem.registry.batch).
    batch_k: int = _f(10, min=1)
    # Users scored per predict call inside a Spark task: bounds the [users, items] score matrix in memory.
    batch_chunk_users: int = _f(1024, min=1)


@dataclass(frozen=True)
class UnisemConfig:
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
