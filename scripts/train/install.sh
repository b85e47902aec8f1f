#!/usr/bin/env bash
# Copies a training run's output (train.py --out OUT) into data/, where the repo keeps it.
#   usage: bash scripts/train/install.sh OUT
set -euo pipefail
out=${1:?usage: install.sh OUT}
mkdir -p data/models data/golden data/logs
for m in "$out"/models/*/; do  # target, draft and the extra drafts
  rm -rf "data/models/$(basename "$m")" && cp -r "$m" data/models/
done
cp "$out/report.json" data/models/report.json
cp "$out/golden.json" data/golden/golden.json
for f in "$out"/golden-*.logits.safetensors; do cp "$f" "data/golden/$(basename "$f" | sed 's/^golden-//')"; done
cp "$out/training_logs.json" data/logs/training_logs.json
[[ -f "$out/train.log" ]] && cp "$out/train.log" data/logs/train.log
chmod 644 data/models/*/* data/golden/* data/logs/*
echo "installed $out into data/; now run: npm run data:gguf && npm run data:readme"
