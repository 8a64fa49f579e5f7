"""Names, markers and limits shared by the FiftyOne connector's modules."""

import re

DEFAULT_TAG = "activeft"
DEFAULT_RANK_FIELD = "activeft_rank"
DEFAULT_RUN_NAME = "activeft"

#: Marker stored in every run config this connector writes (tells our runs from other runs).
RUN_MARKER = "activeft_label"

#: Fields FiftyOne manages itself; never written here.
RESERVED_FIELDS = frozenset({"id", "_id", "filepath", "tags", "metadata", "created_at", "last_modified_at",
                             "media_type", "_media_type", "_rand", "_dataset_id", "frames"})

#: Run names: also FiftyOne run keys and saved-view names (ASCII, so that FiftyOne's URL form of the name is not empty).
RUN_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")

#: Images embedded per call when progress is reported (the encoder is loaded once).
PROGRESS_CHUNK = 64
