#!/usr/bin/env bash
# vm_images.boot: boots the guest image under QEMU TCG with an ivshmem-doorbell device on a
# tosec-ivshmem-server region, runs tests/boot_check.sh in it through tosec.run, and asserts
# "TOSEC-VM: exit 0" on the serial console. The image is kept in VMIMG_WORK/images and rebuilt
# only when one of its inputs changed. Args: TOSEC_IVSHMEM_SERVER. Env: as reproducible.sh.
set -euo pipefail
server=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builder=$here/../build
: "${VMIMG_BIN_DIR:?} ${VMIMG_CACHE:?} ${VMIMG_WORK:?}"
qemu=$(command -v qemu-system-x86_64) ||
  { echo "SKIP: qemu-system-x86_64 not installed (Debian package qemu-system-x86)"; exit 77; }

images=$VMIMG_WORK/images
mkdir -p "$images"
lib() { local f; for f in "$VMIMG_BIN_DIR/lib/$1" "$VMIMG_BIN_DIR/$1"; do
  [[ -f $f ]] && { echo "$f"; return; }; done; echo "FAIL: no $1 in $VMIMG_BIN_DIR"; exit 1; }
inputs=("$builder" "$here/../init" "$here"/../lib/*.sh "$here/boot_check.sh" "$(lib libtosec.so)"
        "$(lib libtosec-preload.so)" "$VMIMG_BIN_DIR/bin/tosec-guest-agent" "$here/../guest/tosec"
        /bin/busybox "$(command -v curl)")
key=$( { sha256sum "${inputs[@]}"; ls "$VMIMG_CACHE/debs" 2>/dev/null || true; } | sha256sum)
if [[ -f $images/guest.initrd && -f $images/vmlinuz && $(cat "$images/key" 2>/dev/null) == "$key" ]]; then
  echo "image up to date in $images"
else
  rm -f "$images/key"
  "$builder" --role guest --bin-dir "$VMIMG_BIN_DIR" --cache "$VMIMG_CACHE" --out "$images" \
    --add "$here/boot_check.sh:/usr/share/tosec/tests/boot_check.sh"
  echo "$key" >"$images/key"
fi

work=$(mktemp -d /tmp/tosec-vmimg-boot.XXXXXX)
shm=tosec-vmimg-boot-$$
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "/dev/shm/$shm"
  rm -rf "$work"
}
trap cleanup EXIT

"$server" -F -S "$work/ivs.sock" -M "$shm" -l 4M -n 2 >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [[ -S $work/ivs.sock ]] && break; sleep 0.05; done
[[ -S $work/ivs.sock ]] || { echo "FAIL: ivshmem server did not listen:"; cat "$work/server.log"; exit 1; }

# No NIC (a guest VM has none), serial console to a file, no reboot: poweroff or a panic
# (panic=-1) ends QEMU. The timeout only stops a hung boot; it is not a measurement.
set +e
timeout -k 10 480 "$qemu" -accel tcg -m 256 -nodefaults -display none -no-reboot \
  -serial "file:$work/console.log" \
  -chardev "socket,path=$work/ivs.sock,id=ivs" \
  -device ivshmem-doorbell,chardev=ivs,vectors=2,addr=08.0 \
  -kernel "$images/vmlinuz" -initrd "$images/guest.initrd" \
  -append "console=ttyS0 panic=-1 tosec.run=/usr/share/tosec/tests/boot_check.sh" \
  >"$work/qemu.log" 2>&1
rc=$?
set -e
tr -d '\r' <"$work/console.log" >"$work/console.txt" || true
grep -E '^(TOSEC-VM|check )' "$work/console.txt" || true
if ! grep -qx 'TOSEC-VM: exit 0' "$work/console.txt"; then
  echo "FAIL: no 'TOSEC-VM: exit 0' on the console (qemu exit $rc); console:"
  tail -n 60 "$work/console.txt"
  echo "--- qemu:"; cat "$work/qemu.log"
  echo "--- server:"; cat "$work/server.log"
  exit 1
fi
[[ $rc == 0 ]] || { echo "FAIL: qemu exited $rc after the run"; cat "$work/qemu.log"; exit 1; }
echo PASS
