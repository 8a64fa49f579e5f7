"""Pulling a project's tasks and their images, and embedding them into a selection pool."""

import base64
import binascii
import concurrent.futures
import hashlib
import os
import shutil
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError
from ._http import as_dict, authorization_headers, call_sdk, is_transient_status, progress_bar, sleep_before_retry
from .fields import ID_FIELD, IMAGE_FIELD
from .projects import get_project, project_url

#: Tasks per page when listing a project.
PAGE_SIZE = 1000
_CLOUD_SCHEMES = ("s3", "gs", "gcs", "azure-blob", "azure-spi", "azure", "blob")


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
        views = {int(as_dict(v)["id"]) for v in call_sdk(conn, f"list the views of project {project_id}",
                                                         conn.client.views.list, project=int(project_id))}
        if int(view) not in views:
            raise InputError(f"project {project_id} has no Data Manager view {view}; the view id is the 'tab' "
                             f"number in the Data Manager URL ({project_url(conn, project_id)}/data?tab=ID)")
        kwargs["view"] = int(view)

    def fetch():
        tasks = []
        for task in conn.client.tasks.list(**kwargs):
            task = as_dict(task) if not isinstance(task, dict) else task
            tasks.append({"id": int(task["id"]), "data": dict(task.get("data") or {}),
                          "annotations": int(task.get("total_annotations") or 0)})
        return tasks

    return call_sdk(conn, what, fetch)


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


def image_ref_kind(ref):
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
        headers = authorization_headers(conn, "fetch an image") if ours else {}
        retries = conn.retries if ours else min(conn.retries, 1)  # other hosts: one retry (a dead host costs little)
        for attempt in range(retries + 1):
            try:
                response = conn.http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                if attempt < retries and isinstance(exc, httpx.TransportError):
                    sleep_before_retry(conn, attempt)
                    continue
                raise _Broken(conn.scrub(f"{type(exc).__name__}: {exc}")[:200]) from None
            if is_transient_status(response.status_code) and attempt < retries:
                sleep_before_retry(conn, attempt)
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
    precision : str or None
        The encoder's number format (``"fp32"``, ``"bf16"``).
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
    precision: str = None

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
                num_workers=None, cache_dir=None, download_workers=8, progress=True, precision="auto",
                ray_address=None):
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
    from ...embeddings import DEFAULT_MODEL, default_cache_dir, embed_images

    skipped, wanted = [], []
    for position, task in enumerate(tasks):
        ref = task["data"].get(field)
        kind = image_ref_kind(ref)
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
        used = None
        if fetched:
            embedded = embed_images([path for _, path in fetched], model=model or DEFAULT_MODEL, pretrained=pretrained,
                                    batch_size=batch_size, num_workers=num_workers, device=device,
                                    cache_dir=cache_dir, progress=progress, precision=precision,
                                    ray_address=ray_address)
            used = embedded.precision
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
                           skipped=skipped, precision=used)


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
                    if image_ref_kind(url) not in ("server", "http"):
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
    bar = progress_bar(progress, len(wanted), "Fetching images", "img")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        for position, outcome in pool.map(one, wanted):
            results[position] = outcome
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return results


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
