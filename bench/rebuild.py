"""Time `Masker.build` for many secrets and measure its memory, in a fresh process.

Run as ``python -m bench.rebuild --count N --seed S`` from the repository
root; it prints one JSON object. Hyperscan allocates outside Python's
allocator, so memory is the process's resident set size (from /proc)
before and after the build rather than what `tracemalloc` reports.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

from bench.processes import memory_kib
from bench.workload import secret_values

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True, help="number of secret values")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated values (default: 1)")
    args = parser.parse_args(argv)

    from secretd.daemon.masking import Masker, MaskPolicy

    values = secret_values(args.count + 1, args.seed)
    added = values.pop()
    gc.collect()
    before = memory_kib(os.getpid())

    start = time.perf_counter()
    masker = Masker.build(values, MaskPolicy())
    build_seconds = time.perf_counter() - start
    after = memory_kib(os.getpid())

    # A changed secret rebuilds the whole masker while the old one still serves.
    start = time.perf_counter()
    rebuilt = Masker.build([*values, added], MaskPolicy())
    rebuild_seconds = time.perf_counter() - start
    after_rebuild = memory_kib(os.getpid())

    result = {
        "secrets": args.count,
        "patterns": masker.pattern_count,
        "patterns_after_one_more": rebuilt.pattern_count,
        "build_s": build_seconds,
        "rebuild_one_more_s": rebuild_seconds,
        "rss_before_kib": before["rss_kib"],
        "rss_after_build_kib": after["rss_kib"],
        "rss_growth_kib": after["rss_kib"] - before["rss_kib"],
        "peak_rss_growth_kib": after_rebuild["peak_rss_kib"] - before["rss_kib"],
        "rss_with_two_maskers_kib": after_rebuild["rss_kib"],
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
