# Scenario storage (issue 6): the gateway's thumb drives through vhci-hcd + usb-storage + sd.
# The images live in the results share ($R/storage), so that the host checks them after the
# run (interop_test.ts: fsck.vfat -n, e2fsck -fn, the files' sha256 through mtools/debugfs).
# (A) 1-1: MBR with one FAT partition, mkfs.vfat; 1-2: mkfs.ext4 on the whole disk; payload
#     files copied to both, sync, umount, detach; re-attach both, checksums read back.
# (B) kill -9 of the gateway during a large write to the mounted ext4 (a file synced just
#     before): port freed, disk gone, umount -l; restart, re-attach, e2fsck -fp (the journal
#     replay), e2fsck -fn clean, the files synced earlier intact.
# (C) read-only: 1-3 served with `ro`, 1-4 writable but granted read-only by a policy rule:
#     sd sees them write-protected, a rw mount is refused or falls back to ro, a write forced
#     past sd (blockdev --setrw) fails at the device, and the images stay unchanged.
# ST_SPEC (appended to every drive's spec) and ST_DRIVER (the driver that must bind them) let
# storage_uas run the same checks through UAS.

. /rig/storage.sh

S=$R/storage
mkdir -p "$S"
st_modules
mkdir -p /mnt/vfat /mnt/ext4 /mnt/ro

# Payload: big.bin (4 MiB) and 200 small files; the manifest goes to the host too.
SMALL_FILES=200
_t0=$(rig_uptime)
st_payload /tmp/payload "$SMALL_FILES"
(cd /tmp/payload && find . -type f | sed 's#^\./##' | sort | xargs sha256sum) >"$S/payload.sha256" ||
	fail "cannot write the payload manifest"
PAYLOAD_BYTES=$(du -sb /tmp/payload | awk '{ print $1 }')
rig_field payload_files "$(grep -c . "$S/payload.sha256")"
rig_field payload_bytes "$PAYLOAD_BYTES"
log "payload: $(grep -c . "$S/payload.sha256") files, $PAYLOAD_BYTES bytes in $(rig_since "$_t0") s"

# Read-only images: a small ext4 holding the payload, built here; its sha256 before serving.
# (built in tmpfs and copied: mkfs's many small writes are slow on 9p).
timeout -s KILL 60 mkfs.ext4 -q -F -L RIGRO -d /tmp/payload /tmp/ro.img 16M >/dev/null 2>&1 ||
	fail "mkfs.ext4 -d of ro.img failed"
cp /tmp/ro.img "$S/ro.img" && cp /tmp/ro.img "$S/policy.img" || fail "cannot copy ro.img to $S"
RO_SHA=$(sha256sum /tmp/ro.img | awk '{ print $1 }')
rm /tmp/ro.img
rig_field_str ro_image_sha256 "$RO_SHA"

GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device storage:busid=1-1,image=$S/vfat.img,size=64M,product=RIG-VFAT${ST_SPEC:-} \
--device storage:busid=1-2,image=$S/ext4.img,size=256M,product=RIG-EXT4${ST_SPEC:-} \
--device storage:busid=1-3,image=$S/ro.img,ro,product=RIG-RO${ST_SPEC:-} \
--device storage:busid=1-4,image=$S/policy.img,product=RIG-POLICY${ST_SPEC:-} \
--rule read-only:transport=tcp,source=127.0.0.0/8,busid=1-4 \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2|1-3"
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"
list=$(usbip list -r 127.0.0.1 2>&1)
echo "$list"
for b in 1-1 1-2 1-3 1-4; do
	echo "$list" | grep -q "^ *$b: .*(1209:0004)" || fail "usbip list does not show $b (1209:0004): $list"
done

# --- (A) vfat on a partition, ext4 on the whole disk ---------------------------------------

st_attach 1-1 RIG-VFAT vfat
VFAT_DISK=$ST_DISK VFAT_PORT=$ST_PORT
rig_field_str vfat_max_sectors_kb "$(cat "/sys/block/$(basename "$VFAT_DISK")/queue/max_sectors_kb")"
# o: new MBR; n p 1: primary partition 1 over the whole disk; t c: W95 FAT32 (LBA); w.
out=$(printf 'o\nn\np\n1\n\n\nt\nc\nw\n' | timeout -s KILL 60 fdisk "$VFAT_DISK" 2>&1) ||
	fail "fdisk $VFAT_DISK failed: $out"
rig_wait 20 test -b "${VFAT_DISK}1" || fail "vfat: ${VFAT_DISK}1 did not appear after fdisk"
_t0=$(rig_uptime)
out=$(timeout -s KILL 120 mkfs.vfat -n RIGVFAT "${VFAT_DISK}1" 2>&1) || fail "mkfs.vfat ${VFAT_DISK}1 failed: $out"
rig_field vfat_mkfs_s "$(rig_since "$_t0")"
timeout -s KILL 30 mount -t vfat "${VFAT_DISK}1" /mnt/vfat || fail "cannot mount ${VFAT_DISK}1 (vfat)"
_t0=$(rig_uptime)
cp -r /tmp/payload/. /mnt/vfat/ || fail "cp of the payload to vfat failed"
timeout -s KILL 120 sync || fail "vfat: sync did not return within 120 s"
rig_field vfat_write_s "$(rig_since "$_t0")"
st_umount /mnt/vfat vfat
log "vfat: mkfs, payload written and synced"

st_attach 1-2 RIG-EXT4 ext4
EXT4_DISK=$ST_DISK EXT4_PORT=$ST_PORT
_t0=$(rig_uptime)
out=$(timeout -s KILL 180 mkfs.ext4 -q -F -L RIGEXT4 "$EXT4_DISK" 2>&1) || fail "mkfs.ext4 $EXT4_DISK failed: $out"
rig_field ext4_mkfs_s "$(rig_since "$_t0")"
timeout -s KILL 30 mount -t ext4 "$EXT4_DISK" /mnt/ext4 || fail "cannot mount $EXT4_DISK (ext4)"
_t0=$(rig_uptime)
cp -r /tmp/payload/. /mnt/ext4/ || fail "cp of the payload to ext4 failed"
timeout -s KILL 120 sync || fail "ext4: sync did not return within 120 s"
rig_field ext4_write_s "$(rig_since "$_t0")"
st_umount /mnt/ext4 ext4
log "ext4: mkfs, payload written and synced"

st_detach "$VFAT_PORT" "$VFAT_DISK" vfat
st_detach "$EXT4_PORT" "$EXT4_DISK" ext4

# Attached again: the files read back through a new session.
st_attach 1-1 RIG-VFAT vfat_again
VFAT_DISK=$ST_DISK VFAT_PORT=$ST_PORT
rig_wait 20 test -b "${VFAT_DISK}1" || fail "vfat: ${VFAT_DISK}1 missing after the re-attach"
timeout -s KILL 30 mount -t vfat -o ro "${VFAT_DISK}1" /mnt/vfat || fail "cannot mount ${VFAT_DISK}1 again"
st_verify /mnt/vfat "$S/payload.sha256" vfat_again
st_umount /mnt/vfat vfat
st_detach "$VFAT_PORT" "$VFAT_DISK" vfat_again

st_attach 1-2 RIG-EXT4 ext4_again
EXT4_DISK=$ST_DISK EXT4_PORT=$ST_PORT
timeout -s KILL 30 mount -t ext4 "$EXT4_DISK" /mnt/ext4 || fail "cannot mount $EXT4_DISK again"
st_verify /mnt/ext4 "$S/payload.sha256" ext4_again

# --- (B) kill -9 of the gateway during a large write ---------------------------------------

# A file written and synced before the kill, with its own manifest.
head -c 2097152 /dev/urandom >/tmp/synced-before-kill.bin
cp /tmp/synced-before-kill.bin /mnt/ext4/ || fail "cannot write synced-before-kill.bin"
timeout -s KILL 60 sync || fail "ext4: sync before the kill did not return"
(cd /tmp && sha256sum synced-before-kill.bin) >"$S/synced.sha256"
cat "$S/payload.sha256" "$S/synced.sha256" >/tmp/all.sha256

# sectors written to the disk so far (field 7 of /sys/block/sdX/stat)
written() {
	awk '{ print $7 }' "/sys/block/$(basename "$EXT4_DISK")/stat"
}
# The dd is far bigger than what reaches the disk before the kill (also with KVM, where the
# gateway is fast); the kill comes once 8 MiB reached the device (polled every 50 ms).
CRASH_MIB=160
w0=$(written)
dd if=/dev/zero of=/mnt/ext4/big-during-kill.bin bs=1M count=$CRASH_MIB conv=fsync 2>"$W/crash-dd.err" &
DD_PID=$!
_t0=$(rig_uptime)
n=0
while [ $(($(written) - w0)) -lt 16384 ]; do
	n=$((n + 1))
	[ "$n" -le 2400 ] || fail "crash: not 8 MiB written to $EXT4_DISK within 120 s of the dd start"
	usleep 50000
done
at_kill=$(( ($(written) - w0) / 2048 ))
rig_alive "$DD_PID" || fail "crash: the dd ended before the kill (the write was too quick)"
rig_field crash_dd_mib "$CRASH_MIB"
rig_field crash_written_mib_at_kill "$at_kill"
rig_field crash_kill_after_s "$(rig_since "$_t0")"
log "crash: kill -9 of the gateway with $at_kill MiB of $CRASH_MIB written"
_tk=$(rig_uptime)
kill -9 "$GW_PID"
rig_wait 10 rig_vhci_port_free "$EXT4_PORT" || fail "crash: vhci port $EXT4_PORT not freed within 10 s of kill -9"
rig_field crash_port_freed_s "$(rig_since "$_tk")"
rig_wait 20 eval "[ ! -e /sys/block/$(basename "$EXT4_DISK") ]" || fail "crash: $EXT4_DISK still there 20 s after kill -9"
rig_field crash_disk_gone_s "$(rig_since "$_tk")"
rig_wait 30 eval '! rig_alive "$DD_PID"' || fail "crash: the dd still runs 30 s after kill -9"
wait "$DD_PID"
rig_field crash_dd_exit "$?"
rig_field crash_dd_ended_s "$(rig_since "$_tk")"
rig_field_str crash_dd_error "$(tail -n 1 "$W/crash-dd.err")"
wait "$GW_PID" 2>/dev/null
echo "=== rig: gateway pid $GW_PID killed with SIGKILL" >>"$GW_LOG"
GW_PID=
timeout -s KILL 30 umount -l /mnt/ext4 || fail "crash: umount -l /mnt/ext4 failed"

rig_start_gateway
rig_field crash_restart_s "$GW_START_S"
st_attach 1-2 RIG-EXT4 crash_reattach
EXT4_DISK=$ST_DISK EXT4_PORT=$ST_PORT
_t0=$(rig_uptime)
out=$(timeout -s KILL 180 e2fsck -fp "$EXT4_DISK" 2>&1)
rc=$?
echo "e2fsck -fp $EXT4_DISK (exit $rc):"
echo "$out" | sed 's/^/    /'
rig_field crash_e2fsck_s "$(rig_since "$_t0")"
rig_field crash_e2fsck_exit "$rc"
rig_field_str crash_e2fsck_output "$out"
journal=false
echo "$out" | grep -qi 'recovering journal' && journal=true
rig_field crash_journal_recovered "$journal"
[ "$rc" -le 1 ] || fail "crash: e2fsck -fp exit $rc (errors preen cannot fix): $out"
out=$(timeout -s KILL 180 e2fsck -fn "$EXT4_DISK" 2>&1)
rc=$?
echo "e2fsck -fn $EXT4_DISK (exit $rc):"
echo "$out" | sed 's/^/    /'
rig_field crash_e2fsck_again_exit "$rc"
[ "$rc" -eq 0 ] || fail "crash: e2fsck -fn after the replay exit $rc: $out"
timeout -s KILL 30 mount -t ext4 -o ro "$EXT4_DISK" /mnt/ext4 || fail "crash: cannot mount $EXT4_DISK after e2fsck"
st_verify /mnt/ext4 /tmp/all.sha256 crash_synced
ls -l /mnt/ext4
st_umount /mnt/ext4 ext4
st_detach "$EXT4_PORT" "$EXT4_DISK" crash_reattach

# --- (C) read-only: `ro` and a read-only policy rule ---------------------------------------

# ro_check BUSID MODEL LABEL
ro_check() {
	st_attach "$1" "$2" "$3"
	_d=$ST_DISK _p=$ST_PORT _n=$(basename "$ST_DISK")
	rig_field "$3_sysfs_ro" "$(cat "/sys/block/$_n/ro")"
	rig_field "$3_getro" "$(blockdev --getro "$_d")"
	# A rw mount: refused, or mounted read-only.
	_out=$(timeout -s KILL 30 mount -t ext4 -o rw "$_d" /mnt/ro 2>&1)
	_rc=$?
	_opts=$(awk -v d="$_d" '$1 == d { split($4, o, ","); print o[1] }' /proc/mounts)
	rig_field "$3_rw_mount_exit" "$_rc"
	rig_field_str "$3_rw_mount_mode" "${_opts:-not mounted}"
	log "$3: rw mount exit $_rc ($_out), mounted: ${_opts:-no}"
	[ "$_opts" != rw ] || fail "$3: $_d was mounted read-write"
	if [ -n "$_opts" ]; then
		st_verify /mnt/ro "$S/payload.sha256" "$3"
		st_umount /mnt/ro "$3"
	fi
	# The whole disk reads back as the image.
	_sum=$(timeout -s KILL 60 dd if="$_d" bs=1M 2>/dev/null | sha256sum | awk '{ print $1 }')
	rig_field_str "$3_disk_sha256" "$_sum"
	[ "$_sum" = "$RO_SHA" ] || fail "$3: $_d reads as $_sum, the image was $RO_SHA"
	# The block layer refuses a write to the write-protected disk...
	_out=$(timeout -s KILL 60 dd if=/dev/zero of="$_d" bs=4096 count=1 oflag=direct conv=fsync 2>&1)
	_rc=$?
	rig_field "$3_dd_write_exit" "$_rc"
	log "$3: dd write exit $_rc: $_out"
	[ "$_rc" -ne 0 ] || fail "$3: dd wrote to the write-protected $_d"
	# ...and a WRITE(10) sent past it (SG_IO) must fail at the device: DATA PROTECT (7),
	# WRITE PROTECTED (ASC 0x27).
	_out=$(timeout -s KILL 60 rig-sg-write "$_d" 100 512 2>&1)
	_rc=$?
	rig_field "$3_sg_write_exit" "$_rc"
	rig_field_str "$3_sg_write" "$_out"
	log "$3: SG_IO WRITE(10) exit $_rc: $_out"
	[ "$_rc" -eq 1 ] && echo "$_out" | grep -q 'sense_key=0x7 asc=0x27' ||
		fail "$3: a WRITE(10) through SG_IO was not refused with DATA PROTECT: $_out"
	st_detach "$_p" "$_d" "$3"
}
ro_check 1-3 RIG-RO ro
ro_check 1-4 RIG-POLICY policy

rig_stop_gateway TERM
for f in ro policy; do
	sum=$(sha256sum "$S/$f.img" | awk '{ print $1 }')
	rig_field_str "${f}_image_sha256_after" "$sum"
	[ "$sum" = "$RO_SHA" ] || fail "$f.img changed: $sum, was $RO_SHA"
done
log "storage ok"
