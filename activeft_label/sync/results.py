"""What a push, a pull and a status report: the results the faces print."""

from dataclasses import dataclass, field


@dataclass
class PushResult:
    """What :func:`push` did.

    ``project_id``, ``project_title``, ``round``, ``run_name`` (the FiftyOne
    selection run of this round), ``reused`` (the run existed and was reused
    instead of selecting again), ``selected`` (samples of this round),
    ``queued`` (samples of every round in the project's queue), ``created`` /
    ``updated`` / ``unchanged`` tasks, ``cleared`` (tasks of earlier
    selections, not in this queue, whose rank was removed), ``uploaded`` images, ``recreated``
    (samples whose earlier task was gone and got a new one),
    ``missing_samples`` (ids of the selection no longer in the dataset),
    ``url`` (the priority view), ``warnings``, ``elapsed`` (s),
    ``selection`` (the FiftyOne SelectionSummary when selected now).
    """

    project_id: int
    project_title: str
    round: int
    run_name: str
    reused: bool
    selected: int
    queued: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    uploaded: int = 0
    recreated: int = 0
    missing_samples: list = field(default_factory=list)
    url: str = ""
    warnings: list = field(default_factory=list)
    elapsed: float = 0.0
    selection: object = None

    def describe(self):
        how = "reused the selection run" if self.reused else "selected"
        lines = [f"Round {self.round}: {how} {self.run_name!r} ({self.selected} samples); "
                 f"{self.queued} samples queued in Label Studio project {self.project_id} ({self.project_title}).",
                 f"Tasks: {self.created} created, {self.updated} updated, {self.unchanged} unchanged"
                 + (f", {self.cleared} no longer in the queue (rank removed)" if self.cleared else "")
                 + (f", {self.uploaded} images uploaded" if self.uploaded else "") + "."]
        if self.recreated:
            lines.append(f"{self.recreated} task(s) had been deleted in Label Studio and were created again.")
        if self.missing_samples:
            lines.append(f"{len(self.missing_samples)} selected sample(s) are no longer in the dataset and were left "
                         f"out (e.g. {self.missing_samples[0]}).")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        lines.append(f"Priority view: {self.url}")
        return "\n".join(lines)


@dataclass
class PullResult:
    """What :func:`pull` did.

    ``label_field``, ``control`` (the Label Studio control read), ``kind``
    (``classification`` / ``detection``), ``annotated`` (tasks with an
    annotation that counts), sample ids ``written``, ``unchanged`` and
    ``conflicts`` (a different label was there; kept without ``overwrite``),
    ``cancelled`` (task ids whose annotations were all cancelled),
    ``several`` (task ids with more than one annotation: the latest counted),
    ``empty`` (task ids whose annotation has nothing for the control),
    ``foreign`` (task ids without an ``activeft_id``: not pushed by activeft),
    ``missing_samples`` (task ids whose sample is gone from the dataset),
    ``deleted_tasks`` (sample ids whose task is gone from the project),
    ``problems`` (results that could not be converted), ``elapsed`` (s).
    """

    label_field: str
    control: str
    kind: str
    annotated: int = 0
    written: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    cancelled: list = field(default_factory=list)
    several: list = field(default_factory=list)
    empty: list = field(default_factory=list)
    foreign: list = field(default_factory=list)
    missing_samples: list = field(default_factory=list)
    deleted_tasks: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    elapsed: float = 0.0

    def describe(self):
        lines = [f"{self.annotated} annotated task(s) read from control {self.control!r} ({self.kind}): "
                 f"{len(self.written)} label(s) written to {self.label_field!r}, {len(self.unchanged)} unchanged."]
        if self.conflicts:
            lines.append(f"{len(self.conflicts)} sample(s) already hold a different label in {self.label_field!r} "
                         f"and were left as they are (e.g. {self.conflicts[0]}); pass --overwrite to replace them.")
        if self.several:
            lines.append(f"{len(self.several)} task(s) have several annotations: the latest non-cancelled one was "
                         f"used.")
        if self.cancelled:
            lines.append(f"{len(self.cancelled)} task(s) were skipped by the annotators (only cancelled "
                         f"annotations): no label.")
        if self.empty:
            lines.append(f"{len(self.empty)} annotation(s) have no {self.control!r} result: no label.")
        if self.missing_samples:
            lines.append(f"{len(self.missing_samples)} task(s) belong to samples that are not in the dataset (deleted) "
                         f"or not in the target view (e.g. task {self.missing_samples[0]}): skipped.")
        if self.deleted_tasks:
            lines.append(f"{len(self.deleted_tasks)} pushed sample(s) have no task in the project any more (deleted "
                         f"in Label Studio; e.g. sample {self.deleted_tasks[0]}); `activeft sync push` creates them "
                         f"again.")
        if self.foreign:
            lines.append(f"{len(self.foreign)} annotated task(s) were not pushed by activeft (no activeft_id): "
                         f"ignored.")
        for problem in self.problems[:5]:
            lines.append(f"Warning: {problem}")
        if len(self.problems) > 5:
            lines.append(f"... and {len(self.problems) - 5} more warnings.")
        return "\n".join(lines)


@dataclass
class StatusRow:
    """One row of :func:`status`: a round (or ``"total"``) and its counts."""

    round: object
    run_name: str
    selected: int
    pushed: int
    annotated: int
    pulled: int


class StatusRows(list):
    """What :func:`activeft_label.sync.status` returns: the rows, and the ranks held twice.

    ``duplicate_ranks``: {rank: [task ids]} of the priority ranks that more
    than one task of the project holds (empty when the queue is sound).
    """

    def __init__(self, rows=(), duplicate_ranks=None):
        super().__init__(rows)
        self.duplicate_ranks = dict(duplicate_ranks or {})

    def describe_problems(self, dataset_name, project_id):
        """Lines that tell what is wrong with the queue and the command that mends it (none when sound)."""
        if not self.duplicate_ranks:
            return []
        shown = "; ".join(f"rank {rank}: tasks {', '.join(map(str, ids))}"
                          for rank, ids in list(self.duplicate_ranks.items())[:3])
        more = f" and {len(self.duplicate_ranks) - 3} more" if len(self.duplicate_ranks) > 3 else ""
        count = len(self.duplicate_ranks)
        return [f"Warning: {count} priority rank(s) are held by more than one task ({shown}{more}).",
                f"Run `activeft sync push -d {dataset_name} -p {project_id} --repair` to write the ranks again from "
                f"the selection runs."]
