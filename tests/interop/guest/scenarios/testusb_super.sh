# Scenario testusb_super: the testusb scenario's whole set (tests/interop/guest/scenarios/
# testusb.sh) with Gadget Zero at SuperSpeed (issue 18: gadget-zero:speed=super): the import
# record says speed 5, so vhci attaches it to its SuperSpeed hub; usbtest's test 9 reads the
# BOS, and the ISO tests size their URBs from the endpoint companions (drivers/usb/misc/usbtest.c).
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --device gadget-zero:busid=1-1,speed=super \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1"
. /rig/scenarios/testusb.sh
