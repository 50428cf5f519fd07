"""Building and running candidates: a fast builder, a local or RPC runner, and a load guard.

Workers receive `fast_build` by reference, so it must stay at module level in this installed package.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import os
import shutil
import socket
import statistics
import time
import weakref

import numpy as np
import tvm
from tvm import te
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import local_builder
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

from xfer_jax.errors import UserError
from xfer_jax.hardware import REFERENCE_MATMUL_SIZE, reference_gflops

from .platforms import Platform


def _name_importlibs_frozen_files() -> None:
    """TuneContext imports `tvm.s_tir.tensor_intrin`, whose ~500 TVMScript functions each call inspect.stack()
    inside an import: 28 s on 2 cores, mostly inspect.getmodule scanning all of sys.modules for importlib's
    frozen frames, whose file names it never caches. Naming their modules up front makes the import 11 s."""
    for module in ("importlib._bootstrap", "importlib._bootstrap_external"):
        inspect.modulesbyfile.setdefault(f"<frozen {module}>", module)


_name_importlibs_frozen_files()


def fast_build(mod: tvm.IRModule, target, _params=None):
    """TVM's default build without importing tensor intrinsics in every worker (11.6 s each, see TVM-NOTES).

    Like TVM's, it times a kernel without the blocks that rewrite its weights' layout (done once, ahead of time,
    in a compiled network). But where the rewritten buffer is computed inside the kernel (attention's reshaped keys
    and values), the block cannot go: without it that buffer is read before it is written, and TVM's build fails
    every candidate ("Buffer T_reshape_global is used before its definition"; bert_tiny's and gpt_tiny's attention).
    Such a kernel is timed with the rewrite, as it runs inside the network.
    """
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    without_rewrite = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    try:
        return _build_either(without_rewrite, mod, target)
    except Exception:  # a schedule that tensorizes needs the intrinsics registered: the slow path, for it
        from tvm.s_tir import tensor_intrin  # noqa: F401  registers the intrinsics tensorize refers to

        return _build_either(without_rewrite, mod, target)


def _build_either(without_rewrite: tvm.IRModule, with_rewrite: tvm.IRModule, target):
    try:
        return tvm.tirx.build(without_rewrite, target=target)
    except Exception:  # InternalError: the rewritten buffer is computed inside the kernel, so keep its rewrite
        return tvm.tirx.build(with_rewrite, target=target)


def alloc_arguments(device, args_info, alloc_repeat: int):
    """Random floats, as TVM's default; but integer inputs are zero. They are usually indices (an embedding
    lookup), and random indices read out of bounds and crash the worker, so such tasks could never be measured.
    """
    return _alloc(tvm.get_global_func("tvm.contrib.random.random_fill_for_measure"), device, args_info, alloc_repeat)


def alloc_arguments_rpc(session, device, args_info, alloc_repeat: int):
    """alloc_arguments for RPCRunner: the random fill runs on the remote side."""
    return _alloc(session.get_function("tvm.contrib.random.random_fill_for_measure"), device, args_info,
                  alloc_repeat)


def _alloc(random_fill, device, args_info, alloc_repeat: int):
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    def fill(tensor) -> None:
        if "int" in str(tensor.dtype):
            tensor.copyfrom(np.zeros(tensor.shape, str(tensor.dtype)))
        else:
            random_fill(tensor)

    return alloc_argument_common(fill, device, args_info, alloc_repeat)


@dataclasses.dataclass(frozen=True)
class MeasureConfig:
    number: int = 1  # runs per repeat
    repeat: int = 3  # repeats; their spread is recorded
    min_repeat_ms: int = 20  # lengthens a repeat of a very fast program until timing is stable
    cpu_cache_flush: bool = False  # flush the CPU caches before each repeat (inputs cold, as inside a network)
    build_timeout_s: float = 30.0
    run_timeout_s: float = 15.0
    rpc_tracker: str | None = None  # "HOST:PORT" to measure through TVM's RPC tracker
    rpc_key: str | None = None

    @classmethod
    def cold_cache(cls, **kwargs) -> "MeasureConfig":
        """Ten single runs, each after a cache flush: a kernel's inputs arrive cold, as from its neighbours in a
        network (with warm repeats, kernels that only win on hot caches look fast)."""
        return cls(number=1, repeat=10, min_repeat_ms=0, cpu_cache_flush=True, **kwargs)


@derived_object
class PooledBuilder(ms.builder.PyBuilder):
    """LocalBuilder with `fast_build`, whose worker pool lives across batches.

    LocalBuilder starts a new pool for every batch (a worker leaks memory over many builds), which costs a
    tvm import per worker per batch: about a third of a 16-program batch here. Recycling each worker after
    `uses_per_worker` builds keeps the leak bounded without that cost.
    """

    def __init__(self, timeout_s: float, uses_per_worker: int = 64):
        super().__init__()
        self.timeout_s = timeout_s
        self.pool = PopenPoolExecutor(timeout=timeout_s, maximum_process_uses=uses_per_worker)

    def build(self, build_inputs: list[ms.builder.BuilderInput]) -> list[ms.builder.BuilderResult]:
        jobs = [(fast_build, None, b.mod, b.target, None) for b in build_inputs]
        results = []
        for outcome in self.pool.map_with_error_catching(lambda job: local_builder._worker_func(*job), jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(ms.builder.BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(ms.builder.BuilderResult(None, f"build timed out after {self.timeout_s} s"))
            else:
                results.append(ms.builder.BuilderResult(None, f"build failed: {outcome.value}"))
        return results


def make_builder(config: MeasureConfig) -> ms.builder.Builder:
    return PooledBuilder(config.build_timeout_s)


def make_runner(platform: Platform, config: MeasureConfig) -> ms.runner.Runner:
    """A runner whose workers see the platform's thread count (they inherit it from this process)."""
    os.environ.update(platform.runtime_env())
    evaluator = ms.runner.EvaluatorConfig(number=config.number, repeat=config.repeat,
                                          min_repeat_ms=config.min_repeat_ms,
                                          enable_cpu_cache_flush=config.cpu_cache_flush)
    if config.rpc_tracker:
        host, port = check_tracker(config.rpc_tracker, config.rpc_key)
        rpc = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=config.rpc_key,
                                  session_timeout_sec=int(config.run_timeout_s) + 30)
        return ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=evaluator, max_workers=1,
                                   f_alloc_argument=alloc_arguments_rpc)
    return ms.runner.LocalRunner(timeout_sec=config.run_timeout_s, evaluator_config=evaluator,
                                 f_alloc_argument=alloc_arguments)


@derived_object
class SyncRunner(ms.runner.PyRunner):
    """Waits for each batch before returning, so no build or search runs beside a measurement on 2 cores.

    TVM's task scheduler otherwise measures in the background while it searches and builds the next batch, and
    joins results lazily (after the whole round-robin phase), so join time says nothing about when a batch
    finished. `finished_at` keeps (batch size, time) per batch in send order, which is also join order.
    """

    def __init__(self, inner: ms.runner.Runner):
        super().__init__()
        self.inner = inner
        self.finished_at: collections.deque[tuple[int, float]] = collections.deque()

    def run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        futures = self.inner.run(runner_inputs)
        for future in futures:
            future.result()  # the futures cache their result
        self.finished_at.append((len(futures), time.time()))
        return futures


def check_tracker(address: str, key: str | None) -> tuple[str, int]:
    """(host, port) of a reachable RPC tracker that has a free server under `key`, or a MeasureError."""
    from tvm import rpc

    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        raise MeasureError(f"--rpc-tracker must be HOST:PORT, got {address!r}")
    if not key:
        raise MeasureError("--rpc-tracker needs --rpc-key")
    try:  # a plain socket first: TVM's connect_tracker retries for about a minute before it gives up
        socket.create_connection((host, int(port_text)), timeout=3).close()
    except OSError as err:
        raise MeasureError(f"cannot reach the RPC tracker at {address}: {err}") from None
    try:
        summary = rpc.connect_tracker(host, int(port_text)).summary()
    except Exception as err:  # socket errors arrive as several TVM and OS types
        raise MeasureError(f"cannot reach the RPC tracker at {address}: {str(err).splitlines()[0][:120]}") from None
    keys = [str(server.get("key", "")) for server in summary.get("server_info", [])]  # e.g. "server:KEY"
    if not any(k.split(":")[-1] == key for k in keys):
        raise MeasureError(f"the RPC tracker at {address} has no server with key {key!r}")
    return host, int(port_text)


def build_and_run(builder, runner, platform: Platform, target,
                  candidates) -> list[tuple[list[float] | None, str | None]]:
    """(seconds per repeat, error) for each candidate; a failed build or run gives (None, first error line)."""
    built = builder.build([ms.builder.BuilderInput(c.sch.mod, target) for c in candidates])
    outcomes: list[tuple[list[float] | None, str | None]] = [(None, None)] * len(candidates)
    runnable = []
    for i, result in enumerate(built):
        if result.error_msg:
            outcomes[i] = (None, "build: " + _first_line(result.error_msg))
        else:
            runnable.append(i)
    ran = run_artifacts(runner, platform, [(built[i].artifact_path, candidates[i].args_info) for i in runnable])
    for i, outcome in zip(runnable, ran):
        outcomes[i] = outcome
    for result in built:
        if result.artifact_path and os.path.exists(result.artifact_path):
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
    return outcomes


def run_artifacts(runner, platform: Platform, artifacts) -> list[tuple[list[float] | None, str | None]]:
    """Run built (artifact path, args_info) pairs; (seconds per repeat, None) or (None, error) each."""
    if not artifacts:
        return []
    futures = runner.run([ms.runner.RunnerInput(path, platform.device_type, args) for path, args in artifacts])
    outcomes = []
    for future in futures:
        result = future.result()
        if result.error_msg:
            outcomes.append((None, "run: " + _first_line(result.error_msg)))
            continue
        secs = [float(s) for s in result.run_secs]
        finite = all(np.isfinite(secs)) and min(secs) > 0
        outcomes.append((secs, None) if finite else (None, "run: non-finite time"))
    return outcomes


def _first_line(message: str) -> str:
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    interesting = [ln for ln in lines if "Error" in ln or "error" in ln] or lines
    return (interesting[-1] if interesting else "unknown error")[:300]


class MeasureError(UserError):
    """Measurement cannot work at all on this platform (reported before any candidate is measured)."""


class LoadGuard:
    """Re-measures a fixed reference program to detect load from other processes.

    The baseline is the best of the first few measurements; a later ratio above `threshold` means the
    machine is busy, and the batch measured under that load is measured again.
    """

    def __init__(self, platform: Platform, target, builder, runner, threshold: float = 1.25):
        self.platform, self.runner, self.threshold = platform, runner, threshold
        candidate = _reference_candidate(platform.device_type)
        built = builder.build([ms.builder.BuilderInput(candidate.sch.mod, target)])[0]
        if built.error_msg:
            raise MeasureError(f"the reference program failed to build: {_first_line(built.error_msg)}; "
                               "check that xfer-jax is installed in this Python (pip install -e .)")
        self.artifact = (built.artifact_path, candidate.args_info)  # built once, run many times
        weakref.finalize(self, shutil.rmtree, os.path.dirname(built.artifact_path), True)  # its temporary folder
        self.baseline_s = min(self.measure_raw() for _ in range(3))

    def measure_raw(self) -> float:
        secs, error = run_artifacts(self.runner, self.platform, [self.artifact])[0]
        if secs is None:
            hint = ("raise --run-timeout or check that the machine is idle" if "timed out" in error.lower()
                    or "timeout" in error.lower() else "check the platform with `xfer-jax platforms`")
            raise MeasureError(f"the reference program failed to run ({error}): {hint}")
        return statistics.median(secs)

    def ratio(self) -> float:
        return self.measure_raw() / self.baseline_s

    def wait_until_idle(self, max_wait_s: float = 600.0) -> float:
        """Block (with back-off) until the reference runs at its baseline speed; return the last ratio."""
        start, ratio = time.time(), self.ratio()
        while ratio > self.threshold and time.time() - start < max_wait_s:
            time.sleep(min(30.0, 2.0 + (time.time() - start) / 4))
            ratio = self.ratio()
        return ratio


def with_timed_reference(platform: Platform, target, builder, runner) -> Platform:
    """The platform with the reference matmul's speed on it in its descriptor (a measured hardware feature),
    timed here unless the descriptor gives it."""
    if platform.descriptor.reference_gflops > 0:
        return platform
    seconds = LoadGuard(platform, target, builder, runner).baseline_s
    descriptor = dataclasses.replace(platform.descriptor, reference_gflops=reference_gflops(seconds))
    return dataclasses.replace(platform, descriptor=descriptor)


def _reference_candidate(device_type: str) -> ms.MeasureCandidate:
    """A 256x256x256 float32 matmul, parallel over the CPU cores or spread over GPU blocks and threads:
    long enough to notice a second busy core."""
    n = REFERENCE_MATMUL_SIZE
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), "k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    func = te.create_prim_func([a, b, c])
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    block = sch.get_sblock("C")
    i, j, k = sch.get_loops(block)
    if device_type == "cuda":  # a GPU kernel must bind its loops to blocks and threads
        sch.bind(i, "blockIdx.x")
        sch.bind(j, "threadIdx.x")
    else:
        j_outer, j_inner = sch.split(j, [None, 8])
        sch.reorder(i, j_outer, k, j_inner)  # unscheduled, LLVM spends ~40 s compiling this matmul
        sch.parallel(i)
        sch.vectorize(j_inner)
    return ms.MeasureCandidate(sch, ms.arg_info.ArgInfo.from_prim_func(func))
