#!/bin/sh
# lakeloop ci from any CI system, a cron job or a git hook: exit 0 passed, 1 blocked, 2 error.
#
#   LAKELOOP_LAKE=/srv/lake sh docs/examples/ci.sh [md|json|html]
#
# The lake is --lake, then LAKELOOP_LAKE, then [project] lake in lakeloop.toml. The
# report (Markdown for a pull-request comment by default; html has the plot of each model
# version's metric with its interval) is written to gate-report.<format>.
set -u
format=${1:-md}

lakeloop ci --report "$format" --out "gate-report.$format"
status=$?

case $status in
  0) echo "gate passed (gate-report.$format)" ;;
  1) echo "gate BLOCKED: see gate-report.$format" >&2 ;;
  *) echo "lakeloop ci stopped on an error (exit $status)" >&2 ;;
esac
exit $status
