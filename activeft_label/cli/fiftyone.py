"""``activeft fiftyone ...``: the command line face of the FiftyOne connector.

FiftyOne is imported inside the commands, so ``activeft --help`` stays fast
and works without FiftyOne installed.
"""

import os
import shutil

import click

from ..errors import InputError
from .options import CONTEXT, common_options, embedding_kwargs, friendly_errors, model_options, say, selection_options

#: The plugin's files inside the installed package (package data, so a wheel carries them too).
PLUGIN_FILES = ("fiftyone.yml", "__init__.py")
#: Name of the installed plugin folder.
PLUGIN_FOLDER = "activeft-label"


def plugin_source():
    """The plugin folder of the installed package, as an ``importlib.resources`` Traversable.

    Looked up from the top package, so that finding it imports neither
    FiftyOne nor the operators.
    """
    from importlib.resources import files

    return files("activeft_label").joinpath("app", "plugin")


@click.group(context_settings=CONTEXT)
def fiftyone():
    """Select samples of a FiftyOne dataset and queue them in the App.

    \b
    Commands:
      select          tag and rank the samples to annotate first
      delete-run      remove a run's tags, ranks, saved view and record
      install-plugin  add the ActiveFT operators to the App (select samples;
                      push to and pull from Label Studio)

    The selection is written back to the dataset: the selected samples get a
    tag (activeft), an integer rank field (activeft_rank, 1 = annotate first),
    a saved view named after the run with the samples sorted by rank, and a
    run record (method, budget, parameters, time).  Nothing else is touched.
    """


@fiftyone.command(context_settings=CONTEXT)
@click.option("--dataset", "-d", "dataset_name", required=True, metavar="NAME", help="FiftyOne dataset name.")
@click.option("--saved-view", metavar="NAME", help="Select from this saved view of the dataset.")
@click.option("--view-stages", metavar="JSON",
              help="Select from the view these stages give (a JSON list of serialized stages, as the App's "
                   "\"copy view as JSON\" gives), applied after --saved-view.")
@selection_options
@click.option("--embeddings-field", metavar="FIELD",
              help="Read the embeddings from this vector field (e.g. one written by compute_embeddings or FiftyOne "
                   "Brain) instead of computing them. Every sample of the view needs a vector, all of one length.")
@click.option("--store-embeddings", metavar="FIELD",
              help="Store the embeddings computed with --model in this field, so later rounds can use "
                   "--embeddings-field FIELD.")
@model_options
@click.option("--tag", default="activeft", show_default=True, help="Tag added to the selected samples.")
@click.option("--rank-field", default="activeft_rank", show_default=True, metavar="FIELD",
              help="Integer field with each selected sample's rank (1 = annotate first).")
@click.option("--run-name", default="activeft", show_default=True, metavar="NAME",
              help="Run key recorded on the dataset and name of the saved view: a letter, then letters, digits "
                   "and underscores. Running again with the same name replaces that run's tags and ranks.")
@click.option("--exclude-labeled", multiple=True, metavar="FIELD|tag:NAME",
              help="Samples that have a value in FIELD (or carry tag NAME) count as already labeled: they are never "
                   "selected and the new picks cover what they do not. Repeatable.")
@click.option("--replace", is_flag=True,
              help="Select a run again although it was pushed to Label Studio (refused while a later round depends "
                   "on it); push it again afterwards to update the queue.")
@common_options
@click.pass_context
@friendly_errors
def select(ctx, dataset_name, saved_view, view_stages, budget, selection, embeddings_field, store_embeddings,
           embedding, tag, rank_field, run_name, exclude_labeled, replace, device, quiet):
    """Tag and rank the samples of a dataset worth annotating first.

    The target is the dataset NAME, or its --saved-view, narrowed further by
    --view-stages.  Embeddings come from --embeddings-field, or are computed
    with --model (cached on disk; images that cannot be read are skipped and
    reported).  Everything is checked before anything is written: on an
    error the dataset is left as it was.

    \b
    Examples:
      activeft fiftyone select -d my-images --budget 1%
      activeft fiftyone select -d my-images -b 200 --embeddings-field clip_embeddings
      activeft fiftyone select -d my-images -b 1% --run-name round2 --exclude-labeled ground_truth

    Afterwards open the dataset in the App and load the saved view named
    after the run (default: activeft): the selected samples, rank 1 first.
    """
    from click.core import ParameterSource

    if embeddings_field and ctx.get_parameter_source("model") == ParameterSource.COMMANDLINE:
        raise InputError("give either --embeddings-field (read stored embeddings) or --model (compute them), "
                         "not both")
    if embeddings_field and store_embeddings:
        raise InputError("--store-embeddings stores computed embeddings; it cannot be combined with "
                         "--embeddings-field")
    from ..devices import resolve_device

    resolve_device(device)
    from ..connectors import fiftyone as connector

    _, view = connector.resolve_view(dataset_name, saved_view=saved_view, view_stages=view_stages)
    summary = connector.select_samples(
        view, budget, **selection.as_kwargs(), **embedding_kwargs(embedding, embeddings_field),
        embeddings_field=embeddings_field, store_embeddings=store_embeddings,
        exclude_labeled=list(exclude_labeled) or None, tag=tag, rank_field=rank_field, run_name=run_name,
        replace=replace, device=device, progress=not quiet)
    say(summary.describe())


@fiftyone.command("delete-run", context_settings=CONTEXT)
@click.argument("run_name", metavar="NAME")
@click.option("--dataset", "-d", "dataset_name", required=True, metavar="NAME", help="FiftyOne dataset name.")
@click.option("--force", is_flag=True,
              help="Delete a run that was pushed to Label Studio (its tasks stay in the project).")
@friendly_errors
def delete_run_command(run_name, dataset_name, force):
    """Remove the selection run NAME: its tags, rank values, saved view and record.

    What FiftyOne Brain's cleanup does for its own runs: the run's tag comes
    off the samples it tagged, its rank field is unset on the samples it
    ranked, and its saved view and run record are deleted.  A tag or rank
    that another activeft run also wrote stays; labels, other fields and
    other tags are never touched.  A run pushed to Label Studio (sync push)
    is refused unless --force.

    \b
    Example:
      activeft fiftyone delete-run activeft_round2 -d my-images
    """
    from ..connectors import fiftyone as connector

    dataset, _ = connector.resolve_view(dataset_name)
    done = connector.delete_run(dataset, run_name, force=force)
    view = " and its saved view" if done["saved_view"] else ""
    say(f"Deleted run {run_name!r}{view} from dataset {dataset_name!r}: tag {done['tag']!r} removed from "
        f"{done['untagged']} sample(s), {done['rank_field']!r} unset on {done['unranked']}.")


@fiftyone.command("install-plugin", context_settings=CONTEXT)
@click.option("--plugins-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="FiftyOne plugins directory (default: fo.config.plugins_dir, i.e. FIFTYONE_PLUGINS_DIR or "
                   "~/fiftyone/__plugins__).")
@click.option("--force", is_flag=True, help="Replace an installed copy of the plugin.")
@friendly_errors
def install_plugin(plugins_dir, force):
    """Install the App operator plugin into FiftyOne's plugins directory.

    Copies the plugin (fiftyone.yml and __init__.py; the operator itself is
    this package, which the App's Python must be able to import) to
    DIR/activeft-label.  Restart the App afterwards; the operators appear in
    the operator browser (press `) as "ActiveFT: select samples to annotate",
    "ActiveFT: push the selection to Label Studio" and "ActiveFT: pull
    annotations from Label Studio" (the last two read the plugin secrets
    LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY).
    """
    source = plugin_source()
    missing = [name for name in PLUGIN_FILES if not source.joinpath(name).is_file()]
    if missing:
        raise InputError(f"the installed activeft_label package lacks its plugin files ({', '.join(missing)} under "
                         f"{source}); reinstall it: pip install --force-reinstall activeft-label")
    if not plugins_dir:
        import fiftyone as fo

        plugins_dir = fo.config.plugins_dir
    if not plugins_dir:
        raise InputError("FiftyOne has no plugins directory configured; pass --plugins-dir or set "
                         "FIFTYONE_PLUGINS_DIR")
    target = os.path.join(os.path.expanduser(plugins_dir), PLUGIN_FOLDER)
    if os.path.exists(target) and not force:
        raise InputError(f"{target} already exists; pass --force to replace it")
    if os.path.exists(target) and not os.path.isdir(target):
        raise InputError(f"{target} is a file, not an installed plugin; move it away, then install again")
    staging = target + ".installing"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        for name in PLUGIN_FILES:
            with open(os.path.join(staging, name), "wb") as handle:
                handle.write(source.joinpath(name).read_bytes())
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"cannot install the plugin into {os.path.dirname(target)} ({exc.strerror or exc}); "
                         f"pass a writable folder with --plugins-dir") from None
    say(f"Installed the activeft plugin into {target}.")
    say("Restart the FiftyOne App, then open the operator browser (press `) and run "
        "\"ActiveFT: select samples to annotate\".")
