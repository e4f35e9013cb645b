#!/usr/bin/env bash
# Fetches the OpenSlide shared library that imaging's source::openslide loads at run time (vendors' slide
# formats: Aperio SVS, Hamamatsu NDPI, MIRAX, DICOM, ...), from the PyPI wheel openslide-bin of the pinned
# version, into the git-ignored .openslide/ folder of the repository. Idempotent.
#   scripts/setup/fetch_openslide.sh          # .openslide/lib/libopenslide.so.1 (OpenSlide 4.0.1)
set -euo pipefail

VERSION=4.0.1.2
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$repo/.openslide/lib"
member=libopenslide.so.1

if [[ -s "$dest/$member" ]]; then
  echo "OpenSlide (openslide-bin $VERSION) already at $dest/$member"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-aarch64) ;;
  *) echo "error: this script fetches the Linux wheel; on $(uname -s)-$(uname -m) install OpenSlide 4" \
          "yourself and pass --openslide-lib or set OPENSLIDE_LIB" >&2; exit 1 ;;
esac
command -v python3 >/dev/null || { echo "error: python3 is needed to download the wheel (pip)" >&2; exit 1; }
command -v unzip >/dev/null || { echo "error: unzip is needed to unpack the wheel (apt-get install unzip)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading openslide-bin==$VERSION from PyPI ..."
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "openslide-bin==$VERSION"
wheel="$(ls "$tmp"/*.whl | head -n 1)"
mkdir -p "$dest"
unzip -o -q -j "$wheel" "openslide_bin/$member" -d "$tmp/unpacked"
# Its licence (LGPL-2.1) and those of the libraries linked into it travel with it.
unzip -o -q "$wheel" "openslide_bin-$VERSION.dist-info/licenses/*" -d "$tmp/unpacked"
rm -rf "$dest/licenses"
mv -f "$tmp/unpacked/openslide_bin-$VERSION.dist-info/licenses" "$dest/licenses"
# Moved into place last, so an interrupted run never leaves a truncated library behind.
mv -f "$tmp/unpacked/$member" "$dest/$member"
echo "OpenSlide (openslide-bin $VERSION) is at $dest/$member"
