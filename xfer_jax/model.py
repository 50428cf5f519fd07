"""The cross-feature cost model: program tokens attend to each other and to hardware tokens.

A program is a set of per-store feature vectors (one token each) plus its task's workload features, and one
more token summarising the schedule trace that made it (xfer_jax.trace). A hardware
config is a descriptor vector, projected into a few tokens. Program tokens run through self-attention blocks,
each followed by cross-attention to the hardware tokens, so the score depends on the hardware through its
description only. A config absent from training can be scored from its descriptor alone.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from .dataset import NUM_STORE_FEATURES, NUM_WORKLOAD_FEATURES
from .hardware import NUM_HARDWARE_FEATURES, RELATIVE_FEATURE_NAMES
from .trace import MAX_TOKENS, TOKEN_VALUES, TOKEN_VOCAB


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    store_features: int = NUM_STORE_FEATURES  # per-store program features (TVM PerStoreFeature)
    workload_features: int = NUM_WORKLOAD_FEATURES
    hardware_features: int = NUM_HARDWARE_FEATURES
    dim: int = 32  # token width; 32 keeps 512 predictions near 10 ms on 2 CPU cores
    heads: int = 4
    layers: int = 2  # blocks of (self-attention, cross-attention to hardware, MLP)
    hardware_tokens: int = 4  # the hardware vector becomes this many tokens
    mlp_ratio: int = 2
    store_hidden: int = 128  # > 0: each store row passes an MLP (features -> store_hidden -> dim) before attention
    # > 0: each store feature, quantile-scaled into [0, 1], becomes this many piecewise-linear bins: one linear
    # layer on top can then cut a feature anywhere, as a tree's split does (by-task PCA +0.02, session 6); xfer only
    store_bins: int = 8
    use_hardware: bool = True  # False is the noHW ablation: no hardware input at all
    hardware_cross: bool = True  # program tokens cross-attend to hardware tokens in every block
    hardware_in_stores: bool = False  # the hardware vector joins every store row before the store embedding
    hardware_film: bool = False  # the hardware vector scales and shifts every program token (FiLM)
    readout: str = "mean"  # "mean": pooled tokens -> MLP; "logsumexp": per-store log-latency, summed in time
    # the schedule-trace tokens (xfer_jax.trace), each through an MLP and averaged into one more program token
    # (by-task PCA +0.012, Zen 1 held out +0.008, session 10); letting all of them attend cost 7x the time for less
    trace: bool = True
    # False: the trace-only ablation (TLP's input alone): the store rows are not read, the trace token is all
    stores: bool = True
    # every store row also reads hardware.relative_store_features: its reuse distances and footprints against the
    # machine's caches, its parallel work against its threads, its vector length against its lanes (log2 ratios);
    # by-host, two seeds: PCA +0.002 (Emerald Rapids) and +0.009 (Zen 5), top-5 +0.01 and +0.02 (sessions 25-26)
    relative_features: bool = True
    kind: str = "xfer"  # "xfer" (this model) or "mlp" (the TenSet segment-sum MLP baseline)

    @classmethod
    def small(cls) -> "ModelConfig":
        return cls(dim=32, heads=2, layers=1, hardware_tokens=2, store_hidden=0)

    @property
    def trace_tokens(self) -> int:
        """Trace tokens per program this model reads (0: none)."""
        return MAX_TOKENS if self.kind == "xfer" and self.trace else 0

    @property
    def reads_relative_features(self) -> bool:
        """The relative features describe the program on this machine: noHW and the MLP baselines stay without."""
        return self.relative_features and self.use_hardware and self.kind == "xfer"

    @property
    def store_columns(self) -> int:
        """Columns of a normalised store row: PerStoreFeature's, then the relative features if read."""
        return self.store_features + (len(RELATIVE_FEATURE_NAMES) if self.reads_relative_features else 0)

    @property
    def bins_stores(self) -> bool:
        """Whether this model reads its store features through piecewise-linear bins (quantile inputs)."""
        return self.kind == "xfer" and self.store_bins > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _masked_attention(query, key, value, key_mask, heads: int):
    """Scaled dot-product attention; key positions with key_mask False get no weight. jax.nn's XLA kernel:
    the same numbers as a hand-written einsum softmax, and about 2x faster at 512 programs on this CPU."""
    batch, q_len, dim = query.shape
    k_len = key.shape[1]
    head_dim = dim // heads
    attended = jax.nn.dot_product_attention(
        query.reshape(batch, q_len, heads, head_dim), key.reshape(batch, k_len, heads, head_dim),
        value.reshape(batch, k_len, heads, head_dim), mask=key_mask[:, None, None, :], implementation="xla")
    return attended.reshape(batch, q_len, dim)


READOUTS = ("mean", "logsumexp")


def piecewise_linear_bins(x, bins: int):
    """x [..., F] in [0, 1] -> [..., F * bins]: bin t holds clip(x * bins - t, 0, 1), so x = mean over bins.

    The piecewise-linear encoding of Gorishniy et al. (2022): on quantile-scaled inputs its bins are quantile
    bins, and one linear layer on top can put a threshold anywhere, as a tree's split does."""
    steps = jnp.arange(bins, dtype=x.dtype)
    encoded = jnp.clip(x[..., None] * bins - steps, 0.0, 1.0)
    return encoded.reshape(*x.shape[:-1], x.shape[-1] * bins)


class Attention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.query = nnx.Linear(dim, dim, rngs=rngs)
        self.key_value = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.out = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x, context, context_mask):
        key, value = jnp.split(self.key_value(context), 2, axis=-1)
        if key.shape[0] != x.shape[0]:  # one context shared by the whole batch: project it once
            key, value = (jnp.broadcast_to(t, (x.shape[0], *t.shape[1:])) for t in (key, value))
            context_mask = jnp.broadcast_to(context_mask, (x.shape[0], *context_mask.shape[1:]))
        return self.out(_masked_attention(self.query(x), key, value, context_mask, self.heads))


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        dim = config.dim
        self.self_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.self_attention = Attention(dim, config.heads, rngs=rngs)
        cross = config.use_hardware and config.hardware_cross
        self.cross_norm = nnx.LayerNorm(dim, rngs=rngs) if cross else None
        self.cross_attention = Attention(dim, config.heads, rngs=rngs) if cross else None
        self.mlp_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp_in = nnx.Linear(dim, dim * config.mlp_ratio, rngs=rngs)
        self.mlp_out = nnx.Linear(dim * config.mlp_ratio, dim, rngs=rngs)

    def __call__(self, tokens, mask, hardware_tokens):
        normed = self.self_norm(tokens)
        tokens = tokens + self.self_attention(normed, normed, mask)
        if self.cross_attention is not None:
            hw_mask = jnp.ones(hardware_tokens.shape[:2], bool)
            tokens = tokens + self.cross_attention(self.cross_norm(tokens), hardware_tokens, hw_mask)
        return tokens + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(tokens))))


class TraceEncoder(nnx.Module):
    """Trace tokens -> one program token: id embedding + value projection + position, an MLP per token, then
    their mean over the real (non-padding) tokens."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.id_embed = nnx.Embed(len(TOKEN_VOCAB), config.dim, rngs=rngs)
        self.value_embed = nnx.Linear(TOKEN_VALUES, config.dim, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (MAX_TOKENS, config.dim)))
        self.hidden = nnx.Linear(config.dim, 2 * config.dim, rngs=rngs)
        self.out = nnx.Linear(2 * config.dim, config.dim, rngs=rngs)

    def __call__(self, ids, values):
        """ids [B, T], values [B, T, V] -> (token [B, 1, dim], mask [B, 1]: False for a program without tokens)."""
        ids = ids.astype(jnp.int32)
        mask = ids > 0
        # values are log2 sizes (0-20): a quarter keeps them near the scale of the other inputs
        tokens = self.id_embed(ids) + self.value_embed(values * 0.25) + self.position[None, : ids.shape[1]]
        tokens = self.out(jax.nn.gelu(self.hidden(tokens)))
        weights = mask.astype(tokens.dtype)[..., None]
        pooled = (tokens * weights).sum(1, keepdims=True) / jnp.maximum(weights.sum(1, keepdims=True), 1.0)
        return pooled, mask.any(1, keepdims=True)


class CostModel(nnx.Module):
    """score = CostModel(config)(features [B,S,F], mask [B,S], workload [B,W], hardware [B,H]) -> [B].

    Inputs are expected already normalised (see normalize.Normalizer). Higher score means faster.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        if config.readout not in READOUTS:
            raise ValueError(f"unknown readout {config.readout!r}; choose {', '.join(READOUTS)}")
        self.config = config
        dim = config.dim
        if not (config.stores or config.trace):
            raise ValueError("a model that reads neither store rows nor trace tokens has no program input")
        row_width = (config.store_columns * max(config.store_bins, 1)
                     + (config.hardware_features if self._hardware_in_stores else 0))
        self.store_hidden = (nnx.Linear(row_width, config.store_hidden, rngs=rngs)
                             if config.stores and config.store_hidden else None)
        self.store_embed = (nnx.Linear(config.store_hidden or row_width, dim, rngs=rngs) if config.stores else None)
        self.workload_embed = nnx.Linear(config.workload_features, dim, rngs=rngs)
        cross = config.use_hardware and config.hardware_cross
        self.hardware_embed = (nnx.Linear(config.hardware_features, dim * config.hardware_tokens, rngs=rngs)
                               if cross else None)
        self.hardware_film = (nnx.Linear(config.hardware_features, 2 * dim, rngs=rngs)
                              if config.use_hardware and config.hardware_film else None)
        self.trace_encoder = TraceEncoder(config, rngs=rngs) if config.trace else None
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.layers)])
        self.head_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head_hidden = nnx.Linear(dim, dim, rngs=rngs)
        self.head_out = nnx.Linear(dim, 1, rngs=rngs)

    @property
    def _hardware_in_stores(self) -> bool:
        return self.config.use_hardware and self.config.hardware_in_stores

    def _store_tokens(self, features, hardware):
        rows = piecewise_linear_bins(features, self.config.store_bins) if self.config.store_bins else features
        if self._hardware_in_stores:
            per_row = jnp.broadcast_to(hardware[:, None, :], (features.shape[0], features.shape[1], hardware.shape[-1]))
            rows = jnp.concatenate([rows, per_row], axis=-1)
        if self.store_hidden is not None:
            rows = jax.nn.gelu(self.store_hidden(rows))
        return self.store_embed(rows)

    def __call__(self, features, mask, workload, hardware, trace_ids=None, trace_values=None):
        """hardware may be [1, H] when the whole batch runs on one config: its tokens are then computed once.
        trace_ids [B, T] and trace_values [B, T, V] are read only by a model with config.trace."""
        tokens, mask = self._tokens(features, mask, workload, hardware, trace_ids, trace_values)
        if self.config.readout == "logsumexp":  # each store's log-time; the program's time is their sum
            log_time = self.head(self.head_norm(tokens))
            return -jax.nn.logsumexp(jnp.where(mask, log_time, -1e9), axis=-1)
        return self.head(self._pooled(tokens, mask))

    def embed(self, features, mask, workload, hardware, trace_ids=None, trace_values=None):
        """[B, dim]: what the readout MLP (`head`) reads; score = head(embed(...)) for the mean readout."""
        if self.config.readout != "mean":
            raise ValueError(f"the {self.config.readout} readout scores every store: it has no program embedding")
        return self._pooled(*self._tokens(features, mask, workload, hardware, trace_ids, trace_values))

    def head(self, x):
        """The readout MLP on the last axis: [..., dim] -> [...]."""
        return self.head_out(jax.nn.gelu(self.head_hidden(x)))[..., 0]

    def _pooled(self, tokens, mask):
        weights = mask.astype(tokens.dtype)[..., None]
        return (self.head_norm(tokens) * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)

    def _tokens(self, features, mask, workload, hardware, trace_ids, trace_values):
        """(program tokens after every block [B, S', dim], their mask)."""
        if self.store_embed is not None:
            tokens = self._store_tokens(features, hardware) + self.workload_embed(workload)[:, None, :]
        else:  # trace-only: no store tokens
            tokens, mask = jnp.zeros((features.shape[0], 0, self.config.dim)), mask[:, :0]
        if self.hardware_film is not None:
            scale, shift = jnp.split(self.hardware_film(hardware)[:, None, :], 2, axis=-1)
            tokens = tokens * (1.0 + scale) + shift
        if self.trace_encoder is not None:
            extra, extra_mask = self.trace_encoder(trace_ids, trace_values)
            tokens = jnp.concatenate([tokens, extra + self.workload_embed(workload)[:, None, :]], axis=1)
            mask = jnp.concatenate([mask, extra_mask], axis=1)
        hardware_tokens = None
        if self.hardware_embed is not None:
            hardware_tokens = jax.nn.gelu(self.hardware_embed(hardware)).reshape(
                hardware.shape[0], self.config.hardware_tokens, self.config.dim)
        for block in self.blocks:
            tokens = block(tokens, mask, hardware_tokens)
        return tokens, mask


class SegmentSumMLP(nnx.Module):
    """TenSet's MLP: an MLP on every store row, summed over the program's stores, then a linear head.

    With use_hardware the hardware vector joins the summed embedding (TenSet itself has no hardware input).
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        hidden = 4 * config.dim
        self.row_in = nnx.Linear(config.store_columns, hidden, rngs=rngs)
        self.row_hidden = nnx.Linear(hidden, hidden, rngs=rngs)
        extra = config.hardware_features if config.use_hardware else 0
        self.head_hidden = nnx.Linear(hidden + extra, hidden, rngs=rngs)
        self.head_out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, features, mask, workload, hardware, trace_ids=None, trace_values=None):
        rows = jax.nn.relu(self.row_hidden(jax.nn.relu(self.row_in(features))))
        summed = (rows * mask[..., None].astype(rows.dtype)).sum(1)
        if self.config.use_hardware:
            summed = jnp.concatenate([summed, jnp.broadcast_to(hardware, (len(summed), hardware.shape[-1]))], axis=-1)
        return self.head_out(jax.nn.relu(self.head_hidden(summed)))[:, 0]


def build_model(config: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
    """The one place that maps a config to a model class."""
    if config.kind == "mlp":
        return SegmentSumMLP(config, rngs=rngs)
    if config.kind == "xfer":
        return CostModel(config, rngs=rngs)
    raise ValueError(f"unknown model kind {config.kind!r}")
