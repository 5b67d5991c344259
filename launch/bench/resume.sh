#!/usr/bin/env bash
# What a killed run costs: `stir run` on CATALOG unbroken, then killed (SIGKILL) at FRACTION
# of the unbroken wall time and rerun on the same --output. Prints both walls and checks
# that the resumed run wrote the unbroken run's files (metrics.json's work counts apart).
#
#   bash launch/bench/resume.sh bin/stir out/demo/catalog/catalog.csv out/bench/resume 0.6
set -euo pipefail
stir=$1 catalog=$2 work=$3 fraction=${4:-0.6}
rm -rf "$work" && mkdir -p "$work"
run() { "$stir" run --catalog "$catalog" --output "$work/run" --progress=false --latest none "$@"; }
now() { date +%s.%N; }

t0=$(now); run >"$work/unbroken.log"; t1=$(now)
unbroken=$(echo "$t1 - $t0" | bc -l)
mv "$work/run" "$work/unbroken"

kill_at=$(echo "$unbroken * $fraction" | bc -l)
run >"$work/killed.log" 2>&1 & pid=$!
sleep "$kill_at"
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
t2=$(now); run >"$work/resumed.log"; t3=$(now)
resumed=$(echo "$t3 - $t2" | bc -l)

same=yes
while IFS= read -r f; do
  rel=${f#"$work/unbroken/"}
  if [ "$rel" = metrics.json ]; then
    cmp -s <(jq -S 'del(.work)' "$f") <(jq -S 'del(.work)' "$work/run/$rel") || { same=no; echo "differs: $rel"; }
  else
    cmp -s "$f" "$work/run/$rel" || { same=no; echo "differs: $rel"; }
  fi
done < <(find "$work/unbroken" -type f | sort)

printf 'unbroken run   %7.1f s\n' "$unbroken"
printf 'killed at      %7.1f s (%.0f %%)\n' "$kill_at" "$(echo "$fraction * 100" | bc -l)"
printf 'resumed run    %7.1f s  = %.3f of the unbroken run\n' "$resumed" "$(echo "$resumed / $unbroken" | bc -l)"
printf 'killed + resumed %5.1f s  = %.3f of the unbroken run\n' "$(echo "$kill_at + $resumed" | bc -l)" "$(echo "($kill_at + $resumed) / $unbroken" | bc -l)"
echo "resumed files identical to the unbroken run's: $same"
grep -E '^  (reused|pairs reused|embedded|pairs) ' "$work/resumed.log" | sed 's/^/  resumed: /'
