#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (go test fuzzes one target per
# invocation). With SAVE=1, the inputs the fuzzer found interesting (its
# cache corpus) are copied into each package's testdata/fuzz/, where plain
# `go test` replays them on every run: that is how the committed corpus
# grows.
#   FUZZTIME=2m SAVE=1 PARALLEL=1 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
parallel=${PARALLEL:-$(nproc)}
targets=(
	./commands:FuzzParseID ./commands:FuzzParseInt64 ./commands:FuzzQuoted ./commands:FuzzDispatch
	./server:FuzzParse ./cache:FuzzModel ./tests:FuzzServerStream
)
cache=$(go env GOCACHE)/fuzz
for t in "${targets[@]}"; do
	dir=${t%%:*} name=${t#*:}
	echo "== fuzz $name in $dir for $fuzztime"
	go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -parallel "$parallel" "$dir"
	pkg=$(go list "$dir")
	if [ "${SAVE:-0}" = 1 ] && [ -d "$cache/$pkg/$name" ]; then
		mkdir -p "$dir/testdata/fuzz/$name"
		cp -n "$cache/$pkg/$name"/* "$dir/testdata/fuzz/$name/" 2>/dev/null || true
		echo "   corpus: $(ls "$dir/testdata/fuzz/$name" | wc -l) inputs in $dir/testdata/fuzz/$name"
	fi
done
