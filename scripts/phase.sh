#!/bin/sh
# phase.sh NAME CMD [ARG...]: runs CMD, then reports NAME's wall time on stderr and, when IMGFORM_PHASE_LOG
# names a file, appends one line "NAME SECONDS STATUS START" to it (START in Unix seconds, STATUS "ok",
# "exit-N" or "interrupted"). Exits with CMD's status. `make test` wraps each phase in it and .ci/run prints
# the file as a table at the end; phases that run side by side append whole lines to the same file.
set -u
if [ $# -lt 2 ]; then
	echo "usage: phase.sh NAME CMD [ARG...]" >&2
	exit 2
fi
name=$1
shift
case $name in
*[[:space:]]* | "")
	echo "phase.sh: the phase name \"$name\" must be one word" >&2
	exit 2
	;;
esac

start=$(date +%s)
record() {
	secs=$(($(date +%s) - start))
	printf 'phase %s: %s after %d:%02d\n' "$name" "$1" $((secs / 60)) $((secs % 60)) >&2
	if [ -n "${IMGFORM_PHASE_LOG:-}" ]; then
		printf '%s %d %s %d\n' "$name" "$secs" "$1" "$start" >>"$IMGFORM_PHASE_LOG"
	fi
}
# Ctrl-C or a SIGTERM to the process group reaches CMD too; the shell runs these once CMD has ended.
trap 'record interrupted; exit 130' INT
trap 'record interrupted; exit 143' TERM

status=0
"$@" || status=$?
if [ "$status" = 0 ]; then record ok; else record "exit-$status"; fi
exit "$status"
