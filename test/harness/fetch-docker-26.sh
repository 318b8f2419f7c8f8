#!/usr/bin/env bash
# Fetches Debian 13 (trixie)'s docker.io (engine 26.1) and unpacks it into a
# cache folder without installing it, so tests can run a second, newer engine
# next to Debian 12's 20.10. Only docker.io itself is taken from trixie:
# Debian 12's containerd and runc run it (see machine-notes.md).
#
# usage: fetch-docker-26.sh [DEST]
#   DEST defaults to $OVN_DOCKER26_DIR or /var/cache/ovn-docker-driver-test/docker-26
#   The Debian mirror is the one this machine's apt uses for bookworm;
#   $DEBIAN_MIRROR overrides it.
# On success prints DEST, which then holds DEST/usr/sbin/dockerd.
set -euo pipefail

dest=${1:-${OVN_DOCKER26_DIR:-/var/cache/ovn-docker-driver-test/docker-26}}
suite=trixie
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

if [[ -x $dest/usr/sbin/dockerd ]]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$dest"
# Two test runs may fetch at once; the second one waits and then finds it done.
exec 9>"$dest/.lock"
flock 9
if [[ -x $dest/usr/sbin/dockerd ]]; then
  echo "$dest"
  exit 0
fi

find_mirror() {
  local f
  # deb822 (.sources): the URIs of a stanza whose Suites name plain "bookworm".
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk '
      function flush() { if (is_bookworm && uri != "") { print uri; found = 1; exit } uri = ""; is_bookworm = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") is_bookworm = 1 }
      END { if (!found) flush() }
    ' "$f"
  done
  # One-line format: deb [options] URI bookworm components...
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    sed -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $3 == "bookworm" { print $2 }'
  done
}

mirror=${DEBIAN_MIRROR:-$(find_mirror | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
echo "fetching docker.io from $mirror $suite into $dest" >&2

apt_dir=$dest/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$suite" >"$apt_dir/sources.list"

# Everything apt would read or write outside $apt_dir is redirected, so the
# machine's own package state (lists, cache, sources) is neither used nor touched.
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::archives=$apt_dir/cache/archives"
  -o "APT::Get::List-Cleanup=false"
  -o "Acquire::Retries=2"
  -o "Acquire::http::Timeout=20"
  -o "Debug::NoLocking=true"
)

apt-get "${apt_opts[@]}" update >&2
(cd "$apt_dir/cache/archives" && apt-get "${apt_opts[@]}" download docker.io >&2)

deb=$(ls -1 "$apt_dir"/cache/archives/docker.io_*.deb | tail -n 1)
staging=$dest/.staging
rm -rf "$staging"
mkdir -p "$staging"
dpkg -x "$deb" "$staging"

# Move usr last: its dockerd is what marks the cache complete.
for entry in "$staging"/*; do
  name=$(basename "$entry")
  [[ $name == usr ]] && continue
  rm -rf "${dest:?}/$name"
  mv "$entry" "$dest/$name"
done
rm -rf "${dest:?}/usr"
mv "$staging/usr" "$dest/usr"
rmdir "$staging"

"$dest/usr/sbin/dockerd" --version >&2
echo "$dest"
