/**
 * Passthrough of real host USB devices through Linux usbfs: the host device list from sysfs,
 * the raw descriptor parser and the {@linkcode UsbfsDevice}.
 *
 * @module
 */

export {
  parseConfiguration,
  parseDescriptors,
  parseDeviceDescriptor,
} from "./descriptor_parser.ts";
export {
  findHostDevice,
  type HostDevice,
  type HostDeviceOptions,
  type HostDeviceSelector,
  type HostInterface,
  listHostDevices,
  matchesHostDevice,
} from "./host_devices.ts";
export { UsbfsDevice, type UsbfsDeviceOptions } from "./usbfs_device.ts";
export { UsbfsError, type UsbfsOps } from "./_usbfs.ts";
export {
  formatHostJson,
  formatHostTable,
  type HostDeviceRow,
  hostDeviceRow,
  type HostExportState,
} from "./host_table.ts";
export {
  type HostDeviceEvents,
  HostDeviceWatcher,
  type HostDeviceWatcherOptions,
} from "./host_watcher.ts";
