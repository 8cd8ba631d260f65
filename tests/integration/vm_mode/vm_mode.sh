#!/usr/bin/env bash
# app: curl inside a guest VM (QEMU TCG under libvirtd) | role: guest client, inspected
# Acceptance of VM mode (issue 6; docs/provisioning.md, docs/guest-agent.md):
#   1. `tosec up` a platform whose [vm] roles are ["guest"]: the guest region's ivshmem server,
#      its TOE with --vm-agent and the ids SVM run as host processes.
#   2. The guest image (vm_images/build) gets an /etc/tosec/rc that runs `tosec run curl` twice
#      against a web server in the peer network namespace: a benign page, then a path
#      traversal. `tosec provision --start` defines and starts the guest domain (no NIC).
#   3. In the VM, /init starts tosec-guest-agent on the ivshmem device (VFIO behind the q35
#      vIOMMU); the benign page arrives through the host TOE, the attack is reset by the SVM and
#      `tosec alerts` on the host shows the alert naming guest web.
#   4. `tosec provision --destroy` and `tosec down` leave no domain, QEMU or platform process.
# libvirtd: used if it runs; else started here (qemu.conf user/group root, as DESIGN.md section 7
# says) and stopped, with qemu.conf restored, on exit. Skips (77) without root, QEMU or libvirtd.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
# shellcheck disable=SC2034  # read by the fixture
APPS_SCENARIO="vm_mode"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
: "${VMIMG_BIN_DIR:?} ${VMIMG_CACHE:?}"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"
if ! command -v libvirtd >/dev/null || ! command -v virtlogd >/dev/null; then
  skip "libvirtd/virtlogd are not installed (Debian libvirt-daemon-system; scripts/setup installs it)"
fi
command -v virsh >/dev/null || skip "virsh is not installed (libvirt-clients)"
apps_init offloaded
apps_require curl

cfg="$APPS_TMP/vm.toml"
rt="$APPS_TMP/rt"
img="$APPS_TMP/img"
prefix="tvm$$-"
domain="${prefix}guest-web"
console="$rt/logs/$domain.console.log"
qemu_conf=/etc/libvirt/qemu.conf
started_libvirt=0

cleanup_vm() {
  "$TOSEC" provision -c "$cfg" --destroy >/dev/null 2>&1
  "$TOSEC" down -c "$cfg" >/dev/null 2>&1
  if ((started_libvirt)); then
    pkill -x libvirtd
    pkill -x virtlogd
    [[ -f "$APPS_TMP/qemu.conf.orig" ]] && cp "$APPS_TMP/qemu.conf.orig" "$qemu_conf"
  fi
  [[ -f "$console" ]] && { echo "--- console of $domain (last lines):"; tail -n 40 "$console"; } >&2
}
trap 'rc=$?; set +e; cleanup_vm; (exit $rc); _apps_cleanup' EXIT

if ! pgrep -x libvirtd >/dev/null; then
  log "starting virtlogd and libvirtd (QEMU as root, DESIGN.md section 7)"
  cp "$qemu_conf" "$APPS_TMP/qemu.conf.orig"
  started_libvirt=1
  printf '\n# tosec vm_mode test (restored on exit)\nuser = "root"\ngroup = "root"\n' >>"$qemu_conf"
  pgrep -x virtlogd >/dev/null || virtlogd -d
  libvirtd -d
fi
for _ in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
if ! virsh -c qemu:///system version >"$APPS_TMP/virsh.log" 2>&1; then
  # An environment that cannot run libvirtd at all (no daemon after 20 s) is not a VM-mode
  # failure: say so plainly. Everything after this point fails the test.
  skip "libvirtd does not answer on qemu:///system: $(tail -n 3 "$APPS_TMP/virsh.log")"
fi

start_peer_www
url="http://$PEER_IP:$WWW_PORT"
cat >"$cfg" <<TOML
# Written by tests/integration/vm_mode/vm_mode.sh
[platform]
runtime_dir = "$rt"
[vm]
roles = ["guest"]
images_dir = "$img"
name_prefix = "$prefix"
[[guest]]
name = "web"
lanes = 4
[[svm]]
name = "ids"
engine = "ids"
rules = "$REPO_ROOT/examples/rules/ids.rules"
[[chain]]
name = "inspect"
steps = ["ids"]
[[policy]]
guest = "web"
chain = "inspect"
TOML

# The guest's workload: what an operator bakes into a guest image.
cat >"$APPS_TMP/rc" <<RC
#!/bin/sh
echo "RC: benign"
tosec run curl -sS -m 60 $url/
echo "RC: benign rc=\$?"
echo "RC: attack"
tosec run curl -sS -m 60 "$url/?q=../../etc/passwd"
echo "RC: attack rc=\$?"
RC
chmod 755 "$APPS_TMP/rc"

log "building the guest image"
"$REPO_ROOT/vm_images/build" --role guest --bin-dir "$VMIMG_BIN_DIR" --cache "$VMIMG_CACHE" \
  --out "$img" --add "$APPS_TMP/rc:/etc/tosec/rc" >"$APPS_TMP/image.log" 2>&1 ||
  fail "vm_images/build failed: $(tail -n 5 "$APPS_TMP/image.log")"

log "tosec up (TOE --vm-agent, ids SVM on the host)"
"$TOSEC" up -c "$cfg" >"$APPS_TMP/up.log" 2>&1 || fail "tosec up: $(tail -n 5 "$APPS_TMP/up.log")"
out=$("$TOSEC" provision -c "$cfg" --start 2>&1) || fail "tosec provision --start: $out"
log "$out"

# TCG boot (~10 s) plus two curls through agent, TOE and SVM.
for _ in $(seq 240); do
  grep -q 'RC: attack rc=' "$console" 2>/dev/null && break
  sleep 1
done
grep -q 'RC: attack rc=' "$console" || fail "the guest's workload did not finish within 240 s"
grep -q 'tosec-guest-agent: the TOE answered' "$console" || fail "the agent never reached the TOE"
grep -q 'RC: benign rc=0' "$console" || fail "the benign request failed in the VM"
grep -q 'hello from the peer' "$console" || fail "the page did not arrive in the VM"
grep -q 'RC: attack rc=0' "$console" && fail "the attack went through the SVM unblocked"
log "ok: the VM fetched the page through the host TOE; the attack was reset"
log "agent: $(grep -m1 'tosec-guest-agent: device' "$console" || true)"

alerts=$("$TOSEC" alerts -c "$cfg" 2>&1) || fail "tosec alerts: $alerts"
grep -q 'BLOCKED web ids .*path traversal' <<<"$alerts" || fail "no alert for guest web: $alerts"
log "ok: the host shows the SVM's alert for the VM's request"

out=$("$TOSEC" provision -c "$cfg" --destroy 2>&1) || fail "tosec provision --destroy: $out"
virsh -c qemu:///system list --all --name | grep -q "^$domain\$" && fail "$domain still defined"
pgrep -f "guest=$domain" >/dev/null && fail "a QEMU process of $domain is still running"
"$TOSEC" down -c "$cfg" >/dev/null 2>&1 || fail "tosec down failed"
pass "vm_mode: a libvirt guest VM (TCG) fetched a page through the host TOE via tosec-guest-agent, the ids SVM reset the attack with a host alert, --destroy and down left nothing"
