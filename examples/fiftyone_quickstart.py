"""Two annotation rounds on a FiftyOne dataset, then the ranked samples in the App.

    python examples/fiftyone_quickstart.py /path/to/images [--app]

Builds (or reuses) the dataset "activeft-quickstart" from a folder of images,
selects 2% with ActiveFT (embeddings computed offline with EfficientNet-Lite0
and stored in the field "activeft_embedding"), pretends the picks were
labeled, and runs a second round that builds on the first.  With --app, opens
the App on the second round's saved view.
"""

import sys

import fiftyone as fo

from activeft_label.connectors import fiftyone as aft

NAME = "activeft-quickstart"


def main(folder, app=False):
    if fo.dataset_exists(NAME):
        dataset = fo.load_dataset(NAME)
    else:
        dataset = fo.Dataset.from_images_dir(folder, name=NAME, persistent=True, recursive=True)
    print(f"{NAME}: {len(dataset)} samples")

    first = aft.select_samples(dataset, "2%", store_embeddings="activeft_embedding", run_name="round1",
                               progress=True)
    print(first.describe())

    # Pretend the annotators labeled round 1 (a real project would import their labels here).
    first_view = dataset.load_saved_view("round1")
    first_view.set_values("ground_truth", [fo.Classification(label="done") for _ in range(len(first_view))])

    # Round 2 reads the stored embeddings and keeps the labeled samples as fixed centroids.
    second = aft.select_samples(dataset, "2%", embeddings_field="activeft_embedding", run_name="round2",
                                rank_field="round2_rank", exclude_labeled="ground_truth")
    print(second.describe())

    if app:
        session = fo.launch_app(dataset.load_saved_view("round2"))
        session.wait()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--app"]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], app="--app" in sys.argv)
