#!/usr/bin/env bash
# Embed a folder once, then compare ActiveFT with the baselines on the same features.
# Usage: examples/compare_methods.sh /path/to/images 1%
set -euo pipefail
images=${1:?folder of images}
budget=${2:-1%}
activeft embed "$images" --out features.npz
for method in activeft random kmeans coreset probcover typiclust; do
  activeft select features.npz --budget "$budget" --method "$method" --out "selection_$method.csv" --quiet
done
