#!/usr/bin/env bash
# Unpacks into $1 the source of the Abseil that Debian installed
# (libabsl-dev), with Debian's patches applied, for the ThreadSanitizer
# build: ThreadSanitizer only sees the locking of instrumented code, and
# absl::Mutex, which the server locks with everywhere, lives in Abseil. The
# same version and patches keep it interchangeable with the shared library
# gRPC was built against (same inline namespace, same options).
set -euo pipefail
dest="$1"
if [ -f "$dest/.unpacked" ]; then exit 0; fi
version=$(dpkg-query -W -f='${Version}' libabsl-dev)   # e.g. 20220623.1-1+deb12u2
upstream=${version%-*}                                   # 20220623.1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() {  # the file from the main archive, else from the security archive
  curl -fsSL -o "$tmp/$1" "http://deb.debian.org/debian/pool/main/a/abseil/$1" ||
    curl -fsSL -o "$tmp/$1" "http://deb.debian.org/debian-security/pool/updates/main/a/abseil/$1"
}
fetch "abseil_${upstream}.orig.tar.gz"
fetch "abseil_${version}.debian.tar.xz"
rm -rf "$dest"
mkdir -p "$dest"
tar -xzf "$tmp/abseil_${upstream}.orig.tar.gz" -C "$dest" --strip-components=1
tar -xJf "$tmp/abseil_${version}.debian.tar.xz" -C "$dest"
while read -r patch; do
  [ -z "$patch" ] || [[ "$patch" == \#* ]] && continue
  patch -d "$dest" -p1 -s < "$dest/debian/patches/$patch"
done < "$dest/debian/patches/series"
touch "$dest/.unpacked"
echo "abseil $version unpacked in $dest"
