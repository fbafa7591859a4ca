#!/usr/bin/env bash
# Installs the system packages the test suite needs, and only those that are missing:
# curl and openssl (used by end-to-end tests), redis-server and haproxy (cluster tests),
# openssh-server and openssh-client (TCP tunnel tests), pebble (a real ACME CA), chromium
# (the inspector page's browser tests), systemd-analyze (unit file checks), and
# qemu-user with the foreign libc so the binary built for the other architecture runs here
# (arm64 under qemu stands in for a Raspberry Pi). Quick and silent when everything is
# already present.
set -euo pipefail

native_arch=$(dpkg --print-architecture)
case "$native_arch" in
  amd64) foreign_arch=arm64 qemu_cmd=qemu-aarch64 ;;
  arm64) foreign_arch=amd64 qemu_cmd=qemu-x86_64 ;;
  *)
    echo "install-test-deps: unsupported architecture $native_arch (need amd64 or arm64)" >&2
    exit 1
    ;;
esac

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
need_arch=false
command -v curl >/dev/null || installed curl || missing+=(curl)
command -v openssl >/dev/null || installed openssl || missing+=(openssl)
# The cluster tests run real Redis and a real HAProxy in front of several gateways.
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || missing+=(haproxy)
# Certificates are ordered from pebble, a real ACME CA, with pebble-challtestsrv as its DNS.
command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null || missing+=(pebble)
# The inspector page is tested in Debian's headless Chromium, driven by playwright-core.
command -v chromium >/dev/null || missing+=(chromium)
# The TCP tunnel tests run Debian's sshd as the current user and reach it with ssh and scp.
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null && command -v scp >/dev/null && command -v ssh-keygen >/dev/null ||
  missing+=(openssh-client)
# systemd-analyze verifies the unit files; it works without systemd running (containers).
command -v systemd-analyze >/dev/null || missing+=(systemd)
# qemu-user-static provides the same command; either one will do.
command -v "$qemu_cmd" >/dev/null || missing+=(qemu-user)
if ! installed "libc6:$foreign_arch"; then
  missing+=("libc6:$foreign_arch")
  dpkg --print-foreign-architectures | grep -qx "$foreign_arch" || need_arch=true
fi

[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "install-test-deps: missing packages: ${missing[*]}" >&2
    echo "install them as root:" >&2
    $need_arch && echo "  dpkg --add-architecture $foreign_arch" >&2
    echo "  apt-get update && apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  # Without a terminal sudo cannot ask for a password: fail at once instead of hanging.
  if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
fi

echo "install-test-deps: installing ${missing[*]}"
if $need_arch; then
  "${sudo[@]}" dpkg --add-architecture "$foreign_arch"
fi
# sudo drops the environment, so pass the setting through env.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
"${apt[@]}" update
"${apt[@]}" install --no-install-recommends "${missing[@]}"
