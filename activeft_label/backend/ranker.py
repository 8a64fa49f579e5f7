"""Ranking one project: read its tasks, embed their images (cached), select, and score every task."""

import hashlib
import inspect
import json
import time
import xml.etree.ElementTree as ET

import numpy as np

from ..errors import InputError
from .scores import model_version, priority_scores
from .state import Ranking, now_iso

#: Format of the inputs key (a new format gives every project a new version).
KEY_FORMAT = 1


def image_object(config):
    """The task data field of the label config's first ``<Image>`` object (``value="$field"``).

    Raises InputError when the config has none: this backend ranks images.
    """
    try:
        root = ET.fromstring(config or "")
    except ET.ParseError as exc:
        raise InputError(f"the project's label config is not valid XML ({exc})") from None
    for element in root.iter():
        if element.tag == "Image":
            value = str(element.get("value") or "")
            if value.startswith("$") and len(value) > 1:
                return value[1:]
    tags = sorted({element.tag for element in root.iter() if element.get("value", "").startswith("$")})
    found = f" (its objects: {', '.join(tags)})" if tags else ""
    raise InputError(f"the project's label config has no <Image> object with value=\"$field\"{found}; the ActiveFT "
                     f"backend ranks images, so connect it to an image project")


def inputs_key(pool, tasks, labeled, budget, settings):
    """SHA-256 (hex) of everything a ranking depends on: the tasks, their images and features, the annotated
    tasks, the budget (as a count) and the selection and embedding settings, and the package version."""
    from ..version import __version__

    embedding = {key: settings.embedding.get(key) for key in ("model", "pretrained", "precision")}
    header = {"format": KEY_FORMAT, "version": __version__, "budget": int(budget),
              "selection": {key: settings.selection[key] for key in sorted(settings.selection)},
              "embedding": embedding, "precision": pool.precision, "field": pool.image_field,
              "features": [str(pool.features.dtype), list(pool.features.shape)]}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode("utf-8"))
    digest.update(json.dumps([[int(t["id"]), str(t["data"].get(pool.image_field))] for t in tasks]).encode("utf-8"))
    digest.update(json.dumps(sorted(int(t) for t in labeled)).encode("utf-8"))
    digest.update(json.dumps([int(r) for r in pool.rows]).encode("utf-8"))
    digest.update(memoryview(np.ascontiguousarray(pool.features)).cast("B"))
    return digest.hexdigest()


def budget_count(budget, readable, labeled):
    """Tasks to select: the budget as a count of the readable tasks, at most the unannotated readable ones.

    A percentage is of every readable task (annotated ones included) and
    selects at least one; a count larger than the project queues every
    unannotated task (a backend serves projects of every size, so neither is
    an error here).
    """
    import math

    from ..budget import check_budget_form

    available = readable - labeled
    if available <= 0:
        return 0
    check_budget_form(budget)
    text = str(budget).strip()
    if text.endswith("%"):
        count = max(1, math.floor(readable * float(text[:-1]) / 100.0 + 0.5))
    else:
        count = int(float(text))
    return min(count, available)


def rank_project(conn, project_id, settings, previous=None, counter_floor=0):
    """Rank a project; returns ``(Ranking, changed)``.

    ``changed`` is False when the inputs are those of ``previous`` (then
    ``previous`` is returned as it is).  The new ranking's counter follows
    ``previous``'s (or ``counter_floor``).  Raises InputError for a project
    whose config has no image object, that has no tasks, or none of whose
    images can be read.
    """
    from ..connectors.labelstudio import embed_tasks, get_project, pull_tasks
    from ..selection import select

    started = time.perf_counter()
    project = get_project(conn, project_id)
    field = image_object(project.get("label_config"))
    tasks = pull_tasks(conn, project["id"])
    if not tasks:
        raise InputError(f"project {project['id']} has no tasks yet; import some (the backend ranks them when "
                         f"Label Studio reports new tasks or annotations, or on the next 'Retrieve predictions')")
    accepted = inspect.signature(embed_tasks).parameters
    options = {key: value for key, value in settings.embedding.items() if key in accepted}
    if options.get("num_workers") is None:
        options["num_workers"] = 0  # image loading in this process: no fork from a threaded server
    pool = embed_tasks(conn, project, tasks, field, device=settings.device, progress=False, **options)
    labeled_tasks = sorted(int(t["id"]) for t in tasks if t["annotations"] > 0)
    count = budget_count(settings.budget, len(pool), int(pool.labeled.size))
    key = inputs_key(pool, tasks, labeled_tasks, count, settings)
    if previous is not None and previous.key == key:
        return previous, False

    ranked = []
    if count:
        kwargs = dict(settings.selection)
        method = kwargs.pop("method")
        result = select(pool.features, count, method, fixed=pool.labeled if pool.labeled.size else None,
                        device=settings.device, progress=False, **kwargs)
        ranked = pool.task_ids(result.ranked_indices)
    readable = set(pool.task_ids(range(len(pool))))
    labeled = set(labeled_tasks)
    chosen = set(ranked)
    others = [int(t["id"]) for t in tasks if int(t["id"]) in readable and int(t["id"]) not in labeled
              and int(t["id"]) not in chosen]
    last = [int(t["id"]) for t in tasks if int(t["id"]) in labeled or int(t["id"]) not in readable]
    scores = priority_scores(ranked, others, last)
    counter = max(previous.counter if previous is not None else 0, int(counter_floor)) + 1
    uid = None
    created = project.get("created_at")
    if created is not None:
        uid = project_uid(project["id"], created)
    ranking = Ranking(project=int(project["id"]), version=model_version(counter, key), counter=counter, key=key,
                      scores=scores, ranked=ranked, labeled=labeled_tasks,
                      skipped=[[int(t), str(reason)] for t, reason in pool.skipped], budget=count,
                      image_field=field, project_uid=uid, created_at=now_iso(),
                      elapsed=time.perf_counter() - started, published=False)
    return ranking, True


def project_uid(project_id, created_at):
    """``"<id>.<unix time of created_at>"``, the name Label Studio gives a project in ML backend requests."""
    import datetime

    if isinstance(created_at, str):
        text = created_at.replace("Z", "+00:00")
        try:
            created_at = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
    if isinstance(created_at, datetime.datetime):
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=datetime.timezone.utc)
        return f"{int(project_id)}.{int(created_at.timestamp())}"
    return None
