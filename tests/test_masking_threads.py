"""Masking on more than one thread: large masks, shared maskers, forks and the daemon.

`Masker.mask` scans the original bytes of a coloured output of
`PARALLEL_MIN` bytes or more on a process-wide helper thread, and
`_scan.split` releases the GIL while it reads a bytes object.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

import secretd.daemon.masking as masking
from secretd.client import SecretSpec, StaticSource
from secretd.daemon.masking import Masker

from . import pure_masking
from .conftest import Daemon
from .reference_masker import reference_mask

PARALLEL_MIN = masking.matcher.PARALLEL_MIN
HIDDEN = b"<secret-hidden>"
TOKEN = "ghp_AbCd-EXAMPLE-Ef5Gh7"
HYPERLINK_OPEN = "\x1b]8;;https://x/dl?token="
HYPERLINK_CLOSE = "\x1b\\download\x1b]8;;\x1b\\"


def coloured_output(size: int, values: list[str], seed: int) -> bytes:
    """Return `size` bytes of coloured test output with values plain, split by grep colours and in hyperlinks."""
    lines = []
    length = 0
    index = seed
    while length < size:
        value = values[index % len(values)]
        kind = index % 4
        if kind == 0:
            line = f"\x1b[32mPASSED\x1b[0m tests/test_api.py::test_{index}\n"
        elif kind == 1:
            line = f"+ export API_TOKEN={value}\n"
        elif kind == 2:
            line = f".env:{index}:API_TOKEN=\x1b[01;31m\x1b[K{value[:5]}\x1b[m\x1b[K{value[5:]}\n"
        else:
            line = f"{HYPERLINK_OPEN}{value}{HYPERLINK_CLOSE}\n"
        encoded = line.encode()
        lines.append(encoded)
        length += len(encoded)
        index += 1
    return b"".join(lines)[:size]


def run_python(source: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def needs_second_thread() -> None:
    if masking.matcher._second_thread() is None:
        pytest.skip("one CPU: masks never use a second thread")


# Which thread scans the original bytes


# These tests replace methods, so they run the masker from its Python sources (see pure_masking).
pure = pure_masking.load()


@pytest.fixture
def raw_scan_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that scanned original bytes, one per scan."""
    threads: list[str] = []
    raw_spans = pure.Masker._raw_spans

    def recorded(self: Masker, data: bytes) -> list[tuple[int, int]]:
        threads.append(threading.current_thread().name)
        return raw_spans(self, data)

    monkeypatch.setattr(pure.Masker, "_raw_spans", recorded)
    return threads


def test_large_mask_scans_original_bytes_on_second_thread(
    monkeypatch: pytest.MonkeyPatch, raw_scan_threads: list[str]
) -> None:
    needs_second_thread()
    masker = pure.Masker.build([TOKEN])
    # Only the scan of the original bytes finds a value inside a hyperlink's
    # target, which the view leaves out.
    linked = f"{HYPERLINK_OPEN}{TOKEN}{HYPERLINK_CLOSE}\n".encode()
    filler = b"\x1b[32mPASSED\x1b[0m tests/test_api.py::test_upload\n" * 12_000
    data = filler + linked + filler + f"plain {TOKEN}\n".encode()
    assert len(data) >= PARALLEL_MIN
    hidden_link = HYPERLINK_OPEN.encode() + HIDDEN + HYPERLINK_CLOSE.encode()
    expected = filler + hidden_link + b"\n" + filler + b"plain " + HIDDEN + b"\n"

    assert masker.mask(data) == expected
    assert len(raw_scan_threads) == 1
    assert raw_scan_threads[0] != threading.current_thread().name

    monkeypatch.setattr(pure.matcher, "_second_thread", lambda: None)
    assert masker.mask(data) == expected
    assert raw_scan_threads[1] == threading.current_thread().name


def test_small_mask_stays_on_one_thread(raw_scan_threads: list[str]) -> None:
    masker = pure.Masker.build([TOKEN])
    assert masker.mask(f"\x1b[1m{TOKEN}\x1b[0m".encode()) == b"\x1b[1m" + HIDDEN + b"\x1b[0m"
    assert raw_scan_threads == [threading.current_thread().name]


# _scan.split reads its buffer without the GIL


@pytest.mark.skipif(not masking.escapes.ACCELERATED, reason="the C module _scan is not built")
def test_split_survives_buffer_mutated_meanwhile() -> None:
    # split counts the ESC bytes, sizes its arrays by that count, then
    # parses the buffer again. Without the GIL, another thread can add
    # escape sequences between the two passes, and the second pass then
    # writes past the arrays. A TypeError or BufferError for a mutable
    # buffer is fine too; a crash of the interpreter is not.
    # PYTHONMALLOC=debug turns any write past an array into an abort.
    result = run_python(
        """
        import sys, threading
        from secretd.daemon.masking import _scan

        head, tail = 256 * 1024, 256 * 1024
        # Escape sequences come first, so the second pass takes long while the tail changes.
        buffer = bytearray(b"\\x1b7" * (head // 2) + bytes(tail))
        escapes, zeros = b"\\x1b7" * (tail // 2), bytes(tail)
        stop = False

        def mutate():
            while not stop:
                buffer[head:] = escapes
                buffer[head:] = zeros

        mutator = threading.Thread(target=mutate)
        mutator.start()
        try:
            for _ in range(100):
                try:
                    _scan.split(buffer)
                except (TypeError, BufferError):
                    break
        finally:
            stop = True
            mutator.join()
        print("finished")
        """,
        timeout=60,
        env={"PYTHONMALLOC": "debug"},
    )
    assert result.returncode == 0, f"the interpreter died with status {result.returncode}: {result.stderr[-600:]}"
    assert result.stdout.strip() == "finished"


# Masker.mask and the helper thread


def test_mask_in_forked_child_finishes() -> None:
    # The parent's large mask starts the helper thread. A child made by
    # fork (multiprocessing's default on Linux before Python 3.14) has the
    # executor but not its thread, so a submitted scan must not wait forever.
    result = run_python(
        f"""
        import os, sys, time
        from secretd.daemon.masking import Masker

        masker = Masker.build([{TOKEN!r}])
        data = b"\\x1b[32mok\\x1b[0m {TOKEN}\\n" * 20000
        assert masker.mask(data).count(b"<secret-hidden>") == 20000
        child = os.fork()
        if child == 0:
            masked = masker.mask(data)
            os._exit(0 if masked.count(b"<secret-hidden>") == 20000 else 3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                sys.exit(os.waitstatus_to_exitcode(status))
            time.sleep(0.05)
        os.kill(child, 9)
        os.waitpid(child, 0)
        print("the child's mask did not finish within 5 s")
        sys.exit(2)
        """,
        timeout=60,
    )
    assert result.returncode == 0, f"status {result.returncode}: {result.stdout.strip()} {result.stderr[-600:]}"


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_hyperlink_only_match_in_large_output(where: str, raw_scan_threads: list[str]) -> None:
    # Only the scan of the original bytes, on the helper thread, finds a
    # value inside a hyperlink's target.
    needs_second_thread()
    linked = f"{HYPERLINK_OPEN}{TOKEN}{HYPERLINK_CLOSE}".encode()
    filler = b"\x1b[32mok\x1b[0m line\n" * (PARALLEL_MIN // 17 + 1)
    half = len(filler) // 2
    data = {"start": linked + filler, "middle": filler[:half] + linked + filler[half:], "end": filler + linked}[where]
    assert len(data) >= PARALLEL_MIN
    masked = pure.Masker.build([TOKEN]).mask(data)
    assert raw_scan_threads
    assert raw_scan_threads[0] != threading.current_thread().name
    assert masked.count(HIDDEN) == 1
    assert TOKEN.encode() not in masked
    assert masked == reference_mask([TOKEN], data)


@pytest.mark.parametrize("size", [PARALLEL_MIN - 1, PARALLEL_MIN])
def test_mask_around_parallel_min_matches_reference(size: int) -> None:
    values = [TOKEN, "sk-live-0123456789abcdef"]
    data = coloured_output(size, values, seed=size)
    assert len(data) == size
    masked = Masker.build(values).mask(data)
    assert not any(value.encode() in masked for value in values)
    assert masked == reference_mask(values, data)


def test_shared_masker_many_threads_same_results() -> None:
    needs_second_thread()
    values = [f"tok_{index:03d}_{'x' * 12}{index}" for index in range(40)]
    masker = Masker.build(values)
    inputs = [coloured_output(size, values, seed) for seed, size in enumerate((PARALLEL_MIN, 700_000, 1 << 20))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(masking.matcher, "_second_thread", lambda: None)
        expected = [masker.mask(data) for data in inputs]
    assert all(masked.count(HIDDEN) > 1000 for masked in expected)
    mismatches: list[tuple[int, int]] = []

    def mask_all(worker: int) -> None:
        for round_ in range(3):
            index = (worker + round_) % len(inputs)
            if masker.mask(inputs[index]) != expected[index]:
                mismatches.append((worker, index))

    workers = [threading.Thread(target=mask_all, args=(worker,)) for worker in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert mismatches == []


def test_mutated_bytearray_mask_survives() -> None:
    # mask copies its argument before anything runs without the GIL.
    masker = Masker.build([TOKEN])
    size = PARALLEL_MIN * 2
    buffer = bytearray(size)
    escapes, zeros = b"\x1b7" * (size // 2), bytes(size)
    stop = False

    def mutate() -> None:
        while not stop:
            buffer[:] = escapes
            buffer[:] = zeros

    mutator = threading.Thread(target=mutate)
    mutator.start()
    try:
        for _ in range(30):
            assert masker.mask(buffer) in (escapes, zeros)
            assert masker.mask(memoryview(buffer)) in (escapes, zeros)
    finally:
        stop = True
        mutator.join()


# Large masks over the daemon


def test_daemon_answers_concurrent_large_and_small_masks(daemon: Daemon) -> None:
    values = [f"tok_{index:03d}_{'y' * 12}{index}" for index in range(20)]
    with daemon.client() as client:
        scope = client.open_scope(keep=True)
        specs = [SecretSpec(name=f"S{index}", source=StaticSource(value=value)) for index, value in enumerate(values)]
        client.update_secrets(scope, specs)
    masker = Masker.build(values)
    large = [coloured_output(size, values, seed) for seed, size in enumerate((PARALLEL_MIN, 1 << 20, 2 << 20))]
    small = [coloured_output(size, values, seed) for seed, size in enumerate((60, 900, 8000))]
    expected = {data: masker.mask(data) for data in large + small}
    failures: list[str] = []

    def send(inputs: list[bytes], rounds: int) -> None:
        try:
            with daemon.client(timeout=30) as client:
                for round_ in range(rounds):
                    data = inputs[round_ % len(inputs)]
                    if client.mask(scope, data) != expected[data]:
                        failures.append(f"wrong output for {len(data)} bytes")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=send, args=(large, 3)) for _ in range(3)]
    workers += [threading.Thread(target=send, args=(small, 60)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == []
    with daemon.client() as client:
        assert client.mask(scope, TOKEN.encode() + b" " + values[0].encode()) == TOKEN.encode() + b" " + HIDDEN
    log = daemon.log_text()
    assert not any(value in log for value in values)
