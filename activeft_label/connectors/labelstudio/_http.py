"""HTTP helpers of the Label Studio connector: retries, error messages, raw requests, progress bars.

Shared by the connector's modules; the connection itself (and the API key) lives in :mod:`.client`.
"""

import json
import re
import time

from ...errors import ActiveFTError, InputError

#: How to get and pass an API key; ends the messages about a missing or refused key.
TOKEN_HELP = ("use a personal access token (Label Studio: Account & Settings > Personal Access Token, the "
              "default in new organisations) or a legacy token (Account & Settings > Legacy Token, where the "
              "organisation allows legacy tokens); pass it with --api-key or LABEL_STUDIO_API_KEY")


def error_detail(body):
    """A short text of an error answer's body (its ``detail``, the page title of an HTML page, ...)."""
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


class ServerTrouble(ActiveFTError):
    """A failure worth trying again later: the server could not be reached, or answered HTTP 429 or 5xx."""


def http_error(conn, what, status, body, not_found=None):
    """The ActiveFTError/InputError for an HTTP error status."""
    detail = conn.scrub(error_detail(body))
    if status == 401:
        if "legacy token" in detail.lower():
            return InputError(f"Label Studio at {conn.url} does not accept legacy tokens ({detail}); use a personal "
                              f"access token (Account & Settings > Personal Access Token), or allow legacy tokens "
                              f"in the organisation's API token settings")
        return InputError(f"Label Studio at {conn.url} refused the API key (HTTP 401: {detail}); {TOKEN_HELP}")
    if status == 403:
        return InputError(f"Label Studio refused to {what}: the API key's user lacks the permission (HTTP 403: "
                          f"{detail})")
    if status == 404 and not_found:
        return InputError(not_found)
    if status == 404:
        return ActiveFTError(f"could not {what}: {conn.url} answered HTTP 404 ({detail}); is it a Label Studio "
                             f"server (version 1.13 or later)?")
    if 400 <= status < 500 and status != 429:
        return InputError(f"Label Studio refused to {what} (HTTP {status}: {detail})")
    return ServerTrouble(f"Label Studio failed to {what} (HTTP {status}: {detail}); it may be overloaded or "
                         f"failing, see the server's log; running the command again resumes the work")


def transport_error(conn, what, exc):
    """The ActiveFTError for a connection failure (unreachable server, timeout, lost connection)."""
    import httpx

    reason = conn.scrub(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        reason = f"timed out ({type(exc).__name__})"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ServerTrouble(f"cannot reach Label Studio at {conn.url} ({reason}); start the server or fix "
                             f"--url / LABEL_STUDIO_URL")
    return ServerTrouble(f"lost the connection to Label Studio at {conn.url} while trying to {what} ({reason}); "
                         f"running the command again resumes the work")


def is_transient_status(status):
    """Whether an HTTP status is worth retrying (429 or 5xx)."""
    return status == 429 or status >= 500


def sleep_before_retry(conn, attempt):
    """Wait ``backoff · 2^attempt`` seconds."""
    time.sleep(conn.backoff * (2 ** attempt))


def call_sdk(conn, what, fn, *args, retry=True, not_found=None, **kwargs):
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
            if is_transient_status(status) and not last:
                sleep_before_retry(conn, attempt)
                continue
            raise http_error(conn, what, status, exc.body, not_found) from None
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TransportError) and not last:
                sleep_before_retry(conn, attempt)
                continue
            raise transport_error(conn, what, exc) from None
        except (ValueError, TypeError) as exc:  # a response the SDK could not parse
            raise ActiveFTError(f"unexpected answer from {conn.url} when trying to {what}: "
                                f"{conn.scrub(exc)[:300]}; is it a Label Studio server?") from None
    raise AssertionError("unreachable")


def request_json(conn, method, path, what, *, retry=True, not_found=None, **kwargs):
    """A raw authenticated request to the Label Studio API; returns the decoded JSON answer (None when empty)."""
    import httpx

    attempts = conn.retries + 1 if retry else 1
    refused_once = False
    attempt = -1
    while attempt < attempts - 1:
        attempt += 1
        last = attempt == attempts - 1
        try:
            response = conn.http.request(method, conn.url + path, headers=authorization_headers(conn, what), **kwargs)
        except httpx.HTTPError as exc:
            if not last:
                _rewind_files(kwargs.get("files"))
                sleep_before_retry(conn, attempt)
                continue
            raise transport_error(conn, what, exc) from None
        if response.status_code >= 500 and "DATA_UPLOAD_MAX_NUMBER_FILES" in response.text:
            raise TooManyFiles()
        if is_transient_status(response.status_code) and not last:
            _rewind_files(kwargs.get("files"))
            sleep_before_retry(conn, attempt)
            continue
        if response.status_code == 401 and conn.token_kind == "personal" and not refused_once:
            # An access token that expired on its way (the SDK renews it only once it has expired): once more.
            refused_once = True
            attempt -= 1
            _rewind_files(kwargs.get("files"))
            time.sleep(1.0)
            continue
        if response.status_code >= 400:
            raise http_error(conn, what, response.status_code, _json_or_text(response), not_found)
        if not response.content:          # e.g. 204 No Content after a DELETE
            return None
        try:
            return response.json()
        except ValueError:
            raise ActiveFTError(f"unexpected answer from {conn.url} when trying to {what}: not JSON") from None
    raise AssertionError("unreachable")


class TooManyFiles(Exception):
    """The server refused a request for having too many files."""


def authorization_headers(conn, what):
    """``conn.auth_headers()``, a failure (e.g. a refused token refresh) turned into an error for ``what``."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        return conn.auth_headers()
    except ApiError as exc:
        raise http_error(conn, what, exc.status_code or 0, exc.body) from None
    except httpx.HTTPError as exc:
        raise transport_error(conn, what, exc) from None


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


def as_dict(obj):
    """An SDK model (pydantic v1 or v2) or a dict, as a dict."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return obj.dict()


class CallbackBar:
    """A progress bar that tells a callable ``(fraction, message)`` instead of drawing (the App's progress)."""

    def __init__(self, report, total, description, unit):
        self.report, self.total, self.description, self.unit = report, total, description, unit
        self.done = 0

    def update(self, count=1):
        self.done += count
        self.report(min(1.0, self.done / self.total), f"{self.description}: {self.done} of {self.total} {self.unit}")

    def close(self):
        pass


def progress_bar(enabled, total, description, unit):
    """A tqdm bar on stderr, a :class:`CallbackBar` when ``enabled`` is a callable, or None (disabled, or nothing
    to do)."""
    if not enabled or total == 0:
        return None
    if callable(enabled):
        return CallbackBar(enabled, total, description, unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True)
