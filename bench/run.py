"""Benchmark secretd's masking against the OpenHands SDK's, in one process and one run.

Run ``python bench/run.py`` in the Python 3.12 environment that has
openhands-sdk and secretd installed (``make bench`` sets it up). It starts
a secretd daemon and an echo server on Unix sockets in a temporary
directory and masks the same generated output with every contender. It
prints Markdown tables to stdout and progress to stderr, and with
``--json`` it also writes every measurement to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script (``python bench/run.py``): make the bench package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import contenders, sdk
from bench.phases import CLIENT_TIMEOUT, Ceilings, log, measure_count, measure_daemon_rebuild, measure_rebuild
from bench.processes import start_daemon, start_echo_server
from bench.report import format_size, render_markdown
from bench.targets import evaluate_targets
from bench.workload import MIB, build_output, secret_values

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent

# Settings of a full run, and of `--quick`, a smoke run of under a minute.
FULL = {"sizes": [1.0, 16.0], "counts": [10, 100, 1000, 10000], "repeats": 5, "sdk_budget": 20.0,
        "rebuild_count": 100_000}
QUICK = {"sizes": [0.25], "counts": [10, 1000], "repeats": 2, "sdk_budget": 1.0, "rebuild_count": 1000}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one 256 KiB input, 10 and 1000 secrets, short time caps")
    parser.add_argument("--sizes", type=_float_list, help="input sizes in MiB, comma-separated (default: 1,16)")
    parser.add_argument("--counts", type=_int_list,
                        help="numbers of registered secrets, comma-separated (default: 10,100,1000,10000)")
    parser.add_argument("--repeats", type=int, help="runs per measurement; the median is reported (default: 5)")
    parser.add_argument("--sdk-budget", type=float,
                        help="seconds one run of a slow contender may take; it then measures a prefix "
                             "of the input (default: 20)")
    parser.add_argument("--rebuild-count", type=int,
                        help="secrets for the rebuild time and memory measurement, 0 to skip (default: 100000)")
    parser.add_argument("--skip-daemon-rebuild", action="store_true",
                        help="measure the rebuild in a bare process only, not also in a daemon")
    parser.add_argument("--secrets-per-mib", type=float, default=64.0,
                        help="secret occurrences embedded per MiB of output (default: 64)")
    parser.add_argument("--embedded", type=int, default=10,
                        help="how many distinct values the occurrences draw from (default: 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated values and output (default: 1)")
    parser.add_argument("--json", type=Path, help="write every measurement to this JSON file")
    return parser


def _float_list(text: str) -> list[float]:
    return [float(item) for item in text.split(",") if item]


def _int_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    defaults = QUICK if args.quick else FULL
    sizes = args.sizes or defaults["sizes"]
    counts = sorted(args.counts or defaults["counts"])
    rebuild_count = defaults["rebuild_count"] if args.rebuild_count is None else args.rebuild_count
    if min(counts) < args.embedded:
        raise SystemExit(f"bench/run.py: --counts must be at least --embedded ({args.embedded}), got {min(counts)}")
    return {
        "quick": args.quick,
        "sizes_bytes": [int(size * MIB) for size in sizes],
        "counts": counts,
        "repeats": args.repeats or defaults["repeats"],
        "sdk_budget_s": args.sdk_budget or defaults["sdk_budget"],
        "rebuild_count": rebuild_count,
        "daemon_rebuild": rebuild_count > 0 and not args.skip_daemon_rebuild,
        "secrets_per_mib": args.secrets_per_mib,
        "embedded": args.embedded,
        "seed": args.seed,
        "chunk_bytes": contenders.CHUNK_BYTES,
    }


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory_kib_total = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib_total = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gib": memory_kib_total / 1024 / 1024,
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "openhands-sdk": sdk.sdk_version(),
        "hyperscan": version("hyperscan"),
        "secretd": version("secretd"),
        "msgspec": version("msgspec"),
    }


def _command(argv: list[str]) -> str:
    python = Path(sys.executable)
    if python.is_relative_to(REPO):
        python = python.relative_to(REPO)
    return shlex.join([str(python), "bench/run.py", *argv])


def run(settings: dict[str, Any], command: str) -> dict[str, Any]:
    """Run every measurement that `settings` selects and return the JSON result."""
    from secretd.client import Client

    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": _machine(),
        "versions": _versions(),
        "settings": settings,
    }
    values = secret_values(max(settings["counts"]), settings["seed"])
    embedded = values[: settings["embedded"]]
    workloads = {}
    for size in settings["sizes_bytes"]:
        workloads[size] = build_output(size, embedded, seed=settings["seed"] + size,
                                       secrets_per_mib=settings["secrets_per_mib"])
    result["workloads"] = [
        {"size_bytes": size, "plain_occurrences": workload.plain_occurrences,
         "hidden_occurrences": len(workload.hidden_forms), "escape_bytes": workload.data.count(b"\x1b")}
        for size, workload in workloads.items()
    ]
    log(f"generated {', '.join(format_size(size) for size in workloads)} of output")

    results: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    setup: list[dict[str, Any]] = []
    directory = Path(tempfile.mkdtemp(prefix="sdb-", dir="/tmp"))
    try:
        echo_server = start_echo_server(directory)
        plain_echo_server = start_echo_server(directory, busy_poll_us=0, name="plain-echo")
        daemon = start_daemon(directory, max_secrets_per_scope=max(settings["counts"]))
        echo = contenders.EchoClient(echo_server.socket_path)
        plain_echo = contenders.EchoClient(plain_echo_server.socket_path, busy_poll_us=0)
        try:
            with Client(daemon.socket_path, timeout=CLIENT_TIMEOUT, client_name="secretd-bench") as client:
                ceilings = Ceilings(echo, plain_echo, client, client.open_scope("bench-empty"), workloads,
                                    settings["repeats"])
                for count in settings["counts"]:
                    ceilings.measure()
                    setup.append(measure_count(client, count, values, workloads, settings, results, checks))
                ceilings.record(results)
        finally:
            echo.close()
            plain_echo.close()
            echo_server.stop()
            plain_echo_server.stop()
            status = daemon.stop()
        if status != 0:
            raise RuntimeError(f"secretd exited with status {status}; log:\n{daemon.log_tail()}")

        if settings["rebuild_count"] > 0:
            log(f"building a masker for {settings['rebuild_count']} secrets in a fresh process")
            result["rebuild"] = measure_rebuild(settings["rebuild_count"], settings["seed"])
            if settings["daemon_rebuild"]:
                log(f"registering {settings['rebuild_count']} secrets in a fresh daemon")
                rebuild_directory = directory / "rebuild"
                rebuild_directory.mkdir()
                result["daemon_rebuild"] = measure_daemon_rebuild(rebuild_directory, settings["rebuild_count"],
                                                                  settings["seed"])
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    result["results"] = results
    result["setup"] = setup
    result["checks"] = checks
    result["targets"] = evaluate_targets(results)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 when a correctness check failed."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    settings = _settings(args)
    result = run(settings, _command(argv))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(render_markdown(result))
    failed = [check for check in result["checks"]
              if check["secretd_values_left"] or check["sdk_values_left"] or not check["secretd_stream_equals_oneshot"]]
    if failed:
        log(f"{len(failed)} correctness checks failed; see the checks table")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
