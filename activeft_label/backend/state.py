"""A project's ranking and how it is kept on disk, so a restarted backend serves the last complete one.

One JSON file per project, ``<state dir>/project-<id>.json``.  It is written
only when a ranking is complete (and again when its predictions have reached
Label Studio), always whole: to a hidden temporary file beside it, flushed
and fsync'ed, then renamed over the old one (and the folder fsync'ed), so a
backend killed at any moment leaves either the previous complete ranking or
the new one, never a half-written file.  A file that is unreadable, of
another format or inconsistent is ignored (the project is ranked again).
"""

import datetime
import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, field

#: Format of the state files; files of another format are ignored.
STATE_FORMAT = 1


@dataclass
class Ranking:
    """A complete ranking of one project.

    Attributes
    ----------
    project : int
        The project id.
    project_uid : str or None
        ``"<id>.<created_at timestamp>"`` as Label Studio names the project to
        its ML backends; a project of the same id with another uid (a new
        server or database) does not get this ranking.
    version : str
        The model version (see :mod:`.scores`).
    counter : int
        The how-many-th ranking of the project this is.
    key : str
        SHA-256 (hex) of the ranking's inputs.
    scores : dict {int: float}
        The score of every task of the project at ranking time.
    ranked : list of int
        The selected task ids, rank 1 first.
    labeled : list of int
        Annotated tasks (fixed centroids of the selection).
    skipped : list of [int, str]
        Tasks whose image could not be read, with the reason (scored last).
    budget : int
        Tasks selected (the budget as a count, at most the unannotated readable tasks).
    image_field : str
    created_at : str
        ISO time the ranking was completed.
    elapsed : float
        Seconds the ranking took (pull, images, embedding, selection).
    published : bool
        Whether its predictions (and ranks) have reached Label Studio.
    """

    project: int
    version: str
    counter: int
    key: str
    scores: dict
    ranked: list
    labeled: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    budget: int = 0
    image_field: str = "image"
    project_uid: str = None
    created_at: str = ""
    elapsed: float = 0.0
    published: bool = False

    def score(self, task_id):
        return self.scores.get(int(task_id))

    def as_json(self):
        record = asdict(self)
        record["format"] = STATE_FORMAT
        record["scores"] = [[int(task), float(score)] for task, score in sorted(self.scores.items())]
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """The Ranking of a state file's text, or None when it is not a consistent ranking of this format."""
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
                return None
            scores = {int(task): float(score) for task, score in record["scores"]}
            ranked = [int(t) for t in record["ranked"]]
            ranking = cls(project=int(record["project"]), version=str(record["version"]),
                          counter=int(record["counter"]), key=str(record["key"]), scores=scores, ranked=ranked,
                          labeled=[int(t) for t in record.get("labeled") or []],
                          skipped=[[int(t), str(reason)] for t, reason in record.get("skipped") or []],
                          budget=int(record.get("budget") or 0), image_field=str(record.get("image_field") or ""),
                          project_uid=record.get("project_uid"), created_at=str(record.get("created_at") or ""),
                          elapsed=float(record.get("elapsed") or 0.0), published=bool(record.get("published")))
        except (ValueError, KeyError, TypeError):
            return None
        if len(set(ranked)) != len(ranked) or any(task not in scores for task in ranked):
            return None
        if [scores[t] for t in ranked] != sorted(scores[t] for t in ranked):
            return None
        return ranking


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def state_folder(base, label_studio_url):
    """The state folder of one Label Studio server under ``base``: ``<base>/<hash of the server URL>``."""
    host = hashlib.sha1(str(label_studio_url).rstrip("/").encode("utf-8")).hexdigest()[:12]
    return os.path.join(base, host)


def state_path(folder, project_id):
    return os.path.join(folder, f"project-{int(project_id)}.json")


def save_ranking(folder, ranking):
    """Write ``ranking`` atomically (temp file, fsync, rename, fsync of the folder); returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = state_path(folder, ranking.project)
    data = ranking.as_json().encode("utf-8")
    tmp = os.path.join(folder, f".project-{int(ranking.project)}.json.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def load_ranking(folder, project_id):
    """The ranking stored for ``project_id``, or None (no file, unreadable, other format, inconsistent)."""
    try:
        with open(state_path(folder, project_id), encoding="utf-8") as handle:
            ranking = Ranking.from_json(handle.read())
    except (OSError, UnicodeDecodeError):
        return None
    if ranking is None or ranking.project != int(project_id):
        return None
    return ranking


def stored_projects(folder):
    """Project ids that have a state file in ``folder`` (temporary files are not state files)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith("project-") and name.endswith(".json"):
            try:
                found.append(int(name[len("project-"):-len(".json")]))
            except ValueError:
                continue
    return sorted(found)


def remove_stale_temporaries(folder):
    """Delete the temporary files a killed backend left beside its state files."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".project-") and ".json." in name:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
