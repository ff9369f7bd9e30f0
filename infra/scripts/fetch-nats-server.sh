#!/usr/bin/env bash
# Give Corral a nats-server with `sync_interval: always` that is safe to kill (2.10.23 or later,
# docs/decisions/0012) where this host's is older (Debian 12: 2.9.10): Debian 13 (trixie)'s `nats-server`
# package, fetched with apt's own tools and unpacked into .corral/nats-server (src/bus/nats-binary.ts runs
# .corral/nats-server/usr/sbin/nats-server when it is newer than PATH's). The host stays as it was: apt runs
# with a private source list, state, cache and preferences under .corral/apt; the mirror is the one the
# host's own sources name for its Debian release; the trixie index is checked with the host's
# /usr/share/keyrings/debian-archive-keyring.gpg (bookworm's 2023.3+deb12u2 holds the Debian 13 keys; an
# older one is upgraded from the host's own sources when run as root), and the .deb with the index's hash.
#
# Run by bootstrap.sh. Exits 0 when there is nothing to do (a few ms) or the fetch worked; 1 after saying
# why on stderr when it failed (the caller warns and goes on with the host's server). After a failure it
# waits an hour before it asks the network again (rm .corral/apt/failed to retry at once).
set -euo pipefail
cd "$(dirname "$0")/../.."
MIN=2.10.23
SUITE=trixie
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
dest=.corral/nats-server
bin=$dest/usr/sbin/nats-server
apt_dir=$PWD/.corral/apt

version_of() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true; }
recent() { [ -n "$1" ] && dpkg --compare-versions "$1" ge "$MIN"; }
ready() { recent "$(version_of nats-server)" || recent "$(version_of "$bin")"; }
ready && exit 0

mkdir -p "$apt_dir"
exec 9>"$apt_dir/lock"
flock -w 600 9 # another bootstrap may be fetching right now
ready && exit 0
if [ -n "$(find "$apt_dir/failed" -mmin -60 2>/dev/null)" ]; then
  echo "fetch-nats-server: the last fetch failed ($(head -n1 "$apt_dir/failed"));" \
    "retried an hour after it, or now after rm $apt_dir/failed" >&2
  exit 1
fi
fail() {
  echo "$1" >"$apt_dir/failed"
  echo "fetch-nats-server: $1" >&2
  [ ! -s "$apt_dir/apt.log" ] || tail -n 5 "$apt_dir/apt.log" | sed 's/^/  apt: /' >&2
  exit 1
}
: >"$apt_dir/apt.log"

# The host's own Debian mirror (and security mirror) for its release, as apt reads its sources
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
targets=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' || true)
mirror=$(awk -v s="$codename" '$2 == s { print $1; exit }' <<<"$targets")
security=$(awk -v s="$codename-security" '$2 == s { print $1; exit }' <<<"$targets")
[ -n "$codename" ] && [ -n "$mirror" ] || fail "no Debian archive for '$codename' in this host's apt sources"
[ -r "$KEYRING" ] || fail "$KEYRING is missing (apt-get install debian-archive-keyring)"

mkdir -p "$apt_dir"/{state/lists/partial,cache/archives/partial,sources.list.d,preferences.d,debs}
: >"$apt_dir/state/status"
{
  echo "# Written by infra/scripts/fetch-nats-server.sh: Debian $SUITE, from this host's own mirrors"
  echo "deb [signed-by=$KEYRING] $mirror $SUITE main"
  [ -z "$security" ] || echo "deb [signed-by=$KEYRING] $security $SUITE-security main"
} >"$apt_dir/sources.list"
apt=(
  -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
  -o "Dir::Etc::preferences=$apt_dir/preferences" -o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
  -o "Dir::State=$apt_dir/state" -o "Dir::State::Lists=$apt_dir/state/lists"
  -o "Dir::State::status=$apt_dir/state/status" -o "Dir::Cache=$apt_dir/cache"
  -o Acquire::Languages=none -o Acquire::Retries=1 -o Acquire::http::Timeout=30
)
candidate() {
  apt-get "${apt[@]}" -q update >>"$apt_dir/apt.log" 2>&1 || true # judged by what it verified, below
  apt-cache "${apt[@]}" policy nats-server 2>>"$apt_dir/apt.log" | awk '/Candidate:/ { print $2 }'
}
echo "bootstrap: fetching nats-server from Debian $SUITE ($mirror) into $dest…"
version=$(candidate)
if [ "$version" = "(none)" ] || [ -z "$version" ]; then
  if grep -q NO_PUBKEY "$apt_dir/apt.log" && [ "$(id -u)" = 0 ]; then
    # Debian 12 before 12.11 lacks the Debian 13 archive keys: bookworm's own keyring update has them
    echo "bootstrap: upgrading debian-archive-keyring (the Debian 13 archive key) from this host's sources…"
    upgrade=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --only-upgrade debian-archive-keyring)
    { apt-get -q update && "${upgrade[@]}"; } >>"$apt_dir/apt.log" 2>&1 || true
    version=$(candidate)
  fi
fi
if [ "$version" = "(none)" ] || [ -z "$version" ]; then
  grep -q NO_PUBKEY "$apt_dir/apt.log" &&
    fail "$KEYRING lacks the Debian $SUITE archive key: apt-get update && apt-get install debian-archive-keyring"
  fail "no verified nats-server in Debian $SUITE from $mirror"
fi
upstream=${version#*:}
recent "${upstream%%-*}" || fail "Debian $SUITE has nats-server $version, older than $MIN"

rm -f "$apt_dir"/debs/*.deb
[ "$(id -u)" != 0 ] || ! id _apt >/dev/null 2>&1 || chown _apt "$apt_dir/debs" # apt downloads as _apt
(cd "$apt_dir/debs" && apt-get "${apt[@]}" -q download "nats-server=$version" >>"$apt_dir/apt.log" 2>&1) ||
  fail "apt-get download nats-server=$version failed"
deb=$(ls "$apt_dir"/debs/nats-server_*.deb)
tmp=$(mktemp -d "$apt_dir/unpack.XXXXXX")
dpkg-deb -x "$deb" "$tmp" || fail "dpkg-deb -x $deb failed"
chmod 755 "$tmp"
got=$(version_of "$tmp/usr/sbin/nats-server")
recent "$got" || { rm -rf "$tmp"; fail "the unpacked nats-server does not run or reports '$got'"; }
echo "nats-server $version from $mirror $SUITE (sha256 $(sha256sum "$deb" | cut -d' ' -f1))" >"$tmp/FETCHED"
rm -rf "$dest"
mv "$tmp" "$dest"
rm -rf "$apt_dir/debs" "$apt_dir/state/lists" "$apt_dir/failed" # 10 MB of index, needed again only to update
echo "bootstrap: nats-server $got (Debian $SUITE's $version) in $dest: JetStream runs with sync_interval: always"
