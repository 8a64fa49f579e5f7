"""The connection to a Label Studio server: authentication, retries, error messages, progress bars."""

import base64
import binascii
import json
import os
import re
import threading
import time
import urllib.parse

from ...errors import ActiveFTError, InputError

#: Files per upload request: Label Studio's default cap (DATA_UPLOAD_MAX_NUMBER_FILES); halved while a server
#: configured lower refuses.
UPLOAD_BATCH = 100
_TOKEN_HELP = ("use a personal access token (Label Studio: Account & Settings > Personal Access Token, the "
               "default in new organisations) or a legacy token (Account & Settings > Legacy Token, where the "
               "organisation allows legacy tokens); pass it with --api-key or LABEL_STUDIO_API_KEY")


class Connection:
    """An authenticated connection to one Label Studio server.

    Create it with :func:`connect`.  Attributes: ``url`` (no trailing
    slash), ``client`` (the ``label_studio_sdk.LabelStudio`` client),
    ``token_kind`` (``"personal"`` or ``"legacy"``), ``user`` (the email or
    username of the key's user), ``retries`` and ``backoff`` (transient
    failures are retried ``retries`` times, waiting ``backoff · 2^k`` s).
    """

    def __init__(self, url, api_key, client, http, token_kind, retries, backoff):
        self.url = url
        self.client = client
        self.http = http
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
        tokens = getattr(getattr(self.client, "_client_wrapper", None), "_tokens_client", None)
        return getattr(tokens, "_access_token", None)

    def auth_headers(self):
        """The ``Authorization`` header of the SDK client (a fresh access token for personal tokens)."""
        with self._lock:
            headers = self.client._client_wrapper.get_headers()
        return {key: value for key, value in headers.items() if key.lower() == "authorization"}

    def same_origin(self, url):
        """True when ``url`` points at this Label Studio server (only then is the key sent along)."""
        ours, theirs = urllib.parse.urlsplit(self.url), urllib.parse.urlsplit(url)
        return (ours.scheme, ours.netloc.lower()) == (theirs.scheme, theirs.netloc.lower())

    def close(self):
        """Close the HTTP connections (of this object and of the SDK client)."""
        self.http.close()
        sdk_http = getattr(getattr(getattr(self.client, "_client_wrapper", None), "httpx_client", None),
                           "httpx_client", None)
        if sdk_http is not None:
            sdk_http.close()

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
        raise InputError(f"no Label Studio API key given; {_TOKEN_HELP}")
    if any(ch.isspace() for ch in api_key):
        raise InputError(f"the Label Studio API key contains spaces; {_TOKEN_HELP}")
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
        raise InputError(f"Label Studio API key refused: {_detail(exc.body)}; {_TOKEN_HELP}") from None
    conn = Connection(url, api_key, client, http, kind, retries, backoff)
    try:
        user = _api(conn, "check the API key", conn.client.users.whoami, retry=False)
    except BaseException:
        conn.close()
        raise
    conn.user = getattr(user, "email", None) or getattr(user, "username", None)
    return conn


def _detail(body):
    if isinstance(body, dict):
        for key in ("detail", "validation_errors", "message", "error"):
            if body.get(key):
                value = body[key]
                return value if isinstance(value, str) else json.dumps(value)[:400]
        return json.dumps(body)[:400]
    if isinstance(body, (list, tuple)):
        return json.dumps(body)[:400]
    text = re.sub(r"\s+", " ", str(body or "")).strip()
    if text.lstrip().startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        return title.group(1).strip()[:200] if title else "an HTML page"
    return text[:400] or "no details"


def _http_error(conn, what, status, body, not_found=None):
    """The ActiveFTError/InputError for an HTTP error status."""
    detail = conn.scrub(_detail(body))
    if status == 401:
        if "legacy token" in detail.lower():
            return InputError(f"Label Studio at {conn.url} does not accept legacy tokens ({detail}); use a personal "
                              f"access token (Account & Settings > Personal Access Token), or allow legacy tokens "
                              f"in the organisation's API token settings")
        return InputError(f"Label Studio at {conn.url} refused the API key (HTTP 401: {detail}); {_TOKEN_HELP}")
    if status == 403:
        return InputError(f"Label Studio refused to {what}: the API key's user lacks the permission (HTTP 403: "
                          f"{detail})")
    if status == 404 and not_found:
        return InputError(not_found)
    if status == 404:
        return ActiveFTError(f"could not {what}: {conn.url} answered HTTP 404 ({detail}); is it a Label Studio "
                             f"server (version 1.13 or later)?")
    if 400 <= status < 500:
        return InputError(f"Label Studio refused to {what} (HTTP {status}: {detail})")
    return ActiveFTError(f"Label Studio failed to {what} (HTTP {status}: {detail}); it may be overloaded or "
                         f"failing, see the server's log; running the command again resumes the work")


def _transport_error(conn, what, exc):
    import httpx

    reason = conn.scrub(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        reason = f"timed out ({type(exc).__name__})"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ActiveFTError(f"cannot reach Label Studio at {conn.url} ({reason}); start the server or fix "
                             f"--url / LABEL_STUDIO_URL")
    return ActiveFTError(f"lost the connection to Label Studio at {conn.url} while trying to {what} ({reason}); "
                         f"running the command again resumes the work")


def _is_transient_status(status):
    return status == 429 or status >= 500


def _sleep_before_retry(conn, attempt):
    time.sleep(conn.backoff * (2 ** attempt))


def _api(conn, what, fn, *args, retry=True, not_found=None, **kwargs):
    """Call an SDK method; retry transient failures; turn failures into ActiveFTError with a clear message."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    attempts = conn.retries + 1 if retry else 1
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            status = exc.status_code or 0
            if _is_transient_status(status) and not last:
                _sleep_before_retry(conn, attempt)
                continue
            raise _http_error(conn, what, status, exc.body, not_found) from None
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TransportError) and not last:
                _sleep_before_retry(conn, attempt)
                continue
            raise _transport_error(conn, what, exc) from None
        except (ValueError, TypeError) as exc:  # a response the SDK could not parse
            raise ActiveFTError(f"unexpected answer from {conn.url} when trying to {what}: "
                                f"{conn.scrub(exc)[:300]}; is it a Label Studio server?") from None
    raise AssertionError("unreachable")


def _request(conn, method, path, what, *, retry=True, not_found=None, **kwargs):
    """A raw authenticated request to the Label Studio API; returns the decoded JSON answer."""
    import httpx

    attempts = conn.retries + 1 if retry else 1
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            response = conn.http.request(method, conn.url + path, headers=_auth(conn, what), **kwargs)
        except httpx.HTTPError as exc:
            if not last:
                _rewind_files(kwargs.get("files"))
                _sleep_before_retry(conn, attempt)
                continue
            raise _transport_error(conn, what, exc) from None
        if response.status_code >= 500 and "DATA_UPLOAD_MAX_NUMBER_FILES" in response.text:
            raise _TooManyFiles()
        if _is_transient_status(response.status_code) and not last:
            _rewind_files(kwargs.get("files"))
            _sleep_before_retry(conn, attempt)
            continue
        if response.status_code >= 400:
            raise _http_error(conn, what, response.status_code, _json_or_text(response), not_found)
        try:
            return response.json()
        except ValueError:
            raise ActiveFTError(f"unexpected answer from {conn.url} when trying to {what}: not JSON") from None
    raise AssertionError("unreachable")


class _TooManyFiles(Exception):
    """The server refused a request for having too many files."""


def _auth(conn, what):
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        return conn.auth_headers()
    except ApiError as exc:
        raise _http_error(conn, what, exc.status_code or 0, exc.body) from None
    except httpx.HTTPError as exc:
        raise _transport_error(conn, what, exc) from None


def _rewind_files(files):
    for _, spec in files or ():
        handle = spec[1] if isinstance(spec, tuple) else spec
        if hasattr(handle, "seek"):
            handle.seek(0)


def _json_or_text(response):
    try:
        return response.json()
    except ValueError:
        return response.text


def _as_dict(obj):
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return obj.dict()


def _bar(enabled, total, description, unit):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True)
