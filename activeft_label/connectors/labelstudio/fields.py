"""What the connector writes into a project: the task data fields, the priority view and the model version."""

#: Task data field holding the source item's stable id.
ID_FIELD = "activeft_id"
#: Task data field holding the annotation priority (1 = first).
RANK_FIELD = "activeft_rank"
#: Title of the Data Manager view that lists the selection in rank order.
VIEW_TITLE = "ActiveFT priority"
#: ``model_version`` of the priority predictions.
MODEL_VERSION = "activeft"
#: Data field of the image in projects that :func:`setup_project` creates.
IMAGE_FIELD = "image"
