"""Finding the target: a dataset, a saved view or view stages, and the fields it offers."""

import json

import fiftyone as fo
import fiftyone.core.utils as fou

from ...errors import InputError
from .defaults import RESERVED_FIELDS
from .internals import root_dataset_of, view_with_stages


def resolve_view(dataset, saved_view=None, view_stages=None):
    """Load a dataset by name and, optionally, a saved view or view stages.

    Parameters
    ----------
    dataset : str or fiftyone.core.dataset.Dataset
        Dataset name (or the dataset itself).
    saved_view : str, optional
        Name of a saved view of the dataset.
    view_stages : str or list, optional
        View stages as JSON (a list of serialized stages, as the App's
        "copy view as JSON" or ``view._serialize()`` give), applied after the
        saved view.

    Returns
    -------
    (Dataset, SampleCollection)
    """
    if isinstance(dataset, str):
        name = dataset
        if not fo.dataset_exists(name):
            names = fo.list_datasets()
            import difflib

            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
                f"; datasets here: {', '.join(repr(n) for n in names[:10])}" + (" ..." if len(names) > 10 else "")
                if names else "; this database has no datasets")
            raise InputError(f"no FiftyOne dataset named {name!r}{hint} (database: {fo.config.database_dir})")
        dataset = fo.load_dataset(name)
    view = dataset.view()
    if saved_view is not None and not str(saved_view).strip():
        raise InputError("the saved view name is empty; give a saved view's name or leave the option out")
    if view_stages is not None and isinstance(view_stages, str) and not view_stages.strip():
        raise InputError("the view stages are empty; give a JSON list of stages or leave the option out")
    if saved_view:
        saved = dataset.list_saved_views()
        if saved_view not in saved:
            listed = ", ".join(repr(s) for s in saved) if saved else "none"
            raise InputError(f"dataset {dataset.name!r} has no saved view named {saved_view!r} (saved views: {listed})")
        try:
            view = dataset.load_saved_view(saved_view)
        except Exception as exc:  # a view saved before the fields it uses were deleted, ...
            raise InputError(f"saved view {saved_view!r} of dataset {dataset.name!r} cannot be loaded any more "
                             f"({_short(exc)}); fix or delete it in the App, or pick another view") from None
    if view_stages:
        stages = view_stages
        if isinstance(stages, str):
            try:
                stages = json.loads(stages)
            except ValueError as exc:
                raise InputError(f"view stages are not valid JSON ({exc}); give a JSON list of stages like "
                                 f"'[{{\"_cls\": \"fiftyone.core.stages.Limit\", \"kwargs\": [[\"limit\", 10]]}}]'"
                                 ) from None
        if isinstance(stages, dict):
            stages = [stages]
        if not isinstance(stages, list):
            raise InputError("view stages must be a JSON list of serialized stages")
        for stage in stages:
            _check_stage(stage)
        try:
            built = view_with_stages(dataset, view, stages)
            len(built)  # runs the pipeline: a stage that does not fit the dataset fails here
        except Exception as exc:  # FiftyOne raises many types for bad stages
            raise InputError(f"the view stages cannot be applied to dataset {dataset.name!r}: {_short(exc)}") from None
        view = built
    return dataset, view


def _check_stage(stage):
    """Refuse anything but a serialized FiftyOne view stage.

    FiftyOne builds a stage by importing the class named in ``_cls`` and calling it with ``kwargs``: without this
    check, JSON from the command line could name any importable callable.
    """
    import fiftyone.core.stages as fos

    example = '{"_cls": "fiftyone.core.stages.Limit", "kwargs": [["limit", 10]]}'
    if not isinstance(stage, dict) or not isinstance(stage.get("_cls"), str) or "kwargs" not in stage:
        raise InputError(f"each view stage must be a JSON object with '_cls' and 'kwargs', like {example}; "
                         f"got {json.dumps(stage)[:80]}")
    module, _, name = stage["_cls"].rpartition(".")
    cls = getattr(fos, name, None) if module == "fiftyone.core.stages" else None
    if not (isinstance(cls, type) and issubclass(cls, fos.ViewStage) and cls is not fos.ViewStage):
        raise InputError(f"{stage['_cls']!r} is not a FiftyOne view stage; stages are named like "
                         f"'fiftyone.core.stages.Match' (the App's \"copy view as JSON\" gives them)")
    kwargs = stage["kwargs"]
    if not (isinstance(kwargs, list) and all(isinstance(k, list) and len(k) == 2 and isinstance(k[0], str)
                                             for k in kwargs)):
        raise InputError(f"the kwargs of view stage {stage['_cls']!r} must be a list of [name, value] pairs, like "
                         f"{example}")


def slug_or_none(name):
    try:
        return fou.to_slug(name)
    except ValueError:
        return None


def root_dataset(collection):
    """The dataset a view (or a dataset) belongs to: where runs, saved views and custom info are stored."""
    return root_dataset_of(collection)


def embedding_fields(collection):
    """Names of the top-level fields that can hold embeddings (vector, array or list-of-number fields)."""
    names = []
    for name, fld in collection.get_field_schema().items():
        if name in RESERVED_FIELDS or name.startswith("_"):
            continue
        if holds_vectors(fld):
            names.append(name)
    return names


def holds_vectors(fld):
    """Whether a field can hold embeddings: a vector or array field, or a list of numbers."""
    if isinstance(fld, (fo.VectorField, fo.ArrayField)):
        return True
    return isinstance(fld, fo.ListField) and isinstance(getattr(fld, "field", None), (fo.FloatField, fo.IntField))


def label_fields(collection):
    """Names of the top-level fields that hold labels (Classification, Detections, ...)."""
    names = []
    for name, fld in collection.get_field_schema().items():
        if isinstance(fld, fo.EmbeddedDocumentField) and issubclass(fld.document_type, fo.Label):
            names.append(name)
    return names


def _short(exc, limit=300):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
