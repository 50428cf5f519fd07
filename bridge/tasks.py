"""Task extraction: a network becomes weighted tuning tasks (fused TIR functions with fixed shapes)."""

from __future__ import annotations

import dataclasses

import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from .networks import Network


@dataclasses.dataclass(frozen=True)
class Task:
    name: str  # e.g. "fused_conv2d_add_relu"
    mod: tvm.IRModule  # one PrimFunc named "main"
    weight: int  # how many times it occurs in the network
    flops: float

    @property
    def workload_hash(self) -> str:
        return workload_hash(self.mod)


def workload_hash(mod: tvm.IRModule) -> str:
    return hash_hex(tvm_ffi.structural_hash(mod))


def program_hash(scheduled: tvm.IRModule) -> int:
    """One scheduled program's identity, the same in every process: some schedules (attention's rfactors) leave
    free variables, which the plain structural hash keys by address, so one program hashed to a new value in each
    run."""
    return tvm_ffi.structural_hash(scheduled, map_free_vars=True)


def hash_hex(structural_hash: int | str) -> str:
    """The 16-digit hex form of a structural hash (a database workload line stores it in decimal)."""
    return f"{int(structural_hash) % 2**64:016x}"


def fuse_for_tuning(mod: tvm.IRModule, target) -> tvm.IRModule:
    """The pre-database part of MetaSchedule's compile pipeline. Without it extract_tasks finds 0 tasks."""
    dispatch = relax.pipeline.library_dispatch_passes(target)
    passes = [*dispatch, relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
              relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR()]
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(passes)(mod)


def extract_tasks(network: Network, target) -> list[Task]:
    """Weighted tasks, heaviest total FLOPs (x weight) first."""
    fused = fuse_for_tuning(network.mod, target)
    extracted = ms.relax_integration.extract_tasks(fused, target)
    tasks = []
    for task in extracted:
        mod = task.dispatched[0]
        try:
            flops = float(tvm.s_tir.analysis.estimate_tir_flops(mod))
        except Exception:  # estimate_tir_flops rejects some data-dependent loops; treat as memory-bound
            flops = 0.0
        tasks.append(Task(task.task_name, mod, int(task.weight), flops))
    tasks.sort(key=lambda t: (-t.flops * t.weight, t.name))
    return tasks
