"""URL normalisation and checks, the same for attributes and CSS values.

A URL is first normalised the way a browser's URL parser would read it:
leading/trailing C0 controls and spaces stripped, tab/CR/LF removed anywhere,
the scheme lowercased. Character references were already decoded by the XML
parser (and CSS escapes by the CSS tokenizer), so ``&#x6A;avascript:`` and
``\\6A avascript:`` arrive here as ``javascript:``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from chatsvg_core.sanitize._policy import SanitizePolicy

__all__ = ["UrlContext", "UrlVerdict", "check_url", "normalize_url"]

_STRIP = "".join(chr(c) for c in range(0x21)) + "\x7f"
_REMOVE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DATA = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp)((?:;[^;,]*)*);base64,(.*)$", re.I | re.S)
# Possessive: a long run of spaces before a bad character must not backtrack.
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]*+={0,2}+\s*+$")
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
}


class UrlContext(Enum):
    """Where a URL appears, which decides what it may point to."""

    REFERENCE = "reference"  # use, gradients, patterns, filters, textPath, mpath, animations
    IMAGE = "image"  # <image href>, <feImage href>
    LINK = "link"  # <a href>
    CSS = "css"  # url() in CSS or presentation attributes


@dataclass(frozen=True, slots=True)
class UrlVerdict:
    """The outcome of a URL check: allowed or not, the normalised URL, and why."""

    allowed: bool
    url: str
    why: str = ""


def normalize_url(value: str) -> str:
    """Normalise like a browser URL parser: strip controls/space, drop tab/CR/LF, lower scheme."""
    url = _REMOVE.sub("", value.strip(_STRIP))
    match = _SCHEME.match(url)
    if match:
        url = match.group(1).lower() + url[match.end(1) :]
    return url


def _check_data(url: str, policy: SanitizePolicy) -> UrlVerdict:
    match = _DATA.match(url)
    if match is None:
        return UrlVerdict(False, url, "data: URL that is not a base64 raster image")
    kind = match.group(1).lower()
    kind = "jpeg" if kind == "jpg" else kind
    if kind not in policy.data_image_types:
        return UrlVerdict(False, url, f"data:image/{kind} not allowed by the policy")
    payload = match.group(3)
    if not _BASE64.match(payload):
        return UrlVerdict(False, url, "data: URL payload is not base64")
    head = re.sub(r"\s", "", payload[:64])
    head = head[: len(head) - len(head) % 4]
    try:
        decoded = base64.b64decode(head)
    except (binascii.Error, ValueError):
        return UrlVerdict(False, url, "data: URL payload is not base64")
    # The declared type must match the bytes, so an SVG or HTML document can
    # never hide behind a raster type.
    if not decoded.startswith(_SIGNATURES[kind]) or (kind == "webp" and decoded[8:12] != b"WEBP"):
        return UrlVerdict(False, url, f"data: payload is not a {kind} image")
    return UrlVerdict(True, url)


def _host_allowed(host: str, hosts: frozenset[str]) -> bool:
    if host in hosts:
        return True
    return any(h.startswith("*.") and host.endswith(h[1:]) for h in hosts)


def check_url(value: str, context: UrlContext, policy: SanitizePolicy) -> UrlVerdict:
    """Decide whether a URL may stay in this context under the policy."""
    url = normalize_url(value)
    if url.startswith("#"):
        if len(url) == 1:
            return UrlVerdict(False, url, "empty fragment")
        return UrlVerdict(True, url)
    match = _SCHEME.match(url)
    scheme = match.group(1) if match else ""
    if context is UrlContext.IMAGE:
        if scheme == "data":
            return _check_data(url, policy)
        if scheme in policy.image_schemes and policy.image_hosts:
            try:
                parts = urlsplit(url)
                host = (parts.hostname or "").rstrip(".")
                port = parts.port
            except ValueError:
                return UrlVerdict(False, url, "malformed URL")
            if parts.username or parts.password or "\\" in url:
                return UrlVerdict(False, url, "credentials or backslash in URL")
            hostport = f"{host}:{port}" if port else host
            if host and (
                _host_allowed(hostport, policy.image_hosts)
                or _host_allowed(host, policy.image_hosts)
            ):
                return UrlVerdict(True, url)
            return UrlVerdict(False, url, f"host {host!r} not in image_hosts")
        return UrlVerdict(False, url, "external image not allowed")
    if context is UrlContext.LINK and scheme and scheme in policy.link_schemes:
        if "\\" in url:
            return UrlVerdict(False, url, "backslash in URL")
        return UrlVerdict(True, url)
    if not scheme:
        return UrlVerdict(False, url, "relative URL (external resource)")
    return UrlVerdict(False, url, f"scheme {scheme!r} not allowed here")
