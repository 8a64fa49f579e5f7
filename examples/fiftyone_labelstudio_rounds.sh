#!/usr/bin/env bash
# Two annotation rounds: FiftyOne dataset → Label Studio queue → labels back → the next round.
# Usage: LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=... \
#        examples/fiftyone_labelstudio_rounds.sh my-dataset "My project" cat,dog,bird 1%
set -euo pipefail
dataset=${1:?FiftyOne dataset name}
title=${2:?Label Studio project title}
labels=${3:?comma-separated labels}
budget=${4:-1%}

# Round 1: select, queue in priority order (creates the project), store the task ids on the samples.
activeft sync push --dataset "$dataset" --title "$title" --labels "$labels" --budget "$budget"
read -r -p "Annotate in Label Studio (view 'ActiveFT priority', 'Label Tasks As Displayed'), then press Enter. "

# The project id, from the sync record activeft keeps on the dataset.
project=$(python -c "import fiftyone as fo, sys; r = fo.load_dataset(sys.argv[1]).info['activeft_labelstudio']; \
print(next(k for k, v in r.items() if v['title'] == sys.argv[2]))" "$dataset" "$title")

activeft sync pull --dataset "$dataset" --project "$project" --label-field ground_truth
# Round 2: every queued sample is a fixed centroid; the new picks go to the end of the queue.
activeft sync push --dataset "$dataset" --project "$project" --round 2 --budget "$budget"
activeft sync status --dataset "$dataset" --project "$project"
