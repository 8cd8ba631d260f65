#!/bin/sh
# Runs inside the TCG VM of ivshmem_vm_test (tosec.run=/test.sh). The host peer's id comes on
# the kernel command line (tosec.test.host=N). Each step's output is checked by the host.
P=/usr/bin/tosec-ivshmem-probe
host=
for w in $(cat /proc/cmdline); do
  case $w in tosec.test.host=*) host=${w#tosec.test.host=} ;; esac
done
[ -n "$host" ] || { echo "no tosec.test.host= on the command line"; exit 10; }

$P --list || exit 11
# VFIO: the host wrote HOST-HELLO before QEMU started; we answer at 4096, ring the host's
# vector 1 and wait for the host to ring our vector 0 (MSI-X through a VFIO eventfd).
$P --vectors 2 --backend vfio --await 0:HOST-HELLO:60000 --read 0:10 --write 4096:VM-HELLO \
  --ring "$host":1 --wait 0:120000 || exit 12

# UIO: ivshmem-doorbell has no INTx pin; uio_pci_generic binds without an interrupt and the
# probe must say so (exit 2) instead of waiting for an interrupt that cannot come.
$P --vectors 2 --backend uio --wait 0:3000 2>&1
echo "uio-status: $?"
# Polling needs no driver at all.
$P --vectors 2 --backend poll --wait 0:10
exit 0
