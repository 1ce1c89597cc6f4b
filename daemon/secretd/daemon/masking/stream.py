"""Streaming masking: the same result as one-shot masking, for any chunking."""

from __future__ import annotations

from .escapes import View
from .matcher import Masker, Span
from .policy import MaskPolicy

__all__ = ["MaskStream"]


class MaskStream:
    """Masks one output stream chunk by chunk.

    `feed` returns the bytes that can be released at once. It holds back
    only those that more output could still turn into part of a match:

    - a tail that begins some text;
    - a 4-7 character match whose next character has not arrived;
    - a run of base64 characters at the end, because a base64 match is
      extended over it;
    - an escape sequence not finished yet, and escape sequences right after
      a placeholder, which a match that follows would swallow.

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
        "_covered_view",
        "_left_context",
        "_original_base",
        "_policy",
        "_released",
        "_view_base",
    )

    def __init__(self, policy: MaskPolicy | None = None) -> None:
        self._policy = policy if policy is not None else MaskPolicy()
        self._reset()

    def _reset(self) -> None:
        # The buffer keeps bytes already released only while a possible match
        # starting in them is pending; `_released` is where output stopped.
        self._buffer = b""
        self._released = 0
        # Stream offsets of the buffer's first byte and of its first view byte.
        self._original_base = 0
        self._view_base = 0
        # End of the last placeholder, as a view and as an original stream offset.
        self._covered_view = -1
        self._covered_end = 0
        # The view bytes (up to 4) before the buffer, for the word check.
        self._left_context = b""

    @property
    def held(self) -> int:
        """Number of bytes fed but not released yet."""
        return len(self._buffer) - self._released

    def __repr__(self) -> str:
        return f"<MaskStream held={self.held}>"

    def feed(self, masker: Masker, data: bytes) -> bytes:
        """Add `data` to the stream and return the output that can be released now."""
        data = bytes(data)
        if masker.pattern_count == 0:
            # Nothing can match: release whatever was held and pass data through.
            return self.flush(masker) + data
        if not data:
            return b""
        return self._process(masker, self._buffer + data, final=False)

    def flush(self, masker: Masker) -> bytes:
        """Release everything held; the stream can then be reused."""
        released = self._process(masker, self._buffer, final=True) if self.held else b""
        self._reset()
        return released

    def _process(self, masker: Masker, buffer: bytes, final: bool) -> bytes:
        view = View(buffer, final)
        found = masker.find(view.data, final, self._left_context)
        emitter = _Emitter(
            buffer,
            view,
            self._policy.placeholder,
            released=self._released,
            covered_view=self._covered_view - self._view_base,
            covered_end=self._covered_end - self._original_base,
        )
        emitter.emit(sorted(found.spans), found.hold, open_end=not final)
        window = emitter.released
        if found.hold is not None:
            window = min(window, view.original(found.hold))

        max_held = self._policy.max_held
        if not final and len(buffer) - emitter.released > max_held:
            # Over the bound: release all but the newest max_held // 2 bytes,
            # masking every match found so far. Up to 2 * max_held bytes stay
            # in the buffer, so that a match which began in the released
            # bytes is still found and masked from the release point on.
            limit = view.boundary_at_or_after(len(buffer) - max_held // 2)
            forced_hold = max(found.hold or 0, view.view_position(limit))
            emitter.emit(sorted(found.spans + found.tentative), forced_hold, open_end=False)
            emitter.release_to(limit)
            window = emitter.released
            if found.hold is not None:
                oldest = view.boundary_at_or_after(len(buffer) - 2 * max_held)
                window = min(window, max(view.original(found.hold), oldest))

        if final:
            return emitter.output()
        view_start = view.view_position(window)
        if view_start >= 4:
            self._left_context = view.data[view_start - 4 : view_start]
        else:
            self._left_context = (self._left_context + view.data[:view_start])[-4:]
        self._covered_view = emitter.covered_view + self._view_base
        self._covered_end = emitter.covered_end + self._original_base
        self._view_base += view_start
        self._original_base += window
        self._buffer = buffer[window:]
        self._released = emitter.released - window
        return emitter.output()


class _Emitter:
    """Writes the output of one buffer, left to right, as far as the claims allow."""

    def __init__(
        self, buffer: bytes, view: View, placeholder: bytes, released: int, covered_view: int, covered_end: int
    ) -> None:
        self.buffer = buffer
        self.view = view
        self.placeholder = placeholder
        self.pieces: list[bytes] = []
        self.released = released  # buffer position up to which output is written
        self.covered_view = covered_view  # view end of the last placeholder, relative to this view
        self.covered_end = covered_end  # buffer position just after the last placeholder

    def emit(self, spans: list[Span], hold: int | None, open_end: bool) -> None:
        """Write placeholders for `spans` and plain bytes up to what `hold` claims.

        A claim at or before the end of the last placeholder means a later
        match would merge into it, so everything after the placeholder is
        held. A claim after the placeholder holds back from its own position.
        `open_end` means more bytes may follow the buffer.
        """
        view = self.view
        for start, end in spans:
            if end <= self.covered_view:
                continue
            end_original = view.original_end(end)
            if start <= self.covered_view:
                # Overlaps or touches the last placeholder: extend it silently.
                self.covered_view = end
                self.covered_end = max(self.covered_end, end_original)
                self.released = max(self.released, end_original)
                continue
            if hold is not None and (hold <= self.covered_view or hold < start):
                break
            if end_original <= self.released:
                continue  # released earlier when the bound forced it out
            start_original = view.original(start)
            if start_original > self.released:
                self.pieces.append(self.buffer[self.released : start_original])
            self.pieces.append(self.placeholder)
            self.released = end_original
            self.covered_view = end
            self.covered_end = end_original

        stop = len(self.buffer) if view.cut is None else view.cut
        if hold is not None:
            stop = min(stop, self.covered_end if hold <= self.covered_view else view.original(hold))
        if open_end and self.covered_view >= len(view.data):
            # A match may start with the next view byte and merge into the
            # placeholder, taking the escape sequences before it along.
            stop = min(stop, self.covered_end)
        self.release_to(stop)

    def release_to(self, stop: int) -> None:
        """Write the bytes up to buffer position `stop` unchanged."""
        if stop > self.released:
            self.pieces.append(self.buffer[self.released : stop])
            self.released = stop

    def output(self) -> bytes:
        return b"".join(self.pieces)
