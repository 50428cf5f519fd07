"""Schedule-trace tokens read from the JSON and the printed forms of MetaSchedule traces (no TVM needed)."""

import math

import numpy as np

from xfer_jax.trace import MAX_TOKENS, TOKEN_VOCAB, batch_tokens, python_trace, trace_tokens

# a conv-like trace in the database's JSON form: lookups, a sampled tile split, a sampled unroll, postprocessing
TRACE = [[
    ["GetSBlock", [], ["conv", "main"], ["b0"]],
    ["GetLoops", ["b0"], [], ["l1", "l2"]],
    ["SamplePerfectTile", ["l1"], [2, 64], ["v3", "v4"]],
    ["Split", ["l1", "v3", "v4"], [True, False], ["l5", "l6"]],
    ["Split", ["l2", "None", 16], [True, False], ["l7", "l8"]],
    ["SampleCategorical", [], [[0, 16, 64], [0.3, 0.3, 0.4]], ["v9"]],
    ["Annotate", ["b0", "v9"], ["meta_schedule.unroll_explicit"], []],
    ["EnterPostproc", [], [], []],
    ["Parallel", ["l5"], [], []],
    ["Annotate", ["b0", 7], ["some.new_key"], []],
    ["Tile", ["l6"], [], []],
], [[2, [8, 4]], [5, 2]]]

# the same trace as Trace.as_python() prints it (tests/test_collect.py checks real traces against the database)
PRINTED = [
    'b0 = sch.get_sblock(name="conv", func_name="main")',
    "l1, l2 = sch.get_loops(block=b0)",
    "v3, v4 = sch.sample_perfect_tile(loop=l1, n=2, max_innermost_factor=64, decision=[8, 4])",
    "l5, l6 = sch.split(loop=l1, factors=[v3, v4], preserve_unit_iters=True, disable_predication=False)",
    "l7, l8 = sch.split(loop=l2, factors=[None, 16], preserve_unit_iters=True, disable_predication=False)",
    "v9 = sch.sample_categorical(candidates=[0, 16, 64], probs=[0.3, 0.3, 0.4], decision=2)",
    'sch.annotate(block_or_loop=b0, ann_key="meta_schedule.unroll_explicit", ann_val=v9)',
    "sch.enter_postproc()",
    "sch.parallel(loop=l5)",
    'sch.annotate(block_or_loop=b0, ann_key="some.new_key", ann_val=7)',
    "sch.tile(loop=l6)",
]


def _token(ids, values, position):
    return TOKEN_VOCAB[ids[position]], values[position]


def test_lookups_are_dropped_and_sampled_decisions_become_values():
    ids, values = trace_tokens(TRACE)
    names = [TOKEN_VOCAB[i] for i in ids if i]
    assert names == ["SamplePerfectTile", "Split", "Split", "SampleCategorical",
                     "Annotate:meta_schedule.unroll_explicit", "Parallel", "Annotate:<other>", "<other>"]
    name, tile = _token(ids, values, 0)
    np.testing.assert_allclose(tile[:2], [math.log2(9), math.log2(5)])  # tile sizes 8 and 4
    name, split = _token(ids, values, 1)
    np.testing.assert_allclose(split[:2], [math.log2(9), math.log2(5)])  # the split reads the sampled variables
    name, literal = _token(ids, values, 2)
    np.testing.assert_allclose(literal[:2], [0.0, math.log2(17)])  # "None", the inferred factor, reads as 0
    name, unroll = _token(ids, values, 4)
    assert unroll[0] == math.log2(65)  # the categorical's choice (64) follows its variable into the annotation
    assert values[4, 5] == 0 and values[5, 5] == 1  # after EnterPostproc
    assert (ids[8:] == 0).all() and (values[8:] == 0).all()


def test_a_long_trace_keeps_its_first_tokens():
    long = [[["Fuse", ["l0", "l1"], [1], ["l2"]]] * (MAX_TOKENS + 10), []]
    ids, _ = trace_tokens(long)
    assert (ids > 0).sum() == MAX_TOKENS
    short_ids, _ = trace_tokens(long, max_tokens=4)
    assert short_ids.shape == (4,)


def test_malformed_traces_give_empty_tokens_not_errors():
    for bad in (None, [], [None, None], [[["Split"]], "x"], [[["Split", None, None, None]], [[None, 3]]], "text"):
        ids, values = trace_tokens(bad)
        assert (ids == 0).all() or (ids > 0).sum() <= 1
        assert np.isfinite(values).all()


def test_batch_tokens_stacks_each_trace():
    ids, values = batch_tokens([TRACE, None, TRACE])
    assert ids.shape == (3, MAX_TOKENS) and ids.dtype == np.int8
    np.testing.assert_array_equal(ids[0], ids[2])
    assert (ids[1] == 0).all()


def test_the_printed_form_gives_the_json_forms_tokens():
    for printed, stored in zip(batch_tokens([python_trace(PRINTED)]), batch_tokens([TRACE])):
        np.testing.assert_array_equal(printed, stored)


def test_printed_arguments_keep_their_count_and_values():
    (cache, layout, fuse, annotate), decisions = python_trace([
        'b5 = sch.cache_write(block=b0, write_buffer_index=0, storage_scope="local")',
        'sch.transform_layout(block=b1, buffer=("write", 2), index_map=tvm.tirx.IndexMap.from_func(lambda i, j: '
        '(j, i,)), pad_value=None, assume_injective_transform=True)',
        "l9 = sch.fuse(l1, l2, l3, preserve_unit_iters=True)",
        'sch.annotate(block_or_loop=b0, ann_key="tag", ann_val="a, b")',
    ])
    assert cache == ["CacheWrite", ["b0", []], [0, "local"], ["b5"]]  # no consumer blocks printed, still an input
    assert layout[0] == "TransformLayout" and len(layout[1]) == 2 and layout[2] == [2, 1, "None", 1]
    assert fuse == ["Fuse", ["l1", "l2", "l3"], [1], ["l9"]]
    assert annotate == ["Annotate", ["b0", "a, b"], ["tag"], []]  # a comma inside a string is not a separator
    assert decisions == []


def test_an_unreadable_printed_line_is_an_unknown_instruction_and_keeps_later_decisions_in_place():
    (garbage, tile), decisions = python_trace(["not a schedule call",
                                                "v0, v1 = sch.sample_perfect_tile(loop=l9, n=2, decision=[2, 3])"])
    assert decisions == [[1, [2, 3]]]  # decisions stay keyed by instruction index
    ids, values = trace_tokens([[garbage, tile], decisions])
    assert [TOKEN_VOCAB[i] for i in ids[:3]] == ["<other>", "SamplePerfectTile", "<pad>"]
    np.testing.assert_allclose(values[1, :2], [math.log2(3), math.log2(4)])
