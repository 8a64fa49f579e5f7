"""FiftyOne connector: pick the samples of a dataset or view worth annotating.

Three steps, each a function of its own, and one function that runs them:

:func:`pull`
    Reads a dataset or view: sample ids, filepaths and one embedding per
    sample, either from an existing vector field (``embeddings_field``, such
    as one written by ``compute_embeddings()`` or FiftyOne Brain) or computed
    here with :func:`activeft_label.embeddings.embed_images`.  Samples that
    already carry a label field or a tag (``exclude_labeled``) become *fixed*
    rows: the optimizer treats them as already labeled and never selects
    them.  Samples whose image cannot be read are skipped and reported.
:func:`push`
    Writes a selection back: tags the selected samples (``tag``), writes an
    integer rank field (``rank_field``, 1 = annotate first), records the run
    on the dataset as a FiftyOne run named ``run_name`` (method, budget,
    parameters, time; the selected ids are its results) and saves a view of
    the same name with the selected samples sorted by rank.  Re-running a run
    name replaces what that run wrote before: the tag is removed from the
    samples the run had tagged and that are no longer selected, and their
    rank is unset.  Tags the run did not add, other fields, other tags and
    labels are never touched.
:func:`select_samples`
    :func:`preview` (every check that can be made without reading vectors or
    images) → :func:`pull` → :func:`activeft_label.select` → :func:`push`.
    Everything is validated before anything is written: when it raises,
    the dataset is as it was.

The command line (``activeft fiftyone select``, :mod:`activeft_label.cli`)
and the App operator (:mod:`activeft_label.app`) are thin faces over these
functions.  Nothing here knows about
other annotation tools, and the selection library knows nothing of FiftyOne.

Examples
--------
>>> import fiftyone as fo
>>> from activeft_label.connectors import fiftyone as aft
>>> dataset = fo.load_dataset("my-images")
>>> summary = aft.select_samples(dataset, "1%")
>>> print(summary.describe())
>>> ranked = dataset.load_saved_view(summary.saved_view)   # rank 1 first

Modules
-------
:mod:`.defaults` (names and markers), :mod:`.results` (what the functions
return), :mod:`.target` (the dataset, view and fields), :mod:`.checks`
(everything checked before a write), :mod:`.pull`, :mod:`.push`,
:mod:`.labels` (labels from an annotation tool), :mod:`.holds` (which
annotation queues a run feeds, so it is not replaced under them), :mod:`.runs`
(the FiftyOne run class of a selection run, whose ``cleanup()`` makes
FiftyOne's own ``dataset.delete_run(name)`` remove its tags, ranks and saved
view) and :mod:`.workflow` (:func:`select_samples`).  Everything public is
importable from this package.
"""

from .checks import preview
from .defaults import DEFAULT_RANK_FIELD, DEFAULT_RUN_NAME, DEFAULT_TAG, RUN_MARKER
from .labels import check_label_field, LabelWriteReport, write_labels
from .pull import pull
from .holds import HOLDS_KEY, run_holds, set_holds
from .push import delete_run, get_run, list_runs, push, write_embeddings
from .results import FiftyOnePool, Preview, SelectionSummary
from .target import embedding_fields, label_fields, resolve_view, root_dataset
from .workflow import select_samples

__all__ = [
    "DEFAULT_TAG", "DEFAULT_RANK_FIELD", "DEFAULT_RUN_NAME", "FiftyOnePool", "Preview", "SelectionSummary",
    "resolve_view", "preview", "pull", "push", "write_embeddings", "select_samples", "get_run", "list_runs",
    "embedding_fields", "label_fields", "root_dataset", "LabelWriteReport", "write_labels", "check_label_field",
    "RUN_MARKER", "delete_run", "run_holds", "set_holds", "HOLDS_KEY",
]
