"""Bringing a ranking to Label Studio: one prediction per task, the project's model version, the priority view.

:func:`sync_predictions` makes the project hold exactly one prediction of
the ranking's model version per ranked task (empty ``result``, the task's
score) and none of this backend's older versions:

1. list the project's predictions (only when some of the version exist
   already: its count comes first, from the project's model versions);
2. import the missing ones (batches of :data:`BATCH`), except for tasks a
   ``/predict`` answer gave to Label Studio moments ago (Label Studio stores
   those itself);
3. set the project's ``model_version`` to the ranking's (so the Data
   Manager's "Prediction score" column and "Uncertainty sampling" use it):
   the new queue is live;
4. delete this backend's older versions, one request per version (after
   the view, when the backend publishes a new ranking);
5. delete duplicates (two predictions of the version for one task, which a
   "Retrieve predictions" that raced with step 2 can leave).

It is idempotent, so it also serves as the check the backend runs a few
seconds after each ``/predict`` answer.
"""

from ..errors import InputError
from ..connectors.labelstudio import as_dict, call_sdk, request_json
from .scores import is_backend_version

#: Predictions per import request.
BATCH = 500


def list_predictions(conn, project_id):
    """``[(prediction id, task id, model version)]`` of every prediction of the project."""
    found = []
    for prediction in call_sdk(conn, f"list the predictions of project {project_id}", conn.client.predictions.list,
                           project=int(project_id)):
        item = as_dict(prediction)
        found.append((int(item["id"]), int(item["task"]), str(item.get("model_version") or "")))
    return found


def model_versions(conn, project_id):
    """``{model version: number of predictions}`` of the project."""
    answer = request_json(conn, "GET", f"/api/projects/{int(project_id)}/model-versions/",
                     f"list the model versions of project {project_id}")
    return dict(answer) if isinstance(answer, dict) else {}


def delete_model_version(conn, project_id, version):
    """Delete every prediction of ``version`` in the project (one request)."""
    request_json(conn, "DELETE", f"/api/projects/{int(project_id)}/model-versions/",
            f"delete the predictions of model version {version} of project {project_id}",
            json={"model_version": version})


def set_project_model_version(conn, project_id, version):
    """Set the project's model version; False when Label Studio refuses (no prediction of it yet)."""
    project = as_dict(call_sdk(conn, f"read project {project_id}", conn.client.projects.get, id=int(project_id)))
    if project.get("model_version") == version:
        return True
    try:
        call_sdk(conn, f"set the model version of project {project_id}", conn.client.projects.update,
             id=int(project_id), model_version=version)
    except InputError:
        return False
    return True


def sync_predictions(conn, ranking, recently_claimed=(), cleanup=True):
    """Make the project hold one prediction of ``ranking.version`` per task of the ranking (see the module).

    ``recently_claimed``: task ids a ``/predict`` answer just gave to Label
    Studio for this version (not imported here).  With ``cleanup=False``
    the older versions and duplicates are only listed (``stale_versions``,
    ``duplicate_ids``), for :func:`remove_stale` to delete once the new queue
    is live (deleting a version's predictions is the slow part).  Returns a
    dict of counts: ``created``, ``deleted_versions``, ``duplicates``,
    ``model_version_set`` and ``left_to_label_studio`` (claimed tasks that
    have no prediction yet).
    """
    project_id, version = ranking.project, ranking.version
    existing = {}
    duplicates = []
    versions = model_versions(conn, project_id)
    if versions.get(version):  # (a new version has none yet: no need to list every prediction)
        for prediction_id, task_id, their_version in sorted(list_predictions(conn, project_id)):
            if their_version != version:
                continue
            if task_id in existing:
                duplicates.append(prediction_id)
            else:
                existing[task_id] = prediction_id
    claimed = {int(t) for t in recently_claimed}
    absent = [(task, score) for task, score in sorted(ranking.scores.items(), key=lambda kv: (kv[1], kv[0]))
              if task not in existing]
    missing = [(task, score) for task, score in absent if task not in claimed]
    created = 0
    for start in range(0, len(missing), BATCH):
        batch = [{"task": task, "result": [], "score": score, "model_version": version}
                 for task, score in missing[start:start + BATCH]]
        try:
            call_sdk(conn, f"import predictions into project {project_id}", conn.client.projects.import_predictions,
                 id=int(project_id), request=batch)
        except InputError:
            # A task deleted since the ranking makes the whole batch fail: import the tasks that still exist.
            from ..connectors.labelstudio import pull_tasks

            alive = {int(t["id"]) for t in pull_tasks(conn, project_id)}
            batch = [item for item in batch if item["task"] in alive]
            if batch:
                call_sdk(conn, f"import predictions into project {project_id}",
                     conn.client.projects.import_predictions, id=int(project_id), request=batch)
        created += len(batch)
    version_set = set_project_model_version(conn, project_id, version) if (existing or created) else False
    stale = sorted(other for other, count in versions.items()
                   if other != version and is_backend_version(other) and count)
    counts = {"created": created, "deleted_versions": 0, "duplicates": len(duplicates),
              "model_version_set": version_set, "left_to_label_studio": len(absent) - len(missing),
              "stale_versions": stale, "duplicate_ids": duplicates}
    if cleanup:
        counts["deleted_versions"] = remove_stale(conn, project_id, stale, duplicates)
    return counts


def remove_stale(conn, project_id, stale_versions, duplicate_ids=()):
    """Delete this backend's older versions (one request each) and duplicate predictions; returns the versions
    deleted."""
    for other in stale_versions:
        delete_model_version(conn, project_id, other)
    for prediction_id in duplicate_ids:
        try:
            call_sdk(conn, "delete a duplicate prediction", conn.client.predictions.delete, id=prediction_id)
        except InputError:
            pass  # already gone
    return len(stale_versions)


def push_ranks(conn, ranking):
    """``--view rank``: write ``activeft_rank`` into the selected tasks (cleared elsewhere) and keep the priority
    view ordered by it, as ``activeft labelstudio select`` does (one task update per changed rank)."""
    from ..connectors.labelstudio import push_view

    ranks = {int(task): rank for rank, task in enumerate(ranking.ranked, start=1)}
    return push_view(conn, ranking.project, ranks, progress=False)


SCORE_COLUMN = "tasks:predictions_score"


def score_view_data(conn, ranking):
    """``--view score``: the priority view's data, ordered by prediction score and showing only the selection.

    The columns are those of :func:`~activeft_label.connectors.labelstudio.priority_view_data` (the image
    first), with the prediction score shown instead of the rank field.  The filter keeps the scores below that
    of the unselected tasks, so the view changes only when the budget does: a re-rank writes no task data.
    """
    from ..connectors.labelstudio import RANK_FIELD, priority_view_data

    data = priority_view_data(conn, ranking.project)
    selected = len(ranking.ranked)
    threshold = (selected + 0.5) / (selected + 2)
    rank_column = f"tasks:data.{RANK_FIELD}"
    hidden = {key: [c for c in columns if c != SCORE_COLUMN] + ([rank_column] if rank_column not in columns else [])
              for key, columns in (data.get("hiddenColumns") or {}).items()}
    data.update(ordering=[SCORE_COLUMN], hiddenColumns=hidden, columnsDisplayType={},
                filters={"conjunction": "and", "items": [{"filter": f"filter:{SCORE_COLUMN}", "operator": "less",
                                                          "type": "Number", "value": threshold}]})
    return data


def push_score_view(conn, ranking):
    """Create or update the priority view of :func:`score_view_data`; returns its id."""
    from ..connectors.labelstudio import VIEW_TITLE

    project_id = ranking.project
    data = score_view_data(conn, ranking)
    views = [as_dict(v) for v in call_sdk(conn, f"list the views of project {project_id}", conn.client.views.list,
                                      project=int(project_id))]
    ours = sorted((v for v in views if (v.get("data") or {}).get("title") == VIEW_TITLE), key=lambda v: v["id"])
    if not ours:
        view = as_dict(call_sdk(conn, f"create the {VIEW_TITLE!r} view", conn.client.views.create,
                            project=int(project_id), data=data))
        return int(view["id"])
    view_id = int(ours[0]["id"])
    stored = ours[0].get("data") or {}
    if any(stored.get(key) != value for key, value in data.items() if key != "filters") or [
            {k: item.get(k) for k in ("filter", "operator", "type", "value")}
            for item in (stored.get("filters") or {}).get("items") or []] != data["filters"]["items"]:
        call_sdk(conn, f"update view {view_id}", conn.client.views.update, id=str(view_id), project=int(project_id),
             data=data)
    return view_id


def refresh_ml_backends(conn, project_id):
    """Ask Label Studio to re-read its ML backends' state (it calls their /setup and stores the model version).

    Returns the project's ML backends as dicts; failures are ignored (cosmetic: Label Studio asks again before
    every "Retrieve predictions").
    """
    try:
        return [as_dict(ml) for ml in call_sdk(conn, f"list the ML backends of project {project_id}",
                                           conn.client.ml.list, project=int(project_id), retry=False)]
    except Exception:  # noqa: BLE001 - the state shown in Settings > Model only
        return []
