"""What a sandbox run may see, read and write: worked out once at start.

The same policy is handed to each level: to bubblewrap as its mount
options, to the runner as the view it builds itself (`namespaces`), and to
Landlock at every level (the `process` level included, where it is the
only thing between a tool and the daemon's files).

- hidden: the daemon's home (database, config, socket, every agent's
  files) and, for tools, the daemon user's home and the places where
  services keep state and sockets (/run, /var, /home, ...). Each becomes an
  empty directory.
- kept: the interpreter (its real path, prefix, base prefix and
  site-packages: a venv anywhere, /tmp included) bound back read-only after
  the hiding, so the runner can start and import msgspec.
- masked: credentials of the machine (/etc/shadow, ssh host keys, ...),
  the daemon's socket wherever `--socket` put it, and the usual credential
  files in the user's home: replaced by /dev/null or an empty directory.
- writable: the agent's working directory, and for tools a private /tmp.
"""

from __future__ import annotations

import os
import pwd
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

from legion.daemon.tools import sandbox_kernel as kernel
from legion.paths import Paths

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Where services keep state and sockets (a root daemon could reach Docker's
# socket under /run): a tool has no business there.
TOOL_HIDDEN = ("/run", "/var", "/home", "/root", "/srv", "/mnt", "/media")
DEV_READ = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DEV_WRITE = ("/dev/null", "/dev/zero", "/dev/full")


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def _outermost(paths: list[str]) -> list[str]:
    """Drop every path inside another one of the list."""
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(p == o or p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return out


def interpreter_paths() -> list[str]:
    """Everything this interpreter reads to start and import msgspec."""
    paths = [
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(_real(sys.executable)),
        os.path.dirname(sys.executable),
    ]
    paths += [p for p in site.getsitepackages() if os.path.isdir(p)]
    # The runner and the kernel module beside it.
    paths.append(str(Path(__file__).resolve().parent))
    return _outermost([_real(p) for p in paths if p])


def user_home() -> str:
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        home = os.path.expanduser("~")
    home = _real(home)
    return "" if home == "/" else home


@dataclass
class View:
    """One kind of run's view: tools (`private_tmp`) or commands."""

    hide: list[str]
    keep: list[str]
    mask: list[str]
    read: list[str]
    write: list[str]
    private_tmp: bool
    scope_unix: bool
    extra: dict[str, object] = field(default_factory=dict)


class Policy:
    def __init__(self, paths: Paths) -> None:
        self.home = _real(paths.home)
        self.socket = _real(paths.socket)
        self.keep = interpreter_paths()
        uhome = user_home()
        self.user_home = uhome
        secrets = [*kernel.SECRET_FILES]
        if uhome:
            secrets += [os.path.join(uhome, s) for s in kernel.HOME_SECRETS]
        if not self.socket.startswith(self.home + "/"):
            secrets.append(self.socket)
        self.mask = [s for s in secrets if os.path.lexists(s) and not os.path.islink(s)]
        etc = kernel.complement("/etc", [s for s in secrets if s.startswith("/etc/")])
        tool_hide = [
            self.home,
            *([uhome] if uhome else []),
            *(d for d in TOOL_HIDDEN if os.path.isdir(d)),
        ]
        # The resolver's file may live under /run (systemd-resolved): a tool
        # with the network keeps it.
        resolv = _real("/etc/resolv.conf")
        self.resolv_dir = os.path.dirname(resolv) if not resolv.startswith("/etc/") else ""
        self.tool = View(
            hide=_outermost(tool_hide),
            keep=self.keep,
            mask=[m for m in self.mask if not any(m.startswith(h + "/") for h in tool_hide)],
            read=[*(d for d in SYSTEM_DIRS if os.path.exists(d)), *etc, *self.keep, *DEV_READ],
            write=[*DEV_WRITE],
            private_tmp=True,
            scope_unix=True,
        )
        # A command observes the machine: it reads everything but the daemon's
        # home, the credentials and the devices (a root daemon could read a raw
        # disk), and may reach the network.
        self.command = View(
            hide=[self.home],
            keep=self.keep,
            mask=self.mask,
            read=[*kernel.complement("/", [self.home, "/dev", *secrets]), *DEV_READ],
            write=[*DEV_WRITE],
            private_tmp=False,
            scope_unix=False,
        )

    def view(self, tool: bool) -> View:
        return self.tool if tool else self.command

    def request(
        self, *, tool: bool, workdir: str, level: str, network: bool, tmp_mb: int
    ) -> dict[str, object]:
        """The runner's part of a request: the view it builds (namespaces
        level) and its Landlock rules (every level)."""
        v = self.view(tool)
        workdir = _real(workdir)
        keep = [*v.keep, self.resolv_dir] if tool and network and self.resolv_dir else v.keep
        read = [*v.read, workdir, *keep[len(v.keep) :]]
        write = [*v.write, workdir]
        out: dict[str, object] = {}
        if level == "namespaces":
            out["view"] = {
                "hide": v.hide,
                "keep": keep,
                "mask": v.mask,
                "workdir": workdir,
                "private_tmp": v.private_tmp,
                "tmp_mb": tmp_mb,
            }
        if level != "process" and tool:
            # A fresh /proc (only the run's processes) and a private /tmp; at
            # the process level /proc stays out of a tool's reach, and TMPDIR
            # is in the working directory.
            read += ["/proc", "/tmp"]
            write += ["/tmp"]
        out["landlock"] = {"read": read, "write": write, "scope_unix": v.scope_unix}
        return out

    def bwrap(
        self,
        binary: str,
        *,
        tool: bool,
        workdir: str,
        network: bool,
        cwd: str,
        tmp_mb: int,
        sized: bool,
    ) -> list[str]:
        """bwrap options for the same view. Binds come after the tmpfs mounts
        they punch through (bwrap applies its options in order and reads the
        sources from the host), so a venv under /tmp or the home works."""
        v = self.view(tool)
        workdir = _real(workdir)
        argv = [binary, "--die-with-parent", "--unshare-all"]
        if network:
            argv.append("--share-net")
        argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        hides = sorted({*v.hide, *(["/tmp"] if v.private_tmp else [])})
        for h in hides:
            if h == "/tmp" and sized:
                argv += ["--size", str(tmp_mb * 1024 * 1024)]
            argv += ["--tmpfs", h]
        keep = [*v.keep, self.resolv_dir] if tool and network and self.resolv_dir else v.keep
        for k in keep:
            if any(k == h or k.startswith(h.rstrip("/") + "/") for h in hides):
                argv += ["--ro-bind", k, k]
        for h in v.hide:
            if any(h.startswith(k + "/") for k in keep):
                argv += ["--tmpfs", h]
        argv += ["--bind", workdir, workdir]
        for m in v.mask:
            if os.path.isdir(m):
                argv += ["--tmpfs", m, "--remount-ro", m]
            else:
                argv += ["--ro-bind", "/dev/null", m]
        # Last, and not recursive: the working directory bound inside stays
        # writable, the empty directories left where the hidden ones were do not.
        for h in hides:
            if h != "/tmp":
                argv += ["--remount-ro", h]
        return [*argv, "--chdir", cwd, "--"]
