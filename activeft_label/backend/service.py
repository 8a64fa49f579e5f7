"""The backend's state and its worker: one ranking per project, re-ranked in a thread of its own.

:class:`Backend` holds the connection to Label Studio, a :class:`Project`
entry per project it has heard of, and one worker thread that does every
slow job (ranking, publishing, checking), one at a time, in the order they
fall due (:class:`~.debounce.Debouncer`).  The web handlers only read and
poke this state, so ``/health`` and ``/predict`` answer at once while a
re-rank runs.
"""

import logging
import threading
import time

from ..errors import ActiveFTError, InputError
from .debounce import Debouncer
from .scores import PENDING_VERSION, unranked_score
from .state import load_ranking, remove_stale_temporaries, save_ranking, state_folder, stored_projects

log = logging.getLogger("activeft.backend")

#: Seconds between attempts to reach a Label Studio server that did not answer.
RECONNECT_EVERY = 5.0

RANK, CHECK = "rank", "check"
#: Selected and unreadable tasks listed per project in /health (all of them: /rankings/<id>).
SHOWN = 100


class NotReady(ActiveFTError):
    """The project has no complete ranking yet (it is being made)."""


class Project:
    """What the backend knows of one project.

    ``ranking`` is the last complete :class:`~.state.Ranking` (or None);
    ``status`` one of ``new``, ``queued``, ``ranking``, ``publishing``,
    ``ready`` and ``error`` (with ``error`` its message); ``claims`` maps
    task ids to ``(version, time)`` of the ``/predict`` answers that Label
    Studio stores itself; ``pending_claims`` are tasks a waiting ``/predict``
    will answer with the first ranking.  ``checked``: the project was read
    from Label Studio since this process started (a restarted backend
    catches up on what changed while it was down).
    """

    def __init__(self, project_id):
        self.id = int(project_id)
        self.uid = None
        self.ranking = None
        self.status = "new"
        self.error = None
        self.claims = {}
        self.pending_claims = set()
        self.checked = False
        self.rankings = 0       # rankings completed by this process
        self.failures = 0       # jobs failed in a row
        self.counter_floor = 0  # rankings counted before (of a dropped ranking)
        self.phases = None      # seconds of each step of the latest publication
        self.last_job = None    # {"kind", "seconds", "changed", "at"} of the latest job

    def summary(self):
        ranking = self.ranking
        info = {"status": self.status, "error": self.error,
                "model_version": ranking.version if ranking else None,
                "published": ranking.published if ranking else False,
                "rankings_since_start": self.rankings, "last_job": self.last_job, "phases": self.phases}
        if ranking is not None:
            info.update(tasks=len(ranking.scores), selected=len(ranking.ranked), annotated=len(ranking.labeled),
                        unreadable=len(ranking.skipped),
                        skipped=[{"task": task, "reason": reason} for task, reason in ranking.skipped[:SHOWN]],
                        ranked=list(ranking.ranked[:SHOWN]), ranked_at=ranking.created_at,
                        ranking_seconds=round(ranking.elapsed, 3))
        return info


class Backend:
    """The ML backend's state and worker (see the module).

    Parameters
    ----------
    settings : Settings
    api_key : str
        The Label Studio key (never logged).
    connect : callable, optional
        ``connect(url, api_key)`` returning a connector Connection (default
        :func:`activeft_label.connectors.labelstudio.connect`); tests replace it.
    clock : callable, optional
    """

    def __init__(self, settings, api_key, connect=None, clock=time.monotonic):
        self.settings = settings
        self._api_key = api_key or ""
        self._connect = connect
        self.clock = clock
        self.conn = None
        self.connection_error = None
        self.lock = threading.RLock()
        self.projects = {}
        self.jobs = Debouncer(settings.debounce, settings.max_delay, clock=clock)
        self.folder = state_folder(settings.state_base(), settings.label_studio_url)
        self._wake = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._worker = None
        self._reconnector = None
        self.busy = None  # (kind, project id) of the job that runs now

    # ------------------------------------------------------------------ life cycle
    def start(self, worker=True):
        """Load the stored rankings, connect to Label Studio, start the worker (unless not ``worker``); returns
        self."""
        remove_stale_temporaries(self.folder)
        for project_id in stored_projects(self.folder):
            ranking = load_ranking(self.folder, project_id)
            if ranking is None:
                log.warning("ignored the unreadable state file of project %s in %s", project_id, self.folder)
                continue
            entry = self.project(project_id)
            entry.ranking, entry.uid, entry.status = ranking, ranking.project_uid, "ready"
            log.info("project %s: serving the stored ranking %s (%d tasks, %d selected, made %s)", project_id,
                     ranking.version, len(ranking.scores), len(ranking.ranked), ranking.created_at)
            if not ranking.published:  # killed before its predictions reached Label Studio
                self.schedule(project_id, immediate=True)
        self.try_connect()
        if self.conn is None and not isinstance(self.connection_error, InputError):
            self._reconnector = threading.Thread(target=self._reconnect_loop, name="activeft-reconnect", daemon=True)
            self._reconnector.start()
        if worker:
            self._worker = threading.Thread(target=self._work_loop, name="activeft-worker", daemon=True)
            self._worker.start()
        return self

    def stop(self):
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing on the way out
                pass

    def try_connect(self):
        """Connect to Label Studio (once); records the error (refused key, unreachable server) when it fails."""
        if self.conn is not None:
            return True
        connect = self._connect
        if connect is None:
            from ..connectors.labelstudio import connect
        try:
            conn = connect(self.settings.label_studio_url, self._api_key)
        except ActiveFTError as exc:
            message = self.scrub(str(exc))
            if isinstance(exc, InputError):
                message += "; then restart the backend"
            if message != (str(self.connection_error) if self.connection_error else None):
                log.error("cannot use Label Studio: %s", message)
            self.connection_error = type(exc)(message)
            return False
        with self.lock:
            self.conn = conn
            self.connection_error = None
        log.info("connected to Label Studio at %s as %s (%s token)", conn.url, conn.user, conn.token_kind)
        with self._wake:
            self._wake.notify_all()
        return True

    def _reconnect_loop(self):
        while not self._stop.wait(RECONNECT_EVERY):
            if self.try_connect() or isinstance(self.connection_error, InputError):
                return

    def scrub(self, text):
        text = str(text)
        if len(self._api_key) >= 8:
            text = text.replace(self._api_key, "***")
        return text

    # ------------------------------------------------------------------ projects
    def project(self, project_id, uid=None):
        """The entry of a project (created when new).

        ``uid`` is the ``"<id>.<created>"`` of a Label Studio request: a
        ranking loaded from disk that names another uid belongs to another
        project of that id (a new server or database) and is dropped.  A
        ranking this process made from the project itself is kept.
        """
        project_id = int(project_id)
        with self.lock:
            entry = self.projects.get(project_id)
            if entry is None:
                entry = self.projects[project_id] = Project(project_id)
            stored = entry.ranking
            if (uid and stored is not None and stored.project_uid and uid != stored.project_uid
                    and not entry.checked):
                log.warning("project %s (%s) is not the project %s whose ranking was stored; ranking it anew",
                            project_id, uid, stored.project_uid)
                entry.counter_floor = stored.counter
                entry.ranking = None
                entry.status = "new"
            if uid and not entry.uid:
                entry.uid = uid
            return entry

    def schedule(self, project_id, immediate=False, after=None):
        """Ask for a (re-)rank of a project: at once, after the debounce, or ``after`` seconds from now."""
        with self._wake:
            entry = self.project(project_id)
            if entry.status in ("new", "error") and entry.ranking is None:
                entry.status = "queued"
            self.jobs.poke((RANK, int(project_id)), immediate=immediate, quiet=after)
            self._wake.notify_all()

    def schedule_check(self, project_id, after=None):
        with self._wake:
            self.jobs.poke((CHECK, int(project_id)), quiet=self.settings.settle if after is None else after)
            self._wake.notify_all()

    def setup(self, project_id, uid=None):
        """``/setup``: the model version to report; starts the first ranking, or a catch-up after a restart."""
        entry = self.project(project_id, uid)
        if entry.ranking is None:
            if not (self.jobs.pending((RANK, entry.id)) or self.busy == (RANK, entry.id)):
                self.schedule(entry.id, immediate=True)
            return PENDING_VERSION
        self.catch_up(entry)
        return entry.ranking.version

    def catch_up(self, entry):
        """A ranking loaded from disk: read the project again (once) in case it changed while the backend was
        down."""
        if not entry.checked and not self.jobs.pending((RANK, entry.id)) and self.busy != (RANK, entry.id):
            self.schedule(entry.id)

    def answer(self, project_id, task_ids, uid=None, claim=True):
        """``(version, scores)`` for ``task_ids`` from the project's ranking; NotReady when it has none yet.

        Tasks the ranking does not know (created since) get the score of the
        unselected tasks, and a re-rank is asked for.  With ``claim``, the
        answered tasks are remembered so the worker does not import their
        predictions too (Label Studio stores them).
        """
        entry = self.project(project_id, uid)
        with self.lock:
            ranking = entry.ranking
            if ranking is None:
                if claim:
                    entry.pending_claims.update(int(t) for t in task_ids)
                raise NotReady(entry.error or f"project {entry.id} is being ranked")
            fallback = unranked_score(len(ranking.ranked))
            scores = [ranking.scores.get(int(t), fallback) for t in task_ids]
            unknown = sum(1 for t in task_ids if int(t) not in ranking.scores)
            if claim:
                now = self.clock()
                for task in task_ids:
                    entry.claims[int(task)] = (ranking.version, now)
            version = ranking.version
        if unknown:
            self.schedule(entry.id)
        else:
            self.catch_up(entry)
        if claim:
            self.schedule_check(entry.id)
        return version, scores

    def release_pending_claims(self, project_id, task_ids):
        entry = self.project(project_id)
        with self.lock:
            entry.pending_claims.difference_update(int(t) for t in task_ids)

    def event(self, project_id, action):
        """A webhook event that changes what the ranking depends on: re-rank after the debounce."""
        log.info("project %s: %s; re-ranking after %.1f s of quiet", project_id, action, self.settings.debounce)
        self.schedule(project_id)

    def record_error(self, project_id, message):
        """Remember (and log) a request-level problem of a project, e.g. a label config without an image."""
        entry = self.project(project_id)
        with self.lock:
            repeated = entry.error == message
            entry.error = message
            if entry.ranking is None:
                entry.status = "error"
        if not repeated:
            log.error("%s", message)

    def versions(self, project_id=None):
        """The model versions ``/versions`` reports: the project's current one (every project's without one)."""
        with self.lock:
            entries = [self.projects[project_id]] if project_id in self.projects else (
                [] if project_id is not None else list(self.projects.values()))
            return [entry.ranking.version for entry in entries if entry.ranking is not None]

    def ranking_of(self, project_id):
        """The project's ranking as a plain dict (None without one)."""
        with self.lock:
            entry = self.projects.get(int(project_id))
            ranking = entry.ranking if entry else None
            if ranking is None:
                return None
            return {"project": ranking.project, "model_version": ranking.version, "ranked": list(ranking.ranked),
                    "scores": {str(task): score for task, score in sorted(ranking.scores.items())},
                    "annotated": list(ranking.labeled),
                    "skipped": [{"task": task, "reason": reason} for task, reason in ranking.skipped],
                    "budget": ranking.budget, "published": ranking.published, "ranked_at": ranking.created_at,
                    "seconds": ranking.elapsed}

    def health(self):
        """``(HTTP status, body)`` of ``/health``."""
        with self.lock:
            projects = {str(pid): entry.summary() for pid, entry in sorted(self.projects.items())}
            error = self.connection_error
            conn = self.conn
        body = {"model_class": "ActiveFT", "label_studio": self.settings.label_studio_url,
                "budget": self.settings.budget, "method": self.settings.selection.get("method"),
                "busy": list(self.busy) if self.busy else None, "projects": projects}
        if conn is None:
            body.update(status="ERROR", error=str(error) if error else "connecting to Label Studio")
            return 503, body
        body.update(status="UP", user=conn.user)
        return 200, body

    # ------------------------------------------------------------------ the worker
    def _work_loop(self):
        while not self._stop.is_set():
            with self._wake:
                job = self.jobs.take() if self.conn is not None else None
                if job is None:
                    due = self.jobs.next_due()
                    timeout = 1.0 if due is None or self.conn is None else max(0.01, min(1.0, due - self.clock()))
                    self._wake.wait(timeout)
                    continue
                self.busy = job
            try:
                self.run_job(*job)
            except Exception:  # noqa: BLE001 - a bug must not stop the worker
                log.exception("job %s of project %s failed", *job)
            finally:
                with self.lock:
                    self.busy = None

    def run_job(self, kind, project_id):
        """Run one job now (the worker does; tests may call it directly)."""
        entry = self.project(project_id)
        started = time.perf_counter()
        try:
            changed = self._rank(entry) if kind == RANK else self._check(entry)
        except ActiveFTError as exc:
            message = self.scrub(str(exc))
            retry = not isinstance(exc, InputError)  # Label Studio down or failing: try again later
            with self.lock:
                entry.error = message
                entry.status = "error" if entry.ranking is None else "ready"
                entry.failures += 1
                delay = min(300.0, 15.0 * 2 ** (entry.failures - 1))
                entry.last_job = {"kind": kind, "seconds": round(time.perf_counter() - started, 3), "error": message}
            if retry or (entry.ranking is not None and not entry.ranking.published):
                log.error("project %s: %s (trying again in %.0f s)", project_id, message, delay)
                self.schedule(project_id, after=delay)
            else:
                log.error("project %s: %s", project_id, message)
            return
        with self.lock:
            entry.failures = 0
            entry.last_job = {"kind": kind, "seconds": round(time.perf_counter() - started, 3), "changed": changed}

    def _rank(self, entry):
        from .publish import push_ranks, push_score_view, refresh_ml_backends, remove_stale, sync_predictions
        from .ranker import rank_project

        with self.lock:
            entry.status = "ranking"
        previous = entry.ranking
        ranking, changed = rank_project(self.conn, entry.id, self.settings, previous=previous,
                                        counter_floor=entry.counter_floor)
        with self.lock:
            entry.checked = True
            entry.error = None
            if changed:
                save_ranking(self.folder, ranking)   # complete: from now on it is what a restart serves
                entry.ranking = ranking
                entry.uid = ranking.project_uid or entry.uid
                entry.rankings += 1
                # Waiting /predict calls answer with this ranking: their tasks are Label Studio's to store.
                now = self.clock()
                for task in entry.pending_claims:
                    entry.claims[task] = (ranking.version, now)
                entry.pending_claims.clear()
            entry.status = "publishing"
        if changed:
            log.info("project %s: ranked %d tasks in %.1f s: %d selected of %d unannotated readable, %d annotated, "
                     "%d unreadable; model version %s", entry.id, len(ranking.scores), ranking.elapsed,
                     len(ranking.ranked), len(ranking.scores) - len(ranking.labeled) - len(ranking.skipped),
                     len(ranking.labeled), len(ranking.skipped), ranking.version)
            for task, reason in ranking.skipped[:5]:
                log.warning("project %s: task %s ranked last, its image could not be read: %s", entry.id, task,
                            reason)
            if len(ranking.skipped) > 5:
                log.warning("project %s: ... and %d more tasks with unreadable images", entry.id,
                            len(ranking.skipped) - 5)
        else:
            log.info("project %s: nothing changed since ranking %s", entry.id, ranking.version)
        if changed or not ranking.published:
            phases = {"ranking": round(ranking.elapsed, 3) if changed else 0.0}
            clock = time.perf_counter()
            counts = sync_predictions(self.conn, ranking, self.fresh_claims(entry, ranking.version,
                                                                             self.settings.settle * 4),
                                      cleanup=False)
            phases["predictions"] = round(time.perf_counter() - clock, 3)  # the queue by score is live now
            clock = time.perf_counter()
            report = None
            if self.settings.view == "rank":
                report = push_ranks(self.conn, ranking)
            elif self.settings.view == "score":
                push_score_view(self.conn, ranking)
            phases["view"] = round(time.perf_counter() - clock, 3)
            clock = time.perf_counter()
            refresh_ml_backends(self.conn, entry.id)
            phases["refresh"] = round(time.perf_counter() - clock, 3)
            clock = time.perf_counter()
            counts["deleted_versions"] = remove_stale(self.conn, entry.id, counts["stale_versions"],
                                                      counts["duplicate_ids"])
            phases["cleanup"] = round(time.perf_counter() - clock, 3)
            with self.lock:
                ranking.published = True  # (a restart before this point publishes it again: idempotent)
                if entry.ranking is ranking:
                    save_ranking(self.folder, ranking)
            with self.lock:
                entry.phases = phases
            if counts["left_to_label_studio"] or not counts["model_version_set"]:
                self.schedule_check(entry.id, after=self.settings.settle * 2)
            ranks = f", {report.updated + report.cleared} rank fields written" if report is not None else ""
            log.info("project %s: published %s (%d predictions imported, %d older versions removed%s; %.1f s "
                     "predictions, %.1f s view, %.1f s removing older versions)", entry.id, ranking.version,
                     counts["created"], counts["deleted_versions"], ranks, phases["predictions"], phases["view"],
                     phases["cleanup"])
        with self.lock:
            entry.status = "ready"
        return changed

    def fresh_claims(self, entry, version, window):
        """Tasks answered by ``/predict`` with ``version`` less than ``window`` seconds ago."""
        now = self.clock()
        with self.lock:
            return {task for task, (their, when) in entry.claims.items() if their == version and now - when < window}

    def _check(self, entry):
        """After /predict answers: one prediction per task of the current version, older versions gone."""
        from .publish import sync_predictions

        ranking = entry.ranking
        if ranking is None or not ranking.published:
            return False
        # Answers younger than the settle time may still be on their way into Label Studio's database.
        counts = sync_predictions(self.conn, ranking, self.fresh_claims(entry, ranking.version,
                                                                         self.settings.settle / 2))
        with self.lock:
            cutoff = self.clock() - self.settings.settle * 4
            entry.claims = {task: claim for task, claim in entry.claims.items() if claim[1] > cutoff}
        changed = bool(counts["created"] or counts["deleted_versions"] or counts["duplicates"])
        if changed:
            log.info("project %s: checked the predictions of %s: %d imported, %d duplicates and %d older versions "
                     "removed", entry.id, ranking.version, counts["created"], counts["duplicates"],
                     counts["deleted_versions"])
        if counts["created"] or counts["left_to_label_studio"]:
            # Imported now (if Label Studio was still storing answers for them, the next check removes the twins),
            # or answers that Label Studio may still be storing: look again.
            self.schedule_check(entry.id, after=self.settings.settle * 2)
        return changed
