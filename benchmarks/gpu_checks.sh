#!/usr/bin/env bash
# Every GPU check in one run, most important first, within a time budget (default 540 s): the CUDA tests,
# full-configuration CIFAR-10 epochs (python -m benchmarks.speed.epochs: eager, then torch.compile), the
# one-rank NCCL step against the plain one (python -m benchmarks.distributed.gpu), python -m benchmarks.speed
# on the GPU, then the whole test suite on CUDA. Each step is logged to $WORK/<step>.log and cut short when
# the budget runs out. After every step, $OUT receives summary.txt and
# gpu_checks.tgz (all logs and result tables): two files, whatever the number of results, so that a remote
# runner that returns few files loses nothing.
#
#     OUT=runs/gpu BUDGET=540 bash benchmarks/gpu_checks.sh
#
# Runs from the repository root, from the source tree (no install: PYTHONPATH=. makes imc_cluster and
# the benchmarks package importable). It needs the CIFAR-10 JPEG archive at data/cifar10-jpeg.tar.gz
# (or the extracted tree at data/cifar10), and pytest importable, e.g. from data/pydeps:
#     pip install --target data/pydeps --python-version 3.12 --only-binary=:all: pytest
set -u
OUT=${OUT:-runs/gpu}
WORK=${WORK:-runs/gpu_checks}
BUDGET=${BUDGET:-540}
END=$(( $(date +%s) + BUDGET ))
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}${PYTHONPATH_EXTRA:+:$PYTHONPATH_EXTRA}"
[ -d data/pydeps ] && export PYTHONPATH="$PYTHONPATH:$PWD/data/pydeps"

report() {  # report LINE: add LINE to the summary, and refresh what $OUT holds
    echo "$1" | tee -a "$WORK/summary.txt"
    cp "$WORK/summary.txt" "$OUT/summary.txt"
    tar czf "$OUT/gpu_checks.tgz" -C "$WORK" .
}

step() {  # step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (less if the budget is short)
    local name=$1 limit=$2; shift 2
    local left=$(( END - $(date +%s) ))
    if (( left < 20 )); then report "[$name: skipped, budget spent]"; return; fi
    (( limit > left )) && limit=$left
    local start=$(date +%s)
    timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
    report "[$name: exit $? after $(( $(date +%s) - start )) s, limit $limit s]"
}

nvidia-smi > "$WORK/nvidia-smi.txt" 2>&1
python -c "import sys, torch, torchvision, sklearn; print(sys.version); print(torch.__version__, \
torchvision.__version__, sklearn.__version__, torch.cuda.get_device_name())" > "$WORK/versions.txt" 2>&1
if [ ! -d data/cifar10/train ]; then
    mkdir -p data/cifar10 && tar xzf data/cifar10-jpeg.tar.gz -C data/cifar10
fi
step decode 120 python -c "from imc_cluster.data.datasets import load_dataset; load_dataset('folder', 'data/cifar10')"
step cuda_tests 150 python -m pytest -q tests/test_cuda.py
step epochs_eager 150 python -m benchmarks.speed.epochs --data data/cifar10 --epochs 4 --modes eager \
    --output "$WORK/epochs_eager"
step distributed 90 python -m benchmarks.distributed.gpu --output "$WORK/distributed_gpu"
step speed 200 python -m benchmarks.speed --device cuda --batch-size 256 --data data/cifar10 \
    --output "$WORK/speed_cuda"
step epochs_compile 180 python -m benchmarks.speed.epochs --data data/cifar10 --epochs 3 --modes compile \
    --output "$WORK/epochs_compile"
step all_tests 300 python -m pytest -q -p no:cacheprovider
