"""The throughput targets of the benchmark, as ratios between two contenders of one run."""

from __future__ import annotations

from dataclasses import dataclass

from bench.contenders import PIPELINE_DEPTH

__all__ = ["TARGETS", "Target", "evaluate_targets"]


@dataclass(frozen=True)
class Target:
    """`contender` must reach `required` times the throughput of `reference`.

    With `secrets` None the target applies at every secret count measured;
    the echo reference is measured once per input size.
    """

    name: str
    contender: str
    reference: str
    secrets: int | None
    required: float


TARGETS = (
    Target("secretd one-shot vs SDK mask_secrets_in_output", "secretd_oneshot", "sdk_oneshot", 1000, 50.0),
    Target("secretd stream vs SDK stream masker, 8 KiB chunks", "secretd_stream", "sdk_stream", 1000, 200.0),
    Target(f"secretd stream, {PIPELINE_DEPTH} in flight, vs SDK stream masker, 8 KiB chunks", "secretd_pipelined", "sdk_stream",
           1000, 200.0),
    Target("secretd one-shot vs SDK mask_secrets_in_output", "secretd_oneshot", "sdk_oneshot", 10, 1.0),
    Target("secretd one-shot vs raw socket echo", "secretd_oneshot", "echo_oneshot", None, 0.5),
    Target("secretd stream vs raw socket echo, 8 KiB frames", "secretd_stream", "echo_stream", None, 0.5),
    Target(f"secretd stream, {PIPELINE_DEPTH} in flight, vs raw socket echo, 8 KiB frames", "secretd_pipelined", "echo_stream",
           None, 0.5),
)


def evaluate_targets(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """Return one verdict per target, input size and secret count that the results cover."""
    rates = {
        (result["contender"], result["size_bytes"], result["secrets"]): float(result["mib_per_s"])  # type: ignore[arg-type]
        for result in results
    }
    sizes = sorted({result["size_bytes"] for result in results})  # type: ignore[type-var]
    counts = sorted({result["secrets"] for result in results if result["secrets"] is not None})  # type: ignore[type-var]
    verdicts = []
    for target in TARGETS:
        for size in sizes:
            for count in counts if target.secrets is None else [target.secrets]:
                contender = rates.get((target.contender, size, count))
                reference_count = None if target.reference.startswith("echo_") else count
                reference = rates.get((target.reference, size, reference_count))
                if contender is None or reference is None:
                    continue
                ratio = contender / reference
                verdicts.append({
                    "target": target.name,
                    "contender": target.contender,
                    "reference": target.reference,
                    "size_bytes": size,
                    "secrets": count,
                    "contender_mib_per_s": contender,
                    "reference_mib_per_s": reference,
                    "ratio": ratio,
                    "required": target.required,
                    "passed": ratio >= target.required,
                })
    return verdicts
