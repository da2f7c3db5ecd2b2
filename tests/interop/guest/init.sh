#!/bin/sh
# /init of the interop rig's initramfs (busybox sh): mounts the 9p shares, runs the scenario
# named by rig.scenario= on the kernel command line, reports, powers off (tests/interop/README.md).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
export HOME=/root TMPDIR=/tmp TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
exec </dev/null >/dev/console 2>&1

read -r BOOT_UPTIME _ </proc/uptime
RIG_SCENARIO=none
RIG_TIMEOUT=300
RIG_DENO=deno
for word in $(cat /proc/cmdline); do
	case "$word" in
	rig.scenario=*) RIG_SCENARIO=${word#rig.scenario=} ;;
	rig.timeout=*) RIG_TIMEOUT=${word#rig.timeout=} ;;
	rig.deno=*) RIG_DENO=${word#rig.deno=} ;;
	rig.standin=*) RIG_STANDIN=${word#rig.standin=} ;;
	rig.before=*) RIG_BEFORE=${word#rig.before=} ;;
	rig.ab_workload=*) RIG_AB_WORKLOAD=${word#rig.ab_workload=} ;;
	rig.gw_profile=*) RIG_GW_PROFILE=${word#rig.gw_profile=} ;;
	esac
done
export BOOT_UPTIME RIG_SCENARIO RIG_TIMEOUT RIG_DENO RIG_STANDIN RIG_BEFORE RIG_AB_WORKLOAD RIG_GW_PROFILE

hostname rig
ip link set lo up
# Report stuck tasks quickly (the hangup scenario checks for them).
echo 10 >/proc/sys/kernel/hung_task_timeout_secs

for m in virtio_pci 9pnet_virtio 9p; do
	modprobe "$m" || echo "rig: modprobe $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=512000
if ! mount -t 9p -o "$opts" results /mnt/results; then
	echo "rig: cannot mount the results share"
	printf '\020' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	poweroff -f
fi
mount -t 9p -o "$opts,ro" host /mnt/host || echo "rig: cannot mount the host share" >>/mnt/results/scenario.log
mount -t 9p -o "$opts,ro" deno /mnt/deno || echo "rig: cannot mount the deno share" >>/mnt/results/scenario.log

/bin/sh /rig/run.sh

sync
# Tell QEMU to exit (isa-debug-exit at port 0xf4, value 0x10: QEMU exits with 33). Unlike a
# poweroff this cannot hang on a stuck USB device. poweroff -f is the fallback.
printf '\020' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
umount /mnt/results 2>/dev/null
poweroff -f
