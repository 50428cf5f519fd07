"""Schedule-trace tokens: a MetaSchedule trace (its JSON form) as a short sequence of fixed-width tokens.

TLP (ASPLOS 2023) ranks programs from the schedule primitives that made them rather than from the lowered
loop nest. Every record here carries its trace: the instructions (split, fuse, reorder, compute-at, the
parallel/vectorize/unroll annotations) and the sampled decisions (tile sizes, unroll depth, compute location).
One token per instruction that shapes the program; lookups (GetSBlock, GetLoops, ...) carry no choice and are
dropped. Pure Python: TVM writes the trace, this module only reads it, in either of its two forms:
    the JSON form the database stores (`Trace.as_json()`): `trace_tokens`;
    the Python form (`Trace.as_python()`), which TVM hands over 5x faster than the JSON form during tuning:
    `python_trace` turns it into the JSON form's shape, so that both give the same tokens.

A token is (id, values):
    id      index into TOKEN_VOCAB: the instruction kind, or for Annotate the annotation key (0 = padding)
    values  TOKEN_VALUES numbers: log2(1 + x) of up to 4 integers the instruction chose or was given (tile
            sizes, split factors, the unroll depth picked), of its operand count, and 1 after EnterPostproc
"""

from __future__ import annotations

import functools
import math
import re
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


# `Trace.as_python()` prints one line per instruction: `l1, l2 = sch.split(loop=l0, factors=[v3, 64], ...)`.
# An argument: an optional keyword, then a flat list, a string literal, or anything up to the next comma.
_ARGUMENT = re.compile(r'\s*(?:(\w+)=)?(\[[^\]]*\]|"(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')
_RENAMED = {"GetSblock": "GetSBlock", "Rfactor": "RFactor"}  # kinds whose Python name is not their snake case
_KIND_OF_METHOD: dict[str, str] = {}


def _kind(method: str) -> str:
    if method not in _KIND_OF_METHOD:
        kind = "".join(word.capitalize() for word in method.split("_"))
        _KIND_OF_METHOD[method] = _RENAMED.get(kind, kind)
    return _KIND_OF_METHOD[method]


def _python_value(text: str) -> Any:
    """A printed argument as the JSON form holds it: ints and floats as numbers, True/False as 1/0 (as the JSON
    form writes the flags that matter here), variables, None and strings (unquoted) as strings, flat lists as
    lists."""
    first = text[:1]
    if first == "[":
        return [_python_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
    if first == '"':
        return text[1:-1]
    if first.isdigit() or first == "-":
        return float(text) if "." in text or "e" in text else int(text)
    return {"True": 1, "False": 0}.get(text, text)


def _is_variable(value: Any) -> bool:
    """A variable the trace defined (b0, l12, v3), or a list of them."""
    if isinstance(value, list):
        return bool(value) and all(_is_variable(v) for v in value)
    return isinstance(value, str) and value[:1].isalpha() and value[1:].isdigit()


def python_trace(lines: Any) -> list:
    """`Trace.as_python()` lines -> the JSON form `trace_tokens` reads: [[kind, inputs, attrs, outputs], ...] and
    decisions [[instruction index, decision], ...]. Only what the tokens use is kept: the inputs' count and values
    (variables, the split factors, an annotation's value), the integer attrs and the outputs' names; lookups keep
    only their kind. The lists are shared between calls (lines repeat across candidates): read, don't change.

    >>> python_trace(["v3 = sch.sample_categorical(candidates=[0, 16], probs=[0.5, 0.5], decision=1)"])
    [[['SampleCategorical', [], [[0, 16], [0.5, 0.5]], ['v3']]], [[0, 1]]]
    """
    instructions: list = []
    decisions: list = []
    for line in lines:
        instruction, decision = _python_instruction(str(line))
        if decision is not None:
            decisions.append([len(instructions), decision])
        instructions.append(instruction)
    return [instructions, decisions]


_LAYOUT_BUFFER = re.compile(r'buffer=\("(read|write)", (\d+)\)')


@functools.lru_cache(maxsize=1 << 16)
def _python_instruction(line: str) -> tuple[list, Any]:
    """One printed instruction -> ([kind, inputs, attrs, outputs], its decision or None)."""
    head, _, call = line.partition("sch.")
    method, _, args = call.partition("(")
    kind = _kind(method)
    outputs = [name for name in head.rstrip(" =").replace(" ", "").split(",") if name]
    if kind in _LOOKUPS and kind != "EnterPostproc" or not args.endswith(")"):
        return [kind, [], [], outputs], None
    args = args[:-1]
    if kind == "TransformLayout":  # its index map is a lambda, not a flat argument list
        layout = _LAYOUT_BUFFER.search(args)
        buffer = [int(layout[2]), int(layout[1] == "write")] if layout else []
        return [kind, ["block", "index_map"], [*buffer, "None", int("assume_injective_transform=True" in args)],
                outputs], None
    arguments = (_ARGUMENT.findall(args) if '"' in args or "[" in args
                 else [(key, value) for key, _, value in (a.rpartition("=") for a in args.split(", "))])
    inputs: list = []
    attrs: list = []
    decision = None
    for key, text in arguments:
        if not text:
            continue
        value = _python_value(text.strip())
        if key == "decision":
            decision = value
        elif key == "factors":  # the JSON form lists a split's factors as inputs after the loop
            inputs.extend(value)
        elif not key or key == "ann_val" or _is_variable(value):
            inputs.append(value)
        else:
            attrs.append(value)
    if kind in ("CacheRead", "CacheWrite") and len(inputs) == 1:
        inputs.append([])  # consumer_blocks: printed only when there are some, always an input
    return [kind, inputs, attrs, outputs], decision
