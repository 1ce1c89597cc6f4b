"""The measurement phases of a run: transport ceilings, each secret count, and the rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import contenders, sdk
from bench.checks import check_outputs, strip_escapes
from bench.processes import memory_kib, start_daemon
from bench.report import format_size
from bench.timing import Measurement, measure, measure_capped
from bench.workload import Workload, secret_values

__all__ = ["CLIENT_TIMEOUT", "Ceilings", "log", "measure_count", "measure_daemon_rebuild", "measure_rebuild",
           "record"]

REPO = Path(__file__).resolve().parent.parent

# Timeout of one request to the daemon: building a masker for 100 000 secrets took about 40 s.
CLIENT_TIMEOUT = 600.0


def log(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def record(results: list[dict[str, Any]], contender: str, size: int, count: int | None,
           measurement: Measurement) -> None:
    """Append `measurement` to `results` and log its rate."""
    results.append({"contender": contender, "size_bytes": size, "secrets": count, **measurement.to_json()})
    count_text = "-" if count is None else str(count)
    log(f"{contender:22} {format_size(size):>8} {count_text:>6} secrets: "
        f"{measurement.mib_per_s:10.2f} MiB/s over {format_size(measurement.measured_bytes)}")


class Ceilings:
    """Transport ceilings: the raw echo, and secretd with no secret to mask.

    Other processes' load changes during a run, so the ceilings are measured
    again next to each secret count and the runs are pooled per input size.
    """

    NAMES = ("echo_oneshot", "echo_stream", "echo_plain_oneshot", "echo_plain_stream", "secretd_empty_oneshot",
             "secretd_empty_stream", "secretd_empty_pipelined")

    def __init__(self, echo: contenders.EchoClient, plain_echo: contenders.EchoClient, client: Any, empty_scope: str,
                 workloads: dict[int, Workload], repeats: int) -> None:
        self._echo = echo
        self._plain_echo = plain_echo
        self._client = client
        self._scope = empty_scope
        self._workloads = workloads
        self._repeats = repeats
        self.pooled: dict[tuple[str, int], Measurement] = {}

    def measure(self) -> None:
        """Measure every ceiling over every input once more."""
        for size, workload in self._workloads.items():
            data = workload.data
            chunks = contenders.split_chunks(data)
            runs = {
                "echo_oneshot": contenders.echo_oneshot_run(self._echo, data),
                "echo_stream": contenders.echo_stream_run(self._echo, chunks),
                "echo_plain_oneshot": contenders.echo_oneshot_run(self._plain_echo, data),
                "echo_plain_stream": contenders.echo_stream_run(self._plain_echo, chunks),
                "secretd_empty_oneshot": contenders.secretd_oneshot_run(self._client, self._scope, data),
                "secretd_empty_stream": contenders.secretd_stream_run(self._client, self._scope, chunks),
                "secretd_empty_pipelined": contenders.secretd_stream_run(
                    self._client, self._scope, chunks, contenders.PIPELINE_DEPTH
                ),
            }
            for name, run in runs.items():
                measurement = measure(run, size, repeats=self._repeats, budget=60.0)
                if bytes(measurement.output) != data:  # type: ignore[call-overload]
                    raise RuntimeError(f"{name} returned other bytes than it was sent")
                pooled = self.pooled.setdefault((name, size), Measurement(input_bytes=size, measured_bytes=size))
                pooled.seconds += measurement.seconds
                pooled.calls_per_sample = measurement.calls_per_sample  # of the latest samples

    def record(self, results: list[dict[str, Any]]) -> None:
        for (name, size), measurement in self.pooled.items():
            record(results, name, size, None, measurement)


def _specs(values: list[str]) -> list[Any]:
    from secretd.client import SecretSpec, StaticSource

    return [SecretSpec(name=f"BENCH_SECRET_{index:06d}", source=StaticSource(value=value))
            for index, value in enumerate(values)]


def measure_count(client: Any, count: int, values: list[str], workloads: dict[int, Workload],
                  settings: dict[str, Any], results: list[dict[str, Any]],
                  checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Measure every contender with the first `count` values registered; return the setup costs.

    secretd gets the values in a new scope of the running daemon and as an
    in-process masker, and the SDK in a new `SecretRegistry`.
    """
    from secretd.daemon.masking import Masker, MaskPolicy

    registered = values[:count]
    repeats = settings["repeats"]
    budget = settings["sdk_budget_s"]

    scope = client.open_scope(f"bench-{count}")
    start = time.perf_counter()
    update = client.update_secrets(scope, _specs(registered))
    update_seconds = time.perf_counter() - start
    if update.too_short:
        raise RuntimeError(f"secretd reported {len(update.too_short)} values as too short to mask")
    start = time.perf_counter()
    client.mask(scope, b"first request after the update")
    first_mask_seconds = time.perf_counter() - start

    start = time.perf_counter()
    masker = Masker.build(registered, MaskPolicy())
    build_seconds = time.perf_counter() - start
    registry = sdk.load_registry(registered)
    compile_seconds = sdk.stream_compile_seconds(registry)
    log(f"{count} secrets: update {update_seconds:.2f} s, first mask {first_mask_seconds:.2f} s, "
        f"in-process build {build_seconds:.2f} s, {masker.pattern_count} patterns")

    for size, workload in workloads.items():
        data = workload.data
        chunks = contenders.split_chunks(data)
        measurements = {
            "secretd_oneshot": measure(contenders.secretd_oneshot_run(client, scope, data), size,
                                       repeats=repeats, budget=budget),
            "secretd_stream": measure(contenders.secretd_stream_run(client, scope, chunks), size,
                                      repeats=repeats, budget=budget),
            "secretd_pipelined": measure(
                contenders.secretd_stream_run(client, scope, chunks, contenders.PIPELINE_DEPTH), size,
                repeats=repeats, budget=budget,
            ),
            "masker_oneshot": measure(contenders.masker_oneshot_run(masker, data), size,
                                      repeats=repeats, budget=budget),
            "masker_stream": measure(contenders.masker_stream_run(masker, chunks), size,
                                     repeats=repeats, budget=budget),
            "sdk_oneshot": measure_capped(lambda part: sdk.oneshot_run(registry, part), data,
                                          repeats=repeats, budget=budget),
            "sdk_stream": measure_capped(lambda part: sdk.stream_run(registry, part, contenders.CHUNK_BYTES), data,
                                         repeats=repeats, budget=budget),
        }
        # Diagnostic, not a contender: the masker's rate once the escape sequences are gone.
        no_escapes = strip_escapes(data)
        measurements["masker_oneshot_no_escapes"] = measure(contenders.masker_oneshot_run(masker, no_escapes),
                                                            len(no_escapes), repeats=repeats, budget=budget)
        for contender, measurement in measurements.items():
            record(results, contender, size, count, measurement)
        check = check_outputs(
            workload,
            secretd_oneshot=measurements["secretd_oneshot"].output,  # type: ignore[arg-type]
            secretd_stream=measurements["secretd_stream"].output,  # type: ignore[arg-type]
            secretd_pipelined=measurements["secretd_pipelined"].output,  # type: ignore[arg-type]
            masker_oneshot=measurements["masker_oneshot"].output,  # type: ignore[arg-type]
            sdk_oneshot=measurements["sdk_oneshot"].output,  # type: ignore[arg-type]
            sdk_measured_bytes=measurements["sdk_oneshot"].measured_bytes,
        )
        checks.append({"size_bytes": size, "secrets": count, **check})

    client.close_scope(scope)
    return {
        "secrets": count,
        "patterns": masker.pattern_count,
        "masker_build_s": build_seconds,
        "update_s": update_seconds,
        "first_mask_s": first_mask_seconds,
        "sdk_stream_compile_s": compile_seconds,
    }


def measure_rebuild(count: int, seed: int) -> dict[str, Any]:
    """Run `bench.rebuild` in a fresh interpreter and return its JSON result."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.rebuild", "--count", str(count), "--seed", str(seed)],
        cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench.rebuild failed with status {completed.returncode}:\n{completed.stderr[-4000:]}")
    return dict(json.loads(completed.stdout))


def measure_daemon_rebuild(directory: Path, count: int, seed: int) -> dict[str, Any]:
    """Register `count` secrets in a fresh daemon; measure its memory and its first mask."""
    from secretd.client import Client

    specs = _specs(secret_values(count, seed))
    daemon = start_daemon(directory, max_secrets_per_scope=count)
    try:
        with Client(daemon.socket_path, timeout=CLIENT_TIMEOUT, client_name="secretd-bench") as client:
            scope = client.open_scope("bench-rebuild")
            idle = memory_kib(daemon.pid)
            start = time.perf_counter()
            client.update_secrets(scope, specs)
            update_seconds = time.perf_counter() - start
            registered = memory_kib(daemon.pid)
            start = time.perf_counter()
            client.mask(scope, b"first request after the update")
            first_mask_seconds = time.perf_counter() - start
            built = memory_kib(daemon.pid)
    finally:
        status = daemon.stop()
    if status != 0:
        raise RuntimeError(f"secretd exited with status {status}; log:\n{daemon.log_tail()}")
    return {
        "secrets": count,
        "update_s": update_seconds,
        "first_mask_s": first_mask_seconds,
        "rss_idle_kib": idle["rss_kib"],
        "rss_registered_kib": registered["rss_kib"],
        "rss_built_kib": built["rss_kib"],
        "peak_rss_kib": built["peak_rss_kib"],
    }
