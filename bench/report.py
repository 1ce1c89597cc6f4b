"""Markdown tables from the benchmark's JSON result."""

from __future__ import annotations

from typing import Any

from bench.contenders import PIPELINE_DEPTH

__all__ = ["CEILING_COLUMNS", "CONTENDER_COLUMNS", "format_size", "render_markdown"]

MIB = 1 << 20

# Columns of the throughput table: contender key and heading.
CONTENDER_COLUMNS = (
    ("secretd_oneshot", "secretd `mask` (RPC)"),
    ("secretd_stream", "secretd stream, 8 KiB (RPC)"),
    ("secretd_pipelined", f"secretd stream, 8 KiB, {PIPELINE_DEPTH} in flight (RPC)"),
    ("masker_oneshot", "masker in process, one-shot"),
    ("masker_stream", "masker in process, 8 KiB"),
    ("sdk_oneshot", "SDK `mask_secrets_in_output`"),
    ("sdk_stream", "SDK stream masker, 8 KiB"),
)

CEILING_COLUMNS = (
    ("echo_oneshot", "echo, one frame"),
    ("echo_stream", "echo, 8 KiB frames"),
    ("echo_plain_oneshot", "echo without polling, one frame"),
    ("echo_plain_stream", "echo without polling, 8 KiB frames"),
    ("secretd_empty_oneshot", "secretd `mask`, no secrets"),
    ("secretd_empty_stream", "secretd stream, 8 KiB, no secrets"),
    ("secretd_empty_pipelined", f"secretd stream, 8 KiB, {PIPELINE_DEPTH} in flight, no secrets"),
)


def format_size(size: int) -> str:
    """Format a byte count as MiB or KiB, e.g. ``16 MiB``."""
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= MIB:
        return f"{size / MIB:.2f} MiB"
    return f"{size / 1024:.0f} KiB"


def _rate(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "–"
    text = _rate(result["mib_per_s"])
    if result["capped"]:
        text += f" ({result['measured_bytes'] / MIB:.2f} MiB)"
    return text


def _table(headings: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    """Render the header and the throughput, ceiling, diagnostic, setup, rebuild, target and check tables."""
    settings = result["settings"]
    machine = result["machine"]
    versions = result["versions"]
    by_key = {(item["contender"], item["size_bytes"], item["secrets"]): item for item in result["results"]}
    lines = [
        f"Run of {result['date']}: {machine['cpu']}, {machine['nproc']} cores, {machine['memory_gib']:.1f} GiB; "
        f"Python {versions['python']}, openhands-sdk {versions['openhands-sdk']}, "
        f"hyperscan {versions['hyperscan']}, secretd {versions['secretd']}.",
        "",
        f"Command: `{result['command']}`. Rates are in MiB of input per second, each the median of up to "
        f"{settings['repeats']} samples after an untimed run. A run shorter than 50 ms is repeated within "
        f"each sample until the sample has taken 50 ms. A size in brackets means the runs covered only "
        f"that prefix of the input, so that one run took at most about {settings['sdk_budget_s']:g} s.",
        "",
        "### Throughput (MiB/s)",
        "",
    ]
    rows = []
    for size in settings["sizes_bytes"]:
        for count in settings["counts"]:
            row = [format_size(size), f"{count:,}".replace(",", " ")]
            row += [_cell(by_key.get((key, size, count))) for key, _ in CONTENDER_COLUMNS]
            rows.append(row)
    lines += _table(["input", "secrets"] + [heading for _, heading in CONTENDER_COLUMNS], rows)

    lines += [
        "",
        "### Transport ceilings (MiB/s)",
        "",
        "A raw echo of the same bytes over a Unix socket, and secretd with no secret registered (no "
        "masking, the RPC alone), measured next to each secret count and pooled. The echo server and "
        "its client poll for the next frame as secretd and its client do (the targets compare with "
        "this echo); the echo without polling sleeps in each receive.",
        "",
    ]
    rows = [
        [format_size(size)] + [_cell(by_key.get((key, size, None))) for key, _ in CEILING_COLUMNS]
        for size in settings["sizes_bytes"]
    ]
    lines += _table(["input"] + [heading for _, heading in CEILING_COLUMNS], rows)

    lines += [
        "",
        "### Masker without escape sequences (MiB/s)",
        "",
        "A diagnostic: the in-process masker on the same input, then on that input with every escape "
        "sequence removed beforehand.",
        "",
    ]
    rows = []
    for size in settings["sizes_bytes"]:
        for count in settings["counts"]:
            rows.append([format_size(size), f"{count:,}".replace(",", " "),
                         _cell(by_key.get(("masker_oneshot", size, count))),
                         _cell(by_key.get(("masker_oneshot_no_escapes", size, count)))])
    lines += _table(["input", "secrets", "with escape sequences", "escape sequences removed"], rows)

    lines += ["", "### Setup per secret count (seconds)", ""]
    rows = [
        [f"{item['secrets']:,}".replace(",", " "), str(item["patterns"]), f"{item['masker_build_s']:.3f}",
         f"{item['update_s']:.3f}", f"{item['first_mask_s']:.3f}", f"{item['sdk_stream_compile_s']:.3f}"]
        for item in result["setup"]
    ]
    lines += _table(["secrets", "Hyperscan patterns", "`Masker.build`", "`secrets.update` RPC",
                     "first `mask` after update (daemon rebuild)", "SDK `compile_stream_mask`"], rows)

    lines += _render_rebuild(result.get("rebuild"), result.get("daemon_rebuild"))
    lines += _render_targets(result["targets"])
    lines += _render_checks(result["checks"])
    return "\n".join(lines) + "\n"


def _render_rebuild(rebuild: dict[str, Any] | None, daemon: dict[str, Any] | None) -> list[str]:
    if rebuild is None and daemon is None:
        return []
    count = (rebuild or daemon or {})["secrets"]
    lines = ["", f"### Rebuild at {count:,} secrets".replace(",", " "), ""]
    rows = []
    if rebuild is not None:
        rows += [
            ["Hyperscan patterns", str(rebuild["patterns"])],
            ["`Masker.build`, fresh process", f"{rebuild['build_s']:.2f} s"],
            ["`Masker.build` again with one more secret", f"{rebuild['rebuild_one_more_s']:.2f} s"],
            ["RSS growth with one masker", f"{rebuild['rss_growth_kib'] / 1024:.0f} MiB"],
            ["peak RSS growth over both builds", f"{rebuild['peak_rss_growth_kib'] / 1024:.0f} MiB"],
        ]
    if daemon is not None:
        rows += [
            ["daemon: `secrets.update` of all secrets", f"{daemon['update_s']:.2f} s"],
            ["daemon: first `mask` (builds the masker)", f"{daemon['first_mask_s']:.2f} s"],
            ["daemon RSS: idle / secrets stored / masker built",
             f"{daemon['rss_idle_kib'] / 1024:.0f} / {daemon['rss_registered_kib'] / 1024:.0f} / "
             f"{daemon['rss_built_kib'] / 1024:.0f} MiB"],
            ["daemon peak RSS", f"{daemon['peak_rss_kib'] / 1024:.0f} MiB"],
        ]
    return lines + _table(["measurement", "value"], rows)


def _render_targets(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["", "### Targets", ""]
    rows = [
        [item["target"], format_size(item["size_bytes"]), f"{item['secrets']:,}".replace(",", " "),
         _rate(item["contender_mib_per_s"]), _rate(item["reference_mib_per_s"]), f"{item['ratio']:.2f}×",
         f"≥ {item['required']:g}×", "PASS" if item["passed"] else "MISS"]
        for item in targets
    ]
    return lines + _table(["target", "input", "secrets", "secretd MiB/s", "reference MiB/s", "ratio", "required",
                           "result"], rows)


def _render_checks(checks: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "### Checks on the masked outputs",
        "",
        "Values: the embedded secret values found in the output as they are, then after removing escape "
        "sequences (what a terminal shows). Forms: distinct encoded or split forms embedded (base64, "
        "percent or JSON encoded, split by colour codes) still in the output. The SDK's columns cover "
        "the part of the input its runs measured.",
        "",
    ]
    rows = [
        [format_size(item["size_bytes"]), f"{item['secrets']:,}".replace(",", " "),
         f"{item['secretd_values_left']} / {item['secretd_values_visible']}",
         f"{item['secretd_forms_left']} of {item['forms_embedded']}",
         "yes" if item["secretd_stream_equals_oneshot"] else "NO",
         "yes" if item["masker_equals_daemon"] else "NO",
         f"{item['sdk_values_left']} / {item['sdk_values_visible']}",
         f"{item['sdk_forms_left']} of {item['forms_in_sdk_input']}",
         format_size(item["sdk_checked_bytes"])]
        for item in checks
    ]
    return lines + _table(["input", "secrets", "secretd values", "secretd forms", "streams = one-shot",
                           "in process = daemon", "SDK values", "SDK forms", "SDK checked"], rows)
