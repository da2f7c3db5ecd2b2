/**
 * USB devices: the descriptor tree and its encoder, the device model with its standard-request
 * handler, and the emulated devices (Gadget Zero, HID keyboard, mouse and tablet, serial ports,
 * Go!Temp, a thumb drive).
 *
 * @module
 */

export * from "./setup_packet.ts";
export * from "./descriptors.ts";
export * from "./usb_device.ts";
export * from "./gadget_zero.ts";
export * from "./hid.ts";
export * from "./keyboard.ts";
export * from "./hid_keymap.ts";
export * from "./passthrough/mod.ts";
export * from "./cdc_acm.ts";
export * from "./ftdi.ts";
export * from "./gotemp.ts";
export * from "./mouse.ts";
export * from "./tablet.ts";
export * from "./storage/mod.ts";
