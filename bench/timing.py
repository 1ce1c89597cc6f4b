"""Repeated timing with a median, and a time cap that measures a prefix of slow inputs."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PROBE_BYTES", "Measurement", "line_prefix", "measure", "measure_capped"]

MIB = 1 << 20

# Input size of the first run of a slow contender, which estimates its rate and is not reported.
PROBE_BYTES = 64 * 1024

# A timed sample calls a fast run again until it has taken this long, so that
# one scheduling hiccup on a shared machine moves one sample by little.
SAMPLE_SECONDS = 0.05


@dataclass
class Measurement:
    """Wall-clock times of repeated runs over the same `measured_bytes` of input.

    Each of `seconds` is one sample: the mean time of `calls_per_sample`
    calls in a row. `capped` is true when the runs covered only a prefix of
    the input (`measured_bytes` < `input_bytes`) because the whole would
    take too long. `output` is what the last run returned, for the
    correctness checks.
    """

    input_bytes: int
    measured_bytes: int
    seconds: list[float] = field(default_factory=list)
    output: object = None
    calls_per_sample: int = 1

    @property
    def capped(self) -> bool:
        return self.measured_bytes < self.input_bytes

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def mib_per_s(self) -> float:
        return self.measured_bytes / MIB / self.median

    def to_json(self) -> dict[str, object]:
        return {
            "input_bytes": self.input_bytes,
            "measured_bytes": self.measured_bytes,
            "capped": self.capped,
            "runs": len(self.seconds),
            "calls_per_sample": self.calls_per_sample,
            "seconds": self.seconds,
            "median_s": self.median,
            "mib_per_s": self.mib_per_s,
        }


def measure(
    run: Callable[[], object], size: int, *, repeats: int, budget: float, warm_up: bool = True
) -> Measurement:
    """Take `repeats` samples of `run`, or fewer once `budget` seconds have been spent (at least one).

    `size` is the number of input bytes one call processes. A call faster
    than `SAMPLE_SECONDS` is repeated within each sample until the sample
    has taken that long (the count is set from the first timed call). With
    `warm_up` an untimed call comes first: the first call pays for page
    faults on fresh buffers, which made it up to 6 times slower for the echo.
    """
    result = Measurement(input_bytes=size, measured_bytes=size)
    if warm_up:
        run()
    start = time.perf_counter()
    result.output = run()
    elapsed = time.perf_counter() - start
    spent = elapsed
    if elapsed >= SAMPLE_SECONDS:
        result.seconds.append(elapsed)
    else:
        # This call only sets how many calls each sample makes.
        result.calls_per_sample = min(1000, math.ceil(SAMPLE_SECONDS / max(elapsed, 1e-6)))
    while len(result.seconds) < repeats and (not result.seconds or spent < budget):
        start = time.perf_counter()
        for _ in range(result.calls_per_sample):
            result.output = run()
        elapsed = time.perf_counter() - start
        result.seconds.append(elapsed / result.calls_per_sample)
        spent += elapsed
    return result


def line_prefix(data: bytes, limit: int) -> bytes:
    """Return the longest prefix of `data` of at most `limit` bytes that ends after a newline.

    Values, UTF-8 characters and escape sequences of the workload never
    span a newline, so such a prefix cuts none of them.
    """
    if limit >= len(data):
        return data
    end = data.rfind(b"\n", 0, limit)
    return data[: end + 1] if end >= 0 else data[:limit]


def measure_capped(
    make_run: Callable[[bytes], Callable[[], object]], data: bytes, *, repeats: int, budget: float
) -> Measurement:
    """Measure `make_run(input)` on all of `data`, or on a prefix that one run finishes within `budget`.

    A first run over `PROBE_BYTES` estimates the rate; the prefix is then
    sized to take about 80 % of `budget` at that rate. Runs repeat up to
    `repeats` times while the time spent stays under `budget`.
    """
    probe = line_prefix(data, PROBE_BYTES)
    start = time.perf_counter()
    make_run(probe)()
    probe_seconds = max(time.perf_counter() - start, 1e-9)
    affordable = int(len(probe) / probe_seconds * budget * 0.8)
    prefix = line_prefix(data, max(affordable, len(probe)))
    # The probe already warmed up the code and the allocator.
    result = measure(make_run(prefix), len(prefix), repeats=repeats, budget=budget, warm_up=False)
    result.input_bytes = len(data)
    return result
