/**
 * usbipgw's polkit actions (polkit(8), "DECLARING ACTIONS"): their ids, texts and implicit
 * authorizations, the `.policy` file that declares them to polkitd, and an example
 * `rules.d` file for administrators, as text in the module graph so that the compiled binary
 * installs them without reading files beside it. `packaging/polkit/` holds the same texts (a
 * test keeps them equal; `deno run -A packaging/polkit/generate.ts` rewrites them).
 *
 * @module
 */

/** The ids of usbipgw's polkit actions. */
export const PolkitAction = {
  /** Attach a device of the gateway's own configuration into this machine's kernel. */
  ATTACH_LOCAL: "org.usbipgw.attach-local",
  /** Attach a device of a remote USB/IP server that the configuration lists. */
  ATTACH_REMOTE: "org.usbipgw.attach-remote",
  /** Attach a device that the user's own program serves over a socket it hands over. */
  ATTACH_STREAM: "org.usbipgw.attach-stream",
} as const;

/** One of {@linkcode PolkitAction}'s ids. */
export type PolkitActionId = typeof PolkitAction[keyof typeof PolkitAction];

/** An implicit authorization of polkit(8): what a subject gets when no rule decides. */
export type ImplicitAuthorization =
  | "no"
  | "yes"
  | "auth_self"
  | "auth_admin"
  | "auth_self_keep"
  | "auth_admin_keep";

/** One action as the `.policy` file declares it. */
export interface PolkitActionSpec {
  id: PolkitActionId;
  /** A short description of the action (polkit's `<description>`). */
  description: string;
  /** What an authentication dialog would say (polkit's `<message>`). */
  message: string;
  /** For any subject; polkit uses it for subjects outside a logind session. */
  allowAny: ImplicitAuthorization;
  /** For subjects in a local session that is not the active one. */
  allowInactive: ImplicitAuthorization;
  /** For subjects in the active local session. */
  allowActive: ImplicitAuthorization;
}

/**
 * The actions and their implicit authorizations. The gateway itself lets root attach
 * anything and the console user attach the gateway's own devices; polkit decides for
 * everyone else. It never lets polkit ask for a password: a service cannot prompt, so an
 * `auth_*` answer is a refusal that rules in `rules.d` can turn into a yes.
 */
export const POLKIT_ACTIONS: readonly Readonly<PolkitActionSpec>[] = Object.freeze([
  {
    id: PolkitAction.ATTACH_LOCAL,
    description: "Attach a USB device that the usbipgw gateway serves",
    message:
      "Authentication is required to attach a USB device served by the usbipgw gateway to this computer",
    allowAny: "no",
    allowInactive: "no",
    allowActive: "yes",
  },
  {
    id: PolkitAction.ATTACH_REMOTE,
    description: "Attach a USB device from a remote USB/IP server",
    message:
      "Authentication is required to attach a USB device from a remote USB/IP server to this computer",
    allowAny: "no",
    allowInactive: "no",
    allowActive: "auth_admin",
  },
  {
    id: PolkitAction.ATTACH_STREAM,
    description: "Attach a USB device that your own program provides",
    message:
      "Authentication is required to attach a USB device provided by a program; it can act as any USB device, a keyboard included",
    allowAny: "no",
    allowInactive: "no",
    allowActive: "auth_admin",
  },
]);

/** Where polkitd reads action files; the `.policy` file is installed as this. */
export const POLKIT_ACTIONS_FILE = "/usr/share/polkit-1/actions/org.usbipgw.policy";

/** Where an administrator's rules go (polkit(8), "AUTHORIZATION RULES"). */
export const POLKIT_RULES_DIR = "/etc/polkit-1/rules.d";

/** The name the example rules file suggests in {@linkcode POLKIT_RULES_DIR}. */
export const EXAMPLE_RULES_NAME = "50-usbipgw.rules";

/** The group the example rules file lets attach from remote servers. */
export const EXAMPLE_RULES_GROUP = "usbipgw";

function _escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/**
 * The `.policy` file (polkit's `policyconfig` XML, polkit(8) "DECLARING ACTIONS") that
 * declares {@linkcode POLKIT_ACTIONS} to polkitd, for {@linkcode POLKIT_ACTIONS_FILE}.
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { polkitPolicyFile } from "./actions.ts";
 * const xml = polkitPolicyFile();
 * assertStringIncludes(xml, '<action id="org.usbipgw.attach-local">');
 * assertStringIncludes(xml, "<allow_active>auth_admin</allow_active>");
 * ```
 */
export function polkitPolicyFile(actions: readonly PolkitActionSpec[] = POLKIT_ACTIONS): string {
  const blocks = actions.map((a) =>
    `  <action id="${_escapeXml(a.id)}">
    <description>${_escapeXml(a.description)}</description>
    <message>${_escapeXml(a.message)}</message>
    <defaults>
      <allow_any>${a.allowAny}</allow_any>
      <allow_inactive>${a.allowInactive}</allow_inactive>
      <allow_active>${a.allowActive}</allow_active>
    </defaults>
  </action>
`
  );
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE policyconfig PUBLIC "-//freedesktop//DTD PolicyKit Policy Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/PolicyKit/1/policyconfig.dtd">
<!--
  ${POLKIT_ACTIONS_FILE}: the polkit actions of the usbipgw USB/IP gateway.
  Installed by "usbipgw install-service". Do not edit: grant or refuse them with rules in
  ${POLKIT_RULES_DIR}/ (see polkit(8) and usbipgw's packaging/polkit/${EXAMPLE_RULES_NAME}.example).

  The gateway (root) asks polkit with pkcheck when a user who is neither root nor, for the
  gateway's own devices, the console user asks it to attach a device into this machine's
  kernel. It never lets polkit prompt: an auth_* answer counts as no. Outside a logind
  session polkit uses allow_any. The details busid, vid_pid and remote (HOST:PORT) are
  passed with each check, for rules to read with action.lookup().
-->
<policyconfig>
  <vendor>usbipgw</vendor>
${blocks.join("\n")}</policyconfig>
`;
}

/**
 * An example `rules.d` file for administrators: members of `group` may attach devices of
 * the remote servers the gateway's configuration lists, without a password (polkit(8),
 * "AUTHORIZATION RULES"; the JavaScript is ECMAScript 5 for polkit's duktape engine).
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { polkitExampleRules } from "./actions.ts";
 * assertStringIncludes(polkitExampleRules("usbip"), 'subject.isInGroup("usbip")');
 * ```
 */
export function polkitExampleRules(group: string = EXAMPLE_RULES_GROUP): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(group)) {
    throw new TypeError(`Cannot write rules for group "${group}": not a group name`);
  }
  return `// ${EXAMPLE_RULES_NAME}: an example polkit rule for the usbipgw USB/IP gateway.
//
// Members of the group "${group}" may attach devices of the remote USB/IP servers that
// the gateway's configuration lists ([attach] remotes), without a password. By default
// ${PolkitAction.ATTACH_REMOTE} is "auth_admin" for the active console session and "no"
// otherwise; the gateway cannot ask for a password, so without a rule like this one only
// root may attach from remote servers.
//
// To use it: create the group ("groupadd ${group}", "usermod -aG ${group} USER"), then
// copy this file into ${POLKIT_RULES_DIR}/ with mode 0644, through a temporary name
// and mv so that polkitd never reads a half-written file:
//   install -m 0644 ${EXAMPLE_RULES_NAME}.example ${POLKIT_RULES_DIR}/.${EXAMPLE_RULES_NAME}.new
//   mv ${POLKIT_RULES_DIR}/.${EXAMPLE_RULES_NAME}.new ${POLKIT_RULES_DIR}/${EXAMPLE_RULES_NAME}
// polkitd reads the change at once. Rules run in file name order; the first rule that
// returns an answer decides.
//
// The gateway passes details that rules can read with action.lookup(NAME):
//   busid    the device's bus id (on the gateway for attach-local, on the server otherwise)
//   vid_pid  the device's vendor and product ids, "0525:a4a0" (attach-local)
//   remote   the server, "HOST:PORT" (attach-remote)
// The other actions: ${PolkitAction.ATTACH_LOCAL} (a device of the gateway's own
// configuration; the console user may always) and ${PolkitAction.ATTACH_STREAM} (a
// device that the user's own program serves: it can pose as any device, a keyboard
// included; grant it sparingly).

polkit.addRule(function (action, subject) {
    if (action.id == "${PolkitAction.ATTACH_REMOTE}" && subject.isInGroup("${group}")) {
        // To allow one server only, add: && action.lookup("remote") == "usbip.example.org:3240"
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
`;
}
