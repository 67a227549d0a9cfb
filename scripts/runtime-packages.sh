#!/bin/sh
# Prints, one per line and sorted, the Debian packages that own the shared
# libraries BINARY loads. The Dockerfile's build stage runs it so that the
# runtime stage installs exactly those packages, whatever the distribution
# calls them (bookworm's libprotobuf32 is Ubuntu 24.04's libprotobuf32t64).
#
# A library that no package owns (CUDA from the base image, a driver library
# the container runtime mounts in) is reported on stderr and left out: the
# runtime image must provide it, and the Dockerfile's ldd check says if not.
set -eu
binary=${1:?usage: runtime-packages.sh BINARY}

# ldd prints the path the loader resolved (/lib/... or /usr/lib/...), while
# dpkg may have registered the other one on a merged-/usr system: ask for both,
# and for the symlink's target.
owner() {
  real=$(readlink -f "$1")
  for path in "$1" "$real"; do
    for candidate in "$path" "/usr$path" "${path#/usr}"; do
      if line=$(dpkg -S "$candidate" 2>/dev/null); then
        printf '%s\n' "${line%%:*}" | head -n 1   # "pkg:arch: path" -> "pkg"
        return 0
      fi
    done
  done
  return 1
}

ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
  owner "$lib" || echo "runtime-packages: no package owns $lib" >&2
done | sort -u
