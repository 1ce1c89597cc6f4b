"""The benchmark's timing: samples of fast runs span many calls, slow runs one call each."""

from __future__ import annotations

import time

import pytest

from bench import timing


def test_fast_run_sampled_over_many_calls() -> None:
    calls = [0]

    def run() -> int:
        calls[0] += 1
        return calls[0]

    measurement = timing.measure(run, 10, repeats=3, budget=10.0)
    assert measurement.calls_per_sample > 1
    assert len(measurement.seconds) == 3
    # One untimed warm-up call, one call that sets the count, then the samples.
    assert calls[0] == 2 + 3 * measurement.calls_per_sample
    assert measurement.output == calls[0]
    assert measurement.to_json()["calls_per_sample"] == measurement.calls_per_sample


def test_slow_run_sampled_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "SAMPLE_SECONDS", 0.001)
    calls = [0]

    def run() -> None:
        calls[0] += 1
        time.sleep(0.002)

    measurement = timing.measure(run, 10, repeats=3, budget=10.0)
    assert measurement.calls_per_sample == 1
    assert len(measurement.seconds) == 3
    assert calls[0] == 1 + 3
    assert min(measurement.seconds) >= 0.002
