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
    to the folder (see :func:`activeft_label.files.pool.load_pool`); for a task
    pulled from a project, its own ``activeft_id`` if it has one, else
    ``"labelstudio:<project>/<task>"``.  Pushes look tasks up by this id, so
    pushing again updates tasks instead of duplicating them.
``activeft_rank``
    Annotation priority, 1 = annotate first.  Tasks of an earlier selection
    that are not in the new one lose this field.

A Data Manager view titled ``"ActiveFT priority"`` (created or replaced on
every push) shows only the tasks that have a rank, ordered by rank, so
"Label tasks as displayed" serves them in priority order; its columns are
the image (the label config's data fields) and the rank, first, with the
task columns and the other data hidden (:func:`priority_view_data`).  Optionally each
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
the tasks that the server does not hold yet, and an upload only for the
files it did not store.  Image files that an interrupted run uploaded but
did not import are reused by the next run (:class:`UnusedUploads`), so the
server holds each image once.  Annotations are read from the paginated task
list (:func:`export_tasks`), not the deprecated project export.  Every step is idempotent, so a
push that failed half-way is completed by running it again.

Modules
-------
:mod:`.fields` (what the connector writes into tasks), :mod:`.client`
(connection), :mod:`._http` (retries, errors), :mod:`.sdk_internals` (the
SDK's private names it needs), :mod:`.projects`, :mod:`.pull` (tasks and
their images into a pool), :mod:`.push` (a ranking into a project),
:mod:`.annotations` (labels back out), :mod:`.local_images` (a project
from local files, reusing the uploads an interrupted run left),
:mod:`.selection_record` (the recorded selection a re-run of a setup
reuses) and :mod:`.prioritize` (the whole job on an existing project).
Everything public is importable from this package.
"""

from .annotations import (ANNOTATION_PAGE_SIZE, EXPORT_FIELDS, SUPPORTED_CONTROLS, TaskAnnotation, export_tasks,
                          label_controls, read_annotations)
from ._http import as_dict, call_sdk, request_json
from .client import UPLOAD_BATCH, Connection, connect
from .fields import ID_FIELD, MODEL_VERSION, RANK_FIELD, VIEW_TITLE
from .local_images import (UnusedUploads, check_images_option, push_images, setup_project, stored_file_name,
                           upload_images)
from .prioritize import prioritize
from .projects import (
    TITLE_LENGTH, check_title, create_project, find_project, get_project, has_label_config, label_config,
    open_project, parse_labels, project_url,
)
from .pull import PAGE_SIZE, LabelStudioPool, embed_tasks, image_field, pull_project, pull_tasks, stable_id
from .push import IMPORT_BATCH, PushReport, ensure_priority_view, priority_view_data, push_project, push_view
from .selection_record import load_selection, records_folder, save_selection, select_or_reuse, selection_key

__all__ = [
    "ID_FIELD", "RANK_FIELD", "VIEW_TITLE", "MODEL_VERSION", "Connection", "LabelStudioPool", "PushReport", "connect",
    "get_project", "find_project", "pull_tasks", "image_field", "embed_tasks", "pull_project", "push_view",
    "push_project", "ensure_priority_view", "label_config", "create_project", "upload_images", "prioritize",
    "setup_project", "parse_labels", "project_url", "stable_id", "open_project", "push_images", "has_label_config",
    "check_images_option", "check_title", "TITLE_LENGTH", "label_controls", "TaskAnnotation", "export_tasks",
    "read_annotations", "SUPPORTED_CONTROLS", "IMPORT_BATCH",
    "UPLOAD_BATCH", "PAGE_SIZE", "UnusedUploads", "stored_file_name", "priority_view_data", "select_or_reuse",
    "selection_key", "load_selection", "save_selection", "records_folder", "ANNOTATION_PAGE_SIZE", "EXPORT_FIELDS",
    "call_sdk", "request_json", "as_dict",
]
