# Scenario storage_uas (issue 18): the storage scenario's checks (vfat and ext4 written, fsck'd
# and checksummed on the host, kill -9 mid-write, read-only) with every drive offering USB
# Attached SCSI (`uas=1`): the kernel's uas driver binds them at high speed, where it needs no
# streams (drivers/usb/storage/uas.c), and keeps many commands in flight (the gateway logs the
# most per session). Then (D): a SuperSpeed drive with uas=1: uas refuses it, since vhci has no
# streams (drivers/usb/storage/uas-detect.h), and usb-storage uses Bulk-Only in alternate 0.

ST_SPEC=,uas=1
ST_DRIVER=uas
. /rig/scenarios/storage.sh

# Commands in flight at once through UAS, from the gateway's log of each session's end.
most=$(sed -n 's/.*UAS: up to \([0-9]*\) commands were in flight at once.*/\1/p' "$GW_LOG" | sort -n | tail -n 1)
rig_field uas_most_in_flight "${most:-0}"
log "UAS: up to ${most:-0} commands in flight at once"

# --- (D) SuperSpeed with uas=1: Bulk-Only in alternate 0 -------------------------------------
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device storage:busid=1-5,image=$S/super.img,size=32M,product=RIG-SUPER,speed=super,uas=1 \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-5"
rig_start_gateway
ST_DRIVER=usb-storage
st_attach 1-5 RIG-SUPER super
rig_field_str super_speed "$(cat "/sys/bus/usb/devices/$(st_usb_of "$ST_DISK")/speed")"
dmesg | grep -q 'does not support streams' || fail "super: uas did not say why it refused the drive"
head -c 4194304 /dev/urandom >/tmp/super.bin
want=$(sha256sum /tmp/super.bin | awk '{ print $1 }')
timeout -s KILL 60 dd if=/tmp/super.bin of="$ST_DISK" bs=1M oflag=direct conv=fsync 2>/dev/null ||
	fail "super: dd to $ST_DISK failed"
got=$(timeout -s KILL 60 dd if="$ST_DISK" bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | awk '{ print $1 }')
rig_field_str super_readback "$([ "$got" = "$want" ] && echo match || echo "$got")"
[ "$got" = "$want" ] || fail "super: 4 MiB read back as $got, written $want"
st_detach "$ST_PORT" "$ST_DISK" super
rig_stop_gateway TERM
log "storage_uas ok"
