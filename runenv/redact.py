"""Keeping secrets out of what people see: env_vars masked, credentials inside URIs redacted.

Two kinds of secret reach listings, progress lines, errors and logs:

- **env_vars** values. A value is masked when its *name* says it is secret (``DB_PASSWORD``,
  ``AUTH``, ``GITHUB_TOKEN``) or its *shape* does: a URL that carries a password, or a long
  random-looking string (an API key, a JWT). A missed secret costs more than a masked harmless
  value, so both rules lean towards masking.
- **Credentials inside URIs**: ``https://user:pw@host/x.zip`` anywhere in a message becomes
  ``https://user:****@host/x.zip``; a user part alone (often a token, as in
  ``https://ghp_…@github.com``) becomes ``****``; secret-looking query parameters (presigned
  URLs' signatures, ``?token=``) lose their values.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

MASK = "****"

# Words that make an env var's name secret (matched anywhere in the upper-cased name).
SECRET_NAME_WORDS = (
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "COOKIE",
    "SESSION",
    "SIGNATURE",
    "DSN",
)
SECRET_QUERY_WORDS = ("sig", "signature", "token", "key", "secret", "password", "credential")

# scheme://userinfo@ — userinfo stops at the first character that cannot be in it.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s'\"]+)=(?P<value>[^&;#\s'\"]*)")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9+/=_.~:-]+$")

# A generated key has a long run of letters and digits whose character class (lower, upper,
# digit) keeps changing; words, versions and ids made by people have short runs or few changes.
RANDOM_MIN_RUN = 16
RANDOM_MIN_CHANGES_PER_CHAR = 0.2
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")


def redact_text(text: str) -> str:
    """``text`` with the credentials inside every URI it contains replaced by ``****``."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(_masked_userinfo, text)
    return _QUERY_PARAM.sub(_masked_query_param, text)


def mask_env_vars(env_vars: Mapping[str, Any]) -> dict[str, Any]:
    """env_vars as shown to people: secret values masked, URL credentials redacted."""
    return {name: mask_value(name, value) for name, value in env_vars.items()}


def mask_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if is_secret_name(name) or looks_random(value):
        return MASK
    return redact_text(value)


def mask_runtime_env(runtime_env: Mapping[str, Any]) -> dict[str, Any]:
    """A runtime_env as shown to people: env_vars masked, credentials in every URI redacted
    (working_dir, py_modules, pip options, …)."""
    shown = {key: _redact_strings(value) for key, value in runtime_env.items()}
    env_vars = runtime_env.get("env_vars")
    if isinstance(env_vars, Mapping):
        shown["env_vars"] = mask_env_vars(env_vars)
    return shown


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_NAME_WORDS)


def looks_random(value: str) -> bool:
    """Whether ``value`` holds something that looks generated (an API key, a JWT, a hex
    digest) rather than words, numbers, versions or a path."""
    if "://" in value:
        return False  # a URI: its credentials are redacted, the rest is useful to see
    return any(
        len(run) >= RANDOM_MIN_RUN and _class_changes(run) >= RANDOM_MIN_CHANGES_PER_CHAR * len(run)
        for run in _ALNUM_RUN.findall(value)
    )


def _class_changes(run: str) -> int:
    classes = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in run]
    return sum(1 for a, b in itertools.pairwise(classes) if a != b)


def _masked_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if userinfo == MASK or userinfo.endswith(":" + MASK):
        return match.group(0)  # already redacted
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if has_password else MASK  # a user part alone is often a token
    return f"{match.group('scheme')}{shown}@"


def _masked_query_param(match: re.Match[str]) -> str:
    name = match.group("name").lower()
    if not match.group("value") or not any(word in name for word in SECRET_QUERY_WORDS):
        return match.group(0)
    return f"{match.group('lead')}{match.group('name')}={MASK}"


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    return value
