/**
 * The emulated USB thumb drive: USB Mass Storage Bulk-Only Transport (bot.ts), the SCSI
 * command set of its logical units (scsi.ts), the image files behind them (image.ts) and the
 * device itself (storage.ts).
 *
 * @module
 */

export * from "./bot.ts";
export * from "./scsi.ts";
export * from "./image.ts";
export * from "./storage.ts";
