"""A Label Studio ML backend: connect ActiveFT to a project, and its queue re-ranks as annotators work.

Start it with ``activeft labelstudio serve --host 127.0.0.1 --port 9090``
(``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` name the server whose
projects it reads), connect a project with ``activeft labelstudio connect
--project ID --backend-url URL`` or Settings → Model → Connect model.  It
speaks label-studio-ml-backend's protocol (``/health``, ``/setup``,
``/predict``, ``/webhook``; :mod:`.app`) on Starlette served by uvicorn: the
``label-studio-ml`` package pins Flask 1.1.2 and does not install beside a
current Label Studio and FiftyOne.

What it does
------------
On a project's ``/setup`` (Label Studio sends one when the model is
connected and before every "Retrieve predictions") or first ``/predict``, a
worker thread reads every task of the project (paginated), fetches and
embeds their images (both cached on disk: ``--cache-dir``), selects
``--budget`` tasks with ``--method`` (annotated tasks are fixed centroids,
as ``--labeled``) and scores every task (:mod:`.scores`).  ``/predict``
answers any subset of tasks from that ranking at once, without embedding.
Annotation webhooks (``ANNOTATION_CREATED`` / ``UPDATED`` / ``DELETED``, the
bulk forms, ``START_TRAINING``, new or deleted tasks) re-rank the project.

Decisions
---------
Score encoding
    rank ``r`` of ``B`` selected tasks scores ``r / (B + 2)``; the other
    unannotated readable tasks ``(B + 1) / (B + 2)``, all after every selected
    one; annotated tasks and unreadable images ``1.0``, last.  Lowest first
    ("Uncertainty sampling") and an ascending sort of "Prediction score" both
    serve rank 1 first.
Model version
    ``activeft-<n>-<key>``, ``n`` the project's ranking count, ``key`` the
    first 8 hex digits of a SHA-256 of the ranking's inputs (tasks, image
    references, features, annotated tasks, budget, selection and encoder
    settings, package version).  A re-rank whose inputs did not change (an
    annotation edited) keeps the version and writes nothing.
    ``activeft-pending`` is reported while a project's first ranking runs.
Persistence
    every complete ranking is written to ``<state dir>/<server>/project-<id>.json``
    (default state dir ``<cache dir>/labelstudio/backend``; ``--state-dir``)
    atomically: temp file, fsync, rename, fsync of the folder.  A backend
    killed mid-re-rank leaves the last complete ranking, and a restarted one
    serves it at once; its first ``/setup`` or ``/predict`` of each project
    then reads the project again and re-ranks if anything changed while it
    was down.  A ranking killed before its predictions reached Label Studio
    is published on restart.  (:mod:`.state`)
Debounce
    an event asks for a re-rank ``--debounce`` s (default 2) after the last
    event of a burst, at most ``--max-delay`` s (default 30) after its first;
    events during a re-rank give one more re-rank after it.  Every slow job
    runs in one worker thread, one at a time, so ``/health``, ``/setup`` and
    ``/predict`` answer while a re-rank runs.  (:mod:`.debounce`, :mod:`.service`)
How a ranking reaches Label Studio
    after each new ranking the backend itself makes the project hold one
    prediction of the new version per task (imported in batches through the
    SDK, empty ``result``, the task's score), sets the project's model
    version to it (what the Data Manager's "Prediction score" column and
    "Uncertainty sampling" read), deletes its older versions' predictions
    (one request per version), keeps the Data Manager view "ActiveFT
    priority": the selection ordered by prediction score (``--view score``,
    the default: one view update, no task data written, whatever the
    project's size), or ordered by ``activeft_rank`` written into the
    selected tasks as ``labelstudio select`` does (``--view rank``: one task
    update per changed rank, ~0.1 s each on a SQLite Label Studio), and asks
    Label Studio to re-read the ML backend's state (so Settings → Model shows
    the version).  Tasks that a ``/predict`` answer
    gave to Label Studio are left to it, and a check a few seconds after
    each answer removes duplicates (a "Retrieve predictions" racing the
    import).  (:mod:`.publish`)
Prediction ``result``
    always empty: the backend ranks, it has no classifier to pre-annotate
    with, and an empty result pre-fills nothing for the annotator.  Label
    names are therefore never mapped.
Bad input
    a label config without an ``<Image>`` object is refused at ``/setup`` and
    ``/predict`` (HTTP 422, the reason in the body and the log), so
    connecting the model fails; tasks whose image cannot be read are ranked
    last and listed (log, ``/health``, ``/rankings/<id>``); a refused API key
    or unreachable server makes ``/health`` answer 503 with the reason (the
    key is scrubbed from every message and log line); every project has its
    own ranking, state file and model versions.

Label Studio 1.23 refuses ML backends and webhooks on local or private
addresses unless it runs with ``ML_BLOCK_LOCAL_IP=false`` and
``SSRF_PROTECTION_ENABLED=false``.

Modules: :mod:`.settings`, :mod:`.scores`, :mod:`.debounce`, :mod:`.state`,
:mod:`.ranker` (one ranking), :mod:`.publish` (to Label Studio, through
the connector's calls: retries, errors without the key), :mod:`.service` (the
:class:`Backend` and its worker), :mod:`.app` (the web face) and
:mod:`.server` (uvicorn).
"""

from .debounce import Debouncer
from .scores import PENDING_VERSION, is_backend_version, model_version, order_by_score, priority_scores
from .service import Backend, NotReady
from .settings import SETTINGS_ENV, Settings
from .state import Ranking, load_ranking, save_ranking

__all__ = ["Backend", "Debouncer", "NotReady", "PENDING_VERSION", "Ranking", "SETTINGS_ENV", "Settings",
           "create_app", "is_backend_version", "load_ranking", "model_version", "order_by_score", "priority_scores",
           "save_ranking", "serve"]


def create_app(backend, basic_auth=None, start=True):
    """The Starlette application of ``backend`` (see :func:`.app.create_app`)."""
    from .app import create_app as make

    return make(backend, basic_auth=basic_auth, start=start)


def serve(settings, api_key=None, basic_auth=None):
    """Serve until interrupted (see :func:`.server.serve`)."""
    from .server import serve as run

    return run(settings, api_key=api_key, basic_auth=basic_auth)
