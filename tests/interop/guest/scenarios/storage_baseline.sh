# Scenario storage_baseline (issue 6's benchmark; no verdict on speed): sequential write and
# read MB/s with dd through vhci, ours against the kernel's own mass-storage gadget, in one VM:
#   ours       the gateway's thumb drive (`storage:`, high speed, the default) on a tmpfs image;
#   ours_ss    the same with speed=super;
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
rig_modprobe configfs
rig_modprobe dummy_hcd is_super_speed=1 num=2
for m in libcomposite usb_f_mass_storage usbip-host; do rig_modprobe "$m"; done
rig_field st_mib "$ST_MIB"
rig_field_str write_args "if=/dev/zero of=DISK bs=1M count=$ST_MIB oflag=direct conv=fsync"
rig_field_str read_args "if=DISK of=/dev/null bs=1M count=$ST_MIB iflag=direct"

# --- the kernel's gadgets --------------------------------------------------------------------

mount -t configfs none /sys/kernel/config 2>/dev/null
# kernel_gadget NAME MODEL MAX_SPEED UDC: a mass-storage gadget on a tmpfs file of IMG_MIB.
kernel_gadget() {
	_g=/sys/kernel/config/usb_gadget/$1
	truncate -s "${IMG_MIB}M" "/tmp/$1.img" || fail "cannot create /tmp/$1.img"
	mkdir "$_g" || fail "cannot create the configfs gadget $1"
	echo 0x0525 >"$_g/idVendor"
	echo 0xa4a5 >"$_g/idProduct"
	echo 0x0300 >"$_g/bcdUSB"
	echo "$3" >"$_g/max_speed" || fail "$1: cannot set max_speed $3"
	mkdir "$_g/strings/0x409"
	echo "usbipgw rig" >"$_g/strings/0x409/manufacturer"
	echo "Mass Storage (kernel)" >"$_g/strings/0x409/product"
	echo "0123456789AB" >"$_g/strings/0x409/serialnumber"
	mkdir "$_g/functions/mass_storage.0" || fail "no mass_storage function (usb_f_mass_storage)"
	echo 1 >"$_g/functions/mass_storage.0/lun.0/removable"
	# vendor (8), product (16), revision (4): the model st_disk looks for
	printf '%-8s%-16s%-4s\n' usbipgw "$2" 1.00 >"$_g/functions/mass_storage.0/lun.0/inquiry_string"
	echo "/tmp/$1.img" >"$_g/functions/mass_storage.0/lun.0/file" || fail "$1: cannot set the backing file"
	mkdir "$_g/configs/c.1" "$_g/configs/c.1/strings/0x409"
	echo "mass storage" >"$_g/configs/c.1/strings/0x409/configuration"
	ln -s "$_g/functions/mass_storage.0" "$_g/configs/c.1/"
	echo "$4" >"$_g/UDC" || fail "$1: cannot bind the gadget to $4"
	rig_wait 30 st_disk "$2" '*dummy_hcd*' >/dev/null || fail "$1: no disk on dummy_hcd within 30 s"
}
kernel_gadget ms RIG-KBENCH high-speed dummy_udc.0
kernel_gadget ms_ss RIG-KBENCH-SS super-speed dummy_udc.1
D_direct=$(st_disk RIG-KBENCH '*dummy_hcd*')
D_direct_ss=$(st_disk RIG-KBENCH-SS '*dummy_hcd*')
K_BUSID=$(st_usb_of "$D_direct")
KSS_BUSID=$(st_usb_of "$D_direct_ss")
for b in "$K_BUSID" "$KSS_BUSID"; do
	log "kernel gadget $b: $(cat "/sys/bus/usb/devices/$b/speed") Mb/s"
done
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
for b in "$K_BUSID" "$KSS_BUSID"; do
	out=$(usbip bind -b "$b" 2>&1) || fail "usbip bind -b $b failed: $out"
done
usbipd -D -t "$KPORT" || fail "usbipd -D -t $KPORT failed"
rig_wait 20 eval 'usbip --tcp-port $KPORT list -r 127.0.0.1 >/dev/null 2>&1' || fail "usbipd does not answer"
# kattach BUSID MODEL LABEL: like st_attach, through usbipd's port.
kattach() {
	_out=$(timeout -s KILL 60 usbip --tcp-port "$KPORT" attach -r 127.0.0.1 -b "$1" 2>&1) ||
		fail "$3: usbip attach -b $1 (port $KPORT) failed: $_out"
	rig_wait 30 st_disk "$2" >/dev/null || fail "$3: no disk with model $2 under vhci_hcd within 30 s"
	eval "D_$3=$(st_disk "$2")"
}
kattach "$K_BUSID" RIG-KBENCH kernel
kattach "$KSS_BUSID" RIG-KBENCH-SS kernel_ss

GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device storage:busid=1-1,image=/tmp/ours.img,size=${IMG_MIB}M,product=RIG-BENCH \
--device storage:busid=1-2,image=/tmp/ours-ss.img,size=${IMG_MIB}M,product=RIG-BENCH-SS,speed=super \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2"
rig_start_gateway
st_attach 1-1 RIG-BENCH ours
D_ours=$ST_DISK
st_attach 1-2 RIG-BENCH-SS ours_ss
D_ours_ss=$ST_DISK
rig_field_str ours_ss_speed "$(cat "/sys/bus/usb/devices/$(st_usb_of "$D_ours_ss")/speed")"

for l in ours kernel ours_ss kernel_ss; do eval "warm $l \"\$D_$l\""; done
rounds ours kernel ours_ss kernel_ss

for p in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
	usbip detach -p "$p" >/dev/null 2>&1 || fail "usbip detach -p $p failed"
done
rig_wait 10 rig_vhci_free || fail "vhci ports not freed after the detaches"
killall usbipd 2>/dev/null
rig_stop_gateway TERM
log "storage_baseline ok"
