#!/usr/bin/env bash
# Copies a training run's output (train.py --out OUT) into data/, where the repo keeps it.
#   usage: bash scripts/train/install.sh OUT
set -euo pipefail
out=${1:?usage: install.sh OUT}
mkdir -p data/models data/golden data/logs
rm -rf data/models/target data/models/draft
cp -r "$out/models/target" "$out/models/draft" data/models/
cp "$out/report.json" data/models/report.json
cp "$out/golden.json" data/golden/golden.json
cp "$out/golden-target.logits.safetensors" data/golden/target.logits.safetensors
cp "$out/golden-draft.logits.safetensors" data/golden/draft.logits.safetensors
cp "$out/training_logs.json" data/logs/training_logs.json
[[ -f "$out/train.log" ]] && cp "$out/train.log" data/logs/train.log
chmod 644 data/models/*/* data/golden/* data/logs/*
echo "installed $out into data/; now run: npm run data:gguf && npm run data:readme"
