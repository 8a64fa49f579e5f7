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

Modules
-------
:mod:`.fields` (what the connector writes into tasks), :mod:`.client`
(connection), :mod:`._http` (retries, errors), :mod:`.sdk_internals` (the
SDK's private names it needs), :mod:`.projects`, :mod:`.pull` (tasks and
their images into a pool), :mod:`.push` (a ranking into a project),
:mod:`.annotations` (labels back out), :mod:`.local_images` (a project
from local files) and :mod:`.prioritize` (the whole job on an existing
project).  Everything public is importable from this package.
"""

from .annotations import SUPPORTED_CONTROLS, TaskAnnotation, export_tasks, label_controls, read_annotations
from .client import UPLOAD_BATCH, Connection, connect
from .fields import ID_FIELD, MODEL_VERSION, RANK_FIELD, VIEW_TITLE
from .local_images import check_images_option, push_images, setup_project, upload_images
from .prioritize import prioritize
from .projects import (
    TITLE_LENGTH, check_title, create_project, find_project, get_project, has_label_config, label_config,
    open_project, parse_labels, project_url,
)
from .pull import PAGE_SIZE, LabelStudioPool, embed_tasks, image_field, pull_project, pull_tasks, stable_id
from .push import IMPORT_BATCH, PushReport, ensure_priority_view, push_project, push_view

__all__ = [
    "ID_FIELD", "RANK_FIELD", "VIEW_TITLE", "MODEL_VERSION", "Connection", "LabelStudioPool", "PushReport", "connect",
    "get_project", "find_project", "pull_tasks", "image_field", "embed_tasks", "pull_project", "push_view",
    "push_project", "ensure_priority_view", "label_config", "create_project", "upload_images", "prioritize",
    "setup_project", "parse_labels", "project_url", "stable_id", "open_project", "push_images", "has_label_config",
    "check_images_option", "check_title", "TITLE_LENGTH", "label_controls", "TaskAnnotation", "export_tasks",
    "read_annotations", "SUPPORTED_CONTROLS", "IMPORT_BATCH",
    "UPLOAD_BATCH", "PAGE_SIZE",
]
