#!/usr/bin/env bash
# The README's test command. On a fresh machine it installs the external
# clients the tests use (kcat, from Debian), then runs the whole suite under
# the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null 2>&1; then
	echo "scripts/test.sh: installing kcat (Debian package)" >&2
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && apt-get install -y -qq kcat >/dev/null
	elif command -v sudo >/dev/null 2>&1; then
		sudo apt-get update -qq && sudo apt-get install -y -qq kcat >/dev/null
	else
		echo "scripts/test.sh: cannot install kcat (not root, no sudo); kcat tests will be skipped" >&2
	fi
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "scripts/test.sh: not gofmt-ed:" $unformatted >&2
	exit 1
fi
go vet ./...
go test -race -timeout 30m -count=1 ./...
# The allocation guards (testing.AllocsPerRun) skip themselves under -race,
# where sync.Pool drops items on purpose; run them once without it.
go test -count=1 -run 'Allocs' ./broker ./storage
