"""Correctness checks on the masked outputs the benchmark timed."""

from __future__ import annotations

import re

from bench.workload import Workload

__all__ = ["strip_escapes", "check_outputs"]

# CSI sequences (colours, cursor movement): all the workload's escape sequences.
_CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")


def strip_escapes(data: bytes) -> bytes:
    """Return `data` without CSI escape sequences, as a terminal shows the text."""
    return _CSI.sub(b"", data)


def _count_present(needles: list[bytes], haystack: bytes) -> int:
    return sum(1 for needle in needles if needle in haystack)


def check_outputs(
    workload: Workload,
    secretd_oneshot: bytes,
    secretd_stream: bytes,
    secretd_pipelined: bytes,
    masker_oneshot: bytes,
    sdk_oneshot: str,
    sdk_measured_bytes: int,
) -> dict[str, object]:
    """Compare the outputs of one input and secret count.

    Only the embedded values are searched for: the other registered values
    are random and absent from the input. The SDK's output covers the
    first `sdk_measured_bytes` of the input when its runs were capped.
    """
    values = [value.encode() for value in workload.embedded_values]
    forms = sorted(set(workload.hidden_forms))
    sdk_output = sdk_oneshot.encode()
    forms_in_sdk_input = _count_present(forms, workload.data[:sdk_measured_bytes])
    return {
        "secretd_values_left": _count_present(values, secretd_oneshot),
        "secretd_values_visible": _count_present(values, strip_escapes(secretd_oneshot)),
        "secretd_forms_left": _count_present(forms, secretd_oneshot),
        "forms_embedded": len(forms),
        "secretd_stream_equals_oneshot": secretd_stream == secretd_oneshot and secretd_pipelined == secretd_oneshot,
        "masker_equals_daemon": masker_oneshot == secretd_oneshot,
        "sdk_checked_bytes": sdk_measured_bytes,
        "sdk_values_left": _count_present(values, sdk_output),
        "sdk_values_visible": _count_present(values, strip_escapes(sdk_output)),
        "sdk_forms_left": _count_present(forms, sdk_output),
        "forms_in_sdk_input": forms_in_sdk_input,
    }
