#!/usr/bin/env bash
# Train on a Slurm cluster, one process per GPU (mmdet's usual pattern):
#   [GPUS=16 GPUS_PER_NODE=8] tools/slurm_train.sh PARTITION JOB_NAME CONFIG \
#       WORK_DIR [tools/train.py args...]
# mmengine reads the rank, world size and master node from Slurm's
# environment (--launcher slurm); set MASTER_PORT to run two jobs on one
# node. Add --resume to continue from WORK_DIR/last_checkpoint after a
# preemption or requeue (it starts from scratch when there is none yet).
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher=slurm "${@:5}"
