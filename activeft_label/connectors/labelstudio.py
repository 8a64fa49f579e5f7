"""Label Studio connector: pull a project's images, push a selection as a prioritized annotation queue.

The connector speaks to a Label Studio server through ``label-studio-sdk`` 2.x
(``label_studio_sdk.LabelStudio``), plus plain authenticated HTTP for the
image bytes and the file uploads.  It knows nothing of FiftyOne; it uses the
selection library and the embeddings module, which know nothing of Label
Studio.

Connecting
----------
:func:`connect` takes the server URL and an API key (or ``LABEL_STUDIO_URL``
and ``LABEL_STUDIO_API_KEY``).  Both kinds of key work: personal access tokens
(JWT refresh tokens, the default in new organisations; the SDK exchanges them
for short-lived access tokens) and legacy tokens.  The key is never printed
or logged, and is scrubbed from every error message.

Stable ids, ranks and the priority view
---------------------------------------
Every task this module writes carries, in its data:

``activeft_id``
    The stable id of the source item: for a folder source the path relative
    to the folder (see :func:`activeft_label.pool.load_pool`); for a task
    pulled from a project, its own ``activeft_id`` if it has one, else
    ``"labelstudio:<project>/<task>"``.  Pushes look tasks up by this id, so
    pushing again updates tasks instead of duplicating them.
``activeft_rank``
    Annotation priority, 1 = annotate first.  Tasks of an earlier selection
    that are not in the new one lose this field.

A Data Manager view titled ``"ActiveFT priority"`` (created or replaced on
every push) shows only the tasks that have a rank, ordered by rank, so
"Label tasks as displayed" serves them in priority order.  Optionally each
selected task also gets a prediction with an empty result, ``score =
rank / (B + 1)`` and ``model_version = "activeft"``, and the project's model
version is set to it, so a project on "Uncertainty sampling" (lowest score
first) serves them first too.

Robustness
----------
Imports are batched (``batch_size`` tasks a request; uploads at most
:data:`UPLOAD_BATCH` files a request, fewer where the server caps lower).
Transient failures (connection errors, HTTP 429 and 5xx) are retried with
exponential backoff; a task import whose answer was lost is retried only for
the tasks that the server does not hold yet.  Every step is idempotent, so a
push that failed half-way is completed by running it again.
"""

import base64
import binascii
import concurrent.futures
import hashlib
import json
import mimetypes
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

import numpy as np

from ..errors import ActiveFTError, InputError

__all__ = [
    "ID_FIELD", "RANK_FIELD", "VIEW_TITLE", "MODEL_VERSION", "Connection", "LabelStudioPool", "PushReport",
    "connect", "get_project", "find_project", "pull_tasks", "image_field", "embed_tasks", "pull_project",
    "push_view", "push_project", "ensure_priority_view", "label_config", "create_project", "upload_images",
    "prioritize", "setup_project", "parse_labels", "project_url", "stable_id", "open_project", "push_images",
    "has_label_config", "check_images_option", "check_title", "TITLE_LENGTH",
    "label_controls", "TaskAnnotation", "export_tasks", "read_annotations", "SUPPORTED_CONTROLS",
]

#: Task data field holding the source item's stable id.
ID_FIELD = "activeft_id"
#: Task data field holding the annotation priority (1 = first).
RANK_FIELD = "activeft_rank"
#: Title of the Data Manager view that lists the selection in rank order.
VIEW_TITLE = "ActiveFT priority"
#: ``model_version`` of the priority predictions.
MODEL_VERSION = "activeft"
#: Data field of the image in projects that :func:`setup_project` creates.
IMAGE_FIELD = "image"

#: Tasks per import request.
IMPORT_BATCH = 500
#: Files per upload request: Label Studio's default cap (DATA_UPLOAD_MAX_NUMBER_FILES); halved while a server
#: configured lower refuses.
UPLOAD_BATCH = 100
#: Tasks per page when listing a project.
PAGE_SIZE = 1000

_CLOUD_SCHEMES = ("s3", "gs", "gcs", "azure-blob", "azure-spi", "azure", "blob")
_TOKEN_HELP = ("use a personal access token (Label Studio: Account & Settings > Personal Access Token, the "
               "default in new organisations) or a legacy token (Account & Settings > Legacy Token, where the "
               "organisation allows legacy tokens); pass it with --api-key or LABEL_STUDIO_API_KEY")


# --------------------------------------------------------------------------------------------------------------
# Connection


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


# --------------------------------------------------------------------------------------------------------------
# Calling the API: retries and errors


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


# --------------------------------------------------------------------------------------------------------------
# Projects


def project_url(conn, project_id, view_id=None):
    """Browser URL of a project (of its Data Manager tab ``view_id`` when given)."""
    base = f"{conn.url}/projects/{int(project_id)}"
    return f"{base}/data?tab={int(view_id)}" if view_id is not None else base


def get_project(conn, project_id):
    """The project as a dict (``id``, ``title``, ``label_config``, ``sampling``, ``model_version``, ...)."""
    try:
        project_id = int(project_id)
    except (TypeError, ValueError):
        raise InputError(f"project id must be a whole number, got {project_id!r}") from None
    if project_id <= 0:
        raise InputError(f"project id must be a whole number above 0, got {project_id}")
    not_found = (f"Label Studio at {conn.url} has no project {project_id} that the API key's user can see; "
                 f"the id is the number in the project's URL ({conn.url}/projects/ID)")
    project = _api(conn, f"read project {project_id}", conn.client.projects.get, id=project_id, not_found=not_found)
    return _as_dict(project)


def find_project(conn, title):
    """The projects titled exactly ``title`` (a list of dicts, oldest first)."""
    pager = _api(conn, "list projects", conn.client.projects.list, title=title, page_size=100)
    found = []
    for project in _api(conn, "list projects", list, pager):
        project = _as_dict(project)
        if project.get("title") == title:
            found.append(project)
    return sorted(found, key=lambda p: p["id"])


def parse_labels(labels):
    """Split ``"a,b,c"`` (or a list) into label names; InputError on none, empty or duplicate names."""
    if isinstance(labels, str):
        labels = labels.split(",")
    names = [str(name).strip() for name in labels or ()]
    if not names or any(not name for name in names):
        raise InputError("--labels must list label names separated by commas, like 'cat,dog,bird' "
                         "(no empty names)")
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"label {name!r} is listed twice in --labels")
        seen.add(name)
    return names


def label_config(labels, task="classification"):
    """Label Studio labeling config for images: Choices (classification) or RectangleLabels (detection)."""
    names = parse_labels(labels)
    if task == "classification":
        control, item, extra = "Choices", "Choice", ' choice="single" showInline="true"'
    elif task == "detection":
        control, item, extra = "RectangleLabels", "Label", ""
    else:
        raise InputError(f"task must be 'classification' or 'detection', got {task!r}")
    items = "\n".join(f"    <{item} value={quoteattr(name)}/>" for name in names)
    return (f'<View>\n  <Image name="{IMAGE_FIELD}" value="${IMAGE_FIELD}"/>\n'
            f'  <{control} name="label" toName="{IMAGE_FIELD}"{extra}>\n{items}\n  </{control}>\n</View>\n')


#: Label Studio's bounds on a project title (PROJECT_TITLE_MIN_LEN / _MAX_LEN of its settings).
TITLE_LENGTH = (3, 50)


def check_title(title):
    """Raise :class:`InputError` for a project title Label Studio would refuse (only after the embedding)."""
    low, high = TITLE_LENGTH
    if not isinstance(title, str) or len(title.strip()) < low:
        raise InputError(f"project title {title!r} is too short; Label Studio needs at least {low} characters "
                         f"(--title)")
    if len(title) > high:
        raise InputError(f"project title {title[:20]!r}... has {len(title)} characters; Label Studio takes at most "
                         f"{high} (--title)")


def create_project(conn, title, config, description=""):
    """Create a project on "Sequential sampling"; returns it as a dict."""
    check_title(title)
    project = _api(conn, f"create project {title!r}", conn.client.projects.create, title=title, label_config=config,
                   description=description, sampling="Sequential sampling", retry=False)
    project = _as_dict(project)
    if project.get("sampling") != "Sequential sampling":
        _api(conn, "set sequential sampling", conn.client.projects.update, id=project["id"],
             sampling="Sequential sampling")
    return project


# --------------------------------------------------------------------------------------------------------------
# Pulling tasks and their images


def pull_tasks(conn, project_id, view=None, *, resolve_uri=False, page_size=PAGE_SIZE):
    """All tasks of a project (of one Data Manager view when ``view`` is given), in the view's order.

    Returns a list of dicts with ``id``, ``data`` (as stored when
    ``resolve_uri`` is False; cloud storage URIs resolved to fetchable URLs
    when True) and ``annotations`` (number of annotations).
    """
    what = f"list the tasks of project {project_id}"
    # Only the fields used here: serialising the full task is several times slower on large projects.
    kwargs = {"project": int(project_id), "fields": "task_only", "include": "id,data,total_annotations",
              "resolve_uri": resolve_uri, "page_size": page_size}
    if view is not None:
        views = {int(_as_dict(v)["id"]) for v in _api(conn, f"list the views of project {project_id}",
                                                         conn.client.views.list, project=int(project_id))}
        if int(view) not in views:
            raise InputError(f"project {project_id} has no Data Manager view {view}; the view id is the 'tab' "
                             f"number in the Data Manager URL ({project_url(conn, project_id)}/data?tab=ID)")
        kwargs["view"] = int(view)

    def fetch():
        tasks = []
        for task in conn.client.tasks.list(**kwargs):
            task = _as_dict(task) if not isinstance(task, dict) else task
            tasks.append({"id": int(task["id"]), "data": dict(task.get("data") or {}),
                          "annotations": int(task.get("total_annotations") or 0)})
        return tasks

    return _api(conn, what, fetch)


def image_field(config, tasks=(), field=None):
    """Name of the task data field that holds the image.

    ``field`` when given; else the ``value="$name"`` of the first ``<Image>``
    tag of the label config; else ``"image"`` when tasks have it.
    """
    if field:
        return field.lstrip("$")
    try:
        root = ET.fromstring(config or "<View/>")
    except ET.ParseError:
        root = ET.fromstring("<View/>")
    for element in root.iter():
        if element.tag == "Image" and str(element.get("value", "")).startswith("$"):
            return element.get("value")[1:]
    if any(IMAGE_FIELD in task["data"] for task in tasks):
        return IMAGE_FIELD
    raise InputError("the project's label config has no <Image> tag and its tasks have no 'image' field; "
                     "pass --image-field NAME (the task data field that holds the image URL)")


def _ref_kind(ref):
    if not isinstance(ref, str) or not ref.strip():
        return None
    ref = ref.strip()
    if ref.startswith("data:"):
        return "inline"
    if ref.startswith("/"):
        return "server"
    scheme = urllib.parse.urlsplit(ref).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme in _CLOUD_SCHEMES:
        return "storage"
    return "unknown"


class _Broken(Exception):
    """An image reference that could not be fetched; the message is the reason."""


def _fetch(conn, url, max_redirects=5):
    """GET ``url``: the key only goes to the Label Studio server, redirects are followed by hand."""
    import httpx

    for _ in range(max_redirects + 1):
        ours = conn.same_origin(url)
        headers = _auth(conn, "fetch an image") if ours else {}
        retries = conn.retries if ours else min(conn.retries, 1)  # other hosts: one retry (a dead host costs little)
        for attempt in range(retries + 1):
            try:
                response = conn.http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                if attempt < retries and isinstance(exc, httpx.TransportError):
                    _sleep_before_retry(conn, attempt)
                    continue
                raise _Broken(conn.scrub(f"{type(exc).__name__}: {exc}")[:200]) from None
            if _is_transient_status(response.status_code) and attempt < retries:
                _sleep_before_retry(conn, attempt)
                continue
            break
        if response.is_redirect and response.headers.get("location"):
            url = urllib.parse.urljoin(url, response.headers["location"])
            continue
        if response.status_code == 401 and conn.same_origin(url):
            raise _Broken("HTTP 401 from Label Studio (the key's user may not read this file)")
        if response.status_code >= 400:
            raise _Broken(f"HTTP {response.status_code}")
        if not response.content:
            raise _Broken("empty answer")
        return response.content, response.headers.get("content-type", "")
    raise _Broken("too many redirects")


def _decode_data_uri(ref):
    header, _, payload = ref.partition(",")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=False), header[5:].split(";")[0]
        return urllib.parse.unquote_to_bytes(payload), header[5:].split(";")[0]
    except (ValueError, binascii.Error):
        raise _Broken("malformed data: URI") from None


@dataclass
class LabelStudioPool:
    """Features of a project's tasks, ready for selection.

    Attributes
    ----------
    project : dict
        The project (``id``, ``title``, ``label_config``, ...).
    tasks : list of dict
        Every pulled task (``id``, ``data``, ``annotations``).
    image_field : str
        Task data field of the image.
    features : np.ndarray (N, C)
        One row per task whose image could be read and embedded.
    rows : np.ndarray (N,)
        Position in ``tasks`` of each feature row.
    ids : list of str
        Stable id of each feature row (see :data:`ID_FIELD`).
    refs : list of str
        Image reference (as stored in the task) of each feature row.
    labeled : np.ndarray
        Feature rows of tasks that already have annotations.
    skipped : list of (int, str)
        ``(task id, reason)`` of the tasks left out (no image, broken reference, unreadable image).
    """

    project: dict
    tasks: list
    image_field: str
    features: np.ndarray
    rows: np.ndarray
    ids: list
    refs: list
    labeled: np.ndarray
    skipped: list = field(default_factory=list)

    def __len__(self):
        return int(self.features.shape[0])

    def task_ids(self, feature_rows):
        """Task ids of the given feature rows."""
        return [int(self.tasks[int(self.rows[r])]["id"]) for r in feature_rows]


def stable_id(project_id, task):
    """The stable id of a pulled task: its ``activeft_id`` if any, else ``labelstudio:<project>/<task>``."""
    value = task["data"].get(ID_FIELD)
    return str(value) if value not in (None, "") else f"labelstudio:{int(project_id)}/{int(task['id'])}"


def embed_tasks(conn, project, tasks, field, *, model=None, pretrained=None, device="auto", batch_size=32,
                num_workers=None, cache_dir=None, download_workers=8, progress=True):
    """Fetch each task's image, embed it, and return a :class:`LabelStudioPool`.

    Image references may be uploaded files (``/data/upload/...``), local
    files (``/data/local-files/?d=...``), cloud storage URIs (resolved by
    Label Studio to presigned or proxied URLs), plain http(s) URLs, or
    ``data:`` URIs.  The API key is only sent to the Label Studio server.
    Images are kept under ``cache_dir/labelstudio`` (one file per
    reference, fetched once), so the embeddings cache works across runs;
    with ``cache_dir=False`` they go to a temporary folder.  Broken
    references and unreadable images are skipped and listed.
    """
    from ..embeddings import DEFAULT_MODEL, default_cache_dir, embed_images

    skipped, wanted = [], []
    for position, task in enumerate(tasks):
        ref = task["data"].get(field)
        kind = _ref_kind(ref)
        if kind is None:
            skipped.append((task["id"], f"no image in data field {field!r}"))
        elif kind == "unknown":
            skipped.append((task["id"], f"{str(ref)[:80]!r} is not a URL Label Studio can serve"))
        else:
            wanted.append((position, ref.strip(), kind))
    if not wanted:
        raise InputError(f"none of the {len(tasks)} tasks of project {project['id']} has an image URL in data "
                         f"field {field!r}; pass --image-field NAME if the images are in another field")

    resolved = {}
    if any(kind == "storage" for _, _, kind in wanted):
        # Cloud URIs are fetched through the URLs Label Studio resolves them to (presigned or proxied).
        for task in pull_tasks(conn, project["id"], resolve_uri=True):
            resolved[task["id"]] = task["data"].get(field)

    temporary = cache_dir is False
    if temporary:
        folder = tempfile.mkdtemp(prefix="activeft-labelstudio-")
    else:
        host = hashlib.sha1(conn.url.encode()).hexdigest()[:12]
        folder = os.path.join(cache_dir or default_cache_dir(), "labelstudio", host)
        os.makedirs(folder, exist_ok=True)
    try:
        files = _download_all(conn, tasks, wanted, resolved, folder, download_workers, progress)
        fetched = [(pos, path) for pos, path in files.items() if not isinstance(path, _Broken)]
        for pos, error in files.items():
            if isinstance(error, _Broken):
                skipped.append((tasks[pos]["id"], f"{_short_ref(tasks[pos]['data'].get(field))}: {error}"))
        fetched.sort()
        features = np.zeros((0, 0), dtype=np.float32)
        kept_positions = []
        if fetched:
            embedded = embed_images([path for _, path in fetched], model=model or DEFAULT_MODEL, pretrained=pretrained,
                                    batch_size=batch_size, num_workers=num_workers, device=device,
                                    cache_dir=cache_dir, progress=progress)
            features = embedded.features
            kept_positions = [fetched[i][0] for i in embedded.kept]
            by_path = {path: pos for pos, path in fetched}
            for path, reason in embedded.skipped:
                pos = by_path.get(path)
                if pos is not None:
                    skipped.append((tasks[pos]["id"], f"{_short_ref(tasks[pos]['data'].get(field))}: {reason}"))
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    if not kept_positions:
        first = skipped[0] if skipped else (None, "")
        raise InputError(f"none of the images of the {len(tasks)} tasks of project {project['id']} could be read "
                         f"(first problem: task {first[0]}: {first[1]})")
    skipped.sort(key=lambda item: item[0])
    rows = np.asarray(kept_positions, dtype=np.int64)
    labeled = np.asarray([r for r, pos in enumerate(kept_positions) if tasks[pos]["annotations"] > 0], dtype=np.int64)
    return LabelStudioPool(project=project, tasks=list(tasks), image_field=field, features=features, rows=rows,
                           ids=[stable_id(project["id"], tasks[pos]) for pos in kept_positions],
                           refs=[tasks[pos]["data"][field] for pos in kept_positions], labeled=labeled,
                           skipped=skipped)


def _short_ref(ref, limit=80):
    text = str(ref)
    if text.startswith("data:"):
        return text[:30] + "..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _download_all(conn, tasks, wanted, resolved, folder, workers, progress):
    """Fetch the images; returns {task position: local path or _Broken}."""

    def one(item):
        position, ref, kind = item
        path = os.path.join(folder, hashlib.sha1(ref.encode("utf-8")).hexdigest() + ".img")
        if os.path.isfile(path):  # fetched by an earlier run (a file per reference)
            return position, path
        try:
            if kind == "inline":
                content, _ = _decode_data_uri(ref)
            else:
                url = ref
                if kind == "storage":
                    url = resolved.get(tasks[position]["id"]) or ""
                    if _ref_kind(url) not in ("server", "http"):
                        raise _Broken("Label Studio could not resolve this cloud storage URI; connect the storage "
                                      "to the project")
                if url.startswith("/"):
                    url = conn.url + url
                content, _ = _fetch(conn, url)
        except _Broken as exc:
            return position, exc
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
        return position, path

    results = {}
    bar = _bar(progress, len(wanted), "Fetching images", "img")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        for position, outcome in pool.map(one, wanted):
            results[position] = outcome
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return results


def _bar(enabled, total, description, unit):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True)


def pull_project(conn, project_id, *, view=None, field=None, **embed_options):
    """Read a project's tasks and embed their images: :func:`get_project` + :func:`pull_tasks` + :func:`embed_tasks`.

    Returns a :class:`LabelStudioPool`; raises InputError for an unknown
    project or view, a project without tasks, or tasks without images.
    """
    project = get_project(conn, project_id)
    tasks = pull_tasks(conn, project["id"], view)
    if not tasks:
        where = f"view {view} of project {project['id']}" if view is not None else f"project {project['id']}"
        raise InputError(f"{where} has no tasks; import some first")
    name = image_field(project.get("label_config"), tasks, field)
    return embed_tasks(conn, project, tasks, name, **embed_options)


# --------------------------------------------------------------------------------------------------------------
# Pushing


@dataclass
class PushReport:
    """What a push changed.

    ``project_id``, ``view_id`` (the "ActiveFT priority" view), ``created``
    (tasks imported), ``updated`` (tasks whose data changed), ``unchanged``,
    ``cleared`` (tasks of an earlier selection whose rank was removed),
    ``predictions`` (priority predictions written or changed), ``uploaded``
    (image files uploaded), ``url`` (the view in the browser),
    ``warnings``, ``images`` (how a setup brought the images in:
    ``"upload"`` or ``"local-files"``) and ``task_ids`` ({stable id: task
    id} of the pushed items, for :func:`push_project` and :func:`push_images`).
    """

    project_id: int
    view_id: int = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    predictions: int = 0
    uploaded: int = 0
    url: str = ""
    warnings: list = field(default_factory=list)
    images: str = ""
    task_ids: dict = field(default_factory=dict)


def _existing_by_id(conn, project_id):
    """Tasks of a project by their stable id, and every task by task id."""
    tasks = pull_tasks(conn, project_id)
    by_id = {}
    for task in tasks:
        value = task["data"].get(ID_FIELD)
        if value not in (None, "") and str(value) not in by_id:
            by_id[str(value)] = task
    return by_id, {task["id"]: task for task in tasks}


def _patch_many(conn, updates, what, progress, workers=4):
    """PATCH the data of many tasks: ``updates`` is a list of (task id, new data)."""
    if not updates:
        return

    def one(item):
        task_id, data = item
        _api(conn, f"update task {task_id}", conn.client.tasks.update, id=str(task_id), data=data)

    bar = _bar(progress, len(updates), what, "task")
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, updates):
            if bar:
                bar.update(1)
    if bar:
        bar.close()


def _plan(all_tasks, wanted, extra=None):
    """Data changes that give ``wanted`` ({task id: (rank, stable id)}) their rank and clear every other rank.

    ``extra`` ({task id: dict}) is merged into the data of wanted tasks first.
    Returns (updates as [(task id, new data)], number cleared, number of wanted tasks left unchanged).
    """
    updates, cleared, unchanged = [], 0, 0
    extra = extra or {}
    for task_id, task in sorted(all_tasks.items()):
        data = task["data"]
        if task_id in wanted:
            rank, sid = wanted[task_id]
            new = {**data, **extra.get(task_id, {})}
            new[RANK_FIELD] = int(rank)
            if new.get(ID_FIELD) in (None, ""):
                new[ID_FIELD] = sid
            if new != data:
                updates.append((task_id, new))
            else:
                unchanged += 1
        elif RANK_FIELD in data:
            updates.append((task_id, {key: value for key, value in data.items() if key != RANK_FIELD}))
            cleared += 1
    return updates, cleared, unchanged


def ensure_priority_view(conn, project_id, title=VIEW_TITLE):
    """Create or replace the Data Manager view that lists ranked tasks in rank order; returns its id."""
    column = f"tasks:data.{RANK_FIELD}"
    data = {
        "title": title,
        "ordering": [column],
        "filters": {"conjunction": "and", "items": [
            {"filter": f"filter:{column}", "operator": "greater", "type": "Number", "value": 0}]},
        "columnsDisplayType": {column: "Number"},
    }
    views = [_as_dict(v) for v in _api(conn, f"list the views of project {project_id}", conn.client.views.list,
                                       project=int(project_id))]
    ours = sorted((v for v in views if (v.get("data") or {}).get("title") == title), key=lambda v: v["id"])
    if ours:
        view_id = int(ours[0]["id"])
        _api(conn, f"update view {view_id}", conn.client.views.update, id=str(view_id), project=int(project_id),
             data=data)
        for extra in ours[1:]:
            _api(conn, f"delete view {extra['id']}", conn.client.views.delete, id=str(extra["id"]))
        return view_id
    view = _as_dict(_api(conn, f"create the {title!r} view", conn.client.views.create, project=int(project_id),
                         data=data))
    return int(view["id"])


def _sync_predictions(conn, project_id, ranks, model_version, progress):
    """Give each ranked task one prediction (score = rank/(B+1)) of ``model_version``; remove the others'."""
    total = len(ranks)
    wanted = {task_id: round(rank / (total + 1), 6) for task_id, rank in ranks.items()}
    existing = {}
    stale = []
    for prediction in _api(conn, f"list the predictions of project {project_id}", conn.client.predictions.list,
                           project=int(project_id)):
        prediction = _as_dict(prediction)
        if prediction.get("model_version") != model_version:
            continue
        task_id = int(prediction["task"])
        if task_id in wanted and task_id not in existing:
            existing[task_id] = prediction
        else:
            stale.append(prediction["id"])
    changed = 0
    create = [{"task": task_id, "result": [], "score": score, "model_version": model_version}
              for task_id, score in sorted(wanted.items(), key=lambda kv: kv[1]) if task_id not in existing]
    def send(pending):
        conn.client.projects.import_predictions(id=int(project_id), request=pending)

    def still_missing(pending):
        have = {int(_as_dict(p)["task"]) for p in _api(conn, "list predictions", conn.client.predictions.list,
                                                       project=int(project_id))
                if _as_dict(p).get("model_version") == model_version}
        return [p for p in pending if p["task"] not in have]

    for start in range(0, len(create), IMPORT_BATCH):
        _create_once(conn, f"import predictions into project {project_id}", send, still_missing,
                     create[start:start + IMPORT_BATCH])
    changed += len(create)
    rescore = [(p["id"], wanted[task_id]) for task_id, p in existing.items()
               if abs(float(p.get("score") or 0) - wanted[task_id]) > 1e-9]

    def update(item):
        _api(conn, "update a prediction", conn.client.predictions.update, id=int(item[0]), score=item[1],
             model_version=model_version)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(update, rescore))
        list(pool.map(lambda prediction_id: _delete_prediction(conn, prediction_id), stale))
    changed += len(rescore) + len(stale)
    project = get_project(conn, project_id)
    if project.get("model_version") != model_version:
        _api(conn, "set the project's model version", conn.client.projects.update, id=int(project_id),
             model_version=model_version)
    return changed


def _delete_prediction(conn, prediction_id):
    try:
        _api(conn, "delete a prediction", conn.client.predictions.delete, id=int(prediction_id),
             not_found="gone")
    except InputError as exc:
        if str(exc) != "gone":
            raise


def push_view(conn, project_id, ranking, *, stable_ids=None, predictions=False, model_version=MODEL_VERSION,
              progress=True):
    """Mark a selection in place: ranks in task data, the priority view, optional predictions.

    Parameters
    ----------
    conn : Connection
    project_id : int
    ranking : dict {task id: rank}
        The selected tasks of the project and their ranks (1 = first).
    stable_ids : dict {task id: str}, optional
        Written as ``activeft_id`` into tasks that have none yet.
    predictions : bool, default=False
        Also write priority predictions and set the project's model version
        (for "Uncertainty sampling").
    model_version : str, default="activeft"
    progress : bool, default=True

    Returns
    -------
    PushReport
    """
    project_id = int(project_id)
    stable_ids = stable_ids or {}
    _, all_tasks = _existing_by_id(conn, project_id)
    missing = sorted(set(ranking) - set(all_tasks))
    if missing:
        raise InputError(f"project {project_id} has no task(s) {missing[:5]}; pull the project again")
    wanted = {int(t): (int(r), stable_ids.get(t) or f"labelstudio:{project_id}/{int(t)}") for t, r in ranking.items()}
    updates, cleared, unchanged = _plan(all_tasks, wanted)
    report = PushReport(project_id=project_id, cleared=cleared, unchanged=unchanged,
                        updated=len(updates) - cleared)
    _patch_many(conn, updates, "Writing ranks", progress)
    if predictions:
        report.predictions = _sync_predictions(conn, project_id, {t: r for t, (r, _) in wanted.items()},
                                               model_version, progress)
    report.view_id = ensure_priority_view(conn, project_id)
    report.url = project_url(conn, project_id, report.view_id)
    return report


def push_project(conn, project_id, items, *, batch_size=IMPORT_BATCH, predictions=False,
                 model_version=MODEL_VERSION, progress=True, _listing=None):
    """Put ranked items into a project, idempotently, imported in rank order.

    Parameters
    ----------
    conn : Connection
    project_id : int
    items : list of dict
        ``{"id": stable id, "rank": int, "data": {...}}``; ``data`` must hold
        what the label config needs (e.g. the image URL).  A task that
        already carries the item's ``activeft_id`` is updated (its other data
        kept), never duplicated; missing ones are imported in rank order in
        batches of ``batch_size``.  Tasks of earlier selections that are not
        among ``items`` lose their rank.
    batch_size : int, default=500
    predictions : bool, default=False
        Also write priority predictions (see :func:`push_view`).
    model_version : str, default="activeft"
    progress : bool, default=True

    Returns
    -------
    PushReport
    """
    project_id = int(project_id)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    ids = [str(item["id"]) for item in items]
    if len(set(ids)) != len(ids):
        raise InputError("the items to push have duplicate ids")
    by_id, all_tasks = _listing or _existing_by_id(conn, project_id)
    report = PushReport(project_id=project_id)
    ordered = sorted(items, key=lambda item: int(item["rank"]))
    todo = [item for item in ordered if str(item["id"]) not in by_id]
    bar = _bar(progress, len(todo), "Importing tasks", "task")
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        _import_batch(conn, project_id, batch)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    report.created = len(todo)
    if todo:
        by_id, all_tasks = _existing_by_id(conn, project_id)
    wanted, extra = {}, {}
    for item in ordered:
        task = by_id.get(str(item["id"]))
        if task is None:
            raise ActiveFTError(f"item {item['id']!r} is missing from project {project_id} after the import; "
                                f"run the command again")
        wanted[task["id"]] = (int(item["rank"]), str(item["id"]))
        extra[task["id"]] = item["data"]
        report.task_ids[str(item["id"])] = int(task["id"])
    updates, report.cleared, unchanged = _plan(all_tasks, wanted, extra)
    _patch_many(conn, updates, "Updating tasks", progress)
    report.updated = len(updates) - report.cleared
    report.unchanged = unchanged - report.created
    if predictions:
        report.predictions = _sync_predictions(conn, project_id, {t: r for t, (r, _) in wanted.items()},
                                               model_version, progress)
    report.view_id = ensure_priority_view(conn, project_id)
    report.url = project_url(conn, project_id, report.view_id)
    return report


def _import_batch(conn, project_id, batch):
    """Import one batch of items (with rank and id in their data); safe to retry after a lost answer."""

    def send(pending):
        payload = [{"data": {**item["data"], ID_FIELD: str(item["id"]), RANK_FIELD: int(item["rank"])}}
                   for item in pending]
        conn.client.projects.import_tasks(id=project_id, request=payload, return_task_ids=True)

    def still_missing(pending):
        by_id, _ = _existing_by_id(conn, project_id)
        return [item for item in pending if str(item["id"]) not in by_id]

    _create_once(conn, f"import tasks into project {project_id}", send, still_missing, list(batch))


def _create_once(conn, what, send, still_missing, pending):
    """``send(pending)``, retrying transient failures; before each retry ``still_missing`` drops what arrived.

    A request whose answer was lost (connection reset, 502 after the server
    did the work) is thus never applied twice.
    """
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    for attempt in range(conn.retries + 1):
        try:
            send(pending)
            return
        except ApiError as exc:
            status = exc.status_code or 0
            if not _is_transient_status(status) or attempt == conn.retries:
                raise _http_error(conn, what, status, exc.body) from None
        except httpx.HTTPError as exc:
            if not isinstance(exc, httpx.TransportError) or attempt == conn.retries:
                raise _transport_error(conn, what, exc) from None
        _sleep_before_retry(conn, attempt)
        pending = still_missing(pending)
        if not pending:
            return


# --------------------------------------------------------------------------------------------------------------
# Reading annotations


#: Control tags whose results :func:`read_annotations` understands, and the kind of label each gives.
SUPPORTED_CONTROLS = {"Choices": "classification", "RectangleLabels": "detection"}


def label_controls(config):
    """The Choices / RectangleLabels controls of a label config.

    Returns a list of ``{"name", "tag", "kind", "labels", "multiple"}``
    (``kind``: ``"classification"`` or ``"detection"``; ``multiple``: a
    Choices control with ``choice="multiple"``).
    """
    try:
        root = ET.fromstring(config or "<View/>")
    except ET.ParseError as exc:
        raise InputError(f"the project's label config is not valid XML ({exc})") from None
    controls = []
    for element in root.iter():
        if element.tag in SUPPORTED_CONTROLS and element.get("name"):
            item = "Choice" if element.tag == "Choices" else "Label"
            controls.append({"name": element.get("name"), "tag": element.tag, "kind": SUPPORTED_CONTROLS[element.tag],
                             "labels": [child.get("value") for child in element.iter(item) if child.get("value")],
                             "multiple": element.get("choice") == "multiple"})
    return controls


@dataclass
class TaskAnnotation:
    """The annotation of one task that counts, in tool-neutral form.

    Attributes
    ----------
    task_id : int
    stable_id : str or None
        The task's ``activeft_id`` (None for tasks activeft did not write).
    annotation_id : int or None
        The annotation chosen (None when every annotation was cancelled).
    updated_at : str or None
    annotations : int
        Annotations of the task that were not cancelled.
    cancelled : int
        Cancelled ("skipped") annotations of the task.
    choices : list of str
        Choices of the control (classification).
    boxes : list of (label, x, y, width, height)
        Rectangles, relative to the image (0..1, top-left corner), converted
        from Label Studio's percentages.
    problems : list of str
        Results that could not be converted (rotated boxes, unknown labels).
    """

    task_id: int
    stable_id: str = None
    annotation_id: int = None
    updated_at: str = None
    annotations: int = 0
    cancelled: int = 0
    choices: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def export_tasks(conn, project_id):
    """Every task of a project with its annotations, in one request (Label Studio's JSON export)."""
    answer = _request(conn, "GET", f"/api/projects/{int(project_id)}/export",
                      f"export the annotations of project {project_id}",
                      params={"exportType": "JSON", "download_all_tasks": "true"})
    if not isinstance(answer, list):
        raise ActiveFTError(f"unexpected export from {conn.url} for project {project_id}: not a list of tasks")
    return answer


def _latest(annotations):
    """The annotation that counts: the latest non-cancelled one (last updated, then highest id)."""
    live = [a for a in annotations if not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0)))


def read_annotations(conn, project_id, control, tasks=None):
    """The annotation that counts of every annotated task, converted for ``control``.

    Parameters
    ----------
    conn : Connection
    project_id : int
    control : dict
        One entry of :func:`label_controls` (its ``name`` selects the results read).
    tasks : list of dict, optional
        What :func:`export_tasks` returned, when the caller has it already.

    Returns
    -------
    list of TaskAnnotation
        One per task that has at least one annotation, cancelled ones
        included (``annotation_id`` None).  Of several annotations of a task,
        the latest non-cancelled one counts (by ``updated_at``, then id);
        cancelled annotations ("skip") never count.
    """
    out = []
    known = set(control.get("labels") or ())
    for task in export_tasks(conn, project_id) if tasks is None else tasks:
        annotations = task.get("annotations") or []
        if not annotations:
            continue
        data = task.get("data") or {}
        stable = data.get(ID_FIELD)
        chosen = _latest(annotations)
        record = TaskAnnotation(task_id=int(task["id"]), stable_id=None if stable in (None, "") else str(stable),
                                annotations=sum(1 for a in annotations if not a.get("was_cancelled")),
                                cancelled=sum(1 for a in annotations if a.get("was_cancelled")))
        if chosen is not None:
            record.annotation_id = int(chosen["id"])
            record.updated_at = chosen.get("updated_at") or chosen.get("created_at")
            for result in chosen.get("result") or []:
                if result.get("from_name") != control["name"]:
                    continue
                _convert(result, control, known, record)
        out.append(record)
    return out


def _convert(result, control, known, record):
    value = result.get("value") or {}
    if control["tag"] == "Choices":
        for choice in value.get("choices") or []:
            if known and choice not in known:
                record.problems.append(f"choice {choice!r} is not in the label config")
            record.choices.append(str(choice))
        return
    labels = value.get("rectanglelabels") or []
    try:
        x, y, w, h = (float(value[k]) / 100.0 for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        record.problems.append("a rectangle without x/y/width/height")
        return
    if abs(float(value.get("rotation") or 0.0)) > 1e-6:
        # FiftyOne boxes are axis-aligned; an enclosing box would silently grow the object.
        record.problems.append(f"a rectangle rotated by {value.get('rotation')} degrees (left out)")
        return
    for label in labels or [None]:
        record.boxes.append((label, x, y, w, h))


# --------------------------------------------------------------------------------------------------------------
# Setting up a project from local images


def upload_images(conn, project_id, paths, *, progress=True):
    """Upload image files to a project without creating tasks; returns their ``/data/upload/...`` URLs.

    Files go in requests of at most ``conn.upload_batch`` files (default
    :data:`UPLOAD_BATCH`; halved for the connection while the server refuses
    that many).  A retried request may leave an unused
    copy of a file on the server (harmless).
    """
    urls = []
    bar = _bar(progress, len(paths), "Uploading images", "img")
    start = 0
    while start < len(paths):
        chunk = paths[start:start + conn.upload_batch]
        try:
            urls.extend(_upload_chunk(conn, project_id, chunk))
        except _TooManyFiles:
            if conn.upload_batch == 1:
                raise ActiveFTError("Label Studio refuses even one uploaded file per request; use --images "
                                    "local-files") from None
            conn.upload_batch = max(1, min(conn.upload_batch, len(chunk)) // 2)
            continue
        start += len(chunk)
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return urls


def _upload_chunk(conn, project_id, chunk):
    handles = []
    try:
        files = []
        for i, path in enumerate(chunk):
            handle = open(path, "rb")
            handles.append(handle)
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            files.append((f"file{i}", (os.path.basename(path), handle, mime)))  # distinct field names: one per file
        answer = _request(conn, "POST", f"/api/projects/{int(project_id)}/import",
                          f"upload images to project {project_id}", params={"commit_to_project": "false"},
                          files=files)
    finally:
        for handle in handles:
            handle.close()
    upload_ids = answer.get("file_upload_ids") or []
    if len(upload_ids) != len(chunk):
        raise ActiveFTError(f"Label Studio stored {len(upload_ids)} of {len(chunk)} uploaded images; "
                            f"run the command again")
    listed = _request(conn, "GET", f"/api/projects/{int(project_id)}/file-uploads", "list uploaded files",
                      params={"ids": json.dumps(upload_ids)})
    stored = {int(entry["id"]): entry["file"] for entry in listed}
    missing = [upload_id for upload_id in upload_ids if int(upload_id) not in stored]
    if missing:
        raise ActiveFTError(f"Label Studio did not list uploaded file(s) {missing[:3]}; run the command again")
    return ["/data/" + stored[int(upload_id)].lstrip("/") for upload_id in upload_ids]


def _local_files_refs(conn, project_id, paths, document_root):
    """``/data/local-files/?d=...`` URLs of ``paths``, after making sure a local storage covers them."""
    check_images_option(paths, "local-files", document_root)
    root = os.path.realpath(document_root)
    real = [os.path.realpath(p) for p in paths]
    folder = os.path.commonpath([os.path.dirname(p) for p in real])
    storages = [_as_dict(s) for s in _api(conn, "list local storages", conn.client.import_storage.local.list,
                                          project=int(project_id))]
    covered = any(os.path.commonpath([os.path.realpath(s.get("path") or "/"), folder])
                  == os.path.realpath(s.get("path") or "/") for s in storages if s.get("path"))
    if not covered:
        _api(conn, "connect local-files storage", conn.client.import_storage.local.create, project=int(project_id),
             path=folder, use_blob_urls=True, title="activeft images",
             description="Serves the images of the ActiveFT selection (not synced: tasks are imported by activeft)")
    return ["/data/local-files/?d=" + urllib.parse.quote(os.path.relpath(p, root)) for p in real]


def check_images_option(paths, images, document_root):
    """Raise :class:`InputError` for what :func:`push_images` would refuse about how ``paths`` reach the server.

    Cheap and without requests, so that commands can call it before they create or write anything.
    """
    if images not in ("auto", "upload", "local-files"):
        raise InputError(f"images must be 'auto', 'upload' or 'local-files', got {images!r}")
    if images != "local-files":
        return
    if not document_root:
        raise InputError("--images local-files needs --document-root (the server's "
                         "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    if not os.path.isdir(document_root):
        raise InputError(f"--document-root {document_root} is not a folder on this machine; give the folder the "
                         f"server serves local files from (its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    outside = _outside_root(paths, document_root)
    if outside:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise InputError(f"{outside[0]}{more} is not under the local-files document root {document_root}; put the "
                         f"images under it, or use --images upload")


def _outside_root(paths, document_root):
    """The ``paths`` that do not lie under ``document_root`` (symbolic links resolved)."""
    root = os.path.realpath(document_root)
    return [p for p in paths if os.path.commonpath([root, os.path.realpath(p)]) != root]


def open_project(conn, title, labels, task="classification", description=""):
    """The project titled ``title`` with the label config of ``labels``/``task``, created when there is none.

    A project with this exact title and the same label config is reused (so
    a command can be re-run after a failure); one with another config is an
    :class:`InputError`.  Returns the project as a dict.
    """
    check_title(title)
    config = label_config(labels, task)
    existing = find_project(conn, title)
    if existing:
        project = existing[0]
        if not has_label_config(project, labels, task):
            raise InputError(f"a project titled {title!r} already exists ({project_url(conn, project['id'])}) with "
                             f"another label config; choose another --title")
        return project
    return create_project(conn, title, config, description=description)


def has_label_config(project, labels, task="classification"):
    """Whether ``project``'s label config is the one :func:`label_config` makes of ``labels``/``task`` (whitespace
    aside)."""
    return _normalize_config(project.get("label_config")) == _normalize_config(label_config(labels, task))


def push_images(conn, project_id, entries, *, images="auto", document_root=None, batch_size=IMPORT_BATCH,
                field=IMAGE_FIELD, progress=True):
    """Put ranked local images into a project as tasks, idempotently; the queue is exactly ``entries``.

    Parameters
    ----------
    conn : Connection
    project_id : int
    entries : list of dict
        ``{"id": stable id, "rank": int, "path": local image file}``.  Tasks
        that already carry an entry's ``activeft_id`` are updated (rank),
        never duplicated; the images of the others are brought in and their
        tasks imported in rank order.  Tasks of earlier pushes that are not
        among ``entries`` lose their rank.
    images : {"auto", "upload", "local-files"}
        How the server gets the images: uploaded (at most ``conn.upload_batch``
        files a request), or served from local-files storage (the images must
        lie under ``document_root``, the server's
        ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``).  ``auto`` uses local files
        when ``document_root`` is given and holds the images, else uploads.
    document_root : str, optional
    batch_size : int, default=500
        Tasks per import request.
    field : str, default="image"
        Task data field of the image (the ``$name`` of the config's ``<Image>``).
    progress : bool, default=True

    Returns
    -------
    PushReport
        ``task_ids`` maps every entry's id to its task id.
    """
    check_images_option([], images, document_root)    # the paths: those still to import, below
    project_id = int(project_id)
    entries = sorted(entries, key=lambda entry: int(entry["rank"]))
    warnings = []
    automatic = images == "auto"
    if images == "auto":
        images = "upload"
        if document_root and not _outside_root([e["path"] for e in entries], document_root):
            images = "local-files"

    listing = _existing_by_id(conn, project_id)
    by_id = listing[0]
    need = [entry for entry in entries if str(entry["id"]) not in by_id]
    refs = {}
    if need and images == "local-files":
        try:
            urls = _local_files_refs(conn, project_id, [e["path"] for e in need], document_root)
            refs = {str(e["id"]): url for e, url in zip(need, urls)}
        except InputError as exc:
            if not automatic:
                raise
            warnings.append(f"local files are not served ({exc}); uploaded the images instead")
            images = "upload"
    uploaded = 0
    if need and images == "upload":
        # Upload and import chunk by chunk, so an interruption leaves few unused files behind.
        bar = _bar(progress, len(need), "Uploading images", "img")
        start = 0
        while start < len(need):
            chunk = need[start:start + min(conn.upload_batch, batch_size)]
            start += len(chunk)
            urls = upload_images(conn, project_id, [e["path"] for e in chunk], progress=False)
            uploaded += len(urls)
            _import_batch(conn, project_id, [{"id": str(e["id"]), "rank": int(e["rank"]),
                                              "data": {field: url}} for e, url in zip(chunk, urls)])
            if bar:
                bar.update(len(chunk))
        if bar:
            bar.close()
    items = [{"id": str(e["id"]), "rank": int(e["rank"]),
              "data": {field: refs[str(e["id"])]} if str(e["id"]) in refs else {}} for e in entries]
    report = push_project(conn, project_id, items, batch_size=batch_size, progress=progress,
                          _listing=None if uploaded else listing)
    if uploaded:  # these were imported above, together with their uploads
        report.created += uploaded
        report.unchanged -= uploaded
    report.uploaded = uploaded
    report.warnings.extend(warnings)
    report.images = images
    return report


def setup_project(conn, title, labels, pool, result, *, task="classification", images="auto", document_root=None,
                  batch_size=IMPORT_BATCH, progress=True):
    """Create (or complete) a project that holds a selection of local images in priority order.

    Parameters
    ----------
    conn : Connection
    title : str
        Project title (see :func:`open_project`: re-running completes it).
    labels : str or list of str
        Label names.
    pool : activeft_label.pool.Pool
        The local items (``ids``, ``paths``).
    result : SelectionResult
        The selection over ``pool``.
    task : {"classification", "detection"}
        Choices or RectangleLabels.
    images, document_root, batch_size, progress
        See :func:`push_images`.

    Returns
    -------
    PushReport
    """
    if pool.paths is None:
        raise InputError("a features file has no images to put in Label Studio; give a folder or a list of images")
    label_config(labels, task)  # validate before anything is created
    ranks = {int(index): int(rank) for index, rank in zip(result.indices, result.ranks)}
    entries = [{"id": str(pool.ids[row]), "rank": ranks[int(row)], "path": pool.paths[int(row)]}
               for row in result.ranked_indices]
    check_images_option([e["path"] for e in entries], images, document_root)
    project = open_project(conn, title, labels, task, description=(
        f"ActiveFT selection of {len(entries)} of {len(pool)} images, imported in priority order "
        f"(view '{VIEW_TITLE}' lists them by rank)."))
    return push_images(conn, project["id"], entries, images=images, document_root=document_root,
                       batch_size=batch_size, progress=progress)


def _normalize_config(config):
    return re.sub(r"\s+", "", config or "")


# --------------------------------------------------------------------------------------------------------------
# The whole job for an existing project


def prioritize(conn, project_id, budget, *, mode="view", view=None, field=None, title=None, predictions=False,
               model_version=MODEL_VERSION, method="activeft", select_options=None, embed_options=None,
               progress=True):
    """Pull a project, select ``budget`` tasks, and push them as a prioritized annotation queue.

    Parameters
    ----------
    conn : Connection
    project_id : int
    budget : int or str
        A count, or a percentage (``"5%"``) of the project's tasks whose images
        could be read, annotated ones included (a percentage is always of the
        whole pool); the count is selected from the tasks not yet annotated.
    mode : {"view", "project"}
        ``view``: ranks, the priority view (and optional predictions) in the
        project itself.  ``project``: a new project (``title``, default
        "<title> - ActiveFT") that receives only the selected tasks, in rank
        order, on "Sequential sampling"; running it again updates that project.
    view : int, optional
        Only consider the tasks of this Data Manager view.
    field : str, optional
        Task data field of the image (default: from the label config).
    title : str, optional
        Title of the new project (``mode="project"``).
    predictions : bool, default=False
        Also write priority predictions (see :func:`push_view`).
    model_version : str, default="activeft"
    method : str, default="activeft"
    select_options : dict, optional
        Passed to :func:`activeft_label.selection.select`.
    embed_options : dict, optional
        Passed to :func:`embed_tasks` (model, pretrained, device, ...).
    progress : bool, default=True

    Returns
    -------
    (LabelStudioPool, SelectionResult, PushReport)

    Tasks that already have annotations are not selected again; they act as
    fixed centroids, so the new picks cover what they do not.
    """
    from ..budget import parse_budget
    from ..selection import select

    if mode not in ("view", "project"):
        raise InputError(f"mode must be 'view' or 'project', got {mode!r}")
    project = get_project(conn, project_id)
    tasks = pull_tasks(conn, project["id"], view)
    if not tasks:
        where = f"view {view} of project {project['id']}" if view is not None else f"project {project['id']}"
        raise InputError(f"{where} has no tasks; import some first")
    unlabeled = sum(1 for task in tasks if task["annotations"] == 0)
    _check_budget(parse_budget, budget, len(tasks), len(tasks) - unlabeled, project["id"])
    name = image_field(project.get("label_config"), tasks, field)
    if mode == "project":
        suffix = " - ActiveFT"
        target_title = title or f"{project['title'][:TITLE_LENGTH[1] - len(suffix)]}{suffix}"
        check_title(target_title)
        target = _reusable_copy_target(conn, project, target_title, tasks if view is None else None)
    pool = embed_tasks(conn, project, tasks, name, progress=progress, **(embed_options or {}))
    _check_budget(parse_budget, budget, len(pool), pool.labeled.size, project["id"], skipped=len(pool.skipped))
    result = select(pool.features, budget, method, fixed=pool.labeled if pool.labeled.size else None,
                    progress=progress, **(select_options or {}))
    ranked_rows = [int(r) for r in result.ranked_indices]
    if mode == "view":
        ranking = {pool.task_ids([row])[0]: rank for rank, row in enumerate(ranked_rows, start=1)}
        ids = {pool.task_ids([row])[0]: pool.ids[row] for row in ranked_rows}
        report = push_view(conn, project["id"], ranking, stable_ids=ids, predictions=predictions,
                           model_version=model_version, progress=progress)
    else:
        target = target or create_project(conn, target_title, project.get("label_config") or "",
                                          description=f"ActiveFT selection from project {project['id']} "
                                                      f"({project['title']}), in priority order.")
        items = []
        warnings = []
        for rank, row in enumerate(ranked_rows, start=1):
            task = pool.tasks[int(pool.rows[row])]
            data = {key: value for key, value in task["data"].items() if key != RANK_FIELD}
            items.append({"id": pool.ids[row], "rank": rank, "data": data})
        cloud = sum(1 for item in items if _ref_kind(item["data"].get(name)) == "storage")
        if cloud:
            warnings.append(f"{cloud} selected task(s) reference cloud storage; connect the same storage to project "
                            f"{target['id']} (no sync needed) so Label Studio can resolve their images")
        report = push_project(conn, target["id"], items, predictions=predictions, model_version=model_version,
                              progress=progress)
        report.warnings.extend(warnings)
    return pool, result, report


def _reusable_copy_target(conn, source, title, source_tasks=None):
    """The project titled ``title`` that a ``--mode project`` run may fill again, or None when there is none.

    It is reused only when it is a copy of ``source``: the same label config, and every task it holds a copy of a
    task of ``source`` (so a re-run completes it).  Anything else, such as a project made by hand or by
    ``activeft labelstudio setup`` from a folder, would get its queue replaced, and is refused.
    """
    found = find_project(conn, title)
    if not found:
        return None
    target = found[0]
    where = f"a project titled {title!r} already exists ({project_url(conn, target['id'])})"
    if int(target["id"]) == int(source["id"]):
        raise InputError(f"--title {title!r} names the source project itself; choose another title")
    if _normalize_config(target.get("label_config")) != _normalize_config(source.get("label_config")):
        raise InputError(f"{where} with another label config than project {source['id']}; choose another --title")
    if source_tasks is None:
        source_tasks = pull_tasks(conn, source["id"])
    copies = {stable_id(source["id"], task) for task in source_tasks}
    foreign = [task for task in pull_tasks(conn, target["id"]) if str(task["data"].get(ID_FIELD)) not in copies]
    if foreign:
        raise InputError(f"{where} and holds {len(foreign)} task(s) that are not copies of project {source['id']}'s "
                         f"tasks (e.g. task {foreign[0]['id']}); choose another --title")
    return target


def _check_budget(parse_budget, budget, size, labeled, project_id, skipped=0):
    try:
        parse_budget(budget, size, already_labeled=labeled)
    except InputError as exc:
        extra = f", {skipped} skipped as unreadable" if skipped else ""
        raise InputError(f"project {project_id} ({size} usable tasks, {labeled} already annotated{extra}): "
                         f"{exc}") from None
