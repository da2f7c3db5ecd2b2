# Scenario storage_baseline (issue 6's benchmark; no verdict on speed): sequential write and
# read MB/s with dd through vhci, ours against the kernel's own mass-storage gadget, in one VM:
#   ours       the gateway's thumb drive (`storage:`, high speed, the default) on a tmpfs image;
#   ours_ss    the same with speed=super;
#   ours_uas   the same with uas=1 at high speed: the kernel's uas driver takes alternate setting 1
#              and keeps several commands in flight (a 1 MiB O_DIRECT request is split into
#              max_sectors_kb commands, all queued at once); at SuperSpeed uas refuses vhci, which
#              has no streams (drivers/usb/storage/uas-detect.h), so there is no ours_uas_ss;
#   kernel     the kernel's usb_f_mass_storage (configfs gadget, max_speed=high) on dummy_hcd,
#              backed by a tmpfs file of the same size, exported by usbip-host + usbipd;
#   kernel_ss  a second such gadget at SuperSpeed (dummy_hcd is_super_speed=1, num=2);
#   direct, direct_ss  those gadgets straight on dummy_hcd (no USB/IP), for reference.
# usb-storage sends up to 120 KiB per SCSI command at high speed and 1 MiB at SuperSpeed
# (max_sectors_kb, recorded). All disks are attached at once and the runs interleave (round r
# runs every path once) so that a busy host slows each path alike. Each path: an 8 MiB
# warm-up of each direction (TCG translates code on first use), then ST_RUNS writes
# (dd if=/dev/zero of=DISK bs=1M count=ST_MIB oflag=direct conv=fsync) and ST_RUNS reads
# (dd if=DISK of=/dev/null bs=1M count=ST_MIB iflag=direct).

. /rig/storage.sh

ST_MIB=32
ST_RUNS="1 2 3"
IMG_MIB=$((ST_MIB + 16))
KPORT=3241
st_modules
st_kernel_modules
rig_field st_mib "$ST_MIB"
rig_field_str write_args "if=/dev/zero of=DISK bs=1M count=$ST_MIB oflag=direct conv=fsync"
rig_field_str read_args "if=DISK of=/dev/null bs=1M count=$ST_MIB iflag=direct"

# --- the kernel's gadgets --------------------------------------------------------------------

st_kernel_gadget ms RIG-KBENCH high-speed dummy_udc.0 "$IMG_MIB"
K_BUSID=$ST_KBUSID
st_kernel_gadget ms_ss RIG-KBENCH-SS super-speed dummy_udc.1 "$IMG_MIB"
KSS_BUSID=$ST_KBUSID
D_direct=$(st_disk RIG-KBENCH '*dummy_hcd*')
D_direct_ss=$(st_disk RIG-KBENCH-SS '*dummy_hcd*')
rig_field_str kernel_speed "$(cat "/sys/bus/usb/devices/$K_BUSID/speed")"
rig_field_str kernel_ss_speed "$(cat "/sys/bus/usb/devices/$KSS_BUSID/speed")"

# --- the runs --------------------------------------------------------------------------------

# warm LABEL DISK: records LABEL_max_sectors_kb; an 8 MiB write and read.
warm() {
	rig_field_str "$1_max_sectors_kb" "$(cat "/sys/block/$(basename "$2")/queue/max_sectors_kb")"
	timeout -s KILL 120 dd if=/dev/zero of="$2" bs=1M count=8 oflag=direct conv=fsync 2>/dev/null ||
		fail "$1: warm-up write to $2 failed"
	timeout -s KILL 120 dd if="$2" of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null ||
		fail "$1: warm-up read of $2 failed"
}

# rounds LABEL...: ST_RUNS rounds of writes, then of reads, each round every path once (the
# disk in D_LABEL); records LABEL_write_* and LABEL_read_*.
rounds() {
	for _l in "$@"; do eval "_w_$_l= _r_$_l="; done
	for _dir in write read; do
		for _r in $ST_RUNS; do
			for _l in "$@"; do
				eval "_d=\$D_$_l"
				if [ "$_dir" = write ]; then
					_m=$(st_dd_mbs "$_l write $_r" if=/dev/zero of="$_d" bs=1M count="$ST_MIB" oflag=direct conv=fsync) || exit 1
					eval "_w_$_l=\"\${_w_$_l}\${_w_$_l:+ }$_m\""
				else
					_m=$(st_dd_mbs "$_l read $_r" if="$_d" of=/dev/null bs=1M count="$ST_MIB" iflag=direct) || exit 1
					eval "_r_$_l=\"\${_r_$_l}\${_r_$_l:+ }$_m\""
				fi
			done
		done
	done
	for _l in "$@"; do
		eval "st_stats ${_l}_write \"\$_w_$_l\""
		eval "st_stats ${_l}_read \"\$_r_$_l\""
	done
}

# The kernel's gadgets straight on dummy_hcd first.
warm direct "$D_direct"
warm direct_ss "$D_direct_ss"
rounds direct direct_ss

# Then everything through vhci: the kernel's gadgets exported by usbipd on port KPORT, ours
# by the gateway on 3240.
st_usbipd "$KPORT" "$K_BUSID" "$KSS_BUSID"
st_try_attach "$K_BUSID" RIG-KBENCH kernel "$KPORT" || fail "$ST_ERR"
D_kernel=$ST_DISK
st_try_attach "$KSS_BUSID" RIG-KBENCH-SS kernel_ss "$KPORT" || fail "$ST_ERR"
D_kernel_ss=$ST_DISK

GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device storage:busid=1-1,image=/tmp/ours.img,size=${IMG_MIB}M,product=RIG-BENCH \
--device storage:busid=1-2,image=/tmp/ours-ss.img,size=${IMG_MIB}M,product=RIG-BENCH-SS,speed=super \
--device storage:busid=1-3,image=/tmp/ours-uas.img,size=${IMG_MIB}M,product=RIG-BENCH-UAS,uas=1 \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2|1-3"
rig_start_gateway
st_attach 1-1 RIG-BENCH ours
D_ours=$ST_DISK
st_attach 1-2 RIG-BENCH-SS ours_ss
D_ours_ss=$ST_DISK
rig_field_str ours_ss_speed "$(cat "/sys/bus/usb/devices/$(st_usb_of "$D_ours_ss")/speed")"
ST_DRIVER=uas
st_attach 1-3 RIG-BENCH-UAS ours_uas
D_ours_uas=$ST_DISK
ST_DRIVER=

for l in ours kernel ours_ss kernel_ss ours_uas; do eval "warm $l \"\$D_$l\""; done
rounds ours kernel ours_ss kernel_ss ours_uas

st_detach_all
killall usbipd 2>/dev/null
rig_stop_gateway TERM
log "storage_baseline ok"
