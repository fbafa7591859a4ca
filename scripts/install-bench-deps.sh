#!/usr/bin/env bash
# Installs the system packages `make bench` needs, and only those that are missing: nginx (the
# upstream and the reverse-proxy row), wrk (the load), OpenSSH server and client (the `ssh -R`
# rows), curl (the 64 MiB transfers) and redis-server (the cluster rows' directory). Quick and
# silent when everything is already present.
set -euo pipefail

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
# nginx-light is enough (core, proxy, mirror); any other nginx flavour already present will do.
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)

[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "install-bench-deps: missing packages: ${missing[*]}" >&2
    echo "install them as root:" >&2
    echo "  apt-get update && apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  # Without a terminal sudo cannot ask for a password: fail at once instead of hanging.
  if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
fi

echo "install-bench-deps: installing ${missing[*]}"
# sudo drops the environment, so pass the setting through env. policy-rc.d keeps Debian's
# maintainer scripts from starting nginx, sshd and Redis as system services: the bench runs its own
# instances on ephemeral loopback ports and nothing should stay listening afterwards.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
policy=/usr/sbin/policy-rc.d
added_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  added_policy=true
fi
cleanup() { if $added_policy; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
"${apt[@]}" update
"${apt[@]}" install --no-install-recommends "${missing[@]}"
