"""``activeft sync``: FiftyOne ↔ Label Studio round trip (a thin face over :mod:`activeft_label.sync`).

FiftyOne and the Label Studio SDK are imported inside the commands, so
``activeft --help`` stays fast.
"""

import functools

import click

from ..errors import ActiveFTError, InputError
from .options import (CONTEXT, common_options, friendly_errors, guard_secrets, model_options, say, selection_options,
                      server_options)


@click.group(context_settings=CONTEXT)
def sync():
    """Round trip: select in FiftyOne, annotate in Label Studio, labels back.

    \b
    Commands:
      push    select samples of a dataset and queue them in a Label Studio project
      pull    write the finished annotations back to a label field, by sample id
      status  selected / pushed / annotated / pulled, per round

    \b
    A typical loop:
      activeft sync push   -d my-images --title "Birds" --labels sparrow,finch,crow -b 1%
      (annotate in Label Studio: view "ActiveFT priority", "Label Tasks As Displayed")
      activeft sync pull   -d my-images --project 3 --label-field ground_truth
      activeft sync push   -d my-images --project 3 --round 2 -b 1%
      activeft sync status -d my-images --project 3

    Each task carries its FiftyOne sample id (data field activeft_id), and
    each pushed sample the id of its task (field activeft_ls_task), so labels
    come back to the right samples whatever the order of tasks.  Every
    command can be run again at any time: after an interruption it completes
    the work, otherwise it changes nothing.

    The server and key come from --url / --api-key or LABEL_STUDIO_URL /
    LABEL_STUDIO_API_KEY (personal access tokens and legacy tokens both work).
    """


def _resumable(command):
    """An interrupted sync is completed by running it again: say so instead of 'nothing was written'."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            error = ActiveFTError("interrupted; run the same command again to complete it (nothing is duplicated)")
            error.exit_code = 130
            raise error from None

    return wrapper


def _dataset_options(command):
    options = [
        click.option("--dataset", "-d", "dataset_name", required=True, metavar="NAME", envvar="ACTIVEFT_DATASET",
                     show_envvar=True, help="FiftyOne dataset name."),
        click.option("--saved-view", metavar="NAME", help="Work on this saved view of the dataset."),
        click.option("--view-stages", metavar="JSON",
                     help="Narrow further by these view stages (a JSON list, as the App's \"copy view as JSON\")."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


_TASK_FIELD_HELP = "Integer sample field holding each pushed sample's Label Studio task id."


@sync.command("push", context_settings=CONTEXT)
@_dataset_options
@click.option("--project", "-p", "project_id", type=int, metavar="ID",
              help="An existing Label Studio project (the number in its URL).")
@click.option("--title", "-t", help="The project with this title; created when there is none (needs --labels).")
@click.option("--labels", "-l", metavar="A,B,C",
              help="Label names, for a project created here (checked against an existing one).")
@click.option("--task", type=click.Choice(["classification", "detection"]), default="classification",
              show_default=True, help="Labeling interface of a project created here: Choices or RectangleLabels.")
@click.option("--round", "round_number", type=click.IntRange(1), default=1, show_default=True,
              help="Round K > 1 selects --budget more samples, with every queued sample as a fixed centroid, and "
                   "queues them after rounds 1..K-1.")
@selection_options(budget_required=False,
                   budget_help="How many samples to select: a count (300) or a percentage of the target (1%). "
                               "Needed when the round has no selection run yet; an existing run is reused.")
@click.option("--run-name", default="activeft", show_default=True, metavar="NAME",
              help="FiftyOne selection run (and saved view) of round 1; round K uses NAME_roundK.")
@click.option("--reselect", is_flag=True,
              help="Select the round again even though its selection run exists (refused once a later round was "
                   "pushed). The only way to replace a pushed run.")
@click.option("--repair", is_flag=True,
              help="Mend a queue that names a sample in two rounds (left by an earlier version): each such sample "
                   "stays in its earliest round and the project's ranks are written again.")
@click.option("--embeddings-field", metavar="FIELD",
              help="Read the embeddings from this vector field instead of computing them with --model.")
@click.option("--exclude-labeled", multiple=True, metavar="FIELD|tag:NAME",
              help="Samples with a value in FIELD (or tag NAME) count as labeled: never selected. Repeatable.")
@click.option("--tag", default="activeft", show_default=True, help="Tag added to the selected samples.")
@click.option("--task-field", default="activeft_ls_task", show_default=True, metavar="FIELD", help=_TASK_FIELD_HELP)
@click.option("--images", type=click.Choice(["auto", "upload", "local-files"]), default="auto", show_default=True,
              help="How the server gets the images: uploaded, or served from its local-files document root "
                   "(auto: local files when --document-root holds them).")
@click.option("--document-root", envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", show_envvar=True,
              type=click.Path(file_okay=False), help="The server's local-files document root.")
@click.option("--import-batch", type=click.IntRange(1), default=500, show_default=True,
              help="Tasks per import request.")
@model_options
@common_options
@server_options
@click.pass_context
@friendly_errors
@guard_secrets
@_resumable
def push_command(ctx, dataset_name, saved_view, view_stages, project_id, title, labels, task, round_number, budget,
                 selection, run_name, reselect, repair, embeddings_field, exclude_labeled, tag, task_field, images,
                 document_root, import_batch, embedding, device, quiet, url, api_key):
    """Select samples of a dataset and queue them in Label Studio in priority order.

    Selects --budget samples of the dataset (or view) with ActiveFT and
    records the selection in FiftyOne (tag, rank field, saved view, run), or
    reuses the round's selection run when it exists; then puts the selected
    samples into the project as tasks in rank order, creates the "ActiveFT
    priority" view, and stores each task's id on its sample (--task-field).

    Running it again changes nothing; after an interruption (Ctrl-C, a
    killed process, a server that went away) it completes the push without
    duplicating tasks.  Tasks deleted in Label Studio are created again.

    \b
    Examples:
      activeft sync push -d my-images --title "Birds" --labels sparrow,finch,crow -b 300
      activeft sync push -d my-images -p 3 -b 1% --embeddings-field clip
      activeft sync push -d my-images -p 3 --round 2 -b 200
    """
    from click.core import ParameterSource

    if embeddings_field and ctx.get_parameter_source("model") == ParameterSource.COMMANDLINE:
        raise InputError("give either --embeddings-field (read stored embeddings) or --model (compute them), "
                         "not both")
    if (project_id is None) == (title is None):
        raise InputError("give either --project ID (an existing project) or --title TITLE (found or created)")
    if labels is not None:
        from ..connectors.labelstudio import parse_labels

        parse_labels(labels)
    if images == "local-files" and not document_root:
        raise InputError("--images local-files needs --document-root (or LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    from ..devices import resolve_device

    resolve_device(device)
    from .. import sync as sync_module
    from ..connectors import fiftyone as fo_connector
    from ..connectors.labelstudio import connect

    _, view = fo_connector.resolve_view(dataset_name, saved_view=saved_view, view_stages=view_stages)
    options = dict(embeddings_field=embeddings_field, exclude_labeled=list(exclude_labeled) or None, tag=tag,
                   device=device)
    with connect(url, api_key) as conn:
        result = sync_module.push(view, conn, budget, project_id=project_id, title=title, labels=labels, task=task,
                                  round_number=round_number, run_name=run_name, reselect=reselect,
                                  repair=repair, task_field=task_field, images=images, document_root=document_root,
                                  batch_size=import_batch, selection=selection,
                                  embedding=None if embeddings_field else embedding, selection_options=options,
                                  progress=not quiet)
    if result.selection is not None:
        say(result.selection.describe())
    say(result.describe())


@sync.command("pull", context_settings=CONTEXT)
@_dataset_options
@click.option("--project", "-p", "project_id", required=True, type=int, metavar="ID",
              help="The Label Studio project (the number in its URL).")
@click.option("--label-field", "-f", required=True, metavar="FIELD",
              help="Label field to write: fo.Classification (Choices), fo.Classifications (multiple choice) or "
                   "fo.Detections (RectangleLabels). Created when absent.")
@click.option("--overwrite", is_flag=True,
              help="Replace labels that differ from the annotation (without it they are kept and reported).")
@click.option("--control", metavar="NAME",
              help="The Choices / RectangleLabels control to read, when the label config has several.")
@click.option("--task-field", default=None, metavar="FIELD",
              help=_TASK_FIELD_HELP + " Default: the field the push to this project used (activeft_ls_task unless "
                                      "--task-field was given there).")
@server_options
@friendly_errors
@guard_secrets
@_resumable
def pull_command(dataset_name, saved_view, view_stages, project_id, label_field, overwrite, control, task_field, url,
                 api_key):
    """Write the project's finished annotations to a label field, by sample id.

    Each task is matched to its sample by the sample id stored in the task
    (activeft_id), never by position.  Choices become fo.Classification,
    RectangleLabels fo.Detections (Label Studio's percentages converted to
    FiftyOne's relative [x, y, width, height]).  Of several annotations of a
    task the latest non-cancelled one counts; tasks the annotators skipped
    give no label.  Each label records ls_task_id and ls_annotation_id.

    A sample that already holds a different label keeps it unless
    --overwrite.  Running the command again changes nothing.  Tasks of
    deleted samples and samples of deleted tasks are reported.

    \b
    Example:
      activeft sync pull -d my-images -p 3 --label-field ground_truth
    """
    from .. import sync as sync_module
    from ..connectors import fiftyone as fo_connector
    from ..connectors.labelstudio import connect

    _, view = fo_connector.resolve_view(dataset_name, saved_view=saved_view, view_stages=view_stages)
    with connect(url, api_key) as conn:
        result = sync_module.pull(view, conn, project_id, label_field, overwrite=overwrite, control=control,
                                  task_field=task_field)
    say(result.describe())


@sync.command("status", context_settings=CONTEXT)
@_dataset_options
@click.option("--project", "-p", "project_id", required=True, type=int, metavar="ID",
              help="The Label Studio project (the number in its URL).")
@click.option("--label-field", "-f", metavar="FIELD",
              help="Label field counted as pulled (default: the one of the last pull from this project).")
@server_options
@friendly_errors
@guard_secrets
def status_command(dataset_name, saved_view, view_stages, project_id, label_field, url, api_key):
    """Show, per round, how many samples are selected, pushed, annotated and pulled.

    \b
    selected   samples of the round's selection run
    pushed     of those, samples whose task exists in the project
    annotated  of those, tasks with an annotation that is not cancelled
    pulled     of those, samples whose label field holds a label pulled from their task

    A queue in which several tasks hold the same priority rank is reported
    (on stderr) with the command that mends it (sync push --repair).
    """
    from .. import sync as sync_module
    from ..connectors import fiftyone as fo_connector
    from ..connectors.labelstudio import connect

    _, view = fo_connector.resolve_view(dataset_name, saved_view=saved_view, view_stages=view_stages)
    with connect(url, api_key) as conn:
        rows = sync_module.status(view, conn, project_id, label_field=label_field)
    header = ("round", "run", "selected", "pushed", "annotated", "pulled")
    table = [header] + [(str(r.round), r.run_name, str(r.selected), str(r.pushed), str(r.annotated), str(r.pulled))
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        say("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    for line in rows.describe_problems(dataset_name, project_id):
        say(line, err=True)
