# Scenario tls: USB/IP over TLS with client certificates into the real vhci (issue 16). The
# host made a test PKI in $R/pki (tests/transport/_certs.ts). The gateway listens for TLS on
# 127.0.0.1:3241 and lets the certificate with CN alice import Gadget Zero.
# (1) kernel TLS: "main.ts attach --tls --require-ktls" exits with no process left; the
#     kernel's TLS holds the socket (/proc/net/tls_stat), and testusb's set passes.
# (2) the relay: "attach --tls --relay" stays and pumps; testusb's set passes; a detach ends it.
#     "attach --tls --persist" attaches again after a drop, and detaches at SIGTERM.
# (3) plain TCP, for the benchmark table: testusb 27 and 28.
# (4) the stock usbip tool through "main.ts tunnel" attaches and passes test 1.
# (5) a certificate of another CA is refused (exit 3) with no vhci port used, and audited.
# (6) a proxy that flips a bit of one record frees the port within 5 s: kernel TLS in each
#     direction, and the relay server to client; no kernel warning (run.sh checks dmesg).

PKI=$R/pki
TLS_PORT=3241
CLIENT="--cert $PKI/alice.pem --key $PKI/alice.key --ca $PKI/ca.pem"
TESTS="0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 17 18 19 20 21 24 27 28 29"
ISO_TESTS="15 16 22 23"

# tls_stat NAME: a counter of /proc/net/tls_stat (net/tls/tls_proc.c).
tls_stat() {
	awk -v n="$1" '$1 == n { print $2 }' /proc/net/tls_stat
}

# suite LABEL: testusb's set (alt 0, then the ISO tests at alt 1) on $GZ_DEV; records
# LABEL and LABEL_iso; sets SUITE_BAD to the tests that did not pass.
suite() {
	# shellcheck disable=SC2086 # word lists
	_bad=$(rig_testusb_suite "$1" "$GZ_DEV" $TESTS)
	rig_usbtest_alt 1 "$GZ_DIR"
	# shellcheck disable=SC2086
	_bad_iso=$(rig_testusb_suite "$1_iso" "$GZ_DEV" $ISO_TESTS)
	rig_usbtest_alt -1 "$GZ_DIR"
	rig_field "$1" "$(rig_tests_json "$1")"
	rig_field "$1_iso" "$(rig_tests_json "$1_iso")"
	SUITE_BAD=$(echo $_bad $_bad_iso)
}

# main_bg OUT ERR ARGS...: main.ts ARGS in the background (BG_PID), for commands that stay
# (the relay, the tunnel): gw_cli's 90 s limit would kill them; the scenario's limit holds.
main_bg() {
	_out=$1 _err=$2
	shift 2
	# shellcheck disable=SC2086 # DENO_FLAGS is a word list
	DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 \
		"$DENO" run -A $DENO_FLAGS "$ROOT/main.ts" "$@" >"$_out" 2>"$_err" &
	BG_PID=$!
}

# detach_all: detaches every used port and waits until all are free.
detach_all() {
	for _p in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
		usbip detach -p "$_p" >/dev/null 2>&1
	done
	rig_wait 10 rig_vhci_free || fail "vhci ports still in use 10 s after their detach"
}

# tamper LABEL DIRECTION LISTEN [--relay]: attaches through a flip proxy on LISTEN, flips a
# bit DIRECTION while testusb runs, records LABEL_free_s (flip to port freed).
tamper() {
	_label=$1 _dir=$2 _listen=$3
	shift 3
	_arm=$W/arm-$_label
	rm -f "$_arm" "$_arm.done"
	# shellcheck disable=SC2086 # DENO_FLAGS is a word list
	DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 "$DENO" run -A $DENO_FLAGS \
		"$ROOT/tests/interop/guest/flip_proxy.ts" "$_listen" "$TLS_PORT" "$_dir" "$_arm" \
		>"$R/proxy-$_label.log" 2>&1 &
	_proxy=$!
	rig_wait 60 grep -q "flip_proxy:" "$R/proxy-$_label.log" || fail "$_label: the flip proxy did not start"
	# shellcheck disable=SC2086 # CLIENT is a word list
	main_bg "$W/attach-$_label.out" "$R/attach-$_label.err" \
		attach --tls -r "127.0.0.1:$_listen" -b "$GZ_BUSID" $CLIENT "$@"
	_attach=$BG_PID
	rig_wait 60 test -s "$W/attach-$_label.out" ||
		fail "$_label: attach through the proxy did not attach: $(cat "$R/attach-$_label.err")"
	_port=$(head -n 1 "$W/attach-$_label.out")
	rig_wait_gadget_zero
	: >"$_arm"
	testusb -D "$GZ_DEV" -t 1 -c 1000 -s 512 >/dev/null 2>&1 &
	_load=$!
	rig_wait 30 test -s "$_arm.done" || fail "$_label: the proxy flipped no bit within 30 s"
	_t0=$(cat "$_arm.done")
	rig_wait 20 rig_vhci_port_free "$_port" || fail "$_label: port $_port still in use 20 s after the flip"
	rig_field "${_label}_free_s" "$(rig_sub "$(rig_uptime)" "$_t0")"
	wait "$_load"
	wait "$_attach"
	rig_field "${_label}_attach_exit" "$?"
	kill "$_proxy" 2>/dev/null
	wait "$_proxy" 2>/dev/null
	log "$_label: flipped $_dir; port $_port freed"
}

# usbtest waits for a whole bulk test (27, 28: 32 MiB) in one uninterruptible wait
# (drivers/usb/misc/usbtest.c test_queue). Through the relay under TCG, with the crypto
# emulated, that takes 11-14 s on an idle host, and more on a loaded one: past init.sh's 10 s
# hung-task report, which would count as a kernel problem. 60 s still reports a real hang.
echo 60 >/proc/sys/kernel/hung_task_timeout_secs
rig_client_modules
for m in tls chacha_generic poly1305_generic chacha20poly1305; do rig_modprobe "$m"; done
[ -f /proc/net/tls_stat ] || fail "the tls module did not load: no /proc/net/tls_stat"
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --tls 127.0.0.1:$TLS_PORT \
--tls-cert $PKI/server.pem --tls-key $PKI/server.key --tls-ca $PKI/ca.pem \
--device gadget-zero:busid=1-1 --rule allow:transport=tls,cn=alice,busid=1-1 \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1"
rig_start_gateway

# (1) kernel TLS.
# shellcheck disable=SC2086 # CLIENT is a word list
port=$(gw_cli attach --tls --require-ktls -r "127.0.0.1:$TLS_PORT" -b "$GZ_BUSID" $CLIENT \
	2>"$R/ktls.err") || fail "attach --tls --require-ktls failed: $(cat "$R/ktls.err")"
log "kernel TLS: attached on vhci port $port; attach exited"
rig_wait_gadget_zero
rig_field ktls_tx_sw "$(tls_stat TlsCurrTxSw)"
rig_field ktls_rx_sw "$(tls_stat TlsCurrRxSw)"
[ "$(tls_stat TlsCurrRxSw)" -ge 1 ] || fail "no kernel TLS receive socket: $(cat /proc/net/tls_stat)"
suite ktls
[ -z "$SUITE_BAD" ] || fail "testusb over kernel TLS did not pass: $SUITE_BAD"
rig_field ktls_decrypt_errors "$(tls_stat TlsDecryptError)"
detach_all
rig_wait 10 eval '[ "$(tls_stat TlsCurrRxSw)" -eq 0 ]' || fail "the kernel TLS socket stayed after the detach"

# (2) the relay.
# shellcheck disable=SC2086 # CLIENT is a word list
main_bg "$W/relay.out" "$R/relay.err" attach --tls --relay -r "127.0.0.1:$TLS_PORT" -b "$GZ_BUSID" $CLIENT
RELAY=$BG_PID
rig_wait 60 test -s "$W/relay.out" || fail "attach --tls --relay did not attach: $(cat "$R/relay.err")"
rig_wait_gadget_zero
rig_field relay_rx_sw "$(tls_stat TlsCurrRxSw)"
rig_alive "$RELAY" || fail "attach --tls --relay exited while its device is attached"
suite relay
[ -z "$SUITE_BAD" ] || fail "testusb through the relay did not pass: $SUITE_BAD"
detach_all
rig_wait 10 eval '! rig_alive "$RELAY"' || fail "the relay still runs 10 s after its port was freed"
wait "$RELAY"
rig_field relay_exit "$?"

# (2b) --persist over TLS: a port freed under it is attached again; SIGTERM detaches it.
# shellcheck disable=SC2086 # CLIENT is a word list
main_bg "$W/persist.out" "$R/persist.err" attach --tls --persist -r "127.0.0.1:$TLS_PORT" -b "$GZ_BUSID" $CLIENT
PERSIST=$BG_PID
rig_wait 60 test -s "$W/persist.out" || fail "attach --tls --persist did not attach: $(cat "$R/persist.err")"
P1=$(sed -n 1p "$W/persist.out")
rig_wait_gadget_zero
usbip detach -p "$P1" >/dev/null 2>&1 || fail "usbip detach -p $P1 failed"
rig_wait 60 eval '[ "$(grep -c . "$W/persist.out")" -ge 2 ]' ||
	fail "attach --tls --persist did not attach again after port $P1 was freed: $(cat "$R/persist.err")"
P2=$(sed -n 2p "$W/persist.out")
rig_wait_gadget_zero 30 "$GZ_DEV"
kill -TERM "$PERSIST"
wait "$PERSIST"
rig_field persist_exit "$?"
rig_wait 10 rig_vhci_port_free "$P2" || fail "port $P2 still in use after attach --tls --persist stopped"
log "attach --tls --persist: port $P1, freed, then port $P2; SIGTERM detached it"

# (3) plain TCP, the baseline of the benchmark table.
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero
TESTUSB_TIMEOUT=180 rig_testusb_suite tcp "$GZ_DEV" 27 28 >/dev/null
rig_field tcp "$(rig_tests_json tcp)"
detach_all

# (4) the stock usbip tool through a tunnel.
# shellcheck disable=SC2086 # CLIENT is a word list
main_bg "$W/tunnel.out" "$R/tunnel.err" tunnel --listen 127.0.0.1:3340 --connect "127.0.0.1:$TLS_PORT" $CLIENT
TUNNEL=$BG_PID
rig_wait 60 test -s "$W/tunnel.out" || fail "tunnel did not start: $(cat "$R/tunnel.err")"
out=$(timeout -s KILL 60 usbip --tcp-port 3340 attach -r 127.0.0.1 -b "$GZ_BUSID" 2>&1) ||
	fail "usbip attach through the tunnel failed: $out $(cat "$R/tunnel.err")"
rig_wait_gadget_zero
bad=$(rig_testusb_suite tunnel "$GZ_DEV" 1 13)
rig_field tunnel "$(rig_tests_json tunnel)"
[ -z "$bad" ] || fail "testusb through the tunnel did not pass: $bad"
detach_all
kill -TERM "$TUNNEL"
wait "$TUNNEL"
rig_field tunnel_exit "$?"

# (5) a certificate of another CA.
used=$(rig_vhci_used)
# shellcheck disable=SC2086
gw_cli attach --tls -r "127.0.0.1:$TLS_PORT" -b "$GZ_BUSID" --cert "$PKI/stranger.pem" \
	--key "$PKI/stranger.key" --ca "$PKI/ca.pem" >"$W/stranger.out" 2>&1
rig_field stranger_exit "$?"
rig_field_str stranger_message "$(tail -n 1 "$W/stranger.out")"
[ "$(rig_vhci_used)" -eq "$used" ] || fail "the refused certificate used a vhci port"
rig_wait 5 grep -q "Refused TLS client .* cn=mallory" "$GW_LOG" ||
	fail "no audit line names the refused certificate: $(grep "Refused TLS" "$GW_LOG")"
rig_field_str stranger_audit "$(grep "mallory" "$GW_LOG" | tail -n 1)"

# (6) tampering.
tamper ktls_s2c s2c 3250 --require-ktls
tamper ktls_c2s c2s 3251 --require-ktls
tamper relay_s2c s2c 3252 --relay
rig_field ktls_decrypt_errors_end "$(tls_stat TlsDecryptError)"

rig_wait 10 rig_vhci_free || fail "vhci ports still in use at the end"
rig_stop_gateway TERM
log "tls ok"
