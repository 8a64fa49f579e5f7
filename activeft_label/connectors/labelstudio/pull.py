"""Pulling a project's tasks and their images, and embedding them into a selection pool."""

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
from ._http import as_dict, authorization_headers, call_sdk, progress_bar
from ._remote import Broken, decode_data_uri, fetch_url
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
    Here, images are downloaded under ``cache_dir/labelstudio`` (one file
    per reference, fetched once; a temporary folder with
    ``cache_dir=False``).  With ``ray_address`` the Ray workers fetch them
    themselves, with the key (:meth:`.Connection.remote_images`), and this
    process downloads nothing.  Either way the embedding cache knows each
    image by the server and its reference, so a second run, on Ray or here,
    embeds nothing.  Broken references and unreadable images are skipped and
    listed.
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

    def skip(position, reason):
        skipped.append((tasks[position]["id"], f"{_short_ref(tasks[position]['data'].get(field))}: {reason}"))

    items = []  # (position, reference, what embed_images reads: a downloaded file, or what the workers fetch)
    folder, temporary, fetch = None, cache_dir is False, None
    try:
        if ray_address is not None:
            # The workers fetch the images: no shared file system needed, and nothing passes through here.
            for position, ref, kind in wanted:
                try:
                    items.append((position, ref, _source(conn, tasks[position]["id"], ref, kind, resolved)))
                except Broken as exc:
                    skip(position, exc)
            fetch = conn.remote_images()
        else:
            if temporary:
                folder = tempfile.mkdtemp(prefix="activeft-labelstudio-")
            else:
                host = hashlib.sha1(conn.url.encode()).hexdigest()[:12]
                base = default_cache_dir() if cache_dir in (None, True) else cache_dir
                folder = os.path.join(base, "labelstudio", host)
                os.makedirs(folder, exist_ok=True)
            files = _download_all(conn, tasks, wanted, resolved, folder, download_workers, progress)
            for position, ref, _ in wanted:
                if isinstance(files[position], Broken):
                    skip(position, files[position])
                else:
                    items.append((position, ref, files[position]))
        features = np.zeros((0, 0), dtype=np.float32)
        kept_positions = []
        used = None
        if items:
            embedded = embed_images([source for _, _, source in items], model=model or DEFAULT_MODEL,
                                    pretrained=pretrained, batch_size=batch_size, num_workers=num_workers,
                                    device=device, cache_dir=cache_dir, progress=_image_progress(progress),
                                    precision=precision,
                                    ray_address=ray_address, keys=[_image_key(conn, ref) for _, ref, _ in items],
                                    fetch=fetch)
            used = embedded.precision
            features = embedded.features
            kept = set(embedded.kept.tolist())
            kept_positions = [items[i][0] for i in sorted(kept)]
            # Every item is either kept or skipped, and both lists keep the input order.
            missing = [i for i in range(len(items)) if i not in kept]
            assert len(missing) == len(embedded.skipped)
            for i, (_, reason) in zip(missing, embedded.skipped):
                skip(items[i][0], reason)
    finally:
        if temporary and folder is not None:
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


def _image_progress(progress):
    """``progress`` as :func:`embed_images` takes it: a callable here reports ``(fraction, message)``, as the
    download bar does (the App's progress), where embed_images calls ``(done, total)``."""
    if not callable(progress):
        return progress
    return lambda done, total: progress(min(1.0, done / max(1, total)), f"Embedding: {done} of {total} images")


def _image_key(conn, ref):
    """The embedding cache's key of a task image: the server and a digest of the reference.

    As stable as the downloaded file always was: one file per reference,
    fetched once and never again, so a reference's features never changed
    either.  What a reference names does not change in practice (uploads get
    a name of their own; an image replaced at the same URL or path kept its
    old features before too, until the cache was cleared).  The bytes a Ray
    worker fetches for a reference are the ones this process would download,
    so rows computed on Ray and here serve each other.
    """
    return f"labelstudio:{conn.url}#{hashlib.sha1(ref.encode('utf-8')).hexdigest()}"


def _short_ref(ref, limit=80):
    text = str(ref)
    if text.startswith("data:"):
        return text[:30] + "..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _source(conn, task_id, ref, kind, resolved):
    """Where a reference's image is fetched from: an absolute URL, or the ``data:`` URI itself."""
    if kind == "inline":
        return ref
    url = ref
    if kind == "storage":
        url = resolved.get(task_id) or ""
        if image_ref_kind(url) not in ("server", "http"):
            raise Broken("Label Studio could not resolve this cloud storage URI; connect the storage to the project")
    if url.startswith("/"):
        url = conn.url + url
    return url


def _download_all(conn, tasks, wanted, resolved, folder, workers, progress):
    """Fetch the images; returns {task position: local path or Broken}."""

    def auth():
        return authorization_headers(conn, "fetch an image")

    def one(item):
        position, ref, kind = item
        path = os.path.join(folder, hashlib.sha1(ref.encode("utf-8")).hexdigest() + ".img")
        if os.path.isfile(path):  # fetched by an earlier run (a file per reference)
            return position, path
        try:
            source = _source(conn, tasks[position]["id"], ref, kind, resolved)
            content = decode_data_uri(source)[0] if kind == "inline" else fetch_url(conn, source, auth)[0]
        except Broken as exc:
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
