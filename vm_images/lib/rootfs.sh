# shellcheck shell=bash
# Filesystem side of vm_images/build: the staging tree, files with their shared-library
# closure, busybox applets, and the reproducible newc cpio. Sourced by vm_images/build.

# A merged-/usr skeleton like Debian 12's, so library paths from the host's ldd (/lib/...,
# /lib64/...) resolve unchanged inside the VM and the loader's default search path works.
rootfs_skeleton() {
  local stage=$1 d
  for d in usr/bin usr/sbin usr/lib usr/lib64 etc/tosec proc sys dev tmp run root mnt; do
    mkdir -p "$stage/$d"
  done
  ln -s usr/bin "$stage/bin"
  ln -s usr/sbin "$stage/sbin"
  ln -s usr/lib "$stage/lib"
  ln -s usr/lib64 "$stage/lib64"
  chmod 1777 "$stage/tmp"
  # The kernel opens /dev/console before /init runs (devtmpfs is mounted later by /init).
  if [[ $(id -u) == 0 ]]; then
    mknod -m 600 "$stage/dev/console" c 5 1
    mknod -m 666 "$stage/dev/null" c 1 3
  else
    note "not root: no /dev/console node in the image (the kernel warns; /init reopens it)"
  fi
}

# Where a host path lands in the merged-/usr image: its directory resolved through the
# host's symlinks (/lib -> usr/lib), its own name kept (libc.so.6, not libc-2.36.so).
rootfs_canonical() {
  local dir
  dir=$(readlink -f "$(dirname "$1")")
  printf '%s/%s\n' "$dir" "$(basename "$1")"
}

rootfs_is_elf() {
  [[ -f $1 && $(head -c4 "$1" | od -An -c | tr -d ' ') == '177ELF' ]]
}

# Copies the shared-library closure of ELF file $2 (dynamic loader included) into STAGE.
# ldd resolves the whole closure; a library it cannot find is an error naming both files.
rootfs_add_closure() {
  local stage=$1 elf=$2 out line lib dest
  out=$(LC_ALL=C ldd "$elf" 2>&1) || {
    # Static executables make ldd exit 1 with "not a dynamic executable".
    [[ $out == *"not a dynamic executable"* || $out == *"statically linked"* ]] && return 0
    die "ldd $elf failed: $out"
  }
  while IFS= read -r line; do
    case $line in
      *"not found"*) die "$elf needs ${line%% *} which ldd cannot find" ;;
      *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
      *"statically linked"*) continue ;;
      [[:space:]]/*) lib=${line#"${line%%[![:space:]]*}"}; lib=${lib%% (*} ;;
      *) continue ;; # linux-vdso.so.1 and friends live in the kernel
    esac
    dest=$(rootfs_canonical "$lib")
    [[ -e $stage$dest ]] && continue
    mkdir -p "$stage$(dirname "$dest")"
    cp -L "$lib" "$stage$dest"
  done <<<"$out"
}

# Copies file SRC to DEST inside STAGE (replacing an applet link there), plus its closure.
rootfs_add_file() {
  local stage=$1 src=$2 dest=$3
  [[ -e $src ]] || die "no such file to add: $src"
  mkdir -p "$stage$(dirname "$dest")"
  rm -f "$stage$dest"
  cp -L "$src" "$stage$dest" || die "cannot copy $src"
  chmod u+w,go-w "$stage$dest"
  if rootfs_is_elf "$stage$dest"; then
    rootfs_add_closure "$stage" "$src"
    # Our own builds carry debug info (half their size); Debian's files are stripped already.
    case $(readlink -f "$src") in
      /usr/* | /lib/* | /bin/* | /sbin/*) ;;
      *) strip --strip-debug "$stage$dest" 2>/dev/null || note "cannot strip $src (kept as is)" ;;
    esac
  fi
}

# Copies file or directory SRC to DEST inside STAGE; every ELF file in it brings its closure.
rootfs_add() {
  local stage=$1 src=$2 dest=$3 f
  if [[ -d $src ]]; then
    while IFS= read -r -d '' f; do
      rootfs_add_file "$stage" "$f" "$dest/${f#"$src"/}"
    done < <(find "$src" -type f -print0 | LC_ALL=C sort -z)
  else
    rootfs_add_file "$stage" "$src" "$dest"
  fi
}

# Static busybox as /bin/busybox and a symlink per applet, at the paths busybox names.
rootfs_busybox() {
  local stage=$1 bb=/bin/busybox applet
  [[ -x $bb ]] || die "no $bb (install busybox-static: scripts/setup)"
  LC_ALL=C ldd "$bb" >/dev/null 2>&1 && die "$bb is dynamically linked (install busybox-static)"
  cp "$bb" "$stage/usr/bin/busybox"
  while IFS= read -r applet; do
    applet=${applet#/}
    case $applet in bin/* | sbin/* | usr/bin/* | usr/sbin/*) ;; *) continue ;; esac
    applet=usr/${applet#usr/}
    [[ -e $stage/$applet || $applet == usr/bin/busybox ]] && continue
    ln -s /usr/bin/busybox "$stage/$applet"
  done < <("$bb" --list-full)
}

# Writes STAGE as a reproducible gzip'ed newc cpio to OUT: entries sorted by name, owner
# root, every mtime SOURCE_DATE_EPOCH, inode numbers assigned in order (--reproducible),
# gzip without name or time stamp.
rootfs_cpio() {
  local stage=$1 out=$2 epoch=$3
  find "$stage" -exec touch -h -d "@$epoch" {} +
  (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    LC_ALL=C cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
    gzip -n -9 >"$out"
}
