#!/bin/sh
# Paper 001 Tables 1, 2, 4, 5, Figs. 4–5, App. C and App. D at CPU scale, one study after another, each
# with its report; prints every step's wall time.
#
#   sh studies/paper001/run_tables.sh [WORK_DIR]      # default WORK_DIR: runs/paper001_tables
#
# WORK_DIR gets data/ (the 64-px synthetic scenes, the same scenes as VOC2007, the object crops), runs/
# (every run dir, study and matrix; rerunning resumes them all) and reports/; a `configs` link to this
# repository's configs/ lets the studies' relative paths resolve there. TICKETLAB (default: the
# repository's .venv/bin/ticketlab) and PYTHON (.venv/bin/python) may point elsewhere.
# Measured (2 cores shared with other sessions; Tables 1, 2, 4, the data and the sources re-measured
# at load 1–7, the rest at load 12–18, so provisional): see README, "Paper 001,
# figure by figure".
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-runs/paper001_tables}
TICKETLAB=${TICKETLAB:-$REPO/.venv/bin/ticketlab}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
STUDIES=$REPO/studies/paper001
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"  # one thread: as fast on 2 cores, and repeatable
mkdir -p "$WORK/runs/paper001" "$WORK/reports"
cd "$WORK"
[ -e configs ] || ln -s "$REPO/configs" configs

step() {  # step NAME COMMAND...: run it, print its wall time
    name=$1; shift
    start=$(date +%s)
    "$@"
    echo "== $name: $(( $(date +%s) - start )) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
}

data() {
    [ -f data/synth64_320/val.json ] || "$TICKETLAB" data synth --out data/synth64_320 --image-size 64
    [ -f data/crops/crops.json ] || "$TICKETLAB" data synth-crops --out data/crops
    [ -d data/voc64_320/VOC2007/ImageSets ] || "$PYTHON" -c \
        "from ticketlab.data.voc_write import synth_to_voc; synth_to_voc('data/synth64_320', 'data/voc64_320/VOC2007')"
}

step data data
step "ImageNet source R-18" "$TICKETLAB" find configs/paper001_cpu_imagenet_r18.yaml --out runs/paper001/imagenet_r18
step "Figs. 4-5, App. C.1, D (Mask R-CNN)" "$TICKETLAB" sweep "$STUDIES/fig4_5_maskrcnn.yaml" --out runs/paper001/fig4_5
step "report Figs. 4-5" "$TICKETLAB" report runs/paper001/fig4_5 --level 2 --out reports/fig4_5   # App. C at 80%
step "App. C.2, D (Keypoint R-CNN)" "$TICKETLAB" sweep "$STUDIES/appc_keypoints.yaml" --out runs/paper001/appc_keypoints
step "report App. C.2" "$TICKETLAB" report runs/paper001/appc_keypoints --level 2 --out reports/appc_keypoints
step "Table 1" "$TICKETLAB" transfer-matrix "$STUDIES/table1_imagenet_tickets.yaml" --out runs/paper001/table1
step "report Table 1" "$TICKETLAB" report runs/paper001/table1 --out reports/table1
step "App. D (convergence)" "$TICKETLAB" sweep "$STUDIES/appd_convergence.yaml" --out runs/paper001/appd
step "report App. D" "$TICKETLAB" report runs/paper001/appd --level 2 --out reports/appd
step "Table 5" "$TICKETLAB" transfer-matrix "$STUDIES/table5_cross_task.yaml" --out runs/paper001/table5
step "report Table 5" "$TICKETLAB" report runs/paper001/table5 --out reports/table5
step "ImageNet source R-50" "$TICKETLAB" find configs/paper001_cpu_imagenet_r50.yaml --out runs/paper001/imagenet_r50
step "Tables 2 and 4" "$TICKETLAB" transfer-matrix "$STUDIES/table2_4_resnet50.yaml" --out runs/paper001/table2_4
step "report Tables 2 and 4" "$TICKETLAB" report runs/paper001/table2_4 --out reports/table2_4
