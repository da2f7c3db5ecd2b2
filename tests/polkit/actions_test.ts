// usbipgw's polkit actions: the action file and the example rules as packaging/polkit/ has
// them, and the actions the file declares with their implicit authorizations.
import { assert, assertEquals } from "@std/assert";
import { POLKIT_ACTIONS, POLKIT_ACTIONS_FILE, polkitPolicyFile } from "../../lib/polkit/actions.ts";
import { PACKAGING_FILES } from "../../packaging/polkit/generate.ts";

const PACKAGING = new URL("../../packaging/polkit/", import.meta.url);

Deno.test("packaging/polkit/ holds the action file and the example rules", async () => {
  assertEquals(Object.keys(PACKAGING_FILES).sort(), [
    "50-usbipgw.rules.example",
    "org.usbipgw.policy",
  ]);
  for (const [name, text] of Object.entries(PACKAGING_FILES)) {
    assertEquals(
      await Deno.readTextFile(new URL(name, PACKAGING)),
      text,
      `packaging/polkit/${name} differs from lib/polkit/actions.ts; run: deno run -A packaging/polkit/generate.ts`,
    );
  }
});

Deno.test("the action file declares the three actions with the defaults asked for", () => {
  const xml = polkitPolicyFile();
  const actions = [...xml.matchAll(/<action id="([^"]+)">([\s\S]*?)<\/action>/g)].map((m) => {
    const get = (tag: string) => new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(m[2]!)?.[1];
    return [m[1], get("allow_any"), get("allow_inactive"), get("allow_active")];
  });
  assertEquals(actions, [
    ["org.usbipgw.attach-local", "no", "no", "yes"],
    ["org.usbipgw.attach-remote", "no", "no", "auth_admin"],
    ["org.usbipgw.attach-stream", "no", "no", "auth_admin"],
  ]);
  // Every action has its texts; an XML comment holds no "--".
  for (const a of POLKIT_ACTIONS) {
    assert(a.description !== "" && a.message !== "", a.id);
  }
  const comment = /<!--([\s\S]*?)-->/.exec(xml)?.[1] ?? "";
  assert(!comment.includes("--"));
  assertEquals(POLKIT_ACTIONS_FILE, "/usr/share/polkit-1/actions/org.usbipgw.policy");
});
