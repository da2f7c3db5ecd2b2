# Scenario storage_latency (issue 18; a benchmark run on demand, no verdict on speed):
# sequential MB/s through vhci with delay added on the guest's loopback, for
#   ours       the gateway's drive (`storage:`), Bulk-Only at high speed;
#   ours_ss    the same with speed=super (Bulk-Only: vhci has no bulk streams);
#   ours_uas   uas=1, high speed: the kernel's uas driver takes alternate setting 1;
#   kernel     the kernel's usb_f_mass_storage (configfs gadget, max_speed=high) on dummy_hcd,
#              backed by a tmpfs file, exported by usbip-host + usbipd (as storage_baseline);
#   kernel_ss  a second such gadget at SuperSpeed.
# A configuration whose serve or attach fails is recorded as CONF_error and left out; the
# others go on. All disks are attached at 0 ms (enumeration over a slow link is slow in its
# own right) and stay attached while the delay changes: `tc qdisc replace dev lo root netem
# delay Dms` for D in LAT_DELAYS. netem delays every packet leaving lo and each direction of a
# loopback connection leaves lo once, so the round trip is 2 x D; ping measures it per delay.
# netem orphans the packets it holds (skb_orphan_partial, net/sched/sch_netem.c), so TCP's
# small-queue limit does not throttle a delayed socket.
# TCP as on a WAN path, set before any connection: lo's MTU 1500 (MSS 1448 rather than lo's
# 65483), and tcp_slow_start_after_idle=0: while the other configurations run a connection
# idles for seconds, and each run would start from a restarted congestion window of 10
# segments (tcp_cwnd_restart, net/ipv4/tcp_output.c); within a run no path idles that long.
# `ss -ti` after each delay shows TCP's windows (not the bound: see BENCHMARKS.md).
#
# Method, the same for every configuration: LAT_STREAMS dd processes at once, each over its
# own slice of the disk, O_DIRECT with bs=1M; MB/s (10^6) is all their bytes over the wall
# time until the last ends. Several streams because UAS gains by having many commands in
# flight, while one O_DIRECT dd waits for each 1 MiB before the next (a few max_sectors_kb
# requests in flight). Bulk-Only runs one command at a time whatever is queued (usb-storage's
# host template has can_queue = 1, drivers/usb/storage/scsiglue.c; CBW, data and CSW in turn,
# drivers/usb/storage/transport.c), so the streams change nothing for it. Buffered I/O is not
# used: reads would be held to about one request at a time by readahead (mm/readahead.c) and
# writeback depends on the dirty-page thresholds, so the directions would not compare.
# Every disk is fixed (removable=0; the kernel's LUN removable 0): sd checks a removable disk's
# medium with TEST UNIT READY on every open and sends PREVENT/ALLOW MEDIUM REMOVAL on the first
# open and last close (drivers/scsi/sd.c sd_open, sd_release), and a Bulk-Only command without
# data still costs two round trips: with 4 dd processes per run usbmon counted a third more
# commands than the data needs at high speed, three fifths more at SuperSpeed. No conv=fsync
# either: an O_DIRECT write returns once the drive has answered it, and each fsync sends a
# SYNCHRONIZE CACHE.
# Sizes: per configuration and delay, a 1 MiB probe of each direction (one dd, not counted)
# sizes the runs to about LAT_TARGET_S seconds (LAT_STREAMS to LAT_MAX_MIB MiB, whole MiB per
# stream). LAT_RUNS rounds of writes, then of reads, each round every configuration once (a
# busy host slows them alike). The average request size comes from /sys/block/sdX/stat.

. /rig/storage.sh

LAT_DELAYS="0 10 25 50"
LAT_RUNS="1 2 3"
LAT_STREAMS=4
LAT_TARGET_S=3
LAT_MAX_MIB=32
IMG_MIB=$((LAT_MAX_MIB + 16))
KPORT=3241
LAT_CONFS=
# iproute2's tc by its path: busybox sh runs its own applet (no netem) for a bare `tc`.
TC=/usr/sbin/tc

ip link set dev lo mtu 1500 || fail "cannot set lo's MTU"
ip link show dev lo
echo 0 >/proc/sys/net/ipv4/tcp_slow_start_after_idle || fail "cannot set tcp_slow_start_after_idle"
st_modules
rig_modprobe uas
rig_modprobe sch_netem
rig_modprobe tcp_diag
st_kernel_modules
rig_field_str lat_delays_ms "$LAT_DELAYS"
rig_field lat_streams "$LAT_STREAMS"
rig_field lat_max_mib "$LAT_MAX_MIB"
rig_field lat_target_s "$LAT_TARGET_S"
rig_field_str write_args "if=/dev/zero of=DISK bs=1M count=N seek=I*N oflag=direct conv=notrunc"
rig_field_str read_args "if=DISK of=/dev/null bs=1M count=N skip=I*N iflag=direct"

# lat_null CONF REASON: CONF is left out, with REASON recorded.
lat_null() {
	log "$1: left out: $2"
	rig_field_str "$1_error" "$2"
	_keep=
	for _k in $LAT_CONFS; do [ "$_k" = "$1" ] || _keep="$_keep $_k"; done
	LAT_CONFS=${_keep# }
}

# lat_attach BUSID MODEL CONF DRIVER [TCP_PORT]: attaches CONF's disk (D_CONF), which DRIVER
# must drive, or leaves CONF out.
lat_attach() {
	if ! st_try_attach "$1" "$2" "$3" "$5"; then
		lat_null "$3" "$ST_ERR"
	elif [ "$ST_BOUND" != "$4" ]; then
		lat_null "$3" "$ST_BOUND drives $1, not $4"
	else
		eval "D_$3=$ST_DISK"
		LAT_CONFS="${LAT_CONFS}${LAT_CONFS:+ }$3"
	fi
}

# lat_delay MS: netem delay MS on lo (none at 0); records dMS_qdisc and dMS_ping_rtt_ms
# (ping's average of 5).
lat_delay() {
	if [ "$1" -eq 0 ]; then
		$TC qdisc del dev lo root 2>/dev/null
	else
		_out=$($TC qdisc replace dev lo root netem delay "$1ms" 2>&1) || fail "tc netem delay $1ms: $_out"
	fi
	rig_field_str "d$1_qdisc" "$($TC qdisc show dev lo)"
	_ping=$(ping -c 5 -i 0.2 -q 127.0.0.1 2>&1)
	echo "$_ping"
	_rtt=$(echo "$_ping" | sed -n 's#.*min/avg/max = [0-9.]*/\([0-9.]*\)/.*#\1#p')
	[ -n "$_rtt" ] || fail "delay $1 ms: no ping round trip: $_ping"
	rig_field "d$1_ping_rtt_ms" "$_rtt"
	log "delay $1 ms each way: ping round trip $_rtt ms; $($TC qdisc show dev lo)"
}

# lat_dd DIR DISK MIB STREAMS: STREAMS dd processes (DIR write or read) at once over MIB MiB
# of DISK; sets LAT_MBS and adds the requests and sectors done to LAT_IOS and LAT_SECTORS, or
# returns 1 with the reason in LAT_ERR.
lat_dd() {
	_n=$(($3 / $4))
	_stat=/sys/block/$(basename "$2")/stat
	# read I/Os and sectors are fields 1 and 3, write I/Os and sectors fields 5 and 7
	_f=1
	[ "$1" = write ] && _f=5
	set -- "$@" "$(awk -v f="$_f" '{ print $f, $(f + 2) }' "$_stat")"
	_t0=$(rig_uptime)
	_pids=
	_i=0
	while [ "$_i" -lt "$4" ]; do
		if [ "$1" = write ]; then
			timeout -s KILL 120 dd if=/dev/zero of="$2" bs=1M count="$_n" seek=$((_i * _n)) \
				oflag=direct conv=notrunc 2>"$W/dd.$_i" &
		else
			timeout -s KILL 120 dd if="$2" of=/dev/null bs=1M count="$_n" skip=$((_i * _n)) \
				iflag=direct 2>"$W/dd.$_i" &
		fi
		_pids="$_pids $!"
		_i=$((_i + 1))
	done
	LAT_ERR=
	_i=0
	for _p in $_pids; do
		wait "$_p" || LAT_ERR="${LAT_ERR}dd $1 of $2 (stream $_i) failed: $(tail -n 2 "$W/dd.$_i" | tr '\n' ' ') "
		_i=$((_i + 1))
	done
	_s=$(rig_since "$_t0")
	[ -z "$LAT_ERR" ] || return 1
	set -- "$@" "$(awk -v f="$_f" '{ print $f, $(f + 2) }' "$_stat")"
	LAT_IOS=$((LAT_IOS + ${6% *} - ${5% *}))
	LAT_SECTORS=$((LAT_SECTORS + ${6#* } - ${5#* }))
	LAT_MBS=$(awk -v s="$_s" -v m="$3" 'BEGIN { printf "%.2f", m * 1048576 / s / 1e6 }')
	echo "dd $1 $2: $3 MiB in $4 streams, $_s s, $LAT_MBS MB/s"
}

# lat_mib MBS: MiB for a run of about LAT_TARGET_S s at MBS MB/s.
lat_mib() {
	awk -v r="$1" -v t="$LAT_TARGET_S" -v s="$LAT_STREAMS" -v max="$LAT_MAX_MIB" 'BEGIN {
		n = s * int(r * 1e6 / 1048576 * t / s + 0.5)
		print (n < s ? s : (n > max ? max : n)) }'
}

# lat_measure D: at delay D, probes, then LAT_RUNS rounds of each direction for every
# configuration; records CONF_dD_DIR_{mbs,median_mbs,best_mbs,mib,probe_mbs,req_kib}.
lat_measure() {
	for _dir in write read; do
		for _c in $LAT_CONFS; do
			eval "_d=\$D_$_c"
			lat_dd "$_dir" "$_d" 1 1 || {
				lat_null "$_c" "$LAT_ERR"
				continue
			}
			_mib=$(lat_mib "$LAT_MBS")
			rig_field "${_c}_d$1_${_dir}_probe_mbs" "$LAT_MBS"
			rig_field "${_c}_d$1_${_dir}_mib" "$_mib"
			eval "_mib_$_c=$_mib _v_$_c= _ios_$_c=0 _sec_$_c=0"
		done
		for _r in $LAT_RUNS; do
			for _c in $LAT_CONFS; do
				eval "_d=\$D_$_c _mib=\$_mib_$_c LAT_IOS=\$_ios_$_c LAT_SECTORS=\$_sec_$_c"
				if lat_dd "$_dir" "$_d" "$_mib" "$LAT_STREAMS"; then
					eval "_v_$_c=\"\${_v_$_c}\${_v_$_c:+ }$LAT_MBS\" _ios_$_c=$LAT_IOS _sec_$_c=$LAT_SECTORS"
				else
					lat_null "$_c" "$LAT_ERR"
				fi
			done
		done
		for _c in $LAT_CONFS; do
			eval "_v=\$_v_$_c _s=\$_sec_$_c _n=\$_ios_$_c"
			st_stats "${_c}_d$1_$_dir" "$_v"
			rig_field "${_c}_d$1_${_dir}_req_kib" "$(awk -v s="$_s" -v n="$_n" 'BEGIN { printf "%.1f", n ? s / 2 / n : 0 }')"
		done
	done
}

# --- the kernel's gadgets, exported by usbipd on KPORT -------------------------------------

st_kernel_gadget klat RIG-KLAT high-speed dummy_udc.0 "$IMG_MIB" 0
K_BUSID=$ST_KBUSID
st_kernel_gadget klat_ss RIG-KLAT-SS super-speed dummy_udc.1 "$IMG_MIB" 0
KSS_BUSID=$ST_KBUSID
st_usbipd "$KPORT" "$K_BUSID" "$KSS_BUSID"

# --- ours: UAS in the same gateway when it serves; without it when not ----------------------

GW_RULE="--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2|1-3"
GW_BOT="--device storage:busid=1-1,image=/tmp/ours.img,size=${IMG_MIB}M,product=RIG-LAT,removable=0 \
--device storage:busid=1-2,image=/tmp/ours-ss.img,size=${IMG_MIB}M,product=RIG-LAT-SS,removable=0,speed=super"
GW_UAS="--device storage:busid=1-3,image=/tmp/ours-uas.img,size=${IMG_MIB}M,product=RIG-LAT-UAS,removable=0,uas=1"
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK $GW_BOT $GW_UAS $GW_RULE"
UAS_SERVED=1
if ! rig_try_gateway; then
	UAS_SERVED=
	lat_null ours_uas "$RIG_GW_ERR: $(grep -v '^=== rig:' "$GW_LOG" | tail -n 1)"
	GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK $GW_BOT $GW_RULE"
	rig_start_gateway
fi

lat_attach 1-1 RIG-LAT ours usb-storage
lat_attach 1-2 RIG-LAT-SS ours_ss usb-storage
# usb-storage would take alternate 0 if uas did not bind: that row would not be UAS.
[ -z "$UAS_SERVED" ] || lat_attach 1-3 RIG-LAT-UAS ours_uas uas
lat_attach "$K_BUSID" RIG-KLAT kernel usb-storage "$KPORT"
lat_attach "$KSS_BUSID" RIG-KLAT-SS kernel_ss usb-storage "$KPORT"
for c in $LAT_CONFS; do
	eval "d=\$D_$c"
	q=/sys/block/$(basename "$d")
	rig_field_str "${c}_speed" "$(cat "/sys/bus/usb/devices/$(st_usb_of "$d")/speed")"
	rig_field_str "${c}_max_sectors_kb" "$(cat "$q/queue/max_sectors_kb")"
	rig_field_str "${c}_max_segments" "$(cat "$q/queue/max_segments")"
	rig_field_str "${c}_queue_depth" "$(cat "$q/device/queue_depth")"
done
rig_field_str lat_confs "$LAT_CONFS"

# Warm-up at 0 ms (TCG translates code on first use; writing the whole span also allocates
# the tmpfs images): LAT_MAX_MIB each way with the method, not counted.
for c in $LAT_CONFS; do
	eval "d=\$D_$c"
	for dir in write read; do
		lat_dd "$dir" "$d" "$LAT_MAX_MIB" "$LAT_STREAMS" || {
			lat_null "$c" "$LAT_ERR"
			break
		}
		rig_field "${c}_warm_${dir}_mbs" "$LAT_MBS"
	done
done

for delay in $LAT_DELAYS; do
	lat_delay "$delay"
	lat_measure "$delay"
	# TCP's own smoothed round trip of every USB/IP connection (both ends), after the runs.
	ss -tin state established >"$W/ss"
	cat "$W/ss"
	rig_field "d${delay}_tcp_srtt_ms" "[$(sed -n 's/.* rtt:\([0-9.]*\)\/.*/\1/p' "$W/ss" | sort -n | tr '\n' ' ' |
		sed 's/ *$//; s/ /, /g')]"
done
$TC qdisc del dev lo root

st_detach_all
killall usbipd 2>/dev/null
rig_stop_gateway TERM
log "storage_latency ok: $LAT_CONFS"
