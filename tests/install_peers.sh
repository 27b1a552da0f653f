#!/usr/bin/env bash
# Install the Debian packages of the peers the tests talk to
# (tests/debian_peers.txt) when some are missing: with apt-get as root, or
# through passwordless sudo; otherwise say exactly what to run, and fail.
# `deno task test` runs this first.
set -euo pipefail
case "$0" in
  */*) cd "${0%/*}/.." ;;
  *) cd .. ;;
esac

packages=()
while IFS= read -r line; do
  line="${line%%#*}"
  line="${line//[[:space:]]/}"
  if [ -n "$line" ]; then packages+=("$line"); fi
done < tests/debian_peers.txt

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "ptkit tests: this is not a Debian system (no dpkg-query)." >&2
  echo "Install these peers with your package manager, then run the tests again:" >&2
  echo "  ${packages[*]}" >&2
  exit 1
fi

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
  if [ "${status:0:2}" != "ii" ]; then missing+=("$package"); fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "ptkit tests: the peers are installed (${packages[*]})."
  exit 0
fi

echo "ptkit tests: these Debian packages are missing: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get is not available: install them with your package manager, then run" >&2
  echo "the tests again." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "Installing them needs root. Run this, then the tests again:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing: apt-get install -y ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y "${missing[@]}"
