#!/usr/bin/env bash
# Installs agent-tunnel as a systemd service on a device, in one step: the binary, the
# agent-tunnel@.service template and /etc/indranet/agent-<id>.env (mode 600, holding the
# secret), then enables and starts agent-tunnel@<id>.
#
#   sudo INDRANET_SECRET=… scripts/install-agent.sh --binary dist/agent-tunnel-linux-arm64 \
#     --id pi-kitchen --gateway wss://gateway.example.com:8080 --token tok-kitchen --to 3000
#
# Without INDRANET_SECRET or --secret-file it asks for the secret (never pass it as an argument:
# other users see arguments in ps). Run it again to update the binary or the settings.
# --root DIR installs under DIR and leaves systemd alone (to inspect the result).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
binary="" id="" gateway="" token="" to="" secret_file="" root="" start=true
unit="$here/../packaging/systemd/agent-tunnel@.service"

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  echo "options: --binary FILE --id ID --gateway URL --token T --to ADDR [--secret-file F] [--unit F] [--root DIR] [--no-start]" >&2
  exit 2
}
fail() {
  echo "install-agent: $*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary | --id | --gateway | --token | --to | --secret-file | --unit | --root)
      [[ $# -ge 2 ]] || usage
      name=${1#--}
      printf -v "${name//-/_}" '%s' "$2"
      shift 2
      ;;
    --no-start) start=false; shift ;;
    -h | --help) usage ;;
    *) echo "install-agent: unknown argument $1" >&2; usage ;;
  esac
done

[[ -n $binary && -n $id && -n $gateway && -n $token ]] || usage
[[ -x $binary ]] || fail "$binary is not an executable file (build it with make build)"
[[ -f $unit ]] || fail "unit template $unit not found"
# The id becomes a unit instance and a file name: the same rule as the agent applies to it.
[[ $id =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || fail "--id '$id' is not a DNS label (a-z, 0-9, '-')"
if [[ -z $root && $(id -u) -ne 0 ]]; then fail "run as root (sudo), or use --root DIR"; fi

secret=${INDRANET_SECRET:-}
if [[ -n $secret_file ]]; then
  secret=$(<"$secret_file")
elif [[ -z $secret ]]; then
  [[ -t 0 ]] || fail "no secret: set INDRANET_SECRET or pass --secret-file"
  read -rsp "secret for token $token: " secret
  echo
fi
secret=$(printf '%s' "$secret" | tr -d '[:space:]')
[[ ${#secret} -ge 16 ]] || fail "the secret must be at least 16 characters"
for value in "$gateway" "$token" "$to"; do
  [[ $value != *[[:space:]\"\\\$\`]* ]] || fail "settings may not contain spaces, quotes, \\, \$ or \`"
done

bin_dir="$root/usr/local/bin"
unit_dir="$root/etc/systemd/system"
conf_dir="$root/etc/indranet"
env_file="$conf_dir/agent-$id.env"
install -d -m 755 "$bin_dir" "$unit_dir"
install -d -m 700 "$conf_dir"
# Replaced through a temporary file: a running agent keeps executing its old binary meanwhile.
install -m 755 "$binary" "$bin_dir/.agent-tunnel.new"
mv -f "$bin_dir/.agent-tunnel.new" "$bin_dir/agent-tunnel"
install -m 644 "$unit" "$unit_dir/agent-tunnel@.service"
(
  umask 077
  tmp=$(mktemp "$conf_dir/.agent-$id.env.XXXXXX")
  {
    echo "# agent-tunnel@$id: read by systemd as root; keep mode 600."
    echo "INDRANET_GATEWAY=$gateway"
    echo "INDRANET_TOKEN=$token"
    echo "INDRANET_SECRET=$secret"
    if [[ -n $to ]]; then echo "INDRANET_TO=$to"; fi
  } >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$env_file"
)
echo "installed $bin_dir/agent-tunnel, $unit_dir/agent-tunnel@.service and $env_file (mode 600)"

if [[ -n $root ]] || ! $start; then
  echo "start it with: systemctl daemon-reload && systemctl enable --now agent-tunnel@$id"
elif ! command -v systemctl >/dev/null; then
  echo "systemctl not found: start $bin_dir/agent-tunnel connect --id $id with the settings of $env_file"
else
  systemctl daemon-reload
  systemctl enable agent-tunnel@"$id"
  systemctl restart agent-tunnel@"$id"
  echo "agent-tunnel@$id is running"
fi
cat <<EOF
status:  systemctl status agent-tunnel@$id
logs:    journalctl -u agent-tunnel@$id -f
stop:    systemctl stop agent-tunnel@$id   (streams in flight finish first)
EOF
