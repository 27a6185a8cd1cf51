#!/usr/bin/env bash
# Builds the image from ./Containerfile where no container registry can be reached: both bases
# are made with debootstrap (Debian bookworm, from the Debian mirror) and imported with podman,
# the Swift toolchain at /opt/swift and the Swift package mirror are mounted into the build, and
# buildah builds with the vfs driver and chroot isolation (no daemon, no overlay mounts).
#
#   scripts/build-image.sh [tag]        (default localhost/hospital:dev; needs root)
#   scripts/build-image.sh --bases-only (only the two bases, if missing: CI makes them early)
#
# Elsewhere (no /opt/swift and package mirror) it builds with the Containerfile's default bases.
#
# A registry-connected CI builds the same file with its default bases instead (README).
set -euo pipefail
cd "$(dirname "$0")/.."
bases_only=false
if [ "${1:-}" = --bases-only ]; then bases_only=true; shift; fi
tag=${1:-localhost/hospital:dev}
work=${HOSPITAL_IMAGE_WORK:-/var/tmp/hospital-image}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
swift_root=${SWIFT_ROOT:-/opt/swift}
packages=${SWIFT_PACKAGE_MIRROR:-/opt/swift-packages}
storage=(--storage-driver vfs)
# SHELL (pipefail in RUN) is kept only by the docker image format.
format=(--format docker)

if [ ! -x "$swift_root/usr/bin/swift" ] || [ ! -d "$packages" ]; then
    # Not one of this project's offline machines: the Containerfile's own bases, from the registry.
    echo "== buildah bud -f Containerfile -t $tag (bases from the registry)"
    exec buildah "${storage[@]}" bud "${format[@]}" --isolation chroot --network host --layers \
        -f Containerfile -t "$tag" .
fi

# debootstrap's minimal variant plus the named packages, imported as an image (once).
base() {
    local name=$1 include=$2 path=$3
    if podman "${storage[@]}" image exists "$name"; then return; fi
    echo "== $name: debootstrap --variant=minbase bookworm (+ $include)"
    rm -rf "$work/$path"
    mkdir -p "$work"
    debootstrap --variant=minbase --include="$include" bookworm "$work/$path" "$mirror" >"$work/$path.log" 2>&1 \
        || { tail -20 "$work/$path.log" >&2; exit 1; }
    rm -rf "$work/$path"/var/lib/apt/lists/* "$work/$path"/var/cache/apt/archives/*.deb
    if [ "$path" = builder ]; then
        # What a Swift toolchain image has on PATH, and github.com read from the local mirror.
        git config --file "$work/$path/etc/gitconfig" --add "url.$packages/.insteadOf" https://github.com/
    fi
    tar -C "$work/$path" -c . | podman "${storage[@]}" import \
        --change "ENV PATH=$swift_root/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
    rm -rf "$work/$path"
}

# The runtime base: what debian:bookworm-slim would be.
base localhost/bookworm-minbase ca-certificates,tzdata runtime
# The build base: what swift:6.3-bookworm would be, with the toolchain mounted instead of copied.
base localhost/swift-builder \
    ca-certificates,git,binutils,gcc,libc6-dev,libgcc-12-dev,libstdc++-12-dev,zlib1g-dev,libuuid1,libsqlite3-0,libncurses6,libcurl4,libxml2,pkg-config,librdkafka-dev \
    builder

if $bases_only; then exit 0; fi

echo "== buildah bud -f Containerfile -t $tag"
buildah "${storage[@]}" bud "${format[@]}" --isolation chroot --network host --layers \
    --build-arg SWIFT_IMAGE=localhost/swift-builder \
    --build-arg RUNTIME_IMAGE=localhost/bookworm-minbase \
    --volume "$swift_root:$swift_root:ro" --volume "$packages:$packages:ro" \
    -f Containerfile -t "$tag" .
