"""Schedule-trace tokens: a MetaSchedule trace (its JSON form) as a short sequence of fixed-width tokens.

TLP (ASPLOS 2023) ranks programs from the schedule primitives that made them rather than from the lowered
loop nest. Every record here carries its trace: the instructions (split, fuse, reorder, compute-at, the
parallel/vectorize/unroll annotations) and the sampled decisions (tile sizes, unroll depth, compute location).
One token per instruction that shapes the program; lookups (GetSBlock, GetLoops, ...) carry no choice and are
dropped. Pure Python over JSON: TVM writes the trace (`Trace.as_json()`), this module only reads it.

A token is (id, values):
    id      index into TOKEN_VOCAB: the instruction kind, or for Annotate the annotation key (0 = padding)
    values  TOKEN_VALUES numbers: log2(1 + x) of up to 4 integers the instruction chose or was given (tile
            sizes, split factors, the unroll depth picked), of its operand count, and 1 after EnterPostproc
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Instructions that only look things up: no choice, no transformation.
_LOOKUPS = frozenset({"GetSBlock", "GetBlock", "GetLoops", "GetChildBlocks", "GetProducers", "GetConsumers",
                      "GetOutputBlocks", "EnterPostproc", "Unannotate"})
_KINDS = ("<pad>", "SamplePerfectTile", "SampleCategorical", "SampleComputeLocation", "Split", "Fuse",
               "Reorder", "Parallel", "Vectorize", "Unroll", "Bind", "ComputeAt", "ReverseComputeAt",
               "ComputeInline", "ReverseComputeInline", "CacheRead", "CacheWrite", "DecomposeReduction", "RFactor",
               "TransformLayout", "Blockize", "Tensorize", "StorageAlign", "SetScope", "<other>")
_ANNOTATION_KEYS = ("meta_schedule.tiling_structure", "meta_schedule.parallel",
                   "meta_schedule.vectorize", "meta_schedule.unroll_explicit", "meta_schedule.unroll_implicit",
                   "pragma_auto_unroll_max_step", "pragma_unroll_explicit", "meta_schedule.random_compute_producer",
                   "meta_schedule.layout_rewrite_preproc", "meta_schedule.cooperative_fetch", "<other>")
TOKEN_VOCAB = (*_KINDS, *(f"Annotate:{key}" for key in _ANNOTATION_KEYS))
TOKEN_VALUES = 6
MAX_TOKENS = 48  # 99% of traces here keep under 40; longer ones keep their first MAX_TOKENS tokens
_INDEX = {name: i for i, name in enumerate(TOKEN_VOCAB)}


def _log2p(x: float) -> float:
    return math.log2(1.0 + abs(float(x))) * (1.0 if x >= 0 else -1.0)


def _integers(items: Any) -> list[float]:
    return [float(v) for v in (items if isinstance(items, list) else [items])
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


def trace_tokens(trace_json: Any, max_tokens: int = MAX_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """A trace's JSON ([instructions, decisions]) -> (ids [max_tokens] int8, values [max_tokens, TOKEN_VALUES]
    float32). Unused positions have id 0.

    An instruction is [kind, inputs, attrs, outputs]; decisions are [[instruction index, decision], ...]. A
    sampled variable's value (SampleCategorical's choice, for one) follows it into the Annotate that uses it.
    """
    instructions, decisions = (trace_json + [[], []])[:2] if isinstance(trace_json, list) else ([], [])
    decided = {entry[0]: entry[1] for entry in (decisions if isinstance(decisions, list) else [])
               if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)}
    ids = np.zeros(max_tokens, np.int8)
    values = np.zeros((max_tokens, TOKEN_VALUES), np.float32)
    known: dict[str, float] = {}  # sampled variable -> its value
    after_postproc = 0.0
    position = 0
    for index, instruction in enumerate(instructions if isinstance(instructions, list) else []):
        if not (isinstance(instruction, list) and len(instruction) == 4):
            continue
        kind = instruction[0]
        inputs, attrs, outputs = (part if isinstance(part, list) else [] for part in instruction[1:])
        if kind == "EnterPostproc":
            after_postproc = 1.0
        chosen = _chosen(kind, attrs, decided.get(index))
        if len(outputs) == len(chosen):
            known.update(zip(map(str, outputs), chosen))
        if kind in _LOOKUPS or position >= max_tokens:
            continue
        name = kind
        if kind == "Annotate":  # the annotated value may be a sampled variable: its value is the choice
            name = f"Annotate:{attrs[0] if attrs else ''}"
            chosen = _integers([known.get(v, v) if isinstance(v, str) else v for v in inputs[1:]])
        elif kind == "Split":  # factors are tile-size variables or literals ("None" for the inferred one)
            chosen = _integers([known.get(v, 0.0) if isinstance(v, str) else v for v in inputs[1:]])
        elif not chosen:
            chosen = _integers(attrs)
        ids[position] = _INDEX.get(name, _INDEX["Annotate:<other>" if kind == "Annotate" else "<other>"])
        numbers = [_log2p(v) for v in chosen[-4:]]
        values[position, : len(numbers)] = numbers
        values[position, 4] = _log2p(len(inputs))
        values[position, 5] = after_postproc
        position += 1
    return ids, values


def _chosen(kind: str, attrs: Any, decision: Any) -> list[float]:
    """The integers a sampling instruction chose: tile sizes, or the categorical candidate picked."""
    if decision is None:
        return []
    if kind == "SampleCategorical" and attrs and isinstance(attrs[0], list):
        candidates = attrs[0]
        picked = isinstance(decision, int) and 0 <= decision < len(candidates)
        return _integers([candidates[decision]]) if picked else []
    return _integers(decision)


def batch_tokens(traces: list[Any], max_tokens: int = MAX_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """trace_tokens over a list: (ids [N, T] int8, values [N, T, TOKEN_VALUES] float32)."""
    ids = np.zeros((len(traces), max_tokens), np.int8)
    values = np.zeros((len(traces), max_tokens, TOKEN_VALUES), np.float32)
    for i, trace in enumerate(traces):
        ids[i], values[i] = trace_tokens(trace, max_tokens)
    return ids, values
