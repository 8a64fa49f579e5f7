"""Fetching task images over HTTP: one request loop for the driver (a :class:`.Connection`) and for Ray workers.

The driver downloads with its connection; a Ray worker gets a
:class:`RemoteImages` (the server's URL and the API key, nothing else) and
fetches for itself, with the same requests, retries and reasons.  Either way
the ``Authorization`` header goes only to the Label Studio server's own
origin (scheme, host and port), and redirects are followed by hand so that a
redirect to another host never carries it.
"""

import base64
import binascii
import hashlib
import json
import os
import threading
import time
import urllib.parse

from ._http import is_transient_status, sleep_before_retry


class Broken(Exception):
    """An image reference that could not be fetched; the message is the reason (scrubbed of every secret)."""


def fetch_url(session, url, auth, max_redirects=5):
    """GET ``url``; returns ``(content, content type)`` or raises :class:`Broken`.

    ``session`` has ``http`` (an httpx client that does not follow
    redirects), ``retries``, ``backoff``, ``same_origin(url)`` and
    ``scrub(text)``: a :class:`.Connection` or a :class:`RemoteImages`.
    ``auth()`` gives the ``Authorization`` header; it is only asked for, and
    sent, when the URL is the server's own.
    """
    import httpx

    for _ in range(max_redirects + 1):
        ours = session.same_origin(url)
        headers = auth() if ours else {}
        # Other hosts: one retry (a dead host costs little).
        retries = session.retries if ours else min(session.retries, 1)
        for attempt in range(retries + 1):
            try:
                response = session.http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                if attempt < retries and isinstance(exc, httpx.TransportError):
                    sleep_before_retry(session, attempt)
                    continue
                raise Broken(session.scrub(f"{type(exc).__name__}: {exc}")[:200]) from None
            if is_transient_status(response.status_code) and attempt < retries:
                sleep_before_retry(session, attempt)
                continue
            break
        if response.is_redirect and response.headers.get("location"):
            url = urllib.parse.urljoin(url, response.headers["location"])
            continue
        if response.status_code == 401 and session.same_origin(url):
            raise Broken("HTTP 401 from Label Studio (the key's user may not read this file)")
        if response.status_code >= 400:
            raise Broken(f"HTTP {response.status_code}")
        if not response.content:
            raise Broken("empty answer")
        return response.content, response.headers.get("content-type", "")
    raise Broken("too many redirects")


def decode_data_uri(ref):
    """The bytes and media type of a ``data:`` URI; raises :class:`Broken` when it is malformed."""
    header, _, payload = ref.partition(",")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=False), header[5:].split(";")[0]
        return urllib.parse.unquote_to_bytes(payload), header[5:].split(";")[0]
    except (ValueError, binascii.Error):
        raise Broken("malformed data: URI") from None


#: Seconds before an access token's expiry at which a worker gets a new one (a request must not carry a token that
#: expires on its way).
TOKEN_MARGIN = 30.0

# Per worker process: one HTTP client and access token per server and key, shared by the tasks that the process
# runs (Ray hands each task its own unpickled copy of the fetcher).  Keyed by process id too: a forked child must
# not use its parent's connections.
_STATES = {}
_STATES_LOCK = threading.Lock()


class _State:
    def __init__(self, timeout, connect_timeout):
        import httpx

        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), follow_redirects=False)
        self.lock = threading.Lock()
        self.access = None
        self.expires = 0.0


class RemoteImages:
    """The fetcher of a Label Studio server's task images that Ray workers run (``fetch`` of ``embed_images``).

    Parameters
    ----------
    url : str
        The server's URL (no trailing slash).
    api_key : str
        The API key: a legacy token (sent as ``Token KEY``) or a personal
        access token (exchanged at ``/api/token/refresh/`` for short-lived
        access tokens, sent as ``Bearer``; renewed before they expire).
    token_kind : {"legacy", "personal"}
        The key's kind (:attr:`.Connection.token_kind`).
    retries : int, default=4
        Transient failures (connection errors, HTTP 429, 5xx) are retried this
        often on the server's own URLs, once on other hosts.
    backoff : float, default=0.5
        First wait before a retry, in seconds; it doubles with every retry.
    timeout, connect_timeout : float, default=60, 5
        Seconds allowed for one request, and for opening its connection.

    Calling it with a source (an http(s) URL, or a ``data:`` URI) returns
    ``(bytes, None)``, or ``(None, reason)`` for an image that cannot be
    fetched: the same reasons as the driver's downloads, never raised, so one
    broken reference does not fail the job.  The key travels pickled inside
    the job, as a keyword argument of the decoding function, which Ray keeps
    in its object store and never logs; ``repr`` shows the server only, and
    every reason is scrubbed of the key and of the access token derived from it.
    """

    def __init__(self, url, api_key, token_kind, *, retries=4, backoff=0.5, timeout=60.0, connect_timeout=5.0):
        self.url = str(url).rstrip("/")
        self._key = api_key
        self.token_kind = token_kind
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)

    def __repr__(self):
        return f"RemoteImages(url={self.url!r}, token_kind={self.token_kind!r})"

    def _name(self):
        return (os.getpid(), self.url, hashlib.sha256(self._key.encode("utf-8")).hexdigest(), self.timeout,
                self.connect_timeout)

    def _state(self):
        name = self._name()
        with _STATES_LOCK:
            state = _STATES.get(name)
            if state is None:
                state = _STATES[name] = _State(self.timeout, self.connect_timeout)
        return state

    @property
    def http(self):
        """This process's HTTP client for the server (redirects are not followed: :func:`fetch_url` does that)."""
        return self._state().http

    def same_origin(self, url):
        """True when ``url`` has the server's scheme, host and port (only then is the key sent along)."""
        ours, theirs = urllib.parse.urlsplit(self.url), urllib.parse.urlsplit(url)
        return (ours.scheme, ours.netloc.lower()) == (theirs.scheme, theirs.netloc.lower())

    def scrub(self, text):
        """``text`` with the API key and the current access token blanked out."""
        text = str(text)
        state = _STATES.get(self._name())
        for secret in (self._key, state.access if state is not None else None):
            if secret and len(secret) >= 8:
                text = text.replace(secret, "***")
        return text

    def auth_headers(self):
        """The ``Authorization`` header for the server; raises :class:`Broken` when no access token is given."""
        if self.token_kind != "personal":
            return {"Authorization": f"Token {self._key}"}
        state = self._state()
        with state.lock:
            if state.access is None or time.time() > state.expires - TOKEN_MARGIN:
                state.access, state.expires = self._refresh(state)
            return {"Authorization": f"Bearer {state.access}"}

    def _refresh(self, state):
        import httpx

        url = self.url + "/api/token/refresh/"
        for attempt in range(self.retries + 1):
            try:
                response = state.http.post(url, json={"refresh": self._key})
            except httpx.HTTPError as exc:
                if attempt < self.retries and isinstance(exc, httpx.TransportError):
                    sleep_before_retry(self, attempt)
                    continue
                raise Broken(self.scrub(f"cannot get an access token from Label Studio ({type(exc).__name__}: "
                                        f"{exc})")[:200]) from None
            if is_transient_status(response.status_code) and attempt < self.retries:
                sleep_before_retry(self, attempt)
                continue
            break
        if response.status_code != 200:
            raise Broken(f"Label Studio refused to exchange the API key for an access token (HTTP "
                         f"{response.status_code})")
        try:
            access = str(response.json()["access"])
        except (ValueError, KeyError, TypeError):
            raise Broken("Label Studio gave no access token for the API key") from None
        return access, _expiry(access)

    def __call__(self, source):
        """``(bytes, None)`` for the image at ``source`` (a URL or a ``data:`` URI), else ``(None, reason)``."""
        try:
            if source.startswith("data:"):
                return decode_data_uri(source)[0], None
            return fetch_url(self, source, self.auth_headers)[0], None
        except Broken as exc:
            return None, str(exc)
        except Exception as exc:  # never let one image stop the job; the reason must not carry a secret either
            return None, self.scrub(f"{type(exc).__name__}: {exc}")[:200]


def _expiry(token):
    """The ``exp`` claim of a JWT (seconds since the epoch); a minute from now when it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return time.time() + 60.0


__all__ = ["Broken", "RemoteImages", "decode_data_uri", "fetch_url", "TOKEN_MARGIN"]
