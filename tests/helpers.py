"""Shared test helpers: a synthetic dataset, tiny ONNX models for the TVM tests, and the CLI command."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import traceback

import numpy as np

from xfer_jax import dataset as ds
from xfer_jax.hardware import HardwareDescriptor, hardware_vector
from xfer_jax.trace import MAX_TOKENS, TOKEN_VALUES, TOKEN_VOCAB

CLI = [sys.executable, "-m", "xfer_jax.cli"]  # the `xfer-jax` command of this Python, for kills and Ctrl-C


def assert_one_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit code 2, exactly one `error:` line holding every `expected` text, no traceback; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stdout[-400:], result.stderr[-800:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-800:]
    assert all(text in errors[0] for text in expected), errors[0]
    return errors[0]


def run_cli(*args) -> subprocess.CompletedProcess:
    """One `xfer-jax` command run inside this process (typer's CliRunner): milliseconds, where a new interpreter
    spends seconds importing JAX and TVM. Exit code and output are the command's own; an uncaught exception is
    exit code 1 with its traceback in stderr, as on the command line."""
    from typer.testing import CliRunner

    from xfer_jax.cli.main import app

    handler = signal.getsignal(signal.SIGINT)  # collect and tune install their own Ctrl-C handler
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        signal.signal(signal.SIGINT, handler)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


def synthetic_shards(root: pathlib.Path, seed: int = 0, platforms=("cpu-a", "cpu-b"), tasks: int = 6,
                     programs: int = 24) -> pathlib.Path:
    """Shards whose latency is a known function of the features and the hardware, so a model can learn it; their
    trace files hold random tokens."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    hashes = [f"{t:016x}" for t in range(tasks)]
    direction = rng.normal(size=ds.NUM_STORE_FEATURES)
    for p, name in enumerate(platforms):
        descriptor = HardwareDescriptor(kind="cpu", vector_bits=256, fma=True, threads=p + 1, l1_kib=32,
                                        l2_kib=512, l3_kib=8192, clock_ghz=2.0, peak_gflops=64.0 * (p + 1))
        counts = rng.integers(1, 4, size=tasks * programs)
        rows = np.abs(rng.normal(size=(counts.sum(), ds.NUM_STORE_FEATURES))).astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        quality = np.array([rows[offsets[i]:offsets[i + 1]].mean(0) @ direction for i in range(len(counts))])
        latency = np.exp(-quality / 4) * (1e-3 / (p + 1))
        latency[::17] = np.inf  # some failures
        ds.write_shard(
            root / f"shard-{p:05d}.npz", store_rows=rows, store_count=counts,
            workload=np.repeat(rng.normal(size=(tasks, ds.NUM_WORKLOAD_FEATURES)), programs, axis=0),
            latency=latency, latency_std=latency * 0.02, phase=np.zeros(len(counts), np.int8),
            record=np.arange(len(counts)),
            platform={"name": name, "descriptor": descriptor.to_dict(), "vector": hardware_vector(descriptor).tolist()},
            task_hashes=[hashes[i // programs] for i in range(len(counts))],
            tables={"tasks": {h: {"name": f"task{i}", "flops": 1e6} for i, h in enumerate(hashes)},
                    "networks": {"net-x": {h: 1 for h in hashes[:4]}, "net-y": {h: 2 for h in hashes[3:]}},
                    "source": {"name": f"{name}/synthetic", "records_begin": 0, "records_end": len(counts)}},
        )
        lengths = rng.integers(1, MAX_TOKENS, size=len(counts))
        tokens = rng.integers(1, len(TOKEN_VOCAB), (len(counts), MAX_TOKENS))
        ids = np.where(np.arange(MAX_TOKENS) < lengths[:, None], tokens, 0)
        values = rng.integers(0, 8, (len(counts), MAX_TOKENS, TOKEN_VALUES)) * (ids > 0)[..., None]
        ds.write_traces(root / f"shard-{p:05d}.npz", ids, values)
    return root


SHARD_DAMAGES = ("truncated", "byte-flipped", "text", "missing array", "meta not utf-8")
META_STILL_READABLE = ("missing array", "byte-flipped")  # damages that a reader of the meta alone cannot see


def damage_shard(path: pathlib.Path, damage: str) -> None:
    """Damage one shard the ways a disk, a killed writer or a careless user do."""
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "byte-flipped":  # inside the compressed arrays: zip's CRC or zlib notices
        data = bytearray(path.read_bytes())
        data[len(data) // 2:len(data) // 2 + 8] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 8])
        path.write_bytes(bytes(data))
    elif damage == "text":
        path.write_text("not a shard at all\n")
    else:
        with np.load(path) as shard:
            arrays = dict(shard)
        if damage == "missing array":
            del arrays["latency"]
        else:
            arrays["meta"] = np.frombuffer(b"\xff\xfe\x00 not json", np.uint8)
        path.unlink()
        np.savez(path, **arrays)


def write_matmul_onnx(path: pathlib.Path, n: int = 64) -> pathlib.Path:
    """A one-layer ONNX model (MatMul + Relu): one cheap tuning task."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, n])], initializer=[weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def write_two_matmul_onnx(path: pathlib.Path, n: int = 256) -> pathlib.Path:
    """Two tasks of unequal cost: an n x n MatMul + Relu, then a thin n x 4 MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w1", (n, n)), ("w2", (n, 4)))]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["y"]), helper.make_node("Relu", ["y"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["z"])], "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, n])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [16, 4])], initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def write_relu_onnx(path: pathlib.Path, n: int = 64) -> pathlib.Path:
    """A lone Relu: one task whose design space is so small that the search runs out of new programs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["z"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, n])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
