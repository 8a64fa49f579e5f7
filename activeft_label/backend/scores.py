"""How a ranking becomes prediction scores and model versions (pure functions, no server).

Score encoding
--------------
Label Studio serves the *lowest* score first under "Uncertainty sampling",
and an ascending sort of the Data Manager's "Prediction score" column does
the same.  So, with ``B`` selected tasks:

* the selected task of rank ``r`` (1 = annotate first) scores ``r / (B + 2)``;
* every other readable, unannotated task scores ``(B + 1) / (B + 2)``: after
  every selected one, all equal (the selection claims no order beyond its
  budget);
* annotated tasks and tasks whose image could not be read score ``1.0``, last.

Every score lies in (0, 1]; ranks map to scores strictly increasingly, so
sorting by score gives the selection in rank order.

Model versions
--------------
``activeft-<n>-<key>``: ``n`` counts the rankings of the project (1, 2, ...;
kept across restarts), ``key`` is the first 8 hex digits of the SHA-256 of
the ranking's inputs (tasks, images, annotated tasks, features, budget,
options).  The same inputs give the same key, so a re-rank whose inputs did
not change (an annotation edited, say) keeps its version; any change gives
the next ``n``.
"""

import re

#: ``model_version`` the backend reports before a project's first ranking is complete.
PENDING_VERSION = "activeft-pending"
#: Model versions this backend writes (older ones of a project are removed when a new ranking is published).
VERSION_PATTERN = re.compile(r"^activeft-\d+-[0-9a-f]{8}$")
#: Score of annotated tasks and of tasks whose image could not be read.
LAST_SCORE = 1.0


def model_version(counter, key):
    """The model version of a project's ``counter``-th ranking, whose inputs hash to ``key`` (hex)."""
    if int(counter) < 1:
        raise ValueError(f"counter must be >= 1, got {counter}")
    if not re.fullmatch(r"[0-9a-f]{8,}", str(key)):
        raise ValueError(f"key must be hex digits, got {key!r}")
    return f"activeft-{int(counter)}-{str(key)[:8]}"


def is_backend_version(version):
    """Whether ``version`` is a model version this backend writes (not the pending one)."""
    return bool(VERSION_PATTERN.match(str(version or "")))


def priority_scores(ranked, others=(), last=()):
    """``{task id: score}`` for a ranking.

    Parameters
    ----------
    ranked : sequence of int
        Selected task ids in rank order (rank 1 first).
    others : iterable of int
        Readable, unannotated tasks outside the selection.
    last : iterable of int
        Annotated tasks and tasks whose image could not be read.

    A task listed twice keeps its first (lowest) place.
    """
    ranked = [int(t) for t in ranked]
    if len(set(ranked)) != len(ranked):
        raise ValueError("a task is ranked twice")
    denominator = len(ranked) + 2
    scores = {task: rank / denominator for rank, task in enumerate(ranked, start=1)}
    rest = (len(ranked) + 1) / denominator
    for task in others:
        scores.setdefault(int(task), rest)
    for task in last:
        scores.setdefault(int(task), LAST_SCORE)
    return scores


def unranked_score(selected):
    """The score of a task the ranking does not know (created after it): that of the unselected tasks."""
    return (int(selected) + 1) / (int(selected) + 2)


def order_by_score(scores):
    """Task ids sorted by score, then by id (the order Label Studio's ascending sort shows them)."""
    return [task for task, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]))]
