#!/usr/bin/env bash
# Paper 002's studies at CPU scale, one after the other, printing each one's wall time.
#
#   bash studies/paper002/run_cpu.sh              # every stage, from the repository root
#   bash studies/paper002/run_cpu.sh theta fig2   # only the named stages (each resumes when rerun)
#
# Stages (in this order; later ones read earlier ones' run dirs, all at the paths the study files name,
# relative to the repository root):
#   data     data/paper002/{crops,classify,detect}: the synthetic pre-training crops and targets (detect holds
#            the scenes' COCO boxes and their semantic masks for segmentation; digits come with scikit-learn)
#   theta    runs/paper002/theta/{supervised,simclr,moco,simclr_r34}: the dense pre-trainings θ_p
#            (paper 002 uses the released ImageNet / SimCLR / MoCo v2 ResNet-50 weights; here they are trained
#            for a few minutes on the crops, as scripts/paper002_cpu.py does)
#   fig2     IMP on each pre-training task from its θ_p (Fig. 2); its report also draws Figs. 6 and 7
#   fig3 fig4 fig5 fig11 table1   transfer matrices of fig2's levels onto the downstream targets (fig5's
#            detection matrices: fig5_detection_yolov4 with the paper's YOLOv4, also Fig. 10: its AP50 and
#            AP75 columns; fig5_detection with Faster R-CNN, Fig. 11's panel); figN_*_tickets: IMP on a target itself
#   table2   SimCLR temperature: one more IMP level per temperature, transferred to classification
#   fig9     SimCLR IMP on a deeper ResNet (ResNet-34 for ResNet-152) and its transfer; fig12 its pre-training curve
#   fig8     the controls m^c, m_r, m + Δm_10% of fig3's IMP runs on the classification target from θ_Img,
#            θ0 and θ_5% (`ticketlab controls`), drawn by the report
# Each study's own header says what the paper ran and what the CPU-scale default changes.
# Reports go to runs/paper002/report/<stage>/index.html.
# Measured (2 shared cores at load 12-26, one thread; provisional): data 32 s, theta 203 s, fig2 347 s,
# fig3 989 s, table2 1084 s, fig9 469 s, fig8 436 s, fig5 1468 s (1 seed; segmentation then DeepLabV3 at OS 32); later, at load 5-8: fig4 712 s
# (its 45 mask cells; tickets and dense cells from before), fig11 757 s, fig5 at 3 seeds 1267 s (detection);
# at load 3-4, seed 2 of fig5 366 s (detection), table1 37 s (all its cells copied from
# fig3/fig4/fig5 after checking their config.yaml equal the spec's; none trained). Run fresh, table1 trains every cell again.
# fig3_target_tickets at 3 seeds (Fig. 8's three runs; fig3's stage trains them): its 6 seed-1/2 cells 136 s, fig8 at 3 seeds 565 s.
# At load 5-7: data 60 s, theta 405 s, fig2 379 s; fig5's segmentation with DeepLabv3+ at output stride 16: its tickets
# 133 s + its 45-cell matrix at 3 seeds 839 s; table1 after it 1697 s (its 36 segmentation cells copied from fig5's, 108 trained; load 2-9).
# fig5's YOLOv4 part at 3 seeds (load 6-7): fig5_detection_yolov4_tickets 158 s, fig5_detection_yolov4 1726 s (45 trainings);
# with GroupNorm in its neck (load 1-2): 40 s and 385 s. At load 1-2: data 18 s, theta 62 s, fig2 77 s, table1 605 s (all 144
# cells trained, YOLOv4 its detection target).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
TL="${TICKETLAB:-python -m ticketlab}"
S=studies/paper002
R=runs/paper002

data() {
  [ -f data/paper002/crops/crops.json ] || $TL data synth-crops --seed 0 --n-train 320 --n-val 80 --out data/paper002/crops
  [ -f data/paper002/classify/crops.json ] || $TL data synth-crops --seed 2 --n-train 40 --n-val 80 --pad 0.4 \
    --classes "[square, triangle, hexagon, star, cross]" --imbalance 1.0 --keypoints false --out data/paper002/classify
  [ -f data/paper002/detect/val.json ] || $TL data synth --seed 1 --n-train 160 --n-val 40 --image-size 96 \
    --out data/paper002/detect
}

theta() {  # each pre-training from its own random init (seeds 0, 1, 2, 3), as independent pre-trainings are
  $TL find configs/paper002_cpu_supervised.yaml --out $R/theta/supervised --set prune.levels=0
  $TL find configs/paper002_cpu_simclr.yaml --out $R/theta/simclr --set prune.levels=0 --set train.seed=1
  $TL find configs/paper002_cpu_simclr.yaml --out $R/theta/moco --set prune.levels=0 --set task=moco \
    --set ssl.moco_queue=256 --set ssl.temperature=0.2 --set train.duration=5ep --set train.eval_every=5ep \
    --set train.seed=2
  $TL find configs/paper002_cpu_simclr.yaml --out $R/theta/simclr_r34 --set prune.levels=0 \
    --set model.family=resnet34 --set train.seed=3
}

sweep() {  # sweep STAGE STUDY
  $TL sweep $S/$2 --out $R/$1
  $TL report $R/$1 --out $R/report/$1
}

matrix() {  # matrix STAGE SPEC
  $TL transfer-matrix $S/$2 --out $R/$1
  $TL report $R/$1 --out $R/report/$1
}

fig2() {  # the three pre-training tasks' IMP runs; one report draws Fig. 2 and, across them, Figs. 6 and 7
  # (Fig. 7's kernel maps at level 2, 75%: the level nearest the paper's 79.03%)
  for task in supervised simclr moco; do $TL sweep $S/fig2_$task.yaml --out $R/fig2_$task; done
  $TL report $R/fig2_supervised $R/fig2_simclr $R/fig2_moco --level 2 --out $R/report/fig2
}
tickets() { $TL sweep $S/$1.yaml --out $R/$1; }  # IMP on a downstream task itself: its m_T rows

fig3() { tickets fig3_target_tickets; matrix fig3 fig3_classification.yaml; }
fig4() { tickets fig4_target_tickets; matrix fig4 fig4_domain_gap.yaml; }
fig5() {  # YOLOv4 (the paper's Fig. 5 detector, also Fig. 10: AP50, AP75); Faster R-CNN: Fig. 11's panel
  tickets fig5_detection_yolov4_tickets; matrix fig5_detection_yolov4 fig5_detection_yolov4.yaml
  tickets fig5_detection_tickets; matrix fig5_detection fig5_detection.yaml
  tickets fig5_segmentation_tickets; matrix fig5_segmentation fig5_segmentation.yaml
}
fig11() { matrix fig11_ssd fig11_ssd.yaml; }
table1() { matrix table1 table1_universal.yaml; }
table2() { sweep table2 table2_temperature.yaml; matrix table2_transfer table2_transfer.yaml; }
fig12() {  # with the ResNet-18 SimCLR run of fig2 beside it
  $TL sweep $S/fig12_deeper_resnet.yaml --out $R/fig12
  $TL report $R/fig2_simclr $R/fig12 --out $R/report/fig12
}
fig9() { fig12; matrix fig9 fig9_deeper_resnet_transfer.yaml; }
fig8() {  # the controls m^c, m_r, m + Δm_10% of every level of fig3's target tickets (θ_Img, θ0, θ_5%)
  for cell in $R/fig3_target_tickets/cells/*/; do $TL controls "$cell"; done
  $TL report $R/fig3_target_tickets --out $R/report/fig8
}

STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(data theta fig2 fig3 fig4 fig5 fig11 table1 table2 fig9 fig8)
for stage in "${STAGES[@]}"; do
  start=$(date +%s)
  "$stage"
  echo "[paper002 studies] $stage: $(( $(date +%s) - start )) s  ($(uptime | sed 's/.*load/load/'))"
done
