"""A quick check that the Hugging Face hub can be reached, so that a machine without network fails in a second
with one line instead of retrying for half a minute.

huggingface_hub retries a failed request five times with back-off (about 25 s) before it looks in the cache; a
TCP connection to the hub (or to the proxy that the environment names for it) answers in milliseconds either way.
"""

from __future__ import annotations

import functools
import socket
import urllib.parse
import urllib.request

PROBE_TIMEOUT_S = 3.0
OFFLINE_FALLBACK = ("set HF_HUB_OFFLINE=1 to use only the local cache, or run without any download on random "
                    "weights with --checkpoint none --config config/tiny.yaml")


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) is set: then only the cache is read."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@functools.lru_cache(maxsize=None)
def _connect_error(host: str, port: int) -> str | None:
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def hub_unreachable_reason() -> str | None:
    """None when a connection to the hub (or its proxy) opens, else why not, e.g. 'gaierror: Name or service not
    known'. Checked once per process and endpoint."""
    url = urllib.parse.urlsplit(hub_endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or "", proxy_url.port or 80
    return _connect_error(host, port)


def unreachable_message(what: str, reason: str) -> str:
    """One line: the hub cannot be reached, ``what`` is not cached, and the two ways to go on offline."""
    return (f"the Hugging Face hub ({hub_endpoint()}) cannot be reached ({reason}) and {what} is not in the local "
            f"cache; {OFFLINE_FALLBACK}")
