"""The connection to a Label Studio server: the API key, its kind, and checking it on connecting.

Retries, error messages and raw requests are in :mod:`._http`.
"""

import base64
import binascii
import json
import os
import threading
import urllib.parse

from ...errors import InputError
from . import sdk_internals
from ._http import TOKEN_HELP, call_sdk, error_detail

#: Files per upload request: Label Studio's default cap (DATA_UPLOAD_MAX_NUMBER_FILES); halved while a server
#: configured lower refuses.
UPLOAD_BATCH = 100


class Connection:
    """An authenticated connection to one Label Studio server.

    Create it with :func:`connect`.  Attributes: ``url`` (no trailing
    slash), ``client`` (the ``label_studio_sdk.LabelStudio`` client),
    ``token_kind`` (``"personal"`` or ``"legacy"``), ``user`` (the email or
    username of the key's user), ``retries`` and ``backoff`` (transient
    failures are retried ``retries`` times, waiting ``backoff · 2^k`` s).
    """

    def __init__(self, url, api_key, client, http, token_kind, retries, backoff, sdk_http=None):
        self.url = url
        self.client = client
        self.http = http
        self._sdk_http = sdk_http  # the httpx client handed to the SDK (it has no close() of its own)
        self.token_kind = token_kind
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.upload_batch = UPLOAD_BATCH
        self.user = None
        self._key = api_key
        self._lock = threading.Lock()

    def __repr__(self):
        return f"Connection(url={self.url!r}, token_kind={self.token_kind!r}, user={self.user!r})"

    def scrub(self, text):
        """``text`` with the API key (and the access token derived from it) blanked out."""
        text = str(text)
        for secret in (self._key, self._access_token()):
            if secret and len(secret) >= 8:
                text = text.replace(secret, "***")
        return text

    def _access_token(self):
        return sdk_internals.cached_access_token(self.client)

    def auth_headers(self):
        """The ``Authorization`` header of the SDK client (a fresh access token for personal tokens)."""
        with self._lock:
            headers = sdk_internals.request_headers(self.client)
        return {key: value for key, value in headers.items() if key.lower() == "authorization"}

    def same_origin(self, url):
        """True when ``url`` points at this Label Studio server (only then is the key sent along)."""
        ours, theirs = urllib.parse.urlsplit(self.url), urllib.parse.urlsplit(url)
        return (ours.scheme, ours.netloc.lower()) == (theirs.scheme, theirs.netloc.lower())

    def remote_images(self):
        """A picklable fetcher of this server's task images for other processes: a :class:`._remote.RemoteImages`.

        It carries the API key (Ray workers need it to fetch uploaded and
        local files), sends it to this server only, and never shows it.
        """
        from ._remote import RemoteImages

        timeout = self.http.timeout
        return RemoteImages(self.url, self._key, self.token_kind, retries=self.retries, backoff=self.backoff,
                            timeout=timeout.read or 60.0, connect_timeout=timeout.connect or 5.0)

    def close(self):
        """Close the HTTP connections (of this object and of the SDK client)."""
        self.http.close()
        if self._sdk_http is not None:
            self._sdk_http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _token_kind(api_key):
    parts = api_key.split(".")
    if len(parts) != 3:
        return "legacy"
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        return "legacy"
    return "personal" if isinstance(header, dict) and "alg" in header else "legacy"


def connect(url=None, api_key=None, *, timeout=60.0, connect_timeout=5.0, retries=4, backoff=0.5):
    """Connect to a Label Studio server and check the API key.

    Parameters
    ----------
    url : str, optional
        Server URL, e.g. ``http://localhost:8080``; default ``LABEL_STUDIO_URL``.
    api_key : str, optional
        A personal access token or a legacy token; default ``LABEL_STUDIO_API_KEY``.
    timeout : float, default=60
        Seconds allowed for one request.
    connect_timeout : float, default=5
        Seconds allowed for opening a connection (an unreachable server fails
        within this time, the check is not retried).
    retries : int, default=4
        How often a transient failure (connection error, HTTP 429 or 5xx) is retried.
    backoff : float, default=0.5
        First wait before a retry, in seconds; it doubles with every retry.

    Returns
    -------
    Connection

    Raises
    ------
    InputError
        No URL or key, a malformed URL, or a key that the server refuses (HTTP 401/403).
    ActiveFTError
        The server cannot be reached or is not a Label Studio server.
    """
    url = (url or os.environ.get("LABEL_STUDIO_URL") or "").strip()
    api_key = (api_key or os.environ.get("LABEL_STUDIO_API_KEY") or "").strip()
    if not url:
        raise InputError("no Label Studio URL given; pass --url (e.g. http://localhost:8080) or set LABEL_STUDIO_URL")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InputError(f"Label Studio URL {url!r} must start with http:// or https://, "
                         f"e.g. http://localhost:8080")
    if not parts.netloc:
        raise InputError(f"Label Studio URL {url!r} names no host; give the server's address, e.g. "
                         f"http://localhost:8080")
    url = url.rstrip("/")
    if not api_key:
        raise InputError(f"no Label Studio API key given; {TOKEN_HELP}")
    if any(ch.isspace() for ch in api_key):
        raise InputError(f"the Label Studio API key contains spaces; {TOKEN_HELP}")
    if not 0 <= int(retries) <= 20:
        raise InputError(f"retries must lie in 0..20, got {retries}")

    import httpx
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    kind = _token_kind(api_key)
    limits = httpx.Timeout(timeout, connect=connect_timeout)
    sdk_http = httpx.Client(timeout=limits, follow_redirects=True)
    http = httpx.Client(timeout=limits, follow_redirects=False)
    try:
        client = LabelStudio(base_url=url, api_key=api_key, httpx_client=sdk_http, timeout=timeout, max_retries=0)
    except ApiError as exc:  # an expired personal access token is refused before any request
        sdk_http.close()
        http.close()
        raise InputError(f"Label Studio API key refused: {error_detail(exc.body)}; {TOKEN_HELP}") from None
    conn = Connection(url, api_key, client, http, kind, retries, backoff, sdk_http=sdk_http)
    try:
        user = call_sdk(conn, "check the API key", conn.client.users.whoami, retry=False)
    except BaseException:
        conn.close()
        raise
    conn.user = getattr(user, "email", None) or getattr(user, "username", None)
    return conn
