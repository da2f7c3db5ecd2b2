// A sample command table for the completion and man page tests: three commands with every
// kind of flag (files, folders, words, one of them odd, none) and texts that roff would
// misread (leading dots and quotes, `\`, a non-ASCII character).
import type { Command } from "../../lib/cli/command.ts";

const run = () => Promise.resolve(0);

/** `serve` (flags of every kind), `policy` (subcommands) and `version` (an alias, no flags). */
export const SAMPLE: readonly Command[] = [
  {
    name: "serve",
    summary: "serve devices over TCP and unix sockets",
    usage: ["serve [--tcp HOST:PORT]... [-c FILE]"],
    description: `Serves USB devices to USB/IP clients ("usbip attach").

.this paragraph starts with a dot,
'and this one with an apostrophe, and has a back\\slash and a-hyphen.

Examples:
  usbipgw serve --tcp 0.0.0.0:3240 --device 'keyboard:text=hi'
  .dot at the start of an example line`,
    flags: [
      {
        name: "tcp",
        value: "HOST:PORT",
        repeat: true,
        help: "listen on TCP (IPv6 as [ADDR]:PORT); repeatable",
      },
      {
        name: "config",
        short: "c",
        value: "FILE",
        help: "read listeners, devices and rules\nfrom a TOML file",
        complete: "file",
      },
      {
        name: "seat-dir",
        value: "PATH",
        help: "where seats are; temperatures in °C",
        complete: "dir",
      },
      {
        name: "log-level",
        value: "LEVEL",
        help: "how much to log\nmore lines of help",
        complete: ["trace", "debug", "it's $odd"],
      },
      { name: "json", help: "print JSON" },
    ],
    epilogue: "Exit codes: 0 stopped by a signal, 1 an error.",
    run,
  },
  {
    name: "policy",
    summary: "show the access rules, or check a decision",
    usage: ["policy show [--config FILE]", "policy check --peer PEER [--config FILE]"],
    description: "Prints the rules, or the decision for one peer.",
    subcommands: ["show", "check"],
    flags: [
      { name: "peer", value: "PEER", help: "tcp:ADDRESS[:PORT], unix:UID or console" },
      { name: "config", value: "FILE", help: "the configuration", complete: "file" },
    ],
    run,
  },
  {
    name: "version",
    aliases: ["--version"],
    summary: "print the version",
    usage: ["version"],
    description: "Prints the version.",
    flags: [],
    run,
  },
];
