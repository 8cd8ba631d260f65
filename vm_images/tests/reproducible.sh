#!/usr/bin/env bash
# vm_images.reproducible: each role's image built twice (the second time under another umask,
# time zone and locale, after a pause so wall-clock time differs) is byte-identical, and holds
# what the role promises. Env: VMIMG_BIN_DIR (a TOSEC build dir), VMIMG_CACHE (.deb cache),
# VMIMG_WORK (scratch parent).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builder=$here/../build
: "${VMIMG_BIN_DIR:?} ${VMIMG_CACHE:?} ${VMIMG_WORK:?}"
mkdir -p "$VMIMG_WORK"
work=$(mktemp -d "$VMIMG_WORK/repro.XXXXXX")
trap 'rm -rf "$work"' EXIT

build() { # ROLE OUT [env...]
  local role=$1 out=$2
  shift 2
  if ! env "$@" "$builder" --role "$role" --bin-dir "$VMIMG_BIN_DIR" --cache "$VMIMG_CACHE" \
    --out "$out" --add "$here/boot_check.sh:/usr/share/tosec/tests/boot_check.sh" \
    >"$out.log" 2>&1; then
    echo "FAIL: vm_images/build --role $role failed:"
    cat "$out.log"
    exit 1
  fi
  cat "$out.log"
}

for role in guest infra; do
  build "$role" "$work/$role-1"
  sleep 1
  (umask 077 && build "$role" "$work/$role-2" TZ=Asia/Tokyo LC_ALL=C.UTF-8)
  for f in vmlinuz "$role.initrd"; do
    a=$(sha256sum <"$work/$role-1/$f") b=$(sha256sum <"$work/$role-2/$f")
    [[ $a == "$b" ]] || { echo "FAIL: $role: $f differs between two builds"; exit 1; }
    echo "$role: $f identical: ${a%% *}"
  done
  list=$(gzip -dc "$work/$role-1/$role.initrd" | cpio -t --quiet)
  case $role in
    guest) want=(init usr/bin/busybox usr/bin/curl usr/lib/tosec/libtosec.so
                 usr/lib/tosec/libtosec-preload.so usr/lib64/ld-linux-x86-64.so.2) ;;
    infra) want=(init usr/bin/busybox usr/bin/tosec-tovm usr/bin/tosec-svm etc/tosec/rules/ids.rules
                 usr/lib64/ld-linux-x86-64.so.2) ;;
  esac
  want+=(usr/share/tosec/tests/boot_check.sh etc/tosec/modules.list)
  for w in "${want[@]}"; do
    grep -qx "$w" <<<"$list" || { echo "FAIL: $role.initrd has no $w"; exit 1; }
  done
  # Owners and times are normalised: every entry root-owned, every mtime the same.
  if gzip -dc "$work/$role-1/$role.initrd" | cpio -tv --quiet | awk '$3 != "root" || $4 != "root"' | grep -q .; then
    echo "FAIL: $role.initrd has entries not owned by root"; exit 1
  fi
done
echo PASS
