"""Secrets kept out of everything the daemon shows: config, `info`, events, logs.

A `Redactor` knows the secret values of one configuration (`secrets_of`) and
replaces them, and a few unmistakable key shapes (`sk-...`, `Bearer ...`,
`ghp_...`, `xoxb-...`), by `[redacted]`. `.value()` also blanks whatever sits
under a secret-named key (`api_key`, `token`, `password`, `*_key`...), whatever
its value.

Known values shorter than `MIN_SECRET_LEN` characters are only redacted under
secret-named keys, never searched for in free text: replacing a 4-character
password everywhere would mangle ordinary words and numbers and, worse, show
anyone reading the output which words the password is made of.

Import-light on purpose (only the standard library): the CLI imports it to show
`legion config check`, and the log processor runs it on every line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legion.config import Config

REDACTED = "[redacted]"
# Shorter known values are redacted under secret-named keys only (see above).
MIN_SECRET_LEN = 8

# Key names whose value is a secret wherever they appear (compared lower-cased,
# with '-' read as '_', so `X-Api-Key` and `Authorization` headers count).
_SECRET_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "token",
        "access_token",
        "refresh_token",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "authorization",
        "proxy_authorization",
        "cookie",
        "private_key",
        "credentials",
    }
)
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password")

# Environment variable names that hold secrets (OPENAI_API_KEY, HASS_TOKEN...).
_SECRET_ENV = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|PAT)(?:_|$)")

# Shapes that are a credential wherever they appear, even when nobody told us
# the value. Few and precise: each has a vendor prefix and a long tail, so
# ordinary text (agent names, ids, words with "sk-" inside) does not match.
_SHAPES = re.compile(
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|\bAIza[0-9A-Za-z_\-]{35}"  # Google API keys
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
)
# `Bearer <token>` / `Basic <token>`: keep the scheme, hide the credential.
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}")


def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a secret (`api_key`, `X-Api-Key`, `hass_token`...)."""
    n = name.lower().replace("-", "_")
    return n in _SECRET_NAMES or n.endswith(_SECRET_SUFFIXES)


def is_secret_env(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    return bool(_SECRET_ENV.search(name.upper()))


class Redactor:
    """Replaces known secret values and credential shapes by `[redacted]`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LEN}
        self.count = len(known)
        # Longest first, so a secret that contains another is replaced whole.
        self._known: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(s) for s in sorted(known, key=len, reverse=True)))
            if known
            else None
        )

    def text(self, s: str) -> str:
        """`s` with every known secret and every credential shape replaced."""
        if self._known is not None:
            s = self._known.sub(REDACTED, s)
        s = _SHAPES.sub(REDACTED, s)
        return _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", s)

    def value(self, obj: Any) -> Any:
        """A deep copy of `obj` (dicts, lists, tuples) safe to show.

        Values under secret-named keys become `[redacted]` (unset ones, None or
        "", stay as they are so "no key configured" remains visible); every
        other string goes through `.text`. Other objects pass through as they are.
        """
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                if (
                    isinstance(k, str)
                    and is_secret_key(k)
                    and v not in (None, "")
                    and not isinstance(v, bool)
                ):
                    out[k] = REDACTED
                else:
                    out[k] = self.value(v)
            return out
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.value(v) for v in obj)
        return obj


def _under_secret_keys(node: Any, out: set[str], secret: bool = False) -> None:
    """Every string found at or below a secret-named key."""
    if isinstance(node, str):
        if secret:
            out.add(node)
    elif isinstance(node, Mapping):
        for k, v in node.items():
            _under_secret_keys(v, out, secret or (isinstance(k, str) and is_secret_key(k)))
    elif isinstance(node, list | tuple):
        for v in node:
            _under_secret_keys(v, out, secret)


_VAR_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def secrets_of(cfg: Config, env: Mapping[str, str] | None = None) -> set[str]:
    """The secret values one configuration holds or points at.

    - every provider's `api_key`, and strings under secret-named keys in its
      `params` (e.g. `extra_headers.Authorization`);
    - strings under secret-named keys in `plugins.settings`;
    - the values of variables a `${VAR}` in the file names when the variable's
      name looks secret (`${HASS_TOKEN}` inside a URL), read from `env`;
    - every variable of `env` (the daemon's environment) whose name looks
      secret, since litellm reads e.g. OPENAI_API_KEY from there by itself.
    """
    environ = os.environ if env is None else env
    out: set[str] = set()
    for p in cfg.providers.values():
        if p.api_key:
            out.add(p.api_key)
        _under_secret_keys(p.params, out)
    _under_secret_keys(cfg.plugins.settings, out)
    for template in cfg.sources.values():
        for name in _VAR_NAME.findall(template):
            if is_secret_env(name) and environ.get(name):
                out.add(environ[name])
    for name, v in environ.items():
        if v and is_secret_env(name):
            out.add(v)
    return out


def _show_template(template: str) -> str:
    """`${VAR:-default}` with the default hidden: it may be a literal key."""
    return re.sub(r"(\$\{[A-Za-z_][A-Za-z0-9_]*):-[^}]*\}", rf"\1:-{REDACTED}}}", template)


def config_view(cfg: Config, redactor: Redactor | None = None) -> dict[str, Any]:
    """The effective configuration as `legion config check` shows it.

    A secret that came from the environment is shown as the `${VAR}` it was
    written as (the most useful thing to see: where it comes from); a literal
    one as `[redacted]`; everything else through the redactor.
    """
    from legion import config as config_mod

    r = redactor if redactor is not None else Redactor(secrets_of(cfg))

    def walk(node: Any, path: str, secret: bool) -> Any:
        if isinstance(node, dict):
            return {
                k: walk(v, f"{path}.{k}" if path else k, secret or is_secret_key(k))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]", secret) for i, v in enumerate(node)]
        if isinstance(node, str) and node:
            template = cfg.sources.get(path)
            if secret:
                return _show_template(template) if template is not None else REDACTED
            return r.text(node)
        return node

    shown = walk(config_mod.to_dict(cfg), "", False)
    assert isinstance(shown, dict)
    return shown


# The daemon's redactor, for code that writes where no service object reaches
# (`events.insert` runs inside write jobs that get only a database handle). A
# daemon is one process, so one per process is exact; until the daemon
# installs its own, the credential shapes are still hidden.
_active: list[Redactor] = [Redactor()]


def install(redactor: Redactor) -> None:
    """Make `redactor` the one `active()` returns (the daemon calls this at start)."""
    _active[0] = redactor


def active() -> Redactor:
    return _active[0]
