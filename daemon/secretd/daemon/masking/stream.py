"""Streaming masking: the same result as one-shot masking, for any chunking."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

from .escapes import View
from .finder import Found, Span, TextState
from .matcher import Masker, merge_spans
from .policy import MaskPolicy

__all__ = ["MaskStream"]


class MaskStream:
    """Masks one output stream chunk by chunk.

    `feed` returns the bytes that can be released at once. It holds back
    only those that more output could still turn into part of a match:

    - a tail that begins some text;
    - a 4-7 character match whose next character has not arrived;
    - a run of base64 characters at the end, because a base64 match is
      extended over it, unless a placeholder already covers it;
    - an escape sequence not finished yet, and escape sequences right after
      a placeholder, which a match that follows would swallow.

    A base64 run that already has a match is replaced as far as it has
    arrived. The stream keeps only its position and a few bytes before it,
    so a long run is neither held nor scanned again on every feed. Bytes
    held for other reasons are not scanned again either, up to shortly
    before the first place where some text's anchor was found.

    `flush` releases the rest. Feeding any split of the output and then
    flushing gives exactly `Masker.mask` of the whole output.

    Held bytes are bounded by `policy.max_held`. When a feed leaves more
    than that, the stream releases all but the newest `max_held // 2`
    bytes. Matches complete within the released bytes are still masked, a
    4-7 character match without waiting for its next character. A base64
    match may then stop short of its run. A match that starts in the
    released bytes and ends later is masked from the release point on.
    Every text is shorter than `max_held // 2`, so only base64 runs and
    matches stretched by long whitespace runs or escape sequences can be
    cut this way.

    The masker is passed on every call because a scope's masker is rebuilt
    when its values change. Bytes released before a value was added are not
    masked for it.
    """

    __slots__ = (
        "_buffer",
        "_covered_end",
        "_original_base",
        "_policy",
        "_raw_state",
        "_released",
        "_view_state",
    )

    def __init__(self, policy: MaskPolicy | None = None) -> None:
        self._policy = policy if policy is not None else MaskPolicy()
        self._reset()

    def _reset(self) -> None:
        # The buffer keeps bytes already released only while a possible match
        # starting in them is pending; `_released` is where output stopped.
        self._buffer = b""
        self._released = 0
        # Stream offset of the buffer's first byte.
        self._original_base = 0
        # Stream offset just after the last placeholder, or -1 before the first.
        self._covered_end = -1
        # What the view and the original bytes before the buffer leave to it.
        self._view_state = TextState()
        self._raw_state = TextState()

    @property
    def held(self) -> int:
        """Number of bytes fed but not released yet."""
        return len(self._buffer) - self._released

    def __repr__(self) -> str:
        return f"<MaskStream held={self.held}>"

    def feed(self, masker: Masker, data: bytes | bytearray | memoryview) -> bytes:
        """Add `data` to the stream and return the output that can be released now."""
        data = bytes(data)
        if masker.pattern_count == 0:
            # Nothing can match: release whatever was held and pass data through.
            return self.flush(masker) + data
        if not data:
            return b""
        return self._process(masker, self._buffer + data, final=False).output()

    def feed_many(self, masker: Masker, chunks: Sequence[bytes | bytearray | memoryview]) -> list[bytes]:
        """Add several chunks at once, and return for each the output released up to its end.

        One scan covers all of them, which costs much less than a `feed` per
        chunk. The outputs joined are what `feed` of the joined chunks
        returns. Each output holds the released bytes of its chunk (the
        first also those held before), and each placeholder goes with the
        chunk its match starts in. No byte is released later than a `feed`
        per chunk would release it, because more output never makes an
        earlier byte a possible part of a match.
        """
        chunks = [bytes(chunk) for chunk in chunks]
        if masker.pattern_count == 0 or len(chunks) < 2:
            return [self.feed(masker, chunk) for chunk in chunks]
        ends = list(accumulate(map(len, chunks), initial=len(self._buffer)))[1:]
        emitter = self._process(masker, self._buffer + b"".join(chunks), final=False)
        return emitter.split_output(ends)

    def flush(self, masker: Masker) -> bytes:
        """Release everything held; the stream can then be reused."""
        released = self._process(masker, self._buffer, final=True).output() if self.held else b""
        self._reset()
        return released

    def _process(self, masker: Masker, buffer: bytes, final: bool) -> _Emitter:
        if self._view_state.masker != masker.serial:
            # What the stream knows of its held bytes is true only for the masker that scanned them.
            self._view_state = self._view_state._replace(masker=masker.serial, quiet=0)
            self._raw_state = self._raw_state._replace(masker=masker.serial, quiet=0)
        view = View(buffer, final)
        view_found = masker.find(view.data, final, self._view_state)
        # Without escape sequences the original bytes are the view, and the
        # second scan would find the same, unless what came before differs.
        scan_raw = view.has_escapes or self._raw_state != self._view_state
        raw_found = view_found
        if scan_raw:
            raw_found = masker.find(
                buffer, final, self._raw_state, _same_partial(masker, buffer, view, view_found), wrapped=False
            )
        matches = _Matches(view, view_found, raw_found if scan_raw else None)
        covered_end = self._covered_end - self._original_base
        emitter = _Emitter(
            buffer, view, self._policy.placeholder, self._released, covered_end if covered_end >= 0 else None
        )
        hold = matches.hold(emitter.covered_end)
        emitter.emit(sorted(matches.spans), hold, open_end=not final)
        window = emitter.released if hold is None else min(emitter.released, hold)

        max_held = self._policy.max_held
        if not final and len(buffer) - emitter.released > max_held:
            # Over the bound: release all but the newest max_held // 2 bytes,
            # masking every match found so far. Up to 2 * max_held bytes stay
            # in the buffer, so that a match which began in the released
            # bytes is still found and masked from the release point on.
            limit = view.boundary_at_or_after(len(buffer) - max_held // 2)
            forced_hold = max(hold or 0, limit)
            emitter.emit(sorted(matches.spans + matches.tentative), forced_hold, open_end=False)
            emitter.release_to(limit)
            window = emitter.released
            if hold is not None:
                oldest = view.boundary_at_or_after(len(buffer) - 2 * max_held)
                window = min(window, max(hold, oldest))

        if final:
            return emitter
        # The next buffer must start where its view starts the same way as
        # this one's, so never inside an escape sequence.
        window = view.boundary_at_or_before(window)
        self._view_state = self._view_state.after(view.data, view_found, view.view_position(window))
        self._raw_state = self._raw_state.after(buffer, raw_found, window) if scan_raw else self._view_state
        self._covered_end = -1 if emitter.covered_end is None else emitter.covered_end + self._original_base
        self._original_base += window
        self._buffer = buffer[window:]
        self._released = emitter.released - window
        return emitter


def _same_partial(masker: Masker, buffer: bytes, view: View, view_found: Found) -> tuple[int | None] | None:
    """Return the partial claim of `buffer` when it is that of its view, shifted; else None.

    It is when the last bytes that decide it contain no escape sequence, so
    that the view ends in the same bytes.
    """
    reach = masker.tail_reach
    if reach is None or view.cut is not None or len(view.data) < reach + 4:
        return None
    if b"\x1b" in buffer[-(reach + 4) :]:
        return None
    shift = len(buffer) - len(view.data)
    return (None if view_found.partial is None else view_found.partial + shift,)


class _Matches:
    """The matches in one buffer from its view and its original bytes, in original positions."""

    def __init__(self, view: View, view_found: Found, raw_found: Found | None) -> None:
        self.view = view
        self.spans = [view.original_span(start, end) for start, end in view_found.spans]
        self.tentative = [view.original_span(start, end) for start, end in view_found.tentative]
        self.claims = [view.original_claim(position) for position in view_found.claims]
        view_tail = view.original_claim(view_found.tail)
        self.runs = [(view.original_claim(position), view_tail) for position in view_found.runs]
        if raw_found is not None:
            self.spans += raw_found.spans
            self.tentative += raw_found.tentative
            self.claims += raw_found.claims
            self.runs += [(position, raw_found.tail) for position in raw_found.runs]
        if view.cut is not None:
            # What an unfinished escape sequence turns out to be decides how
            # the view goes on after it.
            self.claims.append(view.cut)

    def hold(self, covered_end: int | None) -> int | None:
        """Return the first position that more bytes could still bring into a match, or None.

        A base64 run at the end is held from its start, because a later
        base64 match extends back over it. When a placeholder already covers
        the run's start, that later match merges into the placeholder, so
        only the uncovered part is held, and the bytes from where an
        unfinished match of the run may start.
        """
        claims = list(self.claims)
        if self.runs:
            covered = list(self.spans)
            if covered_end is not None:
                covered.append((-1, covered_end))
            groups = merge_spans(covered, self.view)
            for start, tail in self.runs:
                claims.append(_covered_claim(groups, self.view, start, tail))
        return min(claims, default=None)


def _covered_claim(groups: list[Span], view: View, start: int, tail: int) -> int:
    """Return the claim of a base64 run that starts at `start` (see `_Matches.hold`)."""
    for group_start, group_end in groups:
        if group_start > start:
            break
        if view.joins(group_end, start):
            return max(start, min(group_end, tail))
    return start


class _Emitter:
    """Writes the output of one buffer, left to right, as far as the claims allow."""

    def __init__(self, buffer: bytes, view: View, placeholder: bytes, released: int, covered_end: int | None) -> None:
        self.buffer = buffer
        self.view = view
        self.placeholder = placeholder
        # Each piece of output with the buffer positions it stands for, and whether it is a placeholder.
        self.pieces: list[tuple[int, int, bytes, bool]] = []
        self.released = released  # buffer position up to which output is written
        self.covered_end = covered_end  # buffer position just after the last placeholder, if any

    def emit(self, spans: list[Span], hold: int | None, open_end: bool) -> None:
        """Write placeholders for `spans` and plain bytes up to what `hold` claims.

        A claim that joins the last placeholder means a later match would
        merge into it, so everything after the placeholder is held. A claim
        after the placeholder holds back from its own position. `open_end`
        means more bytes may follow the buffer.
        """
        view = self.view
        for start, end in spans:
            covered = self.covered_end
            if covered is not None:
                if end <= covered:
                    continue
                if view.joins(covered, start):
                    # Overlaps or joins the last placeholder: extend it silently.
                    self.covered_end = end
                    self.released = max(self.released, end)
                    continue
            if hold is not None and (hold < start or (covered is not None and view.joins(covered, hold))):
                break
            if end <= self.released:
                continue  # released earlier when the bound forced it out
            if start > self.released:
                self.pieces.append((self.released, start, self.buffer[self.released : start], False))
            self.pieces.append((start, end, self.placeholder, True))
            self.released = end
            self.covered_end = end

        stop = view.size if view.cut is None else view.cut
        covered = self.covered_end
        if hold is not None:
            stop = min(stop, covered if covered is not None and view.joins(covered, hold) else hold)
        if open_end and covered is not None and view.view_position(covered) >= len(view.data):
            # A match may start with the next view byte and merge into the
            # placeholder, taking the escape sequences before it along.
            stop = min(stop, covered)
        self.release_to(stop)

    def release_to(self, stop: int) -> None:
        """Write the bytes up to buffer position `stop` unchanged."""
        if stop > self.released:
            self.pieces.append((self.released, stop, self.buffer[self.released : stop], False))
            self.released = stop

    def output(self) -> bytes:
        return b"".join(piece[2] for piece in self.pieces)

    def split_output(self, ends: list[int]) -> list[bytes]:
        """Split the output at the buffer positions `ends`, one part per position, the last taking the rest.

        Plain bytes are cut where a position falls inside them. A
        placeholder goes whole to the part its start belongs to.
        """
        parts: list[list[bytes]] = [[] for _ in ends]
        last = len(ends) - 1
        index = 0
        for start, end, data, placeholder in self.pieces:
            while index < last and start >= ends[index]:
                index += 1
            if placeholder:
                parts[index].append(data)
                continue
            position = start
            while index < last and end > ends[index]:
                parts[index].append(data[position - start : ends[index] - start])
                position = ends[index]
                index += 1
            parts[index].append(data[position - start :])
        return [b"".join(part) for part in parts]
