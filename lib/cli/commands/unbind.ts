/**
 * `usbipgw unbind -b BUSID`: withdraws a host device that `usbipgw bind` exported on a running
 * gateway, as `usbip unbind` does.
 *
 * @module
 */

import type { Command } from "../command.ts";
import { hostDeviceCommand } from "./bind.ts";

/** `usbipgw unbind`. */
export const unbindCommand: Command = hostDeviceCommand("unbind");
