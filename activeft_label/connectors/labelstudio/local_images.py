"""Setting up a project from local images: uploads or local-files references, imported in rank order."""

import json
import mimetypes
import os
import re
import urllib.parse

from ...errors import ActiveFTError, InputError
from ._http import (ServerTrouble, TooManyFiles, as_dict, authorization_headers, call_sdk, progress_bar, request_json,
                    sleep_before_retry)
from .fields import IMAGE_FIELD, VIEW_TITLE
from .projects import label_config, open_project
from .pull import pull_tasks
from .push import IMPORT_BATCH, check_unique_ids, import_task_batch, push_project, tasks_by_stable_id


def upload_images(conn, project_id, paths, *, progress=True, reuse=True, unused=None):
    """Upload image files to a project without creating tasks; returns their ``/data/upload/...`` URLs.

    Files go in requests of at most ``conn.upload_batch`` files (default
    :data:`UPLOAD_BATCH`; halved for the connection while the server refuses
    that many).

    With ``reuse`` (the default), a file that the project already holds as an
    upload that no task uses (left by an interrupted run, or by a request
    whose answer was lost) is reused instead of uploaded again; see
    :class:`UnusedUploads` for when two files count as the same.  A request
    that fails with a transient error is retried only for the files it did
    not leave on the server, so a retry leaves no second copy either.
    ``unused`` is the :class:`UnusedUploads` of the project when the caller
    has one (it keeps which uploads are taken across calls); by default one
    is made from the project's tasks.
    """
    if reuse and unused is None:
        unused = UnusedUploads(conn, project_id)
    urls = []
    bar = progress_bar(progress, len(paths), "Uploading images", "img")
    start = 0
    while start < len(paths):
        chunk = paths[start:start + conn.upload_batch]
        try:
            urls.extend(_upload_chunk(conn, project_id, chunk, unused if reuse else None))
        except TooManyFiles:
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


def _upload_chunk(conn, project_id, chunk, unused):
    """URLs of the files of ``chunk``: reused uploads where ``unused`` has them, the others uploaded."""
    found = {}
    for attempt in range(conn.retries + 1):
        if unused is not None:
            for position, path in enumerate(chunk):
                if position not in found:
                    url = unused.take(path)
                    if url is not None:
                        found[position] = url
        todo = [position for position in range(len(chunk)) if position not in found]
        if not todo:
            break
        try:
            urls = _post_files(conn, project_id, [chunk[position] for position in todo])
        except TooManyFiles:
            if unused is not None:
                unused.release(found.values())  # the caller splits the chunk and asks again
            raise
        except ServerTrouble:
            if attempt == conn.retries:
                raise
            sleep_before_retry(conn, attempt)
            if unused is not None:
                unused.refresh()  # the failed request may have stored some files: they are found, not sent again
            continue
        found.update(zip(todo, urls))
        if unused is not None:
            unused.claim(urls)
        break
    return [found[position] for position in range(len(chunk))]


def _post_files(conn, project_id, chunk):
    """Upload the files of ``chunk`` in one request (not retried); their URLs."""
    handles = []
    try:
        files = []
        for i, path in enumerate(chunk):
            handle = open(path, "rb")
            handles.append(handle)
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            files.append((f"file{i}", (os.path.basename(path), handle, mime)))  # distinct field names: one per file
        answer = request_json(conn, "POST", f"/api/projects/{int(project_id)}/import",
                              f"upload images to project {project_id}", params={"commit_to_project": "false"},
                              files=files, retry=False)
    finally:
        for handle in handles:
            handle.close()
    upload_ids = answer.get("file_upload_ids") or []
    if len(upload_ids) != len(chunk):
        raise ActiveFTError(f"Label Studio stored {len(upload_ids)} of {len(chunk)} uploaded images; "
                            f"run the command again")
    listed = request_json(conn, "GET", f"/api/projects/{int(project_id)}/file-uploads", "list uploaded files",
                          params={"ids": json.dumps(upload_ids)})
    stored = {int(entry["id"]): entry["file"] for entry in listed}
    missing = [upload_id for upload_id in upload_ids if int(upload_id) not in stored]
    if missing:
        raise ActiveFTError(f"Label Studio did not list uploaded file(s) {missing[:3]}; run the command again")
    return ["/data/" + stored[int(upload_id)].lstrip("/") for upload_id in upload_ids]


def stored_file_name(name):
    """The name Label Studio (Django) stores an uploaded file under, without its 8-character prefix.

    Django's ``get_valid_filename``: surrounding spaces dropped, inner spaces
    turned into ``_``, every character but letters, digits, ``-``, ``_`` and
    ``.`` removed.
    """
    text = str(os.path.basename(name)).strip().replace(" ", "_")
    return re.sub(r"(?u)[^-\w.]", "", text)


class UnusedUploads:
    """The files a project holds as uploads that no task uses, so that uploading an image again can reuse them.

    Label Studio keeps every uploaded file as a ``FileUpload`` of the project
    (listed by ``GET /api/projects/ID/file-uploads?all=true``, for the key's
    user: id, ``file`` = ``upload/<project>/<8 characters>-<name>``, size).
    An upload is *unused* when no task of the project references it in its
    data (``/data/upload/...``) and this object has not handed it out yet.
    An interrupted run (SIGKILL between an upload and the task import, a
    server that went away before it answered) leaves such files behind.

    A local image and an unused upload are **the same file** when they have
    the same name as Label Studio stores it (:func:`stored_file_name` of the
    image's base name equals the upload's name after its prefix), the same
    size in bytes, and the same content: the upload is downloaded and compared
    byte for byte before it is reused, so two different images that happen
    to share name and size never share an upload.  Each unused upload serves
    one image at most.  Files whose names Label Studio had to shorten (file
    names beyond about 80 characters) or rewrite (SVG) are not recognised and
    are uploaded again.  Uploads are never deleted: a task in another project
    may reference one (``activeft labelstudio select --mode project`` copies
    task data as it is).

    Parameters
    ----------
    conn : Connection
    project_id : int
    tasks : iterable of dict, optional
        Every task of the project (dicts with ``data``), when the caller has
        them; by default they are listed.
    """

    def __init__(self, conn, project_id, tasks=None):
        self.conn = conn
        self.project_id = int(project_id)
        if tasks is None:
            tasks = pull_tasks(conn, self.project_id)
        self.in_use = set()
        for task in tasks:
            self.in_use.update(upload_references(task.get("data") or {}))
        self.claimed = set()
        self.reused = 0
        self._by_key = None
        self._keys = {}

    def refresh(self):
        """List the project's uploads again (after a request that may have stored files)."""
        listed = request_json(self.conn, "GET", f"/api/projects/{self.project_id}/file-uploads",
                              f"list the files uploaded to project {self.project_id}", params={"all": "true"})
        by_key = {}
        for entry in sorted(listed, key=lambda item: int(item.get("id") or 0)):
            name = str(entry.get("file") or "").lstrip("/")
            if not name or name in self.in_use or name in self.claimed or entry.get("size") is None:
                continue
            base = os.path.basename(name)
            if len(base) < 10 or base[8] != "-":
                continue
            by_key.setdefault((base[9:], int(entry["size"])), []).append(name)
        self._by_key = by_key

    def take(self, path):
        """The ``/data/upload/...`` URL of an unused upload that is the same file as ``path``, or None."""
        if self._by_key is None:
            self.refresh()
        try:
            size = os.path.getsize(path)
        except OSError:
            return None
        key = (stored_file_name(path), size)
        candidates = self._by_key.get(key)
        if not candidates:
            return None
        content = None
        for name in list(candidates):
            remote = self._download(name)
            if remote is None:
                continue
            if content is None:
                with open(path, "rb") as handle:
                    content = handle.read()
            if remote == content:
                candidates.remove(name)
                self.claimed.add(name)
                self._keys[name] = key
                self.reused += 1
                return "/data/" + name
        return None

    def release(self, urls):
        """Give back uploads handed out by :meth:`take` that were not used after all."""
        for url in urls:
            for name in upload_references({"url": url}):
                key = self._keys.pop(name, None)
                if key is not None and name in self.claimed:
                    self.claimed.discard(name)
                    self.reused -= 1
                    self._by_key.setdefault(key, []).insert(0, name)

    def claim(self, urls):
        """Mark uploads as taken (the URLs a fresh upload returned)."""
        for url in urls:
            self.claimed.update(upload_references({"url": url}))

    def _download(self, name):
        try:
            response = self.conn.http.get(f"{self.conn.url}/data/{urllib.parse.quote(name)}",
                                          headers=authorization_headers(self.conn, "download an uploaded file"))
        except Exception:  # noqa: BLE001 - a file that cannot be read back is simply not reused
            return None
        return response.content if response.status_code == 200 else None


def upload_references(data):
    """The uploads (``upload/<project>/<file>``) that the values of a task's ``data`` reference."""
    found = set()
    for value in data.values():
        if isinstance(value, str) and "/data/upload/" in value:
            path = urllib.parse.urlsplit(value.split("/data/", 1)[1]).path
            found.add(urllib.parse.unquote(path).lstrip("/"))
    return found


def _local_files_refs(conn, project_id, paths, document_root):
    """``/data/local-files/?d=...`` URLs of ``paths``, after making sure a local storage covers them."""
    check_images_option(paths, "local-files", document_root)
    root = os.path.realpath(document_root)
    real = [os.path.realpath(p) for p in paths]
    folder = os.path.commonpath([os.path.dirname(p) for p in real])
    storages = [as_dict(s) for s in call_sdk(conn, "list local storages", conn.client.import_storage.local.list,
                                             project=int(project_id))]
    covered = any(os.path.commonpath([os.path.realpath(s.get("path") or "/"), folder])
                  == os.path.realpath(s.get("path") or "/") for s in storages if s.get("path"))
    if not covered:
        call_sdk(conn, "connect local-files storage", conn.client.import_storage.local.create, project=int(project_id),
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
    check_unique_ids(entries)                         # before any image is uploaded
    project_id = int(project_id)
    entries = sorted(entries, key=lambda entry: int(entry["rank"]))
    warnings = []
    automatic = images == "auto"
    if images == "auto":
        images = "upload"
        if document_root and not _outside_root([e["path"] for e in entries], document_root):
            images = "local-files"

    listing = tasks_by_stable_id(conn, project_id)
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
    unused = None
    if need and images == "upload":
        # Upload and import chunk by chunk, so an interruption leaves few unused files behind; the files an
        # interrupted run left are reused, not uploaded again.
        unused = UnusedUploads(conn, project_id, tasks=listing[1].values())
        bar = progress_bar(progress, len(need), "Uploading images", "img")
        start = 0
        while start < len(need):
            chunk = need[start:start + min(conn.upload_batch, batch_size)]
            start += len(chunk)
            urls = upload_images(conn, project_id, [e["path"] for e in chunk], progress=False, unused=unused)
            uploaded += len(urls)
            import_task_batch(conn, project_id, [{"id": str(e["id"]), "rank": int(e["rank"]),
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
    report.reused_uploads = unused.reused if unused is not None else 0
    report.uploaded = uploaded - report.reused_uploads
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
    pool : activeft_label.files.pool.Pool
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
