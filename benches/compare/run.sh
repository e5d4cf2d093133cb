#!/usr/bin/env bash
# Side by side: one training step of a language-model head in xent (fused, and unfused over
# its own GEMMs) and in PyTorch (chunked F.linear_cross_entropy, and unfused), on the same
# shapes and threads, alternating so that a drifting machine affects both alike. Not part
# of CI. PyTorch is installed in a venv of its own beside this script (benches/compare/.venv).
#
#   bash benches/compare/run.sh                      # the README's shapes and 2048x1024x32000
#   bash benches/compare/run.sh 2048 1024 32000      # one shape: rows dim classes
#   ROUNDS=5 THREADS=2 bash benches/compare/run.sh
#   VENV=/path/to/venv bash benches/compare/run.sh   # a venv that already has torch
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

TORCH_VERSION=2.15.0
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-$(nproc)}"
venv="${VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    "$venv/bin/pip" install --quiet "torch==$TORCH_VERSION" numpy
fi
cargo build --release --quiet -p xent-benches --example lm_head

if [ $# -eq 3 ]; then
    shapes=("$1 $2 $3")
else
    shapes=("4096 2048 32000" "4096 2048 128256" "2048 1024 32000")
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs)), $THREADS threads, torch $TORCH_VERSION"
for shape in "${shapes[@]}"; do
    read -r rows dim classes <<< "$shape"
    echo "== $rows rows x dim $dim x $classes classes"
    for round in $(seq "$ROUNDS"); do
        # xent: the fused and unfused steps and the three GEMMs alone, one process.
        out="$(RAYON_NUM_THREADS=$THREADS target/release/examples/lm_head "$rows" "$dim" "$classes" plain)"
        fused="$(sed -n 's/^ *fused: .*| \([0-9.]*\) s | peak extra memory \([0-9.]*\) MiB.*/\1 \2/p' <<< "$out")"
        unfused="$(sed -n 's/^ *unfused: .*| \([0-9.]*\) s | peak extra memory \([0-9.]*\) MiB.*/\1 \2/p' <<< "$out")"
        gemms="$(sed -n 's/^three GEMMs alone: \([0-9.]*\) s.*/\1/p' <<< "$out")"
        chunked="$("$venv/bin/python" "$here/lm_head.py" chunked "$rows" "$dim" "$classes" "$THREADS")"
        torch_unfused="$("$venv/bin/python" "$here/lm_head.py" unfused "$rows" "$dim" "$classes" "$THREADS")"
        python3 - "$fused" "$unfused" "$gemms" "$chunked" "$torch_unfused" "$round" <<'PY'
import sys
fused_s, fused_mib = map(float, sys.argv[1].split())
unfused_s, unfused_mib = map(float, sys.argv[2].split())
gemms_s = float(sys.argv[3])
_, _, chunked_s, chunked_rss = sys.argv[4].split()
_, _, tunfused_s, tunfused_rss = sys.argv[5].split()
chunked_s, tunfused_s = float(chunked_s), float(tunfused_s)
print(f"round {sys.argv[6]}: xent fused {fused_s:.3f} s ({fused_mib:.1f} MiB extra) | xent unfused {unfused_s:.3f} s "
      f"| xent's 3 GEMMs {gemms_s:.3f} s | torch chunked {chunked_s:.3f} s (peak RSS {chunked_rss} MiB) "
      f"| torch unfused {tunfused_s:.3f} s (peak RSS {tunfused_rss} MiB) "
      f"|| fused/torch chunked {fused_s / chunked_s:.2f}x, fused/torch unfused {fused_s / tunfused_s:.2f}x, "
      f"fused/3 GEMMs {fused_s / gemms_s:.2f}x")
PY
    done
done
