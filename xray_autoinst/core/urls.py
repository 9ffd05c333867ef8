"""URL hygiene: no userinfo, secret-looking query values replaced by ``REDACTED``."""

from __future__ import annotations

from .entities import clip


def redact_query(query: str, secret_keys) -> str:
    if not query:
        return query
    low = query.lower()
    for key in secret_keys:
        if key in low:
            break
    else:
        return query
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        lname = name.lower()
        if eq and any(k in lname for k in secret_keys):
            parts.append(name + "=REDACTED")
        else:
            parts.append(part)
    return "&".join(parts)


def strip_userinfo(netloc: str) -> str:
    at = netloc.rfind("@")
    return netloc[at + 1 :] if at >= 0 else netloc


def clean_url(url: str, secret_keys) -> str:
    """Remove userinfo and redact secret query values from an absolute or relative URL."""
    scheme_end = url.find("://")
    if scheme_end >= 0:
        rest = url[scheme_end + 3 :]
        cut = len(rest)
        for ch in "/?#":
            i = rest.find(ch)
            if 0 <= i < cut:
                cut = i
        url = url[: scheme_end + 3] + strip_userinfo(rest[:cut]) + rest[cut:]
    frag = ""
    hash_at = url.find("#")
    if hash_at >= 0:
        url, frag = url[:hash_at], ""  # fragments never reach the server; drop them
    q = url.find("?")
    if q >= 0:
        url = url[: q + 1] + redact_query(url[q + 1 :], secret_keys)
    return clip(url + frag)
