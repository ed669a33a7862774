#!/bin/sh
# A local stand-in for python:3.11-slim-bookworm on machines that cannot pull images:
# Debian bookworm (debootstrap) with its python3.11 and venv, and this machine's CA
# certificates (an egress proxy's own CA included), imported as IMAGE. Root only.
#   deploy/base/build-base.sh [IMAGE]      # default splitexit-base:bookworm; kept if present
#   docker build --build-arg PYTHON_IMAGE=splitexit-base:bookworm -t splitexit .
set -eu
image=${1:-splitexit-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image is already built"
    exit 0
fi
root=$(mktemp -d /tmp/splitexit-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror"
# Trust what this machine trusts, now and after any later update-ca-certificates in an image.
if [ -d /usr/local/share/ca-certificates ]; then
    cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
bundle=/etc/ssl/certs/ca-certificates.crt
tar -C "$root" -c . | docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8 SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle" \
    --change 'CMD ["python3"]' \
    - "$image"
echo "built $image"
