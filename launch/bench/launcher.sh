#!/bin/bash
# launcher.sh STIR CATALOG_DIR [REPS]: what starting a job costs as the catalog grows.
#
# For catalogs of 20,000 and 200,000 rows (CATALOG_DIR/catalog.csv's rows repeated under
# new ids and labels, so every image exists), it runs `STIR embed` and records the seconds
# and the peak RSS (VmHWM) when the launcher has checked everything and starts the job
# ("running…" on stderr), and when the first image file is opened (inotify); then it kills
# the job. It prints each run and the median of REPS (default 3) per catalog size.
# Needs inotifywait (Debian: inotify-tools). `make bench-launcher` runs it on the demo catalog.
set -euo pipefail
stir=$(realpath "$1") dir=$(realpath "$2") reps=${3:-3}
command -v inotifywait >/dev/null || { echo "launcher.sh: needs inotifywait (apt-get install inotify-tools)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# repeat N: the catalog's rows repeated to N rows, each copy with its own ids and labels.
repeat() {
	awk -F, -v n="$1" 'NR == 1 { print "id," $0; next } { rows[++m] = $0 }
		END { for (i = 0; i < n; i++) { r = rows[i % m + 1]; split(r, f, ","); sub(/^[^,]*/, f[1] + 1000 * int(i / m), r); print "r" i "," r } }' \
		"$dir/catalog.csv"
}

# once CATALOG: one run, printing "launcher_s launcher_mb first_s first_mb".
once() {
	local out="$work/run" ev="$work/ev" err="$work/err"
	rm -rf "$out" "$ev" "$err"
	inotifywait -q -m -r -e open --format '%w%f' "$dir" >"$ev" 2>/dev/null &
	local iw=$!
	sleep 0.3
	local start t1 h1 t2 h2
	start=$(date +%s.%N)
	"$stir" embed --catalog "$1" --root "$dir" --output "$out" --progress=false 2>"$err" >/dev/null &
	local pid=$!
	until grep -q running "$err" 2>/dev/null; do
		kill -0 $pid 2>/dev/null || { cat "$err" >&2; kill $iw; exit 1; }
		sleep 0.01
	done
	t1=$(date +%s.%N) h1=$(awk '/VmHWM/ { print $2 }' /proc/$pid/status)
	until grep -q '\.\(jpg\|png\)$' "$ev" 2>/dev/null; do sleep 0.01; done
	t2=$(date +%s.%N) h2=$(awk '/VmHWM/ { print $2 }' /proc/$pid/status)
	kill $pid $iw 2>/dev/null || true
	wait $pid $iw 2>/dev/null || true
	echo "$(echo "$t1 - $start" | bc) $((h1 / 1024)) $(echo "$t2 - $start" | bc) $((h2 / 1024))"
}

printf '%-8s %12s %12s %14s %14s\n' rows launcher_s launcher_MB first_image_s first_image_MB
for n in 20000 200000; do
	repeat $n >"$dir/repeated-$n.csv"
	for i in $(seq "$reps"); do once "$dir/repeated-$n.csv"; done >"$work/runs"
	rm -f "$dir/repeated-$n.csv"
	sed "s/^/  run: /" "$work/runs" >&2
	med() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
	printf '%-8d %12s %12s %14s %14s\n' $n \
		"$(cut -d' ' -f1 "$work/runs" | med)" "$(cut -d' ' -f2 "$work/runs" | med)" \
		"$(cut -d' ' -f3 "$work/runs" | med)" "$(cut -d' ' -f4 "$work/runs" | med)"
done
