"""Who may talk to the daemon: the socket's mode, its directory, the peer's uid."""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any

import pytest

from tests.conftest import Daemon

OTHER_UID = 65534  # nobody


def _as_other_uid(path: str) -> dict[str, Any]:
    """Connect from a forked child running as another uid; report what happened."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        out: dict[str, Any]
        try:
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(path)
            except OSError as exc:
                out = {"connect_error": exc.errno}
            else:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"agents.list"}\n')
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                reply = json.loads(data) if data else None
                out = {"reply": reply}
                if reply and "error" in reply:
                    out["closed"] = s.recv(1) == b""
        except BaseException as exc:
            out = {"child_error": repr(exc)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    return result


def test_socket_is_0600_in_a_0700_directory(daemon: Daemon) -> None:
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((daemon.home / "legion.db").stat().st_mode) == 0o600


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_another_uid_is_refused_by_the_filesystem(daemon: Daemon) -> None:
    out = _as_other_uid(str(daemon.socket))
    assert out == {"connect_error": 13}  # EACCES


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_another_uid_is_refused_by_the_daemon_even_with_open_permissions(daemon: Daemon) -> None:
    daemon.rpc("agents.spawn", {"id": "secret"})
    # Simulate a careless chmod: the peer-credential check still refuses.
    os.chmod(daemon.home.parent, 0o755)  # mkdtemp made it 0700
    os.chmod(daemon.home, 0o755)
    os.chmod(daemon.socket, 0o666)
    out = _as_other_uid(str(daemon.socket))
    assert "reply" in out, out
    reply = out["reply"]
    assert reply["error"]["code"] == -32003
    assert f"uid {OTHER_UID} may not use this daemon" in reply["error"]["message"]
    assert "rpc.allowed_uids" in reply["error"]["data"]["hint"]
    assert out["closed"] is True
    assert "result" not in reply
    # The daemon's own uid is still served.
    assert [a["id"] for a in daemon.rpc("agents.list")["result"]] == ["secret"]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_allowed_uids_admits_a_named_uid(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config=f"[rpc]\nallowed_uids = [{OTHER_UID}]\n")
    os.chmod(daemon.home.parent, 0o755)  # mkdtemp made it 0700
    os.chmod(daemon.home, 0o755)
    os.chmod(daemon.socket, 0o666)
    out = _as_other_uid(str(daemon.socket))
    assert out["reply"]["result"] == []
