# shellcheck shell=bash
# Shared helpers for scripts/setup, scripts/build, scripts/test and scripts/format.
# Source it after `set -euo pipefail`:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# It sets TOSEC_ROOT (the repository root, resolved from this file's own path, so the
# scripts work from any working directory) and defines the project's Debian package list.

if [[ -n "${TOSEC_COMMON_SH_LOADED:-}" ]]; then
  return 0
fi
TOSEC_COMMON_SH_LOADED=1

TOSEC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
export TOSEC_ROOT

# ---------------------------------------------------------------------------------------------
# Debian packages the project needs: THE one list (scripts/setup installs it, scripts/test checks
# it, docs/building.md explains it). Format: "package  # what it is for".
# ---------------------------------------------------------------------------------------------
TOSEC_PACKAGES_TABLE='
build-essential       # gcc/g++ 12, make, libc headers: the default C++20 toolchain
cmake                 # build system generator (>= 3.25 for CMakePresets.json version 6)
ninja-build           # the generator every preset uses
pkg-config            # locating protobuf/gRPC libraries at configure time
clang                 # clang++ 14, the compiler of the fuzz preset
libclang-rt-14-dev    # clang runtime libraries: libFuzzer and clang sanitizer runtimes
clang-format          # scripts/format (style in .clang-format)
googletest            # GoogleTest/GoogleMock sources
libgtest-dev          # GoogleTest (find_package(GTest)) for every unit/integration test
libgmock-dev          # GoogleMock for tests that mock interfaces
libbenchmark-dev      # Google Benchmark for eval/ micro-benchmarks (release preset)
protobuf-compiler     # protoc: generates the control-plane messages in rpc/proto
protobuf-compiler-grpc # grpc_cpp_plugin: generates the gRPC service stubs
libprotobuf-dev       # protobuf C++ runtime and headers
libgrpc++-dev         # gRPC C++ runtime and headers (control plane)
qemu-system-x86       # VM mode: boots guests with the ivshmem PCI device (integration tests)
iproute2              # ip/ip netns: network namespaces and veth pairs for tests and eval
procps                # ps/pgrep/sysctl used by integration tests and demo
python3               # eval/ helper scripts
python3-matplotlib    # eval/ plots
netperf               # netperf/netserver TCP_RR/TCP_STREAM measurements (Debian non-free)
libdpdk-dev           # eval/userstack: DPDK 22.11, a port on a veth through its af_packet driver
liblwip-dev           # eval/userstack: lwIP 2.1, the user-space TCP/IP stack of the probe
ethtool               # eval/userstack: turns off TX checksum offload on the peer veth
libtomlplusplus-dev   # toml++: parses the platform config (tosec -c CONFIG)
libvirt-dev           # tosec provision: the libvirt C API (define, start, destroy VM-mode domains)
libvirt-clients       # virt-xml-validate and virsh: provisioning tests validate the domain XML
libvirt-daemon-system # libvirtd + virtlogd: the VM-mode acceptance test starts them itself
libvirt-daemon-driver-qemu # the QEMU driver of libvirtd (TCG domains with ivshmem-doorbell devices)
libxml2-utils         # xmllint, which virt-xml-validate runs
nginx-light           # acceptance tests: nginx as guest server and as peer
redis-server          # acceptance tests: redis as guest and as peer
redis-tools           # redis-benchmark for the redis scenarios
iperf3                # acceptance tests: bulk TCP both directions
sockperf              # acceptance tests: ping-pong latency (TCP and UDP)
curl                  # acceptance tests: HTTP client (guest and peer)
wget                  # acceptance tests: HTTP client (guest)
libhyperscan-dev      # SVM ids: Hyperscan streaming-mode multi-pattern matching
libpcre2-dev          # SVM ids: PCRE2 (JIT) for rule pcre options Hyperscan cannot take
libmodsecurity-dev    # SVM waf: libmodsecurity v3 (CRS interpreter)
modsecurity-crs       # SVM waf: OWASP Core Rule Set 3.3.4 rule files
libhtp-dev            # SVM waf/av: the Suricata HTTP/1.x stream parser (pipelining, chunked, gzip)
libtcmalloc-minimal4  # SVM waf: tcmalloc (15-25% less CPU per request in libmodsecurity)
libclamav-dev         # SVM av: libclamav object scanning with project-shipped signatures
clamav-testfiles      # SVM av tests: clam.exe and its archives (unpacking coverage)
busybox-static        # vm_images: the static busybox of the VM initramfs (shell, insmod, ip, poweroff)
cpio                  # vm_images: writes the newc initramfs (--reproducible)
kmod                  # vm_images: depmod builds modules.dep for the extracted Debian kernel
'

# Prints the package names of TOSEC_PACKAGES_TABLE, one per line.
tosec_packages() {
  local line
  while IFS= read -r line; do
    line="${line%%#*}"
    line="${line//[[:space:]]/}"
    [[ -n "$line" ]] && printf '%s\n' "$line"
  done <<<"$TOSEC_PACKAGES_TABLE"
}

# Prints the packages of the list that are not installed, one per line.
tosec_missing_packages() {
  local pkg status
  while IFS= read -r pkg; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || printf '%s\n' "$pkg"
  done < <(tosec_packages)
}

# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------
# shellcheck disable=SC2034  # the colours are used by the scripts that source this file
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
  TOSEC_C_BOLD=$'\e[1m' TOSEC_C_RED=$'\e[31m' TOSEC_C_GREEN=$'\e[32m' TOSEC_C_RESET=$'\e[0m'
else
  TOSEC_C_BOLD='' TOSEC_C_RED='' TOSEC_C_GREEN='' TOSEC_C_RESET=''
fi

tosec_script_name() { basename "${BASH_SOURCE[-1]:-$0}"; }

info() { printf '%s[%s]%s %s\n' "$TOSEC_C_BOLD" "$(tosec_script_name)" "$TOSEC_C_RESET" "$*"; }
warn() { printf '%s[%s] warning:%s %s\n' "$TOSEC_C_RED" "$(tosec_script_name)" "$TOSEC_C_RESET" "$*" >&2; }
die() {
  printf '%s[%s] error:%s %s\n' "$TOSEC_C_RED" "$(tosec_script_name)" "$TOSEC_C_RESET" "$*" >&2
  exit 1
}

# Big banner for a stage of scripts/test.
header() {
  local line='=================================================================================='
  printf '\n%s%s\n== %s\n%s%s\n' "$TOSEC_C_BOLD" "$line" "$*" "$line" "$TOSEC_C_RESET"
}

# Seconds since the epoch (for stage timings).
now_s() { date +%s; }

# "1234" -> "20m34s"
fmt_duration() {
  local s=$1
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# Runs a command as root: directly when we are root, else through sudo when it exists.
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run '$*' (run this script as root or install sudo)"
  fi
}

# All configure/build/test presets the scripts know about (kept in step with CMakePresets.json).
TOSEC_ALL_PRESETS=(release debug asan tsan fuzz)

tosec_is_preset() {
  local p
  for p in "${TOSEC_ALL_PRESETS[@]}"; do [[ "$p" == "$1" ]] && return 0; done
  return 1
}

# Parallelism for builds and ctest (2 cores here; override with TOSEC_JOBS).
tosec_jobs() {
  local n="${TOSEC_JOBS:-}"
  if [[ -z "$n" ]]; then n="$(nproc 2>/dev/null || echo 2)"; fi
  printf '%s\n' "$n"
}
