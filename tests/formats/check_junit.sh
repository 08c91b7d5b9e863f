#!/bin/sh
# Validate a JUnit XML report against the schema Jenkins' xunit plugin uses for JUnit
# (junit.xsd next to this script; see SOURCES.md). Needs xmllint (Debian: libxml2-utils).
# Usage: check_junit.sh FILE     Prints xmllint's errors; exit 0 valid, 1 invalid, 2 usage.
set -u
if [ "$#" -ne 1 ]; then
  echo "usage: $0 FILE" >&2
  exit 2
fi
here=$(dirname "$0")
if ! command -v xmllint >/dev/null 2>&1; then
  echo "$0: xmllint not found (apt-get install libxml2-utils)" >&2
  exit 2
fi
if xmllint --noout --schema "$here/junit.xsd" "$1"; then
  exit 0
fi
exit 1
