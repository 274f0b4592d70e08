# scripts/deps.sh - sourced by the other scripts: installs the Debian packages
# notifd needs, but only those that are missing (no network use otherwise).
notifd_packages=(
  build-essential cmake pkg-config python3
  libuv1-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev libcmocka-dev
  libsystemd-dev libmicrohttpd-dev redis-server redis-tools
)
# What only the tests need: systemd-analyze (package systemd) checks the unit
# (tests/integration/test_systemd_*.py fail without it); luacheck (package
# lua-check) lints the Redis scripts in src/store/lua (scripts/test.sh); dpkg-deb
# and dpkg-shlibdeps (dpkg, dpkg-dev) build and unpack the Debian packages
# in tests/integration/test_package_layout.py (cpack comes with cmake).
notifd_test_packages=(systemd lua-check dpkg-dev)

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  echo "installing missing packages: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
