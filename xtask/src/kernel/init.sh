#!/bin/busybox sh
# shellcheck shell=sh
# /init of the initramfs that `cargo xtask kernel-test` boots (see kernel.rs).
#
# The kernel unpacks the initramfs into its first root filesystem (a tmpfs)
# and runs this script as PID 1. It builds the root the tests run in, then
# hands PID 1 over to the run's script with switch_root:
#
#   /                  the host's / over 9p, read-only, under a tmpfs overlay:
#                      the guest sees the host's programs (unshare, ps, ...)
#                      and may write anywhere without touching the host
#   SHARED PATHS       the workspace (and the target dir) over 9p, read-write,
#                      at the same paths as on the host: test binaries find
#                      themselves (current_exe) and their step's binary there
#   /proc /sys /dev /dev/pts /dev/shm /tmp /run, and cgroup2 (only) at
#                      /sys/fs/cgroup, with the options systemd uses
#
# The kernel passes the command line's unknown NAME=VALUE words to init as
# environment variables: kernel_test_shares ("TAG=PATH,TAG=PATH") and
# kernel_test_script (what runs after switch_root).
# Why not stay in the initramfs? Its root is "rootfs", which pivot_root(2)
# refuses to move, and the containers under test pivot_root.

/bin/busybox --install -s /bin
export PATH=/bin
shares="${kernel_test_shares:-}"
script="${kernel_test_script:-}"

fail() {
    echo "kernel-test: init failed: $*"
    # PID 1 exiting panics the kernel; panic=-1 reboots and qemu -no-reboot exits.
    exit 1
}

echo "kernel-test: init"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
mount -t proc proc /proc || fail "mount proc"
mount -t sysfs sysfs /sys || fail "mount sysfs"

# The modules are named NN-NAME.ko: the glob's order is modules.dep's order.
for module in /lib/modules/*.ko; do
    [ -e "$module" ] || continue
    insmod "$module" || fail "insmod $module"
done

# Large messages (msize) make 9p several times faster than its default.
ninep="trans=virtio,version=9p2000.L,msize=512000"

# The host's root changes little while the tests run: let the guest cache it.
mount -t 9p -o "$ninep,ro,cache=loose" hostroot /lower || fail "mount the host's / over 9p"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "mount tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot ||
    fail "mount the overlay on the host's /"

# /tmp and /run first: a workspace cloned under /tmp (as CI's may be) is
# mounted on top of the guest's /tmp, not hidden by it.
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "mount /run"

# No module loads on demand here: the modules are the initramfs's, loaded
# above. When the kernel wants another one, it runs the program named in
# /proc/sys/kernel/modprobe as `modprobe -q -- NAME`; this one says which on
# the console, where kernel-test shows every `kernel-test:` line, and fails
# as modprobe would. The kernel looks the path up in PID 1's root, which
# switch_root makes /newroot.
cat >/newroot/run/kernel-test-modprobe <<'EOF'
#!/bin/sh
for name in "$@"; do :; done
echo "kernel-test: the kernel asked for a module the guest lacks: $name (a module, or an alias in modules.alias; see WANTED_MODULES in xtask/src/kernel/linux.rs)" >/dev/console
exit 1
EOF
chmod 0755 /newroot/run/kernel-test-modprobe
echo /run/kernel-test-modprobe >/proc/sys/kernel/modprobe || fail "set the modprobe program"

# Read-write shares: no cache, so that the host sees what the guest wrote.
for share in $(echo "$shares" | tr ',' ' '); do
    tag="${share%%=*}"
    path="${share#*=}"
    mkdir -p "/newroot$path"
    mount -t 9p -o "$ninep,cache=mmap" "$tag" "/newroot$path" || fail "mount $path over 9p"
done

cd /newroot || fail "cd /newroot"
mount --move /dev dev || fail "move /dev"
umount /proc /sys
mount -t proc proc proc || fail "mount proc"
mount -t sysfs sysfs sys || fail "mount sysfs"
# cgroup v2 only, as systemd mounts it: nsdelegate makes a cgroup namespace a
# delegation boundary, memory_recursiveprot applies memory.min/low to the
# whole subtree.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 sys/fs/cgroup ||
    fail "mount cgroup2"
mkdir -p dev/pts dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts dev/pts || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs dev/shm || fail "mount /dev/shm"

[ -n "$script" ] || fail "no kernel_test_script= on the kernel command line"
exec switch_root /newroot /bin/sh "$script"
