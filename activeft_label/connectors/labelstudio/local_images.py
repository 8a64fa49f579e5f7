"""Setting up a project from local images: uploads or local-files references, imported in rank order."""

import json
import mimetypes
import os
import urllib.parse

from ...errors import ActiveFTError, InputError
from ._http import TooManyFiles, as_dict, call_sdk, progress_bar, request_json
from .fields import IMAGE_FIELD, VIEW_TITLE
from .projects import label_config, open_project
from .push import IMPORT_BATCH, check_unique_ids, import_task_batch, push_project, tasks_by_stable_id


def upload_images(conn, project_id, paths, *, progress=True):
    """Upload image files to a project without creating tasks; returns their ``/data/upload/...`` URLs.

    Files go in requests of at most ``conn.upload_batch`` files (default
    :data:`UPLOAD_BATCH`; halved for the connection while the server refuses
    that many).  A retried request may leave an unused
    copy of a file on the server (harmless).
    """
    urls = []
    bar = progress_bar(progress, len(paths), "Uploading images", "img")
    start = 0
    while start < len(paths):
        chunk = paths[start:start + conn.upload_batch]
        try:
            urls.extend(_upload_chunk(conn, project_id, chunk))
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


def _upload_chunk(conn, project_id, chunk):
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
                              files=files)
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
    if need and images == "upload":
        # Upload and import chunk by chunk, so an interruption leaves few unused files behind.
        bar = progress_bar(progress, len(need), "Uploading images", "img")
        start = 0
        while start < len(need):
            chunk = need[start:start + min(conn.upload_batch, batch_size)]
            start += len(chunk)
            urls = upload_images(conn, project_id, [e["path"] for e in chunk], progress=False)
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
