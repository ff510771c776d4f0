#!/usr/bin/env bash
# Statement-Tuning ablations (issue 5), each a `bench train` + `bench run` pair on one shared size:
#   languages       en | 11 | 25           (English templates, with translation pairs)
#   templates       en | translated        (25 languages)
#   translation     with | without         (25 languages, English templates)
# The 25/en/with run is the common baseline of all three. Runs resume where they stopped (re-run the script).
#
#   bash benchmarks/statement_tuning_ablations.sh            # reduced CPU size (below), about 40 min on 2 cores
#   PER_TASK=1500 STEPS=20000 LIMIT= bash benchmarks/statement_tuning_ablations.sh   # full size, full eval sets
#   bench report results/ablations/*/eval --out reports/ablations
set -euo pipefail

MODEL=${MODEL:-me5-small}
METHOD=${METHOD:-lora}
PER_TASK=${PER_TASK:-100}        # statements per (task type, language)
STEPS=${STEPS:-300}              # optimizer steps, batch 16
MAX_LENGTH=${MAX_LENGTH:-128}
LIMIT=${LIMIT-100}               # eval examples per language ("" = full eval sets)
THREADS=${THREADS:-2}
OUT=${OUT:-results/ablations}

run_one() {  # name, extra bench-train options...
  local name=$1; shift
  local dir="$OUT/$name"
  echo "== $name: bench train $* =="
  bench train --model "$MODEL" --method "$METHOD" --per-task "$PER_TASK" --max-steps "$STEPS" \
    --eval-every "$((STEPS / 3))" --max-length "$MAX_LENGTH" --threads "$THREADS" --output "$dir/model" "$@"
  bench run --backend encoder --model "$dir/model" --tasks all --threads "$THREADS" \
    ${LIMIT:+--limit "$LIMIT"} --output "$dir/eval"
}

run_one langs-en --langs en
run_one langs-11 --langs 11
run_one langs-25 --langs 25
run_one templates-translated --langs 25 --template-language translated
run_one no-translation --langs 25 --no-translation
