#!/usr/bin/env bash
# Paper 001's Fig. 1, 2a, 2b, 2c/2e, 2d, 2f, 3 and Table 3 at CPU scale, one study after another, each
# followed by its report; prints every study's wall time (and the load average it ran under, since the
# time depends on what else the machine runs). Rerun to resume: finished cells are skipped.
#
#   bash studies/paper001/run_figures.sh                      # from the repository root; 3 seeds
#   SEEDS="0" OUT=/tmp/p001 bash studies/paper001/run_figures.sh   # one seed (what the README's rows ran)
#   ONLY="fig2a_base_top fig2d_oneshot_iterative" bash studies/paper001/run_figures.sh
#
# Studies run from the current directory, so data.root=data/synth64 (in each study's CPU-scale lines)
# is made here first if missing. With SEEDS other than "0 1 2" each study runs from a copy under
# OUT/studies/ whose train.seed axis is SEEDS (the copy names the same base config, so the cells are
# the ones the full study would have). Measured times: README, "Paper 001, figure by figure" — one seed
# 309–756 s per study (load 8–25); seeds 1–2 added to a finished seed 0 (load 1–8): Fig. 1 Mask R-CNN
# 502 s, Keypoint R-CNN 221 s, Fig. 2a 743 s, 2b 543 s, 2c/2e 843 s, 2d 731 s, 2f 845 s, Table 3 1,650 s
# (load 2–4); Fig. 3 (IMP, 120 it per level, lr 0.01), seeds 0, 1, 2: 1005 s (load 1–2).
#   OUT     where the study dirs and reports go (default runs/paper001_figures)
#   PYTHON  the interpreter with ticketlab installed (default python3)
#   STUDIES the folder of the study files (default: this script's)
set -euo pipefail

HERE="${STUDIES:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
OUT="${OUT:-runs/paper001_figures}"
SEEDS="${SEEDS:-0 1 2}"
PYTHON="${PYTHON:-python3}"
ONLY="${ONLY:-fig1_maskrcnn fig1_keypointrcnn fig3_r18_r50 fig2a_base_top fig2ce_global_layerwise fig2d_oneshot_iterative fig2b_late_reset fig2f_early_bird table3_modules}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
tl() { "$PYTHON" -m ticketlab "$@"; }

[ -f data/synth64/train.json ] || tl data synth --out data/synth64 --image-size 64 --n-train 96 --n-val 32
mkdir -p "$OUT/studies"
failed=""

study_file() {  # the study itself, or its copy with the seeds of $SEEDS
  local name="$1"
  if [ "$SEEDS" = "0 1 2" ]; then echo "$HERE/$name.yaml"; return; fi
  "$PYTHON" - "$HERE/$name.yaml" "$OUT/studies/$name.yaml" "$SEEDS" <<'EOF'
import sys
from pathlib import Path
import yaml
src, dst, seeds = Path(sys.argv[1]), Path(sys.argv[2]), [int(s) for s in sys.argv[3].split()]
spec = yaml.safe_load(src.read_text())
spec["config"] = str((src.parent / spec["config"]).resolve())
spec["grid"]["train.seed"] = seeds
dst.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
EOF
  echo "$OUT/studies/$name.yaml"
}

for name in $ONLY; do
  start=$(date +%s)
  load=$(cut -d' ' -f1 /proc/loadavg)
  if ! tl sweep "$(study_file "$name")" --out "$OUT/$name"; then  # the others still run; rerun resumes
    echo "== $name: FAILED after $(( $(date +%s) - start )) s (see above)"; failed="$failed $name"; continue
  fi
  if [ "$name" = fig2f_early_bird ]; then  # Fig. 2f's retrained early-bird ticket, mask drawn at 30%
    for cell in "$OUT/$name"/cells/*/; do
      ls "$cell"level_01/branch_early_bird_*/metrics.json >/dev/null 2>&1 || tl branch "${cell}level_01" early_bird --fraction 0.3
    done
  fi
  tl report "$OUT/$name" --out "$OUT/report_$name" >/dev/null
  echo "== $name: $(( $(date +%s) - start )) s wall (load average at start $load, now $(cut -d' ' -f1 /proc/loadavg)); report $OUT/report_$name/index.html"
done
[ -z "$failed" ] || { echo "failed:$failed"; exit 1; }
