// Writes the polkit action file and the example rules file of lib/polkit/actions.ts into this
// folder: deno run -A packaging/polkit/generate.ts  (tests/polkit/actions_test.ts checks that
// they are current). "usbipgw install-service" installs the action file as
// /usr/share/polkit-1/actions/org.usbipgw.policy; the rules file is an example to copy.
import {
  EXAMPLE_RULES_NAME,
  polkitExampleRules,
  polkitPolicyFile,
} from "../../lib/polkit/actions.ts";

/** The files of this folder and their texts. */
export const PACKAGING_FILES: Record<string, string> = {
  "org.usbipgw.policy": polkitPolicyFile(),
  [`${EXAMPLE_RULES_NAME}.example`]: polkitExampleRules(),
};

if (import.meta.main) {
  for (const [name, text] of Object.entries(PACKAGING_FILES)) {
    const path = new URL(name, import.meta.url).pathname;
    await Deno.writeTextFile(path, text);
    console.log(`wrote ${path}`);
  }
}
