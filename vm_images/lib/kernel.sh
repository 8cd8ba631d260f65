# shellcheck shell=bash
# Kernel side of vm_images/build: fetches the Debian kernel package into the cache (once),
# extracts it there (never installed on the host) and copies vmlinuz plus the module closure
# VM mode needs into the image. Sourced by vm_images/build; uses its die/note helpers.

# Modules the VM-mode backends need (rpc/ ivshmem PCI backend): vfio in no-IOMMU mode and
# vfio-pci to bind the ivshmem device and get MSI-X eventfds, uio_pci_generic as the INTx
# fallback. Format: NAME [PARAMS...]. Their dependencies come from the kernel's modules.dep.
VMIMG_MODULES=(
  'vfio enable_unsafe_noiommu_mode=1'
  'vfio_iommu_type1'
  'vfio_pci'
  'uio'
  'uio_pci_generic'
)

# Resolves the linux-image-amd64 metapackage to the versioned image package it depends on,
# from the local apt lists (no network). Prints "NAME VERSION".
kernel_resolve_package() {
  local dep
  dep=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
    sed -n 's/^Depends: *\(linux-image-[^ ,]*\) *(= *\([^)]*\)).*/\1 \2/p' | head -n1)
  [[ -n $dep ]] || die "apt-cache knows no linux-image-amd64 (run apt-get update once)"
  printf '%s\n' "$dep"
}

# Makes sure CACHE/debs holds the kernel .deb and prints its path. Reuses any cached
# linux-image-*-amd64 .deb of the resolved package; downloads only when none is there.
kernel_fetch_deb() {
  local cache=$1 name version deb
  read -r name version < <(kernel_resolve_package)
  mkdir -p "$cache/debs"
  # apt writes epochs as %3a in file names; match any version of the package first, so a
  # filled cache keeps working offline even after the apt lists move on.
  deb=$(find "$cache/debs" -maxdepth 1 -name "${name}_*_amd64.deb" | LC_ALL=C sort | tail -n1)
  if [[ -z $deb ]]; then
    note "downloading $name $version into $cache/debs"
    (cd "$cache/debs" && apt-get download -q "$name=$version" >&2) ||
      die "apt-get download $name=$version failed"
    deb=$(find "$cache/debs" -maxdepth 1 -name "${name}_*_amd64.deb" | LC_ALL=C sort | tail -n1)
    [[ -n $deb ]] || die "apt-get download left no ${name}_*.deb in $cache/debs"
  fi
  printf '%s\n' "$deb"
}

# Extracts the .deb once into CACHE/kernel/<deb name>/ and prints that directory.
kernel_extract() {
  local cache=$1 deb=$2 dir
  dir="$cache/kernel/$(basename "$deb" .deb)"
  if [[ ! -e $dir/.extracted ]]; then
    note "extracting $(basename "$deb")"
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir" || die "dpkg-deb -x $deb failed"
    # The package ships no modules.dep (its postinst runs depmod on the installed tree):
    # generate it for the extracted tree.
    depmod -b "$dir" "$(kernel_release "$dir")" || die "depmod on the extracted kernel failed"
    touch "$dir/.extracted"
  fi
  printf '%s\n' "$dir"
}

# The kernel release (the lib/modules/<release> directory name) of an extracted package.
kernel_release() {
  local root=$1 mods
  mods=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)
  [[ -n $mods ]] || die "no lib/modules/<release> in $root"
  basename "$mods"
}

# Module name as the kernel knows it: file name without .ko[.xz|.zst|.gz], '-' as '_'.
kernel_module_name() {
  local base=${1##*/}
  base=${base%%.ko*}
  printf '%s\n' "${base//-/_}"
}

# Appends to the array named by $3 the modules.dep paths of module $2 in load order
# (dependencies first), each once. modules.dep lists a module's full dependency set; loading
# each dependency's own dependencies first gives a valid order.
kernel_module_order() {
  local depfile=$1 want=$2 out=$3 line path deps d
  line=$(awk -v want="$want" -F: '{
      n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n)
      if (n == want) { print; exit } }' "$depfile")
  [[ -n $line ]] || return 1
  path=${line%%:*}
  deps=${line#*:}
  local -n acc=$out
  local p
  for p in "${acc[@]}"; do [[ $p == "$path" ]] && return 0; done
  for d in $deps; do
    kernel_module_order "$depfile" "$(kernel_module_name "$d")" "$out" ||
      die "modules.dep names $d but has no entry for it"
  done
  acc+=("$path")
}

# Installs STAGE/boot-less kernel pieces: the module closure, decompressed to plain .ko
# (busybox insmod need not know xz/zstd), and STAGE/etc/tosec/modules.list ("NAME PATH
# [PARAMS]" in load order) that /init walks. Prints the vmlinuz path of the package.
kernel_install_modules() {
  local root=$1 stage=$2 release moddir depfile entry name params
  release=$(kernel_release "$root")
  moddir="$root/lib/modules/$release"
  depfile="$moddir/modules.dep"
  [[ -f $depfile ]] || die "no modules.dep in $moddir"
  local order=() list=()
  for entry in "${VMIMG_MODULES[@]}"; do
    read -r name params <<<"$entry"
    local before=${#order[@]}
    if ! kernel_module_order "$depfile" "$name" order; then
      if grep -qE "/${name//_/[-_]}\.ko" "$moddir/modules.builtin" 2>/dev/null; then
        note "module $name is built into $release"
        continue
      fi
      die "kernel $release has no module $name (neither in modules.dep nor built in)"
    fi
    local i
    for ((i = before; i < ${#order[@]}; i++)); do
      local n
      n=$(kernel_module_name "${order[i]}")
      if [[ $n == "$name" ]]; then list+=("$n ${order[i]%%.ko*}.ko${params:+ $params}")
      else list+=("$n ${order[i]%%.ko*}.ko"); fi
    done
  done
  local dst="$stage/lib/modules/$release" line rel src
  mkdir -p "$dst" "$stage/etc/tosec"
  : >"$stage/etc/tosec/modules.list"
  for line in "${list[@]}"; do
    read -r name rel params <<<"$line"
    src=$(find "$moddir/$(dirname "$rel")" -maxdepth 1 -name "$(basename "$rel")*" | head -n1)
    [[ -n $src ]] || die "module file for $name missing under $moddir"
    mkdir -p "$dst/$(dirname "$rel")"
    case $src in
      *.ko) cp "$src" "$dst/$rel" ;;
      *.ko.xz) xz -dc "$src" >"$dst/$rel" ;;
      *.ko.zst) zstd -qdc "$src" >"$dst/$rel" ;;
      *.ko.gz) gzip -dc "$src" >"$dst/$rel" ;;
      *) die "unknown module compression: $src" ;;
    esac
    printf '%s\n' "$line" >>"$stage/etc/tosec/modules.list"
  done
  # A modules.dep of just these modules, so busybox modprobe works for a person at the shell.
  for line in "${list[@]}"; do
    read -r name rel params <<<"$line"
    grep -E "^${rel%.ko}\.ko[^:]*:" "$depfile" | sed -E 's/\.ko\.(xz|zst|gz)/.ko/g'
  done >"$dst/modules.dep"
}

# Path of the package's vmlinuz.
kernel_vmlinuz() {
  local root=$1 f
  f=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
  [[ -n $f ]] || die "no boot/vmlinuz-* in $root"
  printf '%s\n' "$f"
}
