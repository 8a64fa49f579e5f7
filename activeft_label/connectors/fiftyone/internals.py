"""The few private names of FiftyOne that the connector needs, in one place.

FiftyOne has no public API for these: the root dataset of a collection,
whether a collection is generated (patches, frames, clips), and building a
view from serialized stages.  Each function says why; all were checked
against fiftyone 1.22.1.  When FiftyOne changes, this is the only module to
adapt.
"""

import fiftyone as fo


def root_dataset_of(collection):
    """The dataset ``collection`` derives from (the collection itself when it has no such attribute).

    Private: ``SampleCollection._root_dataset``.  The public ``dataset_name`` only gives the name, and
    ``fo.load_dataset(name)`` writes the dataset's ``last_loaded_at`` (and, with FiftyOne's singleton cache off,
    returns another object); for patches, frames and clips views the root is not the dataset that serves their
    samples.  Checked: fiftyone 1.22.1.
    """
    return collection._root_dataset if hasattr(collection, "_root_dataset") else collection


def is_generated(collection):
    """Whether ``collection`` is generated from another one (patches, frames or clips); False when unknown.

    Private: ``SampleCollection._is_generated``.  No public flag; ``isinstance`` checks against the view classes
    would miss the generated datasets behind such views.  Checked: fiftyone 1.22.1.
    """
    return getattr(collection, "_is_generated", False)


def view_with_stages(dataset, view, stages):
    """``view`` of ``dataset`` with serialized stages (dicts with ``_cls`` and ``kwargs``) appended.

    Private: ``DatasetView._serialize()`` and ``DatasetView._build()``, the pair FiftyOne itself uses to
    rebuild saved views; the public ``add_stage`` takes stage objects, not serialized ones (their public
    constructors would drop the stage UUIDs ``_build`` restores), and keeps a saved view's name on the result.
    Checked: fiftyone 1.22.1.
    """
    return fo.DatasetView._build(dataset, view._serialize() + stages)
