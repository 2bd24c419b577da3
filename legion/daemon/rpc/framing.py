"""One guard for every frame the socket receives.

A frame is one line of bytes. Before the JSON decoder sees it, it must be
valid UTF-8 and nest no deeper than `rpc.max_depth`; the decoder's own
failures (malformed JSON, a number out of range) and batch-shape rules
follow. Every way a frame can be wrong ends as a `LegionError` with a spec
code (-32700 or -32600), so the connection can answer it and carry on:
nothing a client sends may raise anything else out of `decode`.

Why check before decoding: msgspec recurses once per nesting level, so a line
of 100,000 `[` raises RecursionError from inside the decoder (and the limit
depends on the interpreter's stack, not on anything we chose). The scan here
is cheap: a C-level count rules out almost every real request at once, and
only a frame with more brackets than the limit is scanned properly (about
8 ms for a 1 MB batch).
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import msgspec

from legion.errors import InvalidRequest, ParseError

_decoder = msgspec.json.Decoder()

# Everything but the four brackets and the quote, for bytes.translate(None, delete).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
# +1 for an opening bracket, -1 for a closing one (only brackets are looked up).
_DELTA = [0] * 256
for _b in b"[{":
    _DELTA[_b] = 1
for _b in b"]}":
    _DELTA[_b] = -1
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])

_EXAMPLE = '{"jsonrpc": "2.0", "id": 1, "method": "daemon.info"}'


def too_deep(line: bytes, limit: int) -> bool:
    """Whether arrays and objects in `line` nest deeper than `limit`.

    Brackets inside strings do not count. A frame with at most `limit`
    brackets cannot be too deep, which answers nearly every request without
    a scan; otherwise the strings are cut out (C speed) and the running depth
    is computed by C iterators that stop at the first level past the limit.
    """
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    # Escapes first (a pair of backslashes, then an escaped quote), so that
    # what is left of each string is its two quotes; then only brackets and
    # quotes are kept, and every other piece between quotes is a string.
    # All of it at C speed. Where the frame is not valid JSON (a backslash
    # outside a string) the scan may differ from the decoder's past that
    # point, but the decoder stops there, so it never nests deeper than seen.
    bare = line.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    brackets = b"".join(bare.split(b'"')[::2])
    return any(map(limit.__lt__, accumulate(map(_DELTA.__getitem__, brackets))))


def utf8_problem(line: bytes) -> tuple[int, str] | None:
    """None for valid UTF-8 (strictly: no overlong forms, no encoded
    surrogates, nothing past U+10FFFF), else the byte offset and what is wrong."""
    if line.isascii():
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = line[exc.start : exc.end]
        return exc.start, f"invalid UTF-8 at byte {exc.start} ({bad.hex(' ')}): {exc.reason}"
    return None


def decode(line: bytes, *, max_depth: int, max_batch: int) -> Any:
    """The JSON value of one frame, or a LegionError saying what is wrong.

    Returns a dict (one request), a non-empty list of at most `max_batch`
    items (a batch), or any other JSON value (the caller answers it with
    "a request must be an object"). Raises only LegionError.
    """
    bad = utf8_problem(line)
    if bad is not None:
        raise ParseError(
            bad[1],
            hint="send UTF-8 text; binary data belongs in a file "
            "referenced by path, or base64 in a string",
            kind="invalid_utf8",
            data={"offset": bad[0]},
        )
    if too_deep(line, max_depth):
        raise InvalidRequest(
            f"request nests arrays or objects more than {max_depth} levels deep",
            hint="flatten the parameters (the limit is rpc.max_depth)",
            kind="too_deep",
        )
    try:
        if line.lstrip()[:1] == b"[":
            # A batch's size is known before its requests are built: a huge
            # one costs a skim, not 19,000 dicts.
            raw = _batch_decoder.decode(line)
            if len(raw) > max_batch:
                raise InvalidRequest(
                    f"batch too large: {len(raw)} requests, at most {max_batch}; nothing ran",
                    hint="split it into batches of at most rpc.max_batch requests",
                    kind="batch_too_large",
                    data={"size": len(raw), "max": max_batch},
                )
            msg = [_decoder.decode(item) for item in raw]
        else:
            msg = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise ParseError(
            f"invalid JSON: {_decoder_message(exc)}",
            hint=f"send one JSON-RPC 2.0 object per line, e.g. {_EXAMPLE}",
        ) from None
    except (RecursionError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        # Belt and braces: the checks above should make these unreachable.
        raise ParseError(
            f"invalid JSON: {exc}", hint=f"send one JSON-RPC 2.0 object per line, e.g. {_EXAMPLE}"
        ) from None
    if isinstance(msg, list) and not msg:
        raise InvalidRequest("empty batch", hint="a batch is a non-empty array of requests")
    return msg


def _decoder_message(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if text == "Input data was truncated":
        # What msgspec says for an unpaired \ud800-style escape as well as for a
        # cut-off document; name both so the sender knows where to look.
        return "input ended early (a cut-off document, or an unpaired \\ud800-\\udbff escape)"
    if text.startswith("Number out of range"):
        return "a number is out of range (floats must be finite doubles)"
    return text
