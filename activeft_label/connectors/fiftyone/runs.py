"""The FiftyOne run class of a selection run: FiftyOne's own ``delete_run`` then cleans up after it.

FiftyOne's runs framework (``fiftyone.core.runs``) stores each run's config
with its class name (``cls``).  ``dataset.delete_run(key)`` (and
``dataset.delete_runs()``) loads that class, builds the run class named like
it without ``Config`` (``BaseRunConfig.run_cls``) and calls its
``cleanup(samples, key)`` before it deletes the record: this is how FiftyOne
Brain's runs remove their fields.  A selection run is recorded with
:class:`ActiveFTRunConfig`, so its :class:`ActiveFTRun` removes what the run
wrote (its tag from the samples it tagged, its rank values, its saved view,
its holds) exactly as ``activeft fiftyone delete-run`` does; tags and ranks
that another activeft run also wrote stay.

FiftyOne's ``delete_run`` has no way to refuse: when ``cleanup()`` raises,
FiftyOne logs a warning and deletes the record anyway.  So a run that was
pushed to Label Studio (held, see :mod:`.holds`) is cleaned up all the same
(what ``delete-run --force`` does; its tasks stay in the project) and a
warning says so; ``activeft fiftyone delete-run`` keeps refusing such a run
without ``--force``.

Records written before this class existed carry FiftyOne's plain
``RunConfig`` and keep loading as such (FiftyOne's ``delete_run`` removes only
their record); the next selection on their dataset upgrades them to this
class (:func:`upgrade_records`), and ``activeft fiftyone delete-run`` cleans
them up either way.  Where this package is not installed, FiftyOne loads
these records as plain ``RunConfig`` (with a warning) and removes only the
record.
"""

import logging

import fiftyone.core.runs as fors

logger = logging.getLogger(__name__)


class ActiveFTRunConfig(fors.RunConfig):
    """The config of an activeft selection run: a FiftyOne ``RunConfig`` whose run cleans up after itself.

    Parameters are the run's JSON-ready facts (``method``, ``tag``,
    ``rank_field``, ``budget``, ...), as for ``RunConfig``.
    """


class ActiveFTRun(fors.Run):
    """An activeft selection run, as FiftyOne's runs framework sees it (built from :class:`ActiveFTRunConfig`)."""

    def get_fields(self, samples, key):
        """The rank field the run wrote (FiftyOne's list of the fields a run involves)."""
        rank_field = getattr(self.config, "rank_field", None)
        return [rank_field] if rank_field else []

    def cleanup(self, samples, key):
        """Remove what run ``key`` wrote: its tag, rank values, saved view and holds (FiftyOne deletes the record).

        Called by FiftyOne's ``delete_run`` / ``delete_runs`` before the record goes.
        """
        from .holds import run_holds
        from .push import remove_run_values
        from .target import root_dataset

        dataset = root_dataset(samples)
        holds = run_holds(dataset, key)
        if holds:
            what = "; ".join(h["what"] for h in holds)
            logger.warning(
                "selection run %r was pushed (%s); FiftyOne's delete_run removes it anyway: its tag, ranks and "
                "saved view are removed, and its tasks stay in the annotation tool (they keep their ranks). "
                "`activeft fiftyone delete-run` refuses such a run unless --force", key, what)
        remove_run_values(dataset, key)


def upgrade_records(dataset, runs):
    """Give the activeft run records of ``dataset`` written with FiftyOne's plain ``RunConfig`` this module's class.

    ``runs`` is ``{key: serialized config}`` of the dataset's activeft runs
    (``checks.activeft_runs``).  Only the class name changes; the record's
    values, results and time stay.  Returns the keys upgraded.
    """
    upgraded = []
    for key, values in runs.items():
        if values.get("cls") == _CONFIG_CLASS:
            continue
        config = {name: value for name, value in values.items() if name not in ("cls", "type")}
        dataset.update_run_config(key, ActiveFTRunConfig(**config))
        upgraded.append(key)
    return upgraded


_CONFIG_CLASS = f"{ActiveFTRunConfig.__module__}.{ActiveFTRunConfig.__name__}"
