"""Base URLs of OpenAI-compatible servers: validation, redaction, loopback detection, round robin.

Pure functions, used by :class:`cai.backends.openai.backend.OpenAIBackend`:
:func:`normalize_base_url` checks a ``--base-url`` value, :func:`redact_url`
drops credentials from a URL before it is shown, :func:`is_loopback_url` tells
whether a server is on this machine (then no API key is needed) and
:func:`base_url_for` assigns request ``k`` to ``base_urls[k % len(base_urls)]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from cai.core.errors import CaiError


def normalize_base_url(url: str) -> str:
    """Check a base URL (``http``/``https`` with a host) and drop a trailing slash.

    >>> normalize_base_url("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000/v1'
    >>> normalize_base_url("localhost:8000/v1")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: invalid base URL 'localhost:8000/v1': expected an http:// or https:// URL with a
    host (fix: pass --base-url like http://127.0.0.1:8000/v1)
    """
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CaiError(
            f"invalid base URL {redact_url(text)!r}: expected an http:// or https:// URL with a host",
            hint="pass --base-url like http://127.0.0.1:8000/v1",
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise CaiError(
            f"invalid base URL {redact_url(text)!r}: bad port",
            hint="pass --base-url like http://127.0.0.1:8000/v1",
        ) from None
    return text.rstrip("/")


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for messages.

    >>> redact_url("https://bob:hunter2@api.example.com/v1")
    'https://***@api.example.com/v1'
    >>> redact_url("http://127.0.0.1:8000/v1")
    'http://127.0.0.1:8000/v1'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def is_loopback_url(url: str) -> bool:
    """Whether the URL's host is this machine (``localhost``, ``127.x``, ``::1``).

    >>> [is_loopback_url(u) for u in ("http://localhost:8000/v1", "http://127.0.0.2/v1", "http://[::1]:1/v1")]
    [True, True, True]
    >>> [is_loopback_url(u) for u in ("https://api.openai.com/v1", "http://10.0.0.5:8000/v1")]
    [False, False]
    """
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_for(request_index: int, base_urls: Sequence[str]) -> str:
    """Round-robin: request ``k`` goes to ``base_urls[k % len(base_urls)]``.

    >>> urls = ["http://a/v1", "http://b/v1"]
    >>> [base_url_for(k, urls) for k in range(5)]
    ['http://a/v1', 'http://b/v1', 'http://a/v1', 'http://b/v1', 'http://a/v1']
    """
    return base_urls[request_index % len(base_urls)]
