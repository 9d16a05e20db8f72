"""The timing loop of every benchmark script: warm-up, then timed calls, medians of wall and process CPU time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from .machine import cpu_seconds


def timed_rounds(
    calls: Sequence[Callable[[], object]],
    repeats: int,
    budget: float | None = None,
    warmups: Sequence[Callable[[], object]] | None = None,
) -> list[dict]:
    """Time several calls interleaved: one warm-up round, then up to `repeats` rounds that call each once, in order,
    so that a change in the machine's load hits every call alike.

    Warm-ups are the calls themselves, or `warmups` (one per call: e.g. a short input before a long one). With a
    `budget` (seconds), only as many rounds as fit in it at the warm-up round's pace; when the warm-up round alone
    exceeds it, the warm-ups are the measurement (`warmup_only`: they include first-call costs, small next to
    calls that long). Without a budget, exactly `repeats` rounds.

    Returns, per call: the medians of wall and process CPU time (s), the number of timed runs, `warmup_only`, and
    `output`, what the call's last run returned."""
    warm_walls, warm_cpus, outputs = [], [], []
    for warmup in warmups or calls:
        start, start_cpu = time.perf_counter(), cpu_seconds()
        outputs.append(warmup())
        warm_walls.append(time.perf_counter() - start)
        warm_cpus.append(cpu_seconds() - start_cpu)
    round_wall = sum(warm_walls)
    count = repeats if budget is None or round_wall <= 0 else min(repeats, int(budget // round_wall))
    if count == 0 and warmups is None:
        return [
            {"wall": wall, "cpu": cpu, "runs": 1, "warmup_only": True, "output": output}
            for wall, cpu, output in zip(warm_walls, warm_cpus, outputs)
        ]
    walls, cpus = [[] for _ in calls], [[] for _ in calls]
    for _ in range(max(count, 1)):
        for index, call in enumerate(calls):
            start, start_cpu = time.perf_counter(), cpu_seconds()
            outputs[index] = call()
            walls[index].append(time.perf_counter() - start)
            cpus[index].append(cpu_seconds() - start_cpu)
    return [
        {"wall": statistics.median(w), "cpu": statistics.median(c), "runs": len(w), "warmup_only": False, "output": o}
        for w, c, o in zip(walls, cpus, outputs)
    ]


def timed_runs(
    call: Callable[[], object], repeats: int, budget: float | None = None, warmup: Callable[[], object] | None = None
) -> dict:
    """One warm-up call (`call` itself, or `warmup`), then up to `repeats` timed calls while they fit in `budget`
    seconds (all `repeats` without a budget): `timed_rounds` of one call."""
    return timed_rounds([call], repeats, budget, None if warmup is None else [warmup])[0]
