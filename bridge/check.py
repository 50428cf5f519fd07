"""Whether a scheduled program computes what its task's unscheduled code computes, on seeded random inputs.

MetaSchedule measures speed, never results, and TVM 0.27 compiles some schedules to wrong code: on bert_tiny's
attention task (Zen 3, eight rounds) each of xfer's 12 fastest records, which rfactor both softmax reductions, was
off by 7-17% of the output's range, while the untuned code and xgb's records agreed to 1e-7. So `tune` counts and
compiles only records that pass this check.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

from . import records
from .tasks import Task, hash_hex, program_hash

# outputs agree within this fraction of the reference's largest magnitude (at least 1): reordered float32
# reductions differ by about 1e-7 here, wrong code by percents; 16-bit floats round far coarser
TOLERANCE = {"float16": 1e-2, "bfloat16": 1e-2}
DEFAULT_TOLERANCE = 1e-3


def _random_arguments(task: Task) -> list[np.ndarray]:
    """Every buffer of the task's function, floats uniform in [-1, 1), others (indices, masks) zero; seeded. So
    integer results are compared only as the zero inputs make them."""
    rng = np.random.default_rng(0)
    arrays = []
    for info in ms.arg_info.ArgInfo.from_prim_func(task.mod["main"]):
        shape, dtype = [int(d) for d in info.shape], str(info.dtype)
        arrays.append(rng.uniform(-1, 1, shape).astype(dtype) if "float" in dtype else np.zeros(shape, dtype))
    return arrays


def _agree(got: np.ndarray, want: np.ndarray) -> bool:
    finite = np.abs(want[np.isfinite(want)].astype(np.float64))
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    tolerance = TOLERANCE.get(str(want.dtype), DEFAULT_TOLERANCE)
    return bool(np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=tolerance, atol=tolerance * scale,
                            equal_nan=True))


def program_key(task_name: str, scheduled: tvm.IRModule) -> str:
    """How a verdict names its program: the task's name and the scheduled module's hash."""
    return f"{task_name}:{hash_hex(program_hash(scheduled))}"


def read_verdicts(path: pathlib.Path) -> dict[str, bool]:
    """{program key: computes the task's output} from a verdict file (none yet: empty)."""
    return {line["program"]: line["matches"] for _, line in records.iter_json_lines(path) if isinstance(line, dict)}


class OutputCheck:
    """Verdicts on scheduled programs of one network's tasks, kept in `verdicts_path` (one JSON line per program,
    appended) so a resumed tune checks nothing twice. A program that cannot be judged here (it, or its task's
    untuned code, fails to build or run, or an input cannot be made) passes unjudged: its measurement failed it
    already, or the compiled network's own output check will; that verdict is not kept, so a rerun tries again."""

    def __init__(self, tasks: list[Task], target, verdicts_path: pathlib.Path):
        self.tasks, self.target, self.path = tasks, target, verdicts_path
        self.verdicts = read_verdicts(verdicts_path)
        self.unjudged: set[str] = set()
        self.references: dict[int, tuple[list[np.ndarray], list[np.ndarray]] | None] = {}
        self.seconds = 0.0

    @property
    def rejected(self) -> int:
        return sum(not ok for ok in self.verdicts.values())

    def _run(self, mod: tvm.IRModule, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Built whole, layout-rewrite blocks kept (the builder drops them and expects rewritten weights), so the
        inputs stay as given."""
        device = tvm.cpu()
        library = tvm.tirx.build(mod, target=self.target)
        arguments = [tvm.runtime.tensor(a.copy(), device) for a in arrays]
        library(*arguments)
        return [a.numpy() for a in arguments]

    def _reference(self, task_id: int) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        if task_id not in self.references:
            try:
                inputs = _random_arguments(self.tasks[task_id])
                self.references[task_id] = inputs, self._run(self.tasks[task_id].mod, inputs)
            except Exception:  # TVM raises several types, numpy others; see the class docstring
                self.references[task_id] = None
        return self.references[task_id]

    def matches(self, task_id: int, scheduled: tvm.IRModule) -> bool:
        """Whether `scheduled` (the task's module after its schedule) computes the untuned code's outputs."""
        key = program_key(self.tasks[task_id].name, scheduled)
        if key in self.verdicts or key in self.unjudged:
            return self.verdicts.get(key, True)
        start = time.perf_counter()
        reference, ok = self._reference(task_id), None  # None: not judged
        if reference is not None:
            try:
                ok = all(_agree(got, want) for got, want in zip(self._run(scheduled, reference[0]), reference[1]))
            except Exception:  # see the class docstring
                pass
        self.seconds += time.perf_counter() - start
        if ok is None:
            self.unjudged.add(key)
            return True
        self.verdicts[key] = ok
        records.append_lines(self.path, [records.dumps({"program": key, "matches": ok})])
        return ok

    def record_matches(self, task_id: int, record) -> bool:
        """`matches` for a tuning record, its trace replayed on the task's module."""
        schedule = tvm.s_tir.Schedule(self.tasks[task_id].mod)
        record.trace.apply_to_schedule(schedule, remove_postproc=False)
        return self.matches(task_id, schedule.mod)
