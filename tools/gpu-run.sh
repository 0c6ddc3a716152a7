#!/usr/bin/env bash
# One short, self-contained hobench run on a GPU machine with no network (docs/gpu.md):
#
#   tools/gpu-run.sh        from the repository root, with the wheels of `make gpu-pack` in .whl/
#
# 1. installs the pack's wheels (optuna, mlxtend, autorank, cmaes, torchopt, higher, hobench, ...)
#    into a temporary target next to the interpreter's own torch and packages, and checks that
#    the installed hobench is this tree's;
# 2. in stages, each under its own time limit (about 8 minutes in all by default): the engine
#    benchmarks on the device (float64 reference and peers included), the smoke suite, one seed
#    of the default suite, population training at k = 1, 32, 256, 1024 on the default tasks;
# 3. writes every result and a one-page SUMMARY.md into $OUT (at most 8 files: the suites' result
#    folders and the logs travel as tarballs), rewriting the summary after each stage, so a run
#    cut short still says what it measured.
#
# Settings (environment):
#   DEVICE=cuda      the device: cuda (default) or cpu (the CPU test runs the same script)
#   QUICK=1          tiny sizes, to exercise the script on a CPU in a minute or two
#   OUT=DIR          where results go (default: results/local/gpu-run-$DEVICE)
#   PACK=.whl        the wheels;  PYTHON=python3  the interpreter whose torch is used
#   ENGINE_S SMOKE_S DEFAULT_S POP_S REPORT_S   each stage's limit in seconds (default 180 60
#                    120 75 45), all within TOTAL_S=560 from the start (QUICK: 1800)
#   ENGINE_T=500     engine steps T;  ENGINE_COMPILE=0  eager engine cases (1: compiled path,
#                    which compiles in every process and may not fit ENGINE_S)
#   RUN="engine smoke default population"   the stages to run (default: all four)
#   KEEP_WORK=1      keep the scratch folder (default: removed; everything is in $OUT)
#   JOBS=1           cells at a time in the suites (1: seconds per cell comparable to the CPU's)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PACK=$(cd "${PACK:-.whl}" 2>/dev/null && pwd) || {
    echo "gpu-run: no pack at ${PACK:-.whl}: run make gpu-pack first" >&2
    exit 2
}
PYTHON=${PYTHON:-python3}
case $PYTHON in */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;; esac
JOBS=${JOBS:-1}
OUT=${OUT:-results/local/gpu-run-$DEVICE}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hobench-gpu-run.XXXXXX")
# The scratch folder (installed pack, runs, logs) goes at the end; KEEP_WORK=1 keeps it.
[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
SITE=$WORK/site
LOGS=$WORK/logs
mkdir -p "$LOGS" "$WORK/runs"
if [ "$QUICK" = 1 ]; then
    ENGINE_T=${ENGINE_T:-5}; POP_KS=${POP_KS:-"1 4"}; POP_ROUNDS=${POP_ROUNDS:-1}
    POP_TASKS=${POP_TASKS:-ridge}; SMOKE_ONLY=${SMOKE_ONLY:-ridge/random}
    DEFAULT_ONLY=${DEFAULT_ONLY:-ridge/default}
    # The float64 reference, both peers' agreement and two timed cases; no memory subprocesses.
    ENGINE_K=${ENGINE_K:-"float64 or peer_agrees or (test_time and (plain-analytic or reverse))"}
else
    ENGINE_T=${ENGINE_T:-500}; POP_KS=${POP_KS:-"1 32 256 1024"}; POP_ROUNDS=${POP_ROUNDS:-3}
    POP_TASKS=${POP_TASKS:-"ridge hc-R250 auxtarget"}; SMOKE_ONLY=${SMOKE_ONLY:-}
    DEFAULT_ONLY=${DEFAULT_ONLY:-}; ENGINE_K=${ENGINE_K:-}
fi
ENGINE_S=${ENGINE_S:-180}; SMOKE_S=${SMOKE_S:-60}; DEFAULT_S=${DEFAULT_S:-120}; POP_S=${POP_S:-75}
REPORT_S=${REPORT_S:-45}
RUN=" ${RUN:-engine smoke default population} "
# Every stage ends by this many seconds after the start, whatever its own limit: the device
# call's limit (600 s) is never reached, so what was measured always comes back.
TOTAL_S=${TOTAL_S:-$([ "$QUICK" = 1 ] && echo 1800 || echo 560)}
STAGES=$WORK/stages.jsonl
: >"$STAGES"
FAILED=()
echo "gpu-run: device $DEVICE, quick=$QUICK, out $OUT, work $WORK"

summarize() {
    "$PYTHON" "$ROOT/tools/gpu_summary.py" --work "$WORK" --out "$OUT" --device "$DEVICE" \
        --quick "$QUICK" --root "$ROOT" --pack "$PACK" || echo "gpu-run: the summary failed (see above)" >&2
}

# stage NAME LIMIT_S COMMAND...: runs it under its limit (SIGTERM, then SIGKILL 20 s later), log
# in $LOGS/NAME.log, status in stages.jsonl, then the summary is rewritten.
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$((TOTAL_S - SECONDS - 25))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        echo "== $name: skipped, ${left} s left of TOTAL_S=$TOTAL_S"
        printf '{"stage": "%s", "rc": 125, "seconds": 0, "limit_s": %d}\n' "$name" "$limit" \
            >>"$STAGES"
        FAILED+=("$name")
        summarize
        return 0
    fi
    echo "== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout -k 20 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    local rc=$?
    local took=$((SECONDS - start))
    tail -n 25 "$LOGS/$name.log"
    echo "== $name: exit $rc after $took s$([ $rc = 124 ] && echo ' (hit its limit)')"
    [ $rc = 0 ] || FAILED+=("$name")
    printf '{"stage": "%s", "rc": %d, "seconds": %d, "limit_s": %d}\n' \
        "$name" "$rc" "$took" "$limit" >>"$STAGES"
    summarize
    return 0
}

# 1. The pack, next to the interpreter's own packages.
start=$SECONDS
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$PACK"/*.whl >"$LOGS/install.log" 2>&1
rc=$?
export PYTHONPATH=$SITE
if [ $rc = 0 ]; then
    # The installed hobench must be this tree's: the benchmarks beside it come from the tree.
    if ! diff -rq -x __pycache__ "$ROOT/hobench" "$SITE/hobench" >>"$LOGS/install.log" 2>&1; then
        echo "the pack's hobench differs from this tree's: run make gpu-pack again" \
            | tee -a "$LOGS/install.log" >&2
        rc=3
    fi
fi
if [ $rc = 0 ]; then
    # From $WORK: the tree's own hobench is not on the path there.
    (cd "$WORK" && "$PYTHON" - >>"$LOGS/install.log" 2>&1) <<'EOF'
import importlib, sys
import torch
for name in ("optuna", "mlxtend", "autorank", "cmaes", "torchopt", "higher", "hobench",
             "numpy", "pandas", "scipy", "statsmodels", "seaborn", "pytest_benchmark"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')} {module.__file__}")
print(f"python {sys.version.split()[0]}; torch {torch.__version__}; cuda {torch.version.cuda}; "
      f"gpu {torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}")
EOF
    rc=$?
fi
cat "$LOGS/install.log"
printf '{"stage": "install", "rc": %d, "seconds": %d, "limit_s": 0}\n' \
    "$rc" "$((SECONDS - start))" >>"$STAGES"
if [ $rc != 0 ]; then
    summarize
    echo "gpu-run: installing the pack failed (exit $rc): see $OUT/SUMMARY.md" >&2
    exit 1
fi
{ nvidia-smi 2>&1 || echo "nvidia-smi: not here"; } >"$LOGS/nvidia-smi.log"

# The benchmarks and suites run from a copy, so nothing lands in the tree (results/local).
cp -r "$ROOT/benchmarks" "$ROOT/suites" "$ROOT/pyproject.toml" "$WORK/"
sed 's/^seeds = .*/seeds = [0]/' "$ROOT/suites/default.toml" >"$WORK/suites/default-seed0.toml"
cd "$WORK"
HOBENCH=("$PYTHON" -m hobench)

wanted() { [[ $RUN == *" $1 "* ]]; }

# 2a. The engine benchmarks (benchmarks/test_engine.py) on the device.
K_ARGS=()
[ -n "$ENGINE_K" ] && K_ARGS=(-k "$ENGINE_K")
if wanted engine; then
    stage engine "$ENGINE_S" env HOBENCH_BENCH_DEVICE="$DEVICE" HOBENCH_BENCH_T="$ENGINE_T" \
        HOBENCH_COMPILE="${ENGINE_COMPILE:-0}" "$PYTHON" -m pytest -p no:cacheprovider benchmarks \
        --benchmark-storage="$WORK/benchmark-storage" --benchmark-sort=name \
        --benchmark-columns=min,median,max,rounds --benchmark-group-by=group \
        --benchmark-name=short --benchmark-save="engine-$DEVICE-T$ENGINE_T" "${K_ARGS[@]}"
fi

# 2b. The smoke suite and 2c. one seed of the default suite; each report under its own limit.
suite() {
    local name=$1 file=$2 only=$3 limit=$4
    local args=(run "$file" --device "$DEVICE" --jobs "$JOBS" --results-dir "$WORK/runs/$name")
    [ -n "$only" ] && args+=(--only "$only")
    stage "$name" "$limit" "${HOBENCH[@]}" "${args[@]}"
    if [ -f "$WORK/runs/$name/runs.jsonl" ]; then
        stage "$name-report" "$REPORT_S" "${HOBENCH[@]}" report "$WORK/runs/$name"
    fi
}
wanted smoke && suite "smoke-$DEVICE" suites/smoke.toml "$SMOKE_ONLY" "$SMOKE_S"
if wanted default; then
    suite "default-seed0-$DEVICE" suites/default-seed0.toml "$DEFAULT_ONLY" "$DEFAULT_S"
fi

# 2d. Population training: configurations per second at each k.
if wanted population; then
    # shellcheck disable=SC2086
    stage population "$POP_S" "$PYTHON" -m benchmarks.population --device "$DEVICE" \
        --ks $POP_KS --rounds "$POP_ROUNDS" --tasks $POP_TASKS \
        --out "$WORK/population-$DEVICE.json"
fi

cd "$ROOT"
summarize
ls -l "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu-run: FAILED or cut short: ${FAILED[*]} (see $OUT/SUMMARY.md, logs.tar.gz)" >&2
    exit 1
fi
echo "gpu-run: every stage finished; $OUT/SUMMARY.md"
