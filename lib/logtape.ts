/**
 * LogTape, the logging library of usbipgw, by its full npm specifier: the one place that names
 * the package and its version, so that `mod.ts` loads from another project (by path or URL)
 * without this repository's import map. Libraries only call `getLogger`; an application
 * decides where records go with LogTape's `configure()` (see the README's "Logging").
 *
 * @module
 */

export {
  configureSync,
  getAnsiColorFormatter,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  resetSync,
} from "npm:@logtape/logtape@2.4.2";
