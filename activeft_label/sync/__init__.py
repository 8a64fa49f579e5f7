"""FiftyOne ↔ Label Studio: select in FiftyOne, annotate in Label Studio in priority order, labels back.

The only module that knows both connectors.  Three functions, each safe to
run again at any point (after a crash, a kill, a server restart):

:func:`push`
    Selects samples of a FiftyOne dataset or view (or reuses the selection
    run of that name), puts them into a Label Studio project as tasks in
    rank order with the "ActiveFT priority" view, and stores on each sample
    the id of its task (``task_field``, default ``activeft_ls_task``).  Each
    task carries the sample id as ``activeft_id``: that, not the task's
    position, is what maps tasks back to samples.  ``round=2, 3, ...``
    selects more samples with every sample already queued as a fixed
    centroid, and queues them after the earlier rounds.
:func:`pull`
    Reads the project's annotations and writes them to a label field by the
    sample id in each task: Choices → ``fo.Classification`` (or
    ``fo.Classifications`` for ``choice="multiple"``), RectangleLabels →
    ``fo.Detections`` with boxes in FiftyOne's relative ``[x, y, w, h]``
    (Label Studio stores percentages of the image size; both measure from
    the top-left corner).  Of several annotations of a task the latest
    non-cancelled one counts; a task whose annotations were all cancelled
    (skipped by the annotator) gives no label.  A label that differs from
    the one already in the field is only replaced with ``overwrite``.  Each
    written label records ``ls_task_id`` and ``ls_annotation_id``.
:func:`status`
    Per round: samples selected, pushed (a task exists), annotated, pulled.

What a push wrote is recorded in ``dataset.info["activeft_labelstudio"]``
(per project: server, task field, rounds and their selection runs).
"""

from .pull import pull
from .push import push
from .records import STATE_KEY, TASK_FIELD, round_run_name
from .results import PullResult, PushResult, StatusRow, StatusRows
from .status import status

__all__ = ["TASK_FIELD", "STATE_KEY", "PushResult", "PullResult", "StatusRow", "StatusRows", "push", "pull", "status",
           "round_run_name"]
