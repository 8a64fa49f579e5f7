"""The HTTP face of the backend: label-studio-ml-backend's protocol on Starlette.

Routes (as Label Studio 1.23 calls them):

``GET /health`` (and ``GET /``)
    ``{"status": "UP", "model_class": "ActiveFT", ...}`` with HTTP 200, and
    the state of every project; HTTP 503 with ``"status": "ERROR"`` and the
    reason while the backend cannot use Label Studio (a refused API key, an
    unreachable server), so Label Studio refuses to connect and says why.
``POST /setup``
    ``{"project": "<id>.<created>", "schema": <label config>, ...}`` →
    ``{"model_version": ...}``: the project's current ranking, or
    ``activeft-pending`` while its first ranking runs (started here).  A
    config without an ``<Image>`` object is refused with HTTP 422 and
    ``{"error": ...}``.  Label Studio allows /setup 3 s, so it never waits.
``POST /predict``
    ``{"tasks": [...], "project": ..., "label_config": ...}`` →
    ``{"results": [{"result": [], "score": s, "model_version": v}, ...]}``,
    one per task, in order, from the stored ranking (no embedding).  Before a
    project's first ranking is complete it waits for it (at most
    ``predict_wait`` s, then HTTP 503).
``POST /webhook``
    ``{"action": ..., "project": {...}, ...}``: annotation events
    (:data:`RERANK_EVENTS`) ask for a debounced re-rank; HTTP 201.  Other
    events: HTTP 200 ``{"status": "Unknown event"}``.
``POST /train``
    Label Studio's training request without webhooks: a re-rank, as ``START_TRAINING``.
``GET /versions``, ``GET /metrics``
    The project's current model version; ``{}``.
``GET /rankings/<id>``
    This backend's own: the project's ranking (version, selected task ids in
    rank order, every task's score, unreadable tasks).

Optional HTTP basic auth on every route (``BASIC_AUTH_USER`` /
``BASIC_AUTH_PASS``, as the reference backend).
"""

import asyncio
import base64
import binascii
import hmac
import logging
import time

from ..errors import ActiveFTError, InputError
from .ranker import image_object
from .service import NotReady

log = logging.getLogger("activeft.backend")

#: Webhook actions that change what a ranking depends on (Label Studio 1.23 sends the plural forms for bulk
#: changes and ANNOTATIONS_DELETED for deletions; ANNOTATION_DELETED is the protocol's name).
RERANK_EVENTS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                 "ANNOTATIONS_DELETED", "START_TRAINING", "TASKS_CREATED", "TASKS_DELETED")


def parse_project(value):
    """``(id, uid or None)`` of a request's ``project``: ``"12.1712345678"``, ``12``, ``"12"`` or ``{"id": 12}``."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool) or value is None:
        raise InputError("the request names no project")
    if isinstance(value, int):
        return value, None
    text = str(value).strip()
    head, _, tail = text.partition(".")
    try:
        project_id = int(head)
    except ValueError:
        raise InputError(f"the request's project {text[:40]!r} is not '<id>' or '<id>.<timestamp>'") from None
    if project_id <= 0:
        raise InputError(f"the request's project id must be above 0, got {project_id}")
    return project_id, (text if tail else None)


def task_ids(tasks):
    ids = []
    for task in tasks or ():
        try:
            ids.append(int(task["id"] if isinstance(task, dict) else task))
        except (KeyError, TypeError, ValueError):
            raise InputError("every task of a /predict request needs an integer 'id'") from None
    return ids


class BasicAuth:
    """ASGI middleware: HTTP basic auth on every request."""

    def __init__(self, app, user, password):
        self.app = app
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self._allowed(dict(scope.get("headers") or [])):
            await self.app(scope, receive, send)
            return
        from starlette.responses import Response

        response = Response("Unauthorized", status_code=401, headers={"WWW-Authenticate": 'Basic realm="ActiveFT"'})
        await response(scope, receive, send)

    def _allowed(self, headers):
        value = headers.get(b"authorization", b"")
        if not value[:6].lower() == b"basic ":
            return False
        try:
            user, _, password = base64.b64decode(value[6:].strip(), validate=True).partition(b":")
        except (ValueError, binascii.Error):
            return False
        return hmac.compare_digest(user, self.user) & hmac.compare_digest(password, self.password)


def create_app(backend, basic_auth=None, start=True):
    """The Starlette application serving ``backend`` (a :class:`~.service.Backend`).

    ``basic_auth``: ``(user, password)`` to require; ``start``: start and stop
    the backend with the application (its lifespan).
    """
    import contextlib

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def read_json(request):
        try:
            data = await request.json()
        except ValueError:
            raise InputError("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise InputError("the request body is not a JSON object")
        return data

    def error(status, message):
        return JSONResponse({"status": "error", "error": message}, status_code=status)

    def guarded(handler):
        async def wrapper(request):
            try:
                return await handler(request)
            except InputError as exc:
                return error(400, backend.scrub(str(exc)))
            except ActiveFTError as exc:
                return error(500, backend.scrub(str(exc)))
        wrapper.__name__ = handler.__name__
        return wrapper

    def refused_config(project_id, config):
        """The error response for a label config without an image object (None when it has one)."""
        if not config:
            return None
        try:
            image_object(config)
        except InputError as exc:
            message = f"project {project_id}: {exc}"
            backend.record_error(project_id, message)
            return error(422, message)
        return None

    async def health(request):
        status, body = backend.health()
        return JSONResponse(body, status_code=status)

    async def setup(request):
        data = await read_json(request)
        project_id, uid = parse_project(data.get("project"))
        refused = refused_config(project_id, data.get("schema") or data.get("label_config"))
        if refused is not None:
            return refused
        if backend.conn is None:
            status, body = backend.health()
            return error(503, body.get("error") or "not connected to Label Studio")
        version = backend.setup(project_id, uid)
        log.debug("project %s: /setup answered %s", project_id, version)
        return JSONResponse({"model_version": version})

    async def predict(request):
        started = time.perf_counter()
        data = await read_json(request)
        project_id, uid = parse_project(data.get("project"))
        ids = task_ids(data.get("tasks"))
        refused = refused_config(project_id, data.get("label_config"))
        if refused is not None:
            return refused
        if backend.conn is None:
            status, body = backend.health()
            return error(503, body.get("error") or "not connected to Label Studio")
        deadline = time.monotonic() + backend.settings.predict_wait
        asked = False
        while True:
            try:
                version, scores = backend.answer(project_id, ids, uid)
                break
            except NotReady:
                if not asked:
                    backend.setup(project_id, uid)  # starts the first ranking if none runs
                    asked = True
                    continue
                entry = backend.project(project_id)
                if entry.status == "error":
                    backend.release_pending_claims(project_id, ids)
                    return error(422, entry.error or f"project {project_id} could not be ranked")
                if time.monotonic() >= deadline:
                    backend.release_pending_claims(project_id, ids)
                    return error(503, f"project {project_id} is still being ranked (its first ranking); its "
                                      f"predictions reach Label Studio when it is done, or retrieve them again")
                await asyncio.sleep(0.2)
        log.info("project %s: /predict for %d task(s) answered with %s in %.0f ms", project_id, len(ids), version,
                 (time.perf_counter() - started) * 1000)
        return JSONResponse({"results": [{"result": [], "score": score, "model_version": version}
                                         for score in scores]})

    async def webhook(request):
        data = await read_json(request)
        action = data.get("action")
        if action not in RERANK_EVENTS:
            return JSONResponse({"status": "Unknown event"}, status_code=200)
        project_id, _ = parse_project(data.get("project"))
        backend.event(project_id, action)
        return JSONResponse({"status": "ok", "result": "re-rank scheduled"}, status_code=201)

    async def train(request):
        data = await read_json(request)
        project_id, _ = parse_project(data.get("project"))
        backend.event(project_id, "START_TRAINING")
        return JSONResponse({"status": "ok"})

    async def versions(request):
        project_id = None
        body = await request.body()
        if body:
            try:
                project_id, _ = parse_project((await read_json(request)).get("project"))
            except InputError:
                project_id = None
        found = backend.versions(project_id)
        return JSONResponse({"versions": found})

    async def metrics(request):
        return JSONResponse({})

    async def ranking(request):
        try:
            project_id = int(request.path_params["project"])
        except ValueError:
            return error(404, "no such project")
        found = backend.ranking_of(project_id)
        if found is None:
            return error(404, f"project {project_id} has no ranking yet")
        return JSONResponse(found)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if start:
            backend.start()
        try:
            yield
        finally:
            if start:
                backend.stop()

    routes = [
        Route("/", guarded(health), methods=["GET"]),
        Route("/health", guarded(health), methods=["GET"]),
        Route("/setup", guarded(setup), methods=["POST"]),
        Route("/predict", guarded(predict), methods=["POST"]),
        Route("/webhook", guarded(webhook), methods=["POST"]),
        Route("/train", guarded(train), methods=["POST"]),
        Route("/versions", guarded(versions), methods=["GET", "POST"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
        Route("/rankings/{project}", guarded(ranking), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    if basic_auth:
        user, password = basic_auth
        return BasicAuth(app, user, password)
    return app
