#!/bin/sh
# Runs inside the guest image that vm_images.boot boots (kernel cmdline tosec.run=<this file>):
# the ivshmem-doorbell device QEMU was given is visible at slot 08 with its 4 MiB BAR2, the
# VM-mode modules are loaded (vfio in no-IOMMU mode), and the preload shim loads into Debian's
# curl. Prints one line per check; exits non-zero if any failed.
failed=0
ok() { echo "check ok: $*"; }
bad() { echo "check FAILED: $*"; failed=1; }

dev=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ]; then dev=$d; fi
done
if [ -z "$dev" ]; then
  bad "no PCI device 1af4:1110 in /sys/bus/pci/devices"
else
  ok "ivshmem device $(basename "$dev")"
  [ "$(basename "$dev")" = 0000:00:08.0 ] && ok "at slot 08" || bad "expected slot 0000:00:08.0"
  size=$(stat -c %s "$dev/resource2" 2>/dev/null)
  [ "$size" = 4194304 ] && ok "resource2 is 4 MiB" || bad "resource2 size '$size', expected 4194304"
  [ -e "$dev/resource0" ] && ok "resource0 (registers)" || bad "no resource0"
fi

for m in vfio vfio_iommu_type1 vfio_pci uio uio_pci_generic; do
  [ -d "/sys/module/$m" ] && ok "module $m loaded" || bad "module $m not loaded"
done
# Debian 12's kernel is built without CONFIG_VFIO_NOIOMMU: the parameter then does not exist
# and VM mode takes UIO or polling (vm_images/README.md). Where it exists it must be on.
param=/sys/module/vfio/parameters/enable_unsafe_noiommu_mode
if [ -e $param ]; then
  [ "$(cat $param)" = Y ] && ok "vfio no-IOMMU mode on" || bad "vfio no-IOMMU mode is $(cat $param)"
else
  echo "check note: kernel without CONFIG_VFIO_NOIOMMU (no vfio no-IOMMU mode)"
fi

LD_DEBUG=files LD_PRELOAD=/usr/lib/tosec/libtosec-preload.so curl --version >/tmp/curl.out 2>/tmp/ld.out
rc=$?
[ $rc = 0 ] && grep -q '^curl ' /tmp/curl.out && ok "curl runs with the shim preloaded" ||
  bad "curl --version under LD_PRELOAD exited $rc: $(head -c 400 /tmp/curl.out /tmp/ld.out)"
grep -q 'calling init: /usr/lib/tosec/libtosec-preload.so' /tmp/ld.out &&
  ok "libtosec-preload.so initialised in curl" || bad "the dynamic loader never ran the shim's init"
# VM mode's guest side: the agent links and runs in the image, the image's `tosec run` wrapper
# answers a usage error as documented.
tosec-guest-agent --help >/tmp/agent.out 2>&1
rc=$?
[ $rc = 0 ] && grep -q -- '--device' /tmp/agent.out && ok "tosec-guest-agent runs (--help)" ||
  bad "tosec-guest-agent --help exited $rc: $(head -c 400 /tmp/agent.out)"
tosec bogus >/dev/null 2>&1
rc=$?
[ $rc = 2 ] && ok "tosec (run wrapper) refuses a bad subcommand with 2" ||
  bad "tosec bogus exited $rc, expected 2"
exit $failed
