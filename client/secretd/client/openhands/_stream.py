"""A streaming masker for the SDK's ``compile_stream_mask``, backed by a daemon mask stream."""

from __future__ import annotations

import codecs
import logging
import weakref
from typing import TYPE_CHECKING

from openhands.sdk.conversation.secret_registry import StreamOutputMask

from secretd.protocol.errors import SecretdError
from secretd.protocol.messages import HelloResult

from ..blocking import MaskStream

if TYPE_CHECKING:
    from ._registry import SecretdSecretRegistry

__all__ = ["SecretdStreamMask", "withheld_notice"]

logger = logging.getLogger("secretd.client.openhands")


def withheld_notice(reason: object) -> str:
    """Return the text shown in place of output that could not be masked, ``reason`` included."""
    return f"[secretd: output withheld because it could not be masked: {reason}]"


class SecretdStreamMask(StreamOutputMask):
    """Mask text that arrives in pieces, through one daemon-side mask stream.

    The daemon holds back only the bytes that could still grow into a
    secret, so the released text never depends on where the chunks were cut.
    The stream opens at the first ``feed`` and closes at ``flush``.  A masker
    dropped without ``flush`` (the SDK does that when a model response is
    retried) has its stream closed at the registry's next call.  Fail closed:
    after an error, ``feed`` releases nothing and ``flush`` returns a notice.
    """

    def __init__(self, registry: SecretdSecretRegistry) -> None:
        super().__init__(None, 0)
        self._registry = registry
        self._stream: MaskStream | None = None
        self._connection: HelloResult | None = None
        self._finalizer: weakref.finalize | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._error: SecretdError | None = None

    def feed(self, text: str) -> str:
        """Return the masked text that is safe to release now."""
        if self._error is not None or not text:
            return ""
        data = text.encode("utf-8", "surrogateescape")
        try:
            if self._stream is None or self._connection is None:
                self._stream, self._connection, self._finalizer = self._registry._open_stream(self)
            released = self._registry._feed_stream(self._stream, self._connection, data)
        except SecretdError as exc:
            self._fail(exc)
            return ""
        return self._decoder.decode(released)

    def flush(self) -> str:
        """Return what is still held back; no more input is coming."""
        if self._error is not None:
            notice, self._error = withheld_notice(self._error), None
            return notice
        stream, connection = self._stream, self._connection
        if stream is None or connection is None:
            return ""
        self._stream = self._connection = None
        if self._finalizer is not None:
            self._finalizer.detach()
        try:
            rest = self._registry._close_stream(stream, connection)
        except SecretdError as exc:
            logger.error("secretd could not flush a mask stream, its tail withheld: %s", exc)
            return withheld_notice(exc)
        return self._decoder.decode(rest, final=True)

    def _fail(self, error: SecretdError) -> None:
        logger.error("secretd mask stream failed, streamed text withheld: %s", error)
        self._error = error
        self._stream = self._connection = None
        if self._finalizer is not None:
            # Queue the stream for closing, as if this masker had been dropped.
            self._finalizer()
