/**
 * `usbipgw config check FILE`: checks a configuration exactly as `serve --config FILE` would,
 * through the same merge and the same validation, and opens nothing.
 *
 * @module
 */

import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ConfigError, formatAddress, type GatewayConfig, validateConfig } from "../config.ts";
import { ExitCode } from "../exit_codes.ts";
import { UsageError } from "../usage_error.ts";
import { gatewayInput } from "./serve.ts";

function summary(file: string, config: GatewayConfig): string {
  const listeners = [
    ...config.tcp.map(formatAddress),
    ...config.tls.map((t) => `tls ${formatAddress(t)}`),
    ...config.unix.map((u) => u.path),
    ...(config.metrics !== undefined ? [`metrics ${formatAddress(config.metrics)}`] : []),
  ];
  const devices = config.demo
    ? `${config.devices.length} device(s) (none configured: serve would use the demo set)`
    : `${config.devices.length} device(s)`;
  const rules = config.rules.length - (config.demo ? 1 : 0);
  return `${file}: valid: ${devices}, ${rules} rule(s), listeners: ${listeners.join(", ")}\n`;
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  const [sub, file] = flags.positional;
  if (sub !== "check") throw new UsageError(`"config" needs a subcommand: check FILE`);
  if (file === undefined || flags.positional.length !== 2) {
    throw new UsageError(`"config check" needs exactly one FILE`);
  }
  let config: GatewayConfig;
  try {
    config = await validateConfig(await gatewayInput(flags, io, { file }));
  } catch (e) {
    // An invalid file is the answer to the question, not a misuse of the command.
    if (!(e instanceof ConfigError) && !(e instanceof UsageError)) throw e;
    for (const line of e.message.split("\n")) io.err(`usbipgw: ${line}\n`);
    return ExitCode.ERROR;
  }
  await io.out(summary(file, config));
  return ExitCode.OK;
}

/** `usbipgw config`. */
export const configCommand: Command = {
  name: "config",
  summary: "check a configuration file without serving",
  usage: ["config check FILE"],
  description:
    `Checks FILE exactly as "serve --config FILE" would (listeners, devices, rules, limits,
logging, with the same defaults) and reports the first error with its file, line and key
(exit 1), or a summary (exit 0). Nothing is opened, created or served.`,
  subcommands: ["check"],
  flags: [],
  run,
};
