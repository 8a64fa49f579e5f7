"""The two annotation tools, one package each: :mod:`.fiftyone` and :mod:`.labelstudio`.

Each pulls items from its tool, runs the selection (:mod:`activeft_label.selection`,
embedding with :mod:`activeft_label.embeddings`) and pushes the ranked picks
back.  Neither imports the other: :mod:`activeft_label.sync` is the only code
that knows both.  Each imports its tool lazily, so importing this package
needs neither FiftyOne nor the Label Studio SDK.
"""
