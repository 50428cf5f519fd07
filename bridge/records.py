"""MetaSchedule JSON database files, read line by line so that one corrupt line never loses the rest.

The collector appends standard `database_workload.json` / `database_tuning_record.json` lines itself (the
same text TVM's JSONDatabase writes), plus a sidecar `measurements.jsonl` with what the standard format has no
room for: which phase proposed the program, every repeat, the error text and the machine load.

A finished collection is sealed: each file's lines move into a gzip segment `NAME.<first line>.gz` (traces
compress about 35x), and later appends start a new plain file. Readers see segments, then the plain file,
as one sequence of lines; written out in that order they are the plain files TVM's own JSONDatabase reads.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import zlib
from typing import Any, Iterator

from xfer_jax.errors import UserError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
MEASUREMENTS_FILE = "measurements.jsonl"
EXHAUSTED_FILE = "exhausted.jsonl"  # tasks whose search ran out of new programs
OUTPUT_CHECKS_FILE = "output_checks.jsonl"  # bridge/check.py's verdicts: does a program compute its task's output
FAILED_RUN_SECS = 1e10  # what TVM's AddToDatabase stores for a failed build or run


def segments(path: pathlib.Path) -> list[pathlib.Path]:
    """Sealed gzip segments of `path`, in line order."""
    return sorted(path.parent.glob(path.name + ".*.gz"), key=lambda p: int(p.name.split(".")[-2]))


def _sealed_twice(path: pathlib.Path) -> bool:
    """True when the plain file still holds exactly its newest segment's lines: a seal killed between writing
    the segment and removing the plain file. Sizes are compared first (gzip keeps the size in its last 4 bytes),
    so the contents are read only in that rare case."""
    newest = segments(path)[-1:]
    if not newest or not path.exists():
        return False
    size = path.stat().st_size
    with open(newest[0], "rb") as f:
        f.seek(-4, os.SEEK_END)
        sealed_size = int.from_bytes(f.read(4), "little")
    if sealed_size not in (size % 2**32, (size + 1) % 2**32):  # seal closes off a last line without newline
        return False
    data = path.read_bytes()
    with gzip.open(newest[0], "rb") as f:
        return f.read() == (data if data.endswith(b"\n") else data + b"\n")


def _finish_interrupted_seal(path: pathlib.Path) -> None:
    if _sealed_twice(path):
        path.unlink()


class DamagedRecordsError(UserError):
    """A sealed segment that cannot be decompressed (truncated, or not gzip at all)."""


def _segment_start(segment: pathlib.Path) -> int:
    return int(segment.name.split(".")[-2])


def _numbered_lines(path: pathlib.Path, damaged: list | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) over the sealed segments, then the plain file.

    A segment's name carries its first line number, so a damaged segment loses only its own unread lines: with
    a `damaged` list it is noted there and skipped, without one it is a DamagedRecordsError naming the file."""
    number = 0
    for segment in segments(path):
        number = _segment_start(segment)
        try:
            with gzip.open(segment, "rb") as f:
                for line in f:
                    yield number, line
                    number += 1
        except (OSError, EOFError, zlib.error) as err:
            if damaged is None:
                raise DamagedRecordsError(f"{segment} is damaged ({type(err).__name__}: {err}); move it away to "
                                          "use the rest of the collection") from None
            damaged.append(segment)
    if path.exists() and not _sealed_twice(path):
        with open(path, "rb") as f:
            for line in f:
                yield number, line
                number += 1


def iter_json_lines(path: pathlib.Path, damaged: list | None = None) -> Iterator[tuple[int, Any | None]]:
    """(line number, parsed value or None when the line is corrupt or truncated) for every line."""
    for number, line in _numbered_lines(path, damaged):
        try:
            yield number, json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            yield number, None


def count_lines(path: pathlib.Path) -> int:
    """The number the next appended line will get (the line count, when nothing is damaged)."""
    return max((number + 1 for number, _ in _numbered_lines(path)), default=0)


def best_reference_seconds(net_dir: pathlib.Path, damaged: list | None = None) -> float | None:
    """The fastest time of the load guard's reference program in a collection (`reference.jsonl`): load only
    ever slows it down. None when it was never timed."""
    timings = [v["baseline_s"] for _, v in iter_json_lines(net_dir / "reference.jsonl", damaged)
               if isinstance(v, dict) and isinstance(v.get("baseline_s"), (int, float))
               and math.isfinite(v["baseline_s"]) and v["baseline_s"] > 0]
    return min(timings, default=None)


def count_complete_lines(path: pathlib.Path, damaged: list | None = None) -> int:
    """One past the last line that ends in a newline: a line still being written by a live collector is not
    counted."""
    return max((number + 1 for number, line in _numbered_lines(path, damaged) if line.endswith(b"\n")), default=0)


def seal(path: pathlib.Path) -> None:
    """Move the plain file's lines into a new gzip segment (written under a temporary name, then renamed).

    Killed after the rename and before the plain file is removed, every line exists twice for a moment: readers
    skip such a plain file, and the next seal or append removes it."""
    _finish_interrupted_seal(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    first = max((_segment_start(seg) + sum(1 for _ in gzip.open(seg, "rb")) for seg in segments(path)[-1:]),
                default=0)
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    final = path.parent / f"{path.name}.{first:09d}.gz"
    temporary = final.with_suffix(".tmp")
    with gzip.open(temporary, "wb", compresslevel=9) as f:
        f.write(data)
    os.replace(temporary, final)
    path.unlink()


def append_lines(path: pathlib.Path, lines: list[str]) -> None:
    """Append whole lines and fsync. A truncated last line (a killed writer) is closed off, never rewritten."""
    if not lines:
        return
    _finish_interrupted_seal(path)
    prefix = ""
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            prefix = "" if f.read(1) == b"\n" else "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(prefix + "".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def latency_s(run_secs, error_msg: str | None = None) -> float:
    """The one definition of a measured program's latency: the mean of its repeats, in seconds; inf for a
    failure (an error, no repeats, a non-finite or non-positive repeat, or TVM's FAILED_RUN_SECS marker)."""
    secs = [float(s) for s in run_secs] if run_secs is not None and not error_msg else []
    if not secs or not all(math.isfinite(s) and 0 < s < FAILED_RUN_SECS for s in secs):
        return math.inf
    return sum(secs) / len(secs)


def run_secs_of(record_json: list) -> list[float] | None:
    """run_secs of a `[workload_idx, [trace, run_secs, target, args_info]]` line."""
    try:
        secs = record_json[1][1]
        return [float(s) for s in secs] if secs is not None else None
    except (IndexError, TypeError, ValueError):
        return None


def write_whole(path: pathlib.Path, data: str | bytes) -> None:
    """Write under a temporary name, then rename: a kill leaves the old file or the new one, never half of one."""
    temporary = path.with_name(path.name + ".partial")
    if isinstance(data, bytes):
        temporary.write_bytes(data)
    else:
        temporary.write_text(data)
    os.replace(temporary, path)


def read_json(path: pathlib.Path) -> Any:
    """A JSON file this tool wrote whole; damaged (by hand, or by a disk) it is one line to the user."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is damaged; delete it to compute it again") from None


def write_once(path: pathlib.Path, payload: dict, compare_keys: tuple[str, ...]) -> None:
    """Write JSON unless present; if present, the compare_keys must match (resuming the same job)."""
    if path.exists():
        existing = read_json(path)
        for key in compare_keys:
            if existing.get(key) != payload.get(key):
                raise UserError(f"{path} was written with a different {key} "
                                f"(existing: {json.dumps(existing.get(key))[:120]}); use a new --out folder")
        return
    write_whole(path, json.dumps(payload, indent=1))
